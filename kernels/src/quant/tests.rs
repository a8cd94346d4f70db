use super::blocks::dequantize;
use super::*;

/// A deterministic generator (xorshift) so tests need no dependency.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
}

/// Random but valid blocks: random bytes everywhere, then small f16 scales where the format
/// keeps them (random bytes there could be NaN or huge).
fn random_weights(g: &mut Gen, ty: QuantType, n: usize, k: usize) -> Vec<u8> {
    let mut w = Vec::new();
    let scale_at: &[usize] = match ty {
        QuantType::Q5_0 | QuantType::Q8_0 => &[0],
        QuantType::Q4K => &[0, 2],
        QuantType::Q6K => &[208],
    };
    for _ in 0..n * k / ty.block_elems() {
        let mut block: Vec<u8> = (0..ty.block_bytes()).map(|_| g.next() as u8).collect();
        for &at in scale_at {
            let d = half::f16::from_f32(g.f32() * 0.01);
            block[at..at + 2].copy_from_slice(&d.to_bits().to_le_bytes());
        }
        w.extend(block);
    }
    w
}

/// Exact f32 products with dequantized weights, and for each the worst-case error of rounding
/// the activations to 8 bits (half a step per element, times |w|).
fn reference(
    ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut wf = vec![0f32; n * k];
    dequantize(ty, w, &mut wf);
    let step: Vec<f32> = x
        .chunks(32)
        .map(|b| b.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0)
        .collect();
    let mut y = vec![0f32; m * n];
    let mut bound = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            y[r * n + c] = (0..k).map(|i| x[r * k + i] * wf[c * k + i]).sum();
            bound[r * n + c] = (0..k)
                .map(|i| 0.5 * step[(r * k + i) / 32] * wf[c * k + i].abs())
                .sum();
        }
    }
    (y, bound)
}

#[test]
fn k_quant_decoding_matches_the_ggml_layout() {
    // Q4_K: d = 1, dmin = 0.5, sub-block 0 scale 3 min 2, sub-block 5 scale/min from the
    // packed high bits; nibbles 0..15 repeating.
    let mut b = vec![0u8; 144];
    b[0..2].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
    b[2..4].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
    b[4] = 3; // sc0
    b[8] = 2; // m0
    b[4 + 9] = 0x21; // j = 5: sc low nibble 1, m low nibble 2
    b[4 + 1] |= 0x40; // sc5 high bits (from scales[1] >> 6) = 1 -> sc5 = 1 | 16 = 17
    for i in 0..128 {
        b[16 + i] = ((i % 16) as u8) | (((15 - i % 16) as u8) << 4);
    }
    let mut out = vec![0f32; 256];
    dequantize(QuantType::Q4K, &b, &mut out);
    assert_eq!(out[0], 3.0 * 0.0 - 0.5 * 2.0);
    assert_eq!(out[7], 3.0 * 7.0 - 1.0);
    // Sub-block 5 = high nibbles of bytes 64..96: 15 - (i % 16); m5 = 2 | (scales[5] >> 6) << 4 = 2.
    assert_eq!(out[5 * 32 + 1], 17.0 * 14.0 - 0.5 * 2.0);
    // Q6_K: d = 1, scales 1..16, all ql = 0x21, qh = 0b11_10_01_00: element i of half 0 in
    // sub-block k (32 wide) has low nibble 1 (k < 2) or 2 (k >= 2) and high pair k.
    let mut b = vec![0u8; 210];
    b[..128].fill(0x21);
    b[128..192].fill(0b1110_0100);
    for (i, s) in b[192..208].iter_mut().enumerate() {
        *s = i as u8 + 1;
    }
    b[208..210].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
    dequantize(QuantType::Q6K, &b, &mut out);
    for k in 0..4 {
        let q = (if k < 2 { 1 } else { 2 }) | (k << 4);
        assert_eq!(
            out[32 * k],
            (2 * k + 1) as f32 * (q as f32 - 32.0),
            "sub-block {k}"
        );
        assert_eq!(
            out[32 * k + 16],
            (2 * k + 2) as f32 * (q as f32 - 32.0),
            "sub-block {k} second half"
        );
    }
}

