//! One line of a batch file in OpenAI's Batch API format (what `vllm run-batch` reads and
//! writes): `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}` in,
//! `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}` out,
//! or `"response": null` and `"error": {"code", "message"}` for a line that could not be sent.
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The endpoints a batch line may name: OpenAI's batchable ones this server has, and vLLM's
/// scoring and classifying ones.
pub const URLS: [&str; 7] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/score",
    "/v1/rerank",
    "/v1/classify",
];

/// A line that can be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub custom_id: String,
    pub url: String,
    pub body: Value,
}

/// Why a line was not sent: its `custom_id` when it has one, OpenAI's error code, a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub custom_id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    custom_id: String,
    method: String,
    url: String,
    body: Value,
}

/// Line `number` (from 1) as the file holds it: one that is not UTF-8 is refused as not JSON,
/// alone (the lines around it run).
pub fn parse_bytes(
    bytes: &[u8],
    number: usize,
    seen: &mut HashMap<String, usize>,
) -> Result<Request, Refused> {
    let text = std::str::from_utf8(bytes).map_err(|e| Refused {
        custom_id: None,
        code: "invalid_json_line",
        message: format!("line {number} is not UTF-8 text: {e}"),
    })?;
    parse(text, number, seen)
}

/// Read line `number` (from 1), refusing a `custom_id` an earlier line in `seen` used (as
/// OpenAI does: results are matched to requests by it).
pub fn parse(
    text: &str,
    number: usize,
    seen: &mut HashMap<String, usize>,
) -> Result<Request, Refused> {
    let value: Value = serde_json::from_str(text).map_err(|e| Refused {
        custom_id: None,
        code: "invalid_json_line",
        message: format!("line {number} is not JSON: {e}"),
    })?;
    // The id first, so that every later refusal can name it.
    let custom_id = value
        .get("custom_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let refused = |code: &'static str, message: String| Refused {
        custom_id: custom_id.clone(),
        code,
        message,
    };
    let sent: Sent = serde_json::from_value(value).map_err(|e| {
        refused(
            "invalid_request",
            format!(
                "line {number}: {e} (a line is {{\"custom_id\", \"method\", \"url\", \"body\"}})"
            ),
        )
    })?;
    if sent.method != "POST" {
        return Err(refused(
            "invalid_method",
            format!(
                "line {number}: method `{}`: batch requests are POST",
                sent.method
            ),
        ));
    }
    if !URLS.contains(&sent.url.as_str()) {
        return Err(refused(
            "invalid_url",
            format!(
                "line {number}: url `{}` cannot be batched (one of: {})",
                sent.url,
                URLS.join(", ")
            ),
        ));
    }
    if !sent.body.is_object() {
        return Err(refused(
            "invalid_request",
            format!("line {number}: `body` must be a JSON object"),
        ));
    }
    if sent.body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(refused(
            "invalid_request",
            format!("line {number}: `stream` cannot be used in a batch: each answer is one line"),
        ));
    }
    if let Some(first) = seen.insert(sent.custom_id.clone(), number) {
        seen.insert(sent.custom_id.clone(), first);
        return Err(refused(
            "duplicate_custom_id",
            format!(
                "line {number}: custom_id `{}` is line {first}'s already",
                sent.custom_id
            ),
        ));
    }
    Ok(Request {
        custom_id: sent.custom_id,
        url: sent.url,
        body: sent.body,
    })
}

/// The output line of a request the server answered (any status: an error answer's body is
/// the error JSON, as OpenAI writes it).
pub fn answered(id: &str, custom_id: &str, status: u16, request_id: &str, body: Value) -> Value {
    json!({
        "id": id,
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": null,
    })
}

/// The output line of a line that was not sent.
pub fn refused(id: &str, why: &Refused) -> Value {
    json!({
        "id": id,
        "custom_id": why.custom_id,
        "response": null,
        "error": {"code": why.code, "message": why.message},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<Request, Refused> {
        parse(text, 1, &mut HashMap::new())
    }

    #[test]
    fn reads_openai_lines_and_names_what_is_wrong() {
        let ok = one(r#"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}"#)
            .unwrap();
        assert_eq!(
            (ok.custom_id.as_str(), ok.url.as_str()),
            ("a", "/v1/chat/completions")
        );
        assert_eq!(ok.body, json!({"model": "m"}));
        let code = |text: &str| one(text).unwrap_err().code;
        assert_eq!(code("{"), "invalid_json_line");
        assert_eq!(
            code(r#"{"custom_id": "a", "method": "POST", "url": "/v1/completions"}"#),
            "invalid_request"
        );
        assert_eq!(
            code(r#"{"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": {}}"#),
            "invalid_method"
        );
        assert_eq!(
            code(r#"{"custom_id": "a", "method": "POST", "url": "/metrics", "body": {}}"#),
            "invalid_url"
        );
        assert_eq!(
            code(r#"{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": []}"#),
            "invalid_request"
        );
        let streamed = one(r#"{"custom_id": "s", "method": "POST", "url": "/v1/completions", "body": {"stream": true}}"#)
            .unwrap_err();
        assert_eq!(streamed.custom_id.as_deref(), Some("s"));
        assert!(streamed.message.contains("stream"), "{}", streamed.message);
    }

    #[test]
    fn a_custom_id_is_used_once() {
        let mut seen = HashMap::new();
        let line = r#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}"#;
        assert!(parse(line, 1, &mut seen).is_ok());
        let again = parse(line, 4, &mut seen).unwrap_err();
        assert_eq!(again.code, "duplicate_custom_id");
        assert!(again.message.contains("line 1"), "{}", again.message);
        let third = parse(line, 5, &mut seen).unwrap_err();
        assert!(
            third.message.contains("line 1"),
            "the first keeps it: {}",
            third.message
        );
    }

    #[test]
    fn output_lines_are_openais() {
        let out = answered("batch_req_1", "a", 200, "chatcmpl-1", json!({"x": 1}));
        assert_eq!(out["response"]["status_code"], 200);
        assert_eq!(out["error"], Value::Null);
        let why = Refused {
            custom_id: None,
            code: "invalid_json_line",
            message: "m".into(),
        };
        let out = refused("batch_req_2", &why);
        assert_eq!(
            (&out["response"], &out["custom_id"]),
            (&Value::Null, &Value::Null)
        );
        assert_eq!(out["error"]["code"], "invalid_json_line");
    }
}
