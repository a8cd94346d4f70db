//! `/v1/messages` (Anthropic's Messages API) on the real server: each request answers as the
//! chat request it means (same tokens, same text), whole or as Anthropic's event stream;
//! calls are `tool_use` blocks, their results go back as `tool_result` blocks, stop sequences
//! are named, and errors and keys take Anthropic's shapes.
mod common;

use common::server::Server;
use common::weather_call_chat;
use serde_json::{json, Value};

const KEY: &str = "sk-messages-test";

/// POST with Anthropic's key header: the status and the JSON answer, or the body as text.
async fn call(s: &Server, path: &str, body: &Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(s.url(path))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

async fn call_json(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    let (st, text) = call(s, path, body).await;
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn chat(s: &Server, body: &Value) -> Value {
    let r = reqwest::Client::new()
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .expect("content")
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap().to_string())
        .collect()
}

/// The events of a streamed message: each named after its `type`.
async fn events(s: &Server, body: &Value) -> Vec<Value> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let (st, text) = call(s, "/v1/messages", &body).await;
    assert_eq!(st, 200, "{text}");
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_string());
        } else if let Some(data) = line.strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
            assert_eq!(name.take().as_deref(), event["type"].as_str(), "{data}");
            out.push(event);
        }
    }
    out
}

fn weather() -> Value {
    json!({"name": "get_weather", "description": "Get the current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_answer_as_the_chat_request_they_mean() {
    let s = Server::start("qwen2.5-0.5b", &["--api-key", KEY]).await;

    // A conversation through a call and its result, as messages and as chat.
    let conversation = json!({
        "model": "qwen2.5-0.5b", "max_tokens": 24, "temperature": 0,
        "system": "Answer in one short sentence.",
        "tools": [weather()], "tool_choice": {"type": "none"},
        "messages": [
            {"role": "user", "content": "What is the weather like in Paris today?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"temperature_c\": 21, \"sky\": \"sunny\"}"}]},
        ],
    });
    let want = chat(&s, &weather_call_chat("toolu_1", "{\"city\":\"Paris\"}")).await;
    let (st, got) = call_json(&s, "/v1/messages", &conversation).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["type"], "message");
    assert!(got["id"].as_str().unwrap().starts_with("msg_"), "{got}");
    assert_eq!(
        text_of(&got),
        want["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let usage = &got["usage"];
    assert_eq!(
        usage["input_tokens"].as_u64().unwrap()
            + usage["cache_read_input_tokens"].as_u64().unwrap(),
        want["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(usage["output_tokens"], want["usage"]["completion_tokens"]);
    let reason = want["choices"][0]["finish_reason"].as_str().unwrap();
    assert_eq!(
        got["stop_reason"],
        if reason == "length" {
            "max_tokens"
        } else {
            "end_turn"
        }
    );
    // count_tokens renders the same prompt.
    let (st, count) = call_json(&s, "/v1/messages/count_tokens", &conversation).await;
    assert_eq!(st, 200, "{count}");
    assert_eq!(count["input_tokens"], want["usage"]["prompt_tokens"]);

    // Streamed: message_start first, the text in deltas, the reason and usage at the end.
    let stream = events(&s, &conversation).await;
    assert_eq!(stream[0]["type"], "message_start");
    let deltas: String = stream
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, text_of(&got));
    let end = &stream[stream.len() - 2];
    assert_eq!(end["type"], "message_delta");
    assert_eq!(end["delta"]["stop_reason"], got["stop_reason"]);
    assert_eq!(end["usage"]["output_tokens"], got["usage"]["output_tokens"]);
    assert_eq!(stream.last().unwrap()["type"], "message_stop");

    // A demanded call is a tool_use block, streamed as its input's JSON.
    let ask = json!({"max_tokens": 60, "temperature": 0, "tools": [weather()],
                     "tool_choice": {"type": "any"},
                     "messages": [{"role": "user", "content": "What's the weather like in Paris today?"}]});
    let (st, v) = call_json(&s, "/v1/messages", &ask).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let uses: Vec<&Value> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 1, "{v}");
    assert_eq!(uses[0]["name"], "get_weather");
    assert_eq!(uses[0]["input"]["city"], "Paris", "{v}");
    let stream = events(&s, &ask).await;
    let partial: String = stream
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        uses[0]["input"]
    );

    // A stop sequence is named.
    let (st, v) = call_json(
        &s,
        "/v1/messages",
        &json!({"max_tokens": 30, "temperature": 0, "stop_sequences": [" 5"],
                "messages": [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
    assert_eq!(v["stop_sequence"], " 5");
    assert!(!text_of(&v).contains(" 5"), "{v}");

    // Errors in Anthropic's shape; the key by either header.
    for (body, status) in [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            400,
        ),
        (
            json!({"max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            400,
        ),
        (
            json!({"max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]}),
            400,
        ),
        (
            json!({"model": "claude-x", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
            404,
        ),
    ] {
        let (st, v) = call_json(&s, "/v1/messages", &body).await;
        assert_eq!(st, status, "{body}: {v}");
        assert_eq!(v["type"], "error", "{v}");
        assert!(
            v["error"]["type"].is_string() && v["error"]["message"].is_string(),
            "{v}"
        );
    }
    let r = reqwest::Client::new()
        .post(s.url("/v1/messages"))
        .json(&json!({"max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error", "{v}");
}
