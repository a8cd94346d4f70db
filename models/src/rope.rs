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
    }
}

/// The factor YaRN multiplies cos/sin by (1 for every other scheme).
pub fn attention_factor(scaling: &RopeScaling) -> f32 {
    match *scaling {
        RopeScaling::Yarn {
            attention_factor, ..
        } => attention_factor,
        _ => 1.0,
    }
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
