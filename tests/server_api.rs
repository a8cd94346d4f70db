//! The real server over HTTP: chat and text completions, streaming, stop strings, n, logprobs,
//! tokenize/detokenize, models and metrics.
mod common;

use common::server::Server;
use futures::StreamExt;
use serde_json::{json, Value};

async fn post(s: &Server, path: &str, body: Value) -> (u16, Value) {
    s.post(path, &body).await
}

/// The content deltas of a streamed chat answer (the payloads of `sse`), joined.
fn streamed_content(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

/// `body` with `extra`'s fields set over its own; a null field removes it.
fn with_fields(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("extra fields are an object") {
        match v {
            Value::Null => drop(body.as_object_mut().expect("a JSON object").remove(k)),
            v => body[k] = v.clone(),
        }
    }
    body
}

/// The JSON objects of an SSE response (`[DONE]` left out).
async fn sse_json(s: &Server, path: &str, body: Value) -> Vec<Value> {
    sse(s, path, body)
        .await
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect()
}

/// The `data:` payloads of an SSE response, until `[DONE]`.
async fn sse(s: &Server, path: &str, body: Value) -> Vec<String> {
    let r = reqwest::Client::new()
        .post(s.url(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.expect("body");
    text.lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_api_end_to_end() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;

    // Chat, greedy: the model answers and reports usage.
    let (st, v) = post(&s, "/v1/chat/completions", json!({
        "model": "qwen2.5-0.5b", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 8, "temperature": 0
    })).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    let answer = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("Paris"), "{answer}");
    assert_eq!(v["usage"]["prompt_tokens"], 36);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    // The configuration's fingerprint, the same on every answer of this server.
    let fingerprint = v["system_fingerprint"].as_str().unwrap().to_string();
    assert!(fingerprint.starts_with("fp_"), "{fingerprint}");

    // Prefix cache: a shared system prompt is computed once; the second request takes all of
    // the first's prompt but its last token (whose logits it needs) from the cache, the last
    // partly filled block as a copy.
    let system = "You are a terse assistant for a museum of Roman history. ".repeat(4);
    let ask = |q: &str| {
        json!({
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": q}],
            "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 5
        })
    };
    let hits_before = s.metric("candor:prefix_cache_hits_total").await;
    let (_, first) = post(&s, "/v1/chat/completions", ask("Who founded Rome?")).await;
    let (_, second) = post(&s, "/v1/chat/completions", ask("Who founded Rome?")).await;
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(cached, prompt - 1, "cached {cached} of {prompt}");
    // The cached blocks hold the same keys and values: the next-token distribution agrees with
    // the uncached one up to 8-bit activation rounding (which depends on how rows were batched,
    // as in llama.cpp and vLLM), and the greedy answers agree unless the first token is a tie.
    let top = |v: &Value| -> Vec<(String, f64)> {
        v["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["token"].as_str().unwrap().to_string(),
                    t["logprob"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (top(&first), top(&second));
    for (token, lp) in &a[..2] {
        let other = b.iter().find(|(t, _)| t == token);
        assert!(
            other.is_some_and(|(_, l)| (l - lp).abs() < 0.15),
            "token {token:?} at {lp} uncached, {other:?} cached: {a:?} vs {b:?}"
        );
    }
    if a[0].1 - a[1].1 > 0.15 {
        assert_eq!(
            first["choices"][0]["message"]["content"],
            second["choices"][0]["message"]["content"]
        );
    }
    assert!(s.metric("candor:prefix_cache_hits_total").await >= hits_before + cached as f64);

    // A conversation's next turn takes everything the turn before computed from the cache
    // (its prompt and its answer, to the token, not only whole blocks); `cache_prompt: false`
    // (llama-server's field) computes the whole prompt.
    let mut messages = vec![json!({"role": "user", "content": "Name three rivers of Italy."})];
    let (_, turn) = post(
        &s,
        "/v1/chat/completions",
        json!({"messages": messages, "max_tokens": 12, "temperature": 0}),
    )
    .await;
    let computed = turn["usage"]["prompt_tokens"].as_u64().unwrap()
        + turn["usage"]["completion_tokens"].as_u64().unwrap()
        - 1;
    messages.push(turn["choices"][0]["message"].clone());
    messages.push(json!({"role": "user", "content": "Which is longest?"}));
    let next = json!({"messages": messages, "max_tokens": 2, "temperature": 0});
    let (_, turn) = post(&s, "/v1/chat/completions", next.clone()).await;
    let cached = turn["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= computed,
        "{cached} cached, {computed} computed before: {turn}"
    );
    let (_, turn) = post(
        &s,
        "/v1/chat/completions",
        with_fields(next.clone(), json!({"cache_prompt": false})),
    )
    .await;
    assert_eq!(
        turn["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
        "{turn}"
    );
    // vLLM's `/reset_prefix_cache` empties the cache: the same turn again finds nothing.
    let (st, reset) = post(&s, "/reset_prefix_cache", json!({})).await;
    assert_eq!(st, 200, "{reset}");
    assert!(reset["cached_blocks"].as_u64().unwrap() > 0, "{reset}");
    let (_, turn) = post(&s, "/v1/chat/completions", next).await;
    assert_eq!(
        turn["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
        "{turn}"
    );

    // Chat streaming: role first, content deltas, finish, usage, [DONE].
    let events = sse(&s, "/v1/chat/completions", json!({
        "messages": [{"role": "user", "content": "Count: 1, 2, 3"}], "max_tokens": 5, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true}, "ignore_eos": true
    })).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["system_fingerprint"] == fingerprint.as_str()));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| {
            c["choices"]
                .get(0)
                .is_some_and(|ch| !ch["finish_reason"].is_null())
        })
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "length");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5);

    // Text completion with a stop string: cut before it, never emitted, finish "stop".
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({
            "prompt": "def fibonacci(n):\n", "max_tokens": 40, "temperature": 0, "stop": ["return"]
        }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(!text.contains("return"), "{text:?}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");

    // The same stop string, streamed: identical text.
    let events = sse(&s, "/v1/completions", json!({
        "prompt": "def fibonacci(n):\n", "max_tokens": 40, "temperature": 0, "stop": ["return"], "stream": true
    })).await;
    let streamed: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(streamed, text);

    // n = 3 with a seed: three choices, reproducible when the prompt is computed anew (the
    // prefix cache's copy would leave only its last token to compute, over other kernels).
    let body = json!({"prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.0, "n": 3, "seed": 42,
                      "ignore_eos": true, "cache_prompt": false});
    let (_, a) = post(&s, "/v1/completions", body.clone()).await;
    let (_, b) = post(&s, "/v1/completions", body).await;
    assert_eq!(a["choices"].as_array().unwrap().len(), 3);
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["system_fingerprint"], b["system_fingerprint"]);
    assert_eq!(a["system_fingerprint"], fingerprint.as_str());
    assert_eq!(a["usage"]["completion_tokens"], 18);

    // Greedy picks the same tokens whether the backend picks them (no logprobs: only the
    // argmax leaves the device) or the sampler does from the downloaded logits (logprobs).
    let ask = |logprobs: bool| {
        json!({"messages": [{"role": "user", "content": "Name three colors."}],
               "max_tokens": 12, "temperature": 0, "logprobs": logprobs})
    };
    let (_, picked) = post(&s, "/v1/chat/completions", ask(false)).await;
    let (_, sampled) = post(&s, "/v1/chat/completions", ask(true)).await;
    assert_eq!(
        picked["choices"][0]["message"]["content"],
        sampled["choices"][0]["message"]["content"]
    );
    assert!(sampled["choices"][0]["logprobs"]["content"].is_array());

    // Logprobs: chat top_logprobs and completions logprobs.
    let (st, v) = post(&s, "/v1/chat/completions", json!({
        "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": 2
    })).await;
    assert_eq!(st, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert!(!content.is_empty());
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 2);
    assert!(content[0]["logprob"].as_f64().unwrap() <= 0.0);
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "1, 2, 3,", "max_tokens": 3, "temperature": 0, "logprobs": 3}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .unwrap()
            .len(),
        v["usage"]["completion_tokens"].as_u64().unwrap() as usize
    );

    // Token ids as the prompt.
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": [785, 6722, 315, 9625, 374], "max_tokens": 2, "temperature": 0}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 5);

    // tokenize / detokenize round trip; chat messages through the template.
    let (_, t) = post(&s, "/tokenize", json!({"prompt": "Hello, world!"})).await;
    assert_eq!(t["tokens"], json!([9707, 11, 1879, 0]));
    assert!(t.get("token_strs").is_none(), "{t}");
    // vLLM's `return_token_strs`: the vocabulary's strings (byte-level BPE's `Ġ` for a space).
    let (_, strs) = post(
        &s,
        "/tokenize",
        json!({"prompt": "Hello, world!", "return_token_strs": true}),
    )
    .await;
    assert_eq!(strs["token_strs"], json!(["Hello", ",", "Ġworld", "!"]));
    let (_, d) = post(&s, "/detokenize", json!({"tokens": t["tokens"]})).await;
    assert_eq!(d["prompt"], "Hello, world!");
    let (_, t) = post(
        &s,
        "/tokenize",
        json!({"messages": [{"role": "user", "content": "What is the capital of France?"}]}),
    )
    .await;
    assert_eq!(t["count"], 36);

    // Models and metrics.
    let models: Value = reqwest::get(s.url("/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "qwen2.5-0.5b");
    let (st, one) = s.get("/v1/models/qwen2.5-0.5b").await;
    assert_eq!((st, &one), (200, &models["data"][0]));
    let (st, other) = s.get("/v1/models/org/other-model").await;
    assert_eq!(
        (st, &other["error"]["code"]),
        (404, &json!("model_not_found"))
    );
    assert!(s.metric("candor:generation_tokens_total").await > 0.0);
    assert!(s.metric("candor:prompt_tokens_total").await > 0.0);
    assert_eq!(s.metric("candor:num_requests_running").await, 0.0);
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "candor:time_to_first_token_seconds_bucket",
        "candor:time_per_output_token_seconds_count",
        "candor:e2e_request_latency_seconds_sum",
        "candor:kv_cache_usage_perc",
        "candor:num_requests_waiting",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_streams_free_their_blocks_and_the_server_keeps_answering() {
    // A small step budget keeps each step short on slow CI machines, so cancellations are
    // seen between steps rather than after one long prefill of every prompt.
    let s = Server::start(
        "qwen2.5-0.5b",
        &["--max-num-seqs", "64", "--max-num-batched-tokens", "64"],
    )
    .await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = client.clone();
        let url = s.url("/v1/completions");
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&json!({"prompt": format!("Story number {i}:"), "max_tokens": 200, "ignore_eos": true, "stream": true}))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200);
            let mut body = r.bytes_stream();
            // Read the first chunk, then hang up mid-stream.
            let first = body.next().await;
            assert!(first.is_some());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The engine frees the blocks of dropped requests at its next steps.
    let mut used = f64::MAX;
    for _ in 0..1200 {
        used = s.metric("candor:kv_cache_blocks_used").await;
        if used == 0.0 && s.metric("candor:num_requests_running").await == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let running = s.metric("candor:num_requests_running").await;
    let waiting = s.metric("candor:num_requests_waiting").await;
    assert_eq!(
        used, 0.0,
        "KV blocks still in use after every client left ({running} running, {waiting} waiting)"
    );
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "Hello", "max_tokens": 2}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(s.metric("candor:request_cancelled_total").await >= 1.0);
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            // Described: Command R+'s template writes every parameter's description.
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                     "description": "Temperature unit"}
        }, "required": ["city"]}
    }})
}

/// The arguments of a returned call, parsed.
fn call_arguments(call: &Value) -> Value {
    let text = call["function"]["arguments"].as_str().expect("arguments");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("arguments {text}: {e}"))
}

/// The `delta.tool_calls` items of a stream's chunks, in order.
fn call_deltas(chunks: &[Value]) -> Vec<&Value> {
    chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap())
        .filter_map(|c| c["delta"]["tool_calls"].as_array())
        .flatten()
        .collect()
}

/// A 200 answer that is one call to `function` (a demanded one): the call, its arguments.
fn demanded_call<'a>(st: u16, v: &'a Value, function: &str) -> (&'a Value, Value) {
    assert_eq!(st, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], function, "{v}");
    (call, call_arguments(call))
}

