//! Tokenizers: byte-level BPE (`gpt2` GGUF family, through the `tokenizers` crate),
//! SentencePiece-BPE (`llama` GGUF family, `spm.rs`), and HF `tokenizer.json` files.
//! Special tokens in input text are always matched verbatim.
mod gguf;
mod mistral_instruct;
mod pre;
pub mod sentencepiece_model;
mod spans;
mod spm;
mod stream;
pub mod tekken;
mod templates;
mod token_bytes;
mod unigram;
pub mod vocab_merges;
mod wordpiece;
pub use spans::TokenSpan;
pub use token_bytes::TokenBytes;

pub use stream::StreamDecoder;

pub use templates::ChatTemplates;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("tokenizer metadata: missing `{0}`")]
    MissingKey(String),
    #[error("tokenizer metadata: `{key}` has the wrong type ({expected} expected)")]
    WrongType { key: String, expected: &'static str },
    #[error("unsupported tokenizer model `{0}` (supported: gpt2, llama, bert, t5)")]
    UnsupportedModel(String),
    #[error("token id {id} is out of the vocabulary (size {vocab})")]
    OutOfVocab { id: u32, vocab: usize },
    #[error("cannot load tokenizer {path}: {reason}")]
    File { path: String, reason: String },
    #[error("tokenizer: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, TokenizerError>;

/// `path` cannot be read as (part of) a checkout's tokenizer, for `reason`.
fn file_error(path: &std::path::Path, reason: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A special token's text where a tokenizer config names it: a string, or an AddedToken's
/// `content`.
fn special_token_text(v: &serde_json::Value) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(serde_json::Value::as_str))
}

pub(crate) enum Model {
    /// `tokenizers`-crate tokenizer (GGUF gpt2 family, or tokenizer.json).
    Hf(Box<tokenizers::Tokenizer>),
    /// SentencePiece-BPE with its user-defined pieces (matched in normalized text).
    Spm(Box<spm::Spm>, Verbatim),
}

/// A vocabulary's fill-in-the-middle tokens. With a middle token, prompts are prefix, suffix,
/// middle (PSM: Qwen2.5-Coder's, StarCoder's, DeepSeek-Coder's); without one, suffix then
/// prefix (Mistral's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fim {
    pub prefix: u32,
    pub suffix: u32,
    pub middle: Option<u32>,
}

impl Fim {
    /// The prompt's code part: `prefix` and `suffix` (tokenized code) with the markers, in
    /// the vocabulary's order.
    pub fn around(&self, prefix: &[u32], suffix: &[u32]) -> Vec<u32> {
        let mut ids = Vec::with_capacity(prefix.len() + suffix.len() + 3);
        match self.middle {
            Some(middle) => {
                ids.push(self.prefix);
                ids.extend(prefix);
                ids.push(self.suffix);
                ids.extend(suffix);
                ids.push(middle);
            }
            None => {
                ids.push(self.suffix);
                ids.extend(suffix);
                ids.push(self.prefix);
                ids.extend(prefix);
            }
        }
        ids
    }

    /// How many marker tokens `around` adds.
    pub fn markers(&self) -> usize {
        2 + usize::from(self.middle.is_some())
    }
}

pub struct Tokenizer {
    pub(crate) model: Model,
    vocab_size: usize,
    /// Tokens matched verbatim in input text, longest first (SPM path; the HF path keeps its
    /// own added-token matcher).
    verbatim: Verbatim,
    special: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    extra_eos: Vec<u32>,
    add_bos: bool,
    /// The model wants EOS after a text (`tokenizer.ggml.add_eos_token`, `add_eos_token`):
    /// embedding models that pool the last token read it there.
    add_eos: bool,
    add_space_prefix: bool,
    /// The space prefix goes before the input's first text only, not before text after a
    /// token matched whole (a non-legacy LlamaTokenizer: `"legacy": false`, Llama 2's).
    space_prefix_first_only: bool,
    templates: ChatTemplates,
    /// Every token's bytes, built on first use (`token_bytes.rs`) and shared by the grammar
    /// compiler, the thought markers and DRY's breakers: ~60 ms and ~2 MB for a 150k
    /// vocabulary, once instead of once each.
    token_bytes: std::sync::OnceLock<std::sync::Arc<[token_bytes::TokenBytes]>>,
    /// The HF tokenizer set to read control tokens' text as text (`encode_text`), built on
    /// first use: the setting lives in the tokenizer, and a copy of a 150k vocabulary's took
    /// ~60 ms, which every `/infill` paid three times or more.
    plain: std::sync::OnceLock<Box<tokenizers::Tokenizer>>,
    /// The unknown token's id, read from the model on first use (`unknown_id`).
    unknown: std::sync::OnceLock<Option<u32>>,
    /// Special tokens come from the tokenizer's own post-processor (an encoder's `[CLS] $A
    /// [SEP]`, `<s> $A </s></s> $B </s>` for pairs) instead of the BOS rule (`for_encoder`).
    post_process: bool,
    /// The separator between a pair's texts (`sep_token` of tokenizer_config.json).
    sep: Option<u32>,
}

