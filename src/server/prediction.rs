//! What OpenAI's Predicted Outputs report: of the prediction's tokens, how many appeared in the
//! answer (`accepted_prediction_tokens`) and how many did not (`rejected_prediction_tokens`).
//! "Appeared" is read as a longest common subsequence of the two token lists: the tokens an
//! edit kept, in order. (The engine drafts from the prediction either way; these counts say
//! how much of it the answer used.)

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PredictionUsage {
    pub accepted: usize,
    pub rejected: usize,
}

impl PredictionUsage {
    pub fn add(&mut self, other: PredictionUsage) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
    }
}

/// Past this many cells the table would take too long for a request's end (64M cells is
/// ~0.1 s): the count is then the multiset intersection, which is at least the subsequence.
const MAX_CELLS: usize = 1 << 24;

pub fn usage(prediction: &[u32], answer: &[u32]) -> PredictionUsage {
    let accepted = match prediction.len().saturating_mul(answer.len()) {
        cells if cells <= MAX_CELLS => common_subsequence(prediction, answer),
        _ => common_multiset(prediction, answer),
    };
    PredictionUsage {
        accepted,
        rejected: prediction.len() - accepted,
    }
}

/// The length of a longest common subsequence, one row of the table at a time.
fn common_subsequence(a: &[u32], b: &[u32]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for &x in a {
        let mut diagonal = 0;
        for (j, &y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = match x == y {
                true => diagonal + 1,
                false => above.max(row[j]),
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

fn common_multiset(a: &[u32], b: &[u32]) -> usize {
    let mut counts = std::collections::HashMap::<u32, usize>::new();
    for &t in b {
        *counts.entry(t).or_default() += 1;
    }
    a.iter()
        .filter(|t| match counts.get_mut(t) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_tokens_are_accepted_in_order_and_the_rest_rejected() {
        // An edit: 3 replaced by 9, 9; 5 dropped.
        let u = usage(&[1, 2, 3, 4, 5, 6], &[1, 2, 9, 9, 4, 6]);
        assert_eq!(
            u,
            PredictionUsage {
                accepted: 4,
                rejected: 2
            }
        );
        // Order matters: a reversed answer keeps one token of a subsequence.
        assert_eq!(usage(&[1, 2, 3], &[3, 2, 1]).accepted, 1);
        assert_eq!(usage(&[], &[1]).rejected, 0);
        assert_eq!(common_multiset(&[1, 1, 2], &[1, 3]), 1);
    }
}