/// A model served with Qwen3-Coder's template (`--chat-template`) writes its calls as
/// `<function=...>` / `<parameter=...>` tags: a demanded call follows the tag grammar, comes
/// back with its arguments typed by the schema (the integer as a number, the zip code as the
/// string it is), streamed as one whole call, and the template shows the call in the next turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_format_tool_calls_over_http() {
    let golden = common::read_json(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/chat_tools/Qwen3-Coder.json"),
    );
    let template = golden["chat_template"].as_str().unwrap().to_string();
    let s = Server::start("qwen2.5-0.5b", &["--chat-template", &template]).await;
    let forecast = json!({"type": "function", "function": {
        "name": "get_forecast",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 20},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "zip": {"type": "string", "enum": ["01310", "75001"]}
        }, "required": ["city", "days", "zip"]}
    }});
    let question = json!([{"role": "user", "content": "Three-day forecast for Paris (75001)?"}]);
    let ask = |extra: Value| {
        let body = json!({"messages": question, "tools": [weather_tool(), forecast],
                          "max_tokens": 80, "temperature": 0});
        with_fields(body, extra)
    };
    let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_forecast"}}});
    let (st, v) = post(&s, "/v1/chat/completions", ask(named.clone())).await;
    let (call, args) = demanded_call(st, &v, "get_forecast");
    assert!(args["city"].is_string(), "{v}");
    assert!(
        args["days"].as_i64().is_some_and(|d| (1..=7).contains(&d)),
        "{v}"
    );
    assert!(
        matches!(args["zip"].as_str(), Some("01310" | "75001")),
        "{v}"
    );

    // Streamed: the same call, whole, in one delta.
    streams_as_one_call(&s, ask(with_fields(named, json!({"stream": true}))), &args).await;

    // Required: any offered function, by the same grammar.
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        ask(json!({"tool_choice": "required"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let name = &v["choices"][0]["message"]["tool_calls"][0]["function"]["name"];
    assert!(name == "get_forecast" || name == "get_weather", "{v}");

    // The call goes back into the history in the model's own tags.
    let history = json!([
        {"role": "user", "content": "Three-day forecast for Paris (75001)?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"}
    ]);
    let (st, t) = post(
        &s,
        "/apply-template",
        json!({"messages": history, "tools": [forecast]}),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let prompt = t["prompt"].as_str().unwrap();
    let days = format!("<parameter=days>\n{}\n</parameter>", args["days"]);
    assert!(
        prompt.contains("<tool_call>\n<function=get_forecast>\n") && prompt.contains(&days),
        "{prompt}"
    );
}

/// `body`, a demanded call, streamed: the call comes whole in one delta, with `args`.
async fn streams_as_one_call(s: &Server, body: Value, args: &Value) {
    let chunks = sse_json(s, "/v1/chat/completions", body).await;
    let deltas = call_deltas(&chunks);
    assert_eq!(deltas.len(), 1, "{chunks:?}");
    assert_eq!(&call_arguments(deltas[0]), args);
}

/// Qwen2.5 served with `template`: a call demanded by name (and the same streamed) and one
/// `required` come back as calls to `get_weather`, held to the template's format. Returns the
/// prompt of a history with the named call and its result, and the call's arguments.
async fn demanded_calls_over_http(template: &str) -> (String, Value) {
    demanded_calls_over_http_with(template, json!({})).await
}

/// `demanded_calls_over_http` with `fields` in every request.
async fn demanded_calls_over_http_with(template: &str, fields: Value) -> (String, Value) {
    let s = Server::start("qwen2.5-0.5b", &["--chat-template", template]).await;
    let ask = |extra: Value| {
        let body = json!({"messages": [{"role": "user", "content": "Weather in Oslo?"}],
                          "tools": [weather_tool()], "max_tokens": 60, "temperature": 0});
        with_fields(with_fields(body, fields.clone()), extra)
    };
    let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
    let (st, v) = post(&s, "/v1/chat/completions", ask(named.clone())).await;
    let (call, args) = demanded_call(st, &v, "get_weather");
    assert!(args["city"].is_string(), "{v}");
    streams_as_one_call(&s, ask(with_fields(named, json!({"stream": true}))), &args).await;
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        ask(json!({"tool_choice": "required"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather",
        "{v}"
    );
    let history = json!([
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"}
    ]);
    let (st, t) = post(
        &s,
        "/apply-template",
        json!({"messages": history, "tools": [weather_tool()]}),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let prompt = t["prompt"].as_str().unwrap();
    (prompt.to_string(), args)
}

/// The chat template `name` of the template corpus (`chat_templates/corpus.json`).
fn corpus_template(name: &str) -> String {
    let corpus = common::read_json(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/chat_templates/corpus.json"),
    );
    let templates = corpus["templates"].as_array().unwrap();
    let template = templates.iter().find(|t| t["name"] == name).unwrap();
    template["chat_template"].as_str().unwrap().to_string()
}

/// A model served with Command R7B's template writes its calls as that template shows them: a
/// `<|START_ACTION|>` list of `tool_call_id` / `tool_name` / `parameters` objects. Demanded
/// calls (named, streamed, required) follow its grammar and come back as calls, and the history
/// shows the call in the model's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_r7b_tool_calls_over_http() {
    let template = corpus_template("CohereForAI-c4ai-command-r7b-12-2024-tool_use");
    let (prompt, _) = demanded_calls_over_http(&template).await;
    assert!(
        prompt.contains("<|START_ACTION|>[") && prompt.contains("\"tool_name\": \"get_weather\""),
        "{prompt}"
    );
}

/// A model served with Command R+'s tool-use template writes its calls after `Action:` as a
/// fenced JSON list of `tool_name` / `parameters` objects: demanded calls (named, streamed,
/// required) follow that grammar and come back as calls, and the history shows the call in
/// the template's pretty-printed list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_r_plus_tool_calls_over_http() {
    let template = corpus_template("CohereForAI-c4ai-command-r-plus-tool_use");
    let (prompt, _) = demanded_calls_over_http(&template).await;
    assert!(
        prompt.contains("\nAction:\n```json\n[\n    {\n        \"tool_name\": \"get_weather\",")
            && prompt.contains("]```"),
        "{prompt}"
    );
}

/// A model served with Apertus' template writes its calls as `{"NAME": {...}}` objects in a
/// list between `<|tools_prefix|>` and `<|tools_suffix|>`: demanded calls (named, streamed,
/// required) follow that grammar and come back as calls, and the history shows the call in
/// the model's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apertus_tool_calls_over_http() {
    let template = corpus_template("Apertus-8B-Instruct");
    let (prompt, args) = demanded_calls_over_http(&template).await;
    let city = serde_json::to_string(&args["city"]).unwrap();
    assert!(
        prompt.contains(&format!(
            "<|assistant_start|><|tools_prefix|>[{{\"get_weather\": {{\"city\": {city}"
        )) && prompt.contains("<|tools_suffix|>[rain]"),
        "{prompt}"
    );
}

/// A model served with MiniMax-M2's template writes its calls as `<invoke name=...>` elements
/// of `<parameter name=...>` values in a `<minimax:tool_call>` block: demanded calls (named,
/// streamed, required) follow that grammar and come back as calls, and the history shows the
/// call in the model's tags. The template's generation prompt opens a thought, which a demanded
/// call waits out: the call's opening is written once the thought closes, here by a budget of
/// 3 tokens (the small model here does not close its thought by itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimax_m2_tool_calls_over_http() {
    let template = corpus_template("MiniMax-M2");
    let short_thought = json!({"thinking_token_budget": 3, "thinking_budget_message": ""});
    let (prompt, args) = demanded_calls_over_http_with(&template, short_thought).await;
    let city = args["city"].as_str().unwrap();
    assert!(
        prompt.contains(&format!(
            "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">{city}</parameter>"
        )) && prompt.contains("</invoke>\n</minimax:tool_call>"),
        "{prompt}"
    );
}

/// A demanded call under a template whose prompt opens a thought is no call while the thought
/// goes on: a model that never closes it runs to its length and reports none (its opening is
/// written after the thought, never inside it), and its text holds no call's markup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demanded_call_waits_for_the_thought_to_close() {
    let template = corpus_template("MiniMax-M2");
    let s = Server::start("qwen2.5-0.5b", &["--chat-template", &template]).await;
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let body = json!({"messages": [{"role": "user", "content": "Weather in Oslo?"}],
                      "tools": [weather_tool()], "tool_choice": named, "max_tokens": 12,
                      "temperature": 0, "reasoning_format": "none"});
    let (st, v) = post(&s, "/v1/chat/completions", body.clone()).await;
    assert_eq!(st, 200, "{v}");
    let choice = &v["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap_or_default();
    assert!(!text.contains("</think>"), "the thought went on: {v}");
    assert!(!text.contains("<minimax:tool_call>"), "{v}");
    assert!(choice["message"]["tool_calls"].is_null(), "{v}");
    assert_eq!(choice["finish_reason"], "length", "{v}");
    // Its thought split off, the same answer is all reasoning.
    let split = with_fields(body, json!({"reasoning_format": "auto"}));
    let (st, v) = post(&s, "/v1/chat/completions", split).await;
    assert_eq!(st, 200, "{v}");
    let message = &v["choices"][0]["message"];
    assert_eq!(message["reasoning_content"].as_str(), Some(text), "{v}");
    assert!(message["tool_calls"].is_null(), "{v}");
}

/// A model served with LFM2's template (`chat_templates/lfm2.jinja`, LFM2-8B-A1B's as
/// llama.cpp keeps it) writes its calls as a Python list between `<|tool_call_start|>` and
/// `<|tool_call_end|>`: demanded calls (named, streamed, required) follow that grammar and come
/// back as calls. The template prints an assistant turn's content only: the history's call is
/// written into it in the model's syntax.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfm2_tool_calls_over_http() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/chat_templates/lfm2.jinja"),
    )
    .unwrap();
    let (prompt, args) = demanded_calls_over_http(&template).await;
    let city = serde_json::to_string(&args["city"]).unwrap();
    assert!(
        prompt.contains(&format!(
            "<|im_start|>assistant\n<|tool_call_start|>[get_weather(city={city}"
        )) && prompt.contains("<|tool_response_start|>rain<|tool_response_end|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("List of tools: <|tool_list_start|>["),
        "{prompt}"
    );
}

/// Models served with the templates of the tag formats added since (MiniCPM5's
/// `<function name=...>` calls, Hy3's suffixed pairs, MiniMax-M3's nested elements, Gemma 4's
/// objects): demanded
/// calls (named, streamed, required) follow each format's grammar and come back as calls, and
/// the history shows the call in the format. Their tags take many of this vocabulary's tokens:
/// the answers get room for them. This model is foreign to M3's tags: it opens the next element
/// inside a string value, which the grammar refuses (no marker in a value), so the value
/// closes. (Under DeepSeek's DSML it writes look-alike tags, `<｜DSML　parameter`, inside the
/// value instead, which no grammar of free text can refuse: DSML's grammars are checked on
/// random picks in `grammar_sampling`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_tag_formats_over_http() {
    for (name, shown) in [
        (
            "openbmb-MiniCPM5-1B",
            "<|im_start|>assistant\n<function name=\"get_weather\"><param name=\"city\">",
        ),
        (
            "tencent-Hy3",
            "<tool_calls:opensource>\n<tool_call:opensource>get_weather<tool_sep:opensource>\n\
             <arg_key:opensource>city</arg_key:opensource>\n<arg_value:opensource>",
        ),
        (
            "MiniMax-M3",
            "]<]minimax[>[<tool_call>\n]<]minimax[>[<invoke name=\"get_weather\">]<]minimax[>[<city>",
        ),
        (
            "google-gemma-4-31B-it",
            "<|turn>model\n<|tool_call>call:get_weather{city:<|\"|>",
        ),
        (
            "vllm-tool_chat_template_olmo3",
            "<|im_start|>assistant\n<function_calls>\nget_weather(city='",
        ),
    ] {
        let room = json!({"max_tokens": 160});
        let (prompt, args) = demanded_calls_over_http_with(&corpus_template(name), room).await;
        let city = args["city"].as_str().unwrap();
        assert!(
            prompt.contains(shown) && prompt.contains(city),
            "{name}: {prompt}"
        );
    }
}

/// `--tool-call-parser pythonic` / `functiongemma` / `phi4_mini_json` / `xlam` (vLLM's names):
/// a demanded call is the answer's Python list, FunctionGemma's `call:NAME{...}` block,
/// Phi-4-mini's `functools[...]` list or xLAM's answer list, its arguments held to the schema,
/// read back whole, streamed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_named_formats_over_http() {
    for parser in [
        "pythonic",
        "functiongemma",
        "phi4_mini_json",
        "xlam",
        "granite-20b-fc",
    ] {
        demanded_calls_with_parser(parser).await;
    }
}

