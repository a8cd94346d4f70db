//! The temperature of a pick: fixed, or llama.cpp's dynamic temperature (`dynatemp_range`,
//! `dynatemp_exponent`): the flatter the candidates' distribution, the hotter the pick. With
//! `h` the entropy of the candidates' probabilities at temperature 1 over the largest it can
//! be (every candidate alike, `ln n`), the temperature is `lo + (hi − lo) · h^exponent` for
//! `lo = max(0, T − range)`, `hi = T + range`. A confident row is sampled near `lo`, an
//! uncertain one near `hi`.

/// A request's dynamic temperature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicTemperature {
    /// > 0: how far the temperature may move from the request's.
    pub range: f32,
    /// How the normalized entropy maps onto the range (1: linearly).
    pub exponent: f32,
}

impl DynamicTemperature {
    /// The temperature around `base` for candidates given as `(weight, ln weight)` at
    /// temperature 1 (any common scale; weightless ones are not candidates). One candidate
    /// or none leaves `base`, as in llama.cpp.
    pub fn temperature(&self, base: f32, candidates: impl Iterator<Item = (f32, f32)>) -> f32 {
        let (mut n, mut total, mut weighted_logs) = (0usize, 0f64, 0f64);
        for (w, ln_w) in candidates.filter(|&(w, _)| w > 0.0) {
            n += 1;
            total += w as f64;
            weighted_logs += w as f64 * ln_w as f64;
        }
        if n <= 1 {
            return base;
        }
        // −Σ p ln p with p = w / total.
        let entropy = total.ln() - weighted_logs / total;
        let normalized = (entropy / (n as f64).ln()).clamp(0.0, 1.0);
        let lo = (base - self.range).max(0.0) as f64;
        let hi = (base + self.range) as f64;
        (lo + (hi - lo) * normalized.powf(self.exponent as f64)) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(d: &DynamicTemperature, base: f32, w: &[f32]) -> f32 {
        d.temperature(base, w.iter().map(|&w| (w, w.ln())))
    }

    #[test]
    fn flat_rows_run_hot_and_peaked_rows_cold() {
        let d = DynamicTemperature {
            range: 0.5,
            exponent: 1.0,
        };
        // Every candidate alike: the largest entropy, the top of the range.
        assert!((of(&d, 1.0, &[0.3; 8]) - 1.5).abs() < 1e-6);
        // One candidate holding nearly all: near the bottom.
        let peaked = of(&d, 1.0, &[1.0, 1e-9, 1e-9, 1e-9]);
        assert!((0.5..0.51).contains(&peaked), "{peaked}");
        // Weightless tokens are no candidates: two alike among them is the top again.
        assert!((of(&d, 1.0, &[1.0, 1.0, 0.0, 0.0]) - 1.5).abs() < 1e-6);
        // In between, by the entropy.
        let p = [0.5f32, 0.25, 0.25];
        let h = -(p.iter().map(|x| x * x.ln()).sum::<f32>()) / 3f32.ln();
        assert!((of(&d, 1.0, &p) - (0.5 + h)).abs() < 1e-5);
        // The exponent bends the map; the range stops at 0 below.
        let square = DynamicTemperature { exponent: 2.0, ..d };
        assert!((of(&square, 1.0, &p) - (0.5 + h * h)).abs() < 1e-5);
        assert!((of(&d, 0.2, &[1.0, 1e-9]) - 0.0).abs() < 1e-3);
        // A single candidate keeps the request's temperature.
        assert_eq!(of(&d, 0.8, &[1.0]), 0.8);
    }
}
