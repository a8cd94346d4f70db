//! Activation rows quantized to signed bytes (llama.cpp's Q8_0 / Q8_K idea), so each weight
//! block times an activation block is an integer dot product and one float multiply.
//!
//! * `B32` (for the 32-element weight blocks): one f32 scale per 32 values, and the sum of each
//!   block's quants, so the kernels can read weight quants as unsigned bytes and subtract the
//!   format's offset (8, 16 or 128) times that sum once per block (or add Q4_1 / Q5_1's
//!   minimum times it).
//! * `B256` (for K-quants): one f32 scale per 256 values, so a whole super-block accumulates in
//!   integers, and the sum of every 16 quants (for the Q4_K/Q5_K minimums and Q6_K's −32).
//!
//! Rounding is to nearest with scale amax/127, so quants stay in −127..=127 (never −128,
//! which the unsigned×signed byte products rely on).
//!
//! A row already on an 8-bit grid of its own (every value a whole multiple of its largest
//! magnitude / 127: BitNet's inputs, which the model quantizes per token) keeps that grid: every
//! block of it takes the row's step as its scale, so its quants are the grid's integers and the
//! products over it exact. Per-block scales would round such a row a second time (0.2 of the
//! logits on the tiny BitNet checkout). Any other row fails the check at its first value off
//! the grid.
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
    /// Quant sums: one per 32-block (B32, Panel) or one per 16 values (B256), row-major.
    pub sums: Vec<i16>,
    /// Panel only: scale × quant sum per 16 values and per 32, row-major.
    pub fs16: Vec<f32>,
    pub fs32: Vec<f32>,
    /// Quant sums per 16 values (what the format sums are made of).
    s16: Vec<i32>,
}

impl QuantizedRows {
    pub fn block(format: ActFormat) -> usize {
        match format {
            ActFormat::B32 | ActFormat::Panel { .. } => 32,
            ActFormat::B256 => 256,
        }
    }

    /// Values per entry of `sums`.
    pub fn sum_span(format: ActFormat) -> usize {
        match format {
            ActFormat::B32 | ActFormat::Panel { .. } => 32,
            ActFormat::B256 => 16,
        }
    }

    /// Quantize `x` (m rows of k, k a multiple of the block) into these buffers.
    pub fn quantize(&mut self, format: ActFormat, x: &[f32], m: usize, k: usize) {
        // Values per scale as quantized; the Panel format then repeats each scale per 32.
        let block = match format {
            ActFormat::Panel { scale_block } => scale_block,
            other => Self::block(other),
        };
        debug_assert!((block == 32 || block == 256) && k.is_multiple_of(block) && x.len() == m * k);
        self.format = Some(format);
        self.m = m;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.d.resize(m * k / block, 0.0);
        self.s16.resize(m * k / 16, 0);
        #[cfg(target_arch = "x86_64")]
        let done = super::x86::quantize(x, block, &mut self.qs, &mut self.d, &mut self.s16);
        #[cfg(target_arch = "aarch64")]
        let done = {
            super::neon::quantize(x, block, &mut self.qs, &mut self.d, &mut self.s16);
            true
        };
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let done = false;
        if !done {
            quantize_scalar(x, block, &mut self.qs, &mut self.d, &mut self.s16);
        }
        self.keep_row_grids(x, k, block);
        if let ActFormat::Panel { scale_block } = format {
            if scale_block > 32 {
                // In place, from the back: entry i moves to i·repeat ≥ i.
                let repeat = scale_block / 32;
                let scales = self.d.len();
                self.d.resize(scales * repeat, 0.0);
                for i in (0..scales).rev() {
                    let d = self.d[i];
                    self.d[i * repeat..(i + 1) * repeat].fill(d);
                }
            }
        }
        // The per-format sums, from the 16-sums.
        self.sums.clear();
        self.fs16.clear();
        self.fs32.clear();
        match format {
            ActFormat::B256 => self.sums.extend(self.s16.iter().map(|&s| s as i16)),
            ActFormat::B32 | ActFormat::Panel { .. } => self
                .sums
                .extend(self.s16.chunks_exact(2).map(|p| (p[0] + p[1]) as i16)),
        }
        if matches!(format, ActFormat::Panel { .. }) {
            for (p, &d) in self.s16.chunks_exact(2).zip(&self.d) {
                self.fs16.push(d * p[0] as f32);
                self.fs16.push(d * p[1] as f32);
                self.fs32.push(d * (p[0] + p[1]) as f32);
            }
        }
    }

    /// Each row of `x` on an 8-bit grid of its own (`row_grid`) quantized to that grid, one
    /// scale (its step) for all its blocks of `block` (the module's note).
    fn keep_row_grids(&mut self, x: &[f32], k: usize, block: usize) {
        for (r, row) in x.chunks_exact(k).enumerate() {
            // The row's largest block scale is its largest magnitude / 127, as a scale of the
            // whole row would be (rounding is monotonic): no pass of its own to find it.
            let blocks = &self.d[r * k / block..(r + 1) * k / block];
            let scale = blocks.iter().fold(0f32, |a, &d| a.max(d));
            let Some(inv) = row_grid(row, scale) else {
                continue;
            };
            let qs = &mut self.qs[r * k..(r + 1) * k];
            for (q, v) in qs.iter_mut().zip(row) {
                *q = round_small(v * inv).clamp(-127.0, 127.0) as i8;
            }
            self.d[r * k / block..(r + 1) * k / block].fill(scale);
            for (s, part) in self.s16[r * k / 16..(r + 1) * k / 16]
                .iter_mut()
                .zip(qs.chunks_exact(16))
            {
                *s = part.iter().map(|&q| q as i32).sum();
            }
        }
    }

