//! Engine tests on the real stories260K model, on the CPU (burn-flex) and wgpu (Vulkan) backends.
//! One test binary (linking burn once is what takes time).

mod bench;
mod cli;
mod common;
mod data_and_batching;
mod family;
mod fused;
mod fuzz;
mod generation;
mod gguf;
mod hf;
mod hub;
mod judge;
mod kto_spec;
mod loaders;
mod lora;
mod mood;
mod robustness;
mod session;
mod templates;
mod training;
mod trl_parity;
