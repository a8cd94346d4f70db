//! A slow SentencePiece tokenizer (`tokenizer.model` without a `tokenizer.json`: Llama-2-era
//! fine-tunes and many older uploads keep only that) read into the vocabulary a GGUF file would
//! hold for it, as llama.cpp's converter writes it (pieces, scores, piece types, the special
//! tokens the checkout names, its added tokens), then built by `gguf` as every GGUF
//! SentencePiece vocabulary is (`spm`). The file is a protobuf `ModelProto`; only the fields
//! read here are declared (prost skips the rest).
//!
//! SentencePiece BPE models (Llama, Mistral, Gemma, Yi, InternLM) are read; Unigram models are
//! refused by name (their decoder-only users are rare, and `unigram` builds T5's encoder
//! tokenizer).
use super::{file_error, special_token_text, Tokenizer, TokenizerError};
use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::Path;

#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<Piece>,
    #[prost(message, optional, tag = "2")]
    trainer_spec: Option<TrainerSpec>,
    #[prost(message, optional, tag = "3")]
    normalizer_spec: Option<NormalizerSpec>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Piece {
    #[prost(string, optional, tag = "1")]
    piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    score: Option<f32>,
    /// NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6: llama.cpp's token
    /// types share these numbers.
    #[prost(int32, optional, tag = "3")]
    kind: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TrainerSpec {
    /// UNIGRAM 1 (the default), BPE 2, WORD 3, CHAR 4.
    #[prost(int32, optional, tag = "3")]
    model_type: Option<i32>,
    #[prost(int32, optional, tag = "40")]
    unk_id: Option<i32>,
    #[prost(int32, optional, tag = "41")]
    bos_id: Option<i32>,
    #[prost(int32, optional, tag = "42")]
    eos_id: Option<i32>,
    #[prost(int32, optional, tag = "43")]
    pad_id: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NormalizerSpec {
    #[prost(bool, optional, tag = "3")]
    add_dummy_prefix: Option<bool>,
}

const BPE: i32 = 2;
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// The file a slow SentencePiece checkout keeps its tokenizer in.
pub const FILE: &str = "tokenizer.model";

/// Whether `dir` holds a SentencePiece model and no `tokenizer.json`.
pub fn is_slow_checkout(dir: &Path) -> bool {
    !dir.join("tokenizer.json").is_file() && dir.join(FILE).is_file()
}

impl Tokenizer {
    /// `dir`'s `tokenizer.model` with its `tokenizer_config.json` (special tokens, added
    /// tokens, `add_bos_token`, the chat template) and template files.
    pub fn from_sentencepiece_checkout(dir: &Path) -> Result<Self, TokenizerError> {
        let config = read_config(dir)?;
        let mut tok = Tokenizer::from_gguf_metadata(&gguf_vocabulary(dir, &config)?)?;
        tok.templates = super::ChatTemplates::from_tokenizer_config(&config);
        // transformers' fast LlamaTokenizer without `legacy` (Llama 2's `"legacy": false`)
        // prefixes the text's start only; legacy ones (the default) every text after a token
        // matched whole, as llama.cpp does.
        tok.space_prefix_first_only = config.get("legacy").and_then(Json::as_bool) == Some(false);
        tok.with_checkout_templates(dir)
    }
}

/// The `tokenizer.ggml.*` metadata llama.cpp's converter writes for `dir`'s checkout.
fn gguf_vocabulary(dir: &Path, config: &Json) -> Result<HashMap<String, Value>, TokenizerError> {
    let path = dir.join(FILE);
    let bytes = std::fs::read(&path).map_err(|e| file_error(&path, e))?;
    let model: ModelProto = prost::Message::decode(bytes.as_slice())
        .map_err(|e| file_error(&path, format!("not a SentencePiece model: {e}")))?;
    let trainer = model.trainer_spec.clone().unwrap_or_default();
    let model_type = trainer.model_type.unwrap_or(1);
    if model_type != BPE {
        let name = match model_type {
            1 => "Unigram".to_string(),
            3 => "word".to_string(),
            4 => "character".to_string(),
            other => format!("type {other}"),
        };
        return Err(file_error(
            &path,
            format!(
                "a SentencePiece {name} model: only BPE models are read without a \
                 tokenizer.json (save the checkout's fast tokenizer to add one)"
            ),
        ));
    }
    if model.pieces.is_empty() {
        return Err(file_error(&path, "the model has no pieces"));
    }
    let mut tokens = Vec::with_capacity(model.pieces.len());
    let mut scores = Vec::with_capacity(model.pieces.len());
    let mut types = Vec::with_capacity(model.pieces.len());
    for (i, p) in model.pieces.iter().enumerate() {
        let piece = p
            .piece
            .clone()
            .ok_or_else(|| file_error(&path, format!("piece {i} has no text")))?;
        tokens.push(piece);
        scores.push(p.score.unwrap_or(0.0));
        types.push(p.kind.unwrap_or(TYPE_NORMAL));
    }
    add_checkout_tokens(dir, config, &mut tokens, &mut scores, &mut types)?;
    let id_of = |piece: &str| tokens.iter().position(|t| t == piece).map(|i| i as u32);
    // The checkout's names win over the model's ids (a fine-tune's own end of turn).
    let named = |key: &str| config.get(key).and_then(special_token_text).and_then(id_of);
    let trained = |id: Option<i32>, default: i32| {
        let id = id.unwrap_or(default);
        (id >= 0 && (id as usize) < tokens.len()).then_some(id as u32)
    };
    let special_ids = [
        ("bos", named("bos_token").or(trained(trainer.bos_id, 1))),
        ("eos", named("eos_token").or(trained(trainer.eos_id, 2))),
        ("unknown", named("unk_token").or(trained(trainer.unk_id, 0))),
        (
            "padding",
            named("pad_token").or(trained(trainer.pad_id, -1)),
        ),
    ];
    let add_dummy_prefix = model
        .normalizer_spec
        .and_then(|n| n.add_dummy_prefix)
        .unwrap_or(true);
    let flag =
        |key: &str, default: bool| config.get(key).and_then(Json::as_bool).unwrap_or(default);
    let mut md = HashMap::new();
    md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    md.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    );
    md.insert(
        "tokenizer.ggml.scores".into(),
        Value::Array(scores.into_iter().map(Value::F32).collect()),
    );
    md.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    );
    for (name, id) in special_ids {
        if let Some(id) = id {
            md.insert(format!("tokenizer.ggml.{name}_token_id"), Value::U32(id));
        }
    }
    // LlamaTokenizer's defaults: BOS before a text, no EOS after it.
    md.insert(
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(flag("add_bos_token", true)),
    );
    md.insert(
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(flag("add_eos_token", false)),
    );
    md.insert(
        "tokenizer.ggml.add_space_prefix".into(),
        Value::Bool(add_dummy_prefix),
    );
    Ok(md)
}

