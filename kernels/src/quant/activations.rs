//! Activation rows quantized to 8-bit blocks of 32 (one f32 scale per block, round to nearest),
//! so a weight block times an activation block is an integer dot product and one multiply.

/// M rows of K values as `K/32` blocks each.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    pub k: usize,
    pub m: usize,
    /// Row-major, 32 per block.
    pub qs: Vec<i8>,
    /// One per block, row-major.
    pub scales: Vec<f32>,
    /// Sum of each block's quants (for weight formats with a per-block minimum).
    pub sums: Vec<i32>,
}

/// A window of rows of a `QuantizedRows`.
#[derive(Debug, Clone, Copy)]
pub struct RowsView<'a> {
    pub blocks: usize,
    pub qs: &'a [i8],
    pub scales: &'a [f32],
    pub sums: &'a [i32],
}

impl QuantizedRows {
    pub fn quantize(x: &[f32], m: usize, k: usize) -> Self {
        let blocks = k / 32;
        let mut qs = vec![0i8; m * k];
        let mut scales = vec![0f32; m * blocks];
        let mut sums = vec![0i32; m * blocks];
        for (((src, dst), s), sum) in x
            .chunks_exact(32)
            .zip(qs.chunks_exact_mut(32))
            .zip(scales.iter_mut())
            .zip(sums.iter_mut())
        {
            let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (q, v) in dst.iter_mut().zip(src) {
                *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
            }
            *s = d;
            *sum = dst.iter().map(|&q| q as i32).sum();
        }
        QuantizedRows {
            k,
            m,
            qs,
            scales,
            sums,
        }
    }

    /// Rows `start..start + count`.
    pub fn rows(&self, start: usize, count: usize) -> RowsView<'_> {
        let blocks = self.k / 32;
        RowsView {
            blocks,
            qs: &self.qs[start * self.k..(start + count) * self.k],
            scales: &self.scales[start * blocks..(start + count) * blocks],
            sums: &self.sums[start * blocks..(start + count) * blocks],
        }
    }
}
