//! A text's tokens with the bytes of the text each came from, as text-embeddings-inference's
//! `/tokenize` shows them (`{"id", "text", "special", "start", "stop"}`): what a client that
//! chunks documents by tokens needs to cut the text where the tokens end.
use super::{Model, Result, Tokenizer, TokenizerError};

/// One token of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpan {
    pub id: u32,
    /// Added around the text by the tokenizer (BOS, an encoder's `[CLS]` and `[SEP]`), not read
    /// from it.
    pub special: bool,
    /// The token's stored piece (`[CLS]`, `▁the`, `Ġthe`).
    pub piece: String,
    /// The byte range of the text it was read from; None for a special token, and for an
    /// SPM token whose bytes are not found where the previous one ended (a normalised
    /// character).
    pub span: Option<(usize, usize)>,
}

impl Tokenizer {
    /// The prefix a `tokenizer.json`'s model marks a word's continuing pieces with (WordPiece's
    /// `##`), where it has one: how transformers tells a word's pieces apart.
    pub fn continuing_subword_prefix(&self) -> Option<String> {
        use tokenizers::models::ModelWrapper;
        match &self.model {
            Model::Hf(t) => match t.get_model() {
                ModelWrapper::WordPiece(w) => Some(w.continuing_subword_prefix.clone()),
                ModelWrapper::BPE(b) => b.continuing_subword_prefix.clone(),
                _ => None,
            },
            Model::Spm(..) => None,
        }
        .filter(|p| !p.is_empty())
    }

    /// Pieces (token strings, or words already decoded) joined by the tokenizer's decoder, as
    /// transformers' `convert_tokens_to_string` joins them: WordPiece's `["par", "##is"]` is
    /// `paris`; a Metaspace decoder's `["big", "city"]` is `bigcity` (no `▁` to make a space).
    pub fn decode_pieces(&self, pieces: Vec<String>) -> Result<String> {
        use tokenizers::Decoder;
        match &self.model {
            Model::Hf(t) => match t.get_decoder() {
                Some(decoder) => decoder
                    .decode(pieces)
                    .map_err(|e| TokenizerError::Backend(e.to_string())),
                None => Ok(pieces.join(" ")),
            },
            Model::Spm(..) => Ok(pieces.concat().replace('\u{2581}', " ").trim_start().into()),
        }
    }

    /// The unknown token's id (WordPiece's and BPE's `unk_token`, a Unigram's `unk_id`), read
    /// from the model once.
    pub fn unknown_id(&self) -> Option<u32> {
        *self.unknown.get_or_init(|| match &self.model {
            // The model's own JSON says it for every kind (a Unigram's id is not public).
            Model::Hf(t) => {
                let json = serde_json::to_value(t.get_model()).ok()?;
                match json.get("unk_id").and_then(|i| i.as_u64()) {
                    Some(id) => u32::try_from(id).ok(),
                    None => self.token_id(json.get("unk_token")?.as_str()?),
                }
            }
            Model::Spm(..) => None,
        })
    }

    /// `text`'s tokens as `encode` makes them, each with the bytes of `text` it came from.
    pub fn encode_spans(&self, text: &str, add_special: bool) -> Result<Vec<TokenSpan>> {
        let mut out: Vec<TokenSpan> = (self.added_bos().filter(|_| add_special))
            .map(|id| self.special_span(id))
            .into_iter()
            .collect();
        match &self.model {
            Model::Hf(t) => {
                // `encode` (not `encode_fast`) tracks each token's byte offsets.
                let enc = (t.encode(text, add_special && self.post_process))
                    .map_err(|e| TokenizerError::Backend(e.to_string()))?;
                let specials = enc.get_special_tokens_mask();
                for (i, (&id, &(start, stop))) in
                    enc.get_ids().iter().zip(enc.get_offsets()).enumerate()
                {
                    let special = specials.get(i) == Some(&1);
                    out.push(TokenSpan {
                        id,
                        special,
                        piece: enc.get_tokens()[i].clone(),
                        span: (!special).then_some((start, stop)),
                    });
                }
            }
            Model::Spm(spm, _) => {
                let ids = self.encode(text, false)?;
                let mut cursor = 0;
                for id in ids {
                    let bytes = spm.bytes_of(id);
                    let span = spm_span(text.as_bytes(), cursor, &bytes);
                    if let Some((_, stop)) = span {
                        cursor = stop;
                    }
                    out.push(TokenSpan {
                        id,
                        special: false,
                        piece: self.token_to_piece(id).unwrap_or_default(),
                        span,
                    });
                }
            }
        }
        Ok(out)
    }

    fn special_span(&self, id: u32) -> TokenSpan {
        TokenSpan {
            id,
            special: true,
            piece: self.token_to_piece(id).unwrap_or_default(),
            span: None,
        }
    }
}

/// Where an SPM token's decoded `bytes` sit in `text` from `cursor`: right there, or one
/// byte on where its leading space is the prefix SentencePiece put before the text (or a
/// space the text has there); None where they do not match.
fn spm_span(text: &[u8], cursor: usize, bytes: &[u8]) -> Option<(usize, usize)> {
    let at = |from: usize, piece: &[u8]| {
        (text.get(from..from + piece.len()) == Some(piece)).then_some((from, from + piece.len()))
    };
    if bytes.is_empty() {
        return Some((cursor, cursor));
    }
    at(cursor, bytes).or_else(|| match bytes.split_first() {
        // The space prefix SentencePiece added is not in the text.
        Some((b' ', rest)) if !rest.is_empty() => at(cursor, rest),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::spm_span;

    #[test]
    fn an_spm_piece_is_found_where_the_last_ended_its_added_space_aside() {
        let text = b"hello world";
        assert_eq!(spm_span(text, 0, b" hello"), Some((0, 5)));
        assert_eq!(spm_span(text, 5, b" world"), Some((5, 11)));
        assert_eq!(spm_span(text, 5, b" wor"), Some((5, 9)));
        assert_eq!(spm_span(text, 0, b"xyz"), None);
        assert_eq!(spm_span(text, 11, b"!"), None);
    }
}
