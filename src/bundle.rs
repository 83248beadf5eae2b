//! A model with its tokenizer, loaded from bytes (the browser) or paths (the CLI).

use crate::Result;
use crate::formats::llama2c;
use crate::model::LlamaWeights;
use crate::tokenizer::{Llama2cTokenizer, Tokenizer};

#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub name: String,
    pub weights: LlamaWeights,
    pub tokenizer: Tokenizer,
}

impl ModelBundle {
    /// A llama2.c checkpoint and its tokenizer file.
    pub fn from_llama2c(name: &str, model: &[u8], tokenizer: &[u8]) -> Result<Self> {
        let weights = llama2c::load(model)?;
        let tokenizer = Tokenizer::Llama2c(Llama2cTokenizer::from_bytes(tokenizer, weights.config.vocab_size)?);
        Ok(Self { name: name.to_string(), weights, tokenizer })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::{Path, PathBuf};

    use super::ModelBundle;
    use crate::{Error, Result};

    /// Where the built-in stories260K lives: `$KTO_MODEL_DIR`, the shared folder beside the
    /// checkout, or the copy the setup script downloads into the build cache.
    pub fn builtin_dir() -> Result<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut candidates = Vec::new();
        if let Ok(dir) = std::env::var("KTO_MODEL_DIR") {
            candidates.push(PathBuf::from(dir));
        }
        candidates.push(root.join("../shared/models/stories260K"));
        candidates.push(root.join("dist/models/stories260K"));
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cache/kto-studio/models/stories260K"));
        }
        candidates
            .into_iter()
            .find(|d| d.join("stories260K.bin").is_file() && d.join("tok512.bin").is_file())
            .ok_or_else(|| {
                Error::Config(
                    "the built-in model stories260K was not found (looked in $KTO_MODEL_DIR, ../shared/models/stories260K, \
                     dist/models/stories260K, ~/.cache/kto-studio/models/stories260K); run scripts/setup.sh to fetch it, \
                     or pass --model"
                        .into(),
                )
            })
    }

    fn read(path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
    }

    impl ModelBundle {
        /// `model`: a llama2.c `.bin` file, or a folder holding one plus its `tok*.bin`;
        /// `None` = the built-in stories260K. `tokenizer` overrides the tokenizer file.
        pub fn load(model: Option<&Path>, tokenizer: Option<&Path>) -> Result<Self> {
            let model_path = match model {
                None => builtin_dir()?.join("stories260K.bin"),
                Some(p) if p.is_dir() => find(p, |n| n.ends_with(".bin") && !n.starts_with("tok"))?,
                Some(p) => p.to_path_buf(),
            };
            let dir = model_path.parent().unwrap_or(Path::new("."));
            let tok_path = match tokenizer {
                Some(t) => t.to_path_buf(),
                None => find(dir, |n| n.starts_with("tok") && n.ends_with(".bin"))?,
            };
            let name = model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            ModelBundle::from_llama2c(&name, &read(&model_path)?, &read(&tok_path)?)
        }
    }

    fn find(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<PathBuf> {
        let mut hits: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Config(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pred))
            .collect();
        hits.sort();
        hits.into_iter().next().ok_or_else(|| {
            Error::Config(format!(
                "no matching model/tokenizer file in {} (expected a llama2.c model .bin and its tok*.bin)",
                dir.display()
            ))
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::builtin_dir;
