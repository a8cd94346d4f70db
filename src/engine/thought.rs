//! A thinking model's thought, followed token by token as it is written: where it opens and
//! closes, a budget on its length, and whether a grammar shapes the next token yet.
//!
//! Two things need this in the engine rather than in the server's reading of the text:
//! - A budget (vLLM's `thinking_token_budget`, llama-server's `--reasoning-budget`,
//!   Anthropic's `thinking.budget_tokens`): once the thought has spent it, the closing
//!   (an optional message, then `</think>`) is forced token by token, and the model answers.
//! - Structured outputs and tool-call grammars shape the answer, not the thought: a grammar
//!   applied from the first token would forbid the thought or, where the prompt opened one,
//!   force the JSON into it. The grammar sees only the tokens after the thought closes.
//!
//! - A demanded tool call under a template that opens the thought in the prompt: the call's
//!   opening cannot end the prompt (it would sit inside the thought), so it is forced here,
//!   right after the thought closes (`AnswerPrefix`); a thought that never closes makes no call.
//!
//! Markers are matched on the text (the vocabulary's bytes), not on token ids: `</think>` is
//! one token in Qwen3's and DeepSeek-R1's vocabularies, but several in others, where a model
//! may spell it with any split (`>` may merge with the newlines after it).
use candor_models::tokenizer::TokenBytes;
use std::sync::Arc;

/// The markers of a model's thoughts and every token's bytes; built once per model.
pub struct ThoughtMarkers {
    open: Vec<u8>,
    close: Vec<u8>,
    /// The opening as a single token, if the vocabulary has it: under a grammar, the first
    /// token decides whether the answer opens with a thought (allowed beside the grammar's).
    open_token: Option<u32>,
    /// The tokenizer's table, shared (`Tokenizer::token_bytes`).
    vocab: Arc<[TokenBytes]>,
}

impl ThoughtMarkers {
    /// `vocab`: each token id's bytes; `open_token`: the id whose bytes are exactly `open`.
    pub fn new(open: &str, close: &str, vocab: Arc<[TokenBytes]>) -> Self {
        let open_token = vocab
            .iter()
            .position(|t| t.bytes == open.as_bytes())
            .map(|id| id as u32);
        ThoughtMarkers {
            open: open.as_bytes().to_vec(),
            close: close.as_bytes().to_vec(),
            open_token,
            vocab,
        }
    }

    fn bytes(&self, token: u32) -> &[u8] {
        self.vocab
            .get(token as usize)
            .map_or(&[], |t| t.bytes.as_slice())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet (`seen`): a thought may still open.
    Start {
        seen: Vec<u8>,
    },
    /// Inside a thought: `spent` tokens written, `tail` the last bytes (to find the close).
    Thinking {
        spent: usize,
        tail: Vec<u8>,
    },
    /// The budget ran out: `closing[next..]` are still to be written.
    Closing {
        next: usize,
    },
    /// The thought closed: the answer's forced opening, `tokens[next..]`, is still to be
    /// written.
    Opening {
        tokens: Arc<Vec<u32>>,
        next: usize,
    },
    Answer,
}

/// What the answer must open with once the thought closes (a demanded call's opening), as
/// tokens in two spellings: after a close marker written alone, the template's separator
/// (`\n\n`) comes first; after one whose token already carried whitespace, it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerPrefix {
    pub after_bare_close: Arc<Vec<u32>>,
    pub after_spaced_close: Arc<Vec<u32>>,
}

/// One sequence's thought (each choice of a request has its own).
#[derive(Clone)]
pub struct Thought {
    markers: Arc<ThoughtMarkers>,
    state: State,
    /// Most tokens the thought may spend (None: no limit).
    budget: Option<usize>,
    /// What is forced once the budget runs out: a message, then the close marker, as tokens.
    closing: Arc<Vec<u32>>,
    /// What is forced once the thought closes, if anything.
    answer_prefix: Option<AnswerPrefix>,
}

