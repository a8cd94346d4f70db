use super::*;

/// A deterministic generator (xorshift) so tests need no dependency.
pub(crate) struct Gen(pub u64);
impl Gen {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1].
    pub fn f32(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

/// Random but valid blocks: random bytes everywhere (every bit pattern of the quant and
/// sub-scale fields is meaningful), then small scales.
pub(crate) fn random_weights(g: &mut Gen, ty: QuantType, n: usize, k: usize) -> Vec<u8> {
    let mut w = Vec::new();
    for _ in 0..n * k / ty.block_elems() {
        let mut block: Vec<u8> = (0..ty.block_bytes()).map(|_| g.next() as u8).collect();
        set_scales(ty, &mut block, g.f32() * 0.01);
        w.extend(block);
    }
    w
}

fn random_x(g: &mut Gen, len: usize) -> Vec<f32> {
    (0..len).map(|_| g.f32() * 2.0).collect()
}

/// Exact f32 products with dequantized weights, and for each the worst-case error of rounding
/// the activations to 8 bits (half a step per element, times |w|) plus float slack.
fn dequant_reference(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut wf = vec![0f32; n * k];
    dequantize(ty, w, &mut wf);
    let block = ty.block_elems();
    let step: Vec<f32> = x
        .chunks(block)
        .map(|b| b.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0)
        .collect();
    let mut y = vec![0f32; m * n];
    let mut bound = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            let (mut s, mut b, mut mag) = (0f64, 0f32, 0f32);
            for i in 0..k {
                let (xv, wv) = (x[r * k + i], wf[c * k + i]);
                s += xv as f64 * wv as f64;
                b += 0.5 * step[(r * k + i) / block] * wv.abs();
                mag += (xv * wv).abs();
            }
            y[r * n + c] = s as f32;
            bound[r * n + c] = b + 1e-4 * mag + 1e-6;
        }
    }
    (y, bound)
}

/// Σ|w·x| per output, the scale float rounding differences are measured against.
fn magnitudes(ty: QuantType, w: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> Vec<f32> {
    let mut wf = vec![0f32; n * k];
    dequantize(ty, w, &mut wf);
    let mut out = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            out[r * n + c] = (0..k).map(|i| (x[r * k + i] * wf[c * k + i]).abs()).sum();
        }
    }
    out
}

#[test]
fn scalar_reference_matches_dequantized_products() {
    let mut g = Gen(0x1234_5678_9abc_def1);
    for ty in QuantType::ALL {
        for (n, blocks, m) in [(1, 1, 1), (3, 2, 2), (5, 3, 5), (3, 2, 17)] {
            let k = blocks * ty.block_elems();
            let w = random_weights(&mut g, ty, n, k);
            let x = random_x(&mut g, m * k);
            let (want, bound) = dequant_reference(ty, &w, n, k, &x, m);
            // Scalar products of every activation format (the Panel one is VNNI's prefill).
            for isa in [Isa::Scalar, Isa::Avx512Vnni] {
                let mut y = vec![0f32; m * n];
                reference_for(isa, ty, &w, n, k, &x, m, &mut y).unwrap();
                for i in 0..m * n {
                    assert!(
                        (y[i] - want[i]).abs() <= bound[i],
                        "{isa:?} {ty:?} n{n} k{k} m{m} [{i}]: {} vs {} (bound {})",
                        y[i],
                        want[i],
                        bound[i]
                    );
                }
            }
        }
    }
}

/// `matmul_with(isa, ..)` against the scalar products of the same activation quantization: the
/// integer parts are exact, so only the order of float additions may differ.
#[allow(clippy::too_many_arguments)]
fn assert_matches_reference(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    mag: &[f32],
) {
    let mut want = vec![0f32; m * n];
    reference_for(isa, ty, w, n, k, x, m, &mut want).unwrap();
    let mut y = vec![f32::NAN; m * n];
    matmul_with(isa, ty, w, n, k, x, m, &mut y).unwrap();
    for i in 0..m * n {
        assert!(
            (y[i] - want[i]).abs() <= 1e-5 * mag[i] + 1e-6,
            "{isa:?} {ty:?} n{n} k{k} m{m} [{i}]: {} vs {}",
            y[i],
            want[i]
        );
    }
}

