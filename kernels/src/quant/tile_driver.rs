//! The part of every SIMD product kernel that does not depend on the instruction set: the
//! dispatch on the weight type and the walk of a run of weight rows in tiles of C weight rows
//! × R activation rows. `tile_driver!` is expanded inside each ISA's kernel module (x86 AVX2
//! and VNNI, aarch64 NEON with and without dotprod), compiled with that module's target
//! features, so the whole loop nest inlines into one function per instruction set.
//!
//! The invoking module provides the products, for C weight rows at `w` and the R activation
//! rows of `x`, added into f32 vector accumulators `acc[c][r]` of its type `Acc`:
//! `unsafe fn tile_b32<const T: u8, const C: usize, const R: usize>(w: [*const u8; C],
//! nblocks: usize, x: &XRows<R>, acc: &mut [[Acc; R]; C])` for 32-element blocks, `tile_k`
//! likewise for 256-element super-blocks, `acc_zero() -> Acc` and `hsum(Acc) -> f32`.
/// The weight types as the kernels' const parameter (`QuantType` cannot be one).
pub(crate) mod kind {
    pub const Q4_0: u8 = 0;
    pub const Q5_0: u8 = 1;
    pub const Q8_0: u8 = 2;
    pub const Q4K: u8 = 3;
    pub const Q5K: u8 = 4;
    pub const Q6K: u8 = 5;
    pub const MXFP4: u8 = 6;
    pub const Q4_1: u8 = 7;
    pub const Q5_1: u8 = 8;
    pub const Q2K: u8 = 9;
    pub const Q3K: u8 = 10;
    pub const IQ4NL: u8 = 11;
    pub const IQ4XS: u8 = 12;
    pub const IQ2XXS: u8 = 13;
    pub const IQ2XS: u8 = 14;
    pub const IQ2S: u8 = 15;
    pub const IQ3XXS: u8 = 16;
    pub const IQ3S: u8 = 17;
    pub const IQ1S: u8 = 18;
    pub const IQ1M: u8 = 19;
    pub const TQ1_0: u8 = 20;
    pub const TQ2_0: u8 = 21;

    /// The grid type of kind `t` (`quant::iq_grid`), if it is one.
    pub const fn grid_type(t: u8) -> Option<crate::quant::QuantType> {
        use crate::quant::QuantType;
        match t {
            IQ2XXS => Some(QuantType::Iq2Xxs),
            IQ2XS => Some(QuantType::Iq2Xs),
            IQ2S => Some(QuantType::Iq2S),
            IQ3XXS => Some(QuantType::Iq3Xxs),
            IQ3S => Some(QuantType::Iq3S),
            IQ1S => Some(QuantType::Iq1S),
            IQ1M => Some(QuantType::Iq1M),
            TQ1_0 => Some(QuantType::Tq1_0),
            TQ2_0 => Some(QuantType::Tq2_0),
            _ => None,
        }
    }

    /// Bytes per block of type `t`.
    pub const fn block_bytes(t: u8) -> usize {
        match t {
            Q4_0 => 18,
            Q5_0 => 22,
            Q8_0 => 34,
            Q4K => 144,
            Q5K => 176,
            MXFP4 => 17,
            Q4_1 => 20,
            Q5_1 => 24,
            Q2K => 84,
            Q3K => 110,
            IQ4NL => 18,
            IQ4XS => 136,
            IQ2XXS => 66,
            IQ2XS => 74,
            IQ2S => 82,
            IQ3XXS => 98,
            IQ3S => 110,
            IQ1S => 50,
            IQ1M => 56,
            TQ1_0 => 54,
            TQ2_0 => 66,
            _ => 210,
        }
    }
}

