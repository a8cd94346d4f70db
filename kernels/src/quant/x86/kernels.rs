//! The x86 product kernels, written once and stamped out per instruction set by
//! `x86_kernels!` (a `#[target_feature]` function only inlines callees compiled for the same
//! features, so each set needs its own copy of the whole loop nest). The invoking module
//! provides `prim` (the ISA-specific operations) and picks the tile shape.
//!
//! A tile is C weight rows × R activation rows: each weight block is decoded once into
//! registers and multiplied with the same block of all R activation rows, and each activation
//! block is loaded once for all C weight rows. Weight quants are unsigned bytes (formats with
//! signed values are read with their offset, which is removed through the activation sums).
//!
//! * 32-element formats (Q4_0/Q5_0/Q8_0/MXFP4/Q4_1/Q5_1): per block, an i32 dot product per
//!   lane, converted and multiplied by d_w·d_x into f32 accumulators (Q4_1/Q5_1's minimum
//!   times d_x·Σx into one lane).
//! * K-quants: a whole 256-element super-block accumulates in i32, the 4/6/8-bit sub-block
//!   scales applied in the i16→i32 multiply-add; one conversion per super-block, where the
//!   Q4_K/Q5_K/Q2_K minimums (dmin·m_j·Σx) or Q6_K's −32·Σ sc·x (Q3_K's −4·Σ sc·x) come in
//!   from the activations' 16-sums.
macro_rules! x86_kernels {
    ($features:literal, C = $cb:literal, R = $rb:literal $(, tile_k from $wide_k:ident)?) => {
        use super::super::activations::RowsView;
        use super::super::formats::{iq4xs_scales, k_scales_mins, q3k_scales, QuantType, E8M0_HALF};
        use std::arch::x86_64::*;

        super::super::tile_driver::tile_driver!($features, C = $cb, R = $rb);

        /// Ask for the weight bytes `ahead` past `p` (`super::prefetch_distance`). Rows are
        /// read as a few interleaved streams of a few hundred bytes each, too short for the
        /// hardware prefetchers to lock on before they end (and they stop at every 4 KiB
        /// boundary), so decode, which streams all weights from memory, would wait on each
        /// line. A hint only: it never faults, even past the end of the weights.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn prefetch_ahead(p: *const u8, ahead: usize) {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead) as *const i8);
        }

        type Acc = __m256;

        #[inline]
        #[target_feature(enable = $features)]
        fn acc_zero() -> Acc {
            _mm256_setzero_ps()
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_movehdup_ps(s));
            _mm_cvtss_f32(s)
        }

        /// The f16 at `p`, as eight equal f32 lanes.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn f16x8(p: *const u8) -> __m256 {
            let bits = u16::from_le_bytes([*p, *p.add(1)]);
            _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
        }

        /// 32 quants of a 32-element block as unsigned bytes (value + offset).
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn decode_b32<const T: u8>(p: *const u8) -> __m256i {
            let low4 = _mm256_set1_epi8(0x0f);
            match T {
                MXFP4 => super::mxfp4_quants(p),
                // Biased like Q8_0 where the products take unsigned bytes of any size.
                IQ4NL => super::iq4_quants(p.add(2), prim::Q8_BIASED),
                Q8_0 => {
                    let q = _mm256_loadu_si256(p.add(2) as *const __m256i);
                    if prim::Q8_BIASED {
                        _mm256_xor_si256(q, _mm256_set1_epi8(0x80u8 as i8))
                    } else {
                        q
                    }
                }
                _ => {
                    // Elements 0..16 are the low nibbles of qs, 16..32 the high ones.
                    let at = match T {
                        Q5_0 => 6,
                        Q4_1 => 4,
                        Q5_1 => 8,
                        _ => 2,
                    };
                    let qs = _mm_loadu_si128(p.add(at) as *const __m128i);
                    let both = _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs);
                    let nib = _mm256_and_si256(both, low4);
                    if T == Q5_0 || T == Q5_1 {
                        let h = p.add(if T == Q5_0 { 2 } else { 4 });
                        let qh = u32::from_le_bytes([*h, *h.add(1), *h.add(2), *h.add(3)]);
                        prim::add_fifth_bits(nib, qh)
                    } else {
                        nib
                    }
                }
            }
        }

        /// The scale of the 32-element block at `p`, as eight equal f32 lanes.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn scale_b32<const T: u8>(p: *const u8) -> __m256 {
            match T {
                MXFP4 => _mm256_broadcast_ss(&E8M0_HALF[*p as usize]),
                _ => f16x8(p),
            }
        }

        /// Q4_0 / Q5_0 / Q8_0 / MXFP4 / Q4_1 / Q5_1 / IQ4_NL: `nb` blocks of 32 per row.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn tile_b32<const T: u8, const C: usize, const R: usize>(
            w: [*const u8; C],
            nb: usize,
            x: &XRows<R>,
            acc: &mut [[__m256; R]; C],
        ) {
            let bb = block_bytes(T);
            // The offset the unsigned weight bytes carry; AVX2 reads Q8_0 and IQ4_NL signed
            // (below).
            let signed_q8 = (T == Q8_0 || T == IQ4NL) && !prim::Q8_BIASED;
            let offset: i32 = match T {
                Q4_0 => 8,
                Q5_0 => 16,
                MXFP4 => super::MXFP4_OFFSET,
                Q4_1 | Q5_1 => 0,
                _ => 128,
            };
            // Q4_1 / Q5_1 add their minimum m times the block's activation sum: m·d_x·Σx_q,
            // kept in lane 0 only (the lanes are summed at the end).
            let with_min = T == Q4_1 || T == Q5_1;
            let ahead = super::prefetch_distance(C, nb * bb);
            for b in 0..nb {
                let mut wq = [_mm256_setzero_si256(); C];
                let mut wabs = [_mm256_setzero_si256(); C];
                let mut dw = [_mm256_setzero_ps(); C];
                let mut mw = [_mm256_setzero_ps(); C];
                for c in 0..C {
                    let p = w[c].add(b * bb);
                    prefetch_ahead(p, ahead);
                    wq[c] = decode_b32::<T>(p);
                    if signed_q8 {
                        wabs[c] = _mm256_sign_epi8(wq[c], wq[c]);
                    }
                    dw[c] = scale_b32::<T>(p);
                    if with_min {
                        mw[c] = _mm256_blend_ps::<1>(_mm256_setzero_ps(), f16x8(p.add(2)));
                    }
                }
                for r in 0..R {
                    let xq = _mm256_loadu_si256(x.qs[r].add(32 * b) as *const __m256i);
                    let dx = _mm256_set1_ps(*x.d[r].add(b));
                    // d_x·Σx_q, for Q4_1 / Q5_1's minimum (unused, and dropped, elsewhere).
                    let xs = _mm256_set1_ps(*x.d[r].add(b) * *x.sums[r].add(b) as f32);
                    let init = if signed_q8 {
                        _mm256_setzero_si256()
                    } else {
                        _mm256_setr_epi32(-offset * *x.sums[r].add(b) as i32, 0, 0, 0, 0, 0, 0, 0)
                    };
                    for c in 0..C {
                        let t = if signed_q8 {
                            prim::dot4(init, wabs[c], _mm256_sign_epi8(xq, wq[c]))
                        } else {
                            prim::dot4(init, wq[c], xq)
                        };
                        let s = _mm256_mul_ps(dw[c], dx);
                        acc[c][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), s, acc[c][r]);
                        if with_min {
                            acc[c][r] = _mm256_fmadd_ps(mw[c], xs, acc[c][r]);
                        }
                    }
                }
            }
        }

        /// Per chunk of 32 within a super-block: the i16 shuffle that broadcasts the chunk's
        /// scale(s) from a vector of eight i16 scales held in both 128-bit lanes. For Q4_K/Q5_K
        /// chunk j uses scale j everywhere; for Q6_K (scales per 16) the low lane takes scale
        /// 2j and the high lane 2j+1, of the eight held (so j counts modulo 4).
        #[inline]
        #[target_feature(enable = $features)]
        fn scale_pick(k_quant6: bool, j: usize) -> __m256i {
            let (lo, hi) = if k_quant6 {
                (2 * (j % 4), 2 * (j % 4) + 1)
            } else {
                (j, j)
            };
            let word = |i: usize| (2 * i as i16) | ((2 * i as i16 + 1) << 8);
            _mm256_setr_m128i(_mm_set1_epi16(word(lo)), _mm_set1_epi16(word(hi)))
        }

        /// `chunk` for signed weights given as magnitudes and signs (IQ4_XS's codebook values,
        /// up to ±127, whose unsigned × signed byte products would saturate the i16 pairs if
        /// biased; the lattice types' `super::grid_split`): |w| times x with w's sign.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn chunk_signed<const C: usize, const R: usize>(
            iacc: &mut [[__m256i; R]; C],
            wabs: &[__m256i; C],
            wsign: &[__m256i; C],
            sc: &[__m256i; C],
            x: &XRows<R>,
            at: usize,
        ) {
            for r in 0..R {
                let xq = _mm256_loadu_si256(x.qs[r].add(at) as *const __m256i);
                for c in 0..C {
                    let xs = _mm256_sign_epi8(xq, wsign[c]);
                    iacc[c][r] = prim::dot_scaled(iacc[c][r], wabs[c], xs, sc[c]);
                }
            }
        }

        /// Add chunk products of C decoded weight chunks with R activation chunks at element
        /// offset `at`, each scaled by its i16 scale vector.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn chunk<const C: usize, const R: usize>(
            iacc: &mut [[__m256i; R]; C],
            wq: &[__m256i; C],
            sc: &[__m256i; C],
            x: &XRows<R>,
            at: usize,
        ) {
            for r in 0..R {
                let xq = _mm256_loadu_si256(x.qs[r].add(at) as *const __m256i);
                for c in 0..C {
                    iacc[c][r] = prim::dot_scaled(iacc[c][r], wq[c], xq, sc[c]);
                }
            }
        }

        /// Q4_K / Q5_K / Q6_K / Q2_K / Q3_K / IQ4_XS and the lattice types: `nsb` super-blocks
        /// of 256 per row (or, where the invocation names one, its kernel of the same contract
        /// and bits).
        #[inline]
        #[allow(unreachable_code)]
        #[target_feature(enable = $features)]
        unsafe fn tile_k<const T: u8, const C: usize, const R: usize>(
            w: [*const u8; C],
            nsb: usize,
            x: &XRows<R>,
            acc: &mut [[__m256; R]; C],
        ) {
            $(
                if matches!(T, Q4K | Q5K | Q6K) {
                    return super::$wide_k::tile_k::<T, C, R>(w, nsb, x.qs, x.d, x.sums, acc);
                }
            )?
            let bb = block_bytes(T);
            let low4 = _mm256_set1_epi8(0x0f);
            let ahead = super::prefetch_distance(C, nsb * bb);
            for sb in 0..nsb {
                let p: [*const u8; C] = std::array::from_fn(|c| w[c].add(sb * bb));
                for &pc in &p {
                    // A super-block spans several lines: fetch each one ahead.
                    for line in (0..bb).step_by(64) {
                        prefetch_ahead(pc.add(line), ahead);
                    }
                }
                // Per weight row: d (and dmin), the scales to shuffle chunk scales from, and
                // the i16 vector multiplied with the activation 16-sums.
                let mut d = [_mm256_setzero_ps(); C];
                let mut dmin = [_mm256_setzero_ps(); C];
                let mut scales = [[_mm256_setzero_si256(); 2]; C];
                let mut per16 = [_mm256_setzero_si256(); C];
                for c in 0..C {
                    if let Some(ty) = grid_type(T) {
                        // A positive integer scale per 16 (`iq_grid`), held as Q6_K's are.
                        let block = std::slice::from_raw_parts(p[c], bb);
                        let (dd, s) = super::super::iq_grid::grid_scales(ty, block);
                        d[c] = _mm256_set1_ps(dd);
                        let all = _mm256_cvtepu8_epi16(_mm_loadu_si128(s.as_ptr() as *const __m128i));
                        scales[c] = [
                            _mm256_permute2x128_si256(all, all, 0x00),
                            _mm256_permute2x128_si256(all, all, 0x11),
                        ];
                    } else if T == IQ4XS {
                        // A scale per 32 (six bits, minus 32), held as Q4_K's are.
                        d[c] = f16x8(p[c]);
                        let s = iq4xs_scales(std::slice::from_raw_parts(p[c], 8));
                        let s = _mm_sub_epi8(
                            _mm_set1_epi64x(i64::from_le_bytes(s)),
                            _mm_set1_epi8(32),
                        );
                        let s = _mm_cvtepi8_epi16(s);
                        scales[c] = [_mm256_set_m128i(s, s); 2];
                    } else if T == Q2K || T == Q3K {
                        // A scale per 16 held as Q6_K's are, and (Q2_K) a minimum per 16.
                        let all = if T == Q3K {
                            d[c] = f16x8(p[c].add(108));
                            let s = q3k_scales(std::slice::from_raw_parts(p[c].add(96), 12));
                            let s = _mm_sub_epi8(
                                _mm_loadu_si128(s.as_ptr() as *const __m128i),
                                _mm_set1_epi8(32),
                            );
                            _mm256_cvtepi8_epi16(s)
                        } else {
                            d[c] = f16x8(p[c].add(80));
                            dmin[c] = f16x8(p[c].add(82));
                            let b = _mm_loadu_si128(p[c] as *const __m128i);
                            let nib = _mm_set1_epi8(0x0f);
                            per16[c] = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(b, 4), nib));
                            _mm256_cvtepu8_epi16(_mm_and_si128(b, nib))
                        };
                        scales[c] = [
                            _mm256_permute2x128_si256(all, all, 0x00),
                            _mm256_permute2x128_si256(all, all, 0x11),
                        ];
                        if T == Q3K {
                            per16[c] = all;
                        }
                    } else if T == Q6K {
                        d[c] = f16x8(p[c].add(208));
                        let all =
                            _mm256_cvtepi8_epi16(_mm_loadu_si128(p[c].add(192) as *const __m128i));
                        scales[c] = [
                            _mm256_permute2x128_si256(all, all, 0x00),
                            _mm256_permute2x128_si256(all, all, 0x11),
                        ];
                        per16[c] = all;
                    } else {
                        d[c] = f16x8(p[c]);
                        dmin[c] = f16x8(p[c].add(2));
                        let packed = std::slice::from_raw_parts(p[c].add(4), 12);
                        let (sc, mn) = k_scales_mins(packed);
                        let sc = _mm_cvtepu8_epi16(_mm_set1_epi64x(i64::from_le_bytes(sc)));
                        scales[c] = [_mm256_set_m128i(sc, sc); 2];
                        // Each min twice: it applies to two 16-sums.
                        let mn = _mm_set1_epi64x(i64::from_le_bytes(mn));
                        per16[c] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
                    }
                }
                let mut iacc = [[_mm256_setzero_si256(); R]; C];
                let base = sb * 256;
                if let Some(ty) = grid_type(T) {
                    // Chunk j = 4h + jj: the signed codebook values, scales 2j and 2j + 1.
                    for j in 0..8 {
                        let pick = scale_pick(true, j);
                        let mut magnitude = [_mm256_setzero_si256(); C];
                        let mut sign = [_mm256_setzero_si256(); C];
                        let mut sc = [_mm256_setzero_si256(); C];
                        for c in 0..C {
                            (magnitude[c], sign[c]) = super::grid_split(ty, p[c], j);
                            sc[c] = _mm256_shuffle_epi8(scales[c][j / 4], pick);
                        }
                        chunk_signed::<C, R>(&mut iacc, &magnitude, &sign, &sc, x, base + 32 * j);
                    }
                } else if T == IQ4XS {
                    // Chunk j: the codebook values of the 16 bytes at 8 + 16j, signed.
                    for j in 0..8 {
                        let pick = scale_pick(false, j);
                        let mut q = [_mm256_setzero_si256(); C];
                        let mut sc = [_mm256_setzero_si256(); C];
                        for c in 0..C {
                            q[c] = super::iq4_quants(p[c].add(8 + 16 * j), false);
                            sc[c] = _mm256_shuffle_epi8(scales[c][0], pick);
                        }
                        let abs = q.map(|q| _mm256_sign_epi8(q, q));
                        chunk_signed::<C, R>(&mut iacc, &abs, &q, &sc, x, base + 32 * j);
                    }
                } else if T == Q2K || T == Q3K {
                    // Chunk (h, j): bits 2j..2j+2 of qs[32h..32h+32] (and Q3_K's bit 4h + j
                    // of hmask, as 4), the two shifted right step by step.
                    let qs_at = if T == Q2K { 16 } else { 32 };
                    let three = _mm256_set1_epi8(3);
                    let four = _mm256_set1_epi8(4);
                    let mut hm = [_mm256_setzero_si256(); C];
                    if T == Q3K {
                        for c in 0..C {
                            hm[c] = _mm256_loadu_si256(p[c] as *const __m256i);
                        }
                    }
                    for h in 0..2 {
                        let mut qs = [_mm256_setzero_si256(); C];
                        for c in 0..C {
                            qs[c] = _mm256_loadu_si256(p[c].add(qs_at + 32 * h) as *const __m256i);
                        }
                        for j in 0..4 {
                            let mut q = [_mm256_setzero_si256(); C];
                            let mut sc = [_mm256_setzero_si256(); C];
                            let pick = scale_pick(true, j);
                            for c in 0..C {
                                q[c] = _mm256_and_si256(qs[c], three);
                                qs[c] = _mm256_srli_epi16(qs[c], 2);
                                if T == Q3K {
                                    let high = _mm256_and_si256(_mm256_slli_epi16(hm[c], 2), four);
                                    q[c] = _mm256_or_si256(q[c], high);
                                    hm[c] = _mm256_srli_epi16(hm[c], 1);
                                }
                                sc[c] = _mm256_shuffle_epi8(scales[c][h], pick);
                            }
                            chunk::<C, R>(&mut iacc, &q, &sc, x, base + 128 * h + 32 * j);
                        }
                    }
                } else if T == Q6K {
                    // Half h: 64 bytes of low nibbles (ql), 32 of high bit pairs (qh); quarter
                    // k's low bits are nibble k/2 of ql[32·(k%2)..], its high bits 2k..2k+2.
                    let mask = _mm256_set1_epi8(0x30);
                    for h in 0..2 {
                        let mut qh = [_mm256_setzero_si256(); C];
                        for c in 0..C {
                            qh[c] = _mm256_loadu_si256(p[c].add(128 + 32 * h) as *const __m256i);
                        }
                        for kk in 0..2 {
                            let mut lo = [_mm256_setzero_si256(); C];
                            let mut hi = [_mm256_setzero_si256(); C];
                            let mut sc_lo = [_mm256_setzero_si256(); C];
                            let mut sc_hi = [_mm256_setzero_si256(); C];
                            let pick_lo = scale_pick(true, kk);
                            let pick_hi = scale_pick(true, kk + 2);
                            for c in 0..C {
                                let ql = _mm256_loadu_si256(
                                    p[c].add(64 * h + 32 * kk) as *const __m256i
                                );
                                // Bits 2k..2k+2 of qh moved to bits 4..6 of the same byte.
                                let (h_lo, h_hi) = if kk == 0 {
                                    (_mm256_slli_epi16(qh[c], 4), qh[c])
                                } else {
                                    (_mm256_slli_epi16(qh[c], 2), _mm256_srli_epi16(qh[c], 2))
                                };
                                lo[c] = _mm256_or_si256(
                                    _mm256_and_si256(ql, low4),
                                    _mm256_and_si256(h_lo, mask),
                                );
                                hi[c] = _mm256_or_si256(
                                    _mm256_and_si256(_mm256_srli_epi16(ql, 4), low4),
                                    _mm256_and_si256(h_hi, mask),
                                );
                                sc_lo[c] = _mm256_shuffle_epi8(scales[c][h], pick_lo);
                                sc_hi[c] = _mm256_shuffle_epi8(scales[c][h], pick_hi);
                            }
                            chunk::<C, R>(&mut iacc, &lo, &sc_lo, x, base + 128 * h + 32 * kk);
                            chunk::<C, R>(
                                &mut iacc,
                                &hi,
                                &sc_hi,
                                x,
                                base + 128 * h + 32 * (kk + 2),
                            );
                        }
                    }
                } else {
                    let qs_at = if T == Q5K { 48 } else { 16 };
                    let mut qh = [_mm256_setzero_si256(); C];
                    if T == Q5K {
                        for c in 0..C {
                            qh[c] = _mm256_loadu_si256(p[c].add(16) as *const __m256i);
                        }
                    }
                    let bit4 = _mm256_set1_epi8(0x10);
                    for pair in 0..4 {
                        let mut lo = [_mm256_setzero_si256(); C];
                        let mut hi = [_mm256_setzero_si256(); C];
                        let mut sc_lo = [_mm256_setzero_si256(); C];
                        let mut sc_hi = [_mm256_setzero_si256(); C];
                        let pick_lo = scale_pick(false, 2 * pair);
                        let pick_hi = scale_pick(false, 2 * pair + 1);
                        for c in 0..C {
                            let q =
                                _mm256_loadu_si256(p[c].add(qs_at + 32 * pair) as *const __m256i);
                            lo[c] = _mm256_and_si256(q, low4);
                            hi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
                            if T == Q5K {
                                // Chunk j's fifth bits are bit j of each qh byte; qh moves right
                                // two bits per pair, so they are bits 0 and 1, moved to bit 4.
                                lo[c] = _mm256_or_si256(
                                    lo[c],
                                    _mm256_and_si256(_mm256_slli_epi16(qh[c], 4), bit4),
                                );
                                hi[c] = _mm256_or_si256(
                                    hi[c],
                                    _mm256_and_si256(_mm256_slli_epi16(qh[c], 3), bit4),
                                );
                                qh[c] = _mm256_srli_epi16(qh[c], 2);
                            }
                            sc_lo[c] = _mm256_shuffle_epi8(scales[c][0], pick_lo);
                            sc_hi[c] = _mm256_shuffle_epi8(scales[c][0], pick_hi);
                        }
                        chunk::<C, R>(&mut iacc, &lo, &sc_lo, x, base + 64 * pair);
                        chunk::<C, R>(&mut iacc, &hi, &sc_hi, x, base + 64 * pair + 32);
                    }
                }
                for r in 0..R {
                    let sums = _mm256_loadu_si256(x.sums[r].add(16 * sb) as *const __m256i);
                    let dx = _mm256_set1_ps(*x.d[r].add(sb));
                    for c in 0..C {
                        let fix = _mm256_madd_epi16(per16[c], sums);
                        let s = _mm256_mul_ps(d[c], dx);
                        if T == Q6K || T == Q3K {
                            // Σ sc·(q − 32)·x = Σ sc·q·x − 32·Σ sc·(16-sum of x); Q3_K's
                            // offset is 4.
                            let i = match T {
                                Q6K => _mm256_sub_epi32(iacc[c][r], _mm256_slli_epi32(fix, 5)),
                                _ => _mm256_sub_epi32(iacc[c][r], _mm256_slli_epi32(fix, 2)),
                            };
                            acc[c][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc[c][r]);
                        } else if T == IQ4XS || grid_type(T).is_some() {
                            acc[c][r] =
                                _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c][r]), s, acc[c][r]);
                        } else {
                            acc[c][r] =
                                _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[c][r]), s, acc[c][r]);
                            let m = _mm256_mul_ps(dmin[c], dx);
                            acc[c][r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(fix), m, acc[c][r]);
                        }
                    }
                }
            }
        }
    };
}

pub(crate) use x86_kernels;
