//! A slow GPT-2-style tokenizer (`vocab.json` and `merges.txt` without a `tokenizer.json`:
//! OPT's checkouts, GPT-2's and RoBERTa-era fine-tunes) as transformers' `GPT2Converter` makes
//! it fast: a byte-level BPE over the vocabulary and merges, GPT-2's split pattern, the
//! byte-level decoder, and the special tokens the checkout names (its `tokenizer_config.json`,
//! `special_tokens_map.json`, `added_tokens.json`) matched whole. Built as a `tokenizer.json`
//! document and read by the `tokenizers` crate, so nothing of the format is reimplemented here.
//! The BOS / EOS a prompt gets are the caller's (`add_bos_token` of `tokenizer_config.json`),
//! as for every tokenizer.json candor reads; RoBERTa's kind (`RobertaConverter`: its class,
//! BART's and Longformer's, or such a model type where no config names the class) gets its
//! `RobertaProcessing`, which an encoder applies (`<s> A </s>`, pairs `<s> A </s></s> B </s>`),
//! and RobertaTokenizer's default specials where the config names none.
use super::{file_error, special_token_text, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The keys under which a tokenizer's config names one special token each.
const SPECIAL_KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Whether `dir` holds a slow tokenizer's files and no `tokenizer.json`.
pub fn is_slow_checkout(dir: &Path) -> bool {
    !dir.join("tokenizer.json").is_file()
        && dir.join("vocab.json").is_file()
        && dir.join("merges.txt").is_file()
}

/// The tokenizer of `dir`'s `vocab.json` and `merges.txt`.
pub fn tokenizer(dir: &Path) -> Result<tokenizers::Tokenizer> {
    let document = tokenizer_json(dir)?;
    document
        .to_string()
        .parse::<tokenizers::Tokenizer>()
        .map_err(|e| file_error(&dir.join("vocab.json"), e.to_string()))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read(path)?).map_err(|e| file_error(path, e.to_string()))
}

/// `dir`'s JSON file `name`, or null where it has none.
fn optional_json(dir: &Path, name: &str) -> Result<Value> {
    let path = dir.join(name);
    match path.is_file() {
        true => read_json(&path),
        false => Ok(Value::Null),
    }
}

/// The `tokenizer.json` document transformers would write for `dir`'s slow tokenizer.
fn tokenizer_json(dir: &Path) -> Result<Value> {
    let vocab_path = dir.join("vocab.json");
    let Value::Object(vocab) = read_json(&vocab_path)? else {
        return Err(file_error(&vocab_path, "not a JSON object"));
    };
    if let Some((token, _)) = vocab.iter().find(|(_, id)| id.as_u64().is_none()) {
        return Err(file_error(
            &vocab_path,
            format!("`{token}` has no integer id"),
        ));
    }
    let merges = merges(&dir.join("merges.txt"))?;
    let config = optional_json(dir, "tokenizer_config.json")?;
    let special_map = optional_json(dir, "special_tokens_map.json")?;
    let added = optional_json(dir, "added_tokens.json")?;
    let add_prefix_space = config
        .get("add_prefix_space")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let roberta = is_roberta(dir, &config)?;
    let config = match roberta {
        true => with_roberta_defaults(config),
        false => config,
    };
    let added_tokens = added_tokens(&vocab, &[&config, &special_map], &added);
    let post_processor = match roberta {
        true => roberta_processing(dir, &config, &added_tokens, add_prefix_space)?,
        false => Value::Null,
    };
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space,
                            "trim_offsets": true, "use_regex": true});
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "",
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    }))
}

/// The tokenizer classes transformers converts with its `RobertaConverter` (byte-level BPE
/// whose sequences are `<s> A </s>`, pairs `<s> A </s></s> B </s>`).
const ROBERTA_CLASSES: [&str; 3] = ["RobertaTokenizer", "BartTokenizer", "LongformerTokenizer"];
/// The model types whose slow tokenizers are those, where the tokenizer's config does not
/// name its class (older uploads keep no tokenizer_config.json).
const ROBERTA_MODEL_TYPES: [&str; 3] = ["roberta", "bart", "longformer"];

