//! Repetition, presence and frequency penalties, and which tokens of the context they count.
//!
//! Peers read these differently, and each reading is what its clients expect:
//! - vLLM and transformers: the repetition penalty falls on every token of the prompt and the
//!   answer; presence and frequency (OpenAI's) count the answer's tokens only.
//! - llama.cpp and Ollama: all three count the last `repeat_last_n` tokens of prompt and
//!   answer together (64 by default).
//!
//! `PenaltyScope` names the reading; the OpenAI endpoints use the first unless a request sends
//! `repeat_last_n`, the llama-server and Ollama endpoints the second.
use super::sampler::History;
use std::collections::HashMap;

/// Which tokens of the context the penalties count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PenaltyScope {
    /// vLLM's: repetition over prompt and answer, presence and frequency over the answer.
    #[default]
    PromptAndAnswer,
    /// llama.cpp's: all three over the last this many tokens of prompt and answer (0: none).
    LastN(usize),
}

impl PenaltyScope {
    /// llama.cpp's `repeat_last_n`: -1 the whole context, 0 none, n the last n; None for
    /// anything below -1.
    pub fn last_n(n: i64) -> Option<Self> {
        match n {
            -1 => Some(PenaltyScope::LastN(usize::MAX)),
            n => usize::try_from(n).ok().map(PenaltyScope::LastN),
        }
    }
}

/// The penalties of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalties {
    /// Divides a positive logit, multiplies a negative one (1: off).
    pub repetition: f32,
    /// Subtracted once from a token seen (0: off).
    pub presence: f32,
    /// Subtracted per time a token was seen (0: off).
    pub frequency: f32,
    pub scope: PenaltyScope,
}

impl Default for Penalties {
    fn default() -> Self {
        Penalties {
            repetition: 1.0,
            presence: 0.0,
            frequency: 0.0,
            scope: PenaltyScope::PromptAndAnswer,
        }
    }
}

impl Penalties {
    /// Whether no penalty changes any logit.
    pub fn are_off(&self) -> bool {
        (self.repetition == 1.0 && self.presence == 0.0 && self.frequency == 0.0)
            || self.scope == PenaltyScope::LastN(0)
    }

    fn repeat(&self, logit: &mut f32) {
        if self.repetition != 1.0 {
            *logit = if *logit > 0.0 {
                *logit / self.repetition
            } else {
                *logit * self.repetition
            };
        }
    }
}

/// Applies a request's penalties. It keeps the distinct tokens of its sequence's prompt, which
/// do not change between picks: counting a long prompt again for every token would cost more
/// than the pick (a 4k-token prompt is ~50 µs of hashing, per sequence and step).
#[derive(Debug, Default)]
pub struct Penalizer {
    /// The prompt they were taken from (compared, not trusted: a memcmp costs ~1 µs), and its
    /// distinct tokens, sorted.
    prompt_tokens: Option<(Vec<u32>, Vec<u32>)>,
}

impl Penalizer {
    /// Lower the logits of the tokens `history` holds, as `p` says.
    pub fn apply(&mut self, p: &Penalties, logits: &mut [f32], history: History) {
        if p.are_off() {
            return;
        }
        match p.scope {
            PenaltyScope::LastN(n) => {
                let tokens = history.tokens;
                let recent = &tokens[tokens.len() - n.min(tokens.len())..];
                for (t, c) in counts(recent) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        p.repeat(l);
                        *l -= p.presence + p.frequency * c as f32;
                    }
                }
            }
            PenaltyScope::PromptAndAnswer => {
                let answer = counts(history.generated());
                if p.repetition != 1.0 {
                    let prompt = self.prompt_tokens(history);
                    let answer_only = answer.keys().filter(|t| prompt.binary_search(t).is_err());
                    for &t in prompt.iter().chain(answer_only) {
                        if let Some(l) = logits.get_mut(t as usize) {
                            p.repeat(l);
                        }
                    }
                }
                for (t, c) in answer {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l -= p.presence + p.frequency * c as f32;
                    }
                }
            }
        }
    }

    fn prompt_tokens(&mut self, history: History) -> &[u32] {
        let prompt = history.prompt();
        let stale = self
            .prompt_tokens
            .as_ref()
            .is_none_or(|(seen, _)| seen.as_slice() != prompt);
        if stale {
            let mut distinct = prompt.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            self.prompt_tokens = Some((prompt.to_vec(), distinct));
        }
        self.prompt_tokens.as_ref().map_or(&[], |(_, t)| t)
    }
}

/// How many times each token occurs in `tokens`.
fn counts(tokens: &[u32]) -> HashMap<u32, u32> {
    let mut counts = HashMap::<u32, u32>::new();
    for &t in tokens {
        *counts.entry(t).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn penalized(p: &Penalties, tokens: &[u32], prompt_len: usize) -> Vec<f32> {
        let mut logits = vec![2.0, -2.0, 2.0, -2.0, 2.0, 2.0];
        Penalizer::default().apply(p, &mut logits, History::new(tokens, prompt_len));
        logits
    }

    #[test]
    fn vllm_reading_repeats_over_the_prompt_and_counts_the_answer() {
        let p = Penalties {
            repetition: 2.0,
            presence: 0.5,
            frequency: 0.25,
            scope: PenaltyScope::PromptAndAnswer,
        };
        // Prompt 0 1 0, answer 2 2 1.
        let got = penalized(&p, &[0, 1, 0, 2, 2, 1], 3);
        // 0: prompt only, repetition once; 1: both, repetition once, presence and one count;
        // 2: answer twice; 3..5 untouched.
        assert_eq!(got, vec![1.0, -4.0 - 0.75, 1.0 - 1.0, -2.0, 2.0, 2.0]);
    }

    #[test]
    fn llama_cpp_reading_counts_the_last_n_of_prompt_and_answer() {
        let p = Penalties {
            repetition: 2.0,
            presence: 0.5,
            frequency: 0.25,
            scope: PenaltyScope::LastN(3),
        };
        // The last three: 2 (prompt), 4 4 (answer); 0 and 1 are too far back.
        let got = penalized(&p, &[0, 1, 2, 4, 4], 3);
        assert_eq!(got, vec![2.0, -2.0, 1.0 - 0.75, -2.0, 1.0 - 1.0, 2.0]);
        let off = Penalties {
            scope: PenaltyScope::LastN(0),
            ..p
        };
        assert!(off.are_off());
        assert_eq!(penalized(&off, &[0, 1, 2], 1), penalized(&off, &[], 0));
    }

    #[test]
    fn the_prompt_is_read_again_when_it_changes() {
        let p = Penalties {
            repetition: 2.0,
            ..Default::default()
        };
        let mut penalizer = Penalizer::default();
        let mut logits = vec![2.0; 4];
        penalizer.apply(&p, &mut logits, History::new(&[0, 1], 2));
        assert_eq!(logits, vec![1.0, 1.0, 2.0, 2.0]);
        let mut logits = vec![2.0; 4];
        penalizer.apply(&p, &mut logits, History::new(&[3, 3, 1], 2));
        assert_eq!(logits, vec![2.0, 1.0, 2.0, 1.0]);
    }
}
