//! The structured-output extensions of vLLM and llama-server, for clients written against them:
//! vLLM's `structured_outputs` with one of `json`, `regex`, `choice`, `grammar` or
//! `json_object`, and its older `guided_json`, `guided_regex`, `guided_choice`,
//! `guided_grammar`; llama-server's `json_schema` and `grammar`. Grammars are lark, or GBNF
//! (translated, `gbnf.rs`). Read here (cheap, before anything runs), compiled by
//! `structured::answer_format` beside `response_format`.
use super::error::ApiError;
use super::gbnf;
use super::openai::CommonParams;
use serde_json::Value;

/// What an answer must match.
#[derive(Debug, Clone, PartialEq)]
pub enum GuideKind {
    Schema(Value),
    /// A regular expression (Rust `regex` syntax) the whole answer matches.
    Regex(String),
    /// One of these strings, exactly.
    Choice(Vec<String>),
    /// A grammar in llguidance's lark dialect.
    Lark(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum GuideGrammar {
    Schema(Value),
    Regex(String),
    Lark(String),
}

/// A guide and the field that asked for it (for errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Guide {
    pub param: String,
    pub kind: GuideKind,
}

impl Guide {
    fn new(param: &str, kind: GuideKind) -> Self {
        Guide {
            param: param.to_string(),
            kind,
        }
    }

    /// What llguidance compiles: a schema, a regex, or a lark grammar (for choices too).
    pub fn grammar(&self) -> GuideGrammar {
        match &self.kind {
            GuideKind::Schema(schema) => GuideGrammar::Schema(schema.clone()),
            GuideKind::Regex(rx) => GuideGrammar::Regex(rx.clone()),
            GuideKind::Choice(choices) => {
                // JSON string escapes are lark's too.
                let quoted: Vec<String> = choices
                    .iter()
                    .map(|c| serde_json::to_string(c).unwrap_or_default())
                    .collect();
                GuideGrammar::Lark(format!("start: {}", quoted.join(" | ")))
            }
            GuideKind::Lark(grammar) => GuideGrammar::Lark(grammar.clone()),
        }
    }

    pub fn invalid(&self, message: impl Into<String>) -> ApiError {
        ApiError::invalid(&self.param, message)
    }
}

/// The guide a request asks for, if any; more than one is a 400.
pub fn guide(p: &CommonParams) -> Result<Option<Guide>, ApiError> {
    let mut found = Vec::new();
    if let Some(so) = &p.structured_outputs {
        let Some(fields) = so.as_object() else {
            return Err(ApiError::invalid(
                "structured_outputs",
                "`structured_outputs` must be an object",
            ));
        };
        for (key, value) in fields {
            let param = format!("structured_outputs.{key}");
            let kind = match key.as_str() {
                "json" => Some(schema(value, &param)?),
                "json_object" if value == &Value::Bool(true) => {
                    Some(GuideKind::Schema(serde_json::json!({"type": "object"})))
                }
                "regex" => Some(GuideKind::Regex(text(value, &param)?)),
                "choice" => Some(choice(value, &param)?),
                "grammar" => Some(GuideKind::Lark(grammar(value, &param)?)),
                // Options such as `disable_any_whitespace` tune a backend, not the language.
                _ if value.is_null() || value == &Value::Bool(false) => None,
                "json_object" => None,
                other => {
                    return Err(ApiError::invalid(
                        &param,
                        format!(
                        "`{other}` is not supported (json, json_object, regex, choice, grammar)"
                    ),
                    ))
                }
            };
            if let Some(kind) = kind {
                found.push(Guide::new(&param, kind));
            }
        }
    }
    if let Some(v) = &p.guided_json {
        found.push(Guide::new("guided_json", schema(v, "guided_json")?));
    }
    if let Some(v) = &p.guided_regex {
        found.push(Guide::new("guided_regex", GuideKind::Regex(v.clone())));
    }
    if let Some(v) = &p.guided_choice {
        found.push(Guide::new("guided_choice", choice(v, "guided_choice")?));
    }
    for (param, value) in [
        ("guided_grammar", &p.guided_grammar),
        ("grammar", &p.grammar),
    ] {
        if let Some(v) = value {
            let kind = GuideKind::Lark(grammar(&Value::String(v.clone()), param)?);
            found.push(Guide::new(param, kind));
        }
    }
    if let Some(v) = &p.json_schema {
        found.push(Guide::new("json_schema", schema(v, "json_schema")?));
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(ApiError::invalid(
            &found[1].param,
            format!(
                "`{}` and `{}` both shape the answer; send one",
                found[0].param, found[1].param
            ),
        )),
    }
}

fn text(v: &Value, param: &str) -> Result<String, ApiError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid(param, format!("`{param}` must be a string")))
}