/// Whether `dir`'s slow tokenizer is RoBERTa's kind: by its config's class, else by the
/// model's type.
fn is_roberta(dir: &Path, config: &Value) -> Result<bool> {
    let class = config
        .get("tokenizer_class")
        .and_then(Value::as_str)
        .map(|c| c.trim_end_matches("Fast"));
    Ok(match class {
        Some(class) => ROBERTA_CLASSES.contains(&class),
        None => {
            let model = optional_json(dir, "config.json")?;
            let model_type = model.get("model_type").and_then(Value::as_str);
            model_type.is_some_and(|t| ROBERTA_MODEL_TYPES.contains(&t))
        }
    })
}

/// RobertaTokenizer's special tokens where the config does not name them.
fn with_roberta_defaults(mut config: Value) -> Value {
    if !config.is_object() {
        config = json!({});
    }
    for (key, text) in [
        ("bos_token", "<s>"),
        ("eos_token", "</s>"),
        ("sep_token", "</s>"),
        ("cls_token", "<s>"),
        ("unk_token", "<unk>"),
        ("pad_token", "<pad>"),
        ("mask_token", "<mask>"),
    ] {
        if config.get(key).is_none_or(Value::is_null) {
            config[key] = text.into();
        }
    }
    config
}

/// RoBERTa's post-processor: `<s>` and `</s>` around a sequence, as an encoder reads it (a
/// decoder's prompts are left as they are by candor, which adds a BOS itself).
fn roberta_processing(
    dir: &Path,
    config: &Value,
    added_tokens: &[Value],
    add_prefix_space: bool,
) -> Result<Value> {
    let token = |key: &str, default: &str| -> Result<(String, u64)> {
        let text = config
            .get(key)
            .and_then(special_token_text)
            .unwrap_or(default);
        let id = added_tokens
            .iter()
            .find(|t| t["content"] == text)
            .and_then(|t| t["id"].as_u64())
            .ok_or_else(|| {
                file_error(
                    &dir.join("vocab.json"),
                    format!("RoBERTa's `{key}` `{text}` is not in the vocabulary"),
                )
            })?;
        Ok((text.to_string(), id))
    };
    let (sep, cls) = (token("sep_token", "</s>")?, token("cls_token", "<s>")?);
    Ok(
        json!({"type": "RobertaProcessing", "sep": [sep.0, sep.1], "cls": [cls.0, cls.1],
              "trim_offsets": true, "add_prefix_space": add_prefix_space}),
    )
}

/// The merges of `merges.txt`, a pair a line: its `#version` header and blank lines skipped
/// (transformers drops the first line and the last, empty, one).
fn merges(path: &Path) -> Result<Vec<[String; 2]>> {
    let text = read(path)?;
    let mut merges = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("#version") || line.trim().is_empty() {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push([a.to_string(), b.to_string()]),
            _ => {
                return Err(file_error(
                    path,
                    format!("line {}: `{line}` is not a pair of pieces", n + 1),
                ))
            }
        }
    }
    Ok(merges)
}

