//! KTO Studio's engine: load a small Llama-family model, tokenize, generate, and fine-tune it with
//! KTO, on whatever burn device the caller picks (WebGPU in the browser, wgpu/Vulkan or CPU
//! natively). Everything here is platform-neutral; `wasm` is the only module that knows the web.

pub mod bench;
pub mod bundle;
pub mod clock;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod formats;
pub mod generate;
pub mod hub;
pub mod judge;
pub mod kto;
pub mod memory;
pub mod model;
pub mod mood;
pub mod score;
pub mod session;
pub mod tokenizer;

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
mod wasm_pool;

pub use bundle::ModelBundle;
pub use device::BackendKind;
pub use error::{Error, Result};
