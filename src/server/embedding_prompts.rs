//! A sentence-transformers checkout's task prompts (`config_sentence_transformers.json`:
//! `prompts`, `default_prompt_name`), put before each text an embedding request sends as
//! sentence-transformers' `encode` puts them: the prompt the request names (`prompt_name`, as
//! text-embeddings-inference takes it), else the checkout's default one, else none. Models
//! trained with such prompts (snowflake-arctic-embed `query: `, Qwen3-Embedding's
//! instruction) embed a bare query worse; a default prompt is one the model always expects.
use crate::server::error::ApiError;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct EmbeddingPrompts {
    prompts: BTreeMap<String, String>,
    default: Option<String>,
}

impl EmbeddingPrompts {
    /// The prompts of the checkout `dir` (none where it has no such file, or is a GGUF); an
    /// error where the file is not what sentence-transformers reads (it refuses such a
    /// checkout too), or its default names no prompt.
    pub fn from_dir(dir: &Path) -> Result<EmbeddingPrompts, String> {
        let path = dir.join("config_sentence_transformers.json");
        if !dir.is_dir() {
            return Ok(EmbeddingPrompts::default());
        }
        let Some(json) = candor_models::sentence_transformers::read_json(&path)? else {
            return Ok(EmbeddingPrompts::default());
        };
        let shown = path.display();
        let prompts: BTreeMap<String, String> = match json.get("prompts") {
            None | Some(serde_json::Value::Null) => BTreeMap::new(),
            Some(p) => serde_json::from_value(p.clone())
                .map_err(|e| format!("{shown}: `prompts` must map names to texts: {e}"))?,
        };
        let default = match json.get("default_prompt_name") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(name)) if prompts.contains_key(name) => {
                Some(name.clone())
            }
            Some(other) => {
                return Err(format!(
                    "{shown}: `default_prompt_name` {other} names none of its prompts ({})",
                    names(&prompts)
                ))
            }
        };
        Ok(EmbeddingPrompts { prompts, default })
    }

    /// Take `name` as a prompt name; without a prompt of its own, it puts no text before a
    /// text input (a Router's route name, which picks an encoder, not a text).
    pub fn name_without_text(&mut self, name: &str) {
        self.prompts.entry(name.to_string()).or_default();
    }

    /// The text to put before each text input: the prompt `name`d (a 400 naming the known ones
    /// where the checkout has no such prompt), else the default one.
    pub fn text_for(&self, name: Option<&str>) -> Result<Option<&str>, ApiError> {
        let name = match name.or(self.default.as_deref()) {
            Some(name) => name,
            None => return Ok(None),
        };
        match self.prompts.get(name) {
            Some(text) => Ok(Some(text.as_str()).filter(|t| !t.is_empty())),
            None => Err(ApiError::invalid(
                "prompt_name",
                format!(
                    "the model has no prompt `{name}` (its config_sentence_transformers.json \
                     names: {})",
                    names(&self.prompts)
                ),
            )),
        }
    }
}

fn names(prompts: &BTreeMap<String, String>) -> String {
    match prompts.is_empty() {
        true => "none".to_string(),
        false => (prompts.keys())
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) -> Result<EmbeddingPrompts, String> {
        std::fs::write(dir.join("config_sentence_transformers.json"), json).unwrap();
        EmbeddingPrompts::from_dir(dir)
    }

    #[test]
    fn the_named_prompt_else_the_default_else_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            EmbeddingPrompts::from_dir(dir.path()),
            Ok(EmbeddingPrompts::default())
        );
        let p = write(
            dir.path(),
            r#"{"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": null}"#,
        )
        .unwrap();
        assert_eq!(p.text_for(None).unwrap(), None);
        assert_eq!(p.text_for(Some("query")).unwrap(), Some("query: "));
        assert_eq!(p.text_for(Some("document")).unwrap(), None);
        let refused = p.text_for(Some("passage")).unwrap_err();
        assert!(
            format!("{refused:?}").contains("`document`, `query`"),
            "{refused:?}"
        );
        let d = write(
            dir.path(),
            r#"{"prompts": {"query": "query: "}, "default_prompt_name": "query"}"#,
        )
        .unwrap();
        assert_eq!(d.text_for(None).unwrap(), Some("query: "));
    }

    #[test]
    fn a_file_sentence_transformers_would_refuse_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "{",
            r#"{"prompts": ["query: "]}"#,
            r#"{"prompts": {"query": "q"}, "default_prompt_name": "passage"}"#,
        ] {
            assert!(write(dir.path(), bad).is_err(), "{bad}");
        }
    }
}
