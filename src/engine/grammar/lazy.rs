//! Lazy grammars: free text until the model opens a structure (a tool call), then a grammar
//! to its end. llama.cpp has the same idea for tool calls (its grammar triggers); llguidance,
//! which does the matching here, has no triggers, so they are watched here, token by token.
//!
//! Two ways in: a trigger token anywhere (`<tool_call>`), after which the grammar follows it
//! and, once complete, the text may be free again; and a bare opening at the answer's start
//! (`{"name"` from a model that leaves the marker out): the grammar follows the answer from
//! its first token, unconstrained, and holds it only once the answer has spelled the marker,
//! so an answer that merely starts like it is never bent.
use llguidance::Matcher;

/// What a lazy constraint is built from (lark grammars).
pub struct LazyGrammar {
    /// The token that opens the structure anywhere, and the grammar of what follows it.
    pub after_trigger: Option<(u32, String)>,
    /// Whether the text is free again once that grammar is complete (else only the end token
    /// may follow).
    pub rearm: bool,
    pub bare: Option<BareOpening>,
}

/// An answer that opens with the structure without its trigger.
pub struct BareOpening {
    /// The grammar of the whole answer (it may begin with whitespace); it ends the answer.
    pub grammar: String,
    /// The text (after whitespace) that commits the answer to the grammar.
    pub marker: String,
}

/// The trigger watch and the lazy state of one sequence.
pub(super) struct Lazy {
    /// The trigger token and the grammar after it, at its start (copied at each trigger).
    after_trigger: Option<(u32, Matcher)>,
    rearm: bool,
    /// While the answer may still open bare: that grammar, following the text so far.
    probe: Option<Probe>,
    /// Whether a grammar shapes the next token.
    pub(super) active: bool,
    /// Whether the active grammar lets the text go free once complete.
    active_rearms: bool,
}

struct Probe {
    matcher: Matcher,
    marker: String,
    text: Vec<u8>,
}

impl Lazy {
    pub(super) fn new(
        after_trigger: Option<(u32, Matcher)>,
        rearm: bool,
        bare: Option<(Matcher, String)>,
    ) -> Lazy {
        Lazy {
            after_trigger,
            rearm,
            probe: bare.map(|(matcher, marker)| Probe {
                matcher,
                marker,
                text: Vec::new(),
            }),
            active: false,
            active_rearms: false,
        }
    }

    pub(super) fn fork(&self) -> Lazy {
        Lazy {
            after_trigger: self
                .after_trigger
                .as_ref()
                .map(|(t, m)| (*t, m.deep_clone())),
            rearm: self.rearm,
            probe: self.probe.as_ref().map(|p| Probe {
                matcher: p.matcher.deep_clone(),
                marker: p.marker.clone(),
                text: p.text.clone(),
            }),
            active: self.active,
            active_rearms: self.active_rearms,
        }
    }

    /// A token taken while the text is free: the grammar that shapes the tokens after it, when
    /// it opens one (the matcher has consumed up to and including it).
    pub(super) fn watch(&mut self, token: u32) -> Option<Matcher> {
        if let Some((trigger, grammar)) = &self.after_trigger {
            if token == *trigger {
                self.probe = None;
                self.active_rearms = self.rearm;
                return Some(grammar.deep_clone());
            }
        }
        // Probing ends at the first token the bare grammar cannot take.
        let mut probe = self.probe.take()?;
        if probe.matcher.try_consume_tokens(&[token]).ok()? != 1 {
            return None;
        }
        let env = probe.matcher.tok_env().ok()?;
        probe.text.extend_from_slice(env.tok_trie().token(token));
        let text = String::from_utf8_lossy(&probe.text);
        if text.trim_start().starts_with(probe.marker.as_str()) {
            self.active_rearms = false;
            return Some(probe.matcher);
        }
        self.probe = Some(probe);
        None
    }

    /// After the active grammar took a token; `complete`: nothing more may follow in it.
    pub(super) fn after_token(&mut self, complete: bool) {
        if complete && self.active_rearms {
            self.active = false;
        }
    }
}
