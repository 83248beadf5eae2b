use kto_studio::formats::llama2c;
use kto_studio::tokenizer::Llama2cTokenizer;
use kto_studio::{Error, ModelBundle};

use crate::common::*;

#[test]
fn builtin_model_has_the_documented_architecture() {
    let m = model();
    let c = &m.weights.config;
    assert_eq!(
        (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.max_seq_len),
        (64, 172, 5, 8, 4, 512, 512)
    );
    assert!(c.tied_embeddings);
    assert_eq!(c.num_params(), 260_032);
    assert_eq!(m.tokenizer.vocab_size(), 512);
}

fn format_message(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Format(msg)) => msg,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn model_loader_rejects_bad_files_with_clear_errors() {
    let good = builtin_file("stories260K.bin");
    assert!(format_message(llama2c::load(&[])).contains("empty"));
    assert!(format_message(llama2c::load(&good[..good.len() - 100])).contains("truncated"));
    assert!(format_message(llama2c::load(&good[..20])).contains("truncated"));
    let mut extra = good.clone();
    extra.extend_from_slice(&[0; 8]);
    assert!(format_message(llama2c::load(&extra)).contains("needs exactly"));
    // absurd header: dim = 2^30 must not allocate, just fail
    let mut absurd = good.clone();
    absurd[..4].copy_from_slice(&(1i32 << 30).to_le_bytes());
    assert!(format_message(llama2c::load(&absurd)).contains("dim"));
    let mut negative_layers = good.clone();
    negative_layers[8..12].copy_from_slice(&(-3i32).to_le_bytes());
    assert!(format_message(llama2c::load(&negative_layers)).contains("n_layers"));
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert!(!format_message(llama2c::load(&blob)).is_empty());
}

#[test]
fn tokenizer_loader_rejects_bad_files_with_clear_errors() {
    let good = builtin_file("tok512.bin");
    let err = |b: &[u8], vocab| match Llama2cTokenizer::from_bytes(b, vocab) {
        Err(Error::Format(m)) => m,
        other => panic!("expected a format error, got {:?}", other.map(|_| ())),
    };
    assert!(err(&[], 512).contains("empty"));
    assert!(err(&good[..good.len() / 2], 512).contains("truncated"));
    assert!(err(&good, 600).contains("truncated"));
    assert!(err(&good, 400).contains("larger vocabulary"));
    let mut bad_len = good.clone();
    bad_len[..4].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(err(&bad_len, 512).contains("max_token_length"));
    // a model file given as tokenizer
    assert!(!err(&builtin_file("stories260K.bin"), 512).is_empty());
}

#[test]
fn save_then_load_round_trips_exactly() {
    let m = model();
    let bytes = llama2c::save(&m.weights).unwrap();
    assert_eq!(bytes.len(), builtin_file("stories260K.bin").len());
    assert_eq!(llama2c::load(&bytes).unwrap(), m.weights);
    // and the same weights read back from a device
    let back = block(kto_studio::model::Model::from_weights(&m.weights, &cpu()).to_weights()).unwrap();
    assert_eq!(back, m.weights);
    let _ = ModelBundle::from_llama2c("x", &bytes, &builtin_file("tok512.bin")).unwrap();
}
