//! Mistral's Tekken tokenizer (`tekken.json` without a `tokenizer.json`: Devstral, Magistral,
//! Mistral Small 3.2 and other Mistral repositories keep only that, for `mistral_common`) read
//! into the vocabulary a GGUF file holds for it, as llama.cpp's converter writes it, then built
//! by `gguf` as every GGUF byte-level vocabulary is.
//!
//! The file is tiktoken's: the vocabulary as base64 byte strings in rank order, no merges, a
//! split pattern, and control tokens ahead of the vocabulary (ids `0..n` where `n` is
//! `default_num_special_tokens`: listed ones, those older files leave out taken from
//! `mistral_common`'s defaults, the rest `<SPECIAL_i>` fillers); the vocabulary's rank `r` is
//! id `n + r`, cut to `default_vocab_size` ids in all. The merges BPE needs are recovered from
//! the ranks (`merges`). The chat template is `mistral_instruct`'s for the file's version where
//! the checkout names none.
use super::{file_error, Tokenizer, TokenizerError};
use base64::Engine as _;
use candle_core::quantized::gguf_file::Value;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// The file a Mistral checkout keeps its tokenizer in.
pub const FILE: &str = "tekken.json";
/// The system prompt Mistral's model cards load and send with every conversation.
pub const SYSTEM_PROMPT_FILE: &str = "SYSTEM_PROMPT.txt";

const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;

/// `mistral_common`'s control tokens for files of version 7 or older that list none
/// (`Tekkenizer.DEPRECATED_SPECIAL_TOKENS`), ids `0..20` in order.
const DEFAULT_SPECIALS: [&str; 20] = [
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
];

#[derive(Deserialize)]
struct TekkenFile {
    config: TekkenConfig,
    vocab: Vec<VocabEntry>,
    special_tokens: Option<Vec<SpecialEntry>>,
    /// Version 15's: which settings a request may give the model, and their defaults.
    model_settings_builder: Option<SettingsBuilder>,
}

#[derive(Deserialize)]
struct SettingsBuilder {
    reasoning_effort: Option<EffortBuilder>,
}

#[derive(Deserialize)]
struct EffortBuilder {
    values: Vec<String>,
    default: String,
}

#[derive(Deserialize)]
struct TekkenConfig {
    pattern: String,
    default_vocab_size: usize,
    default_num_special_tokens: usize,
    version: String,
}

#[derive(Deserialize)]
struct VocabEntry {
    rank: usize,
    token_bytes: String,
}

#[derive(Deserialize)]
struct SpecialEntry {
    rank: usize,
    token_str: String,
}

/// Whether `dir` holds a Tekken file and no `tokenizer.json`.
pub fn is_tekken_checkout(dir: &Path) -> bool {
    !dir.join("tokenizer.json").is_file() && dir.join(FILE).is_file()
}

impl Tokenizer {
    /// `dir`'s `tekken.json`, with the chat template of its files or its config where the
    /// checkout has one, else `mistral_instruct`'s for the Tekken version (with its
    /// `SYSTEM_PROMPT.txt` as the default system prompt, the directory's name as the model's).
    pub fn from_tekken_checkout(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
        let file: TekkenFile = serde_json::from_str(&text).map_err(|e| file_error(&path, e))?;
        let version = version_number(&file.config.version).ok_or_else(|| {
            file_error(&path, format!("unknown version `{}`", file.config.version))
        })?;
        let efforts = (file.model_settings_builder.as_ref())
            .and_then(|b| b.reasoning_effort.as_ref())
            .map(|e| (e.values.clone(), e.default.clone()));
        let mut tok = Tokenizer::from_gguf_metadata(&gguf_vocabulary(&path, file, version)?)?;
        let config = super::sentencepiece_model::read_config(dir)?;
        tok.templates = super::ChatTemplates::from_tokenizer_config(&config);
        tok = tok.with_checkout_templates(dir)?;
        if tok.templates.default.is_none() {
            let system_file = dir.join(SYSTEM_PROMPT_FILE);
            let system_prompt = match system_file.is_file() {
                true => Some(
                    std::fs::read_to_string(&system_file)
                        .map_err(|e| file_error(&system_file, e))?,
                ),
                false => None,
            };
            let name = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let prompting = super::mistral_instruct::Prompting {
                thinks: tok.token_id("[THINK]").is_some() && tok.token_id("[/THINK]").is_some(),
                system_prompt: system_prompt.as_deref().map(|text| (text, name.as_str())),
                efforts,
            };
            tok.templates.default = super::mistral_instruct::template(version, &prompting);
        }
        Ok(tok)
    }
}

