//! A checkout's chat templates as transformers reads them, over HTTP: a `tool_use` template
//! among tokenizer_config.json's named ones serves the requests with tools (Command R,
//! Hermes 2 Pro keep theirs so), the default the others; `chat_template.jinja` replaces the
//! config's template; `--chat-template` replaces both.
mod common;

use common::plugins::servable_tiny;
use common::server::Server;
use serde_json::{json, Value};

/// Renders the turns as `t3 CONTENT` words (the tiny tokenizer's vocabulary).
const DEFAULT: &str = "{% for m in messages %}t3 {{ m.content }} {% endfor %}t4";
/// The same, then each tool's name, and Hermes's call tag so its calls are read.
const TOOL_USE: &str = "{% for m in messages %}t3 {{ m.content }} {% endfor %}\
    {% for t in tools %}t9 {{ t.function.name }} {% endfor %}<tool_call>t4";

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "t7", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}}}}])
}

/// The chat template of the corpus (tests/fixtures/chat_templates) named `name`.
fn corpus_template(name: &str) -> String {
    let corpus: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("chat_templates/corpus.json")).unwrap(),
    )
    .unwrap();
    let templates = corpus["templates"].as_array().unwrap();
    let template = templates.iter().find(|t| t["name"] == name).unwrap();
    template["chat_template"].as_str().unwrap().to_string()
}

async fn rendered(s: &Server, tools: Option<Value>) -> String {
    let mut body = json!({"messages": [{"role": "user", "content": "t5"}]});
    if let Some(tools) = tools {
        body["tools"] = tools;
    }
    let (st, v) = s.post("/apply-template", &body).await;
    assert_eq!(st, 200, "{v}");
    v["prompt"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_tool_use_templates_serve_requests_with_tools() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let config = json!({"bos_token": "t1", "eos_token": "t2", "chat_template": [
        {"name": "default", "template": DEFAULT},
        {"name": "tool_use", "template": TOOL_USE},
    ]});
    std::fs::write(model.join("tokenizer_config.json"), config.to_string()).unwrap();
    let s = Server::start_path(&model, "tiny", &[]).await;
    assert_eq!(rendered(&s, None).await, "t3 t5 t4");
    assert_eq!(
        rendered(&s, Some(weather_tool())).await,
        "t3 t5 t9 t7 <tool_call>t4"
    );
    // A chat request with tools is served (the default template reads none: it would be a
    // 400), its prompt the tool template's five words; `tool_choice: none` shows no tools,
    // and renders with the default (three).
    let chat = |choice: &str| {
        json!({"model": "tiny", "messages": [{"role": "user", "content": "t5"}],
            "tools": weather_tool(), "tool_choice": choice, "max_tokens": 3, "temperature": 0})
    };
    for (choice, prompt_tokens) in [("auto", 5), ("none", 3)] {
        let (st, v) = s.post("/v1/chat/completions", &chat(choice)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens, "{choice}: {v}");
    }
    // llama-server's /props shows both.
    let (_, props) = s.get("/props").await;
    assert_eq!(
        (&props["chat_template"], &props["chat_template_tool_use"]),
        (&json!(DEFAULT), &json!(TOOL_USE))
    );
    // Ollama's /api/show counts tools among the capabilities.
    let (_, show) = s.post("/api/show", &json!({"model": "tiny"})).await;
    let caps = show["capabilities"].as_array().unwrap();
    assert!(caps.contains(&json!("tools")), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_files_replace_the_configs_template() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let config = json!({"bos_token": "t1", "eos_token": "t2", "chat_template": "t8"});
    std::fs::write(model.join("tokenizer_config.json"), config.to_string()).unwrap();
    std::fs::write(model.join("chat_template.jinja"), DEFAULT).unwrap();
    std::fs::create_dir(model.join("additional_chat_templates")).unwrap();
    std::fs::write(
        model.join("additional_chat_templates/tool_use.jinja"),
        TOOL_USE,
    )
    .unwrap();
    let s = Server::start_path(&model, "tiny", &[]).await;
    assert_eq!(rendered(&s, None).await, "t3 t5 t4");
    assert_eq!(
        rendered(&s, Some(weather_tool())).await,
        "t3 t5 t9 t7 <tool_call>t4"
    );
    drop(s);
    // The operator's template replaces both of the model's.
    let own = dir.path().join("own.jinja");
    std::fs::write(&own, "t6 {{ messages[0].content }}").unwrap();
    let s = Server::start_path(&model, "tiny", &["--chat-template", own.to_str().unwrap()]).await;
    assert_eq!(rendered(&s, None).await, "t6 t5");
    let (_, props) = s.get("/props").await;
    assert!(props.get("chat_template_tool_use").is_none(), "{props}");
    let body = json!({"messages": [{"role": "user", "content": "t5"}], "tools": weather_tool()});
    let (st, e) = s.post("/apply-template", &body).await;
    assert_eq!(st, 400, "{e}");
}

/// FireFunction v2's template reads `functions` and `datetime`, which transformers does not
/// pass (it cannot render it): the server gives them as llama.cpp does, the tools' JSON (empty
/// without tools) and the time; a request's `chat_template_kwargs` win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefunction_templates_get_their_functions_and_datetime() {
    let source = corpus_template("fireworks-ai-llama-3-firefunction-v2");
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let own = dir.path().join("firefunction.jinja");
    std::fs::write(&own, source).unwrap();
    let s = Server::start_path(&model, "tiny", &["--chat-template", own.to_str().unwrap()]).await;
    let plain = rendered(&s, None).await;
    let with_tools = rendered(&s, Some(weather_tool())).await;
    for prompt in [&plain, &with_tools] {
        let today = prompt.split("Today is ").nth(1).unwrap_or_default();
        // "Dec 07 2026 10:20:00 GMT."
        assert!(today.contains(" GMT.") && today.len() > 24, "{prompt}");
    }
    assert!(plain.contains("JSON spec:\n\nToday is"), "{plain}");
    let spec = with_tools
        .split("JSON spec:\n")
        .nth(1)
        .and_then(|rest| rest.split("\nToday is").next())
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(spec).unwrap(), weather_tool());
    // The client's own time.
    let body = json!({"messages": [{"role": "user", "content": "t5"}],
        "chat_template_kwargs": {"datetime": "Jan 01 2026 00:00:00 GMT"}});
    let (st, v) = s.post("/apply-template", &body).await;
    assert_eq!(st, 200, "{v}");
    let prompt = v["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("Today is Jan 01 2026 00:00:00 GMT."),
        "{prompt}"
    );
    // A chat request with tools is served.
    let chat = json!({"model": "tiny", "messages": [{"role": "user", "content": "t5"}],
        "tools": weather_tool(), "max_tokens": 3, "temperature": 0});
    let (st, v) = s.post("/v1/chat/completions", &chat).await;
    assert_eq!(st, 200, "{v}");
}

