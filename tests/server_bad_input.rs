//! Bad input to the real server: every case gets an OpenAI-shaped error (Ollama's on its
//! `/api/*` endpoints) with the right 4xx, and the server keeps serving (a normal request
//! works after all of them).
mod common;

use common::server::Server;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};

const KEY: &str = "sk-test-key";

struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    content_type: Option<&'static str>,
    auth: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// Text the error message must contain.
    needle: &'static str,
}

fn case(
    name: &'static str,
    path: &'static str,
    body: Value,
    status: u16,
    needle: &'static str,
) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        path,
        content_type: Some("application/json"),
        auth: Some(KEY),
        body: body.to_string().into_bytes(),
        status,
        needle,
    }
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "qwen2.5-0.5b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

fn cases() -> Vec<Case> {
    let long_prompt = "word ".repeat(700);
    // Nested inside a field the server ignores, so only the parser's depth limit can stop it.
    let nested = format!(
        "{{\"model\": \"qwen2.5-0.5b\", \"metadata\": {}{}}}",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let chat_path = "/v1/chat/completions";
    let mut v = vec![
        Case {
            body: b"{\"messages\": [".to_vec(),
            ..case(
                "malformed JSON",
                chat_path,
                json!({}),
                400,
                "malformed JSON",
            )
        },
        Case {
            content_type: Some("text/plain"),
            ..case(
                "wrong content type",
                chat_path,
                chat(json!({})),
                415,
                "Content-Type",
            )
        },
        Case {
            content_type: None,
            ..case(
                "no content type",
                chat_path,
                chat(json!({})),
                415,
                "Content-Type",
            )
        },
        case(
            "missing messages",
            chat_path,
            json!({"model": "qwen2.5-0.5b"}),
            400,
            "messages",
        ),
        case(
            "missing prompt",
            "/v1/completions",
            json!({"model": "qwen2.5-0.5b"}),
            400,
            "prompt",
        ),
        case(
            "messages of the wrong type",
            chat_path,
            json!({"messages": "hello"}),
            400,
            "invalid",
        ),
        case(
            "max_tokens of the wrong type",
            chat_path,
            chat(json!({"max_tokens": "many"})),
            400,
            "invalid",
        ),
        case(
            "unknown model",
            chat_path,
            chat(json!({"model": "gpt-9"})),
            404,
            "does not exist",
        ),
        case(
            "empty messages",
            chat_path,
            chat(json!({"messages": []})),
            400,
            "must not be empty",
        ),
        case(
            "unknown role",
            chat_path,
            chat(json!({"messages": [{"role": "wizard", "content": "hi"}]})),
            400,
            "unknown role",
        ),
        case(
            "max_tokens zero",
            chat_path,
            chat(json!({"max_tokens": 0})),
            400,
            "at least 1",
        ),
        case(
            "max_tokens negative",
            "/v1/completions",
            json!({"prompt": "hi", "max_tokens": -3}),
            400,
            "at least 1",
        ),
        case(
            "max_tokens beyond the context",
            chat_path,
            chat(json!({"max_tokens": 100000})),
            400,
            "context",
        ),
        case(
            "prompt longer than the context",
            "/v1/completions",
            json!({"prompt": long_prompt, "max_tokens": 1}),
            400,
            "context",
        ),
        case(
            "temperature out of range",
            chat_path,
            chat(json!({"temperature": 3.5})),
            400,
            "temperature",
        ),
        case(
            "top_p out of range",
            chat_path,
            chat(json!({"top_p": 0})),
            400,
            "top_p",
        ),
        case(
            "presence_penalty out of range",
            chat_path,
            chat(json!({"presence_penalty": 2.5})),
            400,
            "presence_penalty",
        ),
        case(
            "frequency_penalty out of range",
            chat_path,
            chat(json!({"frequency_penalty": -9})),
            400,
            "frequency_penalty",
        ),
        case(
            "repetition_penalty out of range",
            chat_path,
            chat(json!({"repetition_penalty": 0})),
            400,
            "repetition_penalty",
        ),
        case(
            "n too large",
            chat_path,
            chat(json!({"n": 1000})),
            400,
            "`n`",
        ),
        case(
            "stop list too long",
            chat_path,
            chat(json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
            "stop",
        ),
        case(
            "empty stop string",
            chat_path,
            chat(json!({"stop": [""]})),
            400,
            "stop",
        ),
        case(
            "logit_bias with a bad value",
            chat_path,
            chat(json!({"logit_bias": {"hello": true}})),
            400,
            "logit_bias",
        ),
        case(
            "unknown reasoning_format",
            chat_path,
            chat(json!({"reasoning_format": "deepseek-legacy"})),
            400,
            "reasoning_format",
        ),
        case(
            "logit_bias pair of three",
            chat_path,
            chat(json!({"logit_bias": [[1, 2, 3]]})),
            400,
            "logit_bias",
        ),
        case(
            "logit_bias out of range",
            chat_path,
            chat(json!({"logit_bias": {"42": 500}})),
            400,
            "logit_bias",
        ),
        case(
            "logit_bias token out of vocabulary",
            chat_path,
            chat(json!({"logit_bias": {"99999999": 1}})),
            400,
            "vocabulary",
        ),
        case(
            "top_logprobs too large",
            chat_path,
            chat(json!({"logprobs": true, "top_logprobs": 50})),
            400,
            "top_logprobs",
        ),
        case(
            "top_logprobs without logprobs",
            chat_path,
            chat(json!({"top_logprobs": 3})),
            400,
            "top_logprobs",
        ),
        case(
            "completions logprobs too large",
            "/v1/completions",
            json!({"prompt": "hi", "logprobs": 9}),
            400,
            "logprobs",
        ),
        case(
            "prompt token out of vocabulary",
            "/v1/completions",
            json!({"prompt": [1, 2, 99999999]}),
            400,
            "vocabulary",
        ),
        case(
            "NUL byte in content",
            chat_path,
            chat(json!({"messages": [{"role": "user", "content": "a\u{0000}b"}]})),
            400,
            "NUL",
        ),
        case(
            "image content part",
            chat_path,
            chat(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            ),
            400,
            "not supported",
        ),
        Case {
            body: nested.into_bytes(),
            ..case("deeply nested JSON", chat_path, json!({}), 400, "recursion")
        },
        Case {
            body: b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(),
            ..case("invalid UTF-8", chat_path, json!({}), 400, "UTF-8")
        },
        Case {
            body: vec![b' '; 300_000],
            ..case("body too large", chat_path, json!({}), 413, "too large")
        },
        Case {
            auth: None,
            ..case(
                "missing API key",
                chat_path,
                chat(json!({})),
                401,
                "API key",
            )
        },
        Case {
            auth: Some("sk-wrong"),
            ..case("wrong API key", chat_path, chat(json!({})), 401, "API key")
        },
        Case {
            method: reqwest::Method::GET,
            ..case(
                "unknown route",
                "/v1/embeddings/nope",
                json!({}),
                404,
                "no route",
            )
        },
        Case {
            method: reqwest::Method::GET,
            ..case(
                "wrong method",
                chat_path,
                json!({}),
                405,
                "method not allowed",
            )
        },
        case(
            "echo with suffix",
            "/v1/completions",
            json!({"prompt": "hi", "echo": true, "suffix": "x"}),
            400,
            "echo",
        ),
        case(
            "no tokens without echo",
            "/v1/completions",
            json!({"prompt": "hi", "max_tokens": 0}),
            400,
            "at least 1",
        ),
        case(
            "more prompts than the queue holds",
            "/v1/completions",
            json!({"prompt": vec!["a"; 300]}),
            400,
            "300 prompts x n 1 = 300 choices",
        ),
        case(
            "an empty prompt in a batch",
            "/v1/completions",
            json!({"prompt": [[1], []]}),
            400,
            "prompt 1 is empty",
        ),
        case(
            "detokenize out of vocabulary",
            "/detokenize",
            json!({"tokens": [-1]}),
            400,
            "vocabulary",
        ),
        case(
            "tokenize without input",
            "/tokenize",
            json!({}),
            400,
            "exactly one",
        ),
        case(
            "unknown response_format",
            chat_path,
            chat(json!({"response_format": {"type": "yaml"}})),
            400,
            "json_schema",
        ),
        case(
            "tool of another type",
            chat_path,
            chat(json!({"tools": [{"type": "retrieval"}]})),
            400,
            "type `function`",
        ),
        case(
            "function name with spaces",
            chat_path,
            chat(json!({"tools": [{"type": "function", "function": {"name": "get weather"}}]})),
            400,
            "is invalid",
        ),
        case(
            "tool_choice names a function not in tools",
            chat_path,
            chat(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                        "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            ),
            400,
            "not in `tools`",
        ),
        case(
            "JSON response_format with a demanded call",
            chat_path,
            chat(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                        "tool_choice": "required", "response_format": {"type": "json_object"}}),
            ),
            400,
            "exclude each other",
        ),
        case(
            "ignore_eos with a grammar",
            chat_path,
            chat(json!({"ignore_eos": true, "response_format": {"type": "json_object"}})),
            400,
            "ignore_eos",
        ),
        case(
            "chat_template_kwargs overriding messages",
            chat_path,
            chat(json!({"chat_template_kwargs": {"messages": []}})),
            400,
            "set by the server",
        ),
        case(
            "legacy functions",
            chat_path,
            chat(json!({"functions": [{"name": "f", "parameters": {}}]})),
            400,
            "send `tools`",
        ),
        case(
            "audio output",
            chat_path,
            chat(json!({"modalities": ["text", "audio"]})),
            400,
            "`audio` is not supported",
        ),
        case(
            "best_of beyond n",
            "/v1/completions",
            json!({"prompt": "hi", "best_of": 3}),
            400,
            "best_of",
        ),
        case(
            "responses input longer than the context",
            "/v1/responses",
            json!({"input": long_prompt, "max_output_tokens": 1}),
            400,
            "context",
        ),
        case(
            "embeddings input longer than the context",
            "/v1/embeddings",
            json!({"input": long_prompt}),
            400,
            "context",
        ),
        case(
            "embeddings of an empty list",
            "/v1/embeddings",
            json!({"input": []}),
            400,
            "empty list",
        ),
        case(
            "embeddings of an empty text",
            "/v1/embeddings",
            json!({"input": ["fine", ""]}),
            400,
            "empty",
        ),
        case(
            "embeddings of a token out of the vocabulary",
            "/v1/embeddings",
            json!({"input": [[1, 2], [-3]]}),
            400,
            "token id -3",
        ),
        case(
            "embeddings input of the wrong type",
            "/v1/embeddings",
            json!({"input": {"text": "hi"}}),
            400,
            "`input` must be a string",
        ),
        case(
            "embeddings in an unknown encoding",
            "/v1/embeddings",
            json!({"input": "hi", "encoding_format": "int8"}),
            400,
            "encoding_format",
        ),
        case(
            "embeddings of more dimensions than the model's",
            "/v1/embeddings",
            json!({"input": "hi", "dimensions": 100000}),
            400,
            "dimensions",
        ),
        case(
            "embeddings without input",
            "/v1/embeddings",
            json!({"model": "qwen2.5-0.5b"}),
            400,
            "input",
        ),
        case(
            "a prediction of the wrong type",
            "/v1/chat/completions",
            chat(json!({"prediction": {"type": "content", "content": 5}})),
            400,
            "prediction",
        ),
        case(
            "ollama chat with malformed JSON options",
            "/api/chat",
            json!({"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": "hot"}}),
            400,
            "temperature",
        ),
        case(
            "ollama chat with an image",
            "/api/chat",
            json!({"messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]}),
            400,
            "images",
        ),
        case(
            "ollama generate with a template of its own",
            "/api/generate",
            json!({"prompt": "hi", "template": "{{ .Prompt }}"}),
            400,
            "template",
        ),
        case(
            "ollama embed of the wrong type",
            "/api/embed",
            json!({"input": 5}),
            400,
            "input",
        ),
        case(
            "a negative thinking budget",
            chat_path,
            chat(json!({"thinking_token_budget": -2})),
            400,
            "thinking_token_budget",
        ),
        case(
            "a thinking budget that is not a number",
            chat_path,
            chat(json!({"thinking_budget_tokens": "lots"})),
            400,
            "thinking_budget_tokens",
        ),
        case(
            "anthropic thinking budget below zero",
            "/v1/messages",
            json!({"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
                   "thinking": {"type": "enabled", "budget_tokens": -1}}),
            400,
            "budget_tokens",
        ),
        case(
            "a LoRA load on a server that does not allow them",
            "/v1/load_lora_adapter",
            json!({"lora_name": "x", "lora_path": "/tmp"}),
            403,
            "--allow-runtime-lora",
        ),
        case(
            "a LoRA load without a name",
            "/v1/load_lora_adapter",
            json!({"lora_path": "/tmp"}),
            400,
            "lora_name",
        ),
        case(
            "conversation with metadata that is not text",
            "/v1/conversations",
            json!({"metadata": {"n": 1}}),
            400,
            "metadata",
        ),
        case(
            "conversation with an item of an unknown type",
            "/v1/conversations",
            json!({"items": [{"type": "computer_call"}]}),
            400,
            "computer_call",
        ),
        case(
            "responses joining an unknown conversation",
            "/v1/responses",
            json!({"input": "hi", "conversation": "conv_nope"}),
            400,
            "conv_nope",
        ),
        case(
            "responses input of the wrong type",
            "/v1/responses",
            json!({"input": 42}),
            400,
            "input",
        ),
        case(
            "responses input item of an unknown type",
            "/v1/responses",
            json!({"input": [{"type": "computer_call_output", "call_id": "c"}]}),
            400,
            "`computer_call_output` is not supported",
        ),
        case(
            "responses function_call_output without output",
            "/v1/responses",
            json!({"input": [{"type": "function_call_output", "call_id": "c"}]}),
            400,
            "string or a list of text parts",
        ),
        case(
            "responses chat field",
            "/v1/responses",
            json!({"input": "hi", "max_tokens": 4}),
            400,
            "max_output_tokens",
        ),
        Case {
            auth: None,
            ..case(
                "responses without the API key",
                "/v1/responses",
                json!({"input": "hi"}),
                401,
                "API key",
            )
        },
        case(
            "tool_choice without tools",
            chat_path,
            chat(json!({"tool_choice": "required"})),
            400,
            "non-empty `tools`",
        ),
        case(
            "tool calls on a user message",
            chat_path,
            chat(json!({"messages": [{"role": "user", "content": "hi",
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]})),
            400,
            "only assistant messages",
        ),
        case(
            "tool call arguments that are not JSON",
            chat_path,
            chat(
                json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{city: Paris"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "sunny"}]}),
            ),
            400,
            "not valid JSON",
        ),
    ];
    for c in &mut v {
        if c.method == reqwest::Method::GET {
            c.body.clear();
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_and_the_server_stays_up() {
    let s = Server::start(
        "qwen2.5-0.5b",
        &[
            "--api-key",
            KEY,
            "--body-limit",
            "200000",
            "--max-model-len",
            "512",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let all = cases();
    assert!(all.len() >= 25);
    let mut failures = Vec::new();
    for c in all {
        let mut r = client
            .request(c.method.clone(), s.url(c.path))
            .body(c.body.clone());
        if let Some(ct) = c.content_type {
            r = r.header(CONTENT_TYPE, ct);
        }
        if let Some(k) = c.auth {
            r = r.header(AUTHORIZATION, format!("Bearer {k}"));
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let err = &body["error"];
        // Ollama's endpoints answer in its shape: the message alone; Anthropic's in its own.
        let (message, shaped) = match c.path {
            p if p.starts_with("/api/") => (err.as_str().unwrap_or(""), err.is_string()),
            p if p.starts_with("/v1/messages") => (
                err["message"].as_str().unwrap_or(""),
                body["type"] == "error" && err["type"].is_string(),
            ),
            _ => (
                err["message"].as_str().unwrap_or(""),
                err.get("type").is_some_and(|t| t.is_string())
                    && err.get("param").is_some()
                    && err.get("code").is_some(),
            ),
        };
        if status != c.status || !message.contains(c.needle) || !shaped {
            failures.push(format!(
                "{}: got {status} {body}, want {} containing `{}`",
                c.name, c.status, c.needle
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Each refusal has its log line, naming the path and the status.
    let refused = s.log_lines("request refused");
    assert!(refused.len() >= 25, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("path=/v1/chat/completions") && l.contains("status=401")),
        "{refused:?}"
    );

    // /health and /metrics stay open without a key; the API needs it; the server still works.
    for open in ["/health", "/v1/health"] {
        assert_eq!(client.get(s.url(open)).send().await.unwrap().status(), 200);
    }
    assert_eq!(
        client.get(s.url("/models")).send().await.unwrap().status(),
        401,
        "llama-server's name for /v1/models needs the key too"
    );
    assert_eq!(
        client.get(s.url("/metrics")).send().await.unwrap().status(),
        200
    );
    let ok = client
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&chat(json!({"temperature": 0})))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let s = Server::start(
        "gemma3-270m",
        &["--max-num-seqs", "1", "--max-waiting", "1"],
    )
    .await;
    let client = reqwest::Client::new();
    let body = json!({"prompt": "The", "max_tokens": 64, "ignore_eos": true, "stream": true});
    // One running and one waiting fill the server; keep every accepted stream open and send
    // more until one is refused (whether the engine has admitted the first yet or not).
    let mut accepted = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let c = client
            .post(s.url("/v1/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if c.status() == 429 {
            refused = Some(c);
            break;
        }
        assert_eq!(c.status(), 200);
        accepted.push(c);
    }
    assert!(
        !accepted.is_empty() && accepted.len() <= 2,
        "{} accepted before a 429",
        accepted.len()
    );
    let c = refused.expect("no 429 with a full queue");
    assert_eq!(c.headers()["retry-after"], "1");
    let v: Value = c.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    drop(accepted);
    assert!(s.metric("candor:requests_rejected_total").await >= 1.0);
}
