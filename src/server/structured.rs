//! Structured outputs: `response_format` `json_object` / `json_schema`, vLLM's guides (regex,
//! choice, lark, schema), and demanded tool calls, become a grammar the sampler follows, so the answer parses (unless `max_tokens` cuts
//! it short: `length`).
use super::error::ApiError;
use super::guide::{Guide, GuideGrammar};
use super::harmony;
use super::state::{Ready, SharedState};
use super::tools::LazyCalls;
use crate::engine::grammar::{
    AddressedMessages, BareOpening, Constraint, GrammarCompiler, LazyGrammar, Trigger,
};
use serde_json::Value;

/// Run grammar work off the async workers: the first use builds the vocabulary trie (~1 s for
/// a 150k vocabulary) and a large schema takes a while to compile.
/// `wanted: false` skips the thread hop for requests without a grammar.
pub async fn compile<F>(
    state: &SharedState,
    wanted: bool,
    work: F,
) -> Result<Option<Constraint>, ApiError>
where
    F: FnOnce(&Ready) -> Result<Option<Constraint>, ApiError> + Send + 'static,
{
    if !wanted {
        return Ok(None);
    }
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(state.ready()?))
        .await
        .map_err(|e| ApiError::internal(format!("grammar compilation failed: {e}")))?
}

/// The model's grammar compiler, built on first use (a byte trie of the whole vocabulary).
pub fn compiler(ready: &Ready) -> Result<&GrammarCompiler, ApiError> {
    let built = ready.grammar.get_or_init(|| {
        let eos = ready
            .eos_ids
            .first()
            .copied()
            .ok_or("the model has no end-of-sequence token")?;
        GrammarCompiler::new(ready.tokenizer.clone(), eos, ready.limits.vocab)
    });
    match built {
        Ok(c) => Ok(c),
        Err(e) => Err(ApiError::bad_request(format!(
            "constrained sampling is unavailable for this model: {e}"
        ))),
    }
}

/// The constraint `response_format` asks for (`None` for text).
pub fn response_format(
    ready: &Ready,
    format: Option<&Value>,
) -> Result<Option<Constraint>, ApiError> {
    let Some(format) = format else {
        return Ok(None);
    };
    let invalid = |message: String| ApiError::invalid("response_format", message);
    let schema = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(None),
        Some("json_object") => serde_json::json!({"type": "object"}),
        Some("json_schema") => {
            let spec = format.get("json_schema").ok_or_else(|| {
                invalid("`json_schema` needs {\"name\": ..., \"schema\": {...}}".into())
            })?;
            match spec.get("schema") {
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(_) => return Err(invalid("`json_schema.schema` must be an object".into())),
                // OpenAI allows a schema-less json_schema: any JSON object.
                None => serde_json::json!({"type": "object"}),
            }
        }
        _ => {
            return Err(invalid(
                "`response_format.type` must be text, json_object or json_schema".into(),
            ))
        }
    };
    compiler(ready)?
        .json_schema(schema)
        .map(Some)
        .map_err(|e| invalid(format!("the schema cannot be followed: {e}")))
}

/// The constraint on the answer's text: `response_format`, or one of vLLM's guides
/// (`guide.rs`); both at once is a 400.
pub fn answer_format(
    ready: &Ready,
    format: Option<&Value>,
    guide: Option<&Guide>,
) -> Result<Option<Constraint>, ApiError> {
    let Some(guide) = guide else {
        return response_format(ready, format);
    };
    let format_type = format.and_then(|f| f.get("type")).and_then(Value::as_str);
    if format_type.is_some_and(|t| t != "text") {
        return Err(guide.invalid(format!(
            "`{}` and a `response_format` both shape the answer; send one",
            guide.param
        )));
    }
    let compiler = compiler(ready)?;
    let compiled = match guide.grammar() {
        GuideGrammar::Schema(schema) => compiler.json_schema(schema),
        GuideGrammar::Regex(rx) => compiler.regex(&rx),
        GuideGrammar::Lark(grammar) => compiler.lark(grammar),
    };
    compiled.map(Some).map_err(|e| {
        // llguidance quotes the grammar: a long one would fill the error.
        let e: String = e.chars().take(600).collect();
        guide.invalid(format!("`{}` cannot be followed: {e}", guide.param))
    })
}

/// The constraint of a demanded tool call (`tools::format::ToolFormat::call_grammar`).
pub fn tool_call(ready: &Ready, grammar: String) -> Result<Constraint, ApiError> {
    compiler(ready)?.lark(grammar).map_err(tools_unfollowable)
}

/// The lazy constraint of `tool_choice: "auto"`: free text until the model opens a call (with
/// its format's opening token, as the answer's bare call object, or as a harmony message to a
/// function), then the call's grammar to the end of the call. `None` where no way in exists
/// for this vocabulary or the schemas cannot be compiled (the calls are then read as written).
pub fn lazy_tool_call(ready: &Ready, calls: LazyCalls) -> Result<Option<Constraint>, ApiError> {
    let token = |text: &str| ready.tokenizer.token_id(text);
    let spec = match calls {
        LazyCalls::Blocks(format, grammars) => LazyGrammar {
            // Held from the start even where the trigger is no one token of the vocabulary.
            opened: grammars.after_trigger.clone().filter(|_| grammars.at_start),
            // One token where the vocabulary has it as one, else its text.
            after_trigger: grammars.after_trigger.map(|grammar| {
                let text = format.trigger_text();
                let trigger =
                    token(text).map_or_else(|| Trigger::Text(text.into()), Trigger::Token);
                (trigger, grammar)
            }),
            rearm: grammars.rearm,
            bare: grammars.bare.map(|grammar| BareOpening {
                grammar,
                marker: format.bare_call_marker().to_string(),
            }),
            addressed: None,
        },
        // Harmony's markers are tokens of gpt-oss's vocabulary; elsewhere there is no header
        // to watch.
        LazyCalls::Harmony(grammars) => LazyGrammar {
            after_trigger: None,
            rearm: true,
            bare: None,
            opened: None,
            addressed: token(harmony::MESSAGE).map(|body_opening| AddressedMessages {
                body_opening,
                body_ends: harmony::ENDS.iter().filter_map(|e| token(e)).collect(),
                grammars,
                recipient: harmony::recipient,
            }),
        },
    };
    if spec.after_trigger.is_none()
        && spec.bare.is_none()
        && spec.addressed.is_none()
        && spec.opened.is_none()
    {
        return Ok(None);
    }
    // Under auto a grammar is a help, not a demand: a schema llguidance cannot follow leaves
    // the calls free (read as written, as before lazy grammars) instead of refusing the request.
    match compiler(ready)?.lazy(spec) {
        Ok(constraint) => Ok(Some(constraint)),
        Err(e) => {
            tracing::warn!(error = %e, "tool schemas cannot be followed; calls are left free");
            Ok(None)
        }
    }
}

fn tools_unfollowable(e: String) -> ApiError {
    ApiError::invalid(
        "tools",
        format!("the tools' schemas cannot be followed: {e}"),
    )
}

/// A finished grammar allows only the end token: ignoring it would repeat it.
pub fn ignore_eos_conflict() -> ApiError {
    ApiError::invalid(
        "ignore_eos",
        "`ignore_eos` cannot be combined with a JSON `response_format` or a demanded tool call",
    )
}
