//! llama-server's prompt forms (`/completion`'s `prompt`, `/tokenize`'s `content`): a text,
//! token ids, texts and ids mixed in one list, or a list of any of those (several prompts,
//! each answered on its own), read as llama-server reads them: a list of texts alone is
//! several prompts, a list holding both texts and ids is one.
use super::error::ApiError;
use super::routes::completions::token_ids;
use super::state::Ready;
use super::validate::no_nul;
use serde_json::Value;

/// How text is tokenized: the model's special tokens added at the start (`add_special`), and
/// special tokens written in the text read as themselves (`parse_special`) or as characters.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub add_special: bool,
    pub parse_special: bool,
}

impl Reading {
    /// A completion's prompt: the model's special tokens first, those written read as tokens.
    pub const PROMPT: Reading = Reading {
        add_special: true,
        parse_special: true,
    };
}

/// `text`'s tokens as `reading` says.
pub fn encode(
    ready: &Ready,
    param: &str,
    text: &str,
    reading: Reading,
) -> Result<Vec<u32>, ApiError> {
    no_nul(param, text)?;
    let tokens = if reading.parse_special {
        ready.tokenizer.encode(text, reading.add_special)
    } else {
        ready.tokenizer.encode_text(text, reading.add_special)
    };
    tokens.map_err(|e| ApiError::internal(e.to_string()))
}

/// One prompt: a text, an id, or a list of texts and ids; the model's special tokens go
/// before a text that comes first (ids are the client's own).
pub fn mixed(
    ready: &Ready,
    param: &str,
    prompt: &Value,
    reading: Reading,
) -> Result<Vec<u32>, ApiError> {
    let parts = match prompt {
        Value::Array(parts) => parts.as_slice(),
        one => std::slice::from_ref(one),
    };
    let mut tokens = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Value::String(text) => {
                let first = Reading {
                    add_special: reading.add_special && i == 0,
                    ..reading
                };
                tokens.extend(encode(ready, param, text, first)?)
            }
            Value::Number(n) => {
                let id = n.as_i64().unwrap_or(-1);
                tokens.extend(token_ids(ready, param, &[id])?)
            }
            other => {
                return Err(ApiError::invalid(
                    param,
                    format!("`{param}` holds texts and token ids, got {other}"),
                ))
            }
        }
    }
    Ok(tokens)
}

/// The prompts of `/completion`'s `prompt`: one, or a list of them (texts, id lists, mixed
/// lists). Texts start with the model's special tokens, as llama-server tokenizes them.
pub fn prompts(ready: &Ready, param: &str, prompt: &Value) -> Result<Vec<Vec<u32>>, ApiError> {
    let reading = Reading::PROMPT;
    let Value::Array(items) = prompt else {
        return Ok(vec![mixed(ready, param, prompt, reading)?]);
    };
    if items.iter().any(Value::is_number) {
        // One prompt: ids, or texts and ids mixed (not a list of prompts then).
        return Ok(vec![mixed(ready, param, prompt, reading)?]);
    }
    if items.is_empty() {
        return Err(ApiError::invalid(param, format!("`{param}` is empty")));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(_) | Value::Array(_) => mixed(ready, param, item, reading),
            other => Err(ApiError::invalid(
                param,
                format!("`{param}` lists texts and lists of token ids, got {other}"),
            )),
        })
        .collect()
}
