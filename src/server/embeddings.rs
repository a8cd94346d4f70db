//! `/v1/embeddings`: OpenAI's request (`input` as a text, texts, token ids or lists of them;
//! `encoding_format`, `dimensions`) read into the token lists the engine pools, and the
//! pooled vectors answered as OpenAI does: L2-normalised, as floats or as base64 of
//! little-endian f32 (what the official Python client asks for by default).
use crate::engine::pooling::Pooling;
use crate::server::error::ApiError;
use crate::server::routes::completions::token_ids;
use crate::server::state::Ready;
use crate::server::validate::no_nul;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub input: EmbeddingInput,
    pub model: Option<String>,
    /// `float` (default) or `base64`.
    pub encoding_format: Option<String>,
    /// Keep the first this many dimensions (normalised again), for models trained to allow it
    /// (Matryoshka: Qwen3-Embedding, OpenAI's text-embedding-3).
    pub dimensions: Option<i64>,
    /// vLLM's scheduling priority: lower goes first.
    pub priority: Option<i64>,
    /// vLLM's: embed only each input's last this many tokens (-1: as many as the context
    /// holds, the context less one).
    pub truncate_prompt_tokens: Option<i64>,
    /// vLLM's: `false` answers the pooled vectors as the model made them, not scaled to unit
    /// length (OpenAI's always are).
    pub normalize: Option<bool>,
    /// vLLM's: `false` encodes a text without the special tokens the tokenizer adds (BOS, an
    /// encoder's `[CLS]` and `[SEP]`, an appended EOS).
    pub add_special_tokens: Option<bool>,
    /// text-embeddings-inference's: the checkout's sentence-transformers prompt to put
    /// before each text (`query`, `document`…); without it, its default prompt, if any.
    pub prompt_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "`input` must be a string, a list of strings, a list of token ids or a list of token id lists"
)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i64>),
    TokenLists(Vec<Vec<i64>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

impl EmbeddingRequest {
    pub fn encoding(&self) -> Result<Encoding, ApiError> {
        match self.encoding_format.as_deref() {
            None | Some("float") => Ok(Encoding::Float),
            Some("base64") => Ok(Encoding::Base64),
            Some(other) => Err(ApiError::invalid(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, not `{other}`"),
            )),
        }
    }

    /// How many dimensions to answer with (`Ready::embedding_dimensions`).
    pub fn dimensions(&self, ready: &Ready) -> Result<usize, ApiError> {
        ready.embedding_dimensions(self.dimensions)
    }

    /// The norm each token's state is scaled to, as `normalised_by` takes it: Euclidean
    /// unless `normalize` is false.
    pub fn norm(&self) -> i64 {
        match self.normalize {
            Some(false) => NOT_SCALED,
            _ => EUCLIDEAN,
        }
    }

    /// The norm each vector pooled by `pooling` is scaled to: as `norm`, but a SPLADE vector
    /// is left as pooled unless `normalize` is true (its entries are term weights, compared
    /// by dot product, as sentence-transformers' `SparseEncoder` and text-embeddings-inference
    /// answer them).
    pub fn vector_norm(&self, pooling: Pooling) -> i64 {
        vector_norm(pooling, self.normalize)
    }

    /// Each input's tokens: a text encoded as the model wants (BOS first where it adds one,
    /// EOS last where it asks for it, as embedding models pooling the last token do), token
    /// ids as sent. Each must be non-empty and fit the context.
    pub fn token_lists(&self, ready: &Ready) -> Result<Vec<Vec<u32>>, ApiError> {
        let special = self.add_special_tokens.unwrap_or(true);
        let named = self.prompt_name.as_deref();
        let texts = matches!(
            self.input,
            EmbeddingInput::Text(_) | EmbeddingInput::Texts(_)
        );
        if named.is_some() && !texts {
            return Err(ApiError::invalid(
                "prompt_name",
                "`prompt_name` goes before text inputs; token ids are embedded as sent",
            ));
        }
        let prompt = ready.prompts.text_for(named)?;
        let input = &self.input;
        input_token_lists(ready, input, self.truncate_prompt_tokens, special, prompt)
    }
}

/// The token lists of an `input` as the pooling endpoints take it (embeddings, `/classify`):
/// see `EmbeddingRequest::token_lists`; `truncate` keeps each one's last tokens (vLLM's
/// `truncate_prompt_tokens`; an encoder's first ones); texts without the tokenizer's special
/// tokens unless `special` (vLLM's `add_special_tokens`); each text after `prompt` where there
/// is one (`EmbeddingPrompts`).
pub fn input_token_lists(
    ready: &Ready,
    input: &EmbeddingInput,
    truncate: Option<i64>,
    special: bool,
    prompt: Option<&str>,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let mut lists = tokenized_inputs(ready, input, special, prompt)?;
    for ids in &mut lists {
        match ready.encoder {
            true => crate::server::validate::truncate_encoder_input(
                ids,
                truncate,
                &ready.limits,
                special && ready.special_ends,
            )?,
            false => crate::server::validate::truncate_prompt(ids, truncate, &ready.limits)?,
        };
    }
    checked_inputs(ready, lists, |_| "input", false)
}

/// The token lists of an `input`, neither cut nor checked: texts encoded (after `prompt`,
/// with the special tokens where `special`), token ids as sent (each within the vocabulary).
pub fn tokenized_inputs(
    ready: &Ready,
    input: &EmbeddingInput,
    special: bool,
    prompt: Option<&str>,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let text = |t: &String| -> Result<Vec<u32>, ApiError> {
        if t.is_empty() {
            return Err(ApiError::invalid("input", "an input text is empty"));
        }
        let prompted;
        let t = match prompt {
            Some(p) => {
                prompted = format!("{p}{t}");
                &prompted
            }
            None => t,
        };
        match special {
            true => text_tokens(ready, t),
            false => encoded_text(ready, "input", t, false),
        }
    };
    let tokens = |ids: &Vec<i64>| token_ids(ready, "input", ids);
    Ok(match input {
        EmbeddingInput::Text(t) => vec![text(t)?],
        EmbeddingInput::Texts(v) => v.iter().map(text).collect::<Result<_, _>>()?,
        EmbeddingInput::Tokens(ids) => vec![tokens(ids)?],
        EmbeddingInput::TokenLists(v) => v.iter().map(tokens).collect::<Result<_, _>>()?,
    })
}

/// Inputs to pool, checked as every endpoint that pools checks them: at least one, at most
/// `max_choices`, each with tokens and within the context. `param_of(i)` names the field input
/// `i` came from; with `cut`, an input too long is cut to the context (Ollama's `truncate`)
/// instead of refused.
pub fn checked_inputs(
    ready: &Ready,
    mut lists: Vec<Vec<u32>>,
    param_of: impl Fn(usize) -> &'static str,
    cut: bool,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let Some(last) = lists.len().checked_sub(1) else {
        let param = param_of(0);
        return Err(ApiError::invalid(
            param,
            format!("`{param}` is an empty list"),
        ));
    };
    let most = ready.limits.max_choices;
    if lists.len() > most {
        let param = param_of(last);
        return Err(ApiError::invalid(
            param,
            format!(
                "`{param}` has {} items; at most {most} per request",
                lists.len()
            ),
        ));
    }
    let context = ready.limits.context;
    // A decoder's prompt leaves room for a token of answer; an encoder's fills the context.
    let most = match ready.encoder {
        true => context,
        false => context.saturating_sub(1),
    };
    for (i, ids) in lists.iter_mut().enumerate() {
        let param = param_of(i);
        if ids.is_empty() {
            return Err(ApiError::invalid(
                param,
                format!("`{param}` item {i} has no tokens"),
            ));
        }
        if ids.len() > most {
            if cut {
                match ready.encoder {
                    true => crate::server::validate::cut_encoder_input(ids, most),
                    false => {
                        ids.truncate(most);
                        true
                    }
                };
                continue;
            }
            return Err(ApiError::invalid(
                param,
                format!(
                    "`{param}` item {i} has {} tokens; this model's context is {context} tokens",
                    ids.len()
                ),
            )
            .with_code("context_length_exceeded"));
        }
    }
    Ok(lists)
}

/// The norm a vector pooled by `pooling` is scaled to where a request says `normalize` (or
/// nothing): Euclidean unless false; a SPLADE vector as pooled unless true
/// (`EmbeddingRequest::vector_norm`).
pub fn vector_norm(pooling: Pooling, normalize: Option<bool>) -> i64 {
    match (pooling, normalize) {
        (_, Some(false)) | (Pooling::Sparse, None) => NOT_SCALED,
        _ => EUCLIDEAN,
    }
}

/// `dimensions` as asked (`None`: all), out of the model's `hidden`.
pub fn dimensions(asked: Option<i64>, hidden: usize) -> Result<usize, ApiError> {
    match asked {
        None => Ok(hidden),
        Some(d) if d >= 1 && d as u64 <= hidden as u64 => Ok(d as usize),
        Some(d) => Err(ApiError::invalid(
            "dimensions",
            format!("`dimensions` must be in [1, {hidden}] for this model, got {d}"),
        )),
    }
}

/// A text input's tokens as the model wants them embedded: BOS first where it adds one, EOS
/// last where it asks for it (embedding models pooling the last token read it there).
pub fn text_tokens(ready: &Ready, text: &str) -> Result<Vec<u32>, ApiError> {
    let mut ids = encoded_text(ready, "input", text, true)?;
    end_as_asked(ready, &mut ids);
    Ok(ids)
}

/// A text's tokens (no NUL in it: `param` names where it came from), with the special tokens
/// the model adds (BOS) when `special`.
pub fn encoded_text(
    ready: &Ready,
    param: &str,
    text: &str,
    special: bool,
) -> Result<Vec<u32>, ApiError> {
    no_nul(param, text)?;
    (ready.tokenizer.encode(text, special)).map_err(|e| ApiError::internal(e.to_string()))
}

/// The EOS last, where the model's tokenizer asks to append one (`add_eos_token`) and it is
/// not there yet.
pub fn end_as_asked(ready: &Ready, ids: &mut Vec<u32>) {
    if let Some(eos) = ready.tokenizer.added_eos() {
        if ids.last() != Some(&eos) {
            ids.push(eos);
        }
    }
}

/// The first `dimensions` values of a pooled vector, scaled to unit length (a zero vector
/// stays zero).
pub fn normalised(v: Vec<f32>, dimensions: usize) -> Vec<f32> {
    normalised_by(v, dimensions, EUCLIDEAN)
}

/// llama-server's `embd_normalize` for the Euclidean norm, its default.
pub const EUCLIDEAN: i64 = 2;

/// llama-server's `embd_normalize` for vectors left as pooled.
pub const NOT_SCALED: i64 = -1;

/// The first `dimensions` values of a pooled vector, scaled as llama-server's
/// `embd_normalize` says: -1 not at all, 0 the largest magnitude to 32760 (an int16's
/// range), p > 0 to unit p-norm (1 taxicab, 2 Euclidean). A zero vector stays zero.
pub fn normalised_by(mut v: Vec<f32>, dimensions: usize, norm: i64) -> Vec<f32> {
    v.truncate(dimensions);
    let magnitude = |x: &f32| (*x as f64).abs();
    let size = match norm {
        -1 => return v,
        0 => v.iter().map(magnitude).fold(0.0, f64::max) / 32760.0,
        p => {
            let p = p as i32;
            let sum: f64 = v.iter().map(|x| magnitude(x).powi(p)).sum();
            sum.powf(1.0 / p as f64)
        }
    };
    if size > 0.0 {
        for x in &mut v {
            *x = (*x as f64 / size) as f32;
        }
    }
    v
}

/// A vector as the response carries it.
pub fn encoded(v: &[f32], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Float => json!(v),
        Encoding::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// The response: one `embedding` object per input, in order, and the tokens read.
pub fn response(model: &str, vectors: Vec<Value>, prompt_tokens: usize) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_cut_then_scaled_to_unit_length() {
        assert_eq!(normalised(vec![3.0, 4.0, 12.0], 2), [0.6, 0.8]);
        assert_eq!(normalised(vec![0.0, 0.0], 2), [0.0, 0.0]);
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let v = [1.0f32, -2.5];
        let text = encoded(&v, Encoding::Base64);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 8);
        assert_eq!(f32::from_le_bytes(bytes[4..8].try_into().unwrap()), -2.5);
        assert_eq!(encoded(&v, Encoding::Float), json!([1.0, -2.5]));
    }

    #[test]
    fn formats_and_dimensions_are_checked() {
        let req = |extra: Value| -> EmbeddingRequest {
            let mut body = json!({"input": "x"});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            serde_json::from_value(body).unwrap()
        };
        assert_eq!(req(json!({})).encoding().unwrap(), Encoding::Float);
        assert_eq!(
            req(json!({"encoding_format": "base64"}))
                .encoding()
                .unwrap(),
            Encoding::Base64
        );
        assert!(req(json!({"encoding_format": "binary"}))
            .encoding()
            .is_err());
        assert_eq!(dimensions(req(json!({})).dimensions, 8).unwrap(), 8);
        assert_eq!(dimensions(Some(3), 8).unwrap(), 3);
        assert!(dimensions(Some(0), 8).is_err());
        assert!(dimensions(Some(9), 8).is_err());
        assert_eq!(req(json!({})).norm(), EUCLIDEAN);
        assert_eq!(req(json!({"normalize": true})).norm(), EUCLIDEAN);
        assert_eq!(req(json!({"normalize": false})).norm(), NOT_SCALED);
        // SPLADE's term weights are answered as pooled unless asked otherwise.
        let splade = |body| req(body).vector_norm(Pooling::Sparse);
        assert_eq!(splade(json!({})), NOT_SCALED);
        assert_eq!(splade(json!({"normalize": false})), NOT_SCALED);
        assert_eq!(splade(json!({"normalize": true})), EUCLIDEAN);
        assert_eq!(req(json!({})).vector_norm(Pooling::Mean), EUCLIDEAN);
        assert!(
            serde_json::from_value::<EmbeddingRequest>(json!({"input": "x", "normalize": 1}))
                .is_err()
        );
        let lists: EmbeddingRequest =
            serde_json::from_value(json!({"input": [[1, 2], [3]]})).unwrap();
        assert!(matches!(lists.input, EmbeddingInput::TokenLists(_)));
        assert!(serde_json::from_value::<EmbeddingRequest>(json!({"input": 5})).is_err());
    }
}