#[test]
fn q5_0_decoding_matches_the_ggml_layout() {
    // d = 1.0, qh: bit j set for even j, qs[j] = j (low nibble) | (15 - j) << 4.
    let mut block = vec![0x00, 0x3c];
    block.extend_from_slice(&0x5555_5555u32.to_le_bytes());
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut out = vec![0f32; 32];
    dequantize(QuantType::Q5_0, &block, &mut out);
    for j in 0..16 {
        let bit = if j % 2 == 0 { 16 } else { 0 };
        assert_eq!(out[j], (j as i32 + bit - 16) as f32, "element {j}");
        let bit_hi = if (j + 16) % 2 == 0 { 16 } else { 0 };
        assert_eq!(
            out[j + 16],
            (15 - j as i32 + bit_hi - 16) as f32,
            "element {}",
            j + 16
        );
    }
}

#[test]
fn every_isa_matches_the_scalar_reference_on_random_blocks() {
    let mut g = Gen(0x9e3779b97f4a7c15);
    // Every instruction set this CPU runs: scalar, AVX2, and AVX2 with VNNI where present.
    let mut isas = vec![Isa::Scalar, Isa::detect()];
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx512Vnni {
        isas.push(Isa::Avx2);
    }
    for ty in [
        QuantType::Q5_0,
        QuantType::Q8_0,
        QuantType::Q4K,
        QuantType::Q6K,
    ] {
        // Edge sizes: one block, odd block counts, rows that do not fill a tile, one row.
        for &(n, k, m) in &[
            (1usize, 32usize, 1usize),
            (3, 96, 5),
            (17, 224, 4),
            (33, 64, 7),
            (16, 896, 1),
            (5, 32, 9),
        ] {
            let k = if ty.block_elems() == 256 {
                k.div_ceil(32) * 256
            } else {
                k
            };
            let w = random_weights(&mut g, ty, n, k);
            let x: Vec<f32> = (0..m * k).map(|_| g.f32()).collect();
            let (want, bound) = reference(ty, &w, n, k, &x, m);
            let mut outs = Vec::new();
            for &isa in &isas {
                let mut y = vec![0f32; m * n];
                matmul_with(isa, ty, &w, n, k, &x, m, &mut y).unwrap();
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= bound[i] * 1.01 + 1e-5,
                        "{ty:?} {isa:?} n{n} k{k} m{m} [{i}]: {a} vs {b} (bound {})",
                        bound[i]
                    );
                }
                outs.push(y);
            }
            // Same integer arithmetic: SIMD and scalar agree to float rounding.
            for (a, b) in outs[0].iter().zip(&outs[1]) {
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                    "{ty:?} scalar {a} vs simd {b}"
                );
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let w = vec![0u8; 22];
    let mut y = vec![0f32; 1];
    assert!(matches!(
        matmul(QuantType::Q5_0, &w, 1, 31, &[0.0; 31], 1, &mut y),
        Err(QuantError::RowLength { .. })
    ));
    assert!(matches!(
        matmul(QuantType::Q5_0, &w, 2, 32, &[0.0; 32], 1, &mut y),
        Err(QuantError::WeightSize { .. })
    ));
    assert!(matches!(
        matmul(QuantType::Q5_0, &w, 1, 32, &[0.0; 31], 1, &mut y),
        Err(QuantError::InputSize { .. })
    ));
}

#[test]
fn zero_activations_give_zero() {
    let mut g = Gen(7);
    let w = random_weights(&mut g, QuantType::Q8_0, 4, 64);
    let mut y = vec![1f32; 8];
    matmul(QuantType::Q8_0, &w, 4, 64, &[0.0; 128], 2, &mut y).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}
