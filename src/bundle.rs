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
    /// The files that were read, in the order read (shown in the log and the page's model info,
    /// so a user can see which weights file a folder resolved to).
    pub files: Vec<String>,
}

/// How a set of files was given: a whole folder (every file in it: `--model DIR`, the page's
/// folder picker), or files a person picked one by one (each one named on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSet {
    Folder,
    Picked,
}

const SAFE_WEIGHTS: &str = "model.safetensors";
const SAFE_INDEX: &str = "model.safetensors.index.json";
/// The chat template file transformers 5 writes beside `tokenizer_config.json`.
pub const CHAT_TEMPLATE: &str = "chat_template.jinja";

/// Which files hold a Hugging Face checkpoint's weights, decided as `transformers` does:
/// `model.safetensors`, else the shards `model.safetensors.index.json` lists. Any other
/// `*.safetensors` (a `model.fp16.safetensors`, a gradient dump, an adapter) is read only when it
/// is the one file the user named: `named`, or the only weights file among files picked one by one.
pub fn hf_weight_files(
    names: &[String],
    index_json: Option<&[u8]>,
    set: FileSet,
    named: Option<&str>,
) -> Result<Vec<String>> {
    if let Some(n) = named {
        return Ok(vec![n.to_string()]);
    }
    if names.iter().any(|n| n == SAFE_WEIGHTS) {
        return Ok(vec![SAFE_WEIGHTS.to_string()]);
    }
    if let Some(index) = index_json {
        return hf::shard_names(index);
    }
    let others: Vec<&String> =
        names.iter().filter(|n| n.ends_with(".safetensors") && *n != "adapter_model.safetensors").collect();
    match (others.as_slice(), set) {
        ([], _) => Err(format_err(
            "config.json came without weights: add model.safetensors (or every shard with model.safetensors.index.json)",
        )),
        ([only], FileSet::Picked) => Ok(vec![only.to_string()]),
        (list, _) => Err(format_err(format!(
            "this folder has no model.safetensors or model.safetensors.index.json, only {}: it is not clear which \
             holds the model. Name the weights file (CLI: --model FOLDER/FILE.safetensors; page: pick that file \
             together with config.json and the tokenizer files), or rename it to model.safetensors",
            list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

impl ModelBundle {
    /// A llama2.c checkpoint and its tokenizer file.
    pub fn from_llama2c(name: &str, model: &[u8], tokenizer: &[u8]) -> Result<Self> {
        let weights = llama2c::load(model)?;
        let tokenizer = Tokenizer::Llama2c(Llama2cTokenizer::from_bytes(tokenizer, weights.config.vocab_size)?);
        Self::checked(name, "llama2.c", weights, tokenizer, vec![])
    }

    /// A GGUF file (weights and its embedded tokenizer).
    pub fn from_gguf(bytes: &[u8]) -> Result<Self> {
        let (weights, tokenizer, name) = gguf::load(bytes)?;
        Self::checked(&name, "gguf", weights, tokenizer, vec![])
    }

    /// Every token id the tokenizer can produce must index the embedding (a tokenizer from
    /// another model would otherwise fail deep inside the first forward pass).
    fn checked(
        name: &str,
        format: &'static str,
        weights: ModelWeights,
        tokenizer: Tokenizer,
        files: Vec<String>,
    ) -> Result<Self> {
        let vocab = weights.config.vocab_size;
        let max_id = tokenizer.max_id();
        if max_id.is_some_and(|m| m as usize >= vocab) {
            return Err(format_err(format!(
                "the tokenizer has token ids up to {} but the model's embedding has only {vocab} rows: the tokenizer \
                 belongs to another model",
                max_id.unwrap_or_default()
            )));
        }
        for (what, id) in [("end-of-sequence", tokenizer.eos_id()), ("padding", tokenizer.pad_id())] {
            if id as usize >= vocab {
                return Err(format_err(format!(
                    "the {what} token id {id} is outside the model's vocabulary of {vocab}"
                )));
            }
        }
        Ok(Self { name: name.to_string(), format, weights, tokenizer, files })
    }

    /// Whatever model a set of files holds (a folder's files, or several picked in the page):
    /// a `.gguf`; a Hugging Face checkpoint (`config.json`, weights per [`hf_weight_files`],
    /// `tokenizer.json`, optional `tokenizer_config.json`); or a llama2.c `.bin` with its
    /// `tok*.bin`. Names are file names without folders.
    pub fn from_files(name: &str, files: &[(String, Vec<u8>)], set: FileSet) -> Result<Self> {
        Self::from_files_named(name, files, set, None)
    }

    /// [`Self::from_files`] with the weights file the user named (`--model DIR/file.safetensors`).
    pub fn from_files_named(
        name: &str,
        files: &[(String, Vec<u8>)],
        set: FileSet,
        named: Option<&str>,
    ) -> Result<Self> {
        let get = |n: &str| files.iter().find(|(f, _)| f == n).map(|(_, b)| b.as_slice());
        let ggufs: Vec<&(String, Vec<u8>)> =
            files.iter().filter(|(f, _)| f.to_lowercase().ends_with(".gguf")).collect();
        match ggufs.as_slice() {
            [] => {}
            [(file, bytes)] => {
                let mut b = Self::from_gguf(bytes)?;
                b.files = vec![file.clone()];
                return Ok(b);
            }
            many => {
                return Err(format_err(format!(
                    "several GGUF files were given ({}): open one at a time",
                    many.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        if let Some(config) = get("config.json") {
            let names: Vec<String> = files.iter().map(|(f, _)| f.clone()).collect();
            let shards = hf_weight_files(&names, get(SAFE_INDEX), set, named)?;
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
            let mut tok_cfg: Value = match get("tokenizer_config.json") {
                Some(b) => json_file("tokenizer_config.json", b)?,
                None => Value::Null,
            };
            // transformers 5 saves the template beside the config (and prefers it there).
            if let Some(t) = get(CHAT_TEMPLATE) {
                let t = std::str::from_utf8(t).map_err(|_| format_err(format!("{CHAT_TEMPLATE} is not UTF-8 text")))?;
                if !tok_cfg.is_object() {
                    tok_cfg = Value::Object(Default::default());
                }
                tok_cfg["chat_template"] = Value::String(t.to_string());
            }
            let model_cfg: Value = json_file("config.json", config)?;
            let eos = match model_cfg.get("eos_token_id") {
                Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
                Some(Value::Array(a)) => a.first().and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()),
                _ => None,
            };
            let tokenizer = Tokenizer::Hf(Box::new(HfTokenizer::from_json(tok_json, &tok_cfg, eos)?));
            let name = model_cfg.get("_name_or_path").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(name);
            let mut read = vec!["config.json".to_string()];
            read.extend(shards);
            read.extend(
                ["tokenizer.json", "tokenizer_config.json", CHAT_TEMPLATE]
                    .iter()
                    .filter(|f| get(f).is_some())
                    .map(|f| f.to_string()),
            );
            return Self::checked(name, "safetensors", weights, tokenizer, read);
        }
        let model = files.iter().find(|(f, _)| f.ends_with(".bin") && !f.starts_with("tok"));
        let tok = files.iter().find(|(f, _)| f.starts_with("tok") && f.ends_with(".bin"));
        match (model, tok) {
            (Some((m, mb)), Some((t, tb))) => {
                let mut b = Self::from_llama2c(m.trim_end_matches(".bin"), mb, tb)?;
                b.files = vec![m.clone(), t.clone()];
                Ok(b)
            }
            _ => Err(format_err(
                "no model recognised among these files: pick a .gguf file, a Hugging Face folder's config.json + \
                 model.safetensors + tokenizer.json (+ tokenizer_config.json), or a llama2.c model .bin with its tok*.bin",
            )),
        }
    }
}

/// A JSON file, with a UTF-8 byte-order mark tolerated (editors on Windows add one).
pub fn json_file(name: &str, bytes: &[u8]) -> Result<Value> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|e| format_err(format!("{name} is not valid JSON: {e}")))
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::{Path, PathBuf};

    use super::ModelBundle;
    use crate::{Error, Result};

    /// The checkouts a native binary looks for the project's files in: the one it was built
    /// from, then the one it runs in (a shared target dir may hold a binary built from a checkout
    /// that is gone).
    pub fn checkout_roots() -> [&'static Path; 2] {
        [Path::new(env!("CARGO_MANIFEST_DIR")), Path::new(".")]
    }

    /// Where the built-in stories260K lives: `$KTO_MODEL_DIR`, the shared folder beside the
    /// checkout, or the copy the setup script downloads into the build cache.
    pub fn builtin_dir() -> Result<PathBuf> {
        let mut candidates = Vec::new();
        if let Ok(dir) = std::env::var("KTO_MODEL_DIR") {
            candidates.push(PathBuf::from(dir));
        }
        for root in checkout_roots() {
            candidates.push(root.join("../shared/models/stories260K"));
            candidates.push(root.join("dist/models/stories260K"));
        }
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
                    let mut b = ModelBundle::from_gguf(&read(p)?)?;
                    b.files = vec![p.display().to_string()];
                    return Ok(b);
                }
                // A weights file named directly: its folder holds config.json and the tokenizer.
                let named = p.extension().is_some_and(|e| e == "safetensors").then(|| file_name(p));
                let dir = if named.is_some() { p.parent().unwrap_or(Path::new(".")) } else { p };
                if dir.is_dir() && tokenizer.is_none() && (named.is_some() || !has_llama2c(dir)) {
                    return load_folder(dir, named.as_deref());
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
            let mut b = ModelBundle::from_llama2c(&name, &read(&model_path)?, &read(&tok_path)?)?;
            b.files = vec![model_path.display().to_string(), tok_path.display().to_string()];
            Ok(b)
        }
    }

    fn file_name(p: &Path) -> String {
        p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// A folder: only the files the model needs are read (a folder may hold gigabytes of other
    /// checkpoints), chosen by the same rules as files handed over in the browser.
    fn load_folder(dir: &Path, named: Option<&str>) -> Result<ModelBundle> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::Config(format!("cannot list {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| file_name(&e.path())))
            .collect();
        names.sort();
        let ggufs: Vec<&String> = names.iter().filter(|n| n.to_lowercase().ends_with(".gguf")).collect();
        let wanted: Vec<String> = if !names.iter().any(|n| n == "config.json") {
            // A GGUF (several are refused by name), or nothing this loader knows.
            ggufs.into_iter().cloned().collect()
        } else {
            let index = if names.iter().any(|n| n == super::SAFE_INDEX) {
                Some(read(&dir.join(super::SAFE_INDEX))?)
            } else {
                None
            };
            let mut w = super::hf_weight_files(&names, index.as_deref(), super::FileSet::Folder, named)?;
            w.extend(
                ["config.json", "tokenizer.json", "tokenizer_config.json", super::CHAT_TEMPLATE, super::SAFE_INDEX]
                    .iter()
                    .filter(|f| names.iter().any(|n| n == *f))
                    .map(|f| f.to_string()),
            );
            w
        };
        let mut files = Vec::new();
        for n in &wanted {
            let path = dir.join(n);
            if path.is_file() {
                files.push((n.clone(), read(&path)?));
            }
        }
        ModelBundle::from_files_named(&file_name(dir), &files, super::FileSet::Folder, named)
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
pub use native::{builtin_dir, checkout_roots};