impl Thought {
    /// `in_thought`: the prompt left the answer inside a thought (DeepSeek-R1's template
    /// opens one). `closing` must end with the close marker.
    pub fn new(
        markers: Arc<ThoughtMarkers>,
        in_thought: bool,
        budget: Option<usize>,
        closing: Arc<Vec<u32>>,
    ) -> Self {
        let state = if in_thought {
            State::Thinking {
                spent: 0,
                tail: Vec::new(),
            }
        } else {
            State::Start { seen: Vec::new() }
        };
        let mut thought = Thought {
            markers,
            state,
            budget,
            closing,
            answer_prefix: None,
        };
        thought.close_if_spent();
        thought
    }

    /// Force `prefix` at the answer's start, once the thought closes.
    pub fn with_answer_prefix(mut self, prefix: AnswerPrefix) -> Self {
        self.answer_prefix = Some(prefix);
        self
    }

    /// The token that must come next, whatever the model's logits say (the budget's closing).
    pub fn forced(&self) -> Option<u32> {
        match &self.state {
            State::Closing { next } => self.closing.get(*next).copied(),
            State::Opening { tokens, next } => tokens.get(*next).copied(),
            _ => None,
        }
    }

    /// Whether the next token is the first of a closing the budget forces.
    pub fn cut_now(&self) -> bool {
        self.state == State::Closing { next: 0 }
    }

    /// Whether a grammar shapes the next token: in the answer, and at its start, where the
    /// grammar's tokens stand beside the opening of a thought (`opening_token`).
    pub fn grammar_applies(&self) -> bool {
        matches!(self.state, State::Answer | State::Start { .. })
    }

    /// At the answer's start, the token that opens a thought (allowed beside a grammar's).
    pub fn opening_token(&self) -> Option<u32> {
        match self.state {
            State::Start { .. } => self.markers.open_token,
            _ => None,
        }
    }

    /// Whether the answer is past the thought (or never had one).
    pub fn answering(&self) -> bool {
        self.state == State::Answer
    }

    /// Follow a token written (sampled, picked on the device, or forced). Returns whether it
    /// belongs to the answer, where a grammar takes it. `shaped`: a grammar follows the
    /// answer, so the first token decides whether a thought opens (the grammar took it
    /// otherwise, and cannot give it back).
    pub fn accept(&mut self, token: u32, shaped: bool) -> bool {
        let markers = self.markers.clone();
        let bytes = markers.bytes(token);
        match &mut self.state {
            State::Start { .. } if shaped => {
                if Some(token) == markers.open_token {
                    self.enter_thought(Vec::new());
                    return false;
                }
                self.state = State::Answer;
                true
            }
            State::Start { seen } => {
                seen.extend_from_slice(bytes);
                let text = trim_start(seen);
                if let Some(rest) = text.strip_prefix(markers.open.as_slice()) {
                    let rest = rest.to_vec();
                    self.enter_thought(rest);
                    false
                } else if markers.open.starts_with(text) {
                    false // undecided: whitespace, or part of the opening so far
                } else {
                    self.state = State::Answer;
                    true
                }
            }
            State::Thinking { spent, tail } => {
                *spent += 1;
                tail.extend_from_slice(bytes);
                if let Some(after) = after_marker(tail, &markers.close) {
                    let spaced = !after.is_empty();
                    self.answer_after_thought(spaced);
                    return false;
                }
                let keep = markers.close.len().saturating_sub(1);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                }
                self.close_if_spent();
                false
            }
            State::Closing { next } => {
                *next += 1;
                if *next >= self.closing.len() {
                    // The closing ends with the bare close marker.
                    self.answer_after_thought(false);
                }
                false
            }
            State::Opening { tokens, next } => {
                *next += 1;
                if *next >= tokens.len() {
                    self.state = State::Answer;
                }
                false
            }
            State::Answer => true,
        }
    }

    /// Enter a thought whose text so far is `written` (what followed the opening in its token).
    fn enter_thought(&mut self, written: Vec<u8>) {
        match after_marker(&written, &self.markers.close) {
            Some(after) => {
                let spaced = !after.is_empty();
                self.answer_after_thought(spaced);
            }
            None => {
                self.state = State::Thinking {
                    spent: 0,
                    tail: written,
                };
                self.close_if_spent();
            }
        }
    }

    /// The thought closed (`spaced`: whitespace followed the close marker in its token): the
    /// answer's forced opening comes next, if there is one.
    fn answer_after_thought(&mut self, spaced: bool) {
        let tokens = self.answer_prefix.as_ref().map(|p| match spaced {
            true => p.after_spaced_close.clone(),
            false => p.after_bare_close.clone(),
        });
        self.state = match tokens {
            Some(tokens) if !tokens.is_empty() => State::Opening { tokens, next: 0 },
            _ => State::Answer,
        };
    }

    fn close_if_spent(&mut self) {
        if let State::Thinking { spent, .. } = self.state {
            let spent_all = self.budget.is_some_and(|b| spent >= b);
            if spent_all && !self.closing.is_empty() {
                self.state = State::Closing { next: 0 };
            }
        }
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let from = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[from..]
}

