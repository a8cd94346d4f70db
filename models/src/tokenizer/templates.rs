//! A model's chat templates where its files keep them, read as transformers reads them: the
//! one it renders with, and the one `apply_chat_template` picks instead when a request has
//! tools (`tool_use`, where the model keeps it apart: Command R / R+, Hermes 2 Pro, Hermes 3).
//!
//! Checkouts: tokenizer_config.json's `chat_template` (one, or a list of named ones), unless
//! the checkout keeps its templates in files (transformers saves them there since 4.47, and no
//! longer in the config), which then replace the config's whole: `chat_template.jinja` the
//! default, `additional_chat_templates/NAME.jinja` named ones; a multimodal processor's
//! `chat_template.json` serves where nothing else names one.
//! GGUFs: `tokenizer.chat_template` and `tokenizer.chat_template.tool_use`, as llama.cpp's
//! converter writes named templates.
use super::{Result, TokenizerError};
use std::path::Path;

/// The name of the template transformers renders with when a request has tools.
const TOOL_USE: &str = "tool_use";
const DEFAULT: &str = "default";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatTemplates {
    pub default: Option<String>,
    pub tool_use: Option<String>,
}

impl ChatTemplates {
    /// tokenizer_config.json's `chat_template`: a template, or `[{"name", "template"}, ...]`.
    pub fn from_tokenizer_config(cfg: &serde_json::Value) -> Self {
        match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => ChatTemplates {
                default: Some(s.clone()),
                tool_use: None,
            },
            Some(serde_json::Value::Array(list)) => {
                let named = |name: &str| {
                    list.iter()
                        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
                        .and_then(|t| t.get("template"))
                        .and_then(|s| s.as_str())
                        .map(str::to_string)
                };
                ChatTemplates {
                    default: named(DEFAULT),
                    tool_use: named(TOOL_USE),
                }
            }
            _ => ChatTemplates::default(),
        }
    }

    /// The templates a checkout `dir` keeps in files of their own, instead of those of its
    /// tokenizer_config.json (`self`): as transformers does, any template file replaces the
    /// config's templates, named ones included.
    pub fn with_checkout_files(mut self, dir: &Path) -> Result<Self> {
        let extra = dir.join("additional_chat_templates");
        let files = ChatTemplates {
            default: match read_if_there(&dir.join("chat_template.jinja"))? {
                Some(t) => Some(t),
                None => read_if_there(&extra.join(format!("{DEFAULT}.jinja")))?,
            },
            tool_use: read_if_there(&extra.join(format!("{TOOL_USE}.jinja")))?,
        };
        if files.default.is_some() || files.tool_use.is_some() {
            self = files;
        }
        if self.default.is_none() {
            let path = dir.join("chat_template.json");
            if let Some(text) = read_if_there(&path)? {
                let json: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| TokenizerError::File {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                self.default = json
                    .get("chat_template")
                    .and_then(|t| t.as_str())
                    .map(str::to_string);
            }
        }
        Ok(self)
    }

    /// A GGUF's templates, by llama.cpp's keys.
    pub fn from_gguf(get: impl Fn(&str) -> Option<String>) -> Self {
        ChatTemplates {
            default: get("tokenizer.chat_template"),
            tool_use: get(&format!("tokenizer.chat_template.{TOOL_USE}")),
        }
    }
}

fn read_if_there(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TokenizerError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_templates_give_the_default_and_the_tool_use_one() {
        let cfg = json!({"chat_template": [
            {"name": "default", "template": "D"},
            {"name": "tool_use", "template": "T"},
            {"name": "rag", "template": "R"},
        ]});
        let t = ChatTemplates::from_tokenizer_config(&cfg);
        assert_eq!(
            (t.default.as_deref(), t.tool_use.as_deref()),
            (Some("D"), Some("T"))
        );
        let one = ChatTemplates::from_tokenizer_config(&json!({"chat_template": "D"}));
        assert_eq!((one.default.as_deref(), one.tool_use), (Some("D"), None));
        assert_eq!(
            ChatTemplates::from_tokenizer_config(&json!({})),
            ChatTemplates::default()
        );
    }

    #[test]
    fn template_files_replace_the_configs_and_add_named_ones() {
        let dir = tempfile::tempdir().unwrap();
        let config = ChatTemplates::from_tokenizer_config(&json!({"chat_template": "C"}));
        // Nothing beside the config: its template.
        let t = config.clone().with_checkout_files(dir.path()).unwrap();
        assert_eq!(t.default.as_deref(), Some("C"));
        // A processor's chat_template.json does not replace a tokenizer's template...
        std::fs::write(
            dir.path().join("chat_template.json"),
            r#"{"chat_template": "P"}"#,
        )
        .unwrap();
        let t = config.clone().with_checkout_files(dir.path()).unwrap();
        assert_eq!(t.default.as_deref(), Some("C"));
        // ...but serves where none is named.
        let none = ChatTemplates::default();
        let t = none.with_checkout_files(dir.path()).unwrap();
        assert_eq!(t.default.as_deref(), Some("P"));
        // chat_template.jinja replaces the config's; additional_chat_templates adds tool_use.
        std::fs::write(dir.path().join("chat_template.jinja"), "J").unwrap();
        std::fs::create_dir(dir.path().join("additional_chat_templates")).unwrap();
        std::fs::write(
            dir.path().join("additional_chat_templates/tool_use.jinja"),
            "T",
        )
        .unwrap();
        let t = config.with_checkout_files(dir.path()).unwrap();
        assert_eq!(
            (t.default.as_deref(), t.tool_use.as_deref()),
            (Some("J"), Some("T"))
        );
        // The files replace the config's named templates whole (transformers drops them).
        std::fs::remove_file(dir.path().join("additional_chat_templates/tool_use.jinja")).unwrap();
        let named = ChatTemplates::from_tokenizer_config(&json!({"chat_template": [
            {"name": "default", "template": "D"}, {"name": "tool_use", "template": "CT"}]}));
        let t = named.with_checkout_files(dir.path()).unwrap();
        assert_eq!((t.default.as_deref(), t.tool_use), (Some("J"), None));
        // A chat_template.json that is not JSON says where.
        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join("chat_template.json"), "{").unwrap();
        let e = ChatTemplates::default()
            .with_checkout_files(bad.path())
            .unwrap_err();
        assert!(e.to_string().contains("chat_template.json"), "{e}");
    }

    #[test]
    fn gguf_templates_are_read_by_llama_cpp_keys() {
        let t = ChatTemplates::from_gguf(|k| match k {
            "tokenizer.chat_template" => Some("D".into()),
            "tokenizer.chat_template.tool_use" => Some("T".into()),
            _ => None,
        });
        assert_eq!(
            (t.default.as_deref(), t.tool_use.as_deref()),
            (Some("D"), Some("T"))
        );
    }
}
