//! A request's `allowed_token_ids` and `bad_words` (vLLM's sampling extensions) checked, then
//! read as `engine::banned::Banned` once the tokenizer is at hand.
use super::error::ApiError;
use crate::engine::banned::Banned;
use candor_models::tokenizer::Tokenizer;
use std::sync::Arc;

/// `allowed_token_ids`: at least one id, each in the vocabulary.
pub fn allowed_ids(sent: Option<&[i64]>, vocab: usize) -> Result<Option<Vec<u32>>, ApiError> {
    let Some(sent) = sent else {
        return Ok(None);
    };
    if sent.is_empty() {
        return Err(ApiError::invalid(
            "allowed_token_ids",
            "`allowed_token_ids` must hold at least one token id (leave it out for any)",
        ));
    }
    super::validate::vocab_ids("allowed_token_ids", sent, vocab).map(Some)
}

/// `bad_words`: words with something besides spaces in them.
pub fn bad_words(sent: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    let words = sent.unwrap_or_default();
    if let Some(i) = words.iter().position(|w| w.trim().is_empty()) {
        return Err(ApiError::invalid(
            "bad_words",
            format!("`bad_words[{i}]` is empty"),
        ));
    }
    Ok(words.to_vec())
}

/// What a request may not draw, or None when it bans nothing. Each bad word is banned as
/// written at the start of a word and after a space (its leading spaces dropped), as vLLM
/// tokenizes it, where the two differ as whole words.
pub fn banned(
    tok: &Tokenizer,
    allowed: Option<&[u32]>,
    words: &[String],
) -> Result<Option<Arc<Banned>>, ApiError> {
    let encode = |text: &str| {
        tok.encode_text(text, false)
            .map_err(|e| ApiError::internal(e.to_string()))
    };
    let mut sequences = Vec::new();
    for word in words {
        let word = word.trim_start();
        let bare = encode(word)?;
        let spaced = encode(&format!(" {word}"))?;
        // The spaced form is another word only if it is as many tokens and starts apart
        // (vLLM's test): otherwise it is the bare word behind a space token.
        let another = spaced.len() == bare.len() && spaced.first() != bare.first();
        sequences.push(bare);
        if another {
            sequences.push(spaced);
        }
    }
    let banned = Banned::new(allowed.map(<[u32]>::to_vec), sequences);
    Ok((!banned.is_empty()).then(|| Arc::new(banned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_words_are_checked() {
        assert_eq!(allowed_ids(None, 10).unwrap(), None);
        assert_eq!(allowed_ids(Some(&[3, 9]), 10).unwrap(), Some(vec![3, 9]));
        for bad in [&[][..], &[10], &[-1]] {
            let e = allowed_ids(Some(bad), 10).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("allowed_token_ids"), "{bad:?}");
        }
        assert_eq!(bad_words(None).unwrap(), Vec::<String>::new());
        let e = bad_words(Some(&["ok".into(), "  ".into()])).unwrap_err();
        assert!(e.message.contains("bad_words[1]"), "{}", e.message);
    }
}
