//! llama.cpp's infill sampler, which llama.vim asks for (`samplers: ["top_k", "top_p",
//! "infill"]`): it shapes a fill-in-the-middle answer's candidates so the fill ends when it
//! should and does not hesitate between spellings of one continuation.
//!
//! Over the candidates the truncations keep (their probabilities renormalized):
//! 1. when the end tokens' share, times three times the number of candidates, outweighs the
//!    text's, only the end tokens stay: the fill is done;
//! 2. a candidate whose bytes begin another's gives its probability to whichever of the two
//!    is likelier (` retur` and ` return` are one choice);
//! 3. text candidates under 0.2 go; with none left, the answer ends (the first end token);
//! 4. text candidates under `1 / (texts + 1)` of what is left go.
//!
//! The end tokens always stay. A row's candidates are at most [`CANDIDATES`] (step 2 compares
//! every pair; llama.cpp runs it over what top-k left, and llama.vim asks for 40).
use candor_models::tokenizer::TokenBytes;
use std::sync::Arc;

/// Most candidates the infill sampler looks at.
pub const CANDIDATES: usize = 100;

/// What the infill sampler needs of the model: every token's bytes, and the tokens that end
/// an answer (the first is the one it ends with when no text is left).
#[derive(Clone)]
pub struct Infill {
    pub vocab: Arc<[TokenBytes]>,
    pub ends: Vec<u32>,
}

/// The vocabulary by its size: a request's parameters are logged, 150k tokens' bytes are not.
impl std::fmt::Debug for Infill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infill")
            .field("vocab", &self.vocab.len())
            .field("ends", &self.ends)
            .finish()
    }
}

impl PartialEq for Infill {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.vocab, &other.vocab) && self.ends == other.ends
    }
}

impl Infill {
    fn is_end(&self, id: u32) -> bool {
        self.ends.contains(&id)
    }

    /// A token's bytes as text (a control token has none: it never begins another).
    fn bytes(&self, id: u32) -> &[u8] {
        match self.vocab.get(id as usize) {
            Some(t) if !t.special => &t.bytes,
            _ => &[],
        }
    }

    /// The candidates `ids` (ranked) with weights `w`, reshaped: the ids that stay and their
    /// probabilities.
    pub fn reshape(&self, ids: &[u32], w: &[f32]) -> (Vec<u32>, Vec<f32>) {
        let total: f32 = w.iter().sum();
        if ids.is_empty() || total <= 0.0 {
            return (ids.to_vec(), w.to_vec());
        }
        let mut p: Vec<f32> = w.iter().map(|x| x / total).collect();
        let end_mass: f32 = ids
            .iter()
            .zip(&p)
            .filter(|(&id, _)| self.is_end(id))
            .map(|(_, x)| x)
            .sum();
        if 3.0 * end_mass * ids.len() as f32 > 1.0 - end_mass {
            return normalized(ids, &p, |i| self.is_end(ids[i]));
        }
        // Merge each candidate into a likelier one its bytes begin, or that begins it.
        let mut gone = vec![false; ids.len()];
        for a in 0..ids.len() {
            for b in 0..ids.len() {
                if gone[a] {
                    break;
                }
                if a == b || gone[b] {
                    continue;
                }
                let (x, y) = (self.bytes(ids[a]), self.bytes(ids[b]));
                if !x.is_empty() && y.starts_with(x) {
                    let (into, from) = if p[b] > p[a] { (b, a) } else { (a, b) };
                    p[into] += p[from];
                    p[from] = 0.0;
                    gone[from] = true;
                }
            }
        }
        let stays =
            |i: usize, floor: f32, p: &[f32]| !gone[i] && (self.is_end(ids[i]) || p[i] >= floor);
        let texts = (0..ids.len())
            .filter(|&i| stays(i, 0.2, &p) && !self.is_end(ids[i]))
            .count();
        if texts == 0 {
            return match self.ends.first() {
                Some(&end) => (vec![end], vec![1.0]),
                None => (ids[..1].to_vec(), vec![1.0]),
            };
        }
        let (first_ids, first_p) = normalized(ids, &p, |i| stays(i, 0.2, &p));
        let floor = 1.0 / (texts + 1) as f32;
        let end_or_above = |i: usize| self.is_end(first_ids[i]) || first_p[i] >= floor;
        normalized(&first_ids, &first_p, end_or_above)
    }
}

