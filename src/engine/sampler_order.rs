//! llama.cpp's sampler chain in whatever order a request lists it (`samplers`), for the orders
//! the fixed pipeline of `Sampler::candidates` cannot follow: the truncations in another order
//! than llama.cpp's default (top-n-sigma, top-k, typical-p, top-p, min-p, XTC), or the
//! temperature between two that read probabilities. Order matters: top-p after top-k keeps the
//! shortest run reaching its mass among top-k's tokens renormalized, before it among the whole
//! row, and the two keep different sets.
//!
//! Each stage masks the row in place (a token it drops gets -inf), so the next one sees the
//! tokens left, renormalized, exactly as llama.cpp's chain hands its candidates on; the
//! temperature stage sets the temperature the later stages read the probabilities at. The
//! stages reuse the fixed pipeline's own truncations, one at a time. This path weighs the row
//! once per stage: chains in the default order keep the faster pipeline.
use super::candidates::Candidates;
use super::pick::{candidates, keep_typical, row_max, Truncation};
use super::sampler::{keep_top_k, keep_within_sigmas, SamplingParams};

/// One sampler of a reordered chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    TopNSigma,
    TopK,
    TypicalP,
    TopP,
    MinP,
    Xtc,
    Temperature,
}

impl Stage {
    /// Where llama.cpp's default chain runs it among the truncations (None: the temperature).
    fn default_rank(self) -> Option<usize> {
        [
            Stage::TopNSigma,
            Stage::TopK,
            Stage::TypicalP,
            Stage::TopP,
            Stage::MinP,
            Stage::Xtc,
        ]
        .iter()
        .position(|&s| s == self)
    }

    /// Whether `p`'s settings turn it on (the temperature stage always is: at 0 it picks
    /// greedily).
    pub fn is_on(self, p: &SamplingParams) -> bool {
        match self {
            Stage::TopNSigma => p.top_n_sigma > 0.0,
            Stage::TopK => p.top_k > 0,
            Stage::TypicalP => p.typical_p < 1.0,
            Stage::TopP => p.top_p < 1.0,
            Stage::MinP => p.min_p > 0.0,
            Stage::Xtc => p.xtc_probability > 0.0,
            Stage::Temperature => true,
        }
    }

    /// Set `p` as a chain that leaves the stage out runs: the truncation off (the engine's
    /// default), the temperature at 1 (a greedy request stays greedy).
    pub fn turn_off(self, p: &mut SamplingParams) {
        let off = SamplingParams::default();
        match self {
            Stage::TopNSigma => p.top_n_sigma = off.top_n_sigma,
            Stage::TopK => p.top_k = off.top_k,
            Stage::TypicalP => p.typical_p = off.typical_p,
            Stage::TopP => p.top_p = off.top_p,
            Stage::MinP => p.min_p = off.min_p,
            Stage::Xtc => p.xtc_probability = off.xtc_probability,
            Stage::Temperature if p.temperature > 0.0 => {
                p.temperature = 1.0;
                p.dynamic_temperature = None;
            }
            Stage::Temperature => {}
        }
    }

    /// Whether it reads probabilities, which the temperature changes.
    fn reads_probabilities(self) -> bool {
        matches!(
            self,
            Stage::TypicalP | Stage::TopP | Stage::MinP | Stage::Xtc
        )
    }
}

/// How the fixed pipeline runs `active` (the stages of a chain that are on, in its order):
/// `Some(temperature_last)`, or None when only this module's path follows the order (a
/// stage named twice too: a second top-p keeps fewer, a second temperature squares it).
pub fn fixed_pipeline_for(active: &[Stage]) -> Option<bool> {
    let ranks: Vec<usize> = active.iter().filter_map(|s| s.default_rank()).collect();
    if ranks.windows(2).any(|w| w[0] >= w[1]) {
        return None;
    }
    if active.iter().filter(|&&s| s == Stage::Temperature).count() > 1 {
        return None;
    }
    let Some(at) = active.iter().position(|&s| s == Stage::Temperature) else {
        return Some(false);
    };
    let reads = |stages: &[Stage]| stages.iter().any(|s| s.reads_probabilities());
    match (reads(&active[..at]), reads(&active[at + 1..])) {
        (true, true) => None,
        (before, _) => Some(before),
    }
}

