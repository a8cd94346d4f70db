//! Ollama's API on the real server: `/api/chat` and `/api/generate` answer as the OpenAI
//! endpoints they run on (same greedy text), streamed as NDJSON by default; calls carry object
//! arguments; `/api/embed` gives `/v1/embeddings`' vectors; the model is described by
//! `/api/tags`, `/api/show`, `/api/ps`; errors are `{"error": "..."}`.
mod common;

use common::server::Server;
use common::weather_call_chat;
use serde_json::{json, Value};

const MODEL: &str = "qwen2.5-0.5b";

/// The least cosine of one text's embeddings computed in different batches (the kernels round
/// a row differently with the rows beside it).
const SAME_TEXT: f32 = 0.995;

/// The lines of an NDJSON answer, checked for their framing: every line but the last is
/// `done: false`, the last `done: true`.
async fn lines(s: &Server, path: &str, body: &Value) -> Vec<Value> {
    let r = reqwest::Client::new()
        .post(s.url(path))
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.expect("body");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, rest) = lines.split_last().expect("at least the closing line");
    assert!(rest.iter().all(|l| l["done"] == false), "{text}");
    assert_eq!(last["done"], true, "{text}");
    lines
}

fn joined(lines: &[Value], field: impl Fn(&Value) -> &Value) -> String {
    lines.iter().filter_map(|l| field(l).as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ollama_clients_get_the_answers_of_the_openai_endpoints() {
    // A short context keeps the cut of a long input to embed cheap.
    let s = Server::start(MODEL, &["--max-model-len", "512"]).await;
    let ask = "Name three colors.";

    // /api/chat, whole: the chat completion's text and counts.
    let (_, openai) = s
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": ask}], "max_tokens": 12, "temperature": 0}),
        )
        .await;
    let chat = json!({"model": format!("{MODEL}:latest"), "stream": false,
                      "messages": [{"role": "user", "content": ask}],
                      "options": {"num_predict": 12, "temperature": 0}});
    let (st, whole) = s.post("/api/chat", &chat).await;
    assert_eq!(st, 200, "{whole}");
    assert_eq!(
        whole["message"]["content"],
        openai["choices"][0]["message"]["content"]
    );
    assert_eq!(whole["message"]["role"], "assistant");
    assert_eq!(whole["model"], format!("{MODEL}:latest"));
    assert_eq!(whole["done"], true);
    assert_eq!(whole["done_reason"], openai["choices"][0]["finish_reason"]);
    assert_eq!(whole["eval_count"], openai["usage"]["completion_tokens"]);
    assert_eq!(whole["prompt_eval_count"], openai["usage"]["prompt_tokens"]);
    assert!(whole["total_duration"].as_u64().unwrap() >= whole["eval_duration"].as_u64().unwrap());

    // Streamed by default: the same text over the lines.
    let mut streamed = chat.clone();
    streamed.as_object_mut().unwrap().remove("stream");
    let got = lines(&s, "/api/chat", &streamed).await;
    assert!(got.len() > 2, "{got:?}");
    assert_eq!(
        joined(&got, |l| &l["message"]["content"]),
        whole["message"]["content"].as_str().unwrap()
    );
    assert_eq!(got.last().unwrap()["eval_count"], whole["eval_count"]);

    // A call: its arguments as an object; the result sent back with `tool_name`.
    let weather = json!({"type": "function", "function": {"name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}});
    let asked = json!({"role": "user", "content": "What is the weather like in Paris today?"});
    let (st, called) = s
        .post(
            "/api/chat",
            &json!({"stream": false, "messages": [asked], "tools": [weather],
                    "options": {"temperature": 0, "num_predict": 60}}),
        )
        .await;
    assert_eq!(st, 200, "{called}");
    let call = &called["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather", "{called}");
    assert_eq!(call["arguments"], json!({"city": "Paris"}), "{called}");
    // Sent back with its result, it answers as the same conversation through chat does.
    let mut chat_body = weather_call_chat("call_1", "{\"city\": \"Paris\"}");
    chat_body.as_object_mut().unwrap().remove("tool_choice");
    chat_body["max_tokens"] = json!(40);
    let (_, via_chat) = s.post("/v1/chat/completions", &chat_body).await;
    let (st, answered) = s
        .post(
            "/api/chat",
            &json!({"stream": false, "tools": [weather], "options": {"temperature": 0, "num_predict": 40},
                    "messages": [{"role": "system", "content": "Answer in one short sentence."},
                                 asked, called["message"],
                                 {"role": "tool", "tool_name": "get_weather", "content": "{\"temperature_c\": 21, \"sky\": \"sunny\"}"}]}),
        )
        .await;
    assert_eq!(st, 200, "{answered}");
    assert_eq!(
        answered["message"]["content"], via_chat["choices"][0]["message"]["content"],
        "{answered}"
    );

    // `format`: a schema holds the answer.
    let schema = json!({"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]});
    let (st, formatted) = s
        .post(
            "/api/chat",
            &json!({"stream": false, "format": schema, "options": {"temperature": 0, "num_predict": 40},
                    "messages": [{"role": "user", "content": "What color is the sky? Answer in JSON."}]}),
        )
        .await;
    assert_eq!(st, 200, "{formatted}");
    let parsed: Value =
        serde_json::from_str(formatted["message"]["content"].as_str().unwrap()).unwrap();
    assert!(parsed["color"].is_string(), "{parsed}");

    // /api/generate: templated as one user turn, or raw as a text completion, or a fill.
    let (_, templated) = s
        .post(
            "/api/generate",
            &json!({"prompt": ask, "stream": false, "options": {"num_predict": 12, "temperature": 0}}),
        )
        .await;
    assert_eq!(templated["response"], whole["message"]["content"]);
    let (_, completion) = s
        .post(
            "/v1/completions",
            &json!({"prompt": "1, 2, 3, 4,", "max_tokens": 8, "temperature": 0}),
        )
        .await;
    let raw = json!({"prompt": "1, 2, 3, 4,", "raw": true, "options": {"num_predict": 8, "temperature": 0}});
    let got = lines(&s, "/api/generate", &raw).await;
    assert_eq!(
        joined(&got, |l| &l["response"]),
        completion["choices"][0]["text"].as_str().unwrap()
    );
    let (_, fim) = s
        .post(
            "/v1/completions",
            &json!({"prompt": "def add(a, b):\n    return ", "suffix": "\n\nprint(add(2, 3))\n",
                    "max_tokens": 16, "temperature": 0}),
        )
        .await;
    let (st, filled) = s
        .post(
            "/api/generate",
            &json!({"prompt": "def add(a, b):\n    return ", "suffix": "\n\nprint(add(2, 3))\n",
                    "stream": false, "options": {"num_predict": 16, "temperature": 0}}),
        )
        .await;
    assert_eq!(st, 200, "{filled}");
    assert_eq!(filled["response"], fim["choices"][0]["text"]);

    // /api/embed: /v1/embeddings' unit vectors; /api/embeddings: one vector, as pooled.
    let (_, openai) = s
        .post("/v1/embeddings", &json!({"input": ["cat", "dog"]}))
        .await;
    let (st, embedded) = s
        .post(
            "/api/embed",
            &json!({"model": MODEL, "input": ["cat", "dog"]}),
        )
        .await;
    assert_eq!(st, 200, "{embedded}");
    for i in 0..2 {
        let a = floats(&embedded["embeddings"][i]);
        let b = floats(&openai["data"][i]["embedding"]);
        assert!(dot(&a, &b) > SAME_TEXT);
    }
    assert!(embedded["prompt_eval_count"].as_u64().unwrap() >= 2);
    let (_, one) = s
        .post("/api/embeddings", &json!({"model": MODEL, "prompt": "cat"}))
        .await;
    let raw = floats(&one["embedding"]);
    let norm = dot(&raw, &raw).sqrt();
    let unit: Vec<f32> = raw.iter().map(|x| x / norm).collect();
    assert!(dot(&unit, &floats(&embedded["embeddings"][0])) > SAME_TEXT);
    let long = "word ".repeat(700);
    let (st, cut) = s.post("/api/embed", &json!({"input": long})).await;
    assert_eq!(
        st, 200,
        "inputs longer than the context are cut by default: {cut}"
    );
    let (st, refused) = s
        .post("/api/embed", &json!({"input": long, "truncate": false}))
        .await;
    assert_eq!(st, 400);
    assert!(
        refused["error"].as_str().unwrap().contains("truncate"),
        "{refused}"
    );

    // The model, described.
    let (_, tags) = s.get("/api/tags").await;
    let listed = &tags["models"][0];
    assert_eq!(listed["name"], format!("{MODEL}:latest"));
    assert_eq!(listed["details"]["family"], "qwen2");
    assert_eq!(listed["details"]["format"], "gguf");
    assert_eq!(listed["details"]["quantization_level"], "Q4_K_M");
    assert!(listed["size"].as_u64().unwrap() > 100_000_000);
    let (st, shown) = s.post("/api/show", &json!({"model": MODEL})).await;
    assert_eq!(st, 200, "{shown}");
    assert!(shown["template"].as_str().unwrap().contains("im_start"));
    let capabilities = shown["capabilities"].as_array().unwrap();
    for c in ["completion", "tools", "insert", "embedding"] {
        assert!(capabilities.contains(&json!(c)), "{c}: {shown}");
    }
    assert_eq!(shown["model_info"]["general.architecture"], "qwen2");
    let (_, ps) = s.get("/api/ps").await;
    assert_eq!(ps["models"][0]["size_vram"], 0, "on the CPU");
    assert_eq!(ps["models"][0]["context_length"], 512);
    let (_, version) = s.get("/api/version").await;
    assert!(version["version"].is_string());

    // A body sent as `curl -d` sends it (no JSON content type) is read all the same.
    let r = reqwest::Client::new()
        .post(s.url("/api/show"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(json!({"model": MODEL}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A request that asks nothing is Ollama's load (or, with `keep_alive: 0`, unload): done at
    // once, the model being loaded for as long as the server runs.
    let (st, load) = s.post("/api/generate", &json!({"model": MODEL})).await;
    assert_eq!((st, &load["done_reason"]), (200, &json!("load")), "{load}");
    assert_eq!(load["response"], "");
    let (_, unload) = s
        .post(
            "/api/chat",
            &json!({"model": MODEL, "messages": [], "keep_alive": 0}),
        )
        .await;
    assert_eq!(unload["done_reason"], "unload", "{unload}");
    assert_eq!(unload["message"]["content"], "");
    let root = reqwest::get(s.url("/")).await.unwrap();
    assert_eq!(root.status(), 200);
    assert!(root.text().await.unwrap().contains("running"));
    let (st, pull) = s.post("/api/pull", &json!({"model": "llama3"})).await;
    assert_eq!(st, 404);
    assert!(
        pull["error"].as_str().unwrap().contains("model management"),
        "{pull}"
    );

    // Errors are Ollama's: a string under `error`.
    for (path, body, status) in [
        (
            "/api/chat",
            json!({"model": "llama3", "messages": [{"role": "user", "content": "x"}]}),
            404,
        ),
        (
            "/api/chat",
            json!({"messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 0}}),
            400,
        ),
        (
            "/api/generate",
            json!({"prompt": "x", "context": [1, 2, 3]}),
            400,
        ),
        (
            "/api/generate",
            json!({"prompt": "x", "images": ["aGk="]}),
            400,
        ),
        ("/api/show", json!({}), 400),
        ("/api/embed", json!({"input": []}), 400),
    ] {
        let (st, v) = s.post(path, &body).await;
        assert_eq!(st, status, "{path} {body}: {v}");
        assert!(v["error"].is_string(), "{path}: {v}");
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a vector")
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