/// A schema as an object, or as the JSON text of one (vLLM takes both).
fn schema(v: &Value, param: &str) -> Result<GuideKind, ApiError> {
    let parsed = match v {
        Value::String(s) => serde_json::from_str(s).map_err(|e| {
            ApiError::invalid(param, format!("`{param}` is not a JSON schema: {e}"))
        })?,
        other => other.clone(),
    };
    match parsed {
        Value::Object(_) | Value::Bool(true) => Ok(GuideKind::Schema(parsed)),
        _ => Err(ApiError::invalid(
            param,
            format!("`{param}` must be a JSON schema object"),
        )),
    }
}

fn choice(v: &Value, param: &str) -> Result<GuideKind, ApiError> {
    let choices: Option<Vec<String>> = v
        .as_array()
        .map(|a| a.iter().map(|c| c.as_str().map(str::to_string)).collect())
        .unwrap_or(None);
    match choices {
        Some(c) if !c.is_empty() && c.iter().all(|s| !s.is_empty()) => Ok(GuideKind::Choice(c)),
        _ => Err(ApiError::invalid(
            param,
            format!("`{param}` must be a non-empty list of non-empty strings"),
        )),
    }
}

/// A grammar in lark, or in GBNF (`::=` rules, as llama.cpp and vLLM's xgrammar take them),
/// translated.
fn grammar(v: &Value, param: &str) -> Result<String, ApiError> {
    let g = text(v, param)?;
    if !g.contains("::=") {
        return Ok(g);
    }
    gbnf::to_lark(&g)
        .map_err(|e| ApiError::invalid(param, format!("`{param}` is not a GBNF grammar: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> CommonParams {
        serde_json::from_value(v).expect("params")
    }

    fn kind(v: Value) -> GuideKind {
        guide(&params(v)).unwrap().expect("a guide").kind
    }

    #[test]
    fn each_way_of_asking_gives_its_guide() {
        assert_eq!(
            kind(json!({"structured_outputs": {"regex": "[0-9]+"}})),
            GuideKind::Regex("[0-9]+".into())
        );
        assert_eq!(
            kind(json!({"guided_choice": ["yes", "no"]})),
            GuideKind::Choice(vec!["yes".into(), "no".into()])
        );
        assert_eq!(
            kind(json!({"guided_json": "{\"type\": \"object\"}"})),
            GuideKind::Schema(json!({"type": "object"}))
        );
        assert_eq!(
            kind(
                json!({"structured_outputs": {"json_object": true, "disable_any_whitespace": false}})
            ),
            GuideKind::Schema(json!({"type": "object"}))
        );
        assert_eq!(
            kind(json!({"structured_outputs": {"grammar": "start: \"a\""}})),
            GuideKind::Lark("start: \"a\"".into())
        );
        assert_eq!(
            kind(json!({"grammar": "root ::= [0-9]+"})),
            GuideKind::Lark("start: /[0-9]/+\n".into())
        );
        assert_eq!(
            kind(json!({"json_schema": {"type": "string"}})),
            GuideKind::Schema(json!({"type": "string"}))
        );
        assert_eq!(guide(&params(json!({}))).unwrap(), None);
    }

    #[test]
    fn choices_become_lark_alternatives() {
        let g = Guide::new(
            "guided_choice",
            GuideKind::Choice(vec!["a \"b\"".into(), "c".into()]),
        );
        assert_eq!(
            g.grammar(),
            GuideGrammar::Lark(r#"start: "a \"b\"" | "c""#.into())
        );
    }

    #[test]
    fn bad_or_doubled_guides_are_refused_by_field() {
        for (body, param) in [
            (
                json!({"structured_outputs": {"regex": "a", "choice": ["b"]}}),
                "structured_outputs.choice",
            ),
            (
                json!({"guided_regex": "a", "guided_choice": ["b"]}),
                "guided_choice",
            ),
            (json!({"structured_outputs": "regex"}), "structured_outputs"),
            (
                json!({"structured_outputs": {"structural_tag": "x"}}),
                "structured_outputs.structural_tag",
            ),
            (json!({"guided_choice": []}), "guided_choice"),
            (json!({"guided_json": "not json"}), "guided_json"),
            (
                json!({"guided_grammar": "root ::= undefined"}),
                "guided_grammar",
            ),
            (
                json!({"grammar": "start: \"a\"", "json_schema": {}}),
                "json_schema",
            ),
        ] {
            let e = guide(&params(body.clone())).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }
}
