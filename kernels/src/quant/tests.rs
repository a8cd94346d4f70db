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

/// Random but valid blocks: a small positive or negative scale and random quant bytes.
fn random_weights(g: &mut Gen, ty: QuantType, n: usize, k: usize) -> Vec<u8> {
    let mut w = Vec::new();
    for _ in 0..n * k / 32 {
        let d = half::f16::from_f32(g.f32() * 0.05);
        w.extend_from_slice(&d.to_bits().to_le_bytes());
        for _ in 2..ty.block_bytes() {
            w.push(g.next() as u8);
        }
    }
    w
}

/// Exact f32 products with dequantized weights, and for each the worst-case error of rounding
/// the activations to 8 bits (half a step per element, times |w|).
fn reference(ty: QuantType, w: &[u8], n: usize, k: usize, x: &[f32], m: usize) -> (Vec<f32>, Vec<f32>) {
    let mut wf = vec![0f32; n * k];
    dequantize(ty, w, &mut wf);
    let step: Vec<f32> = x.chunks(32).map(|b| b.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0).collect();
    let mut y = vec![0f32; m * n];
    let mut bound = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            y[r * n + c] = (0..k).map(|i| x[r * k + i] * wf[c * k + i]).sum();
            bound[r * n + c] = (0..k).map(|i| 0.5 * step[(r * k + i) / 32] * wf[c * k + i].abs()).sum();
        }
    }
    (y, bound)
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
        assert_eq!(out[j + 16], (15 - j as i32 + bit_hi - 16) as f32, "element {}", j + 16);
    }
}

#[test]
fn every_isa_matches_the_scalar_reference_on_random_blocks() {
    let mut g = Gen(0x9e3779b97f4a7c15);
    let isas = [Isa::Scalar, Isa::detect()];
    for ty in [QuantType::Q5_0, QuantType::Q8_0] {
        // Edge sizes: one block, odd block counts, rows that do not fill a tile, one row.
        for &(n, k, m) in &[(1, 32, 1), (3, 96, 5), (17, 224, 4), (33, 64, 7), (16, 896, 1), (5, 32, 9)] {
            let w = random_weights(&mut g, ty, n, k);
            let x: Vec<f32> = (0..m * k).map(|_| g.f32()).collect();
            let (want, bound) = reference(ty, &w, n, k, &x, m);
            let mut outs = Vec::new();
            for isa in isas {
                let mut y = vec![0f32; m * n];
                matmul_with(isa, ty, &w, n, k, &x, m, &mut y).unwrap();
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= bound[i] * 1.01 + 1e-5, "{ty:?} {isa:?} n{n} k{k} m{m} [{i}]: {a} vs {b} (bound {})", bound[i]);
                }
                outs.push(y);
            }
            // Same integer arithmetic: SIMD and scalar agree to float rounding.
            for (a, b) in outs[0].iter().zip(&outs[1]) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{ty:?} scalar {a} vs simd {b}");
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let w = vec![0u8; 22];
    let mut y = vec![0f32; 1];
    assert!(matches!(matmul(QuantType::Q5_0, &w, 1, 31, &[0.0; 31], 1, &mut y), Err(QuantError::RowLength { .. })));
    assert!(matches!(matmul(QuantType::Q5_0, &w, 2, 32, &[0.0; 32], 1, &mut y), Err(QuantError::WeightSize { .. })));
    assert!(matches!(matmul(QuantType::Q5_0, &w, 1, 32, &[0.0; 31], 1, &mut y), Err(QuantError::InputSize { .. })));
}

#[test]
fn zero_activations_give_zero() {
    let mut g = Gen(7);
    let w = random_weights(&mut g, QuantType::Q8_0, 4, 64);
    let mut y = vec![1f32; 8];
    matmul(QuantType::Q8_0, &w, 4, 64, &[0.0; 128], 2, &mut y).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}
