//! The GPUs a CUDA test may use. Without one (no driver, the build-time stub driver, or no
//! device) the test prints why and returns, so `cargo test --features cuda` passes on machines
//! with no GPU; docs/cuda.md says how to run the tests on one. On the GPU machine
//! `CANDOR_REQUIRE_GPU=1` turns a skip into a failure, so a run that found no usable driver
//! cannot pass for a proof (scripts/gpu-proof.sh sets it).
use candor::backend::cuda::{list_devices, GpuInfo};

/// The GPUs the driver reports, or None with the reason on stderr.
pub fn gpus_or_skip() -> Option<Vec<GpuInfo>> {
    let why = match list_devices() {
        Ok(d) if !d.is_empty() => return Some(d),
        Ok(_) => "the CUDA driver reports no GPU".to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        std::env::var_os("CANDOR_REQUIRE_GPU").is_none_or(|v| v != "1"),
        "CANDOR_REQUIRE_GPU=1 but no GPU: {why}"
    );
    eprintln!("skipping: {why}");
    None
}
