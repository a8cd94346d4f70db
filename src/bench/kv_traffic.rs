//! KV-cache bytes a decode step reads. Each new token attends over every cached position of its
//! sequence (within a layer's sliding window), so decode reads the sequence's K and V besides the
//! weights; reports add these bytes to the weight bytes in decode MBU.
//!
//! Convention (stated in docs/bench-json.md and the report's method): a decode test of `n` steps
//! after `depth` cached tokens has step k (0-based) attend over `depth + k + 1` keys (the new
//! token's own included), so a global layer reads on average `depth + (n + 1) / 2` positions per
//! step; a layer with window W reads `min(depth + k + 1, W)` at step k. The prompt of a prefill
//! test is not part of a decode test's context (decode tests start from `depth` alone, as
//! llama-bench's tg does).
use candor_models::ModelSpec;
use serde::{Deserialize, Serialize};

/// The shape of a KV cache as a result document records it (`kv_cache`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Bytes per K or V value as the backend stored the cache (4 for f32, 1.0625 for q8_0's
    /// blocks of 32 bytes and an f16 scale).
    pub element_bytes: f64,
    /// Sliding window of each layer (null: global attention); empty means all global.
    #[serde(default)]
    pub layer_windows: Vec<Option<usize>>,
}

impl KvShape {
    /// The cache of a model whose backend stores `element_bytes` per K or V value. A short-
    /// convolution layer (LFM2) keeps its inputs in the K and V halves of cache layers of its
    /// own (`ModelSpec::cache_layers`) and a step reads `kernel` positions of them: each is
    /// a layer with a window of `kernel` here.
    pub fn of_model(spec: &ModelSpec, element_bytes: f64) -> Self {
        let cache = spec.cache_layers();
        let mut layer_windows = vec![None; cache.total];
        for (l, &first) in cache.first.iter().enumerate() {
            let end = cache.first.get(l + 1).copied().unwrap_or(cache.total);
            let window = match &spec.short_conv {
                Some(c) if c.layers.get(l) == Some(&true) => Some(c.kernel),
                _ => spec.layer_windows.get(l).copied().flatten(),
            };
            layer_windows[first..end].fill(window);
        }
        KvShape {
            layers: cache.total,
            kv_heads: spec.num_kv_heads,
            head_dim: spec.head_dim,
            element_bytes,
            layer_windows,
        }
    }

    /// A document's shape must describe each layer at most once.
    pub fn check(&self) -> Result<(), String> {
        if !self.layer_windows.is_empty() && self.layer_windows.len() != self.layers {
            return Err(format!(
                "kv_cache.layer_windows has {} entries for {} layers",
                self.layer_windows.len(),
                self.layers
            ));
        }
        Ok(())
    }

    /// K and V bytes of one cached position in one layer.
    pub fn bytes_per_position(&self) -> f64 {
        2.0 * self.kv_heads as f64 * self.head_dim as f64 * self.element_bytes
    }

    /// Mean KV bytes one sequence reads per step over `n` decode steps after `depth` tokens.
    pub fn decode_bytes_per_sequence(&self, depth: usize, n: usize) -> f64 {
        // All-global caches multiply rather than iterate: `layers` comes from a file.
        let positions: f64 = if self.layer_windows.is_empty() {
            self.layers as f64 * mean_keys(depth, n, None)
        } else {
            self.layer_windows
                .iter()
                .map(|&w| mean_keys(depth, n, w))
                .sum()
        };
        positions * self.bytes_per_position()
    }
}

