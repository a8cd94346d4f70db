//! ALiBi (Press et al., "Train Short, Test Long"): no rotary or learned positions; each head
//! adds `slope · (key position − query position)` to its attention scores, a linear penalty on
//! distance whose slope differs per head (BLOOM, MPT, Falcon-RW). The kernels add the bias
//! (`AttentionParams::alibi`); this module gives each head its slope.

/// A model's ALiBi: the slopes' geometric sequence and what the model does to them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Alibi {
    /// The largest exponent of the slopes' sequence (BLOOM's 8, MPT's `alibi_bias_max`,
    /// llama.cpp's `attention.max_alibi_bias`): the first power-of-two `n` heads get
    /// `2^(-max_bias · h / n)`, h = 1..=n.
    pub max_bias: f32,
    /// Times this: Falcon-RW adds the bias before its 1/√d scaling, which scales the bias
    /// too; BLOOM and MPT add it to the scaled scores (1).
    pub scale: f32,
    /// The slopes rounded to bf16 first, as Falcon's `build_alibi_tensor` rounds them.
    pub bf16_slopes: bool,
}

impl Alibi {
    /// BLOOM's and MPT's: slopes up to 2^-8 on the scaled scores.
    pub const STANDARD: Alibi = Alibi {
        max_bias: 8.0,
        scale: 1.0,
        bf16_slopes: false,
    };

    /// Each of `heads` query heads' slope, as BLOOM's `build_alibi_tensor`, MPT's
    /// `build_mpt_alibi_tensor` and llama.cpp's `ggml_soft_max_ext` give them (the three
    /// agree): `n` the largest power of two up to `heads`, heads `0..n` take `m0^(h+1)` with
    /// `m0 = 2^(-max_bias/n)`, the rest the odd powers of `m1 = 2^(-max_bias/2n)`, which
    /// interleave with the first ones.
    pub fn slopes(&self, heads: usize) -> Vec<f32> {
        if heads == 0 {
            return Vec::new();
        }
        let n = 1usize << heads.ilog2();
        let m0 = 2f64.powf(-(self.max_bias as f64) / n as f64);
        let m1 = 2f64.powf(-(self.max_bias as f64) / 2.0 / n as f64);
        (0..heads)
            .map(|h| {
                let slope = match h < n {
                    true => m0.powi(h as i32 + 1),
                    false => m1.powi(2 * (h - n) as i32 + 1),
                } as f32;
                let slope = match self.bf16_slopes {
                    true => half::bf16::from_f32(slope).to_f32(),
                    false => slope,
                };
                slope * self.scale
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (*x as f64 - y).abs() < 1e-7)
    }

    /// A power of two: 2^-1 .. 2^-8 for eight heads.
    #[test]
    fn power_of_two_heads_halve_their_slope_per_head() {
        let want: Vec<f64> = (1..=8).map(|h| 2f64.powi(-h)).collect();
        assert!(close(&Alibi::STANDARD.slopes(8), &want));
    }

    /// Twelve heads (BLOOM-560M's count is 16; BLOOM-1B7's 16; 12 appear in small fine-tunes):
    /// eight of 2^-h, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 — the odd steps of a 16-head
    /// sequence, as transformers' `build_alibi_tensor` computes them.
    #[test]
    fn other_head_counts_take_the_odd_steps_of_the_next_power_of_two() {
        let mut want: Vec<f64> = (1..=8).map(|h| 2f64.powi(-h)).collect();
        want.extend([0.5, 1.5, 2.5, 3.5].map(|e| 2f64.powf(-e)));
        assert!(close(&Alibi::STANDARD.slopes(12), &want));
        assert!(Alibi::STANDARD.slopes(0).is_empty());
        assert!(close(&Alibi::STANDARD.slopes(1), &[2f64.powi(-8)]));
    }

    /// Falcon-RW's: bf16 slopes times 1/√d.
    #[test]
    fn falcon_rounds_its_slopes_to_bf16_and_scales_them() {
        let falcon = Alibi {
            scale: 0.125,
            bf16_slopes: true,
            ..Alibi::STANDARD
        };
        let s = falcon.slopes(32);
        // 2^(-1/4) = 0.8409 rounds to 0.83984375 in bf16 (8 bits of mantissa).
        assert_eq!(s[0], 0.83984375 * 0.125);
        assert_eq!(s[3], 0.5 * 0.125);
    }
}
