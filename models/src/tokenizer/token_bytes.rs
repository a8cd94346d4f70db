//! The bytes each token stands for, as grammar-constrained sampling needs them (a token trie
//! matches candidate tokens against the bytes a grammar allows next).
//!
//! Decoding one token at a time does not give them: a byte-level token holding half of a
//! UTF-8 character decodes to U+FFFD. So the vocabulary's stored pieces are mapped back to
//! bytes per tokenizer family: GPT-2 byte-level pieces through the inverse of its
//! byte-to-character table, SentencePiece pieces with `▁` as a space and `<0xXX>` byte
//! tokens as their byte. (llguidance's own helper for this wraps an older `tokenizers` and
//! cannot see candor's SentencePiece tokenizer, hence this file.)
use super::{Model, Tokenizer};
use std::sync::Arc;
use tokenizers::DecoderWrapper;

/// One token's bytes, and whether it is a control token (never produced by text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBytes {
    pub bytes: Vec<u8>,
    pub special: bool,
}

/// GPT-2's table: printable bytes stand for themselves, the others for 256 + n in order.
fn byte_level_char_to_byte() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        let c = if printable {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).unwrap_or('\u{fffd}')
        };
        map.insert(c, b);
    }
    map
}

/// `bytes` as GPT-2's byte-level string (each byte its character of `byte_level_char_to_byte`'s
/// table), as byte-level vocabularies store their tokens.
pub(super) fn byte_level_string(bytes: &[u8]) -> String {
    static TABLE: std::sync::OnceLock<[char; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        for (c, b) in byte_level_char_to_byte() {
            table[b as usize] = c;
        }
        table
    });
    bytes.iter().map(|&b| table[b as usize]).collect()
}

fn is_byte_level(decoder: Option<&DecoderWrapper>) -> bool {
    match decoder {
        Some(DecoderWrapper::ByteLevel(_)) => true,
        Some(DecoderWrapper::Sequence(seq)) => seq
            .get_decoders()
            .iter()
            .any(|d| matches!(d, DecoderWrapper::ByteLevel(_))),
        _ => false,
    }
}

/// `<0x0A>` → 0x0A.
fn byte_token(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Every token's bytes, indexed by id (an id with no piece gets no bytes); built on the
    /// first call, shared after.
    pub fn token_bytes(&self) -> Arc<[TokenBytes]> {
        self.token_bytes
            .get_or_init(|| self.build_token_bytes().into())
            .clone()
    }

    fn build_token_bytes(&self) -> Vec<TokenBytes> {
        let entry = |id: usize, bytes: Vec<u8>| TokenBytes {
            bytes,
            special: self.special.get(id).copied().unwrap_or(false),
        };
        match &self.model {
            Model::Spm(spm, _) => (0..self.vocab_size)
                .map(|id| entry(id, spm.bytes_of(id as u32)))
                .collect(),
            Model::Hf(hf) => {
                let added = hf.get_added_tokens_decoder();
                let byte_level = is_byte_level(hf.get_decoder());
                let table = byte_level_char_to_byte();
                (0..self.vocab_size)
                    .map(|id| {
                        let Some(piece) = hf.id_to_token(id as u32) else {
                            return entry(id, Vec::new());
                        };
                        // Added tokens are stored as their text.
                        let bytes = if added.contains_key(&(id as u32)) {
                            piece.into_bytes()
                        } else if byte_level {
                            piece
                                .chars()
                                .filter_map(|c| table.get(&c).copied())
                                .collect()
                        } else if let Some(b) = byte_token(&piece) {
                            vec![b]
                        } else {
                            piece.replace('\u{2581}', " ").into_bytes()
                        };
                        entry(id, bytes)
                    })
                    .collect()
            }
        }
    }
}
