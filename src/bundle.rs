//! A model with its tokenizer, loaded from bytes (the browser) or paths (the CLI).

use serde_json::Value;

use crate::Result;
use crate::error::format_err;
use crate::formats::{gguf, hf, llama2c};
use crate::model::ModelWeights;
use crate::tokenizer::{HfTokenizer, Llama2cTokenizer, Tokenizer};

#[derive(Debug, Clone)]
pub struct ModelBundle {
    pub name: String,
    /// Where it came from: "llama2.c", "gguf" or "safetensors".
    pub format: &'static str,
    pub weights: ModelWeights,
    pub tokenizer: Tokenizer,
}

impl ModelBundle {
    /// A llama2.c checkpoint and its tokenizer file.
    pub fn from_llama2c(name: &str, model: &[u8], tokenizer: &[u8]) -> Result<Self> {
        let weights = llama2c::load(model)?;
        let tokenizer = Tokenizer::Llama2c(Llama2cTokenizer::from_bytes(tokenizer, weights.config.vocab_size)?);
        Ok(Self { name: name.to_string(), format: "llama2.c", weights, tokenizer })
    }

    /// A GGUF file (weights and its embedded tokenizer).
    pub fn from_gguf(bytes: &[u8]) -> Result<Self> {
        let (weights, tokenizer, name) = gguf::load(bytes)?;
        Ok(Self { name, format: "gguf", weights, tokenizer })
    }

    /// Whatever model a set of files holds (a folder's files, or several picked in the page):
    /// a `.gguf`; a Hugging Face checkpoint (`config.json`, `*.safetensors` or shards listed in
    /// `model.safetensors.index.json`, `tokenizer.json`, optional `tokenizer_config.json`); or a
    /// llama2.c `.bin` with its `tok*.bin`. Names are file names without folders.
    pub fn from_files(name: &str, files: &[(String, Vec<u8>)]) -> Result<Self> {
        let get = |n: &str| files.iter().find(|(f, _)| f == n).map(|(_, b)| b.as_slice());
        if let Some((_, bytes)) = files.iter().find(|(f, _)| f.to_lowercase().ends_with(".gguf")) {
            return Self::from_gguf(bytes);
        }
        if let Some(config) = get("config.json") {
            let shards: Vec<String> = match get("model.safetensors.index.json") {
                Some(index) => hf::shard_names(index)?,
                None => files
                    .iter()
                    .map(|(f, _)| f.clone())
                    .filter(|f| f.ends_with(".safetensors") && f != "adapter_model.safetensors")
                    .collect(),
            };
            if shards.is_empty() {
                return Err(format_err(
                    "config.json came without weights: add model.safetensors (or every shard with model.safetensors.index.json)",
                ));
            }
            let mut parts = Vec::new();
            for s in &shards {
                parts.push((
                    s.as_str(),
                    get(s).ok_or_else(|| {
                        format_err(format!("the weight shard {s} is missing; pick it together with the other files"))
                    })?,
                ));
            }
            let weights = hf::load(config, &parts)?;
            let tok_json = get("tokenizer.json").ok_or_else(|| {
                format_err("tokenizer.json is missing: a Hugging Face model needs it next to config.json (pick it too)")
            })?;
            let tok_cfg: Value = match get("tokenizer_config.json") {
                Some(b) => serde_json::from_slice(b).map_err(|e| format_err(format!("tokenizer_config.json: {e}")))?,
                None => Value::Null,
            };
            let model_cfg: Value = serde_json::from_slice(config).unwrap_or(Value::Null);
            let eos = match model_cfg.get("eos_token_id") {
                Some(Value::Number(n)) => n.as_u64().map(|v| v as u32),
                Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|v| v as u32),
                _ => None,
            };
            let tokenizer = Tokenizer::Hf(Box::new(HfTokenizer::from_json(tok_json, &tok_cfg, eos)?));
            let name = model_cfg.get("_name_or_path").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(name);
            return Ok(Self { name: name.to_string(), format: "safetensors", weights, tokenizer });
        }
        let model = files.iter().find(|(f, _)| f.ends_with(".bin") && !f.starts_with("tok"));
        let tok = files.iter().find(|(f, _)| f.starts_with("tok") && f.ends_with(".bin"));
        match (model, tok) {
            (Some((m, mb)), Some((_, tb))) => Self::from_llama2c(m.trim_end_matches(".bin"), mb, tb),
            _ => Err(format_err(
                "no model recognised among these files: pick a .gguf file, a Hugging Face folder's config.json + \
                 model.safetensors + tokenizer.json (+ tokenizer_config.json), or a llama2.c model .bin with its tok*.bin",
            )),
        }
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
        /// `model`: a llama2.c `.bin` file or a `.gguf` file, or a folder holding a Hugging Face
        /// checkpoint, a GGUF file or a llama2.c model plus its `tok*.bin`; `None` = the built-in
        /// stories260K. `tokenizer` overrides the llama2.c tokenizer file.
        pub fn load(model: Option<&Path>, tokenizer: Option<&Path>) -> Result<Self> {
            if let Some(p) = model {
                if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
                    return ModelBundle::from_gguf(&read(p)?);
                }
                if p.is_dir() && tokenizer.is_none() && !has_llama2c(p) {
                    let mut files = Vec::new();
                    for entry in
                        std::fs::read_dir(p).map_err(|e| Error::Config(format!("cannot list {}: {e}", p.display())))?
                    {
                        let path = entry.map_err(Error::Io)?.path();
                        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        if [".json", ".safetensors", ".gguf"].iter().any(|e| name.ends_with(e)) {
                            files.push((name, read(&path)?));
                        }
                    }
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    return ModelBundle::from_files(&name, &files);
                }
            }
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

    fn has_llama2c(dir: &Path) -> bool {
        find(dir, |n| n.starts_with("tok") && n.ends_with(".bin")).is_ok()
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
