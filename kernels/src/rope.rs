//! Rotary position embedding applied in place to `[tokens, heads, head_dim]` rows.

/// Pairing of the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// i with i + d/2 (HF `rotate_half`).
    Neox,
    /// 2i with 2i + 1.
    Interleaved,
}

/// Rotate `x` (`positions.len()` rows of `heads * head_dim`) in place. cos/sin are computed for
/// the positions given, so no table for the whole context is ever built.
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
    x.par_chunks_mut(row.max(1))
        .zip(positions.par_iter())
        .for_each_init(
            || (vec![0f32; half], vec![0f32; half]),
            |(cos, sin), (row, &pos)| {
                for i in 0..half {
                    // f64 angle keeps large positions accurate (pos * freq can exceed 1e5 rad).
                    let a = pos as f64 * inv_freq[i] as f64;
                    cos[i] = a.cos() as f32 * mscale;
                    sin[i] = a.sin() as f32 * mscale;
                }
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
            },
        );
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

    #[test]
    fn neox_rotates_pairs_half_apart() {
        let inv = [1.0f32];
        let mut x = vec![1.0, 0.0];
        apply_rope(&mut x, &[1], 1, 2, &inv, Pairing::Neox, 1.0);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6);
        assert!((x[1] - 1f32.sin()).abs() < 1e-6);
    }
}