macro_rules! tile_driver {
    ($features:literal, C = $cb:literal, R = $rb:literal) => {
        #[allow(unused_imports)]
        use super::super::tile_driver::kind::*;

        /// Whether type `t` is a 256-element K-quant.
        const fn is_k_quant(t: u8) -> bool {
            matches!(t, Q4K | Q5K | Q6K | Q2K | Q3K | IQ4XS) || grid_type(t).is_some()
        }

        /// Activation row pointers of one tile.
        struct XRows<const R: usize> {
            qs: [*const i8; R],
            d: [*const f32; R],
            sums: [*const i16; R],
        }

        /// Products of a run of weight rows with every row of `x`: the product of weight row
        /// j with activation row r goes to `out[j + r·stride]`.
        ///
        /// # Safety
        /// The CPU must have the features this module is compiled for. `w` must hold whole
        /// rows of `row_bytes` bytes, each `x.k / ty.block_elems()` blocks of `ty`, and `x`
        /// must be quantized in `ty.act_format()` (the caller validates both).
        #[target_feature(enable = $features)]
        pub unsafe fn panel(
            ty: QuantType,
            w: &[u8],
            row_bytes: usize,
            x: &RowsView<'_>,
            out: &mut [f32],
            stride: usize,
        ) {
            match ty {
                QuantType::Q4_0 => panel_of::<Q4_0>(w, row_bytes, x, out, stride),
                QuantType::Q5_0 => panel_of::<Q5_0>(w, row_bytes, x, out, stride),
                QuantType::Q8_0 => panel_of::<Q8_0>(w, row_bytes, x, out, stride),
                QuantType::Q4K => panel_of::<Q4K>(w, row_bytes, x, out, stride),
                QuantType::Q5K => panel_of::<Q5K>(w, row_bytes, x, out, stride),
                QuantType::Q6K => panel_of::<Q6K>(w, row_bytes, x, out, stride),
                QuantType::Mxfp4 => panel_of::<MXFP4>(w, row_bytes, x, out, stride),
                QuantType::Q4_1 => panel_of::<Q4_1>(w, row_bytes, x, out, stride),
                QuantType::Q5_1 => panel_of::<Q5_1>(w, row_bytes, x, out, stride),
                QuantType::Q2K => panel_of::<Q2K>(w, row_bytes, x, out, stride),
                QuantType::Q3K => panel_of::<Q3K>(w, row_bytes, x, out, stride),
                QuantType::Iq4Nl => panel_of::<IQ4NL>(w, row_bytes, x, out, stride),
                QuantType::Iq4Xs => panel_of::<IQ4XS>(w, row_bytes, x, out, stride),
                QuantType::Iq2Xxs => panel_of::<IQ2XXS>(w, row_bytes, x, out, stride),
                QuantType::Iq2Xs => panel_of::<IQ2XS>(w, row_bytes, x, out, stride),
                QuantType::Iq2S => panel_of::<IQ2S>(w, row_bytes, x, out, stride),
                QuantType::Iq3Xxs => panel_of::<IQ3XXS>(w, row_bytes, x, out, stride),
                QuantType::Iq3S => panel_of::<IQ3S>(w, row_bytes, x, out, stride),
                QuantType::Iq1S => panel_of::<IQ1S>(w, row_bytes, x, out, stride),
                QuantType::Iq1M => panel_of::<IQ1M>(w, row_bytes, x, out, stride),
                QuantType::Tq1_0 => panel_of::<TQ1_0>(w, row_bytes, x, out, stride),
                QuantType::Tq2_0 => panel_of::<TQ2_0>(w, row_bytes, x, out, stride),
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn panel_of<const T: u8>(
            w: &[u8],
            row_bytes: usize,
            x: &RowsView<'_>,
            out: &mut [f32],
            stride: usize,
        ) {
            let nrows = w.len() / row_bytes;
            let mut j = 0;
            // The grid types' decode (codebook lookups, ternary unpacking) costs as much per
            // weight row at any tile width, so wider tiles only add register pressure: they
            // take two rows where the ISA's tiles are wider (VNNI, `qbench` one thread, 1-3
            // activation rows: TQ2_0 1.35x at one, IQ2_XXS / IQ2_XS / IQ3_XXS 1.15-1.2x at
            // three; IQ2_S / IQ3_S within 5% either way).
            let narrow = grid_type(T).is_some() && $cb > 2;
            // Up to one tile's activation rows (decode, small batches) on x86: one weight row
            // at a time, a single stream through memory, its blocks decoded once for all the
            // rows. A tile of C weight rows reads C interleaved streams, which the prefetchers
            // follow worse when the weights come from memory. EPYC VM (AVX-512 VNNI), 2
            // threads, `qbench` cold copies, alternating binaries, best GMAC/s, one row: Q4_K
            // K = 2048 38-40 in tiles of 4 -> 51-57, Q8_0 18-23 -> 29-36, Q5_K 27 -> 25-45,
            // Q6_K K = 8192 35-37 -> 36-41; Q4_K two rows 49-55 -> 65-67, four 69-76 -> 94-98
            // (eight and more: the same either way, and VNNI takes panels from six); whole
            // models' decode 1.45-1.6x (`candor bench`). NEON keeps its tiles (not measured on
            // hardware).
            let single = x.rows <= $rb && cfg!(target_arch = "x86_64");
            while j < nrows {
                if !single && narrow && nrows - j >= 2 {
                    let rows: [*const u8; 2] =
                        std::array::from_fn(|c| w[(j + c) * row_bytes..].as_ptr());
                    rows_of::<T, 2>(rows, x, out, j, stride);
                    j += 2;
                } else if !single && !narrow && nrows - j >= $cb {
                    let rows: [*const u8; $cb] =
                        std::array::from_fn(|c| w[(j + c) * row_bytes..].as_ptr());
                    rows_of::<T, $cb>(rows, x, out, j, stride);
                    j += $cb;
                } else {
                    rows_of::<T, 1>([w[j * row_bytes..].as_ptr()], x, out, j, stride);
                    j += 1;
                }
            }
        }

        /// C weight rows (from row j) against all rows of x, R at a time.
        #[target_feature(enable = $features)]
        unsafe fn rows_of<const T: u8, const C: usize>(
            w: [*const u8; C],
            x: &RowsView<'_>,
            out: &mut [f32],
            j: usize,
            stride: usize,
        ) {
            let mut r = 0;
            while r < x.rows {
                let n = (x.rows - r).min($rb);
                let mut res = [[0f32; $rb]; C];
                match n {
                    1 => tile_rows::<T, C, 1>(w, x, r, &mut res),
                    2 => tile_rows::<T, C, 2>(w, x, r, &mut res),
                    3 => tile_rows::<T, C, 3>(w, x, r, &mut res),
                    _ => tile_rows::<T, C, $rb>(w, x, r, &mut res),
                }
                for (c, rc) in res.iter().enumerate() {
                    for (i, v) in rc.iter().enumerate().take(n) {
                        out[j + c + (r + i) * stride] = *v;
                    }
                }
                r += n;
            }
        }

        /// The tile of activation rows `r0..r0 + R`.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile_rows<const T: u8, const C: usize, const R: usize>(
            w: [*const u8; C],
            x: &RowsView<'_>,
            r0: usize,
            res: &mut [[f32; $rb]; C],
        ) {
            let block = if is_k_quant(T) { 256 } else { 32 };
            let span = if is_k_quant(T) { 16 } else { 32 };
            let xr = XRows::<R> {
                qs: std::array::from_fn(|r| x.qs[(r0 + r) * x.k..].as_ptr()),
                d: std::array::from_fn(|r| x.d[(r0 + r) * x.k / block..].as_ptr()),
                sums: std::array::from_fn(|r| x.sums[(r0 + r) * x.k / span..].as_ptr()),
            };
            let mut acc = [[acc_zero(); R]; C];
            if is_k_quant(T) {
                tile_k::<T, C, R>(w, x.k / 256, &xr, &mut acc);
            } else {
                tile_b32::<T, C, R>(w, x.k / 32, &xr, &mut acc);
            }
            for c in 0..C {
                for r in 0..R {
                    res[c][r] = hsum(acc[c][r]);
                }
            }
        }
    };
}

pub(crate) use tile_driver;