/// What a pick draws from after the stages of `order` ran over `logits` (masked in place),
/// each with its setting in `p`; `xtc_now`: whether XTC's coin came up this pick.
pub fn ordered_candidates(
    logits: &mut [f32],
    p: &SamplingParams,
    order: &[Stage],
    xtc_now: bool,
) -> Candidates {
    // The probabilities read at temperature 1 until the temperature stage.
    let mut temperature = 1.0;
    for &stage in order {
        if !row_max(logits).is_finite() {
            break;
        }
        if !stage.is_on(p) {
            continue;
        }
        match stage {
            Stage::TopNSigma => keep_within_sigmas(logits, p.top_n_sigma),
            Stage::TopK if p.top_k < logits.len() => keep_top_k(logits, p.top_k),
            Stage::TypicalP => keep_typical(logits, temperature, p.typical_p, p.min_keep),
            Stage::TopP => keep_only(
                logits,
                Truncation {
                    top_p: p.top_p,
                    min_keep: p.min_keep,
                    ..Truncation::only_temperature(temperature)
                },
            ),
            Stage::MinP => keep_only(
                logits,
                Truncation {
                    min_p: p.min_p,
                    min_keep: p.min_keep,
                    ..Truncation::only_temperature(temperature)
                },
            ),
            Stage::Xtc if xtc_now => drop_top_choices(logits, temperature, p),
            Stage::Temperature => {
                // A second temperature stage divides the logits again, as llama.cpp's would.
                temperature *= match &p.dynamic_temperature {
                    // Over the candidates left, at temperature 1, as llama.cpp's stage reads
                    // them.
                    Some(dynamic) => {
                        let max = row_max(logits);
                        dynamic.temperature(
                            p.temperature,
                            logits
                                .iter()
                                .filter(|l| l.is_finite())
                                .map(|&l| ((l - max).exp(), l - max)),
                        )
                    }
                    None => p.temperature,
                };
                if temperature <= 0.0 {
                    return Candidates::Only(candor_kernels::argmax(logits));
                }
            }
            _ => {}
        }
    }
    candidates(logits, &Truncation::only_temperature(temperature))
}

