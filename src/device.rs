//! Choosing the compute device at run time. `Wgpu` runs burn's WGSL kernels (WebGPU in the
//! browser, Vulkan natively — lavapipe on a machine without a GPU); `Cpu` is burn's flex backend
//! (pure Rust, `gemm` matmuls with SIMD, rayon threads natively); `Ndarray` is burn's older
//! ndarray backend, kept to compare against (BENCHMARKS.md).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::device_err;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Wgpu,
    Cpu,
    Ndarray,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cpu => "cpu",
            BackendKind::Ndarray => "ndarray",
        })
    }
}

impl std::str::FromStr for BackendKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "wgpu" | "webgpu" => Ok(BackendKind::Wgpu),
            "cpu" | "flex" => Ok(BackendKind::Cpu),
            "ndarray" => Ok(BackendKind::Ndarray),
            other => Err(crate::error::config_err(format!("unknown backend '{other}': use wgpu, cpu or ndarray"))),
        }
    }
}

/// Initialize the device (native: synchronous). A wgpu device is initialized once per process;
/// later calls reuse it.
#[cfg(not(target_arch = "wasm32"))]
pub fn init(kind: BackendKind) -> Result<Device> {
    use std::sync::OnceLock;
    #[cfg(feature = "webgpu")]
    static WGPU: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    match kind {
        BackendKind::Cpu | BackendKind::Ndarray => Ok(cpu(kind)),
        #[cfg(not(feature = "webgpu"))]
        BackendKind::Wgpu => Err(no_webgpu()),
        #[cfg(feature = "webgpu")]
        BackendKind::Wgpu => WGPU
            .get_or_init(|| {
                Device::wgpu_options()
                    .graphics_api(burn::tensor::wgpu::WgpuBackend::Vulkan)
                    .init()
                    .map_err(|e| format!("{e}"))
            })
            .clone()
            .map_err(|e| {
                device_err(format!(
                    "no Vulkan adapter for wgpu ({e}); install mesa-vulkan-drivers or use --backend cpu"
                ))
            }),
    }
}

/// Runs a whole job (a CLI command) on one of the CPU backend's rayon threads. Outside the pool
/// the caller is one more thread than there are cores, and the pool's workers, spinning while they
/// wait for the next parallel op, take the core from it between ops: inside, the caller is one of
/// the workers. One run of `kto bench` (2 cores): 40–51 ms per step inside vs 58–60 outside.
#[cfg(not(target_arch = "wasm32"))]
pub fn on_cpu_threads<R: Send>(job: impl FnOnce() -> R + Send) -> R {
    use std::sync::OnceLock;
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    match POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().build().ok()) {
        Some(pool) => pool.install(job),
        None => job(),
    }
}

/// The threads the CPU backend computes on: rayon's pool natively and in the threaded wasm build
/// (Web Workers, once `initThreadPool` has run), one in the single-threaded wasm build. Each
/// thread answers for itself (a broadcast), so the count is of threads that run the engine's code.
pub fn cpu_threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    return rayon::broadcast(|ctx| ctx.index()).len();
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    1
}

/// Initialize the device in the browser (WebGPU needs an async adapter request).
pub async fn init_async(kind: BackendKind) -> Result<Device> {
    match kind {
        BackendKind::Cpu | BackendKind::Ndarray => Ok(cpu(kind)),
        #[cfg(feature = "webgpu")]
        BackendKind::Wgpu => Device::wgpu_options().init_async().await.map_err(device_err),
        #[cfg(not(feature = "webgpu"))]
        BackendKind::Wgpu => Err(no_webgpu()),
    }
}

#[cfg(not(feature = "webgpu"))]
fn no_webgpu() -> crate::Error {
    device_err(
        "this build of the engine has no WebGPU backend (built without the `webgpu` feature, as the page's threaded CPU build is)",
    )
}

fn cpu(kind: BackendKind) -> Device {
    match kind {
        // burn deprecates ndarray for flex; it stays selectable as the baseline it was.
        #[allow(deprecated)]
        BackendKind::Ndarray => Device::ndarray(),
        _ => Device::flex(),
    }
}

/// Read a tensor back to the host. Always async: the browser cannot block on the GPU.
pub async fn read_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(device_err)?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| device_err(format!("{e:?}")))
}

/// Read several tensors in one transaction (one GPU round trip), as f64.
pub async fn read_all(tx: burn::tensor::Transaction) -> Result<Vec<Vec<f64>>> {
    let data = tx.execute_async().await.map_err(device_err)?;
    data.into_iter()
        .map(|d| d.convert::<f64>().try_into_vec::<f64>().map_err(|e| device_err(format!("{e:?}"))))
        .collect()
}
