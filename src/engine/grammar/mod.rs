//! Grammar-constrained sampling: each step masks the tokens that cannot continue text matching
//! a grammar (a JSON schema, or lark for tool calls), so a constrained answer always parses.
//!
//! llguidance does the matching (an Earley parser over a byte trie of the vocabulary, as in
//! vLLM's and llama.cpp's structured outputs); candor supplies the vocabulary's bytes
//! (`Tokenizer::token_bytes`) and the tokenizer it uses to split grammar literals.
//!
//! A grammar may also be lazy (as llama.cpp's tool-call grammars are): the text stays free
//! until the model opens the structure (a trigger token such as `<tool_call>`, an answer that
//! starts as the structure, or a harmony message addressed to a function), the grammar then
//! shapes the rest of it, and once complete the text may be free again. llguidance has no triggers of its own, hence `lazy`.
mod lazy;

use candor_models::tokenizer::Tokenizer;
pub use lazy::{AddressedMessages, BareOpening, LazyGrammar, Trigger};
use lazy::{Headers, Lazy};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use std::sync::Arc;

/// The vocabulary as llguidance sees it.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Grammar literals are text; a literal that is not UTF-8 falls back to the trie.
        match std::str::from_utf8(s) {
            Ok(text) => self
                .tokenizer
                .encode(text, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Compiles grammars for one model; built once (the trie takes a moment) and shared.
pub struct GrammarCompiler {
    factory: ParserFactory,
    eos: u32,
    vocab: usize,
}

impl GrammarCompiler {
    /// `eos` ends a constrained answer once the grammar is complete; `logits_len` is the
    /// model's output width (it may exceed the tokenizer's vocabulary).
    pub fn new(tokenizer: Arc<Tokenizer>, eos: u32, logits_len: usize) -> Result<Self, String> {
        let words: Vec<Vec<u8>> = tokenizer
            .token_bytes()
            .iter()
            .map(|t| {
                if t.special {
                    let mut marked = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                    marked.extend_from_slice(&t.bytes);
                    marked
                } else {
                    t.bytes.clone()
                }
            })
            .collect();
        let info = TokRxInfo::new(words.len() as u32, eos);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Vocabulary { trie, tokenizer });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(GrammarCompiler {
            factory,
            eos,
            vocab: logits_len,
        })
    }

    /// A constraint to a JSON schema (`{"type": "object"}` for any object).
    pub fn json_schema(&self, schema: serde_json::Value) -> Result<Constraint, String> {
        self.compile(TopLevelGrammar::from_json_schema(bounded_whitespace(
            schema,
        )?))
    }

    /// A constraint to a lark grammar (`%json { schema }` embeds a JSON schema).
    pub fn lark(&self, grammar: String) -> Result<Constraint, String> {
        self.compile(TopLevelGrammar::from_lark(grammar))
    }

    /// A constraint to a regular expression (Rust `regex` syntax) over the whole answer.
    pub fn regex(&self, rx: &str) -> Result<Constraint, String> {
        self.compile(TopLevelGrammar::from_regex(rx))
    }

    /// A lazy constraint (see `lazy::LazyGrammar`).
    pub fn lazy(&self, spec: LazyGrammar) -> Result<Constraint, String> {
        let matcher = |grammar: String| {
            self.compile(TopLevelGrammar::from_lark(grammar))
                .map(|c| c.matcher)
        };
        let bare = match spec.bare {
            Some(b) => Some((matcher(b.grammar)?, b.marker)),
            None => None,
        };
        let after_trigger = match spec.after_trigger {
            Some((trigger, grammar)) => Some((trigger, matcher(grammar)?)),
            None => None,
        };
        let addressed = match spec.addressed {
            Some(a) => {
                let grammars = a
                    .grammars
                    .into_iter()
                    .map(|(recipient, g)| Ok((recipient, matcher(g)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                Some(Headers::new(
                    a.body_opening,
                    a.body_ends,
                    grammars,
                    a.recipient,
                ))
            }
            None => None,
        };
        let mut lazy = Lazy::new(after_trigger, spec.rearm, bare, addressed);
        // Until a grammar is triggered `matcher` is unused; one that matches nothing stands in.
        let mut constraint = match spec.opened {
            Some(grammar) => {
                lazy.open_at_start();
                self.compile(TopLevelGrammar::from_lark(grammar))?
            }
            None => self.compile(TopLevelGrammar::from_lark("start: \"\"".into()))?,
        };
        constraint.lazy = Some(lazy);
        Ok(constraint)
    }

    fn compile(&self, grammar: TopLevelGrammar) -> Result<Constraint, String> {
        let matcher = Matcher::new(self.factory.create_parser(grammar));
        if let Some(e) = matcher.get_error() {
            return Err(e);
        }
        Ok(Constraint {
            matcher,
            eos: self.eos,
            vocab: self.vocab,
            lazy: None,
            prepared: None,
        })
    }
}

/// `schema` with whitespace between JSON tokens bounded to 16 characters a gap (enough for a
/// newline and indentation). With llguidance's unbounded default, a sampled answer can spend
/// its whole budget on spaces where a `,` or `}` was due (the failure mode of "any
/// whitespace" in vLLM's structured outputs too). A schema's own `x-guidance` options win.
/// For JSON schemas embedded in lark (`%json`) as well.
pub fn bounded_whitespace(mut schema: serde_json::Value) -> Result<serde_json::Value, String> {
    if let Some(object) = schema.as_object_mut() {
        if !object.contains_key("x-guidance") {
            let options = JsonCompileOptions {
                whitespace_pattern: Some(r"[\x20\x0A\x0D\x09]{1,16}".into()),
                ..JsonCompileOptions::default()
            };
            let options = serde_json::to_value(options).map_err(|e| e.to_string())?;
            object.insert("x-guidance".into(), options);
        }
    }
    Ok(schema)
}

/// One sequence's position in its grammar.
pub struct Constraint {
    matcher: Matcher,
    eos: u32,
    vocab: usize,
    lazy: Option<Lazy>,
    /// The next token's mask, computed ahead (`prepare_mask`, during the forward pass).
    prepared: Option<Result<SimpleVob, String>>,
}

impl Constraint {
    /// An independent copy at the same position (one per choice of a request).
    pub fn fork(&self) -> Constraint {
        Constraint {
            matcher: self.matcher.deep_clone(),
            eos: self.eos,
            vocab: self.vocab,
            lazy: self.lazy.as_ref().map(Lazy::fork),
            prepared: None,
        }
    }

    /// Whether this is a lazy grammar (the text is free until its trigger).
    pub fn is_lazy(&self) -> bool {
        self.lazy.is_some()
    }

    /// Whether the grammar shapes the next token (so the sampler needs the logits).
    pub fn is_active(&self) -> bool {
        self.lazy.as_ref().is_none_or(|l| l.active)
    }

    /// The token that ends a constrained answer.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Set the logits of tokens the grammar does not allow next to -inf; `false` when nothing
    /// is allowed (the matcher failed), then the caller ends the answer. A lazy grammar
    /// waiting for its trigger leaves the logits as they are.
    pub fn mask(&mut self, logits: &mut [f32]) -> bool {
        if !self.is_active() {
            return true;
        }
        let allowed = match self.prepared.take().unwrap_or_else(|| self.next_mask()) {
            Ok(mask) => mask,
            Err(e) => {
                tracing::warn!(error = %e, "grammar matcher failed; ending the answer");
                return false;
            }
        };
        let mut any = false;
        for (id, l) in logits.iter_mut().enumerate().take(self.vocab) {
            if id < allowed.len() && allowed.is_allowed(id as TokenId) {
                any |= l.is_finite() || *l == f32::INFINITY;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        any
    }

    /// Compute the next token's mask now, so that `mask` finds it ready: the engine calls this
    /// while the forward pass runs (the mask depends only on the tokens so far), hiding the
    /// parser's time behind the device's as vLLM does.
    pub fn prepare_mask(&mut self) {
        if self.is_active() && self.prepared.is_none() {
            self.prepared = Some(self.next_mask());
        }
    }

    fn next_mask(&mut self) -> Result<SimpleVob, String> {
        self.matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())
    }

    /// Advance past the sampled token.
    pub fn accept(&mut self, token: u32) {
        self.prepared = None;
        if token == self.eos {
            return;
        }
        if let Some(lazy) = &mut self.lazy {
            if !lazy.active {
                if let Some(matcher) = lazy.watch(token) {
                    self.matcher = matcher;
                    lazy.active = true;
                }
                return;
            }
        }
        if let Err(e) = self.matcher.consume_token(token) {
            tracing::warn!(error = %e, token, "grammar matcher rejected a token");
        }
        if let Some(lazy) = &mut self.lazy {
            lazy.after_token(self.matcher.is_stopped());
        }
    }
}