impl Tokenizer {
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }
    pub fn chat_template(&self) -> Option<String> {
        self.templates.default.clone()
    }
    /// The template a request with tools renders with, where the model keeps one apart
    /// (`ChatTemplates::tool_use`).
    pub fn tool_use_template(&self) -> Option<String> {
        self.templates.tool_use.clone()
    }
    /// The templates a checkout `dir` keeps in files of their own (`chat_template.jinja`...)
    /// over those of its tokenizer_config.json.
    pub fn with_checkout_templates(mut self, dir: &std::path::Path) -> Result<Self> {
        self.templates = self.templates.with_checkout_files(dir)?;
        Ok(self)
    }
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }
    /// The BOS id `encode` puts first when asked for special tokens (None for a model that
    /// adds none).
    pub fn added_bos(&self) -> Option<u32> {
        self.bos.filter(|_| self.add_bos)
    }
    /// The EOS id the model wants after a text (None for most models, which add none). Not
    /// added by `encode`: generation must not see the text as ended; an embedding appends it.
    pub fn added_eos(&self) -> Option<u32> {
        self.eos.filter(|_| self.add_eos)
    }
    pub fn bos_token(&self) -> Option<String> {
        self.bos.and_then(|id| self.token_to_piece(id))
    }
    pub fn eos_token(&self) -> Option<String> {
        self.eos.and_then(|id| self.token_to_piece(id))
    }

    /// Ids that end generation: the model's eos, its end-of-turn token, control tokens that
    /// close a turn (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`) and a code model's file
    /// markers (`<|file_sep|>`).
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.eos.into_iter().collect();
        for &id in &self.extra_eos {
            if !v.contains(&id) {
                v.push(id);
            }
        }
        v
    }

    /// Ids that end generation for a model whose config or GGUF names `model_eos`: those and
    /// `eos_ids`. A harmony vocabulary (gpt-oss: `<|return|>` and `<|call|>` beside `<|end|>`)
    /// ends on `<|return|>` and `<|call|>` only: its `<|end|>` closes one message (the thought)
    /// and the model goes on to the next, so it must not stop generation even where the file
    /// names it the end of a turn (llama.cpp drops it from its end tokens likewise).
    /// FunctionGemma's vocabulary (`<start_function_call>` beside `<start_function_response>`)
    /// ends a turn of calls on `<start_function_response>`, as its template ends one: the
    /// response is the tool's to write.
    pub fn generation_end_ids(&self, model_eos: &[u32]) -> Vec<u32> {
        let mut v = self.eos_ids();
        if let (Some(_), Some(response)) = (
            self.token_id("<start_function_call>"),
            self.token_id("<start_function_response>"),
        ) {
            if !v.contains(&response) {
                v.push(response);
            }
        }
        let harmony = [self.token_id("<|return|>"), self.token_id("<|call|>")];
        let extra = harmony
            .iter()
            .flatten()
            .filter(|_| harmony.iter().all(Option::is_some));
        for &id in model_eos.iter().chain(extra) {
            if !v.contains(&id) {
                v.push(id);
            }
        }
        if let (true, Some(end)) = (
            harmony.iter().all(Option::is_some),
            self.token_id("<|end|>"),
        ) {
            v.retain(|&id| id != end);
        }
        v
    }

    /// The stored piece of a token (byte-level or `▁` form, as in the vocabulary).
    pub fn token_to_piece(&self, id: u32) -> Option<String> {
        match &self.model {
            Model::Hf(t) => t.id_to_token(id),
            Model::Spm(s, _) => s.piece(id).map(str::to_string),
        }
    }

    /// The id of a token by its stored piece (`<|fim_prefix|>`), if the vocabulary has it.
    /// Whether `text` is one special token of the vocabulary (a call or thought marker a
    /// grammar must name as a token, and decoding must keep to be seen).
    pub fn is_special_text(&self, text: &str) -> bool {
        self.token_id(text).is_some_and(|id| self.is_special(id))
    }

    pub fn token_id(&self, piece: &str) -> Option<u32> {
        match &self.model {
            Model::Hf(t) => t.token_to_id(piece),
            Model::Spm(s, _) => s.id_of(piece),
        }
    }

    /// Fill-in-the-middle tokens (prefix, suffix, middle) of code models, found by name:
    /// Qwen2.5/Qwen3-Coder and CodeGemma, StarCoder, DeepSeek-Coder spellings.
    pub fn fim_tokens(&self) -> Option<Fim> {
        const SPELLINGS: [[&str; 3]; 3] = [
            ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
            ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
            ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],
        ];
        let psm = SPELLINGS.iter().find_map(|[p, s, m]| {
            Some(Fim {
                prefix: self.token_id(p)?,
                suffix: self.token_id(s)?,
                middle: Some(self.token_id(m)?),
            })
        });
        // Mistral's (Codestral's): `[SUFFIX]` suffix `[PREFIX]` prefix, as mistral_common's
        // `encode_fim` writes it; the model writes the middle from there, no token opens it.
        let control = |text: &str| self.token_id(text).filter(|&id| self.is_special(id));
        let mistral = || {
            Some(Fim {
                prefix: control("[PREFIX]")?,
                suffix: control("[SUFFIX]")?,
                middle: None,
            })
        };
        psm.or_else(mistral)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            Some(&id) => Err(TokenizerError::OutOfVocab {
                id,
                vocab: self.vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// Encode `text`; `add_special` adds BOS where the model asks for it. A control token's
    /// text in it (`<|im_start|>`) is that token, as in a prompt.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.encode_with(text, add_special, true)
    }

    /// Encode `text` as data, not as a prompt: a control token's text in it is text, as
    /// llama.cpp's perplexity tool reads a corpus (a document about chat templates holds
    /// `<|im_end|>` as characters). User-defined tokens are matched as usual.
    pub fn encode_text(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.encode_with(text, add_special, false)
    }

    /// An encoder's tokenizer: `encode` with special tokens runs the tokenizer's
    /// post-processor (`[CLS] text [SEP]`), `encode_pair` makes its pairs, and no truncation
    /// or padding the file sets applies (an input too long is refused, as elsewhere, not cut
    /// silently). Only a `tokenizer.json` has a post-processor; another is kept as it is.
    pub fn for_encoder(self) -> Result<Self> {
        let mut this = self.without_truncation()?;
        if let Model::Hf(_) = &this.model {
            this.post_process = true;
            this.add_bos = false;
        }
        Ok(this)
    }

    /// The tokenizer without the truncation and padding its file sets (Model2Vec saves one
    /// that cuts at 512 tokens): an input too long is refused, or cut where a request asks,
    /// never cut silently.
    pub fn without_truncation(mut self) -> Result<Self> {
        if let Model::Hf(t) = &mut self.model {
            t.with_truncation(None)
                .map_err(|e| TokenizerError::Backend(e.to_string()))?;
            t.with_padding(None);
        }
        Ok(self)
    }

    /// The separator between a pair's texts (`[SEP]`, `</s>`), where the tokenizer names one.
    pub fn separator(&self) -> Option<u32> {
        self.sep
    }

    /// A pair of texts as the encoder's tokenizer joins them (`[CLS] a [SEP] b [SEP]`); None
    /// for a tokenizer without a post-processor (`for_encoder`), whose caller joins them.
    pub fn encode_pair(&self, first: &str, second: &str) -> Result<Option<Vec<u32>>> {
        match &self.model {
            Model::Hf(t) if self.post_process => {
                let enc = (t.encode_fast((first, second), true))
                    .map_err(|e| TokenizerError::Backend(e.to_string()))?;
                Ok(Some(enc.get_ids().to_vec()))
            }
            _ => Ok(None),
        }
    }

    fn encode_with(&self, text: &str, add_special: bool, control_tokens: bool) -> Result<Vec<u32>> {
        let mut out: Vec<u32> = self
            .added_bos()
            .filter(|_| add_special)
            .into_iter()
            .collect();
        let post_process = add_special && self.post_process;
        match &self.model {
            Model::Hf(t) => {
                let enc = match control_tokens {
                    true => t.encode_fast(text, post_process),
                    false => self
                        .plain
                        .get_or_init(|| {
                            let mut plain = t.as_ref().clone();
                            plain.set_encode_special_tokens(true);
                            Box::new(plain)
                        })
                        .encode_fast(text, post_process),
                }
                .map_err(|e| TokenizerError::Backend(e.to_string()))?;
                out.extend_from_slice(enc.get_ids());
            }
            Model::Spm(s, user_defined) => {
                let fragments = match control_tokens {
                    true => split_verbatim(text, &self.verbatim),
                    false => vec![(text, None)],
                };
                // User-defined pieces (gemma's runs of spaces, tabs and newlines, its HTML
                // tags) are matched in the raw text, before spaces become `▁`: SentencePiece's
                // normalizer passes them through untouched, and llama.cpp matches them there
                // too. Where the model wants a space prefix, every run of text that starts the
                // input or follows a token matched whole gets one, as in llama.cpp (so
                // `<s>[INST]` is `<s>`, `▁[`, ...); a non-legacy one prefixes the input's first
                // text only, and not where it starts with a space already (transformers'
                // `Metaspace` with `prepend_scheme: first`).
                let mut after_token = true;
                let mut first = true;
                for (frag, special) in fragments {
                    let pieces = match special {
                        Some(id) => vec![(frag, Some(id))],
                        None => split_verbatim(frag, user_defined),
                    };
                    for (piece, id) in pieces {
                        match id {
                            Some(id) => out.push(id),
                            None => {
                                let mut t = String::with_capacity(piece.len() + 3);
                                let prefixed = match self.space_prefix_first_only {
                                    true => first && !piece.starts_with(' '),
                                    false => after_token,
                                };
                                if prefixed && self.add_space_prefix {
                                    t.push('\u{2581}');
                                }
                                t.push_str(&piece.replace(' ', "\u{2581}"));
                                s.encode(&t, &mut out);
                            }
                        }
                        after_token = id.is_some();
                        first = false;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Decode ids to text; `skip_special` drops control tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut text = self.decode_fragment(ids, skip_special)?;
        if let Model::Spm(..) = self.model {
            if self.add_space_prefix && text.starts_with(' ') {
                text.remove(0);
            }
        }
        Ok(text)
    }

    /// Decode a run of ids from the middle of a sequence (no leading-space removal).
    pub fn decode_fragment(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.check_ids(ids)?;
        match &self.model {
            Model::Hf(t) => t
                .decode(ids, skip_special)
                .map_err(|e| TokenizerError::Backend(e.to_string())),
            Model::Spm(s, _) => {
                let mut bytes = Vec::new();
                for &id in ids {
                    if skip_special && self.is_special(id) {
                        continue;
                    }
                    bytes.extend(s.bytes_of(id));
                }
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    }

    /// Load `tokenizer.json` (and bos/eos/template from `tokenizer_config.json`).
    pub fn from_file(path: &std::path::Path, config: Option<&std::path::Path>) -> Result<Self> {
        let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_hf(tok, path, config)
    }

    /// A checkout's slow GPT-2-style tokenizer (`vocab.json`, `merges.txt`, no
    /// `tokenizer.json`: OPT's, GPT-2's first uploads), built as transformers converts it
    /// (`vocab_merges`), with bos/eos/template from `tokenizer_config.json`.
    pub fn from_vocab_merges(dir: &std::path::Path) -> Result<Self> {
        let tok = vocab_merges::tokenizer(dir)?;
        let config = dir.join("tokenizer_config.json");
        Self::from_hf(tok, dir, config.is_file().then_some(config.as_path()))
    }

    /// An HF tokenizer read from `path`, with its `tokenizer_config.json`.
    fn from_hf(
        tok: tokenizers::Tokenizer,
        path: &std::path::Path,
        config: Option<&std::path::Path>,
    ) -> Result<Self> {
        let err = |reason: String| TokenizerError::File {
            path: path.display().to_string(),
            reason,
        };
        let vocab_size = tok.get_vocab_size(true);
        let mut special = vec![false; vocab_size];
        for (id, t) in tok.get_added_tokens_decoder() {
            if t.special && (id as usize) < vocab_size {
                special[id as usize] = true;
            }
        }
        let cfg: serde_json::Value = match config {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
                crate::config_json::parse(&text)
                    .map_err(|e| err(format!("{}: {e}", p.display())))?
            }
            None => serde_json::Value::Null,
        };
        let named = |key: &str| {
            cfg.get(key)
                .and_then(special_token_text)
                .and_then(|t| tok.token_to_id(t))
        };
        let (bos, sep, eos) = (named("bos_token"), named("sep_token"), named("eos_token"));
        let templates = ChatTemplates::from_tokenizer_config(&cfg);
        let add_bos = cfg
            .get("add_bos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let add_eos = cfg
            .get("add_eos_token")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let mut t = Tokenizer {
            model: Model::Hf(Box::new(tok)),
            vocab_size,
            verbatim: Verbatim::default(),
            special,
            bos,
            eos,
            extra_eos: Vec::new(),
            add_bos,
            add_eos,
            add_space_prefix: false,
            space_prefix_first_only: false,
            templates,
            token_bytes: Default::default(),
            plain: Default::default(),
            unknown: Default::default(),
            post_process: false,
            sep,
        };
        t.extra_eos = gguf::generation_end_tokens(&t);
        Ok(t)
    }
}

/// An encoder's tokenizer built from a GGUF vocabulary (`wordpiece`, `unigram`): special
/// tokens come from its post-processor.
pub(crate) struct EncoderVocab {
    pub tokenizer: tokenizers::Tokenizer,
    /// Per token: whether it is a control token (matched whole, skipped on decode).
    pub special: Vec<bool>,
    /// The separator between a pair's texts.
    pub sep: u32,
}

impl EncoderVocab {
    /// What `Tokenizer::from_gguf_metadata` assembles: the model, the special flags, no
    /// verbatim pieces, no BOS rule (the post-processor adds `[CLS]`), no space prefix.
    pub(crate) fn parts(self) -> (Model, Vec<bool>, Verbatim, bool, bool) {
        let model = Model::Hf(Box::new(self.tokenizer));
        (model, self.special, Verbatim::default(), false, false)
    }

    /// A special token's id in `pieces`: the one the file names (`key`) where it is inside the
    /// vocabulary, else the piece spelled `text`, else an error naming both.
    pub(crate) fn special_id(
        pieces: &[String],
        id: Option<u32>,
        text: &str,
        key: &str,
    ) -> Result<u32> {
        id.filter(|&i| (i as usize) < pieces.len())
            .or_else(|| pieces.iter().position(|p| p == text).map(|i| i as u32))
            .ok_or_else(|| TokenizerError::MissingKey(format!("{key} (no {text} token either)")))
    }
}

/// Tokens matched verbatim in text, indexed by first byte, longest first.
#[derive(Default)]
pub(crate) struct Verbatim {
    by_first: Vec<Vec<(String, u32)>>,
}

impl Verbatim {
    pub(crate) fn new(tokens: Vec<(String, u32)>) -> Self {
        let mut by_first: Vec<Vec<(String, u32)>> = vec![Vec::new(); 256];
        for (s, id) in tokens {
            if let Some(&b) = s.as_bytes().first() {
                by_first[b as usize].push((s, id));
            }
        }
        for v in &mut by_first {
            v.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        }
        Verbatim { by_first }
    }

    fn match_at(&self, text: &str, i: usize) -> Option<(usize, u32)> {
        let b = *text.as_bytes().get(i)?;
        self.by_first
            .get(b as usize)?
            .iter()
            .find(|(s, _)| text[i..].starts_with(s.as_str()))
            .map(|(s, id)| (s.len(), *id))
    }
}

/// Split `text` around verbatim tokens (leftmost first, longest at a position).
fn split_verbatim<'a>(text: &'a str, verbatim: &Verbatim) -> Vec<(&'a str, Option<u32>)> {
    let mut out = Vec::new();
    let mut plain_start = 0usize;
    let mut i = 0usize;
    while i < text.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        match verbatim.match_at(text, i) {
            Some((len, id)) => {
                if plain_start < i {
                    out.push((&text[plain_start..i], None));
                }
                out.push((&text[i..i + len], Some(id)));
                i += len;
                plain_start = i;
            }
            None => i += 1,
        }
    }
    if plain_start < text.len() {
        out.push((&text[plain_start..], None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_longest_verbatim_tokens() {
        let v = Verbatim::new(vec![
            ("<start_of_turn>".to_string(), 5),
            ("<s>".to_string(), 1),
            ("<st".to_string(), 9),
        ]);
        let parts = split_verbatim("a<s>b<start_of_turn>", &v);
        assert_eq!(
            parts,
            vec![
                ("a", None),
                ("<s>", Some(1)),
                ("b", None),
                ("<start_of_turn>", Some(5))
            ]
        );
        assert_eq!(split_verbatim("", &v), vec![]);
    }
}