/// `v13` → 13.
fn version_number(version: &str) -> Option<u32> {
    version.strip_prefix('v')?.parse().ok()
}

/// The `tokenizer.ggml.*` metadata of a Tekken file: control tokens first, then the vocabulary
/// as GPT-2 byte-level strings with the merges that rebuild each token, Tekken's split.
fn gguf_vocabulary(
    path: &Path,
    file: TekkenFile,
    version: u32,
) -> Result<HashMap<String, Value>, TokenizerError> {
    let config = &file.config;
    if config.pattern != super::pre::TEKKEN {
        return Err(file_error(
            path,
            "its split pattern is not Tekken's: splitting text otherwise than the model was \
             trained on would feed it token sequences it never saw",
        ));
    }
    let specials = special_tokens(path, &file, version)?;
    let inner = config
        .default_vocab_size
        .checked_sub(specials.len())
        .filter(|&n| n <= file.vocab.len() && n >= 256)
        .ok_or_else(|| {
            file_error(
                path,
                format!(
                    "default_vocab_size {} does not fit {} control tokens and {} vocabulary \
                     entries (the 256 bytes at least)",
                    config.default_vocab_size,
                    specials.len(),
                    file.vocab.len()
                ),
            )
        })?;
    let mut pieces = Vec::with_capacity(inner);
    let engine = base64::engine::general_purpose::STANDARD;
    for (i, entry) in file.vocab.iter().take(inner).enumerate() {
        let bytes = engine
            .decode(&entry.token_bytes)
            .map_err(|e| file_error(path, format!("vocabulary rank {i}: {e}")))?;
        let byte_rank_ok = i >= 256 || bytes == [i as u8];
        if entry.rank != i || !byte_rank_ok {
            return Err(file_error(
                path,
                format!("vocabulary entry {i} is not rank {i} (ranks 0-255 are the bytes)"),
            ));
        }
        pieces.push(bytes);
    }
    let merges = merges(&pieces);
    let mut tokens: Vec<Value> = specials.into_iter().map(Value::String).collect();
    let control = tokens.len();
    tokens.extend(
        pieces
            .iter()
            .map(|p| Value::String(super::token_bytes::byte_level_string(p))),
    );
    let types = (0..tokens.len())
        .map(|id| {
            Value::I32(if id < control {
                TYPE_CONTROL
            } else {
                TYPE_NORMAL
            })
        })
        .collect();
    let id_of = |token: &str| {
        tokens[..control]
            .iter()
            .position(|t| matches!(t, Value::String(s) if s == token))
            .map(|id| Value::U32(id as u32))
    };
    let mut md = HashMap::new();
    for (key, token) in [
        ("bos", "<s>"),
        ("eos", "</s>"),
        ("unknown", "<unk>"),
        ("padding", "<pad>"),
    ] {
        if let Some(id) = id_of(token) {
            md.insert(format!("tokenizer.ggml.{key}_token_id"), id);
        }
    }
    md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    md.insert("tokenizer.ggml.pre".into(), Value::String("tekken".into()));
    md.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens));
    md.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    md.insert(
        "tokenizer.ggml.merges".into(),
        Value::Array(merges.into_iter().map(Value::String).collect()),
    );
    // mistral_common starts every text it encodes with BOS, and nothing after it.
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    md.insert("tokenizer.ggml.add_eos_token".into(), Value::Bool(false));
    Ok(md)
}