/// Functionary v3.2's template ends the prompt with `>>>`, after which the model names its
/// recipient: a text answer starts `all\n`, which is the template's protocol and is dropped
/// from the answer, whole or streamed (the answer steered to one by `guided_choice`; the tiny
/// llama with the byte-level tokenizer of `opt_pytorch` spells it, its context widened for the
/// template's long system prompt: RoPE has no table to outgrow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functionary_answers_lose_their_recipient_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = functionary_server(dir.path()).await;
    assert!(rendered(&s, None).await.ends_with(">>>"));
    let chat = |stream: bool| {
        json!({"model": "tiny", "messages": [{"role": "user", "content": "Hello"}],
               "guided_choice": ["all\nHello world"], "max_tokens": 16, "temperature": 0,
               "stream": stream})
    };
    let (st, v) = s.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello world", "{v}");
    let (st, text) = s.post_for_text("/v1/chat/completions", &chat(true)).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(streamed_content(&text), "Hello world", "{text}");
}

/// Functionary v3.2's calls (`functionary_v3_2`): messages to functions after the answer's
/// text, whole and streamed; a demanded call opens with its name line and follows the
/// function's schema; and a conversation with earlier calls renders (its template adds the
/// arguments to text: they go to it as JSON text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functionary_v32_calls_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = functionary_server(dir.path()).await;
    let answer = "all\nI'll check.>>>t7\n{\"city\": \"Paris\"}>>>t7\n{\"city\": \"Oslo\"}";
    let chat = |stream: bool| {
        json!({"model": "tiny", "messages": [{"role": "user", "content": "Weather?"}],
               "tools": weather_tool(), "guided_choice": [answer], "max_tokens": 200,
               "temperature": 0, "stream": stream})
    };
    let (st, v) = s.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(st, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert_eq!(choice["message"]["content"], "I'll check.", "{v}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    let arguments: Vec<&str> = calls
        .iter()
        .map(|c| c["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(
        arguments,
        ["{\"city\":\"Paris\"}", "{\"city\":\"Oslo\"}"],
        "{v}"
    );
    assert!(calls.iter().all(|c| c["function"]["name"] == "t7"), "{v}");
    let (st, text) = s.post_for_text("/v1/chat/completions", &chat(true)).await;
    assert_eq!(st, 200, "{text}");
    assert_eq!(streamed_content(&text), "I'll check.", "{text}");
    assert_eq!(text.matches("\"name\":\"t7\"").count(), 2, "{text}");
    // A demanded call: the answer is the function's arguments, held to its schema (closed,
    // so that the tiny model's random text ends).
    let closed = json!([{"type": "function", "function": {"name": "t7", "parameters": {
        "type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}},
        "required": ["city"], "additionalProperties": false}}}]);
    let named = json!({"model": "tiny", "messages": [{"role": "user", "content": "Weather?"}],
        "tools": closed, "tool_choice": {"type": "function", "function": {"name": "t7"}},
        "max_tokens": 200, "temperature": 0});
    let (st, v) = s.post("/v1/chat/completions", &named).await;
    assert_eq!(st, 200, "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "t7", "{v}");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(
        matches!(args["city"].as_str(), Some("Paris" | "Oslo")),
        "{v}"
    );
    assert_eq!(v["choices"][0]["message"]["content"], Value::Null, "{v}");
    // The history's calls as the model wrote them.
    let history = json!({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "t7", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
        "tools": weather_tool()});
    let (st, v) = s.post("/apply-template", &history).await;
    assert_eq!(st, 200, "{v}");
    let prompt = v["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("<|end_header_id|>\n\n>>>t7\n{\"city\": \"Paris\"}<|eot_id|>"),
        "{prompt}"
    );
    let mut chat = history.clone();
    chat["model"] = "tiny".into();
    chat["max_tokens"] = 2.into();
    let (st, v) = s.post("/v1/chat/completions", &chat).await;
    assert_eq!(st, 200, "{v}");
}

/// The content of a streamed chat answer's deltas.
fn streamed_content(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// The tiny llama serving functionary v3.2's template.
async fn functionary_server(dir: &std::path::Path) -> Server {
    let source = corpus_template("meetkai-functionary-medium-v3.2");
    let model = servable_tiny("llama", dir);
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let slow = common::fixtures().join("tiny/opt_pytorch");
    for f in [
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(slow.join(f), model.join(f)).unwrap();
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    config["max_position_embeddings"] = 2048.into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let own = dir.join("functionary.jinja");
    std::fs::write(&own, source).unwrap();
    Server::start_path(&model, "tiny", &["--chat-template", own.to_str().unwrap()]).await
}

/// Gemma 2's template refuses a system message ("System role not supported"), which OpenAI's
/// clients send with most requests, and two user messages in a row (as clients send after an
/// unanswered question): the system text opens the user's message instead, as llama.cpp
/// renders it, the two messages are one turn, and the request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma_2s_template_gets_system_texts_and_runs_of_user_messages() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let gemma2 = corpus_template("google-gemma-2-2b-it");
    let s = Server::start_path(&model, "tiny", &["--chat-template", &gemma2]).await;
    let messages = json!([{"role": "system", "content": "t7 t8"},
                          {"role": "user", "content": "t5"},
                          {"role": "user", "content": "t6"}]);
    let (st, v) = s
        .post("/apply-template", &json!({"messages": messages}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["prompt"],
        "t1<start_of_turn>user\nt7 t8\nt5\n\nt6<end_of_turn>\n<start_of_turn>model\n"
    );
    let chat = json!({"model": "tiny", "messages": messages, "max_tokens": 2, "temperature": 0});
    let (st, v) = s.post("/v1/chat/completions", &chat).await;
    assert_eq!(st, 200, "{v}");
}

/// Qwen3's template searches an assistant turn's content, which OpenAI's clients send as
/// `null` for a turn that only calls tools (it fails so under transformers too): the tool
/// round trip is served, the call and its result in the prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen3s_template_takes_back_calls_without_content() {
    let dir = tempfile::tempdir().unwrap();
    let model = servable_tiny("llama", dir.path());
    let qwen3 = corpus_template("Qwen-Qwen3-0.6B");
    let s = Server::start_path(&model, "tiny", &["--chat-template", &qwen3]).await;
    let messages = json!([
        {"role": "user", "content": "t5"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "t7", "arguments": "{\"city\": \"t6\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "t8"},
    ]);
    let body = json!({"messages": messages, "tools": weather_tool()});
    let (st, v) = s.post("/apply-template", &body).await;
    assert_eq!(st, 200, "{v}");
    let prompt = v["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("{\"name\": \"t7\", \"arguments\": {\"city\": \"t6\"}}")
            && prompt.contains("<tool_response>\nt8\n</tool_response>"),
        "{prompt}"
    );
}
