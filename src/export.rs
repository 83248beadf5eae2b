//! What the CLI writes and the page downloads: a PEFT adapter folder, or the merged model as a
//! Hugging Face folder (with its tokenizer when it has a Hugging Face one).

use serde_json::json;

use crate::formats::{hf, peft};
use crate::model::{LoraConfig, Model};
use crate::tokenizer::Tokenizer;
use crate::{ModelBundle, Result};

/// Named files of a folder.
pub type Files = Vec<(String, Vec<u8>)>;

/// `adapter_config.json` + `adapter_model.safetensors` of the model's adapters.
pub async fn adapter(model: &Model, lora: &LoraConfig, bundle: &ModelBundle) -> Result<Files> {
    let adapters = model.adapters().await?;
    if adapters.is_empty() {
        return Err(crate::error::config_err("this model has no LoRA adapters to export (train with LoRA first)"));
    }
    let (config, tensors) = peft::save(&adapters, lora, model.config(), &bundle.name)?;
    Ok(vec![("adapter_config.json".into(), config.into_bytes()), ("adapter_model.safetensors".into(), tensors)])
}

/// `config.json` + `model.safetensors` (+ `tokenizer.json`, `tokenizer_config.json`) with any
/// adapters merged into the weights.
pub async fn merged(model: &Model, bundle: &ModelBundle) -> Result<Files> {
    let weights = model.to_weights().await?;
    let (config, tensors) = hf::save(&weights)?;
    let mut files: Files = vec![("config.json".into(), config.into_bytes()), ("model.safetensors".into(), tensors)];
    if let Tokenizer::Hf(t) = &bundle.tokenizer {
        files.push(("tokenizer.json".into(), t.to_json()?.into_bytes()));
        let mut cfg =
            json!({"eos_token": t.eos_text(), "bos_token": t.bos_text(), "tokenizer_class": "PreTrainedTokenizerFast"});
        if let Some(tpl) = t.chat_template() {
            cfg["chat_template"] = json!(tpl);
        }
        files.push(("tokenizer_config.json".into(), serde_json::to_vec_pretty(&cfg).unwrap()));
    }
    Ok(files)
}
