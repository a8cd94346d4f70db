//! Lazy grammars: free text until the model opens a structure (a tool call), then a grammar
//! to its end. llama.cpp has the same idea for tool calls (its grammar triggers); llguidance,
//! which does the matching here, has no triggers, so they are watched here, token by token.
//!
//! Four ways in: a trigger anywhere (`<tool_call>`), after which the grammar follows it and,
//! once complete, the text may be free again; the trigger is one token where the vocabulary
//! has it as one, else its text, watched across tokens (llama.cpp's trigger words: MiniMax-M2's
//! `<minimax:tool_call>` is several tokens of most vocabularies), the grammar then fed what
//! the token that completed it wrote past it; a bare opening at the answer's start
//! (`{"name"` from a model that leaves the marker out): the grammar follows the answer from
//! its first token, unconstrained, and holds it only once the answer has spelled the marker,
//! so an answer that merely starts like it is never bent; and a message whose header names
//! its recipient (harmony's `to=functions.NAME ... <|message|>`, gpt-oss): that recipient's
//! grammar holds the body from the token that ends the header; and a prompt that ends with
//! the trigger's text (functionary v3.2's `>>>`): the grammar after it holds the answer from
//! its first token, as if the trigger had just been taken.
use llguidance::Matcher;

/// What a lazy constraint is built from (lark grammars).
pub struct LazyGrammar {
    /// What opens the structure anywhere, and the grammar of what follows it.
    pub after_trigger: Option<(Trigger, String)>,
    /// Whether the text is free again once that grammar is complete (else only the end token
    /// may follow).
    pub rearm: bool,
    pub bare: Option<BareOpening>,
    pub addressed: Option<AddressedMessages>,
    /// The grammar that holds the answer from its first token (the prompt wrote the
    /// trigger); `rearm` applies to it as after a trigger.
    pub opened: Option<String>,
}

/// Messages addressed in their header (harmony's): the header runs from the answer's start or
/// a body's end to `body_opening`; a header naming a recipient of `grammars` (`to=RECIPIENT`)
/// holds the body to its grammar, and the text is free again once that is complete.
pub struct AddressedMessages {
    /// The token that ends a header and opens the body (`<|message|>`).
    pub body_opening: u32,
    /// The tokens that end a body (`<|end|>`, `<|call|>`, `<|return|>`).
    pub body_ends: Vec<u32>,
    /// Each recipient (`functions.get_weather`) and the lark grammar of its message's body.
    pub grammars: Vec<(String, String)>,
    /// The recipient a header's text names (special tokens' bytes start with U+FFFD there).
    pub recipient: fn(&str) -> Option<&str>,
}

/// What opens a lazy grammar's structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// One token of the vocabulary.
    Token(u32),
    /// Text, however the model's tokens spell it.
    Text(String),
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
    /// The trigger and the grammar after it, at its start (copied at each trigger).
    after_trigger: Option<(Trigger, Matcher)>,
    /// The free text's last bytes, while a text trigger may still end in the next token.
    tail: Vec<u8>,
    rearm: bool,
    /// While the answer may still open bare: that grammar, following the text so far.
    probe: Option<Probe>,
    addressed: Option<Headers>,
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

/// The watch of addressed messages: the current header's bytes, or a body being skipped.
pub(super) struct Headers {
    body_opening: u32,
    body_ends: Vec<u32>,
    grammars: Vec<(String, Matcher)>,
    recipient: fn(&str) -> Option<&str>,
    header: Vec<u8>,
    in_body: bool,
}

/// Bytes of a header kept: a harmony header is a few dozen.
const HEADER_BYTES: usize = 512;

impl Headers {
    pub(super) fn new(
        body_opening: u32,
        body_ends: Vec<u32>,
        grammars: Vec<(String, Matcher)>,
        recipient: fn(&str) -> Option<&str>,
    ) -> Self {
        Headers {
            body_opening,
            body_ends,
            grammars,
            recipient,
            header: Vec::new(),
            in_body: false,
        }
    }

    fn fork(&self) -> Self {
        Headers {
            body_opening: self.body_opening,
            body_ends: self.body_ends.clone(),
            grammars: self
                .grammars
                .iter()
                .map(|(r, m)| (r.clone(), m.deep_clone()))
                .collect(),
            recipient: self.recipient,
            header: self.header.clone(),
            in_body: self.in_body,
        }
    }

