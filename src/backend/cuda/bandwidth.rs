//! Device memory bandwidth of a GPU, measured: a buffer copied device-to-device repeatedly on one
//! stream, timed with CUDA events, counting the bytes read and the bytes written (the convention
//! of NVIDIA's bandwidthTest and of STREAM's copy). The best of a few passes is kept: on a busy
//! machine the best pass is the closest to what the memory can do. Decode on a GPU is bounded by
//! this number, so benchmark reports use it as the measured bandwidth roof.
//!
//! The sizing and the arithmetic are host code, built and tested in every build; the probe
//! itself only with the `cuda` feature.

/// Copies timed per pass.
pub const COPIES_PER_PASS: usize = 8;
/// Timed passes; the fastest counts.
pub const PASSES: usize = 5;
/// Largest buffer copied: far beyond any GPU's L2 cache (50 MiB on an H100), so the copies run
/// from and to device memory.
pub const MAX_PROBE_BYTES: u64 = 1 << 30;
/// Smallest buffer worth timing: below this the L2 cache would serve much of it.
pub const MIN_PROBE_BYTES: u64 = 256 << 20;

/// Bytes of each of the two probe buffers, given the device's free memory: at most a quarter of
/// it, whole MiB. None when the device has too little free memory for a meaningful probe.
pub fn probe_bytes(free_bytes: u64) -> Option<u64> {
    let bytes = (free_bytes / 4).min(MAX_PROBE_BYTES) & !((1 << 20) - 1);
    (bytes >= MIN_PROBE_BYTES).then_some(bytes)
}

/// GB/s (1e9 bytes/s) of `copies` copies of `bytes` in `seconds`: each copy reads and writes
/// `bytes`.
pub fn copy_gbs(bytes: u64, copies: usize, seconds: f64) -> f64 {
    2.0 * bytes as f64 * copies as f64 / seconds / 1e9
}

#[cfg(feature = "cuda")]
pub use probe::measure;

#[cfg(feature = "cuda")]
mod probe {
    use super::super::error::CudaError;
    use super::{copy_gbs, probe_bytes, COPIES_PER_PASS, PASSES};
    use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext, DriverError};

    fn driver(e: DriverError) -> CudaError {
        CudaError::Driver(e.to_string())
    }

    /// The device-to-device copy bandwidth of GPU `ordinal` in GB/s.
    pub fn measure(ordinal: usize) -> Result<f64, CudaError> {
        super::super::device::gpu_info(ordinal)?;
        let ctx = CudaContext::new(ordinal).map_err(driver)?;
        let (free, _) = ctx.mem_get_info().map_err(driver)?;
        let bytes = probe_bytes(free as u64).ok_or_else(|| {
            CudaError::Launch(format!(
                "bandwidth probe: {free} bytes free on GPU {ordinal} are too few"
            ))
        })?;
        let stream = ctx.default_stream();
        let src = stream.alloc_zeros::<u8>(bytes as usize).map_err(driver)?;
        let mut dst = stream.alloc_zeros::<u8>(bytes as usize).map_err(driver)?;
        // Untimed: the first copy pays for page mapping and clock ramp-up.
        stream.memcpy_dtod(&src, &mut dst).map_err(driver)?;
        stream.synchronize().map_err(driver)?;
        let timing = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
        let mut best = f64::INFINITY;
        for _ in 0..PASSES {
            let start = stream.record_event(timing).map_err(driver)?;
            for _ in 0..COPIES_PER_PASS {
                stream.memcpy_dtod(&src, &mut dst).map_err(driver)?;
            }
            let end = stream.record_event(timing).map_err(driver)?;
            // elapsed_ms waits for both events.
            let ms = start.elapsed_ms(&end).map_err(driver)?;
            best = best.min(f64::from(ms) / 1e3);
        }
        if !(best.is_finite() && best > 0.0) {
            return Err(CudaError::Launch(format!(
                "bandwidth probe: a pass took {best} s"
            )));
        }
        Ok(copy_gbs(bytes, COPIES_PER_PASS, best))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_uses_a_quarter_of_free_memory_up_to_1_gib() {
        // An H200 with 140 GB free: 1 GiB buffers.
        assert_eq!(probe_bytes(140_000_000_000), Some(1 << 30));
        // 2 GiB free: 512 MiB each.
        assert_eq!(probe_bytes(2 << 30), Some(512 << 20));
        // Rounded down to whole MiB.
        assert_eq!(probe_bytes((2 << 30) + 12345), Some(512 << 20));
        // Under 1 GiB free the buffers would fit in caches' reach or crowd the model out.
        assert_eq!(probe_bytes(1000 << 20), None);
        assert_eq!(probe_bytes(0), None);
    }

    #[test]
    fn a_copy_counts_its_read_and_its_write() {
        // 8 copies of 1 GiB in 4 ms: 2 × 8 × 2^30 B / 0.004 s = 4295 GB/s (an H200 is ~4.8 TB/s).
        let gbs = copy_gbs(1 << 30, 8, 0.004);
        assert!((gbs - 4294.967296).abs() < 1e-6, "{gbs}");
    }
}
