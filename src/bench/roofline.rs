//! Roofline arithmetic: how much of a device's memory bandwidth a decode step used (MBU) and how
//! much of its peak arithmetic a prefill used (MFU).
//!
//! Conventions (stated in every report):
//! - FLOPs per token = 2 × parameters (one multiply and one add per weight; Kaplan et al. 2020,
//!   the convention of PaLM's MFU). Attention's score and value products (4 × layers × context ×
//!   attention width per token) are not counted, so MFU is slightly understated at long context;
//!   the embedding table is counted although a prefill computes logits for its last token only,
//!   which overstates MFU for small models with large vocabularies.
//! - Bytes per decoded token = (weight bytes + batch × KV bytes read per sequence) / batch: a step
//!   reads every weight once for the whole batch, and each sequence's own cache (its mean over a
//!   test's steps: [`super::kv_traffic`]). Prefill counts the weights only: its attention's
//!   cache reads are not modelled (prefill is judged by MFU).
//! - Units: tokens/s, bytes, bytes/s, FLOP/s. Integer peaks count operations like FLOPs.

/// FLOPs one token costs in a forward pass: 2 per parameter.
pub fn flops_per_token(parameters: f64) -> f64 {
    2.0 * parameters
}

/// Bytes read from memory per generated token when `batch` sequences decode together.
pub fn decode_bytes_per_token(weight_bytes: f64, kv_bytes_per_sequence: f64, batch: usize) -> f64 {
    let b = batch.max(1) as f64;
    (weight_bytes + b * kv_bytes_per_sequence) / b
}

/// Bytes read per prompt token when a prefill runs in chunks of `chunk` tokens: the weights once
/// per chunk.
pub fn prefill_bytes_per_token(weight_bytes: f64, chunk: usize) -> f64 {
    weight_bytes / chunk.max(1) as f64
}

/// Model bandwidth utilisation: bytes the tokens required per second over the bandwidth.
pub fn mbu(tok_s: f64, bytes_per_token: f64, bandwidth_bytes_s: f64) -> f64 {
    tok_s * bytes_per_token / bandwidth_bytes_s
}

/// Model FLOP utilisation: FLOPs the tokens required per second over the peak.
pub fn mfu(tok_s: f64, flops_per_token: f64, peak_flops: f64) -> f64 {
    tok_s * flops_per_token / peak_flops
}

/// Arithmetic intensity, FLOP per byte moved.
pub fn intensity(flops_per_token: f64, bytes_per_token: f64) -> f64 {
    flops_per_token / bytes_per_token
}

/// The roof: FLOP/s attainable at an intensity, min(peak, bandwidth × intensity). Without a
/// peak only the bandwidth slope bounds it.
pub fn attainable(peak_flops: Option<f64>, bandwidth_bytes_s: f64, intensity: f64) -> f64 {
    let slope = bandwidth_bytes_s * intensity;
    peak_flops.map_or(slope, |p| p.min(slope))
}

/// The intensity above which a device is compute-bound (the ridge point).
pub fn ridge(peak_flops: f64, bandwidth_bytes_s: f64) -> f64 {
    peak_flops / bandwidth_bytes_s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_mbu_counts_weights_once_per_step_and_kv_per_sequence() {
        // 0.5 GB of weights at 50 tok/s on a 50 GB/s machine: half the bandwidth.
        let bytes = decode_bytes_per_token(0.5e9, 0.0, 1);
        assert_eq!(bytes, 0.5e9);
        assert!((mbu(50.0, bytes, 50e9) - 0.5).abs() < 1e-12);
        // 16 sequences share the weights; each reads its own 1 MB of cache.
        let b16 = decode_bytes_per_token(0.5e9, 1e6, 16);
        assert!((b16 - (0.5e9 / 16.0 + 1e6)).abs() < 1e-3);
        assert!((mbu(400.0, b16, 50e9) - 400.0 * b16 / 50e9).abs() < 1e-12);
        assert_eq!(decode_bytes_per_token(1.0, 0.0, 0), 1.0);
    }

    #[test]
    fn decode_mbu_adds_each_sequences_mean_kv_read_to_the_weights() {
        let kv = crate::bench::kv_traffic::KvShape {
            layers: 24,
            kv_heads: 2,
            head_dim: 64,
            element_bytes: 4.0,
            layer_windows: Vec::new(),
        };
        // tg128 at depth 1024: 1088.5 positions × 24 layers × 1 KiB = 26.75 MB per sequence.
        let per_seq = kv.decode_bytes_per_sequence(1024, 128);
        assert_eq!(per_seq, 1088.5 * 24.0 * 1024.0);
        let weights = 491.4e6;
        let b1 = decode_bytes_per_token(weights, per_seq, 1);
        assert_eq!(b1, weights + per_seq);
        // At batch 16 the weights are shared but each sequence still reads its own cache.
        let b16 = decode_bytes_per_token(weights, per_seq, 16);
        assert!((b16 - (weights / 16.0 + per_seq)).abs() < 1e-6);
        // 20 tok/s on 40 GB/s: weights alone would say 24.6%, with the cache 25.9%.
        assert!((mbu(20.0, weights, 40e9) - 0.2457).abs() < 1e-12);
        assert!((mbu(20.0, b1, 40e9) - (20.0 * (weights + per_seq) / 40e9)).abs() < 1e-15);
        assert!(mbu(20.0, b1, 40e9) > 0.259 && mbu(20.0, b1, 40e9) < 0.2591);
    }

    #[test]
    fn prefill_mfu_uses_two_flops_per_parameter() {
        let f = flops_per_token(630e6);
        assert_eq!(f, 1.26e9);
        // 100 tok/s × 1.26 GFLOP on a 1 TFLOPS device: 12.6%.
        assert!((mfu(100.0, f, 1e12) - 0.126).abs() < 1e-12);
    }

    #[test]
    fn roof_is_bandwidth_slope_then_flat_peak() {
        let (peak, bw) = (989.5e12, 3.35e12);
        let r = ridge(peak, bw);
        assert!((r - 295.373).abs() < 1e-3);
        assert_eq!(attainable(Some(peak), bw, 1.0), bw);
        assert_eq!(attainable(Some(peak), bw, 1000.0), peak);
        assert_eq!(attainable(None, bw, 1000.0), bw * 1000.0);
        // Batch-1 decode of a 4-bit model: ~2 params per byte → ~4 FLOP/byte, far below the ridge.
        let i = intensity(
            flops_per_token(630e6),
            decode_bytes_per_token(491e6, 0.0, 1),
        );
        assert!(i > 2.0 && i < 3.0 && i < r, "{i}");
        assert_eq!(prefill_bytes_per_token(512.0, 128), 4.0);
    }
}
