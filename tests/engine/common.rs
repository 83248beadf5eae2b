use burn::tensor::Device;
use kto_studio::{BackendKind, ModelBundle, device};

pub fn model() -> ModelBundle {
    ModelBundle::load(None, None).expect("built-in stories260K (run scripts/setup.sh)")
}

pub fn cpu() -> Device {
    device::init(BackendKind::Cpu).unwrap()
}

/// The wgpu device on Vulkan. No fallback: a machine without a Vulkan driver fails here.
pub fn wgpu() -> Device {
    device::init(BackendKind::Wgpu).expect("wgpu/Vulkan device (lavapipe: apt-get install mesa-vulkan-drivers)")
}

pub fn builtin_file(name: &str) -> Vec<u8> {
    std::fs::read(kto_studio::bundle::builtin_dir().unwrap().join(name)).unwrap()
}

pub fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

pub fn stories() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_validation_100.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/data/tinystories_validation_100.txt"),
        )
        .expect("TinyStories validation text (../shared/data or dist/data)")
    });
    kto_studio::eval::split_stories(&text)
}
