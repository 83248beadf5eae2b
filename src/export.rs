//! What the CLI writes and the page downloads: a PEFT adapter folder, or the merged model as a
//! Hugging Face folder (with its tokenizer when it has a Hugging Face one); and the one-file form
//! the page keeps in browser storage, with its reader.

use serde_json::json;

use crate::formats::{hf, llama2c, peft};
use crate::model::{HostAdapter, LoraConfig, Model, ModelConfig, ModelWeights};
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

/// The trained model as one file (the page's browser storage and its one-file download): a
/// llama2.c checkpoint for a fully tuned llama2.c model; otherwise the PEFT adapter safetensors
/// after a LoRA run, or the merged weights' safetensors. Each carries what [`read_one_file`] needs.
pub async fn one_file(model: &Model, lora: Option<&LoraConfig>, bundle: &ModelBundle) -> Result<(String, Vec<u8>)> {
    if bundle.format == "llama2.c" && !model.has_adapters() {
        return Ok(("model.bin".into(), llama2c::save(&model.to_weights().await?)?));
    }
    let files = match lora.filter(|_| model.has_adapters()) {
        Some(l) => adapter(model, l, bundle).await?,
        None => merged(model, bundle).await?,
    };
    files
        .into_iter()
        .find(|(name, _)| name.ends_with(".safetensors"))
        .ok_or_else(|| crate::error::format_err("the export produced no safetensors file"))
}

/// What a saved trained model holds, for the model `config` it must belong to.
pub enum Restored {
    Adapter(LoraConfig, Vec<HostAdapter>),
    Weights(Box<ModelWeights>),
}

/// Read what [`one_file`] wrote (or a PEFT adapter's safetensors): the adapter's settings travel
/// in its safetensors metadata, a merged model's config too; anything else is a llama2.c file.
pub fn read_one_file(bytes: &[u8], config: &ModelConfig) -> Result<Restored> {
    if let Ok(Some(adapter_config)) = peft::embedded_config(bytes) {
        let (lora, adapters) = peft::load(adapter_config.as_bytes(), bytes, config)?;
        return Ok(Restored::Adapter(lora, adapters));
    }
    let weights = match hf::embedded_config(bytes) {
        Ok(Some(c)) => hf::load(c.as_bytes(), &[("model.safetensors", bytes)])?,
        _ => llama2c::load(bytes)?,
    };
    let mut want = config.clone();
    want.rope_layout = weights.config.rope_layout;
    if weights.config != want {
        return Err(crate::error::config_err("these trained weights belong to a different model architecture"));
    }
    Ok(Restored::Weights(Box::new(weights)))
}
