//! The machine a result was measured on: CPU model and ISA flags, cores, memory, and a measured
//! host memory bandwidth (decode speed on CPU is bounded by it, so reports need it).
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
    /// STREAM-like triad bandwidth over buffers far larger than the caches, in GB/s (1e9 B/s).
    pub host_bandwidth_gbs: f64,
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

/// Fingerprint this machine, given the compute device's own description and the measured
/// bandwidth (see [`triad_bandwidth_gbs`]).
pub fn fingerprint(cpu_model: &str, isa_flags: &[String], host_bandwidth_gbs: f64) -> Hardware {
    Hardware {
        cpu_model: cpu_model.to_string(),
        arch: std::env::consts::ARCH,
        isa_flags: isa_flags.to_vec(),
        logical_cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_total_bytes: meminfo_total(),
        os: std::env::consts::OS,
        host_bandwidth_gbs,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bandwidth_probe_gives_a_plausible_number() {
        let gbs = super::triad_bandwidth_gbs();
        assert!(gbs.is_finite() && gbs > 0.1 && gbs < 10_000.0, "{gbs}");
    }
}
