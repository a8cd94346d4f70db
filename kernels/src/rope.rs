//! Rotary position embedding applied in place to `[tokens, heads, head_dim]` rows.

/// Pairing of the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// i with i + d/2 (HF `rotate_half`).
    Neox,
    /// 2i with 2i + 1.
    Interleaved,
}

/// Rows per task, and the longest run of consecutive positions whose angles are stepped from
/// the previous row's rather than computed anew.
const ROWS_PER_TASK: usize = 32;

/// Rotate `x` (`positions.len()` rows of `heads * head_dim`) in place. cos/sin are computed for
/// the positions given, so no table for the whole context is ever built.
///
/// The angles are f64 (pos · freq exceeds 1e5 rad at long contexts). A row whose position
/// follows the previous row's steps each (cos, sin) by one rotation of its frequency (four f64
/// multiply-adds, which vectorize) instead of calling `sin` and `cos`: those were ~10% of a
/// Gemma 3 prefill. Each task's first row is computed directly, so the stepping error (a few
/// f64 ulps per step, over at most `ROWS_PER_TASK` steps) stays far below f32 rounding.
pub fn apply_rope(
    x: &mut [f32],
    positions: &[u32],
    heads: usize,
    head_dim: usize,
    inv_freq: &[f32],
    pairing: Pairing,
    mscale: f32,
) {
    use rayon::prelude::*;
    let half = head_dim / 2;
    debug_assert_eq!(inv_freq.len(), half);
    let row = heads * head_dim;
    if row == 0 {
        return;
    }
    // One rotation per frequency: (cos θᵢ, sin θᵢ).
    let step: Vec<(f64, f64)> = inv_freq
        .iter()
        .map(|&f| (f as f64).sin_cos())
        .map(|(s, c)| (c, s))
        .collect();
    x.par_chunks_mut(row * ROWS_PER_TASK)
        .zip(positions.par_chunks(ROWS_PER_TASK))
        .for_each(|(rows, positions)| {
            let (mut c64, mut s64) = (vec![0f64; half], vec![0f64; half]);
            let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
            let mut prev: Option<u32> = None;
            for (row, &pos) in rows.chunks_mut(row).zip(positions) {
                if prev.is_some_and(|p| p.checked_add(1) == Some(pos)) {
                    for i in 0..half {
                        let (c, s) = (c64[i], s64[i]);
                        let (dc, ds) = step[i];
                        c64[i] = c * dc - s * ds;
                        s64[i] = s * dc + c * ds;
                    }
                } else {
                    for i in 0..half {
                        let (s, c) = (pos as f64 * inv_freq[i] as f64).sin_cos();
                        (c64[i], s64[i]) = (c, s);
                    }
                }
                prev = Some(pos);
                for i in 0..half {
                    cos[i] = c64[i] as f32 * mscale;
                    sin[i] = s64[i] as f32 * mscale;
                }
                rotate(row, head_dim, &cos, &sin, pairing);
            }
        });
}

/// Every head of `row` rotated by the angles whose (cos, sin) are given.
fn rotate(row: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], pairing: Pairing) {
    let half = head_dim / 2;
    for h in row.chunks_mut(head_dim) {
        match pairing {
            Pairing::Neox => {
                let (lo, hi) = h.split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (lo[i], hi[i]);
                    lo[i] = a * cos[i] - b * sin[i];
                    hi[i] = b * cos[i] + a * sin[i];
                }
            }
            Pairing::Interleaved => {
                for i in 0..half {
                    let (a, b) = (h[2 * i], h[2 * i + 1]);
                    h[2 * i] = a * cos[i] - b * sin[i];
                    h[2 * i + 1] = b * cos[i] + a * sin[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let inv = [1.0f32, 0.1];
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        apply_rope(&mut x, &[0], 1, 4, &inv, Pairing::Neox, 1.0);
        assert_eq!(x, vec![1.0, 2.0, 3.0, 4.0]);
        let mut y = vec![1.0, 2.0, 3.0, 4.0];
        apply_rope(&mut y, &[7], 1, 4, &inv, Pairing::Interleaved, 1.0);
        let n0: f32 = [1.0f32, 2.0, 3.0, 4.0].iter().map(|v| v * v).sum();
        let n1: f32 = y.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
    }

    /// Stepped angles agree with angles computed anew within f32 rounding, at small and large
    /// positions, for runs of consecutive positions broken by jumps and repeats.
    #[test]
    fn stepped_angles_match_direct_ones() {
        let (heads, d) = (3, 64);
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
            .collect();
        let mut positions: Vec<u32> = (0..100).collect();
        positions.extend(200_000..200_070);
        positions.extend([5, 5, 6, 7, u32::MAX - 1, u32::MAX, 0, 1]);
        let x0: Vec<f32> = (0..positions.len() * heads * d)
            .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
            .collect();
        for pairing in [Pairing::Neox, Pairing::Interleaved] {
            let mut stepped = x0.clone();
            apply_rope(&mut stepped, &positions, heads, d, &inv, pairing, 1.1);
            // One row at a time: every angle computed anew.
            let mut direct = x0.clone();
            for (row, &p) in direct.chunks_mut(heads * d).zip(&positions) {
                apply_rope(row, &[p], heads, d, &inv, pairing, 1.1);
            }
            for (i, (a, b)) in stepped.iter().zip(&direct).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "{pairing:?} {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn neox_rotates_pairs_half_apart() {
        let inv = [1.0f32];
        let mut x = vec![1.0, 0.0];
        apply_rope(&mut x, &[1], 1, 2, &inv, Pairing::Neox, 1.0);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6);
        assert!((x[1] - 1f32.sin()).abs() < 1e-6);
    }
}
