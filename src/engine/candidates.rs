//! The distribution a pick draws from once every sampler has shaped it: the tokens left and
//! their weights. A pick builds it, then draws; llama-server's `post_sampling_probs` shows it
//! (the probabilities the answer was actually drawn with, rather than the model's).
use super::pick::{draw_among, ranked, top_k};

#[derive(Debug, Clone, PartialEq)]
pub enum Candidates {
    /// One token, certain: a greedy pick, a forced one, or nothing finite to weigh.
    Only(u32),
    /// Ids in the order the draw walks them (rank order) and their weights.
    Ranked { ids: Vec<u32>, weights: Vec<f32> },
    /// Every token of the row by id (0: out) and the weights' sum: a pick that ranked nothing.
    Row { weights: Vec<f32>, total: f32 },
}

impl Candidates {
    /// The token a uniform `draw` in [0, 1) falls on, in proportion to the weights (rounding
    /// past the end: the last that weighs anything; nothing weighing anything: the first).
    pub fn draw(&self, draw: f32) -> u32 {
        match self {
            Candidates::Only(token) => *token,
            Candidates::Ranked { ids, weights } => {
                let total = weights.iter().sum();
                let pairs = ids.iter().copied().zip(weights.iter().copied());
                draw_among(pairs, total, draw).unwrap_or(ids.first().copied().unwrap_or(0))
            }
            Candidates::Row { weights, total } => {
                draw_among((0..).zip(weights.iter().copied()), *total, draw)
                    .unwrap_or_else(|| candor_kernels::argmax(weights))
            }
        }
    }

    /// `token`'s probability among the candidates (0 when it is not one).
    pub fn probability(&self, token: u32) -> f32 {
        match self {
            Candidates::Only(only) => f32::from(*only == token),
            Candidates::Ranked { ids, weights } => {
                let total: f32 = weights.iter().sum();
                match ids.iter().position(|&id| id == token) {
                    Some(at) if total > 0.0 => weights[at] / total,
                    _ => 0.0,
                }
            }
            Candidates::Row { weights, total } => match weights.get(token as usize) {
                Some(&w) if *total > 0.0 => w / total,
                _ => 0.0,
            },
        }
    }

    /// The `n` likeliest candidates and their probabilities, likeliest first (ties: the
    /// earlier in the draw's order, the lower id in a row); none that cannot be drawn.
    pub fn most_likely(&self, n: usize) -> Vec<(u32, f32)> {
        if n == 0 {
            return Vec::new();
        }
        let mut top: Vec<(u32, f32)> = match self {
            Candidates::Only(token) => vec![(*token, 1.0)],
            Candidates::Ranked { ids, weights } => {
                let total: f32 = weights.iter().sum();
                let mut order: Vec<usize> = (0..ids.len()).collect();
                // Stable: the infill sampler's merges may leave a later id heavier.
                order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
                order
                    .into_iter()
                    .map(|i| (ids[i], weights[i] / total))
                    .collect()
            }
            Candidates::Row { weights, total } => {
                let ids = if n >= weights.len() {
                    ranked(weights)
                } else {
                    top_k(weights, n)
                };
                ids.into_iter()
                    .map(|i| (i, weights[i as usize] / total))
                    .collect()
            }
        };
        top.retain(|&(_, p)| p > 0.0);
        top.truncate(n);
        top
    }

    /// `token`'s log-probability among the candidates and the `k` likeliest's, as the
    /// engine reports a token's logprobs.
    pub fn logprobs(&self, token: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
        let top = self.most_likely(k);
        let ln = |p: f32| p.ln();
        (
            ln(self.probability(token)),
            top.into_iter().map(|(t, p)| (t, ln(p))).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked_of(ids: &[u32], weights: &[f32]) -> Candidates {
        Candidates::Ranked {
            ids: ids.to_vec(),
            weights: weights.to_vec(),
        }
    }

    #[test]
    fn a_draw_walks_the_weights_in_order() {
        let c = ranked_of(&[7, 3, 5], &[2.0, 1.0, 1.0]);
        assert_eq!(c.draw(0.0), 7);
        assert_eq!(c.draw(0.49), 7);
        assert_eq!(c.draw(0.51), 3);
        assert_eq!(c.draw(0.99), 5);
        let row = Candidates::Row {
            weights: vec![0.0, 1.0, 3.0],
            total: 4.0,
        };
        assert_eq!(row.draw(0.2), 1);
        assert_eq!(row.draw(0.3), 2);
        assert_eq!(Candidates::Only(4).draw(0.9), 4);
    }

    #[test]
    fn nothing_weighing_anything_draws_the_first() {
        assert_eq!(ranked_of(&[9, 2], &[0.0, 0.0]).draw(0.5), 9);
        let row = Candidates::Row {
            weights: vec![0.0; 3],
            total: 0.0,
        };
        assert_eq!(row.draw(0.5), 0);
        assert_eq!(row.probability(1), 0.0);
    }

    #[test]
    fn probabilities_are_the_normalised_weights() {
        let c = ranked_of(&[7, 3, 5], &[2.0, 1.0, 1.0]);
        assert_eq!(c.probability(7), 0.5);
        assert_eq!(c.probability(5), 0.25);
        assert_eq!(c.probability(1), 0.0, "not a candidate");
        assert_eq!(c.most_likely(2), vec![(7, 0.5), (3, 0.25)]);
        let (lp, top) = c.logprobs(3, 1);
        assert!((lp - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(top, vec![(7, 0.5f32.ln())]);
        assert_eq!(Candidates::Only(4).most_likely(3), vec![(4, 1.0)]);
        assert_eq!(Candidates::Only(4).probability(5), 0.0);
    }

    #[test]
    fn the_likeliest_leave_out_what_cannot_be_drawn() {
        let row = Candidates::Row {
            weights: vec![1.0, 0.0, 3.0, 1.0],
            total: 5.0,
        };
        assert_eq!(row.most_likely(2), vec![(2, 0.6), (0, 0.2)]);
        assert_eq!(row.most_likely(9), vec![(2, 0.6), (0, 0.2), (3, 0.2)]);
        // A merge left a later candidate heavier: it comes first.
        let merged = ranked_of(&[1, 2, 3], &[1.0, 3.0, 0.0]);
        assert_eq!(merged.most_likely(5), vec![(2, 0.75), (1, 0.25)]);
    }
}
