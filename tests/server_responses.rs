//! `/v1/responses` on the real server: each request answers as the chat request it means
//! (same tokens, same text), whole or streamed as typed events; calls are `function_call`
//! items, `text.format` holds the answer to a schema, logprobs come with `include`; kept
//! responses continue with `previous_response_id` as the whole conversation would, and
//! conversations (`/v1/conversations`) gain the items of the responses that join them;
//! background responses are polled, cancelled and, streamed, picked up again; what the server
//! cannot honour is refused by field.
mod common;

use common::server::Server;
use common::weather_call_chat;
use serde_json::{json, Value};

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather",
           "description": "Get the current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

/// The events of a streamed response, checked for their framing: each SSE event is named
/// after its `type`, sequence numbers count from 0.
async fn events(s: &Server, body: &Value) -> Vec<Value> {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let (status, text) = s.post_for_text("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    parse_events(&text, 0)
}

/// The events of an SSE body whose first event is number `first`.
fn parse_events(text: &str, first: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_string());
        } else if let Some(data) = line.strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
            assert_eq!(name.take().as_deref(), event["type"].as_str(), "{data}");
            assert_eq!(event["sequence_number"], first + out.len(), "{data}");
            out.push(event);
        }
    }
    out
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap())
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_answer_as_the_chat_request_they_mean() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;

    // A conversation that went through a call, as responses and as chat.
    let conversation = json!({
        "instructions": "Answer in one short sentence.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is the weather like in Paris today?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "{\"temperature_c\": 21, \"sky\": \"sunny\"}"},
        ],
        "tools": [weather_tool()], "tool_choice": "none", "max_output_tokens": 24, "temperature": 0,
        "metadata": {"run": "test"},
    });
    let chat = weather_call_chat("call_1", "{\"city\": \"Paris\"}");
    let (st, want) = s.post("/v1/chat/completions", &chat).await;
    assert_eq!(st, 200, "{want}");
    let (st, got) = s.post("/v1/responses", &conversation).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["object"], "response");
    assert!(got["id"].as_str().unwrap().starts_with("resp_"), "{got}");
    assert_eq!(got["metadata"], json!({"run": "test"}));
    assert_eq!(
        got["tools"][0]["name"], "get_weather",
        "settings are echoed"
    );
    assert_eq!(
        output_text(&got),
        want["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(got["usage"]["input_tokens"], want["usage"]["prompt_tokens"]);
    assert_eq!(
        got["usage"]["output_tokens"],
        want["usage"]["completion_tokens"]
    );
    let cut_off = want["choices"][0]["finish_reason"] == "length";
    assert_eq!(
        got["status"],
        if cut_off { "incomplete" } else { "completed" }
    );
    if cut_off {
        assert_eq!(got["incomplete_details"]["reason"], "max_output_tokens");
    }

    // Streamed: created and in_progress first, the text in deltas, the same response last.
    let stream = events(&s, &conversation).await;
    let kinds: Vec<&str> = stream.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds[..2], ["response.created", "response.in_progress"]);
    assert_eq!(stream[0]["response"]["status"], "in_progress");
    let deltas: String = stream
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, output_text(&got));
    let last = stream.last().unwrap();
    let want_last = if cut_off {
        "response.incomplete"
    } else {
        "response.completed"
    };
    assert_eq!(last["type"], want_last);
    assert_eq!(output_text(&last["response"]), deltas);
    assert_eq!(last["response"]["usage"], got["usage"]);
    let done: Vec<&Value> = stream
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| &e["item"])
        .collect();
    assert_eq!(
        done,
        last["response"]["output"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>()
    );

    // A call is a function_call item, whole and streamed.
    let ask = json!({"input": "What's the weather like in Paris today?", "tools": [weather_tool()],
                     "max_output_tokens": 60, "temperature": 0});
    let (st, v) = s.post("/v1/responses", &ask).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    let calls: Vec<&Value> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert!(calls[0]["call_id"].as_str().unwrap().starts_with("call_"));
    let arguments: Value = serde_json::from_str(calls[0]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["city"], "Paris", "{v}");
    let stream = events(&s, &ask).await;
    let streamed: Vec<&Value> = stream
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.done")
        .collect();
    assert_eq!(streamed.len(), 1, "{stream:?}");
    assert_eq!(streamed[0]["arguments"], calls[0]["arguments"]);
    assert!(
        stream
            .iter()
            .all(|e| e["type"] != "response.output_text.delta"),
        "call text leaked into a message: {stream:?}"
    );

    // text.format holds the answer to the schema.
    let schema = json!({"type": "object", "properties": {"capital": {"type": "string"}},
                        "required": ["capital"], "additionalProperties": false});
    let (st, v) = s
        .post(
            "/v1/responses",
            &json!({"input": "The capital of France, as JSON.", "max_output_tokens": 40, "temperature": 0,
                    "text": {"format": {"type": "json_schema", "name": "capital", "schema": schema, "strict": true}}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let answer: Value =
        serde_json::from_str(&output_text(&v)).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert!(answer["capital"].is_string(), "{answer}");

    // Logprobs with `include`: one per generated token, with the top tokens asked for.
    let (st, v) = s
        .post(
            "/v1/responses",
            &json!({"input": "Count from 1 to 20.", "max_output_tokens": 6, "temperature": 0,
                    "include": ["message.output_text.logprobs"], "top_logprobs": 2}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let logprobs = v["output"][0]["content"][0]["logprobs"].as_array().unwrap();
    assert_eq!(logprobs.len(), 6, "{v}");
    let joined: String = logprobs
        .iter()
        .map(|l| l["token"].as_str().unwrap())
        .collect();
    assert_eq!(joined, output_text(&v));
    assert!(logprobs
        .iter()
        .all(|l| l["top_logprobs"].as_array().unwrap().len() == 2));

    // Kept responses: a continuation answers as the whole conversation sent at once.
    let first_turn =
        json!({"input": "My name is Ada. Say hello.", "max_output_tokens": 12, "temperature": 0});
    let (st, first) = s.post("/v1/responses", &first_turn).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["store"], true);
    let first_id = first["id"].as_str().unwrap();
    let (st, again) = s.get(&format!("/v1/responses/{first_id}")).await;
    assert_eq!((st, &again), (200, &first));
    let (st, listed) = s
        .get(&format!("/v1/responses/{first_id}/input_items"))
        .await;
    assert_eq!(st, 200, "{listed}");
    assert_eq!(listed["data"][0]["content"], "My name is Ada. Say hello.");
    let (st, continued) = s
        .post(
            "/v1/responses",
            &json!({"input": "What is my name?", "previous_response_id": first_id,
                    "max_output_tokens": 12, "temperature": 0}),
        )
        .await;
    assert_eq!(st, 200, "{continued}");
    assert_eq!(continued["previous_response_id"], first_id);
    let mut whole = vec![json!({"role": "user", "content": "My name is Ada. Say hello."})];
    whole.extend(first["output"].as_array().unwrap().iter().cloned());
    whole.push(json!({"role": "user", "content": "What is my name?"}));
    let (st, at_once) = s
        .post(
            "/v1/responses",
            &json!({"input": whole, "max_output_tokens": 12, "temperature": 0, "store": false}),
        )
        .await;
    assert_eq!(st, 200, "{at_once}");
    assert_eq!(at_once["store"], false);
    assert_eq!(output_text(&continued), output_text(&at_once));
    assert_eq!(
        continued["usage"]["input_tokens"],
        at_once["usage"]["input_tokens"]
    );
    let (st, _) = s
        .get(&format!(
            "/v1/responses/{}",
            at_once["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(st, 404, "`store: false` keeps nothing");
    // A streamed response is kept too, once it ends.
    let stream = events(&s, &first_turn).await;
    let streamed_id = stream.last().unwrap()["response"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = s.get(&format!("/v1/responses/{streamed_id}")).await;
    assert_eq!(st, 200);
    // Deleted, it is gone, and so is what continued from it.
    let (st, deleted) = s.delete(&format!("/v1/responses/{first_id}")).await;
    assert_eq!((st, &deleted["deleted"]), (200, &json!(true)), "{deleted}");
    let (st, _) = s.get(&format!("/v1/responses/{first_id}")).await;
    assert_eq!(st, 404);
    let (st, v) = s
        .post(
            "/v1/responses",
            &json!({"input": "And now?", "previous_response_id": continued["id"], "max_output_tokens": 4}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["param"], "previous_response_id", "{v}");

    // Refused, by field.
    for (body, param) in [
        (
            json!({"input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
        ),
        (
            json!({"input": "x", "max_output_tokens": 1_000_000}),
            "max_output_tokens",
        ),
        (
            json!({"input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"input": [{"role": "wizard", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "nonsense"}}}}),
            "text.format",
        ),
    ] {
        let (st, v) = s.post("/v1/responses", &body).await;
        assert!((400..500).contains(&st), "{body}: {st} {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    let (st, v) = s
        .post("/v1/responses", &json!({"input": "x", "model": "other"}))
        .await;
    assert_eq!((st, &v["error"]["code"]), (404, &json!("model_not_found")));
    let (st, v) = s.post("/v1/responses", &json!({"inputs": "x"})).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("input"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_auto_drops_the_oldest_turns_to_fit() {
    let s = Server::start("qwen2.5-0.5b", &["--max-model-len", "256"]).await;
    // Six turns of ~60 tokens each: more than the context.
    let mut input = Vec::new();
    for i in 0..6 {
        let words = format!("Turn {i}: {}", "lorem ipsum dolor sit amet ".repeat(10));
        input.push(json!({"role": "user", "content": words}));
        input.push(json!({"role": "assistant", "content": format!("Noted {i}.")}));
    }
    input.push(json!({"role": "user", "content": "Say OK."}));
    let body = json!({"input": input, "max_output_tokens": 8, "temperature": 0, "store": false});
    let (st, v) = s.post("/v1/responses", &body).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    let mut auto = body.clone();
    auto["truncation"] = json!("auto");
    let (st, v) = s.post("/v1/responses", &auto).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["truncation"], "auto");
    let used = v["usage"]["input_tokens"].as_u64().unwrap();
    assert!(used + 8 <= 256, "{v}");
    // It is the answer to the fewest turns dropped by hand that fit.
    let by_hand = async |dropped: usize| {
        let mut shorter = body.clone();
        shorter["input"] = json!(input[2 * dropped..].to_vec());
        s.post("/v1/responses", &shorter).await
    };
    let mut dropped = 1;
    let fitting = loop {
        let (st, w) = by_hand(dropped).await;
        if st == 200 {
            break w;
        }
        assert_eq!(w["error"]["code"], "context_length_exceeded", "{w}");
        dropped += 1;
        assert!(dropped < 6, "nothing fits");
    };
    assert_eq!(fitting["usage"]["input_tokens"], used);
    assert_eq!(fitting["output"][0]["content"], v["output"][0]["content"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_responses_are_polled_and_cancelled() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let ask = json!({"input": "Name three colors.", "max_output_tokens": 16, "temperature": 0});
    let (_, foreground) = s
        .post("/v1/responses", &with(&ask, json!({"store": false})))
        .await;
    let (st, queued) = s
        .post("/v1/responses", &with(&ask, json!({"background": true})))
        .await;
    assert_eq!(st, 200, "{queued}");
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["background"], true);
    let id = queued["id"].as_str().unwrap().to_string();
    let done = poll_until_done(&s, &id).await;
    assert_eq!(done["status"], foreground["status"], "{done}");
    assert_eq!(output_text(&done), output_text(&foreground));
    let (st, v) = s
        .post(&format!("/v1/responses/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 400, "a finished response is not running: {v}");

    // A long one, cancelled while it runs: kept as cancelled, and the engine lets it go.
    let long = with(
        &ask,
        json!({"background": true, "max_output_tokens": 3000, "ignore_eos": true}),
    );
    let (_, queued) = s.post("/v1/responses", &long).await;
    let id = queued["id"].as_str().unwrap().to_string();
    let mut running = false;
    for _ in 0..100 {
        if s.metric("candor:num_requests_running").await > 0.0 {
            running = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(running, "the background response never ran");
    let (st, cancelled) = s
        .post(&format!("/v1/responses/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (_, again) = s.get(&format!("/v1/responses/{id}")).await;
    assert_eq!(again["status"], "cancelled");
    let mut freed = false;
    for _ in 0..100 {
        if s.metric("candor:num_requests_running").await == 0.0 {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(freed, "the cancelled generation still runs");

    // A background response must be kept.
    let (st, v) = s
        .post(
            "/v1/responses",
            &with(&ask, json!({"background": true, "store": false})),
        )
        .await;
    assert_eq!(
        (st, &v["error"]["param"]),
        (400, &json!("background")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_background_responses_are_picked_up_again() {
    use futures::StreamExt;
    let mut s = Server::start("qwen2.5-0.5b", &[]).await;
    let ask = json!({"input": "Name three colors.", "max_output_tokens": 24, "temperature": 0});
    let (_, foreground) = s.post("/v1/responses", &ask).await;

    // Streamed in the background: the client reads the opening events and goes away; the
    // response runs on to the same answer.
    let (opening, _) =
        open_stream(&s, &with(&ask, json!({"background": true, "stream": true}))).await;
    let created = &opening[0];
    assert_eq!(created["type"], "response.created", "{created}");
    assert_eq!(created["response"]["status"], "queued");
    assert_eq!(created["response"]["background"], true);
    assert_eq!(opening[1]["type"], "response.queued");
    let id = created["response"]["id"].as_str().unwrap().to_string();
    let done = poll_until_done(&s, &id).await;
    assert_eq!(output_text(&done), output_text(&foreground));

    // Streamed again: every event, or those after `starting_after`.
    let again = |id: &str, query: &str| {
        let url = s.url(&format!("/v1/responses/{id}?stream=true{query}"));
        async move {
            let r = reqwest::get(url).await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let all = parse_events(&again(&id, "").await, 0);
    let types: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..3],
        [
            "response.created",
            "response.queued",
            "response.in_progress"
        ]
    );
    assert_eq!(types.last(), Some(&"response.completed"));
    assert_eq!(all.last().unwrap()["response"]["output"], done["output"]);
    let deltas: String = all
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, output_text(&done));
    let rest = parse_events(&again(&id, "&starting_after=2").await, 3);
    assert_eq!(rest, all[3..]);
    assert!(parse_events(&again(&id, "&starting_after=100000").await, 0).is_empty());

    // Only a streamed background response can be streamed again.
    let foreground_id = foreground["id"].as_str().unwrap();
    for (query, param) in [
        (
            format!("/v1/responses/{foreground_id}?stream=true"),
            "stream",
        ),
        (format!("/v1/responses/{id}?stream=maybe"), "stream"),
        (
            format!("/v1/responses/{id}?stream=true&starting_after=-1"),
            "starting_after",
        ),
    ] {
        let (st, v) = s.get(&query).await;
        assert_eq!((st, &v["error"]["param"]), (400, &json!(param)), "{v}");
    }

    // Cancelled, its readers' streams end.
    let long = with(
        &ask,
        json!({"background": true, "stream": true, "max_output_tokens": 3000, "ignore_eos": true}),
    );
    let (opening, mut first_reader) = open_stream(&s, &long).await;
    let id = opening[0]["response"]["id"].as_str().unwrap().to_string();
    let second_reader = tokio::spawn(again(&id, ""));
    let (st, cancelled) = s
        .post(&format!("/v1/responses/{id}/cancel"), &json!({}))
        .await;
    assert_eq!((st, &cancelled["status"]), (200, &json!("cancelled")));
    let within = std::time::Duration::from_secs(30);
    let second = tokio::time::timeout(within, second_reader)
        .await
        .expect("a reader of a cancelled response is let go")
        .unwrap();
    assert!(!second.contains("response.completed"), "{second}");
    tokio::time::timeout(within, async {
        while let Some(chunk) = first_reader.next().await {
            chunk.expect("the stream ends cleanly");
        }
    })
    .await
    .expect("the creating stream of a cancelled response ends");

    // SIGTERM while a background response runs with no client reading: it still finishes
    // before the server exits.
    let (_, queued) = s
        .post(
            "/v1/responses",
            &with(
                &ask,
                json!({"background": true, "max_output_tokens": 40, "ignore_eos": true}),
            ),
        )
        .await;
    let id = queued["id"].as_str().unwrap().to_string();
    s.terminate();
    let status = tokio::task::block_in_place(|| s.wait_exit(std::time::Duration::from_secs(60)))
        .expect("server still running 60 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let ended = s.log_lines(&id);
    assert!(
        ended
            .iter()
            .any(|l| l.contains("request done") && l.contains("completion_tokens=40")),
        "the background response did not finish: {ended:?}"
    );
}

/// POST a streamed request and read until its first three events have come: those events and
/// the rest of the body, unread.
async fn open_stream(
    s: &Server,
    body: &Value,
) -> (
    Vec<Value>,
    impl futures::Stream<Item = reqwest::Result<impl AsRef<[u8]>>> + Unpin,
) {
    use futures::StreamExt;
    let r = reqwest::Client::new()
        .post(s.url("/v1/responses"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut text = String::new();
    while text.matches("\n\n").count() < 3 {
        let chunk = body.next().await.expect("the stream ended early").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let complete = &text[..text.rfind("\n\n").unwrap()];
    let events = parse_events(complete, 0);
    (events, body)
}

fn with(body: &Value, extra: Value) -> Value {
    let mut body = body.clone();
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// GET a background response until it leaves `queued` / `in_progress` (at most 60 s).
async fn poll_until_done(s: &Server, id: &str) -> Value {
    for _ in 0..600 {
        let (st, v) = s.get(&format!("/v1/responses/{id}")).await;
        assert_eq!(st, 200, "{v}");
        if v["status"] != "queued" && v["status"] != "in_progress" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("response {id} never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_hold_what_their_responses_said() {
    let s = Server::start("qwen2.5-0.5b", &[]).await;
    let earlier = json!([
        {"role": "user", "content": "What is the capital of France? One word."},
        {"role": "assistant", "content": "Paris"},
    ]);
    let (st, c) = s
        .post(
            "/v1/conversations",
            &json!({"items": earlier, "metadata": {"topic": "capitals"}}),
        )
        .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["object"], "conversation");
    assert_eq!(c["metadata"]["topic"], "capitals");
    let id = c["id"].as_str().unwrap().to_string();

    // A response in the conversation answers as the whole conversation sent at once, and joins it.
    let ask = json!({"input": "And of Italy? One word.", "max_output_tokens": 8, "temperature": 0});
    let (st, v) = s
        .post("/v1/responses", &with(&ask, json!({"conversation": id})))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["conversation"]["id"], id.as_str());
    let mut whole = earlier.as_array().unwrap().clone();
    whole.push(json!({"role": "user", "content": "And of Italy? One word."}));
    let (_, stateless) = s
        .post(
            "/v1/responses",
            &with(&ask, json!({"input": whole, "store": false})),
        )
        .await;
    assert_eq!(output_text(&v), output_text(&stateless));
    let items = |query: &str| {
        let path = format!("/v1/conversations/{id}/items{query}");
        let s = &s;
        async move {
            let (st, list) = s.get(&path).await;
            assert_eq!(st, 200, "{list}");
            list
        }
    };
    let asc = items("?order=asc").await;
    let data = asc["data"].as_array().unwrap();
    assert_eq!(data.len(), 4, "{asc}");
    assert_eq!(data[2]["content"][0]["text"], "And of Italy? One word.");
    assert_eq!(data[3]["role"], "assistant");
    assert_eq!(data[3]["content"][0]["type"], "output_text");
    assert_eq!(data[3]["content"][0]["text"], output_text(&v).as_str());
    // Newest first by default; pages follow `after`.
    let desc = items("?limit=3").await;
    assert_eq!(desc["data"][0]["id"], data[3]["id"]);
    assert_eq!(desc["has_more"], true);
    let rest = items(&format!(
        "?limit=3&after={}",
        desc["last_id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["data"][0]["id"], data[0]["id"]);

    // A streamed response joins it too.
    let (st, text) = s
        .post_for_text(
            "/v1/responses",
            &with(
                &ask,
                json!({"conversation": {"id": id}, "stream": true, "input": "And of Spain?"}),
            ),
        )
        .await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(items("").await["data"].as_array().unwrap().len(), 6);

    // Items added, read and dropped by hand; metadata changed.
    let (st, added) = s
        .post(
            &format!("/v1/conversations/{id}/items"),
            &json!({"items": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks."}]}]}),
        )
        .await;
    assert_eq!(st, 200, "{added}");
    let item_id = added["first_id"].as_str().unwrap().to_string();
    let (st, item) = s
        .get(&format!("/v1/conversations/{id}/items/{item_id}"))
        .await;
    assert_eq!((st, &item["role"]), (200, &json!("user")), "{item}");
    let (st, _) = s
        .delete(&format!("/v1/conversations/{id}/items/{item_id}"))
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .get(&format!("/v1/conversations/{id}/items/{item_id}"))
        .await;
    assert_eq!(st, 404);
    let (_, changed) = s
        .post(
            &format!("/v1/conversations/{id}"),
            &json!({"metadata": {"topic": "europe"}}),
        )
        .await;
    assert_eq!(changed["metadata"]["topic"], "europe");

    // What cannot be is refused by field.
    for (path, body, param) in [
        (
            "/v1/conversations".to_string(),
            json!({"items": [{"type": "web_search_call"}]}),
            "items[0].type",
        ),
        (
            "/v1/conversations".to_string(),
            json!({"metadata": {"n": 1}}),
            "metadata",
        ),
        (
            "/v1/responses".to_string(),
            with(
                &ask,
                json!({"conversation": id, "previous_response_id": v["id"]}),
            ),
            "conversation",
        ),
        (
            "/v1/responses".to_string(),
            with(&ask, json!({"conversation": "conv_unknown"})),
            "conversation",
        ),
        (
            format!("/v1/conversations/{id}/items"),
            json!({"items": []}),
            "items",
        ),
    ] {
        let (st, e) = s.post(&path, &body).await;
        assert_eq!(
            (st, &e["error"]["param"]),
            (400, &json!(param)),
            "{path}: {e}"
        );
    }
    let (st, gone) = s.delete(&format!("/v1/conversations/{id}")).await;
    assert_eq!((st, &gone["deleted"]), (200, &json!(true)));
    let (st, _) = s.get(&format!("/v1/conversations/{id}")).await;
    assert_eq!(st, 404);
}