    /// A token taken while the text is free: the grammar of the body it opens, where its
    /// header names a recipient that has one. A body's text is never read as a header.
    fn watch(&mut self, token: u32) -> Option<Matcher> {
        if self.body_ends.contains(&token) {
            self.in_body = false;
            self.header.clear();
            return None;
        }
        if self.in_body {
            return None;
        }
        if token == self.body_opening {
            self.in_body = true;
            let header = String::from_utf8_lossy(&self.header).into_owned();
            self.header.clear();
            let recipient = (self.recipient)(&header)?;
            let (_, grammar) = self.grammars.iter().find(|(r, _)| r == recipient)?;
            return Some(grammar.deep_clone());
        }
        let (_, any) = self.grammars.first()?;
        let env = any.tok_env().ok()?;
        self.header.extend_from_slice(env.tok_trie().token(token));
        if self.header.len() > HEADER_BYTES {
            self.header.drain(..self.header.len() - HEADER_BYTES);
        }
        None
    }
}

impl Lazy {
    pub(super) fn new(
        after_trigger: Option<(Trigger, Matcher)>,
        rearm: bool,
        bare: Option<(Matcher, String)>,
        addressed: Option<Headers>,
    ) -> Lazy {
        Lazy {
            after_trigger,
            tail: Vec::new(),
            rearm,
            probe: bare.map(|(matcher, marker)| Probe {
                matcher,
                marker,
                text: Vec::new(),
            }),
            addressed,
            active: false,
            active_rearms: false,
        }
    }

    pub(super) fn fork(&self) -> Lazy {
        Lazy {
            after_trigger: self
                .after_trigger
                .as_ref()
                .map(|(t, m)| (t.clone(), m.deep_clone())),
            tail: self.tail.clone(),
            rearm: self.rearm,
            probe: self.probe.as_ref().map(|p| Probe {
                matcher: p.matcher.deep_clone(),
                marker: p.marker.clone(),
                text: p.text.clone(),
            }),
            addressed: self.addressed.as_ref().map(Headers::fork),
            active: self.active,
            active_rearms: self.active_rearms,
        }
    }

    /// The prompt opened the grammar (`LazyGrammar::opened`): it is active from the start.
    pub(super) fn open_at_start(&mut self) {
        self.active = true;
        self.active_rearms = self.rearm;
        self.probe = None;
    }

    /// A token taken while the text is free: the grammar that shapes the tokens after it, when
    /// it opens one (the matcher has consumed up to and including it).
    pub(super) fn watch(&mut self, token: u32) -> Option<Matcher> {
        if let Some(grammar) = self.addressed.as_mut().and_then(|a| a.watch(token)) {
            self.probe = None;
            self.active_rearms = true;
            return Some(grammar);
        }
        let triggered = match &self.after_trigger {
            Some((Trigger::Token(trigger), grammar)) if token == *trigger => {
                Some(grammar.deep_clone())
            }
            Some((Trigger::Text(trigger), grammar)) => {
                text_triggered(&mut self.tail, token, trigger.as_bytes(), grammar)
            }
            _ => None,
        };
        if triggered.is_some() {
            self.probe = None;
            self.active_rearms = self.rearm;
            return triggered;
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

/// A free token watched for a text trigger: `tail` (the free text's last bytes) with the
/// token's bytes added; where they now hold `trigger`, `grammar` (at its start) fed the bytes
/// the token wrote past the trigger, retokenized (llguidance reads bytes, whatever the tokens);
/// `None` where they hold no trigger, or past it bytes the grammar cannot take: the text
/// stays free then, as with no grammar.
fn text_triggered(
    tail: &mut Vec<u8>,
    token: u32,
    trigger: &[u8],
    grammar: &Matcher,
) -> Option<Matcher> {
    if trigger.is_empty() {
        return None;
    }
    let env = grammar.tok_env().ok()?;
    tail.extend_from_slice(env.tok_trie().token(token));
    let Some(at) = tail.windows(trigger.len()).position(|w| w == trigger) else {
        // Only the bytes a later token may complete the trigger with are kept.
        let keep = trigger.len().saturating_sub(1);
        tail.drain(..tail.len().saturating_sub(keep));
        return None;
    };
    let past: Vec<u8> = tail.drain(..).skip(at + trigger.len()).collect();
    let mut matcher = grammar.deep_clone();
    let tokens = env.tokenize_bytes(&past);
    (matcher.try_consume_tokens(&tokens).ok()? == tokens.len()).then_some(matcher)
}