/// Every SIMD kernel against the scalar reference: the integer parts are exact, so they differ
/// only in the order of float additions.
#[test]
fn simd_kernels_match_the_reference() {
    let mut g = Gen(0x0dd_ba11_5eed);
    let isas: Vec<Isa> = Isa::all_supported()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect();
    eprintln!("testing {isas:?}");
    for ty in QuantType::ALL {
        // Odd and even counts of weight rows (whole tiles and the one-row tail), activation
        // rows around every tile size and both sides of the split between strategies.
        for (n, blocks) in [(1, 1), (2, 3), (7, 1), (9, 5), (33, 2)] {
            let k = blocks * ty.block_elems();
            let w = random_weights(&mut g, ty, n, k);
            for m in [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 19, 23, 24, 37, 258] {
                let x = random_x(&mut g, m * k);
                let mag = magnitudes(ty, &w, n, k, &x, m);
                for &isa in &isas {
                    assert_matches_reference(isa, ty, &w, n, k, &x, m, &mag);
                }
            }
        }
    }
}

/// `Isa::best()` is a kernel set this CPU runs, never the scalar path on an architecture with
/// SIMD kernels; `CANDOR_EXPECT_ISA` (set by `scripts/test-aarch64.sh` for each emulated CPU)
/// names the one it must pick.
#[test]
fn best_is_the_expected_kernel_set() {
    let best = Isa::best();
    assert!(best.supported());
    #[cfg(target_arch = "aarch64")]
    assert_ne!(best, Isa::Scalar, "every aarch64 CPU has NEON");
    if let Ok(want) = std::env::var("CANDOR_EXPECT_ISA") {
        assert_eq!(format!("{best:?}"), want);
    }
}

