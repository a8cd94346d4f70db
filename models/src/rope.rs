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
    }
}

pub fn rope_spec(head_dim: usize, theta: f32, scaling: &RopeScaling, style: RopeStyle) -> RopeSpec {
    RopeSpec {
        inv_freq: inv_freq(head_dim, theta, scaling),
        style,
        mscale: 1.0,
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
}
