//! Mirostat (Basu et al., 2021): a pick that steers the answer's surprise (-log2 of the drawn
//! token's probability) toward a target `tau`, as llama-server and Ollama's llama.cpp runner
//! offer it (`mirostat: 1 | 2`, `mirostat_tau`, `mirostat_eta`).
//!
//! Each sequence keeps `mu`, the largest surprise it allows (2·tau at the start). Version 2 keeps
//! the tokens whose surprise is at most `mu`; version 1 fits a Zipf exponent to the 100 most
//! likely tokens and keeps as many tokens as that law says reach surprise `mu`. After the draw,
//! `mu -= eta · (surprise − tau)`, the surprise taken among the kept tokens. Like llama.cpp,
//! mirostat replaces top-k, top-p, min-p, typical-p, top-n-sigma and XTC; unlike it, penalties
//! and DRY still apply before it (llama.cpp leaves them out of its mirostat chain, which turns a
//! request's `repeat_penalty` silently off).
//!
//! Neither version ranks the whole vocabulary: version 2's kept set is a probability floor, and
//! version 1 ranks 100 tokens, then k of them when its law asks for more.
use super::candidates::Candidates;
use super::pick::{row_max, sum, top_k, weights_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirostatVersion {
    V1,
    V2,
}

impl MirostatVersion {
    /// The version llama.cpp's `mirostat: 1 | 2` names (0, off, and others: None).
    pub fn numbered(n: i64) -> Option<Self> {
        match n {
            1 => Some(MirostatVersion::V1),
            2 => Some(MirostatVersion::V2),
            _ => None,
        }
    }
}

/// A request's mirostat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mirostat {
    pub version: MirostatVersion,
    /// The target surprise, in bits (llama.cpp's default 5).
    pub tau: f32,
    /// How fast `mu` follows the error (llama.cpp's default 0.1).
    pub eta: f32,
}

/// Version 1's `m`: the most likely tokens its Zipf exponent is fitted to (llama.cpp's 100).
const V1_FIT_TOKENS: usize = 100;

/// One sequence's mirostat: its parameters and its `mu`.
#[derive(Debug, Clone)]
pub struct MirostatState {
    params: Mirostat,
    mu: f32,
}

/// The tokens a pick keeps.
#[derive(Debug, PartialEq)]
enum Kept {
    /// Every token weighing at least this much (and more than nothing).
    Floor(f32),
    /// These tokens.
    Ids(Vec<u32>),
}

impl MirostatState {
    pub fn new(params: Mirostat) -> Self {
        MirostatState {
            params,
            mu: 2.0 * params.tau,
        }
    }

    /// The largest surprise the next pick allows.
    pub fn mu(&self) -> f32 {
        self.mu
    }

    /// The token drawn from `logits` at `temperature` (> 0), for a uniform `draw` in [0, 1);
    /// `mu` then moves toward the target.
    pub fn pick(&mut self, logits: &[f32], temperature: f32, draw: f32) -> u32 {
        let candidates = self.candidates(logits, temperature);
        self.draw(&candidates, draw)
    }

    /// What the next pick draws from: the tokens its `mu` keeps of `logits` at `temperature`
    /// (> 0), and their weights.
    pub fn candidates(&self, logits: &[f32], temperature: f32) -> Candidates {
        let max = row_max(logits);
        if !max.is_finite() {
            // Nothing finite to weigh: the argmax.
            return Candidates::Only(candor_kernels::argmax(logits));
        }
        let weights = weights_of(logits, max, 1.0 / temperature);
        match self.params.version {
            MirostatVersion::V1 => self.v1_kept(logits, &weights),
            MirostatVersion::V2 => self.v2_kept(&weights),
        }
        .of(weights)
    }

    /// The token `draw` falls on among `candidates` (this state's); `mu` then moves by its
    /// surprise. A row with nothing finite to weigh (`Only`) teaches nothing.
    pub fn draw(&mut self, candidates: &Candidates, draw: f32) -> u32 {
        let token = candidates.draw(draw);
        if !matches!(candidates, Candidates::Only(_)) {
            let surprise = -candidates.probability(token).log2();
            self.mu -= self.params.eta * (surprise - self.params.tau);
        }
        token
    }

    /// Version 2: the tokens of probability at least 2^-mu; the most likely alone when none is.
    fn v2_kept(&self, weights: &[f32]) -> Kept {
        let floor = sum(weights) * (-self.mu).exp2();
        // The largest weighs 1: below the floor, every token is.
        if floor > 1.0 {
            Kept::Ids(vec![candor_kernels::argmax(weights)])
        } else {
            Kept::Floor(floor)
        }
    }