/// The candidates `keep` takes, their probabilities renormalized.
fn normalized(ids: &[u32], p: &[f32], keep: impl Fn(usize) -> bool) -> (Vec<u32>, Vec<f32>) {
    let kept: Vec<usize> = (0..ids.len()).filter(|&i| keep(i)).collect();
    let total: f32 = kept.iter().map(|&i| p[i]).sum();
    let scale = if total > 0.0 { 1.0 / total } else { 0.0 };
    (
        kept.iter().map(|&i| ids[i]).collect(),
        kept.iter().map(|&i| p[i] * scale).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `<end>` (control, id 0), ` ret`, ` return`, ` x`, ` y`, ` z`, ` a`, ` b`, ` c`.
    fn infill() -> Infill {
        let piece = |text: &str, special: bool| TokenBytes {
            bytes: text.as_bytes().to_vec(),
            special,
        };
        Infill {
            vocab: vec![
                piece("<end>", true),
                piece(" ret", false),
                piece(" return", false),
                piece(" x", false),
                piece(" y", false),
                piece(" z", false),
                piece(" a", false),
                piece(" b", false),
                piece(" c", false),
            ]
            .into(),
            ends: vec![0],
        }
    }

    fn close(got: &[f32], want: &[f32]) -> bool {
        got.len() == want.len() && got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6)
    }

    #[test]
    fn picks_draw_among_the_reshaped_candidates() {
        use crate::engine::pick::{pick, pick_infill, Truncation};
        let t = Truncation::only_temperature(1.0);
        let draws = (0..50).map(|i| i as f32 / 50.0);
        // The end holds half the row: every pick ends, where a plain pick often would not.
        let ending = [3.0, 0.0, 0.0, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert!(draws
            .clone()
            .all(|d| pick_infill(&ending, &t, &infill(), d) == 0));
        assert!(draws.clone().any(|d| pick(&ending, &t, d) != 0));
        // ` ret` joins ` return`, which then stands alone.
        let spelled = [-5.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert!(draws
            .clone()
            .all(|d| pick_infill(&spelled, &t, &infill(), d) == 2));
    }

    #[test]
    fn a_likely_end_ends_the_fill() {
        // 3 · 0.2 · 3 candidates = 1.8 > 0.8 of text.
        let (ids, p) = infill().reshape(&[3, 4, 0], &[5.0, 3.0, 2.0]);
        assert_eq!(ids, vec![0]);
        assert!(close(&p, &[1.0]));
    }

    #[test]
    fn a_prefix_joins_the_likelier_spelling_and_weak_texts_go() {
        // ` ret` (0.3) begins ` return` (0.5): one choice of 0.8; ` x` (0.2) stays past the
        // first cut, then falls under 1/3 of what is left.
        let (ids, p) = infill().reshape(&[2, 1, 3], &[0.5, 0.3, 0.2]);
        assert_eq!(ids, vec![2]);
        assert!(close(&p, &[1.0]), "{p:?}");
        // The likelier side keeps the mass even when it is the shorter token.
        let (ids, _) = infill().reshape(&[1, 2, 3], &[0.5, 0.3, 0.2]);
        assert_eq!(ids, vec![1]);
    }

    #[test]
    fn end_tokens_stay_and_a_flat_row_ends() {
        let (ids, p) = infill().reshape(&[3, 4, 0], &[0.6, 0.36, 0.04]);
        assert_eq!(ids, vec![3, 4, 0]);
        assert!(close(&p, &[0.6, 0.36, 0.04]), "{p:?}");
        // Nothing reaches 0.2: the fill ends.
        let ids: Vec<u32> = vec![3, 4, 5, 1, 2];
        let (ids, p) = infill().reshape(&ids, &[0.19, 0.19, 0.19, 0.19, 0.24]);
        // ` ret` and ` return` join (0.43): it stays alone.
        assert_eq!(ids, vec![2], "{p:?}");
        let (ids, _) = infill().reshape(&[3, 4, 5], &[1.0, 1.0, 1.0]);
        assert_eq!(ids, vec![3, 4, 5], "a third each stays");
        let (ids, _) = infill().reshape(&[3, 4, 5, 6, 7, 8], &[1.0; 6]);
        assert_eq!(ids, vec![0], "a sixth each: the fill ends");
    }
}