/// Extreme activations and weights: quants at their limits must not saturate the i16 steps.
#[test]
fn simd_kernels_are_exact_at_the_extremes() {
    let isas: Vec<Isa> = Isa::all_supported();
    for ty in QuantType::ALL {
        let (n, k, m) = (4, 2 * ty.block_elems(), 4);
        // All-ones bytes: the largest unsigned quants, scale bytes aside.
        let mut w = vec![0xffu8; n * k / ty.block_elems() * ty.block_bytes()];
        for b in w.chunks_exact_mut(ty.block_bytes()) {
            set_scales(ty, b, 0.5);
        }
        // Q8_0's most negative weight (−128) is 0x80.
        if ty == QuantType::Q8_0 {
            for b in w.chunks_exact_mut(34) {
                b[2..].fill(0x80);
            }
        }
        for sign in [1f32, -1.0] {
            let x: Vec<f32> = (0..m * k).map(|i| sign * (1.0 + (i % 3) as f32)).collect();
            let mut results = Vec::new();
            for &isa in &isas {
                let mut y = vec![0f32; m * n];
                matmul_with(isa, ty, &w, n, k, &x, m, &mut y).unwrap();
                results.push(y);
            }
            let (want, bound) = dequant_reference(ty, &w, n, k, &x, m);
            for (isa, y) in isas.iter().zip(&results) {
                for i in 0..m * n {
                    assert!(
                        (y[i] - want[i]).abs() <= bound[i],
                        "{isa:?} {ty:?} sign {sign} [{i}]: {} vs {}",
                        y[i],
                        want[i]
                    );
                }
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let mut y = [0f32; 4];
    let w = vec![0u8; 2 * 22];
    let x = vec![0f32; 64];
    // K not a multiple of the block.
    assert!(matches!(
        matmul(QuantType::Q5_0, &w, 2, 48, &x[..48], 1, &mut y[..2]),
        Err(QuantError::RowLength { .. })
    ));
    assert!(matches!(
        matmul(QuantType::Q4K, &w, 2, 32, &x[..32], 1, &mut y[..2]),
        Err(QuantError::RowLength { .. })
    ));
    // Buffers of the wrong size.
    assert!(matches!(
        matmul(QuantType::Q5_0, &w[..40], 2, 32, &x[..32], 1, &mut y[..2]),
        Err(QuantError::WeightSize { .. })
    ));
    assert!(matches!(
        matmul(QuantType::Q5_0, &w, 2, 32, &x[..31], 1, &mut y[..2]),
        Err(QuantError::InputSize { .. })
    ));
    assert!(matches!(
        matmul(QuantType::Q5_0, &w, 2, 32, &x[..32], 1, &mut y[..3]),
        Err(QuantError::OutputSize { .. })
    ));
    // Empty products are fine.
    assert!(matmul(QuantType::Q5_0, &w, 2, 32, &x[..0], 0, &mut y[..0]).is_ok());
    assert!(matmul(QuantType::Q5_0, &w[..0], 0, 32, &x[..32], 1, &mut y[..0]).is_ok());
    let mut y2 = vec![1f32; 3];
    assert!(matmul(QuantType::Q5_0, &[], 3, 0, &[], 1, &mut y2).is_ok());
    assert_eq!(y2, vec![0.0; 3]);
}

/// Hand-built blocks with known values pin each layout (bit positions, nibble order, the
/// split scale bytes of Q4_K/Q5_K, Q6_K's interleaving).
#[test]
fn layouts_decode_to_known_values() {
    let one = half::f16::from_f32(1.0).to_bits().to_le_bytes();
    // Q4_0: element i is the low nibble of byte i, element i+16 the high one; minus 8.
    let mut b = vec![0u8; 18];
    b[..2].copy_from_slice(&one);
    for i in 0..16 {
        b[2 + i] = (i as u8) | (((15 - i) as u8) << 4);
    }
    let mut v = vec![0f32; 32];
    dequantize(QuantType::Q4_0, &b, &mut v);
    for i in 0..16 {
        assert_eq!(v[i], i as f32 - 8.0);
        assert_eq!(v[i + 16], (15 - i) as f32 - 8.0);
    }
    // Q5_0: bit i of qh is element i's fifth bit; minus 16.
    let mut b = vec![0u8; 22];
    b[..2].copy_from_slice(&one);
    b[2..6].copy_from_slice(&0x8000_0001u32.to_le_bytes());
    dequantize(QuantType::Q5_0, &b, &mut v);
    assert_eq!(v[0], 0.0);
    assert_eq!(v[1], -16.0);
    assert_eq!(v[31], 0.0);
    // Q4_K: scale 5 = low nibble of byte 8+5 plus the top bits of byte 1 (above bit 6).
    let mut b = vec![0u8; 144];
    b[..2].copy_from_slice(&one);
    b[2..4].copy_from_slice(&one);
    b[4 + 9] = 0x23; // scale 5 low nibble 3, min 5 low nibble 2
    b[4 + 1] = 0b0100_0000; // scale 5 bit 4
    b[4 + 5] = 0b1000_0000; // min 5 bit 5
    b[16 + 64..16 + 96].fill(0x70); // sub-block 5 = high nibbles of bytes 64..96 → 7
    let mut v = vec![0f32; 256];
    dequantize(QuantType::Q4K, &b, &mut v);
    assert_eq!(v[160], (16 + 3) as f32 * 7.0 - (32 + 2) as f32);
    assert_eq!(v[128], 0.0);
    // Q5_K: sub-block j's fifth bit is bit j of qh[l].
    let mut b = vec![0u8; 176];
    b[..2].copy_from_slice(&one);
    b[4] = 1; // scale 0 = 1
    b[4 + 3] = 2; // scale 3 = 2
    b[16] = 0b1001; // qh[0]: fifth bit of element 0 (sub-block 0) and of element 96 (sub 3)
    dequantize(QuantType::Q5K, &b, &mut v);
    assert_eq!(v[0], 16.0);
    assert_eq!(v[1], 0.0);
    assert_eq!(v[96], 32.0);
    // Q6_K: element 128 + 64 + 5 (half 1, quarter 2) = high nibble of ql[64 + 5], bits 4..6 of
    // qh[32 + 5], scale 8 + 4.
    let mut b = vec![0u8; 210];
    b[208..210].copy_from_slice(&one);
    b[64 + 5] = 0x90; // high nibble 9
    b[128 + 32 + 5] = 0b0010_0000; // bits 4..6 = 2
    b[192 + 12] = (-3i8) as u8;
    dequantize(QuantType::Q6K, &b, &mut v);
    assert_eq!(v[128 + 64 + 5], -3.0 * ((9 | (2 << 4)) as f32 - 32.0));
    // MXFP4: e = 127 is a scale of 1 on the e2m1 values (codes 0x7 = 6, 0x9 = -0.5, 0xf =
    // -6); element i is byte 1 + i's low nibble, element i + 16 its high one. e = 0 and 1
    // are subnormal scales (2^-127 and 2^-126 on the values).
    let mut b = vec![0u8; 17];
    b[0] = 127;
    b[1] = 0xf7;
    b[2] = 0x09;
    let mut v = vec![0f32; 32];
    dequantize(QuantType::Mxfp4, &b, &mut v);
    assert_eq!(
        (v[0], v[16], v[1], v[17], v[2]),
        (6.0, -6.0, -0.5, 0.0, 0.0)
    );
    b[0] = 0;
    dequantize(QuantType::Mxfp4, &b, &mut v);
    assert_eq!(v[0], 6.0 * 2f32.powi(-127));
    assert_eq!(e8m0_half(1), 2f32.powi(-127));
    assert_eq!(e8m0_half(255), 2f32.powi(127));
    // The kernels' table holds the same bits for every byte.
    for e in 0..=255u8 {
        assert_eq!(E8M0_HALF[e as usize].to_bits(), e8m0_half(e).to_bits());
    }
}

/// A row's product does not depend on how many rows share the call (decode GEMV, prefill
/// tiles, VNNI panels): every path quantizes the activations identically, so results differ
/// only in the order of float additions. A prefix-cached prompt (few rows prefilled) then
/// continues exactly like a fresh one. AMX CPUs keep this among products of `AMX_MIN_ROWS`
/// rows or more (bf16 tiles) and among smaller ones (VNNI), not across the two.
#[test]
fn row_results_do_not_depend_on_the_row_count() {
    let mut g = Gen(0xfeed_f00d_1234);
    for isa in Isa::all_supported() {
        for ty in QuantType::ALL {
            // Row counts that split into whole register tiles and ones that leave tails.
            // 257 and 300 take the whole-W panel repack on VNNI; the others the fused one.
            for m in [40, 33, 65, 257, 300] {
                let (n, k) = (9, 512);
                let w = random_weights(&mut g, ty, n, k);
                let x = random_x(&mut g, m * k);
                let mag = magnitudes(ty, &w, n, k, &x, m);
                let mut all = vec![0f32; m * n];
                matmul_with(isa, ty, &w, n, k, &x, m, &mut all).unwrap();
                let parts = match isa {
                    Isa::AmxBf16 if m > AMX_MIN_ROWS => [
                        (0, AMX_MIN_ROWS),
                        (m - AMX_MIN_ROWS, AMX_MIN_ROWS),
                        (1, m - 1),
                    ]
                    .to_vec(),
                    _ => [(0, 1), (17, 1), (m - 1, 1), (3, 5), (8, 16), (m - 17, 17)].to_vec(),
                };
                for (first, rows) in parts {
                    let mut part = vec![0f32; rows * n];
                    let xs = &x[first * k..(first + rows) * k];
                    matmul_with(isa, ty, &w, n, k, xs, rows, &mut part).unwrap();
                    for (i, v) in part.iter().enumerate() {
                        let at = first * n + i;
                        assert!(
                        (v - all[at]).abs() <= 1e-5 * mag[at] + 1e-6,
                        "{isa:?} {ty:?} rows {first}..+{rows} [{i}]: {v} vs {} in the full call",
                        all[at]
                    );
                    }
                }
            }
        }
    }
}

/// Products split into many tasks over weight rows (several activation rows each): every task's
/// part lands in the right columns of y.
#[test]
fn products_split_over_many_weight_row_tasks_land_in_place() {
    let mut g = Gen(0x005e_ed0f_7a5c);
    for ty in [QuantType::Q8_0, QuantType::Q4K] {
        let (n, k) = (203, 2048);
        let w = random_weights(&mut g, ty, n, k);
        // 160: AMX's tasks (32 weight rows each) on CPUs that have it.
        for m in [2, 5, 16, 23, 160] {
            let x = random_x(&mut g, m * k);
            let mag = magnitudes(ty, &w, n, k, &x, m);
            assert_matches_reference(Isa::best(), ty, &w, n, k, &x, m, &mag);
        }
    }
}

/// The AMX reference (bf16 operands, f32 sums) is the exact product of the dequantized
/// weights within bf16 rounding: half an ulp (2⁻⁹ relative) on each operand, plus f32 sums.
#[test]
fn bf16_reference_is_the_dequantized_product_within_bf16_rounding() {
    let mut g = Gen(0xb0f1_6000_5eed);
    for ty in QuantType::ALL {
        let (n, k, m) = (5, 2 * ty.block_elems(), AMX_MIN_ROWS + 3);
        let w = random_weights(&mut g, ty, n, k);
        let x = random_x(&mut g, m * k);
        let (want, _) = dequant_reference(ty, &w, n, k, &x, m);
        let mag = magnitudes(ty, &w, n, k, &x, m);
        let mut y = vec![0f32; m * n];
        let row_bytes = ty.row_bytes(k).unwrap();
        reference::bf16_products(ty, &w, row_bytes, k, &x, m, &mut y);
        for i in 0..m * n {
            let bound = (2.0 * 2f32.powi(-9) + k as f32 * 2f32.powi(-24)) * mag[i] + 1e-6;
            assert!(
                (y[i] - want[i]).abs() <= bound,
                "{ty:?} [{i}]: {} vs {} (bound {bound})",
                y[i],
                want[i]
            );
        }
    }
}

/// A GLU input gives the bits of the GLU computed first, then the product, on every path:
/// few rows (the GLU into a buffer for the 8-bit kernels) and, on AMX CPUs, many (each 16 rows'
/// GLU straight into their tiles, a short last group included).
#[test]
fn glu_input_matches_glu_then_product() {
    use crate::activation::{glu, Act};
    let mut g = Gen(0x51ed_2701);
    for ty in QuantType::ALL {
        let (n, k) = (37, 2 * ty.block_elems());
        let w = random_weights(&mut g, ty, n, k);
        for m in [1, 5, AMX_MIN_ROWS, AMX_MIN_ROWS + 21] {
            let gate = random_x(&mut g, m * k);
            let up = random_x(&mut g, m * k);
            for act in [Act::Silu, Act::GeluTanh] {
                let mut h = vec![0f32; m * k];
                glu(&gate, &up, act, &mut h);
                let mut want = vec![0f32; m * n];
                matmul(ty, &w, n, k, &h, m, &mut want).unwrap();
                let mut got = vec![f32::NAN; m * n];
                glu_matmul(ty, &w, n, k, &gate, &up, act, m, &mut got).unwrap();
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{ty:?} m={m} {act:?}");
            }
        }
        // Halves of different lengths are refused, nothing written.
        let (gate, up) = (vec![0.5; 3 * k], vec![0.5; 3 * k - 1]);
        let mut y = vec![7f32; 3 * n];
        let e = glu_matmul(ty, &w, n, k, &gate, &up, Act::Silu, 3, &mut y).unwrap_err();
        assert!(matches!(e, QuantError::InputSize { .. }), "{e}");
        assert!(y.iter().all(|&v| v == 7.0));
    }
}

/// Products run together give each the bits it gets alone: decode-sized ones (one activation
/// row, a few, the fused panels' sizes), split into many runs of weight rows or fitting in
/// one, a GLU input, and ones that take the other strategies (many rows) or are empty.
#[test]
fn products_run_together_give_the_bits_of_each_alone() {
    use crate::activation::Act;
    let mut g = Gen(0x3a11_7063_7e70);
    // (type, n, k in blocks, m, GLU input)
    let shapes = [
        (QuantType::Mxfp4, 203, 64, 1, false),
        (QuantType::Q4K, 203, 8, 1, false),
        (QuantType::Q8_0, 7, 2, 1, false),
        (QuantType::Q6K, 130, 4, 3, false),
        (QuantType::Q4_0, 203, 64, 9, false),
        (QuantType::Q5K, 64, 4, 5, true),
        (QuantType::Q5_0, 41, 8, 40, false),
        (QuantType::Q4K, 17, 2, 300, false),
        (QuantType::Q8_0, 5, 2, 0, false),
    ];
    let inputs: Vec<_> = shapes
        .iter()
        .map(|&(ty, n, blocks, m, glu)| {
            let k = blocks * ty.block_elems();
            let w = random_weights(&mut g, ty, n, k);
            let x = random_x(&mut g, m * k);
            let up = if glu {
                random_x(&mut g, m * k)
            } else {
                Vec::new()
            };
            (ty, n, k, m, w, x, up)
        })
        .collect();
    let mut alone: Vec<Vec<f32>> = Vec::new();
    for (ty, n, k, m, w, x, up) in &inputs {
        let mut y = vec![f32::NAN; m * n];
        match up.is_empty() {
            true => matmul(*ty, w, *n, *k, x, *m, &mut y).unwrap(),
            false => glu_matmul(*ty, w, *n, *k, x, up, Act::Silu, *m, &mut y).unwrap(),
        }
        alone.push(y);
    }
    let mut together: Vec<Vec<f32>> = inputs
        .iter()
        .map(|(_, n, _, m, ..)| vec![f32::NAN; m * n])
        .collect();
    let mut products: Vec<Product<'_>> = inputs
        .iter()
        .zip(together.iter_mut())
        .map(|((ty, n, k, m, w, x, up), y)| Product {
            ty: *ty,
            w,
            n: *n,
            k: *k,
            x: match up.is_empty() {
                true => Input::Rows(x),
                false => Input::Glu {
                    gate: x,
                    up,
                    act: Act::Silu,
                },
            },
            m: *m,
            y,
        })
        .collect();
    matmul_many(&mut products).unwrap();
    drop(products);
    for (i, (got, want)) in together.iter().zip(&alone).enumerate() {
        let same = got
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "product {i} ({:?}) differs", shapes[i]);
    }

    // One wrong buffer: an error, and nothing written to any output.
    let (ty, n, k, m, w, x, _) = &inputs[0];
    let (mut ok, mut short) = (vec![7f32; m * n], vec![7f32; m * n - 1]);
    let product = |y| Product {
        ty: *ty,
        w,
        n: *n,
        k: *k,
        x: Input::Rows(x),
        m: *m,
        y,
    };
    let mut products = [product(&mut ok), product(&mut short)];
    let e = matmul_many(&mut products).unwrap_err();
    assert!(matches!(e, QuantError::OutputSize { .. }), "{e}");
    assert!(ok.iter().chain(&short).all(|&v| v == 7.0));
}

/// A decode step's one activation row gets the very bits it gets among a few rows (a small
/// batch of the same step), on every kernel set, and on AVX-512 the 512-bit K-quant kernels
/// (`x86::wide_kquant`) give the bits of the 256-bit tiles, lane for lane. Weight row counts
/// leave both a whole group of four and a tail.
#[test]
fn one_row_gets_the_bits_it_gets_among_a_few() {
    let mut g = Gen(0x0e0e_1dea_5eed);
    for isa in Isa::all_supported() {
        for ty in QuantType::ALL {
            for (n, blocks) in [(1, 1), (6, 3), (11, 2)] {
                let k = blocks * ty.block_elems();
                let w = random_weights(&mut g, ty, n, k);
                let m = 3;
                let x = random_x(&mut g, m * k);
                assert_rows_get_their_bits_alone(isa, ty, &w, (n, k), &x, 0..m);
            }
        }
    }
}

/// Batch-invariant mode (`crate::invariance`): a row gets its bits alone among any number of
/// rows, on every kernel set (VNNI's panel counts, AMX's tile counts, the splits by weight
/// rows and by activation rows all included).
#[test]
fn in_batch_invariant_mode_a_row_gets_its_bits_among_any_rows() {
    let _mode = crate::invariance::forced();
    let mut g = Gen(0x001d_e47e_5eed);
    for isa in Isa::all_supported() {
        for ty in QuantType::ALL {
            let (n, k) = (19, 2 * ty.block_elems());
            let w = random_weights(&mut g, ty, n, k);
            for m in [2, 4, 6, 24, 32, 40, 300] {
                let x = random_x(&mut g, m * k);
                assert_rows_get_their_bits_alone(isa, ty, &w, (n, k), &x, [0, m / 2, m - 1]);
            }
        }
    }
}

/// The product of all of `x`'s rows (`m` = its length / k) against `w` (`n` × `k`), and
/// each of `rows` alone: the same bits.
fn assert_rows_get_their_bits_alone(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    (n, k): (usize, usize),
    x: &[f32],
    rows: impl IntoIterator<Item = usize>,
) {
    let m = x.len() / k;
    let mut all = vec![0f32; m * n];
    matmul_with(isa, ty, w, n, k, x, m, &mut all).unwrap();
    for r in rows {
        let mut one = vec![0f32; n];
        matmul_with(isa, ty, w, n, k, &x[r * k..(r + 1) * k], 1, &mut one).unwrap();
        for (j, v) in one.iter().enumerate() {
            assert_eq!(
                v.to_bits(),
                all[r * n + j].to_bits(),
                "{isa:?} {ty:?} n{n} k{k} row {r} [{j}]: {v} alone vs {} among {m}",
                all[r * n + j]
            );
        }
    }
}

/// A weight row's products do not depend on which other weight rows share the call: the same
/// bits alone, among a few, or in a whole matrix (the tiles' tail rows, the VNNI panels paired
/// into 512-bit vectors or left alone at the end, work split into tasks by weight rows).
#[test]
fn weight_rows_get_the_same_bits_in_any_company() {
    let mut g = Gen(0x7a11_c0de_5eed);
    for isa in Isa::all_supported() {
        for ty in QuantType::ALL {
            let (n, k) = (40, 2 * ty.block_elems());
            let w = random_weights(&mut g, ty, n, k);
            let rb = ty.row_bytes(k).unwrap();
            for m in [1, 3, 8, 16, 40, 300] {
                let x = random_x(&mut g, m * k);
                let mut all = vec![0f32; m * n];
                matmul_with(isa, ty, &w, n, k, &x, m, &mut all).unwrap();
                for (first, rows) in [(8, 8), (8, 1), (16, 24), (0, 17)] {
                    let part_w = &w[first * rb..(first + rows) * rb];
                    let mut part = vec![0f32; m * rows];
                    matmul_with(isa, ty, part_w, rows, k, &x, m, &mut part).unwrap();
                    for r in 0..m {
                        for j in 0..rows {
                            let (v, want) = (part[r * rows + j], all[r * n + first + j]);
                            assert_eq!(
                                v.to_bits(),
                                want.to_bits(),
                                "{isa:?} {ty:?} m{m} weight rows {first}..+{rows}: row {r} \
                                 col {j}: {v} vs {want} in the whole matrix"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// On AVX-512 the 512-bit K-quant kernels (`x86::wide_kquant`) give the bits of the 256-bit
/// VNNI tiles they stand in for (`x86::vnni256`), for every activation row count (whole tiles of four and
/// tails) and weight row count (groups of four and tails).
#[cfg(target_arch = "x86_64")]
#[test]
fn wide_kquant_kernels_give_the_bits_of_the_tiles() {
    if !super::x86::has_vnni() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    let mut g = Gen(0x51de_b1de_5eed);
    for ty in [QuantType::Q4K, QuantType::Q5K, QuantType::Q6K] {
        for (n, blocks) in [(1, 1), (6, 3), (11, 2)] {
            let k = blocks * 256;
            let w = random_weights(&mut g, ty, n, k);
            let rb = ty.row_bytes(k).unwrap();
            for m in [1, 2, 3, 4, 5, 7, 9] {
                let x = random_x(&mut g, m * k);
                let mut act = QuantizedRows::default();
                act.quantize(ty.act_format(), &x, m, k);
                let view = act.rows(0, m);
                let mut tiles = vec![0f32; m * n];
                let mut wide = vec![f32::NAN; m * n];
                // SAFETY: VNNI checked above; w is n whole rows of `rb` bytes, x
                // quantized in the K-quants' B256 format, the outputs m rows of n.
                unsafe {
                    super::x86::vnni256::panel(ty, &w, rb, &view, &mut tiles, n);
                    super::x86::vnni::panel(ty, &w, rb, &view, &mut wide, n);
                }
                for (i, (a, b)) in wide.iter().zip(&tiles).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{ty:?} n{n} k{k} m{m} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// On VNNI the products of a few activation rows straight from the weight blocks
/// (`x86::panel_rows`: batch-invariant mode's kernel below the panel counts) give the bits of
/// the repacked panels (`x86::panel_gemm`), for every format, activation row count (whole
/// tiles and tails) and weight row count (whole groups of eight and tails), written `stride`
/// apart; and both are the scalar reference of the same activations within float rounding.
#[cfg(target_arch = "x86_64")]
#[test]
fn panel_rows_give_the_bits_of_the_repacked_panels() {
    use super::x86::{panel, panel_gemm, panel_rows, repack_panel};
    if !super::x86::has_vnni() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    let mut g = Gen(0x9a2e_1205_5eed);
    for ty in QuantType::ALL {
        for (n, blocks) in [(1, 1), (8, 2), (11, 3), (19, 1)] {
            let k = blocks * ty.block_elems();
            let w = random_weights(&mut g, ty, n, k);
            let rb = ty.row_bytes(k).unwrap();
            let pb = panel::panel_bytes(k);
            let mut panels = vec![0u8; n.div_ceil(panel::ROWS) * pb];
            for (i, out) in panels.chunks_exact_mut(pb).enumerate() {
                let rows = i * panel::ROWS..((i + 1) * panel::ROWS).min(n);
                repack_panel(ty, &w[rows.start * rb..rows.end * rb], rb, k, out);
            }
            for m in [1, 2, 3, 4, 5, 8, 9] {
                let x = random_x(&mut g, m * k);
                let mut act = QuantizedRows::default();
                act.quantize(ty.panel_format(), &x, m, k);
                let view = act.rows(0, m);
                let stride = n + 3;
                let mut repacked = vec![f32::NAN; m * stride];
                let mut direct = vec![f32::NAN; m * stride];
                panel_gemm(ty, &panels, n, k, &view, &mut repacked, stride);
                panel_rows(ty, &w, rb, &view, &mut direct, stride);
                let mut want = vec![0f32; m * n];
                scalar_panel(ty, &w, rb, &view, &mut want, n);
                let mag = magnitudes(ty, &w, n, k, &x, m);
                for r in 0..m {
                    for j in 0..n {
                        let (a, b) = (direct[r * stride + j], repacked[r * stride + j]);
                        let (want, mag) = (want[r * n + j], mag[r * n + j]);
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "{ty:?} n{n} k{k} m{m} row {r} col {j}: {a} vs {b} from panels"
                        );
                        assert!(
                            (a - want).abs() <= 1e-5 * mag + 1e-6,
                            "{ty:?} n{n} k{k} m{m} row {r} col {j}: {a} vs reference {want}"
                        );
                    }
                }
            }
        }
    }
}

/// `dequantize` gives gguf-py's values (the reference llama.cpp's Python package ships) for
/// random blocks of every GGML type here: the layouts are read as llama.cpp writes them, not
/// only as the kernels and the scalar reference agree to read them
/// (`scripts/gen-quant-goldens.py` wrote the fixture).
#[test]
fn dequantization_matches_gguf_py() {
    let text = include_str!("../../../tests/fixtures/quant/gguf_py_dequant.txt");
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(hex)) = (fields.next(), fields.next()) else {
            panic!("bad fixture line {line:?}");
        };
        let ty = QuantType::ALL
            .into_iter()
            .find(|t| format!("{t:?}") == name)
            .unwrap_or_else(|| panic!("unknown type {name}"));
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let want: Vec<f32> = fields.map(|v| v.parse().unwrap()).collect();
        assert_eq!(bytes.len(), ty.block_bytes(), "{name}");
        assert_eq!(want.len(), ty.block_elems(), "{name}");
        let mut got = vec![0f32; ty.block_elems()];
        super::dequantize(ty, &bytes, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // gguf-py computes in f32 too, some products in another order: a few ulps.
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1e-3),
                "{name} element {i}: {g} vs gguf-py {w}"
            );
        }
        seen.insert(ty);
    }
    for ty in QuantType::ALL {
        assert!(
            seen.contains(&ty) || ty == QuantType::Mxfp4,
            "no gguf-py blocks of {ty:?}"
        );
    }
}
