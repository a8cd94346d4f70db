//! Building a tokenizer from GGUF `tokenizer.ggml.*` metadata.
use super::pre::PreTokenizer;
use super::spm::Spm;
use super::{Model, Tokenizer, TokenizerError, Verbatim};
use candle_core::quantized::gguf_file::Value;
use std::collections::HashMap;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

type Md = HashMap<String, Value>;

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// A `tokenizers` failure while assembling the tokenizer, named by the step.
fn backend(step: &'static str) -> impl Fn(tokenizers::Error) -> TokenizerError {
    move |e| TokenizerError::Backend(format!("{step}: {e}"))
}

fn strings(md: &Md, key: &str) -> Result<Vec<String>, TokenizerError> {
    match md.get(key) {
        None => Err(TokenizerError::MissingKey(key.into())),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(TokenizerError::WrongType {
                    key: key.into(),
                    expected: "array of strings",
                }),
            })
            .collect(),
        Some(_) => Err(TokenizerError::WrongType {
            key: key.into(),
            expected: "array of strings",
        }),
    }
}

fn numbers(md: &Md, key: &str) -> Result<Option<Vec<f64>>, TokenizerError> {
    let Some(v) = md.get(key) else {
        return Ok(None);
    };
    let Value::Array(a) = v else {
        return Err(TokenizerError::WrongType {
            key: key.into(),
            expected: "array of numbers",
        });
    };
    a.iter()
        .map(|v| match v {
            Value::F32(x) => Ok(*x as f64),
            Value::F64(x) => Ok(*x),
            Value::I32(x) => Ok(*x as f64),
            Value::U32(x) => Ok(*x as f64),
            Value::I8(x) => Ok(*x as f64),
            Value::U8(x) => Ok(*x as f64),
            Value::I64(x) => Ok(*x as f64),
            _ => Err(TokenizerError::WrongType {
                key: key.into(),
                expected: "array of numbers",
            }),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn id(md: &Md, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| {
        v.to_u32()
            .ok()
            .or_else(|| v.to_i32().ok().map(|x| x as u32))
    })
}

fn flag(md: &Md, key: &str) -> Option<bool> {
    md.get(key).and_then(|v| v.to_bool().ok())
}

/// Control tokens that end generation besides eos, found by their text in the vocabulary: those
/// that close a chat turn, and a code model's file and padding markers, which a fill-in-the-middle
/// answer writes only once the gap is filled (llama.cpp ends generation at them too).
pub(super) fn generation_end_tokens(t: &Tokenizer) -> Vec<u32> {
    const ENDS: [&str; 10] = [
        "<|im_end|>",
        "<end_of_turn>",
        "<|eot_id|>",
        "<|end|>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<|fim_pad|>",
        "<|file_sep|>",
        "<|repo_name|>",
        "<|file_separator|>",
    ];
    let mut out = Vec::new();
    for (id, _) in t.special.iter().enumerate().filter(|(_, s)| **s) {
        if let Some(p) = t.token_to_piece(id as u32) {
            if ENDS.contains(&p.as_str()) {
                out.push(id as u32);
            }
        }
    }
    out
}

impl Tokenizer {
    pub fn from_gguf_metadata(md: &Md) -> Result<Self, TokenizerError> {
        let model = match md.get("tokenizer.ggml.model") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(TokenizerError::WrongType {
                    key: "tokenizer.ggml.model".into(),
                    expected: "string",
                })
            }
            None => return Err(TokenizerError::MissingKey("tokenizer.ggml.model".into())),
        };
        let tokens = strings(md, "tokenizer.ggml.tokens")?;
        let n = tokens.len();
        let types: Vec<i32> = numbers(md, "tokenizer.ggml.token_type")?
            .map(|v| v.into_iter().map(|x| x as i32).collect())
            .unwrap_or_else(|| vec![1; n]);
        if types.len() != n {
            return Err(TokenizerError::WrongType {
                key: "tokenizer.ggml.token_type".into(),
                expected: "one type per token",
            });
        }
        let bos = id(md, "tokenizer.ggml.bos_token_id");
        let eos = id(md, "tokenizer.ggml.eos_token_id");
        let eot = id(md, "tokenizer.ggml.eot_token_id");
        let unk = id(md, "tokenizer.ggml.unknown_token_id");
        let pad = id(md, "tokenizer.ggml.padding_token_id");
        let templates = super::ChatTemplates::from_gguf(|key| {
            md.get(key).and_then(|v| v.to_string().ok().cloned())
        });
        for (key, v) in [
            ("bos", bos),
            ("eos", eos),
            ("eot", eot),
            ("unknown", unk),
            ("padding", pad),
        ] {
            if let Some(v) = v.filter(|&v| v as usize >= n) {
                return Err(TokenizerError::OutOfVocab { id: v, vocab: n }).map_err(|e| {
                    TokenizerError::Backend(format!("tokenizer.ggml.{key}_token_id: {e}"))
                });
            }
        }

        // A BERT vocabulary's separator: its special tokens come from its post-processor.
        let mut encoder = None;
        let (model, special, verbatim, add_bos, add_space_prefix) = match model.as_str() {
            "gpt2" => {
                // Special (matched whole in the text, skippable on decode): every control
                // token, as llama.cpp tokenizes prompts and as the model's own tokenizer.json
                // registers them. HF's GGUF conversion (4.57) registers only the named ones and
                // cuts `<|fim_prefix|>` into BPE pieces: a raw fill-in-the-middle prompt, what
                // editor plugins send, would then not be what the model was trained on.
                let special: Vec<bool> = types.iter().map(|&t| t == TYPE_CONTROL).collect();
                let merges: Vec<(String, String)> = strings(md, "tokenizer.ggml.merges")?
                    .into_iter()
                    .filter_map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                    })
                    .collect();
                let vocab: tokenizers::models::bpe::Vocab = tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let pre = match md.get("tokenizer.ggml.pre") {
                    Some(Value::String(s)) => Some(s.as_str()),
                    _ => None,
                };
                let pre = PreTokenizer::named(pre)?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(pre.ignore_merges)
                    .build()
                    .map_err(backend("BPE"))?;
                let mut tk = tokenizers::Tokenizer::new(bpe);
                if pre.nfc {
                    tk.with_normalizer(Some(NFC))
                        .map_err(backend("NFC normalizer"))?;
                }
                let mut steps = pre.splits()?;
                steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
                    false, false, false,
                )));
                tk.with_pre_tokenizer(Some(Sequence::new(steps)));
                tk.with_decoder(Some(ByteLevel::new(false, false, false)));
                let added: Vec<AddedToken> = tokens
                    .iter()
                    .zip(&special)
                    .filter(|(_, s)| **s)
                    .map(|(t, _)| AddedToken::from(t.clone(), true))
                    .collect();
                tk.add_special_tokens(added)
                    .map_err(backend("special tokens"))?;
                // User-defined tokens (Qwen's `<tool_call>`, `</tool_call>`) are added tokens
                // that are not special: matched whole in the text (as by the model's own
                // tokenizer.json, llama.cpp and transformers' GGUF loader since 5.x), kept on
                // decode. Cut into pieces, a tool call in a prompt is not what the model saw.
                let user_defined: Vec<AddedToken> = tokens
                    .iter()
                    .zip(&types)
                    .filter(|(_, &t)| t == TYPE_USER_DEFINED)
                    .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
                    .collect();
                tk.add_tokens(user_defined)
                    .map_err(backend("user-defined tokens"))?;
                let add_bos = flag(md, "tokenizer.ggml.add_bos_token").unwrap_or(false);
                (
                    Model::Hf(Box::new(tk)),
                    special,
                    Verbatim::default(),
                    add_bos,
                    false,
                )
            }
            "llama" => {
                let scores: Vec<f32> = numbers(md, "tokenizer.ggml.scores")?
                    .map(|v| v.into_iter().map(|x| x as f32).collect())
                    .unwrap_or_else(|| vec![0.0; n]);
                if scores.len() != n {
                    return Err(TokenizerError::WrongType {
                        key: "tokenizer.ggml.scores".into(),
                        expected: "one score per token",
                    });
                }
                // Control tokens are special and matched verbatim in the raw text; so are
                // user-defined pieces (`<html>`, "\n\n", gemma's runs of spaces), which are
                // not special (see `Tokenizer::encode`).
                let special: Vec<bool> = types.iter().map(|&t| t == TYPE_CONTROL).collect();
                let verbatim = Verbatim::new(
                    tokens
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| types[*i] == TYPE_CONTROL)
                        .map(|(i, t)| (t.clone(), i as u32))
                        .collect(),
                );
                let user_defined = Verbatim::new(
                    tokens
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| types[*i] == TYPE_USER_DEFINED)
                        .map(|(i, t)| (t.clone(), i as u32))
                        .collect(),
                );
                let add_bos = flag(md, "tokenizer.ggml.add_bos_token").unwrap_or(true);
                let add_space_prefix = flag(md, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
                (
                    Model::Spm(Box::new(Spm::new(tokens, scores, unk)), user_defined),
                    special,
                    verbatim,
                    add_bos,
                    add_space_prefix,
                )
            }
            "bert" => {
                let ids = super::wordpiece::WordPieceIds {
                    cls: id(md, "tokenizer.ggml.cls_token_id").or(bos),
                    sep: id(md, "tokenizer.ggml.seperator_token_id"),
                    unk,
                };
                let built = super::wordpiece::from_gguf(&tokens, &types, ids)?;
                encoder = Some(built.sep);
                built.parts()
            }
            "t5" => {
                let scores: Vec<f32> = numbers(md, "tokenizer.ggml.scores")?
                    .map(|v| v.into_iter().map(|x| x as f32).collect())
                    .ok_or_else(|| TokenizerError::MissingKey("tokenizer.ggml.scores".into()))?;
                let charsmap: Option<Vec<u8>> = numbers(md, "tokenizer.ggml.precompiled_charsmap")?
                    .map(|v| v.into_iter().map(|x| x as u8).collect());
                let spec = super::unigram::UnigramSpec {
                    scores: &scores,
                    charsmap: charsmap.as_deref(),
                    add_space_prefix: flag(md, "tokenizer.ggml.add_space_prefix").unwrap_or(true),
                    remove_extra_whitespaces: flag(md, "tokenizer.ggml.remove_extra_whitespaces")
                        .unwrap_or(true),
                    bos,
                    eos,
                    sep: id(md, "tokenizer.ggml.seperator_token_id"),
                    unk,
                };
                let built = super::unigram::from_gguf(&tokens, &types, spec)?;
                encoder = Some(built.sep);
                built.parts()
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let mut t = Tokenizer {
            model,
            vocab_size: n,
            verbatim,
            special,
            bos,
            eos,
            extra_eos: Vec::new(),
            add_bos,
            add_eos: flag(md, "tokenizer.ggml.add_eos_token").unwrap_or(false),
            add_space_prefix,
            space_prefix_first_only: false,
            templates,
            token_bytes: Default::default(),
            plain: Default::default(),
            unknown: Default::default(),
            post_process: encoder.is_some(),
            sep: encoder,
        };
        let mut extra = generation_end_tokens(&t);
        extra.extend(eot);
        t.extra_eos = extra;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SentencePiece vocabulary in GGUF metadata: `<s>` and `</s>` control, `<x>`
    /// user-defined, merges `▁[`, `▁H`, `▁Hi` scored above single characters.
    fn spm(add_space_prefix: bool) -> Tokenizer {
        let vocab: [(&str, f32, i32); 16] = [
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("\u{2581}", -10.0, 1),
            ("[", -10.0, 1),
            ("I", -10.0, 1),
            ("N", -10.0, 1),
            ("S", -10.0, 1),
            ("T", -10.0, 1),
            ("]", -10.0, 1),
            ("H", -10.0, 1),
            ("i", -10.0, 1),
            ("\u{2581}[", -1.0, 1),
            ("\u{2581}H", -1.0, 1),
            ("\u{2581}Hi", -0.5, 1),
            ("<x>", 0.0, 4),
        ];
        let array =
            |f: &dyn Fn(&(&str, f32, i32)) -> Value| Value::Array(vocab.iter().map(f).collect());
        let md: Md = [
            ("tokenizer.ggml.model", Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens",
                array(&|t| Value::String(t.0.into())),
            ),
            ("tokenizer.ggml.scores", array(&|t| Value::F32(t.1))),
            ("tokenizer.ggml.token_type", array(&|t| Value::I32(t.2))),
            ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
            ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
            (
                "tokenizer.ggml.add_space_prefix",
                Value::Bool(add_space_prefix),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Tokenizer::from_gguf_metadata(&md).expect("tokenizer")
    }

    /// A byte-level BPE vocabulary whose `abc` no merge reaches (only `b c` is a merge).
    fn bpe_md(pre: &str) -> Md {
        let tokens = ["a", "b", "c", "bc", "abc"];
        let md: Md = [
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(
                    tokens
                        .iter()
                        .map(|t| Value::String(t.to_string()))
                        .collect(),
                ),
            ),
            (
                "tokenizer.ggml.merges",
                Value::Array(vec![Value::String("b c".into())]),
            ),
            ("tokenizer.ggml.pre", Value::String(pre.into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        md
    }

    fn bpe(pre: &str) -> Tokenizer {
        Tokenizer::from_gguf_metadata(&bpe_md(pre)).expect("tokenizer")
    }

    /// gpt-oss's vocabulary: `<|end|>` (which the GGUF may name its end of turn) closes a
    /// message, not the answer; `<|return|>` and `<|call|>` end generation. Elsewhere `<|end|>`
    /// still ends it (Phi-3's turns).
    #[test]
    fn harmony_vocabularies_end_on_return_and_call_not_end() {
        let vocab = |tokens: &[&str], eot: u32| -> Tokenizer {
            let mut md = bpe_md("gpt-4o");
            let all: Vec<Value> = ["a", "b", "c", "bc", "abc"]
                .iter()
                .chain(tokens)
                .map(|t| Value::String(t.to_string()))
                .collect();
            let types = (0..all.len())
                .map(|i| Value::I32(if i < 5 { 1 } else { 3 }))
                .collect();
            md.insert("tokenizer.ggml.tokens".into(), Value::Array(all));
            md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
            md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(eot));
            Tokenizer::from_gguf_metadata(&md).expect("tokenizer")
        };
        let oss = vocab(&["<|end|>", "<|return|>", "<|call|>"], 5);
        let mut ends = oss.generation_end_ids(&[5, 2]);
        ends.sort();
        assert_eq!(ends, [2, 6, 7]);
        let phi = vocab(&["<|end|>"], 5);
        assert_eq!(phi.generation_end_ids(&[5]), [5]);
        // FunctionGemma's turn of calls ends where the tool's response would open.
        let function_gemma = vocab(
            &[
                "<end_of_turn>",
                "<start_function_call>",
                "<start_function_response>",
            ],
            5,
        );
        let mut ends = function_gemma.generation_end_ids(&[5]);
        ends.sort();
        assert_eq!(ends, [5, 7]);
    }

    /// Llama 3's and Tekken's vocabularies take a whole piece found in the vocabulary as it is
    /// (their tokenizer.json's `ignore_merges`); others build it from the merges.
    #[test]
    fn whole_pieces_skip_the_merges_where_the_family_says() {
        assert_eq!(bpe("llama-bpe").encode("abc", false).unwrap(), [4]);
        assert_eq!(bpe("tekken").encode("abc", false).unwrap(), [4]);
        assert_eq!(bpe("dbrx").encode("abc", false).unwrap(), [0, 3]);
        assert!(Tokenizer::from_gguf_metadata(&bpe_md("nope")).is_err());
    }

    /// With a space prefix (Llama 2, Mistral), text that starts the input or follows a token
    /// matched whole (control or user-defined) starts with `▁`, as llama.cpp tokenizes: a
    /// template's `<s>[INST]` gives `<s>`, `▁[`.
    #[test]
    fn the_space_prefix_follows_every_whole_token() {
        let t = spm(true);
        assert_eq!(t.encode("Hi", false).unwrap(), [14]);
        assert_eq!(t.encode("<s>Hi", false).unwrap(), [1, 14]);
        assert_eq!(
            t.encode("<s>[INST]", false).unwrap(),
            [1, 12, 5, 6, 7, 8, 9]
        );
        assert_eq!(t.encode("Hi<x>Hi</s>", false).unwrap(), [14, 15, 14, 2]);
        assert_eq!(t.encode("Hi", true).unwrap(), [1, 14]);
        // Without the prefix, text is taken as it stands.
        let t = spm(false);
        assert_eq!(t.encode("<s>Hi", false).unwrap(), [1, 10, 11]);
        assert_eq!(t.encode("Hi<x>Hi", false).unwrap(), [10, 11, 15, 10, 11]);
    }
}