/// What follows the first `needle` in `haystack`, if it is there.
fn after_marker<'a>(haystack: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
    if needle.is_empty() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| &haystack[at + needle.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(pieces: &[&str]) -> Arc<[TokenBytes]> {
        pieces
            .iter()
            .map(|p| TokenBytes {
                bytes: p.as_bytes().to_vec(),
                special: false,
            })
            .collect()
    }

    /// A vocabulary where `<think>` and `</think>` are single tokens (ids 0 and 1), and also
    /// spelled in pieces (`</`, `think`, `>`, `>\n\n`), with words and whitespace.
    fn markers() -> Arc<ThoughtMarkers> {
        let pieces = [
            "<think>", "</think>", "</", "think", ">", ">\n\n", "a", " b", "\n", "{", "<",
        ];
        Arc::new(ThoughtMarkers::new("<think>", "</think>", vocab(&pieces)))
    }

    const OPEN: u32 = 0;
    const CLOSE: u32 = 1;
    const A: u32 = 6;
    const B: u32 = 7;
    const NL: u32 = 8;
    const BRACE: u32 = 9;

    fn thought(in_thought: bool, budget: Option<usize>, closing: &[u32]) -> Thought {
        Thought::new(markers(), in_thought, budget, Arc::new(closing.to_vec()))
    }

    #[test]
    fn a_budget_forces_the_closing_after_that_many_thought_tokens() {
        let mut t = thought(true, Some(3), &[B, CLOSE]);
        for _ in 0..3 {
            assert_eq!(t.forced(), None);
            assert!(!t.accept(A, false));
        }
        assert_eq!(t.forced(), Some(B), "the message comes first");
        assert!(t.cut_now(), "the cut is now (counted once)");
        assert!(!t.accept(B, false));
        assert!(!t.cut_now());
        assert_eq!(t.forced(), Some(CLOSE));
        assert!(!t.accept(CLOSE, false));
        assert_eq!(t.forced(), None);
        assert!(
            t.answering() && t.accept(A, false),
            "then the model answers"
        );
    }

    #[test]
    fn a_budget_of_zero_closes_at_once_and_none_never_does() {
        let t = thought(true, Some(0), &[CLOSE]);
        assert_eq!(t.forced(), Some(CLOSE));
        let mut free = thought(true, None, &[CLOSE]);
        for _ in 0..1000 {
            free.accept(A, false);
        }
        assert_eq!(free.forced(), None);
        assert!(!free.answering());
    }

    #[test]
    fn the_close_is_read_from_the_text_whatever_its_split() {
        // `</` `think` `>\n\n`: the marker spread over three tokens, `>` merged with newlines.
        let mut t = thought(true, Some(10), &[CLOSE]);
        for token in [A, 2, 3, 5] {
            assert!(!t.accept(token, false));
        }
        assert!(t.answering());
        assert!(t.accept(A, false));
        // Within budget: a thought the model closed itself forces nothing.
        assert_eq!(t.forced(), None);
    }

    #[test]
    fn an_opening_at_the_start_is_read_from_the_text_too() {
        let mut t = thought(false, Some(1), &[CLOSE]);
        // `\n` `<` `think` `>`: whitespace, then the opening in pieces.
        for token in [NL, 10, 3, 4] {
            assert!(!t.accept(token, false), "undecided or opening");
        }
        assert!(!t.grammar_applies());
        assert!(!t.accept(A, false));
        assert_eq!(
            t.forced(),
            Some(CLOSE),
            "the budget counts from the opening"
        );
        // An answer that starts otherwise is an answer from its first token.
        let mut plain = thought(false, Some(1), &[CLOSE]);
        assert!(plain.accept(BRACE, false));
        assert!(plain.answering());
    }

    #[test]
    fn under_a_grammar_the_first_token_decides() {
        let mut t = thought(false, None, &[CLOSE]);
        assert!(t.grammar_applies());
        assert_eq!(t.opening_token(), Some(OPEN));
        assert!(!t.accept(OPEN, true), "the opening is the thought's");
        assert!(!t.grammar_applies() && t.opening_token().is_none());
        assert!(!t.accept(A, true));
        assert!(!t.accept(CLOSE, true));
        assert!(t.grammar_applies() && t.accept(BRACE, true));
        // Any other first token is the grammar's, and the answer's.
        let mut shaped = thought(false, None, &[CLOSE]);
        assert!(shaped.accept(NL, true));
        assert!(shaped.answering());
    }

    /// A demanded call's opening (`{` here) after a separator (`\n`), or alone.
    fn call_prefix() -> AnswerPrefix {
        AnswerPrefix {
            after_bare_close: Arc::new(vec![NL, BRACE]),
            after_spaced_close: Arc::new(vec![BRACE]),
        }
    }

    #[test]
    fn a_demanded_opening_is_forced_once_the_model_closes_its_thought() {
        let mut t = thought(true, None, &[]).with_answer_prefix(call_prefix());
        assert!(!t.accept(A, true));
        assert_eq!(t.forced(), None, "the thought is the model's");
        assert!(!t.accept(CLOSE, true));
        assert!(!t.grammar_applies(), "the opening is forced, not shaped");
        for token in [NL, BRACE] {
            assert_eq!(t.forced(), Some(token));
            assert!(
                !t.accept(token, true),
                "not the grammar's: it follows the opening"
            );
        }
        assert_eq!(t.forced(), None);
        assert!(t.grammar_applies() && t.accept(A, true));
        // `>\n\n` closes with its whitespace: the separator is not repeated.
        let mut t = thought(true, None, &[]).with_answer_prefix(call_prefix());
        for token in [2, 3, 5] {
            assert!(!t.accept(token, true));
        }
        assert_eq!(t.forced(), Some(BRACE));
    }

    #[test]
    fn a_demanded_opening_follows_a_budget_closing_and_never_an_open_thought() {
        let mut t = thought(true, Some(1), &[B, CLOSE]).with_answer_prefix(call_prefix());
        assert!(!t.accept(A, true));
        let forced: Vec<u32> = std::iter::from_fn(|| {
            let token = t.forced()?;
            t.accept(token, true);
            Some(token)
        })
        .collect();
        assert_eq!(forced, [B, CLOSE, NL, BRACE]);
        assert!(t.answering());
        // Without a budget, a thought that never closes forces nothing.
        let mut t = thought(true, None, &[]).with_answer_prefix(call_prefix());
        for _ in 0..100 {
            assert!(!t.accept(A, true));
            assert_eq!(t.forced(), None);
        }
    }

    #[test]
    fn a_vocabulary_without_a_single_opening_token_has_none_to_offer() {
        let m = ThoughtMarkers::new("<think>", "</think>", vocab(&["<", "think", ">"]));
        let t = Thought::new(Arc::new(m), false, None, Arc::new(vec![]));
        assert_eq!(t.opening_token(), None);
        // With nothing to force, a spent budget leaves the thought to the model.
        let m = markers();
        let mut t = Thought::new(m, true, Some(0), Arc::new(vec![]));
        assert_eq!(t.forced(), None);
        assert!(!t.accept(A, false));
    }
}