/// Mask every token `t` does not keep.
fn keep_only(logits: &mut [f32], t: Truncation) {
    let kept = candidates(logits, &t);
    let mut keep = vec![false; logits.len()];
    match &kept {
        Candidates::Only(token) => keep[*token as usize] = true,
        Candidates::Ranked { ids, .. } => ids.iter().for_each(|&i| keep[i as usize] = true),
        // Nothing truncated.
        Candidates::Row { .. } => return,
    }
    for (l, keep) in logits.iter_mut().zip(keep) {
        if !keep {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// XTC's stage as llama.cpp runs it: when two or more tokens have at least the threshold's
/// probability (at `temperature`, among those left), all of them but the least likely go,
/// unless that would leave fewer than `min_keep` tokens. A threshold above 0.5 can never hold
/// for two tokens: nothing to do.
fn drop_top_choices(logits: &mut [f32], temperature: f32, p: &SamplingParams) {
    if p.xtc_threshold > 0.5 {
        return;
    }
    let max = row_max(logits);
    let weight = |l: f32| ((l - max) / temperature).exp();
    let total: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| weight(l) as f64)
        .sum();
    let mut above: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .filter(|&(_, &l)| l.is_finite() && weight(l) as f64 >= p.xtc_threshold as f64 * total)
        .map(|(i, &l)| (i, l))
        .collect();
    let left = logits.iter().filter(|l| l.is_finite()).count();
    if above.len() < 2 || left - (above.len() - 1) < p.min_keep {
        return;
    }
    // The least likely of them stays (ties: the higher id, as the lower ranks first).
    above.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for &(i, _) in &above[..above.len() - 1] {
        logits[i] = f32::NEG_INFINITY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampler::SamplingParams;
    use rand::{Rng, SeedableRng};

    fn probabilities(c: &Candidates, vocab: usize) -> Vec<f32> {
        (0..vocab as u32).map(|t| c.probability(t)).collect()
    }

    /// ln of `probs`: a row whose softmax they are.
    fn row(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    #[test]
    fn the_default_order_and_the_temperature_at_either_end_stay_on_the_fixed_pipeline() {
        use Stage::*;
        assert_eq!(
            fixed_pipeline_for(&[TopK, TopP, MinP, Temperature]),
            Some(true)
        );
        assert_eq!(fixed_pipeline_for(&[Temperature, TopK, TopP]), Some(false));
        assert_eq!(fixed_pipeline_for(&[TopK, Temperature, TopP]), Some(false));
        assert_eq!(fixed_pipeline_for(&[TopP, TopK]), None);
        assert_eq!(fixed_pipeline_for(&[MinP, TopP, Temperature]), None);
        assert_eq!(fixed_pipeline_for(&[TopP, Temperature, MinP]), None);
        assert_eq!(fixed_pipeline_for(&[TypicalP, TopK]), None);
        assert_eq!(fixed_pipeline_for(&[]), Some(false));
        assert_eq!(fixed_pipeline_for(&[Temperature, TopK, Temperature]), None);
    }

    /// How many tokens can be drawn after `order` ran over `logits` with `p`.
    fn kept(logits: &[f32], p: &SamplingParams, order: &[Stage]) -> usize {
        let c = ordered_candidates(&mut logits.to_vec(), p, order, false);
        probabilities(&c, logits.len())
            .iter()
            .filter(|&&p| p > 0.0)
            .count()
    }

    #[test]
    fn top_p_before_top_k_keeps_another_set_than_after() {
        // 0.4, 0.3, 0.2, 0.1 with top-k 3 and top-p 0.75: after top-k the three left are
        // 0.44, 0.33, 0.22 and two reach 0.75; over the whole row it takes three.
        let logits = row(&[0.4, 0.3, 0.2, 0.1]);
        let p = SamplingParams {
            top_k: 3,
            top_p: 0.75,
            ..Default::default()
        };
        assert_eq!(kept(&logits, &p, &[Stage::TopK, Stage::TopP]), 2);
        assert_eq!(kept(&logits, &p, &[Stage::TopP, Stage::TopK]), 3);
        // min-p before top-p: 0.4 · 0.3 = 0.12 drops the last, and top-p 0.75 over the
        // three left (0.44, 0.33, 0.22) keeps two; after it, top-p keeps three of the row.
        let p = SamplingParams {
            min_p: 0.3,
            top_p: 0.75,
            ..Default::default()
        };
        assert_eq!(kept(&logits, &p, &[Stage::MinP, Stage::TopP]), 2);
        assert_eq!(kept(&logits, &p, &[Stage::TopP, Stage::MinP]), 3);
        // Top-p twice: 0.75 of the row is three tokens, then 0.75 of those (0.44, 0.33,
        // 0.22) is two.
        let p = SamplingParams {
            top_p: 0.75,
            ..Default::default()
        };
        assert_eq!(kept(&logits, &p, &[Stage::TopP, Stage::TopP]), 2);
        assert_eq!(fixed_pipeline_for(&[Stage::TopP, Stage::TopP]), None);
    }

    #[test]
    fn a_temperature_between_two_truncations_shapes_only_the_later() {
        // At temperature 1 min-p 0.3 keeps 0.4 and 0.3 (floor 0.12); top-p 0.5 after a
        // temperature of 0.25 reads 0.76 / 0.24 and keeps the first alone.
        let logits = row(&[0.4, 0.3, 0.2, 0.1]);
        let p = SamplingParams {
            temperature: 0.25,
            min_p: 0.3,
            top_p: 0.5,
            ..Default::default()
        };
        let order = [Stage::MinP, Stage::Temperature, Stage::TopP];
        let c = ordered_candidates(&mut logits.clone(), &p, &order, false);
        assert_eq!(probabilities(&c, 4), [1.0, 0.0, 0.0, 0.0]);
        // With top-p at 0.8 both stay, drawn at the temperature: 0.4^4 : 0.3^4.
        let p = SamplingParams { top_p: 0.8, ..p };
        let c = ordered_candidates(&mut logits.clone(), &p, &order, false);
        let got = probabilities(&c, 4);
        let want = 0.4f32.powi(4) / (0.4f32.powi(4) + 0.3f32.powi(4));
        assert!((got[0] - want).abs() < 1e-5, "{got:?}");
        assert_eq!((got[2], got[3]), (0.0, 0.0));
        // Two temperature stages of 0.5 draw at 0.25, as llama.cpp's would.
        let p = SamplingParams {
            temperature: 0.5,
            ..Default::default()
        };
        let order = [Stage::Temperature, Stage::Temperature];
        let c = ordered_candidates(&mut logits.clone(), &p, &order, false);
        let got = probabilities(&c, 4);
        let total: f32 = [0.4f32, 0.3, 0.2, 0.1].iter().map(|p| p.powi(4)).sum();
        assert!((got[1] - 0.3f32.powi(4) / total).abs() < 1e-5, "{got:?}");
    }

    #[test]
    fn xtc_drops_all_top_choices_but_the_least_likely() {
        let logits = row(&[0.4, 0.3, 0.2, 0.1]);
        let p = SamplingParams {
            xtc_probability: 1.0,
            xtc_threshold: 0.25,
            ..Default::default()
        };
        let c = ordered_candidates(&mut logits.clone(), &p, &[Stage::Xtc], true);
        let got = probabilities(&c, 4);
        assert_eq!(got[0], 0.0);
        assert!((got[1] - 0.5).abs() < 1e-6, "{got:?}");
        // The coin down: nothing dropped.
        let c = ordered_candidates(&mut logits.clone(), &p, &[Stage::Xtc], false);
        assert!(probabilities(&c, 4)[0] > 0.0);
    }

    #[test]
    fn the_default_order_gives_what_the_fixed_pipeline_gives() {
        // The same stages in llama.cpp's default order through both paths, on random rows:
        // the same distribution to draw from.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let truncations = [
            Stage::TopNSigma,
            Stage::TopK,
            Stage::TypicalP,
            Stage::TopP,
            Stage::MinP,
        ];
        for case in 0..400 {
            // The temperature last (llama.cpp's default) or first (transformers' and vLLM's).
            let last = case < 200;
            let mut order = truncations.to_vec();
            match last {
                true => order.push(Stage::Temperature),
                false => order.insert(0, Stage::Temperature),
            }
            let vocab = 64;
            let logits: Vec<f32> = (0..vocab).map(|_| rng.random_range(-4.0..4.0)).collect();
            let p = SamplingParams {
                temperature: rng.random_range(0.3..1.5),
                top_k: [0, 5, 20][case % 3],
                top_p: [1.0, 0.9, 0.6][case / 3 % 3],
                min_p: [0.0, 0.05, 0.2][case / 9 % 3],
                typical_p: [1.0, 0.8][case / 27 % 2],
                top_n_sigma: [0.0, 1.5][case / 54 % 2],
                temperature_last: last,
                ..Default::default()
            };
            let mut fixed_row = logits.clone();
            let fixed = crate::engine::sampler::fixed_candidates(&mut fixed_row, &p, false);
            let ordered = ordered_candidates(&mut logits.clone(), &p, &order, false);
            let (a, b) = (probabilities(&fixed, vocab), probabilities(&ordered, vocab));
            for (t, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() < 1e-5,
                    "case {case} token {t}: {x} vs {y}, {p:?}"
                );
            }
        }
    }
}
