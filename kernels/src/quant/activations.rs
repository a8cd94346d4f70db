//! Activation rows quantized to signed bytes (llama.cpp's Q8_0 / Q8_K idea), so each weight
//! block times an activation block is an integer dot product and one float multiply.
//!
//! * `B32` (for Q4_0/Q5_0/Q8_0 weights): one f32 scale per 32 values, and the sum of each
//!   block's quants, so the kernels can read weight quants as unsigned bytes and subtract the
//!   format's offset (8, 16 or 128) times that sum once per block.
//! * `B256` (for K-quants): one f32 scale per 256 values, so a whole super-block accumulates in
//!   integers, and the sum of every 16 quants (for the Q4_K/Q5_K minimums and Q6_K's −32).
//!
//! Rounding is to nearest with scale amax/127, so quants stay in −127..=127 (never −128,
//! which the unsigned×signed byte products rely on).
use super::formats::ActFormat;

/// M rows of K values, quantized. The buffers keep their capacity between calls.
#[derive(Debug, Clone, Default)]
pub struct QuantizedRows {
    pub format: Option<ActFormat>,
    pub m: usize,
    pub k: usize,
    /// m·k quants, row-major.
    pub qs: Vec<i8>,
    /// One scale per block (32 or 256 values), row-major.
    pub d: Vec<f32>,
    /// Quant sums: one per 32-block (B32) or one per 16 values (B256), row-major.
    pub sums: Vec<i16>,
}

impl QuantizedRows {
    pub fn block(format: ActFormat) -> usize {
        match format {
            ActFormat::B32 => 32,
            ActFormat::B256 => 256,
        }
    }

    /// Values per entry of `sums`.
    pub fn sum_span(format: ActFormat) -> usize {
        match format {
            ActFormat::B32 => 32,
            ActFormat::B256 => 16,
        }
    }

    /// Quantize `x` (m rows of k, k a multiple of the block) into these buffers.
    pub fn quantize(&mut self, format: ActFormat, x: &[f32], m: usize, k: usize) {
        let block = Self::block(format);
        let span = Self::sum_span(format);
        debug_assert!(k.is_multiple_of(block) && x.len() == m * k);
        self.format = Some(format);
        self.m = m;
        self.k = k;
        self.qs.clear();
        self.qs.resize(m * k, 0);
        self.d.clear();
        self.d.resize(m * k / block, 0.0);
        self.sums.clear();
        self.sums.resize(m * k / span, 0);
        let sums_per_block = block / span;
        for (((src, dst), d), sums) in x
            .chunks_exact(block)
            .zip(self.qs.chunks_exact_mut(block))
            .zip(self.d.iter_mut())
            .zip(self.sums.chunks_exact_mut(sums_per_block))
        {
            let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, v) in dst.iter_mut().zip(src) {
                // `as` saturates, and NaN becomes 0.
                *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
            }
            *d = scale;
            for (s, part) in sums.iter_mut().zip(dst.chunks_exact(span)) {
                *s = part.iter().map(|&q| q as i16).sum();
            }
        }
    }

    /// Rows `start..start + count` as a view the kernels read.
    pub fn rows(&self, start: usize, count: usize) -> RowsView<'_> {
        let format = self.format.unwrap_or(ActFormat::B32);
        let per_d = self.k / Self::block(format);
        let per_sum = self.k / Self::sum_span(format);
        RowsView {
            k: self.k,
            rows: count,
            qs: &self.qs[start * self.k..(start + count) * self.k],
            d: &self.d[start * per_d..(start + count) * per_d],
            sums: &self.sums[start * per_sum..(start + count) * per_sum],
        }
    }
}

/// A window of rows of `QuantizedRows`: row r's quants are `qs[r·k..]`, its scales
/// `d[r·k/block..]`, its sums `sums[r·k/span..]`.
#[derive(Debug, Clone, Copy)]
pub struct RowsView<'a> {
    pub k: usize,
    pub rows: usize,
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub sums: &'a [i16],
}