/// Mean over steps k = 0..n of the keys step k attends to: `min(depth + k + 1, window)`.
/// Closed form (in f64: shapes come from files and must not overflow).
pub fn mean_keys(depth: usize, n: usize, window: Option<usize>) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (d, n) = (depth as f64, n as f64);
    // Sum of c for c in a..=b.
    let span = |a: f64, b: f64| (a + b) * (b - a + 1.0) / 2.0;
    let sum = match window.map(|w| w as f64) {
        Some(w) if w <= d + 1.0 => n * w,
        Some(w) if w < d + n => span(d + 1.0, w) + (d + n - w) * w,
        _ => span(d + 1.0, d + n),
    };
    sum / n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, step by step.
    fn mean_keys_by_steps(depth: usize, n: usize, window: Option<usize>) -> f64 {
        let total: usize = (0..n)
            .map(|k| {
                let keys = depth + k + 1;
                window.map_or(keys, |w| keys.min(w))
            })
            .sum();
        total as f64 / n as f64
    }

    /// LFM2's convolutions: 96 channels in cache rows of 2 x 16 fill two cache layers each, and
    /// a step reads three positions of them (the kernel); the attention layer reads them all.
    #[test]
    fn short_convolutions_read_their_kernel_of_positions() {
        let cfg = serde_json::json!({
            "model_type": "lfm2", "vocab_size": 64, "hidden_size": 96, "num_hidden_layers": 3,
            "num_attention_heads": 6, "num_key_value_heads": 2, "block_ff_dim": 96,
            "layer_types": ["conv", "full_attention", "conv"],
        });
        let spec =
            candor_models::arch::lfm2::from_hf(&candor_models::spec::HfConfig(&cfg)).unwrap();
        let kv = KvShape::of_model(&spec, 2.0);
        assert_eq!(kv.layers, 5);
        assert_eq!(kv.layer_windows, [Some(3), Some(3), None, Some(3), Some(3)]);
        kv.check().unwrap();
        let per_position = 2.0 * 32.0 * 2.0;
        let want = (4.0 * 3.0 + mean_keys(100, 10, None)) * per_position;
        assert!((kv.decode_bytes_per_sequence(100, 10) - want).abs() < 1e-6);
    }

    #[test]
    fn closed_form_matches_the_steps_for_every_window_position() {
        for depth in [0, 1, 5, 100, 511, 512, 4096] {
            for n in [1, 2, 7, 64, 128, 1000] {
                for window in [None, Some(1), Some(4), Some(64), Some(512), Some(100_000)] {
                    let (a, b) = (
                        mean_keys(depth, n, window),
                        mean_keys_by_steps(depth, n, window),
                    );
                    assert!((a - b).abs() < 1e-9, "d{depth} n{n} {window:?}: {a} vs {b}");
                }
            }
        }
        assert_eq!(mean_keys(0, 0, None), 0.0);
        // A global layer: depth + (n + 1) / 2.
        assert_eq!(mean_keys(512, 128, None), 512.0 + 64.5);
    }

    #[test]
    fn decode_reads_k_and_v_of_every_layer_within_its_window() {
        // Qwen2.5-0.5B: 24 layers, 2 KV heads of 64, f32 → 1 KiB per position per layer.
        let qwen = KvShape {
            layers: 24,
            kv_heads: 2,
            head_dim: 64,
            element_bytes: 4.0,
            layer_windows: Vec::new(),
        };
        assert_eq!(qwen.bytes_per_position(), 1024.0);
        // tg128 at depth 0: 64.5 positions on average, in 24 layers.
        assert_eq!(qwen.decode_bytes_per_sequence(0, 128), 24.0 * 64.5 * 1024.0);
        // The same cache at f16 reads half.
        let f16 = KvShape {
            element_bytes: 2.0,
            ..qwen.clone()
        };
        assert_eq!(
            f16.decode_bytes_per_sequence(300, 10) * 2.0,
            qwen.decode_bytes_per_sequence(300, 10)
        );
        // One global and one windowed (W = 4) layer at depth 10: 15.5 + 4 positions.
        let mixed = KvShape {
            layers: 2,
            kv_heads: 1,
            head_dim: 1,
            element_bytes: 1.0,
            layer_windows: vec![None, Some(4)],
        };
        assert_eq!(mixed.decode_bytes_per_sequence(10, 10), 2.0 * (15.5 + 4.0));
        assert!(mixed.check().is_ok());
        let bad = KvShape { layers: 3, ..mixed };
        assert!(bad.check().unwrap_err().contains("2 entries for 3 layers"));
        // Absurd shapes from a file give absurd numbers, not a hang or an overflow.
        let absurd = KvShape {
            layers: usize::MAX,
            kv_heads: usize::MAX,
            layer_windows: Vec::new(),
            ..qwen
        };
        assert!(absurd.decode_bytes_per_sequence(usize::MAX, usize::MAX) > 1e60);
    }
}