/// `dir`'s `tokenizer_config.json`, or null where it has none.
pub(super) fn read_config(dir: &Path) -> Result<Json, TokenizerError> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(Json::Null);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
    crate::config_json::parse(&text).map_err(|e| file_error(&path, e))
}

/// The checkout's added tokens (`added_tokens_decoder` of its config, `added_tokens.json`):
/// those past the model's pieces appended at their ids (control tokens where special, else
/// user-defined; a gap is filled with `[PAD<id>]` as llama.cpp's converter fills it), those
/// among them marked control where the config says they are special.
fn add_checkout_tokens(
    dir: &Path,
    config: &Json,
    tokens: &mut Vec<String>,
    scores: &mut Vec<f32>,
    types: &mut Vec<i32>,
) -> Result<(), TokenizerError> {
    let mut added: Vec<(usize, String, bool)> = Vec::new();
    if let Some(decoder) = config.get("added_tokens_decoder").and_then(Json::as_object) {
        for (id, token) in decoder {
            let (Ok(id), Some(content)) = (
                id.parse::<usize>(),
                token.get("content").and_then(Json::as_str),
            ) else {
                continue;
            };
            let special = token
                .get("special")
                .and_then(Json::as_bool)
                .unwrap_or(false);
            added.push((id, content.to_string(), special));
        }
    }
    let added_file = dir.join("added_tokens.json");
    if added_file.is_file() {
        let text = std::fs::read_to_string(&added_file).map_err(|e| file_error(&added_file, e))?;
        let map: HashMap<String, usize> =
            serde_json::from_str(&text).map_err(|e| file_error(&added_file, e))?;
        for (content, id) in map {
            if !added.iter().any(|(i, _, _)| *i == id) {
                added.push((id, content, false));
            }
        }
    }
    added.sort_by_key(|(id, _, _)| *id);
    const MOST_ADDED: usize = 1 << 20;
    for (id, content, special) in added {
        if id >= tokens.len() + MOST_ADDED {
            return Err(file_error(
                &dir.join("tokenizer_config.json"),
                format!("added token `{content}` has id {id}, far past the model's pieces"),
            ));
        }
        while tokens.len() < id {
            tokens.push(format!("[PAD{}]", tokens.len()));
            scores.push(0.0);
            types.push(TYPE_USER_DEFINED);
        }
        let kind = if special {
            TYPE_CONTROL
        } else {
            TYPE_USER_DEFINED
        };
        if id == tokens.len() {
            tokens.push(content);
            scores.push(0.0);
            types.push(kind);
        } else if tokens[id] == content && special {
            types[id] = TYPE_CONTROL;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn piece(text: &str, score: f32, kind: i32) -> Piece {
        Piece {
            piece: Some(text.into()),
            score: Some(score),
            kind: Some(kind),
        }
    }

    /// A model of `pieces` written to a checkout with `config` as its tokenizer_config.json.
    fn checkout(pieces: Vec<Piece>, model_type: i32, config: Json) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let model = ModelProto {
            pieces,
            trainer_spec: Some(TrainerSpec {
                model_type: Some(model_type),
                ..Default::default()
            }),
            normalizer_spec: None,
        };
        std::fs::write(dir.path().join(FILE), model.encode_to_vec()).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        dir
    }

    fn toy_pieces() -> Vec<Piece> {
        vec![
            piece("<unk>", 0.0, 2),
            piece("<s>", 0.0, 3),
            piece("</s>", 0.0, 3),
            piece("▁", -1.0, 1),
            piece("h", -2.0, 1),
            piece("i", -2.0, 1),
            piece("hi", -0.5, 1),
            piece("▁hi", -0.1, 1),
        ]
    }

    /// Pieces, scores and types become the GGUF vocabulary; the config's added tokens follow
    /// the pieces (special ones as control tokens) and its names pick the special ids.
    #[test]
    fn a_model_and_its_config_become_a_vocabulary() {
        let config = serde_json::json!({
            "chat_template": "{{ messages[0].content }}",
            "eos_token": {"content": "<|im_end|>"},
            "add_bos_token": false,
            "added_tokens_decoder": {
                "9": {"content": "<|im_end|>", "special": true},
                "2": {"content": "</s>", "special": true}
            }
        });
        let dir = checkout(toy_pieces(), BPE, config);
        let tok = Tokenizer::from_sentencepiece_checkout(dir.path()).unwrap();
        assert_eq!(tok.vocab_size(), 10);
        assert_eq!(
            tok.chat_template().as_deref(),
            Some("{{ messages[0].content }}")
        );
        assert_eq!(tok.token_id("[PAD8]"), Some(8));
        assert_eq!(tok.eos_ids(), vec![9]);
        assert_eq!(tok.bos_id(), Some(1));
        assert!(tok.is_special(9) && tok.is_special(2) && !tok.is_special(8));
        // No BOS (the config says so); the space prefix and the best-scored merges.
        assert_eq!(tok.encode("hi<|im_end|>", true).unwrap(), vec![7, 9]);
    }

    #[test]
    fn unigram_models_and_broken_files_are_refused_by_name() {
        let dir = checkout(toy_pieces(), 1, Json::Null);
        let err = Tokenizer::from_sentencepiece_checkout(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("SentencePiece Unigram model"), "{err}");
        std::fs::write(dir.path().join(FILE), b"\xff\xff\xff not protobuf").unwrap();
        let err = Tokenizer::from_sentencepiece_checkout(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a SentencePiece model"), "{err}");
    }
}
