//! RoPE inverse frequencies, with the scaling schemes of the supported families. Tables of
//! cos/sin are never built for the whole context: backends compute them for the positions in use.
use crate::backend::{RopeSpec, RopeStyle};
use crate::spec::RopeScaling;

/// `theta^(-2i/d)` for i in 0..d/2, scaled as `scaling` says.
pub fn inv_freq(head_dim: usize, theta: f32, scaling: &RopeScaling) -> Vec<f32> {
    let half = head_dim / 2;
    let base: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f64).powf(2.0 * i as f64 / head_dim as f64) as f32)
        .collect();
    match *scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.into_iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position,
        } => {
            let old = original_max_position as f32;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
        RopeScaling::Yarn {
            factor,
            original_max_position,
            beta_fast,
            beta_slow,
            truncate,
            ..
        } => {
            // The dimension (of `head_dim`) whose frequency turns `rotations` times over the
            // original context.
            let dim = head_dim as f64;
            let correction_dim = |rotations: f32| {
                dim * (original_max_position as f64
                    / (rotations as f64 * 2.0 * std::f64::consts::PI))
                    .ln()
                    / (2.0 * (theta as f64).ln())
            };
            let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
            if truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
            if low == high {
                high += 0.001;
            }
            base.into_iter()
                .enumerate()
                .map(|(i, f)| {
                    // 1 keeps the original frequency, 0 interpolates it fully.
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0) as f32;
                    let extrapolation = 1.0 - ramp;
                    (f / factor) * (1.0 - extrapolation) + f * extrapolation
                })
                .collect()
        }
        RopeScaling::LongRope {
            ref short_factor,
            ref long_factor,
            long,
            ..
        } => {
            let factors = if long { long_factor } else { short_factor };
            base.into_iter()
                .zip(factors.iter().chain(std::iter::repeat(&1.0)))
                .map(|(f, k)| f / k)
                .collect()
        }
    }
}

/// The factor YaRN and LongRoPE multiply cos/sin by (1 for every other scheme).
pub fn attention_factor(scaling: &RopeScaling) -> f32 {
    match *scaling {
        RopeScaling::Yarn {
            attention_factor, ..
        }
        | RopeScaling::LongRope {
            attention_factor, ..
        } => attention_factor,
        _ => 1.0,
    }
}

/// RoPE of heads of `head_dim` rotating their first `rotary` dimensions (NeoX pairs `(i, i +
/// rotary/2)`), run as a rotation of the whole head: with the heads' dimensions laid out by
/// `partial_head_sources` the rotated pairs sit at `(i, i + head_dim/2)` and the others get a
/// frequency of 0 (a rotation by 0 leaves them exactly as they are), so every backend's RoPE
/// serves. The attention factor then goes into the q/k weights' rotated rows (returned), as
/// it must not scale the other dimensions.
pub fn partial_rope_spec(
    head_dim: usize,
    rotary: usize,
    theta: f32,
    scaling: &RopeScaling,
) -> (RopeSpec, f32) {
    let mut freqs = inv_freq(rotary, theta, scaling);
    freqs.resize(head_dim / 2, 0.0);
    let spec = RopeSpec {
        inv_freq: freqs,
        style: RopeStyle::Neox,
        mscale: 1.0,
    };
    (spec, attention_factor(scaling))
}

/// Where rotary dimension `j` of `rotary` sits in a head of `width` that RoPE rotates whole
/// (the other dimensions given a frequency of 0, which leaves them as they are): interleaved
/// pairs (2i, 2i+1) stay where they are; neox pairs (i, i + rotary/2) move to (i, i + width/2),
/// where a whole-head rotation pairs them.
pub fn rotary_position(j: usize, rotary: usize, width: usize, style: RopeStyle) -> usize {
    match style {
        RopeStyle::Interleaved => j,
        RopeStyle::Neox if j < rotary / 2 => j,
        RopeStyle::Neox => width / 2 + j - rotary / 2,
    }
}

/// For each position of such a head, the stored dimension it holds and whether it rotates:
/// the rotary dimensions (stored at `rotary_from..rotary_from + rotary`) at their
/// `rotary_position`s, the `others` in the places left, in order; None past them (padding).
/// Partial RoPE (Phi-3, GLM: rotary dimensions first) and latent attention (DeepSeek: after
/// the others) lay their heads out by it.
pub fn rotary_layout(
    width: usize,
    rotary: usize,
    rotary_from: usize,
    others: impl IntoIterator<Item = usize>,
    style: RopeStyle,
) -> Vec<Option<(usize, bool)>> {
    let mut out = vec![None; width];
    for j in 0..rotary {
        out[rotary_position(j, rotary, width, style)] = Some((rotary_from + j, true));
    }
    let mut others = others.into_iter();
    for place in out.iter_mut().filter(|p| p.is_none()) {
        match others.next() {
            Some(o) => *place = Some((o, false)),
            None => break,
        }
    }
    out
}

/// For each position of a head laid out for `partial_rope_spec`, the stored dimension it
/// holds (stored heads: the `rotary` dimensions first, paired as `stored` says: Phi-3's and
/// GLM-4.5's halves, GLM-4's interleaved pairs) and whether it rotates.
pub fn partial_head_sources(
    head_dim: usize,
    rotary: usize,
    stored: RopeStyle,
) -> Vec<(usize, bool)> {
    let half = rotary / 2;
    rotary_layout(head_dim, rotary, 0, rotary..head_dim, RopeStyle::Neox)
        .into_iter()
        .map(|s| match s {
            // Rotary dimension j in neox order: pair i's first (j = i) or second (j = half + i)
            // member, stored at 2i and 2i + 1 where pairs interleave.
            Some((j, true)) if stored == RopeStyle::Interleaved => match j < half {
                true => (2 * j, true),
                false => (2 * (j - half) + 1, true),
            },
            other => other.unwrap_or((0, false)),
        })
        .collect()
}