    /// Version 1: the k most likely tokens, k from the Zipf exponent `s` fitted to the head of
    /// the ranked distribution: `k = (ε·2^mu / (1 − N^−ε))^(1/s)` with `ε = s − 1`.
    fn v1_kept(&self, logits: &[f32], weights: &[f32]) -> Kept {
        let n = logits.len();
        let head: Vec<u32> = top_k(logits, V1_FIT_TOKENS)
            .into_iter()
            .filter(|&i| weights[i as usize] > 0.0)
            .collect();
        if head.len() < 2 {
            return Kept::Ids(head);
        }
        let (mut ti_bi, mut ti_sq) = (0.0f64, 0.0f64);
        for (i, pair) in head.windows(2).enumerate() {
            let t = ((i + 2) as f64 / (i + 1) as f64).ln();
            let b = (weights[pair[0] as usize] as f64 / weights[pair[1] as usize] as f64).ln();
            ti_bi += t * b;
            ti_sq += t * t;
        }
        let s = ti_bi / ti_sq;
        let epsilon = s - 1.0;
        let vocab = n as f64;
        let scale = if epsilon.abs() < 1e-9 {
            // The limit of ε / (1 − N^−ε) as ε → 0.
            (self.mu as f64).exp2() / vocab.ln()
        } else {
            epsilon * (self.mu as f64).exp2() / (1.0 - vocab.powf(-epsilon))
        };
        let k = scale.powf(1.0 / s);
        // NaN or past the vocabulary: every token (a cast saturates, and NaN casts to 0).
        let k = if k.is_nan() { n } else { (k as usize).max(1) };
        match k {
            k if k >= n => Kept::Floor(0.0),
            k if k <= head.len() => Kept::Ids(head[..k].to_vec()),
            k => Kept::Ids(top_k(logits, k)),
        }
    }
}

