//! Thinking budgets and the thought a request's answer follows (`engine::thought`).
//!
//! A budget caps the tokens a thinking model spends in its thought: once spent, the engine
//! forces an optional message and `</think>`, and the model answers. Clients ask for one as
//! vLLM's `thinking_token_budget` (llama-server spells it `thinking_budget_tokens`, with
//! `thinking_budget_message`), Anthropic's `thinking.budget_tokens`; `serve
//! --reasoning-budget` and `--reasoning-budget-message` set the server's default (as
//! llama-server's), which a request's own budget replaces. A budget only applies to a model
//! whose chat template thinks; for others there is no thought to cut, and it is ignored, as
//! clients send one to whatever model they talk to.
use super::error::ApiError;
use super::reasoning::ThinkTags;
use super::state::Ready;
use crate::engine::thought::{AnswerPrefix, Thought, ThoughtMarkers};
use candor_models::tokenizer::Tokenizer;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// The server's default budget (`--reasoning-budget`, -1: none) and what is written before
/// the close marker when a budget runs out (`--reasoning-budget-message`).
#[derive(Debug, Clone, Default)]
pub struct ThinkingDefaults {
    pub budget: Option<usize>,
    pub message: String,
}

/// What a request asks of its thought's length (chat and responses requests carry these
/// fields; Anthropic's `thinking.budget_tokens` is read into them). Kept as sent, so that a
/// wrong type is refused naming its field (a flattened field's serde error names none).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct BudgetAsked {
    /// Tokens (-1: no limit): vLLM's spelling.
    pub thinking_token_budget: Option<Value>,
    /// llama-server's spelling.
    pub thinking_budget_tokens: Option<Value>,
    /// Written before the forced close (llama-server's `thinking_budget_message`).
    pub thinking_budget_message: Option<Value>,
}

impl BudgetAsked {
    /// A budget of `tokens` (Anthropic's, checked where it was read).
    pub fn tokens(tokens: i64) -> Self {
        BudgetAsked {
            thinking_token_budget: Some(Value::from(tokens)),
            ..BudgetAsked::default()
        }
    }

    /// The tokens asked (-1: no limit), checked.
    fn budget(&self) -> Result<Option<i64>, ApiError> {
        let sent = [
            ("thinking_token_budget", &self.thinking_token_budget),
            ("thinking_budget_tokens", &self.thinking_budget_tokens),
        ];
        let mut asked = None;
        for (param, value) in sent {
            let Some(value) = value.as_ref().filter(|v| !v.is_null()) else {
                continue;
            };
            if asked.is_some() {
                return Err(ApiError::invalid(
                    param,
                    "send one of `thinking_token_budget` and `thinking_budget_tokens`",
                ));
            }
            match value.as_i64() {
                Some(n) if n >= -1 => asked = Some(n),
                _ => {
                    return Err(ApiError::invalid(
                        param,
                        format!(
                            "`{param}` must be a number of tokens >= 0, or -1 for no limit; \
                             got {value}"
                        ),
                    ))
                }
            }
        }
        Ok(asked)
    }

    fn message(&self) -> Result<Option<String>, ApiError> {
        match &self.thinking_budget_message {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(m)) => Ok(Some(m.clone())),
            Some(other) => Err(ApiError::invalid(
                "thinking_budget_message",
                format!("`thinking_budget_message` must be text, not {other}"),
            )),
        }
    }
}

/// The budget that applies, and the closing message: the request's, else the server's.
pub fn budget(
    asked: &BudgetAsked,
    defaults: &ThinkingDefaults,
) -> Result<(Option<usize>, String), ApiError> {
    let budget = match asked.budget()? {
        None => defaults.budget,
        Some(n) => usize::try_from(n).ok(), // -1: no limit
    };
    let message = asked.message()?.unwrap_or_else(|| defaults.message.clone());
    Ok((budget, message))
}

/// The `-1 | N` argument of `--reasoning-budget`.
pub fn parse_default_budget(arg: i64) -> Result<Option<usize>, String> {
    match arg {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| format!("--reasoning-budget {n}: -1 (no limit) or a number of tokens")),
    }
}

/// A thinking model's markers over its vocabulary (its bytes take ~60 ms for 150k tokens: the
/// server builds them while loading a thinking model, not in a request).
pub fn markers(tokenizer: &Tokenizer, tags: ThinkTags) -> Arc<ThoughtMarkers> {
    Arc::new(ThoughtMarkers::new(
        tags.open,
        tags.close,
        tokenizer.token_bytes(),
    ))
}

/// The thought the engine follows for an answer to `prompt_text`, when the model thinks and
/// there is something to follow: a budget, a grammar that must wait for the answer, or a
/// demanded call's opening to write once the thought closes (`opening`).
pub fn thought(
    ready: &Ready,
    in_thought: bool,
    tags: ThinkTags,
    budget: Option<usize>,
    message: &str,
    shaped: bool,
    opening: Option<&str>,
) -> Result<Option<Thought>, ApiError> {
    if budget.is_none() && !shaped && opening.is_none() {
        return Ok(None);
    }
    let encode = |text: &str, what: &str| {
        ready
            .tokenizer
            .encode(text, false)
            .map_err(|e| ApiError::internal(format!("cannot encode {what}: {e}")))
    };
    let markers = ready
        .thought_markers
        .get_or_init(|| markers(&ready.tokenizer, tags))
        .clone();
    let closing = match budget {
        Some(_) => encode(&format!("{message}{}", tags.close), "the thought's close")?,
        None => Vec::new(),
    };
    let thought = Thought::new(markers, in_thought, budget, Arc::new(closing));
    Ok(Some(match opening {
        // The templates put a blank line between a thought and its answer.
        Some(opening) => thought.with_answer_prefix(AnswerPrefix {
            after_bare_close: Arc::new(encode(&format!("\n\n{opening}"), "the call's opening")?),
            after_spaced_close: Arc::new(encode(opening, "the call's opening")?),
        }),
        None => thought,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_budget_replaces_the_server_default() {
        let defaults = ThinkingDefaults {
            budget: Some(12),
            message: " Enough.".into(),
        };
        let none = BudgetAsked::default();
        assert_eq!(
            budget(&none, &defaults).unwrap(),
            (Some(12), " Enough.".into())
        );
        let asked: BudgetAsked = serde_json::from_value(
            json!({"thinking_token_budget": 40, "thinking_budget_message": "!"}),
        )
        .unwrap();
        assert_eq!(budget(&asked, &defaults).unwrap(), (Some(40), "!".into()));
        // llama-server's spelling.
        let asked: BudgetAsked =
            serde_json::from_value(json!({"thinking_budget_tokens": -1})).unwrap();
        assert_eq!(budget(&asked, &defaults).unwrap().0, None);
        for (bad, param) in [
            (
                json!({"thinking_token_budget": -5}),
                "thinking_token_budget",
            ),
            (
                json!({"thinking_budget_tokens": "lots"}),
                "thinking_budget_tokens",
            ),
            (
                json!({"thinking_token_budget": 1, "thinking_budget_tokens": 2}),
                "thinking_budget_tokens",
            ),
            (
                json!({"thinking_budget_message": 3}),
                "thinking_budget_message",
            ),
        ] {
            let asked: BudgetAsked = serde_json::from_value(bad.clone()).unwrap();
            let e = budget(&asked, &defaults).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{bad}");
        }
    }

    #[test]
    fn the_server_default_is_minus_one_or_a_count() {
        assert_eq!(parse_default_budget(-1), Ok(None));
        assert_eq!(parse_default_budget(0), Ok(Some(0)));
        assert!(parse_default_budget(-2).is_err());
    }
}
