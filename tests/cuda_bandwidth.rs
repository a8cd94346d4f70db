//! What `candor bench --backend cuda` records about the GPU: the device-to-device copy bandwidth
//! and the fingerprint from the driver. Needs a GPU: without one (no driver, the build-time stub
//! driver, or no device) each test prints why and returns; run them on a GPU machine with
//! shared/tools/gpu-run.sh (docs/cuda.md).
#![cfg(feature = "cuda")]
mod common;

use candor::backend::cuda::device_bandwidth_gbs;
use candor::backend::{BackendChoice, DeviceInfo};
use candor::bench::hardware::accelerator;
use common::gpu::gpus_or_skip;

#[test]
fn device_copy_bandwidth_is_plausible_and_repeatable() {
    let Some(gpus) = gpus_or_skip() else {
        return;
    };
    let a = device_bandwidth_gbs(0).expect("probe GPU 0");
    let b = device_bandwidth_gbs(0).expect("probe GPU 0 again");
    // The GPUs candor's kernels run on (sm_80 and newer) have 200 GB/s (small parts) to 8 TB/s
    // (B200) of memory bandwidth; a copy reaches most of it, and never more.
    for gbs in [a, b] {
        assert!(gbs > 100.0 && gbs < 10_000.0, "{gbs} GB/s");
    }
    // Best of several passes: two probes agree within a factor of 1.5 even on a shared GPU.
    assert!(a / b < 1.5 && b / a < 1.5, "{a} vs {b} GB/s");
    // A device past the last is an error, not a panic.
    let past = device_bandwidth_gbs(gpus.len()).unwrap_err().to_string();
    assert!(past.contains("does not exist"), "{past}");
}

#[test]
fn the_fingerprint_names_the_gpu_its_driver_and_compute_capability() {
    let Some(gpus) = gpus_or_skip() else {
        return;
    };
    let g = &gpus[0];
    // What the CUDA runner's DeviceInfo says; the driver query adds the rest.
    let info = DeviceInfo {
        name: g.name.clone(),
        vendor: Some("NVIDIA".into()),
        kind: "cuda".into(),
        memory_total_bytes: Some(g.memory_total_bytes),
        memory_free_bytes: None,
        features: vec!["activations f32".into()],
        threads: None,
    };
    let a = accelerator(&BackendChoice::Cuda(0), &info).expect("an accelerator");
    assert_eq!((a.kind.as_str(), a.index), ("cuda", Some(0)));
    assert_eq!(a.name, g.name);
    assert_eq!(a.memory_bytes, Some(g.memory_total_bytes));
    let (major, minor) = g.compute_capability;
    assert_eq!(
        a.compute_capability.as_deref(),
        Some(format!("{major}.{minor}").as_str())
    );
    assert!(a.driver_version.as_deref().is_some_and(|v| v.contains('.')));
    assert_eq!(a.multiprocessors, Some(g.multiprocessors));
    assert_eq!(a.details, ["activations f32"]);
}
