//! The machine a result was measured on: CPU model and ISA flags, cores, memory, a measured
//! host memory bandwidth (decode speed on CPU is bounded by it, so reports need it), and the
//! accelerator when the run used one (GPU name, memory, driver, compute capability) with its
//! measured device bandwidth.
use crate::backend::{cpu, cuda, BackendChoice, DeviceInfo};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Hardware {
    pub cpu_model: String,
    pub arch: &'static str,
    pub isa_flags: Vec<String>,
    pub logical_cores: usize,
    pub memory_total_bytes: Option<u64>,
    pub os: &'static str,
    /// STREAM-like triad bandwidth over buffers far larger than the caches, in GB/s (1e9 B/s);
    /// None where not measured (the load generator's machine of a `--serve` run).
    pub host_bandwidth_gbs: Option<f64>,
    /// The accelerator the run computed on; None on the CPU backend.
    pub gpu: Option<Accelerator>,
    /// Its device-to-device copy bandwidth, GB/s (CUDA only: see `backend::cuda::bandwidth`).
    pub device_bandwidth_gbs: Option<f64>,
}

/// A GPU (CUDA) or a plugin's device, as far as its backend describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accelerator {
    /// `cuda` or `plugin`.
    pub kind: String,
    /// The CUDA device ordinal (`--backend cuda:N`).
    pub index: Option<usize>,
    pub name: String,
    pub vendor: Option<String>,
    pub memory_bytes: Option<u64>,
    /// The CUDA version the driver supports, e.g. "13.0".
    pub driver_version: Option<String>,
    /// e.g. "9.0" for an H100.
    pub compute_capability: Option<String>,
    pub multiprocessors: Option<u32>,
    /// The backend's own description: compute capability and activation dtype for CUDA, the
    /// plugin ABI and the weight types it keeps on the device.
    pub details: Vec<String>,
}

/// The accelerator behind `choice` as its runner describes it (`device`); for CUDA completed by
/// the driver query of `candor devices`. None for the CPU backend.
pub fn accelerator(choice: &BackendChoice, device: &DeviceInfo) -> Option<Accelerator> {
    let base = Accelerator {
        kind: device.kind.clone(),
        index: None,
        name: device.name.clone(),
        vendor: device.vendor.clone(),
        memory_bytes: device.memory_total_bytes,
        driver_version: None,
        compute_capability: None,
        multiprocessors: None,
        details: device.features.clone(),
    };
    match choice {
        BackendChoice::Cpu => None,
        BackendChoice::Plugin(_) => Some(base),
        BackendChoice::Cuda(ordinal) => match cuda::gpu_info(*ordinal) {
            Ok(g) => Some(Accelerator {
                index: Some(g.ordinal),
                name: g.name,
                memory_bytes: Some(g.memory_total_bytes),
                driver_version: Some(g.driver_version),
                compute_capability: Some(format!(
                    "{}.{}",
                    g.compute_capability.0, g.compute_capability.1
                )),
                multiprocessors: Some(g.multiprocessors),
                ..base
            }),
            Err(e) => {
                // The backend opened this GPU moments ago, so this is unexpected; the runner's
                // own description still names it.
                eprintln!("candor: GPU {ordinal} facts for the result: {e}");
                Some(Accelerator {
                    index: Some(*ordinal),
                    ..base
                })
            }
        },
    }
}

fn meminfo_total() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

/// Triad `a[i] = b[i] + s * c[i]` over 3 × 64 MiB with rayon (as many threads as the pool
/// has): best of a few passes, counting 3 arrays of traffic per pass (STREAM's convention).
pub fn triad_bandwidth_gbs() -> f64 {
    use rayon::prelude::*;
    const N: usize = 8 << 20; // f64 elements per array: 64 MiB
    let b = vec![1.0f64; N];
    let c = vec![2.0f64; N];
    let mut a = vec![0.0f64; N];
    let mut best = f64::INFINITY;
    for pass in 0..5 {
        let s = 3.0 + pass as f64;
        let t0 = Instant::now();
        a.par_chunks_mut(1 << 16)
            .zip(b.par_chunks(1 << 16))
            .zip(c.par_chunks(1 << 16))
            .for_each(|((a, b), c)| {
                for i in 0..a.len() {
                    a[i] = b[i] + s * c[i];
                }
            });
        best = best.min(t0.elapsed().as_secs_f64());
    }
    std::hint::black_box(&a);
    (3 * N * std::mem::size_of::<f64>()) as f64 / best / 1e9
}

/// Fingerprint this machine's host (CPU, memory), with its measured bandwidth when there is one
/// (see [`triad_bandwidth_gbs`]); no accelerator yet.
pub fn fingerprint(host_bandwidth_gbs: Option<f64>) -> Hardware {
    Hardware {
        cpu_model: cpu::cpu_model_name(),
        arch: std::env::consts::ARCH,
        isa_flags: cpu::cpu_features(),
        logical_cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_total_bytes: meminfo_total(),
        os: std::env::consts::OS,
        host_bandwidth_gbs,
        gpu: None,
        device_bandwidth_gbs: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_the_cpu_whatever_the_backend() {
        let h = fingerprint(None);
        assert_eq!(h.cpu_model, cpu::cpu_model_name());
        assert!(h.logical_cores >= 1 && h.gpu.is_none() && h.host_bandwidth_gbs.is_none());
        let v = serde_json::to_value(&h).unwrap();
        // Absent facts are written as null, not left out.
        assert!(v["gpu"].is_null() && v["device_bandwidth_gbs"].is_null());
    }

    #[test]
    fn plugins_are_described_by_their_backend_and_the_cpu_by_nothing() {
        let info = DeviceInfo {
            name: "Ascend 910B2".into(),
            vendor: Some("Huawei".into()),
            kind: "plugin".into(),
            memory_total_bytes: Some(64 << 30),
            memory_free_bytes: Some(60 << 30),
            features: vec!["abi 1.0".into(), "Q8_0".into()],
            threads: None,
        };
        let a = accelerator(&BackendChoice::Plugin("/x/libascend.so".into()), &info).unwrap();
        assert_eq!(
            (a.kind.as_str(), a.name.as_str(), a.vendor.as_deref()),
            ("plugin", "Ascend 910B2", Some("Huawei"))
        );
        assert_eq!(a.memory_bytes, Some(64 << 30));
        assert_eq!(a.details, ["abi 1.0", "Q8_0"]);
        assert!(a.index.is_none() && a.compute_capability.is_none());
        assert!(accelerator(&BackendChoice::Cpu, &info).is_none());
        // Without CUDA the driver query fails; the runner's description and the ordinal stay.
        #[cfg(not(feature = "cuda"))]
        {
            let g = accelerator(&BackendChoice::Cuda(1), &info).unwrap();
            assert_eq!((g.index, g.name.as_str()), (Some(1), "Ascend 910B2"));
            assert!(g.driver_version.is_none());
        }
    }

    #[test]
    fn bandwidth_probe_gives_a_plausible_number() {
        let gbs = triad_bandwidth_gbs();
        assert!(gbs.is_finite() && gbs > 0.1 && gbs < 10_000.0, "{gbs}");
    }
}