async fn demanded_calls_with_parser(parser: &str) {
    let s = Server::start("qwen2.5-0.5b", &["--tool-call-parser", parser]).await;
    let ask = |extra: Value| {
        let body = json!({"messages": [{"role": "user", "content": "Weather in Oslo?"}],
                          "tools": [weather_tool()], "max_tokens": 60, "temperature": 0});
        with_fields(body, extra)
    };
    let named = json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
    let (st, v) = post(&s, "/v1/chat/completions", ask(named.clone())).await;
    let (_, args) = demanded_call(st, &v, "get_weather");
    assert!(args["city"].is_string(), "{parser}: {v}");
    streams_as_one_call(&s, ask(with_fields(named, json!({"stream": true}))), &args).await;
    let required = ask(json!({"tool_choice": "required"}));
    let (st, v) = post(&s, "/v1/chat/completions", required).await;
    assert_eq!(st, 200, "{parser}: {v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{parser}: {v}");
    assert!(
        v["choices"][0]["message"]["content"].is_null(),
        "{parser}: {v}"
    );
}

/// `--tool-call-parser glm45` on a model whose template shows Hermes: a demanded call is held
/// to GLM's `<arg_key>` / `<arg_value>` pairs and read back from them, its integer typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_tool_call_parser_replaces_the_templates() {
    let s = Server::start("qwen2.5-0.5b", &["--tool-call-parser", "glm45"]).await;
    let alarm = json!({"type": "function", "function": {"name": "set_alarm", "parameters": {
        "type": "object", "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["hour"]}}});
    let body = json!({"messages": [{"role": "user", "content": "Wake me at seven."}],
                      "tools": [weather_tool(), alarm], "max_tokens": 40, "temperature": 0,
                      "tool_choice": {"type": "function", "function": {"name": "set_alarm"}}});
    let (st, v) = post(&s, "/v1/chat/completions", body).await;
    let (_, args) = demanded_call(st, &v, "set_alarm");
    assert!(
        args["hour"].as_i64().is_some_and(|h| (0..=23).contains(&h)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_end_to_end() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let question = json!([{"role": "user", "content": "What's the weather like in Paris today?"}]);
    let ask = |extra: Value| {
        let body = json!({"messages": question, "tools": [weather_tool()], "max_tokens": 60, "temperature": 0});
        with_fields(body, extra)
    };

    // Auto: the model (greedy) calls the tool; content is null, the reason `tool_calls`.
    let (st, v) = post(&s, "/v1/chat/completions", ask(json!({}))).await;
    assert_eq!(st, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert!(choice["message"]["content"].is_null(), "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call_arguments(call)["city"], "Paris", "{call}");
    let with_tools = v["usage"]["prompt_tokens"].as_u64().unwrap();

    // /tokenize counts a prompt with tools as the chat request does.
    let (_, t) = post(
        &s,
        "/tokenize",
        json!({"messages": question, "tools": [weather_tool()]}),
    )
    .await;
    assert_eq!(t["count"].as_u64(), Some(with_tools), "{t}");

    // Streamed, the same call arrives whole in one delta with its index, then the reason.
    let events = sse(&s, "/v1/chat/completions", ask(json!({"stream": true}))).await;
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let deltas = call_deltas(&chunks);
    assert_eq!(deltas.len(), 1, "{events:?}");
    assert_eq!(deltas[0]["index"], 0);
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert_eq!(call_arguments(deltas[0]), call_arguments(call));
    let streamed_text: String = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap())
        .filter_map(|c| c["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed_text, "", "call text leaked into content");
    let last = &chunks.last().unwrap()["choices"][0];
    assert_eq!(last["finish_reason"], "tool_calls");

    // Auto, with a schema this model does not follow unaided (it writes "Paris" and adds a
    // unit): once it opens a call, the lazy grammar holds the call to the schema.
    let strict = json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 3}},
        "required": ["city"], "additionalProperties": false}}});
    let (st, v) = post(&s, "/v1/chat/completions", ask(json!({"tools": [strict]}))).await;
    assert_eq!(st, 200, "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    let args = call_arguments(call);
    let city = args["city"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(
        city.chars().count() <= 3 && args.as_object().unwrap().len() == 1,
        "{v}"
    );
    // A schema no grammar can follow leaves auto calls free rather than refusing the request
    // (a demanded call needs the grammar: 400).
    let odd = json!({"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "no-such-type"}}}}});
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        ask(json!({"tools": [odd], "max_tokens": 4})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        ask(json!({"tools": [odd], "tool_choice": "required"})),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "tools", "{v}");

    // `none`: the tools are not shown (the prompt is the plain one) and no call is read.
    let (_, plain) = post(
        &s,
        "/v1/chat/completions",
        json!({"messages": question, "max_tokens": 1}),
    )
    .await;
    let (st, none) = post(
        &s,
        "/v1/chat/completions",
        ask(json!({"tool_choice": "none", "max_tokens": 8})),
    )
    .await;
    assert_eq!(st, 200, "{none}");
    assert_eq!(
        none["usage"]["prompt_tokens"],
        plain["usage"]["prompt_tokens"]
    );
    assert!(
        none["choices"][0]["message"].get("tool_calls").is_none(),
        "{none}"
    );
    assert!(with_tools > plain["usage"]["prompt_tokens"].as_u64().unwrap());

    // A named or required call is made even when the question does not ask for it, and its
    // arguments follow the function's schema (sampled, so not the greedy path).
    let alarm = json!({"type": "function", "function": {"name": "set_alarm", "parameters": {
        "type": "object", "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23}},
        "required": ["hour"], "additionalProperties": false}}});
    for choice in [
        json!({"type": "function", "function": {"name": "set_alarm"}}),
        json!("required"),
    ] {
        let demand = json!({"tool_choice": choice, "tools": [weather_tool(), alarm], "temperature": 1.0, "seed": 3,
                            "messages": [{"role": "user", "content": "Tell me about Oslo."}]});
        let (st, v) = post(&s, "/v1/chat/completions", ask(demand)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
        let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{v}");
        let args = call_arguments(&calls[0]);
        match calls[0]["function"]["name"].as_str() {
            Some("set_alarm") => assert!(
                args["hour"].as_i64().is_some_and(|h| (0..=23).contains(&h)),
                "{v}"
            ),
            Some("get_weather") if choice == "required" => assert!(args["city"].is_string(), "{v}"),
            _ => panic!("{v}"),
        }
    }

    // The round trip: the call and its result go back in the history (told not to call again,
    // as this small model would, it answers in text drawn from the result).
    let history = json!([
        {"role": "user", "content": "What's the weather like in Paris today?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"sky\": \"sunny\"}"}
    ]);
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        ask(json!({"messages": history, "tool_choice": "none"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let answer = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert!(
        answer.contains("21") || answer.to_lowercase().contains("sunny"),
        "{v}"
    );
    let (_, t) = post(&s, "/tokenize", json!({"messages": history})).await;
    assert_eq!(t["count"], v["usage"]["prompt_tokens"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_outputs_follow_the_schema() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let city = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "population": {"type": "integer"},
            "capital": {"type": "boolean"},
            "landmarks": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 2}
        },
        "required": ["name", "population", "capital", "landmarks"],
        "additionalProperties": false
    });
    let ask = |format: Value, extra: Value| {
        let body = json!({"messages": [{"role": "user", "content": "Describe Paris."}],
                              "max_tokens": 120, "response_format": format});
        with_fields(body, extra)
    };
    let schema_format =
        json!({"type": "json_schema", "json_schema": {"name": "city", "schema": city}});
    let check_city = |text: &str| {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {text}"));
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["capital", "landmarks", "name", "population"],
            "{text}"
        );
        assert!(
            v["name"].as_str().is_some_and(|n| n.chars().count() <= 20),
            "{text}"
        );
        assert!(
            v["population"].is_i64() || v["population"].is_u64(),
            "{text}"
        );
        assert!(v["capital"].is_boolean(), "{text}");
        assert!(
            v["landmarks"].as_array().is_some_and(|l| l.len() <= 2),
            "{text}"
        );
    };

    // Sampled at temperature 1, every choice (each with its own matcher) follows the schema.
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        ask(
            schema_format.clone(),
            json!({"temperature": 1.0, "seed": 7, "n": 3}),
        ),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    for choice in v["choices"].as_array().unwrap() {
        assert_eq!(choice["finish_reason"], "stop", "{choice}");
        check_city(choice["message"]["content"].as_str().unwrap());
    }

    // Streamed, the pieces add up to a valid answer too.
    let events = sse(
        &s,
        "/v1/chat/completions",
        ask(schema_format, json!({"temperature": 0, "stream": true})),
    )
    .await;
    check_city(&streamed_content(&events));

    // json_object: any object.
    let short = json!({"temperature": 0, "max_tokens": 200,
        "messages": [{"role": "user", "content": "Paris's country and continent as JSON, nothing else."}]});
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        ask(json!({"type": "json_object"}), short),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        serde_json::from_str::<Value>(text).is_ok_and(|o| o.is_object()),
        "{text}"
    );

    // A schema that cannot be compiled is the client's error.
    let bad = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}});
    let (st, v) = post(&s, "/v1/chat/completions", ask(bad, json!({}))).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "response_format", "{v}");

    // vLLM's guides: a regex, a choice, a lark grammar, a schema; chat and text completions.
    let question = json!([{"role": "user", "content": "Give me a US phone number."}]);
    let guided = |extra: Value| {
        with_fields(
            json!({"messages": question, "max_tokens": 30, "temperature": 0}),
            extra,
        )
    };
    let answer = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        guided(json!({"structured_outputs": {"regex": "\\(\\d{3}\\) \\d{3}-\\d{4}"}})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let phone = answer(&v);
    let digits: Vec<usize> = phone
        .split(|c: char| !c.is_ascii_digit())
        .filter(|d| !d.is_empty())
        .map(str::len)
        .collect();
    assert!(
        phone.starts_with('(') && digits == [3, 3, 4] && phone.len() == 14,
        "{phone}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    for (extra, allowed) in [
        (
            json!({"guided_choice": ["positive", "negative"]}),
            vec!["positive", "negative"],
        ),
        (
            json!({"structured_outputs": {"grammar": "start: \"yes\" | \"no\" | \"maybe\""}}),
            vec!["yes", "no", "maybe"],
        ),
        // llama-server's `grammar`, in GBNF.
        (
            json!({"grammar": "root ::= answer\nanswer ::= (\"yes\" | \"no\")"}),
            vec!["yes", "no"],
        ),
    ] {
        let body = with_fields(
            json!({"messages": [{"role": "user", "content": "Is this review happy? 'I loved it.'"}],
                   "max_tokens": 10, "temperature": 1.0, "seed": 3, "n": 3}),
            extra.clone(),
        );
        let (st, v) = post(&s, "/v1/chat/completions", body).await;
        assert_eq!(st, 200, "{extra}: {v}");
        for choice in v["choices"].as_array().unwrap() {
            let text = choice["message"]["content"].as_str().unwrap();
            assert!(allowed.contains(&text), "{extra}: {text}");
        }
    }
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "How many legs does a dog have? Answer as JSON:", "max_tokens": 30, "temperature": 0,
               "guided_json": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}},
                               "required": ["n"], "additionalProperties": false}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(parsed["n"].is_i64() || parsed["n"].is_u64(), "{text}");
    // A guide llguidance cannot compile, or two ways of shaping one answer, are 400s by field.
    for (extra, param) in [
        (json!({"guided_regex": "(unclosed"}), "guided_regex"),
        (json!({"grammar": "root ::= missing-rule"}), "grammar"),
        (
            json!({"guided_grammar": "start: undefined_rule"}),
            "guided_grammar",
        ),
        (
            json!({"guided_choice": ["a"], "response_format": {"type": "json_object"}}),
            "guided_choice",
        ),
    ] {
        let (st, v) = post(&s, "/v1/chat/completions", guided(extra.clone())).await;
        assert_eq!(st, 400, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
}

/// A template in harmony's shape (gpt-oss's): the real model's vocabulary has none of its
/// special tokens, so they are plain text here, but the server reads the template as harmony.
const HARMONY_TEMPLATE: &str = "{% for m in messages %}{% if m.role == 'assistant' %}\
<|start|>assistant<|channel|>final<|message|>{{ m.content }}<|end|>{% else %}\
<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endif %}{% endfor %}\
{% if tools %}<|start|>developer<|message|>{{ tools | tojson }}<|end|>{% endif %}\
{% if add_generation_prompt %}<|start|>assistant{% endif %}";

/// Through a harmony template: an answer that opens with no channel is plain content; a named
/// `tool_choice` makes the answer the arguments of a message to that function, returned as
/// its call; `required` a message to one of the functions offered, chosen by the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmony_templates_read_channels_and_demanded_calls() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("harmony.jinja");
    std::fs::write(&template, HARMONY_TEMPLATE).unwrap();
    let s = Server::start(
        "qwen2.5-0.5b",
        &["--chat-template", template.to_str().unwrap()],
    )
    .await;
    let messages = json!([{"role": "user", "content": "What is the weather like in Paris?"}]);
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        json!({"messages": messages, "max_tokens": 12, "temperature": 0}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !content.is_empty() && !content.contains("<|message|>"),
        "{v}"
    );

    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let body = json!({"messages": messages, "tools": [weather_tool()], "tool_choice": named,
                      "max_tokens": 40, "temperature": 0});
    let (st, v) = post(&s, "/v1/chat/completions", body).await;
    let (_, args) = demanded_call(st, &v, "get_weather");
    assert!(args["city"].is_string(), "{v}");

    // `required`: the model picks the function (its name, then the header's markers, text in
    // this vocabulary, then its arguments under the grammar).
    let clock = json!({"type": "function", "function": {"name": "get_time", "parameters":
        {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}});
    let body = json!({"messages": messages, "tools": [clock, weather_tool()],
                      "tool_choice": "required", "max_tokens": 60, "temperature": 0});
    let (st, v) = post(&s, "/v1/chat/completions", body).await;
    assert_eq!(st, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let call = &choice["message"]["tool_calls"][0];
    let args = call_arguments(call);
    match call["function"]["name"].as_str() {
        Some("get_weather") => assert!(args["city"].is_string(), "{v}"),
        Some("get_time") => assert!(args["zone"].is_string(), "{v}"),
        _ => panic!("not a call to an offered function: {v}"),
    }
    assert!(choice["message"]["content"].is_null(), "{v}");
}

/// A ChatML template that opens a thought in the generation prompt (as DeepSeek-R1's does),
/// or closes an empty one with `enable_thinking: false` (as Qwen3's does).
/// For tests that compare the answers of two requests for one prompt: without the prefix
/// cache, each computes the whole prompt in one pass, so both run the same products. With it,
/// the second computes only the last prompt token, on the one-row kernels, whose rounding
/// differs from a multi-row pass's (another summation order; on AMX CPUs the tiles) and,
/// through the next layers' activation quantization, moves logprobs by up to ~0.05: enough to
/// tip the model's near ties ("Yes" / "7" within 0.03 nats as the thought's first token).
const SAME_PASSES: &[&str] = &["--no-prefix-caching"];

const THINKING_TEMPLATE: &str =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n\
{% if enable_thinking is defined and not enable_thinking %}\n</think>\n\n{% endif %}{% endif %}";

/// The real model served with `THINKING_TEMPLATE` and `args`; the directory holds the
/// template while the server runs.
async fn thinking_server(args: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("thinking.jinja");
    std::fs::write(&template, THINKING_TEMPLATE).unwrap();
    let mut all = vec!["--chat-template", template.to_str().unwrap()];
    all.extend_from_slice(args);
    let s = Server::start("qwen2.5-0.5b", &all).await;
    (dir, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_goes_to_reasoning_content() {
    let (_dir, s) = thinking_server(&["--no-prefix-caching"]).await;
    let messages = json!([{"role": "user", "content": "Is 7 a prime number?"}]);
    for (kwargs, thinking) in [
        (json!({}), true),
        (json!({"enable_thinking": false}), false),
    ] {
        // What the model writes, raw, for the same prompt tokens.
        let (_, t) = post(
            &s,
            "/tokenize",
            json!({"messages": messages, "chat_template_kwargs": kwargs}),
        )
        .await;
        let (_, raw) = post(
            &s,
            "/v1/completions",
            json!({"prompt": t["tokens"], "max_tokens": 40, "temperature": 0}),
        )
        .await;
        let raw = raw["choices"][0]["text"].as_str().unwrap().to_string();
        let (want_reasoning, want_content) = match (thinking, raw.find("</think>")) {
            (false, _) => (None, raw.clone()),
            (true, None) => (Some(raw.clone()), String::new()),
            (true, Some(at)) => (
                Some(raw[..at].to_string()),
                raw[at + 8..].trim_start().to_string(),
            ),
        };
        let body = json!({"messages": messages, "max_tokens": 40, "temperature": 0, "chat_template_kwargs": kwargs});
        let (st, v) = post(&s, "/v1/chat/completions", body.clone()).await;
        assert_eq!(st, 200, "{v}");
        let message = &v["choices"][0]["message"];
        assert_eq!(
            message["reasoning_content"].as_str().map(str::to_string),
            want_reasoning.clone().filter(|r| !r.is_empty()),
            "{v} vs {raw:?}"
        );
        assert_eq!(
            message["content"].as_str(),
            Some(want_content.as_str()),
            "{v} vs {raw:?}"
        );
        // llama-server's `reasoning_format: none`: the text as written, thought and all.
        let unsplit = with_fields(body.clone(), json!({"reasoning_format": "none"}));
        let (st, v) = post(&s, "/v1/chat/completions", unsplit.clone()).await;
        assert_eq!(st, 200, "{v}");
        let message = &v["choices"][0]["message"];
        assert_eq!(message["content"].as_str(), Some(raw.as_str()), "{v}");
        assert!(message.get("reasoning_content").is_none(), "{v}");
        let streamed = streamed_content(
            &sse(
                &s,
                "/v1/chat/completions",
                with_fields(unsplit, json!({"stream": true})),
            )
            .await,
        );
        assert_eq!(streamed, raw);

        // Through /v1/responses the thought is a reasoning item, the answer a message.
        let (st, r) = post(
            &s,
            "/v1/responses",
            json!({"input": "Is 7 a prime number?", "max_output_tokens": 40, "temperature": 0,
                   "chat_template_kwargs": kwargs}),
        )
        .await;
        assert_eq!(st, 200, "{r}");
        let item_texts = |kind: &str| -> String {
            r["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["type"] == kind)
                .map(|i| i["content"][0]["text"].as_str().unwrap_or(""))
                .collect()
        };
        let thought = item_texts("reasoning");
        assert_eq!(thought, want_reasoning.clone().unwrap_or_default(), "{r}");
        assert_eq!(item_texts("message"), want_content, "{r}");
        let reasoning_tokens = r["usage"]["output_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap();
        assert_eq!(reasoning_tokens > 0, !thought.is_empty(), "{r}");
        // And through /v1/messages a thinking block, with `thinking` as the template's switch.
        let switch = if thinking { "enabled" } else { "disabled" };
        let (st, m) = post(
            &s,
            "/v1/messages",
            json!({"max_tokens": 40, "temperature": 0, "thinking": {"type": switch},
                   "messages": [{"role": "user", "content": "Is 7 a prime number?"}]}),
        )
        .await;
        assert_eq!(st, 200, "{m}");
        let block_texts = |kind: &str, key: &str| -> String {
            m["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == kind)
                .map(|b| b[key].as_str().unwrap_or(""))
                .collect()
        };
        assert_eq!(block_texts("thinking", "thinking"), thought, "{m}");
        assert_eq!(block_texts("text", "text"), want_content, "{m}");

        let mut stream_body = body;
        stream_body["stream"] = json!(true);
        let events = sse(&s, "/v1/chat/completions", stream_body).await;
        let (mut reasoning, mut content) = (String::new(), String::new());
        for e in events.iter().filter(|e| *e != "[DONE]") {
            let chunk: Value = serde_json::from_str(e).unwrap();
            let delta = &chunk["choices"][0]["delta"];
            reasoning += delta["reasoning_content"].as_str().unwrap_or("");
            content += delta["content"].as_str().unwrap_or("");
        }
        assert_eq!(reasoning, want_reasoning.unwrap_or_default(), "{events:?}");
        assert_eq!(content, want_content, "{events:?}");
    }
}

/// A thinking budget: the server's (`--reasoning-budget`, with its message) unless a request
/// sets its own (vLLM's and llama-server's spellings, Anthropic's `thinking.budget_tokens`).
/// The thought is the model's first tokens, as many as the budget, then the message; the
/// model answers after the forced `</think>`. A JSON format waits for that answer (before,
/// it shaped the thought).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thinking_budget_cuts_the_thought_and_formats_wait_for_the_answer() {
    // Each request computes its whole prompt (`SAME_PASSES`).
    let args = [
        "--reasoning-budget",
        "4",
        "--reasoning-budget-message",
        " Enough.",
        SAME_PASSES[0],
    ];
    let (_dir, s) = thinking_server(&args).await;
    let messages = json!([{"role": "user", "content": "Is 7 a prime number?"}]);
    let (_, t) = post(&s, "/tokenize", json!({"messages": messages})).await;
    // The model's own first `n` tokens of thought, greedy.
    let thought = |n: usize| {
        let body = json!({"prompt": t["tokens"], "max_tokens": n, "temperature": 0});
        let s = &s;
        async move {
            let (_, raw) = post(s, "/v1/completions", body).await;
            let raw = raw["choices"][0]["text"].as_str().unwrap().to_string();
            assert!(!raw.contains("</think>"), "{raw:?}");
            raw
        }
    };
    let chat = |extra: Value| {
        with_fields(
            json!({"messages": messages, "max_tokens": 40, "temperature": 0}),
            extra,
        )
    };
    for (extra, want) in [
        (json!({}), thought(4).await + " Enough."),
        (
            json!({"thinking_token_budget": 2, "thinking_budget_message": ""}),
            thought(2).await,
        ),
        (
            json!({"thinking_budget_tokens": 1}),
            thought(1).await + " Enough.",
        ),
        (json!({"thinking_token_budget": 0}), " Enough.".to_string()),
    ] {
        let (st, v) = post(&s, "/v1/chat/completions", chat(extra.clone())).await;
        assert_eq!(st, 200, "{v}");
        let message = &v["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], want.as_str(), "{extra}: {v}");
        assert!(
            !message["content"]
                .as_str()
                .unwrap_or("")
                .contains("</think>"),
            "{extra}: {v}"
        );
    }
    // Each cut is counted (budget 0 too).
    let cut = "candor:reasoning_budget_exhausted_total";
    assert_eq!(s.metric(cut).await, 4.0);
    // No limit: the thought runs as the model writes it.
    let (_, v) = post(
        &s,
        "/v1/chat/completions",
        chat(json!({"thinking_token_budget": -1, "max_tokens": 12})),
    )
    .await;
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        thought(12).await.as_str(),
        "{v}"
    );

    // A JSON answer after a cut thought, streamed too.
    let body =
        chat(json!({"response_format": {"type": "json_object"}, "thinking_token_budget": 3}));
    let (st, v) = post(&s, "/v1/chat/completions", body.clone()).await;
    assert_eq!(st, 200, "{v}");
    let message = &v["choices"][0]["message"];
    let want = thought(3).await + " Enough.";
    assert_eq!(message["reasoning_content"], want.as_str(), "{v}");
    let content = message["content"].as_str().unwrap();
    if v["choices"][0]["finish_reason"] == "stop" {
        let answer: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {v}"));
        assert!(answer.is_object(), "{v}");
    } else {
        assert!(content.trim_start().starts_with('{'), "{v}");
    }
    let events = sse(
        &s,
        "/v1/chat/completions",
        with_fields(body, json!({"stream": true})),
    )
    .await;
    let (mut reasoning, mut streamed) = (String::new(), String::new());
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let chunk: Value = serde_json::from_str(e).unwrap();
        let delta = &chunk["choices"][0]["delta"];
        reasoning += delta["reasoning_content"].as_str().unwrap_or("");
        streamed += delta["content"].as_str().unwrap_or("");
    }
    assert_eq!(
        (reasoning.as_str(), streamed.as_str()),
        (want.as_str(), content)
    );

    // Anthropic's budget, in a thinking block.
    let (st, m) = post(
        &s,
        "/v1/messages",
        json!({"max_tokens": 40, "temperature": 0,
               "thinking": {"type": "enabled", "budget_tokens": 2},
               "messages": [{"role": "user", "content": "Is 7 a prime number?"}]}),
    )
    .await;
    assert_eq!(st, 200, "{m}");
    let thinking = m["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "thinking")
        .unwrap_or_else(|| panic!("{m}"));
    assert_eq!(
        thinking["thinking"],
        (thought(2).await + " Enough.").as_str(),
        "{m}"
    );
    // The unlimited thought was not cut; the JSON answers' (whole and streamed) and
    // Anthropic's were.
    assert_eq!(s.metric(cut).await, 7.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_completions_fill_in_the_middle_and_follow_json() {
    // Each request computes its whole prompt (`SAME_PASSES`).
    let s = Server::start("qwen2.5-0.5b", SAME_PASSES).await;
    // The code model fills the gap between the prompt and the suffix, and stops there.
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({
            "prompt": "def add(a, b):\n    return ", "suffix": "\n\n\nprint(add(2, 3))\n",
            "max_tokens": 30, "temperature": 0
        }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // After the fill, "\n" (then the end) and "\n\n" (then more code) are a near tie
    // (logprobs -0.98 / -0.87 on a VNNI Xeon), which the CPU's kernels may tip either way.
    let text = v["choices"][0]["text"].as_str().unwrap().trim();
    assert!(text == "a + b" || text.starts_with("a + b\n"), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    // Prompt tokens: FIM prefix, prefix text, FIM suffix, suffix text, FIM middle.
    let (_, prefix) = post(
        &s,
        "/tokenize",
        json!({"prompt": "def add(a, b):\n    return "}),
    )
    .await;
    let (_, suffix) = post(
        &s,
        "/tokenize",
        json!({"prompt": "\n\n\nprint(add(2, 3))\n"}),
    )
    .await;
    let expected = prefix["count"].as_u64().unwrap() + suffix["count"].as_u64().unwrap() + 3;
    assert_eq!(v["usage"]["prompt_tokens"].as_u64(), Some(expected), "{v}");
    // The same prompt written out with the model's markers, as editor plugins send it: the
    // markers are single tokens, so it is the same prompt and the same fill.
    let (st, raw) = post(
        &s,
        "/v1/completions",
        json!({
            "prompt": "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n\n\nprint(add(2, 3))\n<|fim_middle|>",
            "max_tokens": 30, "temperature": 0
        }),
    )
    .await;
    assert_eq!(st, 200, "{raw}");
    assert_eq!(
        raw["usage"]["prompt_tokens"], v["usage"]["prompt_tokens"],
        "{raw}"
    );
    assert_eq!(raw["choices"][0]["text"], v["choices"][0]["text"], "{raw}");
    // With token ids the insertion point is unknown.
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": [1, 2], "suffix": "x"}),
    )
    .await;
    assert_eq!(
        (st, v["error"]["param"].as_str()),
        (400, Some("prompt")),
        "{v}"
    );

    // response_format on text completions too.
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({
            "prompt": "A person as JSON: ", "max_tokens": 80, "temperature": 0,
            "response_format": {"type": "json_object"}
        }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(
        serde_json::from_str::<Value>(text).is_ok_and(|o| o.is_object()),
        "{v}"
    );
}

/// The tokens of a chat answer with logprobs, each with the gap between its two best
/// alternatives (how near a tie the pick was).
fn tokens_and_gaps(v: &Value) -> Vec<(String, f64)> {
    v["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no logprobs in {v}"))
        .iter()
        .map(|t| {
            let top = &t["top_logprobs"];
            let lp = |i: usize| top[i]["logprob"].as_f64().unwrap_or(f64::NEG_INFINITY);
            (t["token"].as_str().unwrap().to_string(), lp(0) - lp(1))
        })
        .collect()
}

/// `got` has `want`'s tokens up to the first near-tie of `want` (the kernels round a pass of
/// several rows at the activation level, as any batch does), and, without a near-tie, all of
/// them and the same finish.
fn assert_same_answer(want: &Value, got: &Value, what: &str) {
    let (want_tokens, got_tokens) = (tokens_and_gaps(want), tokens_and_gaps(got));
    for (i, (w, gap)) in want_tokens.iter().enumerate() {
        // A near tie may tip either way (its own token included).
        if *gap < 0.15 {
            return;
        }
        assert_eq!(
            got_tokens.get(i).map(|g| &g.0),
            Some(w),
            "{what}: token {i} differs:\n{want}\n{got}"
        );
    }
    assert_eq!(got_tokens.len(), want_tokens.len(), "{what}");
    assert_eq!(
        got["choices"][0]["finish_reason"],
        want["choices"][0]["finish_reason"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speculative_decoding_keeps_the_answers() {
    let plain = Server::start("qwen2.5-0.5b", &["--speculative-tokens", "0"]).await;
    let drafting = Server::start("qwen2.5-0.5b", &["--speculative-tokens", "4"]).await;
    // An answer that copies its input, so most drafts are right.
    let code = "def area(width, height):\n    return width * height\n\n\n\
                def perimeter(width, height):\n    return 2 * (width + height)\n";
    let ask = |extra: Value| {
        let body = json!({
            "messages": [{"role": "user", "content": format!(
                "Rename `width` to `w` in this code and return all of it:\n\n```python\n{code}```"
            )}],
            "max_tokens": 48, "temperature": 0, "logprobs": true, "top_logprobs": 2
        });
        with_fields(body, extra)
    };
    let cases = [
        ("greedy", json!({})),
        ("seeded", json!({"temperature": 0.7, "seed": 7})),
        ("stop", json!({"stop": ["perimeter"]})),
        // Drafts under a grammar: each row is sampled under the mask the kept tokens leave.
        (
            "schema",
            json!({"response_format": {"type": "json_schema", "json_schema": {
            "name": "code", "schema": {"type": "object", "properties": {"code": {"type": "string"}},
                                       "required": ["code"]}}}}),
        ),
        // A lazy tool-call grammar waiting for its trigger.
        ("tools", json!({"tools": [weather_tool()]})),
    ];
    let kept = || drafting.metric("candor:spec_decode_num_accepted_tokens_total");
    for (what, extra) in cases {
        let (st, want) = post(&plain, "/v1/chat/completions", ask(extra.clone())).await;
        assert_eq!(st, 200, "{want}");
        let kept_before = kept().await;
        let (st, got) = post(&drafting, "/v1/chat/completions", ask(extra)).await;
        assert_eq!(st, 200, "{got}");
        assert_same_answer(&want, &got, what);
        assert!(kept().await > kept_before, "{what}: no draft kept");
    }
    let kept = kept().await;
    let drafted = drafting
        .metric("candor:spec_decode_num_draft_tokens_total")
        .await;
    // Most drafts are right; the renamed names are not where the lookup finds them.
    assert!(
        kept >= 20.0 && kept < drafted,
        "kept {kept} of {drafted} drafted tokens"
    );
    assert_eq!(
        plain
            .metric("candor:spec_decode_num_draft_tokens_total")
            .await,
        0.0
    );
    // Each request's log line says what its drafts were worth (read from stderr by a thread:
    // the last line may trail the response a little).
    let kept_in_logs = || -> f64 {
        drafting
            .log_lines("request done")
            .iter()
            .filter_map(|l| {
                let n = l.split("kept_drafts=").nth(1)?.split_whitespace().next()?;
                n.parse::<f64>().ok()
            })
            .sum()
    };
    for _ in 0..50 {
        if kept_in_logs() == kept {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(kept_in_logs(), kept);

    // Streamed, several tokens of a step arrive as their own deltas and make the same text.
    let (_, whole) = post(&drafting, "/v1/chat/completions", ask(json!({}))).await;
    let events = sse(
        &drafting,
        "/v1/chat/completions",
        ask(json!({"stream": true, "logprobs": null, "top_logprobs": null})),
    )
    .await;
    let streamed = streamed_content(&events);
    assert_eq!(
        Some(streamed.as_str()),
        whole["choices"][0]["message"]["content"].as_str()
    );

    // Predicted Outputs: drafts come first from the prediction, text the prompt does not hold;
    // the same answer, more drafts kept, and the usage says how much of the prediction the
    // answer used.
    let numbers = (1..=40)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let count = |extra: Value| {
        let body = json!({"messages": [{"role": "user", "content": "Count from 1 to 40, separated by commas, on one line, nothing else."}],
                          "max_tokens": 150, "temperature": 0, "logprobs": true, "top_logprobs": 2});
        with_fields(body, extra)
    };
    let predicted = json!({"prediction": {"type": "content", "content": numbers}});
    let accepted = || drafting.metric("candor:spec_decode_num_accepted_tokens_total");
    let (_, want) = post(&plain, "/v1/chat/completions", count(json!({}))).await;
    let before = accepted().await;
    let (_, without) = post(&drafting, "/v1/chat/completions", count(json!({}))).await;
    let between = accepted().await;
    let (st, with) = post(&drafting, "/v1/chat/completions", count(predicted.clone())).await;
    assert_eq!(st, 200, "{with}");
    let after = accepted().await;
    assert_same_answer(&want, &with, "prediction");
    assert_same_answer(&want, &without, "no prediction");
    assert!(
        after - between > between - before,
        "kept {} drafts with the prediction, {} without",
        after - between,
        between - before
    );
    let (_, tokens) = post(
        &plain,
        "/tokenize",
        json!({"prompt": numbers, "add_special_tokens": false}),
    )
    .await;
    let predicted_tokens = tokens["tokens"].as_array().unwrap().len() as u64;
    for (server, answer) in [
        (&drafting, &with),
        (
            &plain,
            &post(&plain, "/v1/chat/completions", count(predicted.clone()))
                .await
                .1,
        ),
    ] {
        let details = &answer["usage"]["completion_tokens_details"];
        let kept = details["accepted_prediction_tokens"].as_u64().unwrap();
        let rejected = details["rejected_prediction_tokens"].as_u64().unwrap();
        assert!(kept > predicted_tokens / 2, "{details} at {}", server.base);
        assert_eq!(kept + rejected, predicted_tokens, "{details}");
    }
    assert!(without["usage"]["completion_tokens_details"].is_null());
    let (st, e) = post(
        &plain,
        "/v1/chat/completions",
        count(json!({"prediction": {"type": "text", "content": "1"}})),
    )
    .await;
    assert_eq!(
        (st, &e["error"]["param"]),
        (400, &json!("prediction")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefilled_answers_continue_the_final_message() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let messages = json!([
        {"role": "user", "content": "Write the numbers from 1 to 10, separated by commas."},
        {"role": "assistant", "content": "1, 2, 3,"},
    ]);
    let open = json!({"messages": messages, "continue_final_message": true, "add_generation_prompt": false});
    // The prompt stops inside the assistant's turn, right after its text.
    let (st, t) = post(&s, "/tokenize", open.clone()).await;
    assert_eq!(st, 200, "{t}");
    let (_, raw) = post(&s, "/detokenize", json!({"tokens": t["tokens"]})).await;
    let raw = raw["prompt"].as_str().unwrap().to_string();
    assert!(raw.ends_with("<|im_start|>assistant\n1, 2, 3,"), "{raw:?}");
    // The chat answer is the continuation, the same as a text completion of that prompt.
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        with_fields(open.clone(), json!({"max_tokens": 8, "temperature": 0})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (_, c) = post(
        &s,
        "/v1/completions",
        json!({"prompt": t["tokens"], "max_tokens": 8, "temperature": 0}),
    )
    .await;
    let continued = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(continued, c["choices"][0]["text"].as_str().unwrap());
    assert!(continued.starts_with(" 4,"), "{continued:?}");
    assert_eq!(v["usage"]["prompt_tokens"], t["count"]);
    // Without a generation prompt the prompt ends after the closed turn.
    let (_, bare) = post(
        &s,
        "/tokenize",
        json!({"messages": messages, "add_generation_prompt": false}),
    )
    .await;
    let (_, text) = post(&s, "/detokenize", json!({"tokens": bare["tokens"]})).await;
    assert!(
        text["prompt"]
            .as_str()
            .unwrap()
            .ends_with("1, 2, 3,<|im_end|>\n"),
        "{text}"
    );
    // Nothing to continue, or both ends at once, is the client's error.
    for body in [
        with_fields(open.clone(), json!({"add_generation_prompt": true})),
        with_fields(
            open,
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        ),
    ] {
        let (st, v) = post(&s, "/v1/chat/completions", body).await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["param"], "continue_final_message", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_sampling_extensions_shape_the_end() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    // min_tokens: the end token waits.
    let ask = json!({"messages": [{"role": "user", "content": "What is the capital of France? One word."}],
                     "max_tokens": 12, "temperature": 0});
    let (_, short) = post(&s, "/v1/chat/completions", ask.clone()).await;
    let words = short["usage"]["completion_tokens"].as_u64().unwrap();
    // reasoning_effort is a template variable: Qwen2.5's template has no use for it.
    let (st, same) = post(
        &s,
        "/v1/chat/completions",
        with_fields(ask.clone(), json!({"reasoning_effort": "low"})),
    )
    .await;
    assert_eq!(st, 200, "{same}");
    assert_eq!(same["choices"], short["choices"]);
    // priority orders the queue, not the answer (the engine's tests check the order).
    let (st, same) = post(
        &s,
        "/v1/chat/completions",
        with_fields(ask.clone(), json!({"priority": -5})),
    )
    .await;
    assert_eq!(st, 200, "{same}");
    assert_eq!(same["choices"], short["choices"]);
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        with_fields(ask.clone(), json!({"reasoning_effort": "extreme"})),
    )
    .await;
    assert_eq!(
        (st, &v["error"]["param"]),
        (400, &json!("reasoning_effort")),
        "{v}"
    );
    assert!(words < 6, "{short}");
    let (st, long) = post(
        &s,
        "/v1/chat/completions",
        with_fields(ask.clone(), json!({"min_tokens": 6})),
    )
    .await;
    assert_eq!(st, 200, "{long}");
    assert!(
        long["usage"]["completion_tokens"].as_u64().unwrap() >= 6,
        "{long}"
    );
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        with_fields(ask, json!({"min_tokens": 13})),
    )
    .await;
    assert_eq!(
        (st, &v["error"]["param"]),
        (400, &json!("min_tokens")),
        "{v}"
    );

    // stop_token_ids end the answer at a token; include_stop_str_in_output keeps a stop string.
    let count = json!({"prompt": "1, 2, 3, 4,", "max_tokens": 10, "temperature": 0});
    let (_, plain) = post(&s, "/v1/completions", count.clone()).await;
    let plain = plain["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(plain.starts_with(" 5, 6, 7"), "{plain}");
    let (_, comma) = post(&s, "/tokenize", json!({"prompt": ","})).await;
    let (st, v) = post(
        &s,
        "/v1/completions",
        with_fields(count.clone(), json!({"stop_token_ids": comma["tokens"]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], " 5", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let (_, v) = post(
        &s,
        "/v1/completions",
        with_fields(
            count.clone(),
            json!({"stop": [" 7"], "include_stop_str_in_output": true}),
        ),
    )
    .await;
    assert_eq!(v["choices"][0]["text"], " 5, 6, 7", "{v}");
    let (st, v) = post(
        &s,
        "/v1/completions",
        with_fields(count, json!({"stop_token_ids": [-1]})),
    )
    .await;
    assert_eq!(
        (st, &v["error"]["param"]),
        (400, &json!("stop_token_ids")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_server_native_endpoints() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    // The same gap as a text completion with `suffix`: the same prompt, the same fill. Each
    // computes its whole prompt (`cache_prompt: false`), so both run the same products
    // (`SAME_PASSES`).
    let (_, completion) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "def add(a, b):\n    return ", "suffix": "\n\n\nprint(add(2, 3))\n",
               "max_tokens": 16, "temperature": 0, "cache_prompt": false}),
    )
    .await;
    let ask = json!({"input_prefix": "def add(a, b):\n", "prompt": "    return ",
                     "input_suffix": "\n\n\nprint(add(2, 3))\n", "n_predict": 16, "temperature": 0,
                     "cache_prompt": false});
    let (st, v) = post(&s, "/infill", ask.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["content"], completion["choices"][0]["text"], "{v}");
    assert_eq!(v["tokens_evaluated"], completion["usage"]["prompt_tokens"]);
    assert_eq!(v["stop"], true);
    assert_eq!(v["stop_type"], "eos", "{v}");
    let content = v["content"].as_str().unwrap();
    assert_eq!(v["has_new_line"], content.contains('\n'), "{v}");
    assert!(v["timings"]["predicted_n"].as_u64().unwrap() > 0, "{v}");

    // Streamed: `data:` pieces, then the closing object.
    let events = sse(
        &s,
        "/infill",
        with_fields(ask.clone(), json!({"stream": true})),
    )
    .await;
    let pieces: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = pieces
        .iter()
        .filter_map(|p| p["content"].as_str())
        .collect();
    assert_eq!(text, v["content"].as_str().unwrap());
    assert_eq!(pieces.last().unwrap()["stop"], true);

    // Context chunks from other files come first, in Qwen's repository layout.
    let extra = with_fields(
        ask.clone(),
        json!({"input_extra": [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n"}]}),
    );
    let (st, w) = post(&s, "/infill", extra).await;
    assert_eq!(st, 200, "{w}");
    assert!(
        w["tokens_evaluated"].as_u64() > v["tokens_evaluated"].as_u64(),
        "{w}"
    );

    // A time limit ends a long answer once a line is done.
    let (st, w) = post(
        &s,
        "/infill",
        json!({"input_prefix": "# The numbers from 1 to 500, one per line:\n1\n2\n", "input_suffix": "",
               "n_predict": 2000, "temperature": 0, "t_max_predict_ms": 1}),
    )
    .await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["stop_type"], "limit", "{w}");
    assert!(w["content"].as_str().unwrap().contains('\n'), "{w}");
    assert_eq!(w["has_new_line"], true, "{w}");
    assert!(w["timings"]["predicted_n"].as_u64().unwrap() < 2000, "{w}");

    // `n_indent`: the fill ends before a later line that starts further left than asked, so
    // an editor's fill stays in its block. The same fill without it goes on past the block.
    let block = json!({"input_prefix": "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n",
                       "prompt": "    ", "input_suffix": "", "n_predict": 48, "temperature": 0});
    let (_, free) = post(&s, "/infill", block.clone()).await;
    let free = free["content"].as_str().unwrap().to_string();
    let (st, w) = post(
        &s,
        "/infill",
        with_fields(block.clone(), json!({"n_indent": 4})),
    )
    .await;
    assert_eq!(st, 200, "{w}");
    let bounded = w["content"].as_str().unwrap();
    let dedented = |text: &str| {
        text.split('\n')
            .skip(1)
            .any(|l| !l.trim().is_empty() && !l.starts_with("    "))
    };
    assert!(
        dedented(&free),
        "the free fill stays in the block: {free:?}"
    );
    assert!(!dedented(bounded), "{bounded:?}");
    assert!(free.starts_with(bounded), "{bounded:?} vs {free:?}");
    assert_eq!(w["stop_type"], "limit", "{w}");
    let pieces: Vec<Value> = sse(
        &s,
        "/infill",
        with_fields(block, json!({"n_indent": 4, "stream": true})),
    )
    .await
    .iter()
    .map(|e| serde_json::from_str(e).unwrap())
    .collect();
    let streamed: String = pieces
        .iter()
        .filter_map(|p| p["content"].as_str())
        .collect();
    assert_eq!(streamed, bounded);

    // llama.vim's request: its samplers end with llama.cpp's infill sampler, the closing
    // object holds the `response_fields` it reads; `cache_prompt` and `t_max_prompt_ms` are
    // let be (the prefix cache always serves, prompts are not cut short).
    let vim = json!({"input_prefix": "def add(a, b):\n", "prompt": "    return ",
                     "input_suffix": "\n\n\nprint(add(2, 3))\n", "input_extra": [],
                     "n_predict": 32, "n_indent": 4, "top_k": 40, "top_p": 0.99,
                     "samplers": ["top_k", "top_p", "infill"], "stream": false, "seed": 1,
                     "cache_prompt": true, "t_max_prompt_ms": 500, "t_max_predict_ms": 1000,
                     "response_fields": ["content", "timings/prompt_n"]});
    let (st, w) = post(&s, "/infill", vim).await;
    assert_eq!(st, 200, "{w}");
    assert!(w["content"].as_str().unwrap().contains("a + b"), "{w}");
    // `response_fields`: those fields alone, nested ones under their path.
    assert_eq!(w.as_object().unwrap().len(), 2, "{w}");
    assert!(w["timings/prompt_n"].as_u64().unwrap() > 0, "{w}");

    // llama.vim's ring buffer: context chunks sent with `n_predict: 0` are computed into the
    // cache and nothing is generated; the fill that follows finds them there.
    let chunk = "def mul(a, b):\n    return a * b\n\n\ndef div(a, b):\n    return a / b\n";
    let extra = json!([{"filename": "ops.py", "text": chunk.repeat(4)}]);
    let ring = json!({"input_prefix": "", "input_suffix": "", "input_extra": extra, "prompt": "",
                      "n_predict": 0, "temperature": 0.0, "samplers": ["temperature"],
                      "cache_prompt": true, "t_max_prompt_ms": 1, "t_max_predict_ms": 1,
                      "response_fields": [""]});
    let (st, w) = post(&s, "/infill", ring).await;
    assert_eq!((st, &w), (200, &json!({})), "{w}");
    let fill = with_fields(
        ask.clone(),
        json!({"input_extra": extra, "cache_prompt": true}),
    );
    let (st, w) = post(&s, "/infill", fill).await;
    assert_eq!(st, 200, "{w}");
    assert!(
        w["tokens_cached"].as_u64().unwrap() >= 32,
        "the ring's chunk was cached: {w}"
    );
    let (_, w) = post(
        &s,
        "/completion",
        json!({"prompt": "1, 2, 3,", "n_predict": 0}),
    )
    .await;
    assert_eq!(
        (&w["content"], &w["tokens_predicted"]),
        (&json!(""), &json!(0)),
        "{w}"
    );

    // Too much asked for is the client's error.
    let (st, w) = post(
        &s,
        "/infill",
        with_fields(ask, json!({"n_predict": 100_000})),
    )
    .await;
    assert_eq!(
        (st, &w["error"]["param"]),
        (400, &json!("n_predict")),
        "{w}"
    );

    // /completion: the text completion of /v1/completions, in llama-server's shape; token
    // prompts and GBNF grammars too.
    let (_, want) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "1, 2, 3, 4,", "max_tokens": 8, "temperature": 0}),
    )
    .await;
    let (st, v) = post(
        &s,
        "/completion",
        json!({"prompt": "1, 2, 3, 4,", "n_predict": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["content"], want["choices"][0]["text"]);
    assert_eq!(v["stop_type"], "limit", "{v}");
    let (_, t) = post(&s, "/tokenize", json!({"prompt": "1, 2, 3, 4,"})).await;
    let (_, by_ids) = post(
        &s,
        "/completion",
        json!({"prompt": t["tokens"], "n_predict": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(by_ids["content"], v["content"]);
    let (st, g) = post(
        &s,
        "/completion",
        json!({"prompt": "Is the sky blue? Answer:", "n_predict": 8, "temperature": 0,
               "grammar": "root ::= \" yes\" | \" no\""}),
    )
    .await;
    assert_eq!(st, 200, "{g}");
    assert!(
        ["yes", "no"].contains(&g["content"].as_str().unwrap().trim()),
        "{g}"
    );
    // A list of prompts is answered as a list, each as it would be alone, in order; a list
    // of texts and ids mixed is one prompt.
    let second = json!({"prompt": "a, b, c,", "n_predict": 8, "temperature": 0});
    let (_, alone) = post(&s, "/completion", second).await;
    let ids = t["tokens"].as_array().unwrap();
    let (st, both) = post(
        &s,
        "/completion",
        json!({"prompt": [[ids[0], ids[1]], "a, b, c,"], "n_predict": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(st, 200, "{both}");
    let both = both.as_array().expect("one answer per prompt");
    assert_eq!(both.len(), 2);
    assert_eq!(
        (&both[0]["index"], &both[1]["index"]),
        (&json!(0), &json!(1))
    );
    assert_eq!(both[0]["tokens_evaluated"], 2);
    assert_eq!(both[1]["content"], alone["content"], "{both:?}");
    let mut mixed = vec![json!("1, 2,")];
    let (_, tail) = post(&s, "/tokenize", json!({"content": " 3, 4,"})).await;
    mixed.extend(tail["tokens"].as_array().unwrap().iter().cloned());
    let (st, m) = post(
        &s,
        "/completion",
        json!({"prompt": mixed, "n_predict": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["content"], v["content"], "{m}");
    // The OpenAI endpoint reads the same forms, as llama-server's does.
    let (st, o) = post(
        &s,
        "/v1/completions",
        json!({"prompt": [mixed.clone(), [ids[0], ids[1]]], "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(st, 200, "{o}");
    assert_eq!(o["choices"][0]["text"], v["content"], "{o}");
    assert_eq!(o["choices"][1]["index"], 1, "{o}");
    let (st, o) = post(
        &s,
        "/v1/completions",
        json!({"prompt": mixed, "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!((st, &o["choices"][0]["text"]), (200, &v["content"]), "{o}");
    // Streamed: every piece names its prompt; each prompt's pieces spell its answer.
    let pieces: Vec<Value> = sse(
        &s,
        "/completion",
        json!({"prompt": ["1, 2, 3, 4,", "a, b, c,"], "n_predict": 8, "temperature": 0,
               "stream": true}),
    )
    .await
    .iter()
    .map(|e| serde_json::from_str(e).unwrap())
    .collect();
    for (index, want) in [(0, &v), (1, &alone)] {
        let own = pieces.iter().filter(|p| p["index"] == index);
        let text: String = own.clone().filter_map(|p| p["content"].as_str()).collect();
        assert_eq!(text, want["content"].as_str().unwrap(), "{pieces:?}");
        assert_eq!(own.filter(|p| p["stop"] == true).count(), 1, "{pieces:?}");
    }
    for bad in [
        json!([]),
        json!([{"a": 1}]),
        json!(null),
        json!([["a", [1]]]),
    ] {
        let (st, g) = post(&s, "/completion", json!({"prompt": bad, "n_predict": 4})).await;
        assert_eq!(
            (st, &g["error"]["param"]),
            (400, &json!("prompt")),
            "{bad}: {g}"
        );
    }

    // /props tells llama-server's clients the context and the parallel sequences.
    let (st, props) = s.get("/props").await;
    assert_eq!(st, 200, "{props}");
    let (_, models) = s.get("/v1/models").await;
    assert_eq!(
        props["default_generation_settings"]["n_ctx"],
        models["data"][0]["max_model_len"]
    );
    assert!(props["total_slots"].as_u64().unwrap() >= 1, "{props}");
    assert!(
        props["chat_template"]
            .as_str()
            .unwrap()
            .contains("im_start"),
        "{props}"
    );
}

/// The bytes of a chat answer's tokens, joined: its text's bytes, even where one character
/// (an emoji) spans tokens whose own text cannot show it.
fn joined_bytes(logprobs: &Value) -> (Vec<u8>, bool) {
    let mut joined = Vec::new();
    let mut split = false;
    for t in logprobs["content"].as_array().unwrap() {
        let bytes: Vec<u8> = t["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        split |= std::str::from_utf8(&bytes).is_err();
        joined.extend(bytes);
    }
    (joined, split)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_ids_probabilities_and_bytes() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    // llama-server's `n_probs` and `return_tokens` on /completion.
    let ask = json!({"prompt": "1, 2, 3, 4,", "n_predict": 4, "temperature": 0,
                     "n_probs": 3, "return_tokens": true});
    let (st, v) = post(&s, "/completion", ask.clone()).await;
    assert_eq!(st, 200, "{v}");
    let ids: Vec<u64> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, v["tokens_predicted"].as_u64().unwrap());
    let probs = v["completion_probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), ids.len(), "{v}");
    let mut bytes = Vec::new();
    for (p, &id) in probs.iter().zip(&ids) {
        assert_eq!(p["id"], id, "{p}");
        let top = p["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{p}");
        assert_eq!(top[0]["id"], id, "greedy picks the first: {p}");
        assert_eq!(top[0]["logprob"], p["logprob"], "{p}");
        assert!(p["logprob"].as_f64().unwrap() <= 0.0, "{p}");
        bytes.extend(
            p["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8),
        );
    }
    assert_eq!(bytes, v["content"].as_str().unwrap().as_bytes());
    // The same log-probabilities as the OpenAI endpoint's.
    let (_, openai) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "1, 2, 3, 4,", "max_tokens": 4, "temperature": 0, "logprobs": 3,
               "cache_prompt": false}),
    )
    .await;
    let want = openai["choices"][0]["logprobs"]["token_logprobs"]
        .as_array()
        .unwrap();
    for (p, w) in probs.iter().zip(want) {
        let (p, w) = (p["logprob"].as_f64().unwrap(), w.as_f64().unwrap());
        assert!((p - w).abs() < 1e-5, "{p} vs {w}");
    }
    // Streamed: each piece carries its tokens, the closing object none left.
    let pieces: Vec<Value> = sse(&s, "/completion", with_fields(ask, json!({"stream": true})))
        .await
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let streamed: Vec<u64> = pieces
        .iter()
        .flat_map(|p| p["tokens"].as_array().unwrap().clone())
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(streamed, ids);
    let listed: usize = pieces
        .iter()
        .map(|p| p["completion_probabilities"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(listed, ids.len());
    // Ids alone; neither: `tokens` empty, no probabilities.
    let (_, v) = post(
        &s,
        "/completion",
        json!({"prompt": "1, 2,", "n_predict": 3, "temperature": 0, "return_tokens": true}),
    )
    .await;
    assert_eq!(v["tokens"].as_array().unwrap().len(), 3, "{v}");
    assert!(v.get("completion_probabilities").is_none(), "{v}");
    let (_, v) = post(
        &s,
        "/completion",
        json!({"prompt": "1, 2,", "n_predict": 3}),
    )
    .await;
    assert_eq!(v["tokens"], json!([]), "{v}");
    let (st, e) = post(&s, "/completion", json!({"prompt": "x", "n_probs": 1000})).await;
    assert_eq!((st, &e["error"]["param"]), (400, &json!("n_probs")), "{e}");

    // `post_sampling_probs`: the probabilities each token was drawn with. Top-k 3 leaves
    // three candidates, whose probabilities (at temperature 0.7) make the whole; a greedy
    // pick is certain.
    let (st, v) = post(
        &s,
        "/completion",
        json!({"prompt": "My favourite colour is", "n_predict": 6, "temperature": 0.7,
               "top_k": 3, "seed": 5, "n_probs": 5, "post_sampling_probs": true}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    for p in v["completion_probabilities"].as_array().unwrap() {
        assert!(p.get("logprob").is_none(), "{p}");
        let top = p["top_probs"].as_array().unwrap();
        assert!((1..=3).contains(&top.len()), "{p}");
        let total: f64 = top.iter().map(|t| t["prob"].as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{p}");
        let chosen = top
            .iter()
            .find(|t| t["id"] == p["id"])
            .expect("drawn among them");
        assert_eq!(chosen["prob"], p["prob"], "{p}");
    }
    let (_, v) = post(
        &s,
        "/completion",
        json!({"prompt": "1, 2, 3, 4,", "n_predict": 2, "temperature": 0, "n_probs": 2,
               "post_sampling_probs": true}),
    )
    .await;
    for p in v["completion_probabilities"].as_array().unwrap() {
        assert_eq!(p["prob"], 1.0, "{p}");
        assert_eq!(
            p["top_probs"],
            json!([{"id": p["id"], "token": p["token"],
                                           "bytes": p["bytes"], "prob": 1.0}])
        );
    }

    // A flamingo is two tokens in Qwen's vocabulary, neither a whole character: each lists
    // its own bytes, and as `token` the text they hold whole (none).
    let (_, v) = post(
        &s,
        "/completion",
        json!({"prompt": "Flamingos: 🦩🦩🦩🦩🦩🦩", "n_predict": 4, "temperature": 0, "n_probs": 1}),
    )
    .await;
    let probs = v["completion_probabilities"].as_array().unwrap();
    let bytes: Vec<u8> = probs
        .iter()
        .flat_map(|p| p["bytes"].as_array().unwrap().clone())
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(bytes, v["content"].as_str().unwrap().as_bytes(), "{v}");
    assert!(
        probs
            .iter()
            .any(|p| p["token"] == "" && p["bytes"] != json!([])),
        "{v}"
    );

    // Chat logprobs give each token's own bytes too: joined, they spell the answer.
    let messages = json!([
        {"role": "user", "content": "Draw some flamingos."},
        {"role": "assistant", "content": "🦩🦩🦩"},
    ]);
    let (st, v) = post(
        &s,
        "/v1/chat/completions",
        json!({"messages": messages, "continue_final_message": true, "add_generation_prompt": false,
               "max_tokens": 6, "temperature": 0, "logprobs": true}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let (joined, split) = joined_bytes(&v["choices"][0]["logprobs"]);
    assert_eq!(joined, content.as_bytes(), "{v}");
    assert!(split, "a flamingo spans byte tokens: {v}");
}

/// llama-server's `/tokenize` (`content`, mixed lists, `with_pieces`), `/detokenize`'s
/// `content`, `/apply-template` and `input_tokens`, beside vLLM's forms of the first two; its
/// other names for endpoints (`/completions`, `/chat/completions`, `/models`, `/v1/health`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_server_tokenize_and_apply_template() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let (st, vllm) = post(&s, "/tokenize", json!({"prompt": "Hello world"})).await;
    assert_eq!(st, 200, "{vllm}");
    let (st, llama) = post(&s, "/tokenize", json!({"content": "Hello world"})).await;
    assert_eq!(st, 200, "{llama}");
    assert_eq!(llama["tokens"], vllm["tokens"], "{llama}");
    let ids = vllm["tokens"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2, "{vllm}");
    let (_, pieces) = post(
        &s,
        "/tokenize",
        json!({"content": "Hello world", "with_pieces": true}),
    )
    .await;
    assert_eq!(
        pieces["tokens"],
        json!([{"id": ids[0], "piece": "Hello"}, {"id": ids[1], "piece": " world"}]),
        "{pieces}"
    );
    // Texts and ids mixed.
    let (_, mixed) = post(&s, "/tokenize", json!({"content": ["Hello", ids[1]]})).await;
    assert_eq!(mixed["tokens"], vllm["tokens"], "{mixed}");
    // A piece that is part of a character comes as its bytes.
    let (_, flamingo) = post(
        &s,
        "/tokenize",
        json!({"content": "🦩", "with_pieces": true}),
    )
    .await;
    let bytes: Vec<u8> = flamingo["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["piece"].as_array().unwrap().clone())
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(bytes, "🦩".as_bytes(), "{flamingo}");
    let (_, text) = post(&s, "/detokenize", json!({"tokens": ids})).await;
    assert_eq!(
        (&text["content"], &text["prompt"]),
        (&json!("Hello world"), &json!("Hello world"))
    );
    // A special token's text is that token, or with `parse_special: false` its characters.
    for (form, text) in [("content", "<|im_end|>"), ("prompt", "<|im_end|>")] {
        let (_, special) = post(&s, "/tokenize", json!({form: text})).await;
        assert_eq!(special["tokens"].as_array().unwrap().len(), 1, "{special}");
        let (st, plain) = post(&s, "/tokenize", json!({form: text, "parse_special": false})).await;
        assert_eq!(st, 200, "{plain}");
        assert!(plain["tokens"].as_array().unwrap().len() > 1, "{plain}");
        let (_, back) = post(&s, "/detokenize", json!({"tokens": plain["tokens"]})).await;
        assert_eq!(back["content"], text);
    }
    for (body, field) in [
        (json!({"content": [true]}), json!("content")),
        (json!({"content": [1_000_000_000]}), json!("content")),
    ] {
        let (st, e) = post(&s, "/tokenize", body.clone()).await;
        assert_eq!((st, &e["error"]["param"]), (400, &field), "{body}: {e}");
    }

    let messages = json!([{"role": "user", "content": "hi"}]);
    let (st, v) = post(&s, "/apply-template", json!({"messages": messages})).await;
    assert_eq!(st, 200, "{v}");
    let prompt = v["prompt"].as_str().unwrap();
    assert!(
        prompt.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt:?}"
    );
    let (_, chat) = post(&s, "/tokenize", json!({"messages": messages})).await;
    let (_, templated) = post(&s, "/tokenize", json!({"content": prompt})).await;
    assert_eq!(chat["tokens"], templated["tokens"]);
    let (st, e) = post(&s, "/apply-template", json!({"prompt": "hi"})).await;
    assert_eq!((st, &e["error"]["param"]), (400, &json!("messages")), "{e}");
    let (st, n) = post(
        &s,
        "/v1/chat/completions/input_tokens",
        json!({"messages": messages}),
    )
    .await;
    assert_eq!(st, 200, "{n}");
    assert_eq!(n["input_tokens"], chat["count"], "{n}");
    // The Responses form of the same prompt.
    let (st, r) = post(&s, "/v1/responses/input_tokens", json!({"input": "hi"})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(
        (&r["object"], &r["input_tokens"]),
        (&json!("response.input_tokens"), &chat["count"]),
        "{r}"
    );
    let (st, e) = post(
        &s,
        "/v1/responses/input_tokens",
        json!({"input": "hi", "previous_response_id": "resp_missing"}),
    )
    .await;
    assert_eq!(
        (st, &e["error"]["param"]),
        (400, &json!("previous_response_id")),
        "{e}"
    );

    // llama-server's other names for the same endpoints.
    let (st, _) = s.get("/v1/health").await;
    assert_eq!(st, 200);
    let (_, listed) = s.get("/models").await;
    let (_, v1) = s.get("/v1/models").await;
    assert_eq!(listed["data"], v1["data"]);
    let ask = json!({"prompt": "1, 2, 3,", "n_predict": 4, "temperature": 0});
    let (_, legacy) = post(&s, "/completion", ask.clone()).await;
    let (st, plural) = post(&s, "/completions", ask).await;
    assert_eq!(
        (st, &plural["content"]),
        (200, &legacy["content"]),
        "{plural}"
    );
    let chat_body = json!({"messages": messages, "max_tokens": 4, "temperature": 0});
    let (st, short) = post(&s, "/chat/completions", chat_body.clone()).await;
    let (_, long) = post(&s, "/v1/chat/completions", chat_body).await;
    assert_eq!(st, 200, "{short}");
    assert_eq!(
        short["choices"][0]["message"]["content"],
        long["choices"][0]["message"]["content"]
    );
}

/// llama-server's `timings` (its web UI and proxies read tokens/s from them): on the whole
/// answer and the last streamed chunk of every endpoint, on each chunk with
/// `timings_per_token`; their counts are the usage's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llama_server_timings() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let chat = json!({"messages": [{"role": "user", "content": "Count to twenty."}],
                      "max_tokens": 12, "temperature": 0});
    let agree = |t: &Value, usage: &Value| {
        assert_eq!(t["predicted_n"], usage["completion_tokens"], "{t} {usage}");
        let prompt = t["prompt_n"].as_u64().unwrap() + t["cache_n"].as_u64().unwrap();
        assert_eq!(
            prompt,
            usage["prompt_tokens"].as_u64().unwrap(),
            "{t} {usage}"
        );
        assert!(t["predicted_per_second"].as_f64().unwrap() > 0.0, "{t}");
        assert!(t["prompt_ms"].as_f64().unwrap() > 0.0, "{t}");
    };
    let (st, v) = post(&s, "/v1/chat/completions", chat.clone()).await;
    assert_eq!(st, 200, "{v}");
    agree(&v["timings"], &v["usage"]);
    let (_, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "1, 2, 3,", "max_tokens": 6, "temperature": 0}),
    )
    .await;
    agree(&v["timings"], &v["usage"]);
    // A drafted answer (a prediction's drafts start trusted, where prompt lookup's depend on
    // how earlier drafts fared): `draft_n` tells how many tokens were drafted and
    // `draft_n_accepted` how many of them were kept.
    let cycle = "red, green, blue, red, green, blue, red, green, blue, red, green, blue,";
    let (_, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": cycle, "max_tokens": 24, "temperature": 0,
               "prediction": {"type": "content", "content": format!(" {cycle}")}}),
    )
    .await;
    let t = &v["timings"];
    let (drafted, kept) = (t["draft_n"].as_u64(), t["draft_n_accepted"].as_u64());
    assert!(
        drafted.is_some_and(|d| d > 0) && kept.is_some_and(|k| k > 0 && k <= drafted.unwrap()),
        "{v}"
    );

    // Streamed: the last chunk alone (the usage chunk when asked for).
    let plain = sse_json(
        &s,
        "/v1/chat/completions",
        with_fields(chat.clone(), json!({"stream": true})),
    )
    .await;
    let timed: Vec<&Value> = plain
        .iter()
        .filter(|c| c.get("timings").is_some())
        .collect();
    assert_eq!(timed.len(), 1, "{plain:?}");
    assert!(std::ptr::eq(timed[0], plain.last().unwrap()));
    assert_eq!(timed[0]["timings"]["predicted_n"], 12, "{plain:?}");
    let with_usage = sse_json(
        &s,
        "/v1/chat/completions",
        with_fields(
            chat.clone(),
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    let last = with_usage.last().unwrap();
    agree(&last["timings"], &last["usage"]);
    assert_eq!(
        with_usage
            .iter()
            .filter(|c| c.get("timings").is_some())
            .count(),
        1
    );
    // Every chunk with `timings_per_token`, counting up to the answer's length.
    let each = sse_json(
        &s,
        "/v1/chat/completions",
        with_fields(chat, json!({"stream": true, "timings_per_token": true})),
    )
    .await;
    let counts: Vec<u64> = each
        .iter()
        .skip(1) // the role's opening chunk comes before any token
        .map(|c| {
            c["timings"]["predicted_n"]
                .as_u64()
                .expect("timings on every chunk")
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!((counts[0], *counts.last().unwrap()), (1, 12), "{counts:?}");

    // llama-server's own endpoint: its pieces too.
    let pieces = sse_json(
        &s,
        "/completion",
        json!({"prompt": "1, 2, 3,", "n_predict": 6, "temperature": 0, "stream": true,
                   "timings_per_token": true}),
    )
    .await;
    assert!(
        pieces
            .iter()
            .all(|p| p["timings"]["predicted_n"].as_u64().is_some()),
        "{pieces:?}"
    );
    let last = pieces.last().unwrap();
    assert_eq!(last["timings"]["predicted_n"], last["tokens_predicted"]);
    assert_eq!(last["timings"]["predicted_n"], 6);
}

/// `return_progress`: a stream tells how much of a long prompt is computed, chunk by chunk,
/// before the answer (llama-server's `prompt_progress`); a stream that does not ask is not told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_prompts_tell_their_progress() {
    let s = Server::start("qwen2.5-0.5b", &["--max-num-batched-tokens", "64"]).await;
    let long: String = (1..=90).map(|i| format!("{i}, ")).collect();
    let ask = json!({"prompt": long, "max_tokens": 3, "temperature": 0, "stream": true,
                     "stream_options": {"include_usage": true}});
    let told = sse_json(
        &s,
        "/v1/completions",
        with_fields(ask.clone(), json!({"return_progress": true})),
    )
    .await;
    let progress: Vec<&Value> = told
        .iter()
        .filter_map(|c| c.get("prompt_progress"))
        .collect();
    let total = told.last().unwrap()["usage"]["prompt_tokens"]
        .as_u64()
        .unwrap();
    assert!(total > 64 * 3, "{total}");
    assert!(progress.len() as u64 >= total / 64, "{progress:?}");
    let processed: Vec<u64> = progress
        .iter()
        .map(|p| p["processed"].as_u64().unwrap())
        .collect();
    assert!(processed.windows(2).all(|w| w[0] < w[1]), "{processed:?}");
    assert_eq!(*processed.last().unwrap(), total);
    assert!(progress
        .iter()
        .all(|p| p["total"] == total && p["time_ms"].as_f64().is_some()));
    let first_text = told
        .iter()
        .position(|c| c["choices"][0]["text"].is_string())
        .unwrap();
    let last_progress = told
        .iter()
        .rposition(|c| c.get("prompt_progress").is_some())
        .unwrap();
    assert!(
        last_progress < first_text,
        "progress comes before the answer"
    );
    // The prompt again: the prefix cache serves most of it, and the progress says so.
    let again = sse_json(
        &s,
        "/v1/completions",
        with_fields(ask.clone(), json!({"return_progress": true})),
    )
    .await;
    let first = again.iter().find_map(|c| c.get("prompt_progress")).unwrap();
    assert!(first["cache"].as_u64().unwrap() >= 64, "{first}");
    // Not asked: not told.
    let quiet = sse_json(&s, "/v1/completions", ask).await;
    assert!(quiet.iter().all(|c| c.get("prompt_progress").is_none()));
    // Chat and llama-server's /completion tell it too.
    let chat = sse_json(
        &s,
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": format!("Continue: {long}")}],
                   "max_tokens": 2, "stream": true, "return_progress": true}),
    )
    .await;
    assert!(
        chat.iter()
            .filter(|c| c.get("prompt_progress").is_some())
            .count()
            >= 3,
        "{chat:?}"
    );
    let native = sse_json(
            &s,
            "/completion",
            json!({"prompt": format!("{long}91,"), "n_predict": 2, "stream": true, "return_progress": true}),
        ).await;
    let native_progress: Vec<&Value> = native
        .iter()
        .filter_map(|c| c.get("prompt_progress"))
        .collect();
    assert!(!native_progress.is_empty(), "{native:?}");
    assert_eq!(
        native_progress.last().unwrap()["processed"],
        native_progress.last().unwrap()["total"]
    );
}

/// llama-server's `/slots`: a slot per sequence the engine runs at once; a running request
/// holds one (its progress in `next_token`), `fail_on_no_slot` answers 503 when none is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_show_the_running_requests() {
    let s = Server::start("qwen2.5-0.5b", &["--max-num-seqs", "2"]).await;
    let (st, idle) = s.get("/slots").await;
    assert_eq!(st, 200, "{idle}");
    let idle = idle.as_array().unwrap().clone();
    assert_eq!(idle.len(), 2);
    for (i, slot) in idle.iter().enumerate() {
        assert_eq!(
            (&slot["id"], &slot["is_processing"]),
            (&json!(i), &json!(false))
        );
        assert!(slot["n_ctx"].as_u64().unwrap() > 0, "{slot}");
    }
    let (st, _) = s.get("/slots?fail_on_no_slot=1").await;
    assert_eq!(st, 200);

    let long = json!({"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true,
                      "temperature": 0.7, "top_k": 20, "stream": true});
    let client = reqwest::Client::new();
    let run = |seed: u64| {
        let request = client
            .post(s.url("/v1/completions"))
            .json(&with_fields(long.clone(), json!({"seed": seed})));
        tokio::spawn(async move { request.send().await.unwrap().text().await })
    };
    let first = run(1);
    let mut seen = None;
    for _ in 0..400 {
        let (_, slots) = s.get("/slots").await;
        let busy: Vec<Value> = slots
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["is_processing"] == true)
            .cloned()
            .collect();
        if busy.len() == 1 && busy[0]["next_token"][0]["n_decoded"].as_u64() > Some(0) {
            seen = Some(busy[0].clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let busy = seen.expect("the running request holds a slot");
    assert_eq!(busy["id"], 0, "the lowest free slot: {busy}");
    assert_eq!(busy["params"]["n_predict"], 400, "{busy}");
    assert_eq!(busy["params"]["top_k"], 20, "{busy}");
    let remain = busy["next_token"][0]["n_remain"].as_u64().unwrap();
    let decoded = busy["next_token"][0]["n_decoded"].as_u64().unwrap();
    assert_eq!(remain + decoded, 400, "{busy}");
    assert!(
        busy["request_id"].as_str().unwrap().starts_with("cmpl-"),
        "{busy}"
    );

    // Both slots busy: no slot for a load balancer's probe.
    let second = run(2);
    let mut full = false;
    for _ in 0..400 {
        let (st, v) = s.get("/slots?fail_on_no_slot=1").await;
        if st == 503 {
            assert!(
                v["error"]["message"].as_str().unwrap().contains("no slot"),
                "{v}"
            );
            full = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(full, "two running requests fill two slots");
    let (_, slots) = s.get("/slots").await;
    let first_holder = slots[0]["id_task"].clone();
    assert_eq!(slots[1]["is_processing"], true, "{slots}");
    assert_eq!(
        first_holder, busy["id_task"],
        "a request keeps its slot: {slots}"
    );
    // Clients that go away free their slots.
    first.abort();
    second.abort();
    let mut freed = false;
    for _ in 0..400 {
        let (_, slots) = s.get("/slots").await;
        if slots
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["is_processing"] == false)
        {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(freed, "the slots are free again");

    // `--no-slots`: the endpoint is off, as llama-server answers it then.
    let off = Server::start("qwen2.5-0.5b", &["--no-slots"]).await;
    let (st, e) = off.get("/slots").await;
    assert_eq!(st, 501, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-slots"),
        "{e}"
    );
}

/// `logit_bias` in llama-server's forms beside OpenAI's: pairs, a text for its tokens,
/// `false` to ban; on `/completion` as on the OpenAI endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logit_bias_in_every_form() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let ask =
        json!({"prompt": "1, 2, 3, 4,", "n_predict": 1, "temperature": 0, "return_tokens": true});
    let (_, plain) = post(&s, "/completion", ask.clone()).await;
    let first = plain["tokens"][0].clone();
    let text = plain["content"].as_str().unwrap().to_string();
    let banned = |bias: Value| with_fields(ask.clone(), json!({"logit_bias": bias}));
    for bias in [
        json!([[first, false]]),
        json!({first.to_string(): false}),
        json!([[text, false]]),
        json!([[first, -100]]),
    ] {
        let (st, v) = post(&s, "/completion", banned(bias.clone())).await;
        assert_eq!(st, 200, "{v}");
        assert_ne!(v["tokens"][0], first, "{bias}: {v}");
    }
    // A text's bias raises its tokens: " 7" over " 5".
    let (_, seven) = post(&s, "/tokenize", json!({"content": " 7"})).await;
    let (st, v) = post(&s, "/completion", banned(json!([[" 7", 30]]))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["tokens"][0], seven["tokens"][0], "{v}");
    // The OpenAI endpoint reads the same forms.
    let (st, v) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "1, 2, 3, 4,", "max_tokens": 1, "temperature": 0,
               "logit_bias": [[first, false]]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_ne!(v["choices"][0]["text"], text.as_str(), "{v}");
    let (st, e) = post(&s, "/completion", banned(json!([[first, true]]))).await;
    assert_eq!(st, 400, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("logit_bias"), "{e}");

    // llama-server's endpoints read a body whatever its type says (`curl -d` sends a form's);
    // the OpenAI ones keep to JSON.
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/completion", json!({"prompt": "1, 2,", "n_predict": 1})),
        ("/tokenize", json!({"content": "hi"})),
        ("/embedding", json!({"content": "hi"})),
    ] {
        let r = client
            .post(s.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = client
        .post(s.url("/v1/completions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(json!({"prompt": "1, 2,", "max_tokens": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}
