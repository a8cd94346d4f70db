//! Incremental detokenization that never emits part of a UTF-8 character: each new token is
//! decoded together with a few previous ones, and text is released only once it no longer ends
//! in a replacement character (the approach of TGI's and vLLM's incremental detokenizers).
use super::{Result, Tokenizer};

pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    /// Start of the window decoded for context.
    prefix: usize,
    /// Tokens whose text has been emitted.
    read: usize,
    skip_special: bool,
    /// Special tokens left out of the text even where special tokens are kept.
    hidden: Vec<u32>,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        StreamDecoder {
            tok,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
            skip_special: true,
            hidden: Vec::new(),
        }
    }

    /// Keep special tokens' text in the output.
    pub fn with_special_tokens(mut self) -> Self {
        self.skip_special = false;
        self
    }

    /// Leave `ids` out of the text (wrappers a template puts around answers, kept special
    /// tokens though they are).
    pub fn hiding(mut self, ids: Vec<u32>) -> Self {
        self.hidden = ids;
        self
    }

    /// Add a token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        if self.hidden.contains(&id) {
            return Ok(String::new());
        }
        self.ids.push(id);
        let before = self
            .tok
            .decode_fragment(&self.ids[self.prefix..self.read], self.skip_special)?;
        let now = self
            .tok
            .decode_fragment(&self.ids[self.prefix..], self.skip_special)?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.starts_with(&before) {
            let new = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            return Ok(new);
        }
        Ok(String::new())
    }

    /// Whatever is still held back (an incomplete character at the very end comes out as U+FFFD).
    pub fn flush(&mut self) -> Result<String> {
        let before = self
            .tok
            .decode_fragment(&self.ids[self.prefix..self.read], self.skip_special)?;
        let now = self
            .tok
            .decode_fragment(&self.ids[self.prefix..], self.skip_special)?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(now.get(before.len()..).unwrap_or("").to_string())
    }
}