    /// Rows `start..start + count` as a view the kernels read.
    pub fn rows(&self, start: usize, count: usize) -> RowsView<'_> {
        let format = self.format.unwrap_or(ActFormat::B32);
        let per_d = self.k / Self::block(format);
        let per_sum = self.k / Self::sum_span(format);
        let (fs16, fs32) = if matches!(format, ActFormat::Panel { .. }) {
            let per = self.k / 32;
            (
                &self.fs16[start * 2 * per..(start + count) * 2 * per],
                &self.fs32[start * per..(start + count) * per],
            )
        } else {
            (&[][..], &[][..])
        };
        RowsView {
            k: self.k,
            rows: count,
            qs: &self.qs[start * self.k..(start + count) * self.k],
            d: &self.d[start * per_d..(start + count) * per_d],
            sums: &self.sums[start * per_sum..(start + count) * per_sum],
            fs16,
            fs32,
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
    /// Panel format only (else empty): per 16 and per 32, scale × quant sum.
    pub fs16: &'a [f32],
    pub fs32: &'a [f32],
}

/// The inverse of `scale` (the row's largest magnitude / 127) where every value of `row` lies
/// within float noise of a whole multiple of it, or None: a row of zeros, or one with a value
/// off that grid (found at the first such value).
fn row_grid(row: &[f32], scale: f32) -> Option<f32> {
    if !(scale > 0.0 && scale.is_finite()) {
        return None;
    }
    let inv = 1.0 / scale;
    // Runs of 32 (a loop the compiler vectorizes), stopping at the first run off the grid.
    row.chunks(32)
        .all(|run| {
            !run.iter().fold(false, |off, v| {
                let t = v * inv;
                off | ((t - round_small(t)).abs() > 1e-3)
            })
        })
        .then_some(inv)
}

/// `t` rounded to the nearest integer, ties to even (as `round_ties_even` and torch round), for
/// |t| < 2²² (quants' range): adding and taking away 1.5·2²³ leaves no fraction bits, in two
/// adds that vectorize (the baseline x86-64 target has no rounding instruction:
/// `round_ties_even` is a libm call there, 7% of a BitNet decode step).
#[inline(always)]
pub fn round_small(t: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (t + MAGIC) - MAGIC
}

/// The portable quantizer (and the definition the SIMD one matches byte for byte).
fn quantize_scalar(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], s16: &mut [i32]) {
    for (((src, dst), d), sums) in x
        .chunks_exact(block)
        .zip(qs.chunks_exact_mut(block))
        .zip(d.iter_mut())
        .zip(s16.chunks_exact_mut(block / 16))
    {
        let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (q, v) in dst.iter_mut().zip(src) {
            // `as` saturates, and NaN becomes 0.
            *q = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        *d = scale;
        for (s, part) in sums.iter_mut().zip(dst.chunks_exact(16)) {
            *s = part.iter().map(|&q| q as i32).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row on an 8-bit grid of its own keeps it in every format (one scale, its integers);
    /// a row off it by a little is quantized per block; the first row is untouched by the
    /// second's grid.
    #[test]
    fn rows_on_their_own_grid_keep_it() {
        let step = 0.013f32;
        let on: Vec<f32> = (0..512)
            .map(|i| match i {
                300 => 127.0 * step,
                _ => ((i * 37 % 61) as f32 - 30.0) * step,
            })
            .collect();
        // The same in the second block only up to 5: per-block scales there.
        let mut off = on.clone();
        off[7] += 0.4 * step;
        let x = [off.clone(), on.clone()].concat();
        for format in [
            ActFormat::B32,
            ActFormat::B256,
            ActFormat::Panel { scale_block: 256 },
        ] {
            let mut rows = QuantizedRows::default();
            rows.quantize(format, &x, 2, 512);
            let per = rows.d.len() / 2;
            assert!(
                rows.d[per..].iter().all(|&d| d == 127.0 * step / 127.0),
                "{format:?}"
            );
            let want: Vec<i8> = on.iter().map(|v| (v / step).round() as i8).collect();
            assert_eq!(&rows.qs[512..], &want[..], "{format:?}");
            let mut alone = QuantizedRows::default();
            alone.quantize(format, &off, 1, 512);
            assert_eq!(&rows.qs[..512], &alone.qs[..], "{format:?}");
            assert!(rows.d[..per].iter().any(|&d| d != rows.d[0]), "{format:?}");
        }
    }

    /// The SIMD quantizer (where the CPU has one) gives the scalar loop's bytes, ties included.
    #[test]
    fn simd_quantizer_matches_scalar_bytes() {
        let mut state = 0x5151_2323_7777_0101u64;
        for block in [32usize, 256] {
            let n = 4 * 256;
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    match i % 7 {
                        // Exact halves after scaling by 127/amax (amax = 127 in this block).
                        0 => 127.0,
                        1 => (state % 255) as f32 - 127.0 + 0.5,
                        _ => ((state % 20001) as f32 / 10000.0 - 1.0) * 50.0,
                    }
                })
                .collect();
            let mut rows = QuantizedRows::default();
            rows.quantize(ActFormat::B256, &x, 1, n);
            if block == 32 {
                rows.quantize(ActFormat::B32, &x, 1, n);
            }
            let (mut qs, mut d, mut s16) =
                (vec![0i8; n], vec![0f32; n / block], vec![0i32; n / 16]);
            quantize_scalar(&x, block, &mut qs, &mut d, &mut s16);
            assert_eq!(rows.qs, qs);
            assert_eq!(rows.d, d);
            assert_eq!(rows.s16, s16);
        }
    }
}
