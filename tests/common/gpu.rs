//! The GPUs a CUDA test may use. Without one (no driver, the build-time stub driver, or no
//! device) the test prints why and returns, so `cargo test --features cuda` passes on machines
//! with no GPU; docs/cuda.md says how to run the tests on one.
use candor::backend::cuda::{list_devices, GpuInfo};

/// The GPUs the driver reports, or None with the reason on stderr.
pub fn gpus_or_skip() -> Option<Vec<GpuInfo>> {
    match list_devices() {
        Ok(d) if !d.is_empty() => Some(d),
        Ok(_) => {
            eprintln!("skipping: the CUDA driver reports no GPU");
            None
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}
