//! One error type for the whole engine. Every message says what is wrong and, where it helps,
//! what to do: the CLI prints it, the browser shows it, nothing panics on bad input.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model or tokenizer file that cannot be read as the format it claims to be.
    #[error("{0}")]
    Format(String),
    /// Training or evaluation data that is malformed (JSONL rows, labels, lengths).
    #[error("{0}")]
    Data(String),
    /// Settings that cannot work together (batch size 1 with the KL term, zero steps, ...).
    #[error("{0}")]
    Config(String),
    /// The compute device failed (adapter missing, readback failed, ...).
    #[error("{0}")]
    Device(String),
    /// Training produced a non-finite number; the weights are left as they were before the step.
    #[error("{0}")]
    NonFinite(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn format_err(msg: impl Into<String>) -> Error {
    Error::Format(msg.into())
}

pub(crate) fn config_err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

pub(crate) fn device_err(e: impl std::fmt::Display) -> Error {
    Error::Device(format!("compute device error: {e}"))
}
