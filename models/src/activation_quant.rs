//! BitNet b1.58's activations: every product's input quantized per token to signed integers
//! by its largest magnitude, and back to floats, as transformers' `BitLinear` /
//! `AutoBitLinear` (`ActQuant`) do before their ternary products. The model was trained so:
//! without it a checkout's logits move (0.3 on the tiny fixture). llama.cpp's `bitnet` graph
//! skips it (its TQ kernels quantize activations per block of 256 instead).
use candor_kernels::quant::round_small;

/// Row `row` quantized to `bits`-bit integers by its largest magnitude and back, in place:
/// `round(x · s).clamp(−2^(b−1), 2^(b−1) − 1) / s` with `s = (2^(b−1) − 1) / max(max |x|,
/// 1e-5)`, rounding ties to even as torch does; `bits` is taken within 2..=16.
pub fn quantize_row(row: &mut [f32], bits: u32) {
    let top = largest_quant(bits);
    let largest = row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-5);
    let scale = top / largest;
    for v in row {
        *v = round_small(*v * scale).clamp(-top - 1.0, top) / scale;
    }
}

/// The largest quant of `bits`-bit signed integers, 2^(b−1) − 1 (`bits` taken within 2..=16,
/// where `round_small` is exact); the smallest is one below its negative.
pub fn largest_quant(bits: u32) -> f32 {
    ((1u32 << (bits.clamp(2, 16) - 1)) - 1) as f32
}

/// The rows of `values` (`cols` each) quantized by `quantize_row`.
pub fn quantize_rows(values: &mut [f32], cols: usize, bits: u32) {
    for row in values.chunks_mut(cols.max(1)) {
        quantize_row(row, bits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest magnitude lands on ±127; the others on its 127ths, ties to even.
    #[test]
    fn rows_land_on_their_own_grid() {
        let mut v = vec![2.54, -1.0, 0.01, 0.03, 0.0, 0.0, 0.0, 0.0];
        quantize_rows(&mut v, 4, 8);
        let step = 2.54 / 127.0;
        assert_eq!(v[0], 127.0 / (127.0 / 2.54));
        assert!((v[1] + 50.0 * step).abs() < 1e-6, "{}", v[1]);
        // 0.01 is half a step: ties to even (0); 0.03 is 1.5 steps: to 2.
        assert_eq!(v[2], 0.0);
        assert!((v[3] - 2.0 * step).abs() < 1e-6, "{}", v[3]);
        // A row of zeros stays zeros (its scale floored at 1e-5).
        assert_eq!(&v[4..], &[0.0; 4]);
    }
}
