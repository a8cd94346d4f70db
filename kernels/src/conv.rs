//! LFM2's short convolution: each channel of a token's output is a weighted sum of the same
//! channel over the last `kernel` tokens of its sequence (a causal depthwise `Conv1d`), read
//! from wherever those tokens' inputs are: this step's rows or rows cached before it. The
//! caller gathers the sources and says, per token and tap, which row each tap reads.
use crate::rows::for_each_row;

/// A tap that reads nothing: a position before its sequence begins (the convolution's zero
/// padding on the left).
pub const NO_ROW: u32 = u32::MAX;

/// `out[t][c] = bias[c] + Σ_j w[j][c] · src[taps[t · kernel + j]][c]` for every token `t`,
/// with `kernel = w.len() / width` taps per token (oldest first) and `NO_ROW` taps adding
/// nothing. `src` holds `width`-wide rows; `w` is tap-major (`[kernel, width]`: the transpose of
/// PyTorch's `[width, 1, kernel]`, so a tap's weights are one contiguous run that its row is
/// multiplied by). Errors name a shape that does not fit or a tap past `src`.
pub fn short_conv(
    src: &[f32],
    width: usize,
    taps: &[u32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), String> {
    if width == 0 || !src.len().is_multiple_of(width) || !w.len().is_multiple_of(width) {
        return Err(format!(
            "short_conv: {} source values and {} weights for rows of {width}",
            src.len(),
            w.len()
        ));
    }
    let kernel = w.len() / width;
    let tokens = out.len() / width;
    if kernel == 0 || taps.len() != tokens * kernel || out.len() != tokens * width {
        return Err(format!(
            "short_conv: {} taps of a {kernel}-wide kernel for {} output values",
            taps.len(),
            out.len()
        ));
    }
    if bias.is_some_and(|b| b.len() != width) {
        return Err(format!("short_conv: a bias for rows of {width}"));
    }
    let rows = (src.len() / width) as u32;
    if let Some(bad) = taps.iter().find(|&&r| r != NO_ROW && r >= rows) {
        return Err(format!("short_conv: a tap reads row {bad} of {rows}"));
    }
    for_each_row(out, width, |t, o| {
        match bias {
            Some(b) => o.copy_from_slice(b),
            None => o.fill(0.0),
        }
        for (j, &r) in taps[t * kernel..(t + 1) * kernel].iter().enumerate() {
            if r == NO_ROW {
                continue;
            }
            let s = &src[r as usize * width..][..width];
            let wj = &w[j * width..][..width];
            for ((o, &s), &wj) in o.iter_mut().zip(s).zip(wj) {
                *o += wj * s;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same as PyTorch's causal depthwise Conv1d (padding kernel - 1, outputs cut to the
    /// input's length), written out per channel.
    fn conv1d_reference(x: &[f32], width: usize, w_torch: &[f32], kernel: usize) -> Vec<f32> {
        let tokens = x.len() / width;
        let mut out = vec![0.0; x.len()];
        for t in 0..tokens {
            for c in 0..width {
                for j in 0..kernel {
                    // Tap j reads position t - (kernel - 1) + j.
                    let Some(p) = (t + j).checked_sub(kernel - 1) else {
                        continue;
                    };
                    out[t * width + c] += w_torch[c * kernel + j] * x[p * width + c];
                }
            }
        }
        out
    }

    fn tap_major(w_torch: &[f32], width: usize, kernel: usize) -> Vec<f32> {
        (0..kernel)
            .flat_map(|j| (0..width).map(move |c| w_torch[c * kernel + j]))
            .collect()
    }

    #[test]
    fn matches_a_causal_depthwise_conv1d_over_one_sequence() {
        let (width, kernel, tokens): (usize, usize, usize) = (5, 3, 7);
        let x: Vec<f32> = (0..width * tokens)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let w_torch: Vec<f32> = (0..width * kernel)
            .map(|i| (i as f32 * 0.91).cos())
            .collect();
        let taps: Vec<u32> = (0..tokens)
            .flat_map(|t| (0..kernel).map(move |j| (t + j).checked_sub(kernel - 1)))
            .map(|p| p.map_or(NO_ROW, |p| p as u32))
            .collect();
        let mut out = vec![0.0; x.len()];
        let w = tap_major(&w_torch, width, kernel);
        short_conv(&x, width, &taps, &w, None, &mut out).unwrap();
        let want = conv1d_reference(&x, width, &w_torch, kernel);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn adds_the_bias_and_reads_rows_anywhere() {
        // Two tokens reading rows in reverse order, one tap left empty.
        let src = [1.0, 2.0, 10.0, 20.0];
        let w = [1.0, 1.0, 0.5, 0.5];
        let taps = [1, 0, NO_ROW, 1];
        let mut out = [0.0; 4];
        short_conv(&src, 2, &taps, &w, Some(&[100.0, 200.0]), &mut out).unwrap();
        assert_eq!(out, [100.0 + 10.0 + 0.5, 200.0 + 20.0 + 1.0, 105.0, 210.0]);
    }

    #[test]
    fn refuses_taps_past_the_sources_and_shapes_that_do_not_fit() {
        let mut out = [0.0; 2];
        let err = short_conv(&[1.0, 2.0], 2, &[1], &[1.0, 1.0], None, &mut out).unwrap_err();
        assert!(err.contains("row 1 of 1"), "{err}");
        assert!(short_conv(&[1.0, 2.0], 2, &[0, 0], &[1.0, 1.0], None, &mut out).is_err());
        assert!(short_conv(&[1.0, 2.0, 3.0], 2, &[0], &[1.0, 1.0], None, &mut out).is_err());
        assert!(short_conv(&[1.0, 2.0], 2, &[0], &[1.0, 1.0], Some(&[0.0]), &mut out).is_err());
    }
}
