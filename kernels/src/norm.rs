//! RMSNorm, alone or fused with the residual add that precedes it in every pre-norm block, and
//! the LayerNorm of the families that center their rows first (Cohere's Command R).
use crate::rows::for_each_row;

/// `out[r] = x[r] / rms(x[r]) * w` for every `w.len()`-wide row (f32 accumulation of the mean
/// square, as HF computes it in float32).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(
        x.len(),
        out.len(),
        "rms_norm: input and output sizes differ"
    );
    let cols = w.len();
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "rms_norm: rows of {cols}"
    );
    for_each_row(out, cols, |r, o| {
        normalize(&x[r * cols..(r + 1) * cols], w, eps, o)
    });
}

/// `sum = x + residual`, then `normed = rms_norm(sum)`, in one pass over each row.
pub fn add_rms_norm(
    x: &[f32],
    residual: &[f32],
    w: &[f32],
    eps: f32,
    sum: &mut [f32],
    normed: &mut [f32],
) {
    let cols = w.len();
    assert!(
        x.len() == residual.len() && x.len() == sum.len() && x.len() == normed.len(),
        "add_rms_norm: sizes differ"
    );
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "add_rms_norm: rows of {cols}"
    );
    // Sum first (row-parallel over `sum`), then normalize from it (row-parallel over `normed`).
    for_each_row(sum, cols, |r, s| {
        let at = r * cols;
        for ((s, a), b) in s
            .iter_mut()
            .zip(&x[at..at + cols])
            .zip(&residual[at..at + cols])
        {
            *s = a + b;
        }
    });
    let sum = &*sum;
    for_each_row(normed, cols, |r, o| {
        normalize(&sum[r * cols..(r + 1) * cols], w, eps, o)
    });
}

/// `out[r] = (x[r] - mean(x[r])) / sqrt(var(x[r]) + eps) * w + bias` for every `w.len()`-wide
/// row: LayerNorm with the biased variance, in f32 as transformers computes it (Cohere's
/// `CohereLayerNorm` upcasts to float32). `bias` None: no bias (Cohere's have none).
pub fn layer_norm(x: &[f32], w: &[f32], bias: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    assert_eq!(
        x.len(),
        out.len(),
        "layer_norm: input and output sizes differ"
    );
    let cols = w.len();
    assert!(
        cols > 0 && x.len().is_multiple_of(cols) && bias.is_none_or(|b| b.len() == cols),
        "layer_norm: rows of {cols}, bias of {:?}",
        bias.map(<[f32]>::len)
    );
    for_each_row(out, cols, |r, o| {
        let row = &x[r * cols..(r + 1) * cols];
        let mean = lane_sum(row.iter().copied()) / cols as f32;
        // Two passes (mean, then the centered squares) rather than E[x²] - E[x]²: the residual
        // stream's rows have large means next to small spreads, where the difference cancels.
        let var = lane_sum(row.iter().map(|v| (v - mean) * (v - mean))) / cols as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((o, v), g) in o.iter_mut().zip(row).zip(w) {
            *o = (v - mean) * inv * g;
        }
        if let Some(bias) = bias {
            o.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
        }
    });
}

/// A sum in eight independent partial sums, so that it vectorizes.
#[inline]
fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut acc = [0f32; 8];
    for (i, v) in values.enumerate() {
        acc[i % 8] += v;
    }
    acc.iter().sum()
}

#[inline]
fn normalize(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // Eight partial sums: the compiler keeps them in one vector register.
    let mut acc = [0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    let mean = (acc.iter().sum::<f32>() + tail) / x.len() as f32;
    let inv = 1.0 / (mean + eps).sqrt();
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = v * inv * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        x.chunks(w.len())
            .flat_map(|row| {
                let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len() as f64;
                let inv = 1.0 / (ms + eps as f64).sqrt();
                row.iter()
                    .zip(w)
                    .map(move |(&v, &g)| (v as f64 * inv * g as f64) as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn matches_a_double_precision_reference_at_odd_and_large_sizes() {
        for (rows, cols) in [(1, 1), (3, 7), (2, 640), (200, 896)] {
            let x: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..cols).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
            let mut out = vec![0f32; rows * cols];
            rms_norm(&x, &w, 1e-6, &mut out);
            let want = reference(&x, &w, 1e-6);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
            }
            let r: Vec<f32> = x.iter().map(|v| v * 0.5 - 1.0).collect();
            let (mut sum, mut normed) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            add_rms_norm(&x, &r, &w, 1e-6, &mut sum, &mut normed);
            let s: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
            assert_eq!(sum, s);
            let want = reference(&s, &w, 1e-6);
            for (a, b) in normed.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn layer_norm_matches_a_double_precision_reference() {
        for (rows, cols) in [(1, 1), (3, 7), (2, 640), (100, 896)] {
            // Rows far from zero mean with a small spread: where E[x²] - E[x]² would cancel.
            let x: Vec<f32> = (0..rows * cols)
                .map(|i| 300.0 + ((i * 37 % 101) as f32 - 50.0) / 70.0)
                .collect();
            let w: Vec<f32> = (0..cols).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
            let bias: Vec<f32> = (0..cols).map(|i| (i % 3) as f32 - 1.0).collect();
            for b in [None, Some(&bias[..])] {
                let mut out = vec![0f32; rows * cols];
                layer_norm(&x, &w, b, 1e-5, &mut out);
                for (r, row) in x.chunks(cols).enumerate() {
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
                    let var =
                        row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
                    for (c, &v) in row.iter().enumerate() {
                        let want = (v as f64 - mean) / (var + 1e-5).sqrt() * w[c] as f64
                            + b.map_or(0.0, |b| b[c] as f64);
                        let got = out[r * cols + c] as f64;
                        assert!(
                            (got - want).abs() <= 2e-3 * want.abs().max(1.0),
                            "{got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_zero_row_stays_zero() {
        let mut out = vec![1f32; 8];
        rms_norm(&[0.0; 8], &[1.0; 8], 1e-6, &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }
}
