//! BERT's WordPiece tokenizer from a GGUF (`tokenizer.ggml.model` `bert`), built on the
//! `tokenizers` crate as BertTokenizerFast is. llama.cpp's converter stores the vocabulary in
//! a "phantom space" spelling (a word's first piece `▁x`, a continuation `x` without its `##`,
//! control tokens as they are); it is spelled back here. The file does not say whether the
//! model lowercases: a vocabulary without an uppercase letter in its pieces is an uncased
//! model's (llama.cpp lowercases every BERT; a cased model such as bert-base-cased would lose
//! its case there). Special tokens come from the post-processor: `[CLS] a [SEP]`, pairs
//! `[CLS] a [SEP] b [SEP]` with the second text of type 1.
use super::{EncoderVocab, TokenizerError};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::AddedToken;

const TYPE_UNDEFINED: i32 = 0;
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// The tokens a GGUF names: `[CLS]` (llama.cpp writes it as the BOS), `[SEP]`, `[UNK]`.
pub(super) struct WordPieceIds {
    pub cls: Option<u32>,
    pub sep: Option<u32>,
    pub unk: Option<u32>,
}

fn backend(step: &'static str) -> impl Fn(tokenizers::Error) -> TokenizerError {
    move |e| TokenizerError::Backend(format!("WordPiece {step}: {e}"))
}

/// Whether the converter kept the token as it is: `[...]` (BERT's `[unusedN]`, the `[PADn]`
/// rows it pads a vocabulary to the embedding's size with).
fn bracketed(token: &str) -> bool {
    token.len() >= 2 && token.starts_with('[') && token.ends_with(']')
}

/// A piece as BERT's own vocabulary spells it.
fn unphantom(token: &str, kind: i32) -> String {
    if matches!(kind, TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED) || bracketed(token) {
        return token.to_string();
    }
    match token.strip_prefix('\u{2581}') {
        Some(word) => word.to_string(),
        None => format!("##{token}"),
    }
}

pub(super) fn from_gguf(
    tokens: &[String],
    types: &[i32],
    ids: WordPieceIds,
) -> Result<EncoderVocab, TokenizerError> {
    let pieces: Vec<String> = (tokens.iter().zip(types))
        .map(|(t, &kind)| unphantom(t, kind))
        .collect();
    let named = |id, text, key| EncoderVocab::special_id(&pieces, id, text, key);
    let cls = named(ids.cls, "[CLS]", "tokenizer.ggml.bos_token_id")?;
    let sep = named(ids.sep, "[SEP]", "tokenizer.ggml.seperator_token_id")?;
    let unk = named(ids.unk, "[UNK]", "tokenizer.ggml.unknown_token_id")?;
    let special: Vec<bool> = types.iter().map(|&t| t == TYPE_CONTROL).collect();
    // Only a word's pieces tell the case: `[CLS]`, `[unused0]` or the `[PAD30522]` padding rows
    // (nomic-embed-text's GGUF) are spelled in capitals by an uncased model too.
    let word =
        |p: &String, kind: i32| matches!(kind, TYPE_NORMAL | TYPE_UNDEFINED) && !bracketed(p);
    let lowercase = !(pieces.iter().zip(types))
        .any(|(p, &kind)| word(p, kind) && p.chars().any(char::is_uppercase));
    // The first of two pieces spelled alike keeps the text (as a dictionary built in order
    // would not): llama.cpp's lookup finds the first too.
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for (i, p) in pieces.iter().enumerate() {
        vocab.entry(p.clone()).or_insert(i as u32);
    }
    let model = WordPiece::builder()
        .vocab(vocab)
        .unk_token(pieces[unk as usize].clone())
        .continuing_subword_prefix("##".into())
        .build()
        .map_err(backend("model"))?;
    let mut tk = tokenizers::Tokenizer::new(model);
    tk.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .map_err(backend("normalizer"))?;
    tk.with_pre_tokenizer(Some(BertPreTokenizer));
    let (c, s) = (&pieces[cls as usize], &pieces[sep as usize]);
    let template = TemplateProcessing::builder()
        .try_single(format!("{c}:0 $A:0 {s}:0"))
        .map_err(|e| TokenizerError::Backend(format!("WordPiece template: {e}")))?
        .try_pair(format!("{c}:0 $A:0 {s}:0 $B:1 {s}:1"))
        .map_err(|e| TokenizerError::Backend(format!("WordPiece template: {e}")))?
        .special_tokens(vec![(c.clone(), cls), (s.clone(), sep)])
        .build()
        .map_err(|e| TokenizerError::Backend(format!("WordPiece template: {e}")))?;
    tk.with_post_processor(Some(template));
    tk.with_decoder(Some(WordPieceDecoder::default()));
    let added: Vec<AddedToken> = (pieces.iter().zip(&special))
        .filter(|(_, s)| **s)
        .map(|(p, _)| AddedToken::from(p.clone(), true))
        .collect();
    tk.add_special_tokens(added)
        .map_err(backend("special tokens"))?;
    Ok(EncoderVocab {
        tokenizer: tk,
        special,
        sep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_spelling_is_undone_and_control_tokens_kept() {
        assert_eq!(unphantom("\u{2581}cat", 1), "cat");
        assert_eq!(unphantom("s", 1), "##s");
        assert_eq!(unphantom("[CLS]", TYPE_CONTROL), "[CLS]");
        assert_eq!(unphantom("[unused0]", TYPE_NORMAL), "[unused0]");
    }

    #[test]
    fn a_wordpiece_vocabulary_tokenizes_with_its_template() {
        let tokens: Vec<String> = [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "▁the",
            "▁cat",
            "s",
            "▁sat",
            "[unused0]",
            "[PAD9]",
        ]
        .map(String::from)
        .to_vec();
        // `[unused0]` a normal token, `[PAD9]` a row the converter padded the vocabulary with
        // (unused): capitals in brackets do not make the model a cased one.
        let types = [3, 3, 3, 3, 1, 1, 1, 1, 1, 5];
        let ids = WordPieceIds {
            cls: None,
            sep: Some(3),
            unk: Some(1),
        };
        let built = from_gguf(&tokens, &types, ids).unwrap();
        assert_eq!(built.sep, 3);
        let enc = built.tokenizer.encode("The CATS sat!", true).unwrap();
        // Uncased: lowercased; `cats` is `cat` `##s`; `!` is not in the vocabulary.
        assert_eq!(enc.get_ids(), [2, 4, 5, 6, 7, 1, 3]);
        let pair = built.tokenizer.encode(("the cat", "sat"), true).unwrap();
        assert_eq!(pair.get_ids(), [2, 4, 5, 3, 7, 3]);
        assert_eq!(pair.get_type_ids(), [0, 0, 0, 0, 1, 1]);
    }
}