pub fn rope_spec(head_dim: usize, theta: f32, scaling: &RopeScaling, style: RopeStyle) -> RopeSpec {
    RopeSpec {
        inv_freq: inv_freq(head_dim, theta, scaling),
        style,
        mscale: attention_factor(scaling),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_frequencies() {
        let f = inv_freq(4, 10000.0, &RopeScaling::None);
        assert_eq!(f.len(), 2);
        assert!((f[0] - 1.0).abs() < 1e-7);
        assert!((f[1] - 0.01).abs() < 1e-7);
    }

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 32,
        };
        let base = inv_freq(16, 500000.0, &RopeScaling::None);
        let scaled = inv_freq(16, 500000.0, &s);
        assert_eq!(scaled[0], base[0]);
        let last = base.len() - 1;
        assert!((scaled[last] - base[last] / 8.0).abs() < 1e-12);
    }

    /// A rotation of half a head as HF rotates it (NeoX halves, or GLM-4's interleaved pairs)
    /// equals the whole laid-out head's NeoX rotation with zero frequencies past the rotated
    /// pairs; the layout holds every stored dimension once.
    #[test]
    fn partial_rotation_as_a_whole_head_rotation() {
        let (d, r, pos) = (8, 4, 5.0f32);
        let hf: Vec<f32> = (0..d).map(|i| i as f32 * 0.3 - 1.0).collect();
        let (spec, factor) = partial_rope_spec(d, r, 100.0, &RopeScaling::None);
        assert_eq!(factor, 1.0);
        let freqs = inv_freq(r, 100.0, &RopeScaling::None);
        for stored in [RopeStyle::Neox, RopeStyle::Interleaved] {
            let mut want = hf.clone();
            for (i, f) in freqs.iter().enumerate() {
                let (s, c) = (pos * f).sin_cos();
                let (a, b) = match stored {
                    RopeStyle::Neox => (i, i + r / 2),
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                };
                want[a] = hf[a] * c - hf[b] * s;
                want[b] = hf[b] * c + hf[a] * s;
            }
            let sources = partial_head_sources(d, r, stored);
            let mut head: Vec<f32> = sources.iter().map(|&(j, _)| hf[j]).collect();
            for (i, f) in spec.inv_freq.iter().enumerate() {
                let (s, c) = (pos * f).sin_cos();
                let (x, y) = (head[i], head[i + d / 2]);
                head[i] = x * c - y * s;
                head[i + d / 2] = y * c + x * s;
            }
            for (p, &(j, _)) in sources.iter().enumerate() {
                assert!((head[p] - want[j]).abs() < 1e-6, "{stored:?} dim {j}");
            }
            let mut seen: Vec<usize> = sources.iter().map(|s| s.0).collect();
            seen.sort();
            assert_eq!(seen, (0..d).collect::<Vec<_>>());
        }
    }

    #[test]
    fn longrope_divides_by_the_factors_of_the_context_served() {
        let s = RopeScaling::LongRope {
            short_factor: vec![1.0, 2.0],
            long_factor: vec![4.0, 8.0],
            original_max_position: 32,
            attention_factor: 1.2,
            long: false,
        };
        let base = inv_freq(4, 100.0, &RopeScaling::None);
        let short = inv_freq(4, 100.0, &s.for_context(32));
        let long = inv_freq(4, 100.0, &s.for_context(33));
        assert_eq!(short, vec![base[0], base[1] / 2.0]);
        assert_eq!(long, vec![base[0] / 4.0, base[1] / 8.0]);
        assert_eq!(attention_factor(&s), 1.2);
    }

    /// Qwen2.5's long-context config (factor 4 over 32768 positions, head_dim 128, theta 1e6),
    /// against the values of transformers' `_compute_yarn_parameters`: the fast dimensions
    /// kept, the slow ones divided by the factor, the ramp between.
    #[test]
    fn yarn_keeps_fast_and_interpolates_slow_frequencies() {
        let s = RopeScaling::Yarn {
            factor: 4.0,
            original_max_position: 32768,
            beta_fast: 32.0,
            beta_slow: 1.0,
            truncate: true,
            attention_factor: crate::spec::yarn_mscale(4.0, 1.0),
        };
        let base = inv_freq(128, 1e6, &RopeScaling::None);
        let scaled = inv_freq(128, 1e6, &s);
        // Correction range: floor(23.6) = 23 .. ceil(39.7) = 40 for these parameters.
        for i in 0..=23 {
            assert_eq!(scaled[i], base[i], "dimension {i}");
        }
        for i in 40..64 {
            assert!(
                (scaled[i] - base[i] / 4.0).abs() <= base[i] * 1e-6,
                "dimension {i}"
            );
        }
        let mid = 32;
        let ramp = (mid as f32 - 23.0) / (40.0 - 23.0);
        let want = base[mid] / 4.0 * ramp + base[mid] * (1.0 - ramp);
        assert!((scaled[mid] - want).abs() <= want * 1e-6);
        assert!((attention_factor(&s) - (0.1 * 4f32.ln() + 1.0)).abs() < 1e-7);
    }
}
