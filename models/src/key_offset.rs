//! The vector a quantized KV cache subtracts from a layer's keys before rounding them.
//!
//! Subtracting one vector `c` from every key a query sees shifts all its scores by the same
//! `q · c`, which the softmax cancels: attention over `k − c` is attention over `k`, exactly,
//! for any `c` (not where scores are capped by a tanh, or a sink logit joins them at a fixed
//! level; those layers get none). What `c` changes is how well a cache that rounds each key
//! row with one scale per block (q8_0) keeps it. Models with q/k biases put large, nearly
//! constant values in a few key channels (Qwen2.5-0.5B's first layers: |b| up to 158 where the
//! median is ~1), and one such channel sets the step of its whole block. RoPE turns the bias of
//! a channel pair by the position's angle, so the constant part left is the bias's mean turn
//! over the context: nearly all of it for the slow pairs, where those biases sit, nearly
//! nothing for the fast ones. That mean is `c`.
use crate::backend::{RopeSpec, RopeStyle};
use crate::spec::ModelSpec;

/// Whether a model's attention is exact over shifted keys: no q/k norms (the bias is not what
/// reaches RoPE), no capped scores, no sinks.
pub fn applies(spec: &ModelSpec) -> bool {
    !spec.qk_norm && !spec.rotated_qk_l2_norm && spec.attn_softcap.is_none() && !spec.attn_sinks
}

/// `c` for each KV head of a layer whose pre-RoPE key bias is `bias` (`kv_heads × head_dim`):
/// the mean over positions `0..positions` of the bias rotated as `rope` rotates keys (an
/// approximation of the keys' constant part; any vector would keep attention exact).
pub fn key_offset(bias: &[f32], rope: &RopeSpec, head_dim: usize, positions: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let n = positions.max(1) as f64;
    let mut out = bias.to_vec();
    if half == 0 || rope.inv_freq.len() < half {
        return out;
    }
    for head in out.chunks_exact_mut(head_dim) {
        for (i, &freq) in rope.inv_freq.iter().take(half).enumerate() {
            let (a, b) = match rope.style {
                RopeStyle::Neox => (i, i + half),
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            };
            let (cos, sin) = mean_turn(freq as f64, n);
            let (x, y) = (head[a] as f64, head[b] as f64);
            head[a] = (x * cos - y * sin) as f32;
            head[b] = (x * sin + y * cos) as f32;
        }
    }
    out
}

/// The mean of `(cos θp, sin θp)` over `p = 0..n`: `Σ e^{iθp} = e^{iθ(n−1)/2} · sin(nθ/2) /
/// sin(θ/2)`, divided by n.
fn mean_turn(theta: f64, n: f64) -> (f64, f64) {
    let half = theta / 2.0;
    if half.sin().abs() < 1e-12 {
        return (1.0, 0.0);
    }
    let amplitude = (n * half).sin() / (n * half.sin());
    let centre = half * (n - 1.0);
    (centre.cos() * amplitude, centre.sin() * amplitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(inv_freq: Vec<f32>, style: RopeStyle) -> RopeSpec {
        RopeSpec {
            inv_freq,
            style,
            mscale: 1.0,
        }
    }

    /// The closed form against the sum it stands for.
    #[test]
    fn the_mean_turn_is_the_mean_of_the_rotations() {
        for (theta, n) in [(0.3f64, 7usize), (1e-4, 4096), (2.5, 100), (0.0, 5)] {
            let (c, s) = mean_turn(theta, n as f64);
            let want_c = (0..n).map(|p| (theta * p as f64).cos()).sum::<f64>() / n as f64;
            let want_s = (0..n).map(|p| (theta * p as f64).sin()).sum::<f64>() / n as f64;
            assert!(
                (c - want_c).abs() < 1e-9 && (s - want_s).abs() < 1e-9,
                "{theta} {n}"
            );
        }
    }

    /// A pair that barely turns keeps its bias; one that turns fast keeps almost none; each
    /// style pairs its own channels; every head gets the same treatment.
    #[test]
    fn slow_pairs_keep_their_bias_and_fast_ones_lose_it() {
        let bias = [1.0, 100.0, 2.0, -50.0, 1.0, 100.0, 2.0, -50.0];
        let neox = key_offset(&bias, &rope(vec![3.0, 1e-7], RopeStyle::Neox), 4, 32768);
        // Neox pairs (0, 2) fast and (1, 3) slow.
        for head in neox.chunks_exact(4) {
            assert!(head[0].abs() < 0.01 && head[2].abs() < 0.01, "{neox:?}");
            assert!(
                (head[1] - 100.0).abs() < 0.5 && (head[3] + 50.0).abs() < 0.5,
                "{neox:?}"
            );
        }
        let inter = key_offset(
            &bias,
            &rope(vec![3.0, 1e-7], RopeStyle::Interleaved),
            4,
            32768,
        );
        // Interleaved pairs (0, 1) fast and (2, 3) slow.
        assert!(inter[0].abs() < 0.01 && inter[1].abs() < 0.01, "{inter:?}");
        assert!(
            // Turned by the mean angle, 1.6e-3: the 50 moves the 2 by 0.08.
            (inter[2] - 2.0).abs() < 0.1 && (inter[3] + 50.0).abs() < 0.01,
            "{inter:?}"
        );
        assert_eq!(&inter[..4], &inter[4..]);
    }
}