impl Kept {
    /// The kept tokens with their weights, of the row's `weights`.
    fn of(self, mut weights: Vec<f32>) -> Candidates {
        match self {
            Kept::Floor(floor) => {
                // A select over every weight (a branch per weight does not vectorize).
                for w in weights.iter_mut() {
                    *w = if *w >= floor { *w } else { 0.0 };
                }
                let total = sum(&weights);
                Candidates::Row { weights, total }
            }
            Kept::Ids(ids) => {
                let weights = ids.iter().map(|&i| weights[i as usize]).collect();
                Candidates::Ranked { ids, weights }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// llama.cpp's steps over the fully sorted row: the kept ids.
    fn reference(logits: &[f32], temperature: f32, m: &MirostatState) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        ids.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        let max = logits[ids[0] as usize] as f64;
        let w: Vec<f64> = ids
            .iter()
            .map(|&i| ((logits[i as usize] as f64 - max) / temperature as f64).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let p: Vec<f64> = w.iter().map(|x| x / total).collect();
        let kept = match m.params.version {
            MirostatVersion::V2 => p
                .iter()
                .take_while(|&&x| -x.log2() <= m.mu as f64)
                .count()
                .max(1),
            MirostatVersion::V1 => {
                let (mut ti_bi, mut ti_sq) = (0.0, 0.0);
                for i in 0..(V1_FIT_TOKENS - 1).min(p.len() - 1) {
                    let t = ((i + 2) as f64 / (i + 1) as f64).ln();
                    ti_bi += t * (p[i] / p[i + 1]).ln();
                    ti_sq += t * t;
                }
                let s = ti_bi / ti_sq;
                let e = s - 1.0;
                let n = p.len() as f64;
                let k = (e * (m.mu as f64).exp2() / (1.0 - n.powf(-e))).powf(1.0 / s);
                (k as usize).clamp(1, p.len())
            }
        };
        let mut kept = ids[..kept].to_vec();
        kept.sort_unstable();
        kept
    }

    fn kept_ids(kept: &Kept, weights: &[f32]) -> Vec<u32> {
        match kept {
            Kept::Floor(f) => (0..weights.len() as u32)
                .filter(|&i| weights[i as usize] >= *f && weights[i as usize] > 0.0)
                .collect(),
            Kept::Ids(ids) => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids
            }
        }
    }

    /// Whether a probability of the row lies so near the cut (v2's floor) or the law's k so
    /// near an integer that f32 and f64 may disagree.
    fn near_a_cut(logits: &[f32], temperature: f32, m: &MirostatState, kept: &[u32]) -> bool {
        let max = row_max(logits);
        let w = weights_of(logits, max, 1.0 / temperature);
        let total = sum(&w);
        let bits = |i: usize| -(w[i] / total).log2();
        match m.params.version {
            MirostatVersion::V2 => (0..w.len()).any(|i| (bits(i) - m.mu).abs() < 1e-3),
            // A boundary token's weight equal to the next one's makes the cut a tie.
            MirostatVersion::V1 => kept.len() + 1 >= logits.len() || kept.is_empty(),
        }
    }

    #[test]
    fn keeps_what_sorting_the_row_keeps() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let (mut compared, mut skipped) = (0, 0);
        for case in 0..600 {
            let vocab = rng.random_range(2..3000);
            let logits: Vec<f32> = if case % 4 < 2 {
                // Uniform logits, narrow to wide.
                let spread = [0.5f32, 2.0, 6.0][case % 3];
                (0..vocab)
                    .map(|_| rng.random::<f32>() * spread * 4.0)
                    .collect()
            } else {
                // Zipf-like, as a model's rows are (v1's law then cuts inside the row): rank r
                // of a random order has logit -s·ln r, a little noise on it.
                let s = rng.random_range(0.6f32..2.0);
                let mut order: Vec<usize> = (1..=vocab).collect();
                rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
                order
                    .iter()
                    .map(|&r| -s * (r as f32).ln() + rng.random::<f32>() * 0.05)
                    .collect()
            };
            let version = if case % 2 == 0 {
                MirostatVersion::V1
            } else {
                MirostatVersion::V2
            };
            let mut state = MirostatState::new(Mirostat {
                version,
                tau: rng.random_range(1.0..10.0),
                eta: 0.1,
            });
            state.mu = rng.random_range(0.5..20.0);
            let temperature = rng.random_range(0.3..1.5);
            let w = weights_of(&logits, row_max(&logits), 1.0 / temperature);
            let kept = match version {
                MirostatVersion::V1 => state.v1_kept(&logits, &w),
                MirostatVersion::V2 => state.v2_kept(&w),
            };
            let got = kept_ids(&kept, &w);
            let want = reference(&logits, temperature, &state);
            if got != want && near_a_cut(&logits, temperature, &state, &want) {
                skipped += 1;
                continue;
            }
            // v1's k is a float cast: an off-by-one at the cut is f32 against f64.
            let close = version == MirostatVersion::V1 && got.len().abs_diff(want.len()) <= 1;
            assert!(
                got == want || close,
                "case {case} {version:?}: kept {} want {}",
                got.len(),
                want.len()
            );
            compared += 1;
        }
        assert!(compared > 500, "compared {compared}, skipped {skipped}");
    }

    #[test]
    fn mu_follows_the_surprise_toward_tau() {
        // A row where the first token has probability 1/2: a surprise of 1 bit when drawn.
        let logits = [2f32.ln(), 0.0, 0.0];
        let mut m = MirostatState::new(Mirostat {
            version: MirostatVersion::V2,
            tau: 3.0,
            eta: 0.5,
        });
        assert_eq!(m.mu(), 6.0);
        // mu 6 keeps all three; drawing 0 (p 1/2, 1 bit) raises mu by 0.5 · (3 − 1).
        assert_eq!(m.pick(&logits, 1.0, 0.1), 0);
        assert!((m.mu() - 7.0).abs() < 1e-6, "{}", m.mu());
        // A low mu keeps the first alone: surprise 0 after renormalising, mu rises by eta·tau.
        m.mu = 0.5;
        assert_eq!(m.pick(&logits, 1.0, 0.99), 0);
        assert!((m.mu() - 2.0).abs() < 1e-6, "{}", m.mu());
    }

    #[test]
    fn steers_the_average_surprise_to_tau() {
        // A Zipf-like row: over many draws the surprise of the full row's probabilities
        // averages near tau, for both versions (the point of the method).
        let logits: Vec<f32> = (1..=5000).map(|r| -1.1 * (r as f32).ln()).collect();
        let max = row_max(&logits);
        let w = weights_of(&logits, max, 1.0);
        let total = sum(&w);
        for version in [MirostatVersion::V1, MirostatVersion::V2] {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let mut m = MirostatState::new(Mirostat {
                version,
                tau: 4.0,
                eta: 0.1,
            });
            let picks = 3000;
            let bits: f32 = (0..picks)
                .map(|_| {
                    let t = m.pick(&logits, 1.0, rng.random());
                    -(w[t as usize] / total).log2()
                })
                .sum::<f32>()
                / picks as f32;
            assert!((3.0..5.0).contains(&bits), "{version:?}: {bits} bits");
        }
    }

    #[test]
    fn masked_and_tiny_rows_do_not_panic() {
        for version in [MirostatVersion::V1, MirostatVersion::V2] {
            let mut m = MirostatState::new(Mirostat {
                version,
                tau: 5.0,
                eta: 0.1,
            });
            let inf = f32::NEG_INFINITY;
            assert_eq!(m.pick(&[inf, 1.0, inf], 1.0, 0.5), 1);
            assert_eq!(m.pick(&[0.3], 1.0, 0.5), 0);
            assert_eq!(m.pick(&[inf, inf], 1.0, 0.5), 0);
            assert_eq!(m.pick(&[1.0, 1.0, 1.0, 1.0], 0.7, 0.999), 3);
            assert!(m.mu().is_finite());
        }
    }
}