/// The control tokens, ids `0..default_num_special_tokens`: the file's list (ranks in order
/// from 0), or `mistral_common`'s defaults for version 7 and older where it lists none, then
/// `<SPECIAL_i>` up to the count.
fn special_tokens(
    path: &Path,
    file: &TekkenFile,
    version: u32,
) -> Result<Vec<String>, TokenizerError> {
    let count = file.config.default_num_special_tokens;
    let mut specials: Vec<String> = match &file.special_tokens {
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                if s.rank != i {
                    return Err(file_error(
                        path,
                        format!(
                            "special token `{}` has rank {}, not {i}",
                            s.token_str, s.rank
                        ),
                    ));
                }
            }
            list.iter().map(|s| s.token_str.clone()).collect()
        }
        None if version <= 7 => DEFAULT_SPECIALS.iter().map(|s| s.to_string()).collect(),
        None => {
            return Err(file_error(
                path,
                format!("a version {version} file must list its special tokens"),
            ))
        }
    };
    if specials.len() > count {
        return Err(file_error(
            path,
            format!(
                "{} special tokens listed, default_num_special_tokens is {count}",
                specials.len()
            ),
        ));
    }
    for i in specials.len()..count {
        specials.push(format!("<SPECIAL_{i}>"));
    }
    Ok(specials)
}

/// The BPE merges that rebuild tiktoken's ranks, one per token past the bytes, in rank
/// order: the two parts a token is made of are what tiktoken's own merging leaves of its
/// bytes when only lower ranks may merge (llama.cpp's and transformers' converters recover
/// them so). A token no merging reaches (a whole word kept as it is) gets none: Tekken's
/// vocabulary takes a split piece found whole before merging (`ignore_merges`).
fn merges(pieces: &[Vec<u8>]) -> Vec<String> {
    let ranks: HashMap<&[u8], usize> = pieces
        .iter()
        .enumerate()
        .map(|(rank, p)| (p.as_slice(), rank))
        .collect();
    let mut merges = Vec::with_capacity(pieces.len().saturating_sub(256));
    for (rank, piece) in pieces.iter().enumerate().skip(256) {
        if let Some(cut) = last_merge(&ranks, piece, rank) {
            let (left, right) = piece.split_at(cut);
            merges.push(format!(
                "{} {}",
                super::token_bytes::byte_level_string(left),
                super::token_bytes::byte_level_string(right)
            ));
        }
    }
    merges
}

/// Where the last merge that builds `piece` joins its two parts: tiktoken's merging of
/// `piece`'s bytes (lowest rank first, leftmost on a tie) with ranks below `max_rank`, if it
/// ends in two parts.
fn last_merge(ranks: &HashMap<&[u8], usize>, piece: &[u8], max_rank: usize) -> Option<usize> {
    // Part boundaries: part i is piece[starts[i]..starts[i + 1]].
    let mut starts: Vec<usize> = (0..=piece.len()).collect();
    while starts.len() > 3 {
        let best = (0..starts.len() - 2)
            .filter_map(|i| {
                let rank = *ranks.get(&piece[starts[i]..starts[i + 2]])?;
                (rank < max_rank).then_some((rank, i))
            })
            .min()?;
        starts.remove(best.1 + 1);
    }
    (starts.len() == 3).then_some(starts[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranks(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        pieces.iter().map(|p| p.to_vec()).collect()
    }

    /// Each token's merge is the last step of merging its bytes with lower ranks only: "abc"
    /// (rank 258) is "ab" + "c" since "ab" (256) merges before "bc" (257).
    #[test]
    fn merges_follow_the_ranks() {
        let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        pieces.extend(ranks(&[b"ab", b"bc", b"abc", b"xyz"]));
        let merges = merges(&pieces);
        // "xyz" has no parts of lower rank than itself but its bytes: no merge.
        assert_eq!(merges, ["a b", "b c", "ab c"]);
    }

    #[test]
    fn version_strings_are_read() {
        assert_eq!(version_number("v13"), Some(13));
        assert_eq!(version_number("13"), None);
        assert_eq!(version_number("vX"), None);
    }
}
