//! The aarch64 product kernels, written once and stamped out per feature set by
//! `neon_kernels!` (a `#[target_feature]` function only inlines callees compiled for the same
//! features, so the dotprod set needs its own copy of the whole loop nest). The invoking
//! module provides `prim::dot16` and picks the tile shape; `tile_driver!` walks the tiles.
//!
//! A tile is C weight rows × R activation rows: each weight block is decoded once into
//! registers (`decode`) and multiplied with the same block of all R activation rows, and
//! each activation block is loaded once for all C weight rows. Products are byte dot products
//! into i32 lanes; the lanes of an accumulator are summed only once per tile, at the end.
//!
//! * 32-element formats (Q4_0/Q5_0/Q8_0/MXFP4/Q4_1/Q5_1): per block, the i32 dot product
//!   converted and multiplied by d_w·d_x into f32 accumulators (what llama.cpp's ARM path does
//!   per block), Q4_1/Q5_1's minimum times d_x·Σx into lane 0.
//! * K-quants: a whole 256-element super-block accumulates in i32, each sub-block's dot
//!   product multiplied by its 6- or 8-bit scale with one `mla` (a vector multiply, not a
//!   horizontal sum per sub-block); one conversion per super-block, where the Q4_K/Q5_K
//!   minimums come in as dmin·d_x·Σ m_j·(sum of x over sub-block j) from the 16-sums.
//!
//! No software prefetch, unlike x86: the aarch64 prefetch intrinsic is unstable, and the
//! row streams here are regular strides that Arm's hardware prefetchers follow.
macro_rules! neon_kernels {
    ($features:literal, C = $cb:literal, R = $rb:literal) => {
        use super::super::activations::RowsView;
        use super::super::formats::{
            iq4xs_scales, k_scales_mins, q3k_scales, QuantType, E8M0_HALF,
        };
        use super::decode;
        use std::arch::aarch64::*;

        super::super::tile_driver::tile_driver!($features, C = $cb, R = $rb);

        type Acc = float32x4_t;

        #[inline]
        #[target_feature(enable = $features)]
        fn acc_zero() -> Acc {
            vdupq_n_f32(0.0)
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn hsum(v: Acc) -> f32 {
            vaddvq_f32(v)
        }

        /// The 32 activation quants of row `r` at element `at`.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn x32<const R: usize>(x: &XRows<R>, r: usize, at: usize) -> [int8x16_t; 2] {
            let q = x.qs[r].add(at);
            [vld1q_s8(q), vld1q_s8(q.add(16))]
        }

        /// The dot product of 32 weight quants with 32 activation quants, in i32 lanes.
        #[inline]
        #[target_feature(enable = $features)]
        fn dot32(w: &[int8x16_t; 2], x: &[int8x16_t; 2]) -> int32x4_t {
            prim::dot16(prim::dot16(vdupq_n_s32(0), w[0], x[0]), w[1], x[1])
        }

        /// Q4_0 / Q5_0 / Q8_0 / MXFP4 / Q4_1 / Q5_1: `nb` blocks of 32 per row.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile_b32<const T: u8, const C: usize, const R: usize>(
            w: [*const u8; C],
            nb: usize,
            x: &XRows<R>,
            acc: &mut [[float32x4_t; R]; C],
        ) {
            let bb = block_bytes(T);
            // Q4_1 / Q5_1 add m·d_x·Σx_q, into lane 0 (the lanes are summed at the end).
            let with_min = T == Q4_1 || T == Q5_1;
            let lane0 = vsetq_lane_f32::<0>(1.0, vdupq_n_f32(0.0));
            for b in 0..nb {
                let mut wq = [[vdupq_n_s8(0); 2]; C];
                let mut dw = [0f32; C];
                let mut mw = [0f32; C];
                for c in 0..C {
                    let p = w[c].add(b * bb);
                    wq[c] = match T {
                        Q4_0 => decode::q4_0(p),
                        Q5_0 => decode::q5_0(p),
                        MXFP4 => decode::mxfp4(p),
                        Q4_1 => decode::q4_1(p),
                        Q5_1 => decode::q5_1(p),
                        IQ4NL => decode::iq4(p.add(2)),
                        _ => decode::q8_0(p),
                    };
                    if with_min {
                        mw[c] = decode::f16_at(p.add(2));
                    }
                    dw[c] = match T {
                        MXFP4 => E8M0_HALF[*p as usize],
                        _ => decode::f16_at(p),
                    };
                }
                for r in 0..R {
                    let xq = x32(x, r, 32 * b);
                    let dx = *x.d[r].add(b);
                    for c in 0..C {
                        let t = vcvtq_f32_s32(dot32(&wq[c], &xq));
                        acc[c][r] = vfmaq_n_f32(acc[c][r], t, dw[c] * dx);
                        if with_min {
                            let xs = dx * *x.sums[r].add(b) as f32;
                            acc[c][r] = vfmaq_n_f32(acc[c][r], lane0, mw[c] * xs);
                        }
                    }
                }
            }
        }

        /// Q4_K / Q5_K / Q6_K / Q2_K / Q3_K / IQ4_XS and the lattice types (a scale per 16):
        /// `nsb` super-blocks of 256 per row.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile_k<const T: u8, const C: usize, const R: usize>(
            w: [*const u8; C],
            nsb: usize,
            x: &XRows<R>,
            acc: &mut [[float32x4_t; R]; C],
        ) {
            let bb = block_bytes(T);
            for sb in 0..nsb {
                let p: [*const u8; C] = std::array::from_fn(|c| w[c].add(sb * bb));
                // Per weight row: d, dmin, the scale of every 16 elements and the 8 minimums.
                let mut d = [0f32; C];
                let mut dmin = [0f32; C];
                let mut scales = [[0i32; 16]; C];
                let mut mins = [vdupq_n_s16(0); C];
                // Q2_K: a minimum per 16.
                let mut mins16 = [[vdupq_n_s16(0); 2]; C];
                for c in 0..C {
                    if let Some(ty) = grid_type(T) {
                        let block = std::slice::from_raw_parts(p[c], bb);
                        let (dd, s) = super::super::iq_grid::grid_scales(ty, block);
                        d[c] = dd;
                        for (v, &s) in scales[c].iter_mut().zip(&s) {
                            *v = s as i32;
                        }
                    } else if T == IQ4XS {
                        d[c] = decode::f16_at(p[c]);
                        let s = iq4xs_scales(std::slice::from_raw_parts(p[c], 8));
                        for (g, v) in scales[c].iter_mut().enumerate() {
                            *v = s[g / 2] as i32 - 32;
                        }
                    } else if T == Q3K {
                        d[c] = decode::f16_at(p[c].add(108));
                        let s = q3k_scales(std::slice::from_raw_parts(p[c].add(96), 12));
                        for (g, v) in scales[c].iter_mut().enumerate() {
                            *v = s[g] as i32 - 32;
                        }
                    } else if T == Q2K {
                        d[c] = decode::f16_at(p[c].add(80));
                        dmin[c] = decode::f16_at(p[c].add(82));
                        let b = vld1q_u8(p[c]);
                        for (g, v) in scales[c].iter_mut().enumerate() {
                            *v = (*p[c].add(g) & 0x0f) as i32;
                        }
                        let m = vshrq_n_u8::<4>(b);
                        mins16[c] = [
                            vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m))),
                            vreinterpretq_s16_u16(vmovl_high_u8(m)),
                        ];
                    } else if T == Q6K {
                        d[c] = decode::f16_at(p[c].add(208));
                        for (g, s) in scales[c].iter_mut().enumerate() {
                            *s = *p[c].add(192 + g) as i8 as i32;
                        }
                    } else {
                        d[c] = decode::f16_at(p[c]);
                        dmin[c] = decode::f16_at(p[c].add(2));
                        let (sc, mn) = k_scales_mins(std::slice::from_raw_parts(p[c].add(4), 12));
                        for (g, s) in scales[c].iter_mut().enumerate() {
                            *s = sc[g / 2] as i32;
                        }
                        mins[c] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn.as_ptr())));
                    }
                }
                // |Σ| ≤ 256·32·127·128 ≈ 1.3e8 (Q6_K; less for Q4_K/Q5_K), far inside i32.
                let mut iacc = [[vdupq_n_s32(0); R]; C];
                for j in 0..8 {
                    let mut wq = [[vdupq_n_s8(0); 2]; C];
                    for c in 0..C {
                        wq[c] = match (T, grid_type(T)) {
                            (_, Some(ty)) => decode::grid(ty, p[c], j),
                            (Q6K, _) => decode::q6k_quarter(p[c], j / 4, j % 4),
                            (Q2K | Q3K, _) => decode::k2_chunk(p[c], T == Q3K, j / 4, j % 4),
                            (IQ4XS, _) => decode::iq4(p[c].add(8 + 16 * j)),
                            _ => decode::k_sub_block(p[c], T == Q5K, j),
                        };
                    }
                    for r in 0..R {
                        let xq = x32(x, r, 256 * sb + 32 * j);
                        for c in 0..C {
                            iacc[c][r] = if matches!(T, Q6K | Q2K | Q3K) || grid_type(T).is_some() {
                                // A scale per 16: one dot product per scale.
                                let zero = vdupq_n_s32(0);
                                let lo = prim::dot16(zero, wq[c][0], xq[0]);
                                let hi = prim::dot16(zero, wq[c][1], xq[1]);
                                let s = &scales[c][2 * j..2 * j + 2];
                                vmlaq_n_s32(vmlaq_n_s32(iacc[c][r], lo, s[0]), hi, s[1])
                            } else {
                                vmlaq_n_s32(iacc[c][r], dot32(&wq[c], &xq), scales[c][2 * j])
                            };
                        }
                    }
                }
                for r in 0..R {
                    let dx = *x.d[r].add(sb);
                    // Q4_K/Q5_K: the activation sum of each 32-element sub-block, pairwise
                    // from the 16-sums (|s| ≤ 32·127 fits i16).
                    let sums32 = if !matches!(T, Q4K | Q5K) {
                        vdupq_n_s16(0)
                    } else {
                        let s = x.sums[r].add(16 * sb);
                        vpaddq_s16(vld1q_s16(s), vld1q_s16(s.add(8)))
                    };
                    for c in 0..C {
                        let i = vcvtq_f32_s32(iacc[c][r]);
                        acc[c][r] = vfmaq_n_f32(acc[c][r], i, d[c] * dx);
                        if T == Q2K {
                            // − dmin·d_x·Σ_g m_g·(sum of x over 16-element sub-block g).
                            let s = x.sums[r].add(16 * sb);
                            let (lo, hi) = (vld1q_s16(s), vld1q_s16(s.add(8)));
                            let m = vmull_s16(vget_low_s16(mins16[c][0]), vget_low_s16(lo));
                            let m = vmlal_high_s16(m, mins16[c][0], lo);
                            let m = vmlal_s16(m, vget_low_s16(mins16[c][1]), vget_low_s16(hi));
                            let m = vmlal_high_s16(m, mins16[c][1], hi);
                            acc[c][r] = vfmaq_n_f32(acc[c][r], vcvtq_f32_s32(m), -dmin[c] * dx);
                        } else if matches!(T, Q4K | Q5K) {
                            // − dmin·d_x·Σ_j m_j·(sum of x over sub-block j).
                            let m = vmlal_high_s16(
                                vmull_s16(vget_low_s16(mins[c]), vget_low_s16(sums32)),
                                mins[c],
                                sums32,
                            );
                            acc[c][r] = vfmaq_n_f32(acc[c][r], vcvtq_f32_s32(m), -dmin[c] * dx);
                        }
                    }
                }
            }
        }
    };
}

pub(crate) use neon_kernels;