/// The tokens matched whole: each special token the configs name (in the vocabulary, or after
/// it in turn), and `added_tokens.json`'s at their ids, as `tokenizer.json` lists them.
fn added_tokens(vocab: &Map<String, Value>, configs: &[&Value], added: &Value) -> Vec<Value> {
    let mut specials: Vec<String> = Vec::new();
    for config in configs {
        let named = SPECIAL_KEYS.iter().filter_map(|k| config.get(*k));
        let extra = config
            .get("additional_special_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for text in named.chain(extra).filter_map(special_token_text) {
            if !specials.iter().any(|s| s == text) {
                specials.push(text.to_string());
            }
        }
    }
    let mut next = vocab
        .values()
        .filter_map(Value::as_u64)
        .max()
        .map_or(0, |m| m + 1);
    let mut by_id: Vec<(u64, String, bool)> = Vec::new();
    if let Some(added) = added.as_object() {
        for (text, id) in added {
            if let Some(id) = id.as_u64() {
                next = next.max(id + 1);
                let special = specials.iter().any(|s| s == text);
                by_id.push((id, text.clone(), special));
            }
        }
    }
    for text in specials {
        if by_id.iter().any(|(_, t, _)| *t == text) {
            continue;
        }
        let id = match vocab.get(&text).and_then(Value::as_u64) {
            Some(id) => id,
            None => {
                next += 1;
                next - 1
            }
        };
        by_id.push((id, text, true));
    }
    by_id.sort();
    by_id
        .into_iter()
        .map(|(id, content, special)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": !special, "special": special})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout(files: &[(&str, &str)]) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("candor-vm-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    /// A byte-level vocabulary of a few pieces (`Ġ` is the space byte), OPT's specials first.
    const VOCAB: &str = r#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "h": 4, "e": 5,
        "l": 6, "o": 7, "Ġ": 8, "w": 9, "r": 10, "d": 11, "he": 12, "ll": 13, "hell": 14,
        "hello": 15, "Ġw": 16, "or": 17, "Ġwor": 18, "Ġworl": 19, "Ġworld": 20}"#;
    const MERGES: &str =
        "#version: 0.2\nh e\nl l\nhe ll\nhell o\nĠ w\no r\nĠw or\nĠwor l\nĠworl d\n\n";

    #[test]
    fn a_slow_tokenizer_encodes_and_decodes_as_its_merges_say() {
        let dir = checkout(&[
            ("vocab.json", VOCAB),
            ("merges.txt", MERGES),
            (
                "tokenizer_config.json",
                r#"{"add_bos_token": true, "bos_token": {"content": "</s>"}, "eos_token": "</s>",
                    "pad_token": "<pad>", "unk_token": "</s>"}"#,
            ),
        ]);
        assert!(is_slow_checkout(&dir));
        let tok = tokenizer(&dir).unwrap();
        let ids = tok.encode("hello world</s>", false).unwrap();
        assert_eq!(ids.get_ids(), [15, 20, 2]);
        assert_eq!(
            tok.decode(&[15, 20, 2], true).unwrap(),
            "hello world",
            "specials skipped"
        );
        let whole = crate::tokenizer::Tokenizer::from_vocab_merges(&dir).unwrap();
        assert_eq!(whole.encode("hello world", true).unwrap(), [2, 15, 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A RoBERTa checkout without a tokenizer config (told by its model type): RoBERTa's
    /// specials matched whole, `<mask>` after the vocabulary, and an encoder's sequences and
    /// pairs wrapped as RobertaProcessing wraps them; a GPT-2 one gets no wrapping.
    #[test]
    fn roberta_checkouts_wrap_their_sequences() {
        let dir = checkout(&[
            ("vocab.json", VOCAB),
            ("merges.txt", MERGES),
            ("config.json", r#"{"model_type": "roberta"}"#),
        ]);
        let tok = crate::tokenizer::Tokenizer::from_vocab_merges(&dir)
            .unwrap()
            .for_encoder()
            .unwrap();
        assert_eq!(tok.encode("hello world", true).unwrap(), [0, 15, 20, 2]);
        assert_eq!(tok.token_id("<mask>"), Some(21));
        assert_eq!(
            tok.encode_pair("hello", "world").unwrap().unwrap(),
            [0, 15, 2, 2, 9, 17, 6, 11, 2]
        );
        std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
        let plain = crate::tokenizer::Tokenizer::from_vocab_merges(&dir)
            .unwrap()
            .for_encoder()
            .unwrap();
        assert_eq!(plain.encode("hello world", true).unwrap(), [15, 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn specials_outside_the_vocabulary_follow_it() {
        let dir = checkout(&[
            ("vocab.json", VOCAB),
            ("merges.txt", MERGES),
            (
                "special_tokens_map.json",
                r#"{"additional_special_tokens": ["<|x|>"]}"#,
            ),
            ("added_tokens.json", r#"{"<|y|>": 21}"#),
        ]);
        let tok = tokenizer(&dir).unwrap();
        assert_eq!(tok.token_to_id("<|y|>"), Some(21));
        assert_eq!(tok.token_to_id("<|x|>"), Some(22));
        let ids = tok.encode("hello<|x|> world", false).unwrap();
        assert_eq!(ids.get_ids(), [15, 22, 20]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_files_are_refused_with_their_path() {
        let dir = checkout(&[
            ("vocab.json", VOCAB),
            ("merges.txt", "h e\nthree parts here\n"),
        ]);
        let e = tokenizer(&dir).unwrap_err().to_string();
        assert!(e.contains("merges.txt") && e.contains("line 2"), "{e}");
        std::fs::write(dir.join("merges.txt"), MERGES).unwrap();
        std::fs::write(dir.join("vocab.json"), r#"{"a": "one"}"#).unwrap();
        let e = tokenizer(&dir).unwrap_err().to_string();
        assert!(e.contains("no integer id"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
