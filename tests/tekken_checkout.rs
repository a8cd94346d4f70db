//! Checkouts that keep their tokenizer as Mistral's `tekken.json` alone (Devstral, Magistral,
//! Mistral Small 3.2), against what mistral_common makes of the same file
//! (tests/fixtures/tiny/tekken_checkout, from make_tekken.py): texts get its ids, and
//! conversations rendered with candor's template for the file's version get the ids of its
//! `encode_chat_completion`, served too.
mod common;

use candor::server::tools::format::ToolFormat;
use candor_models::chat_template::{ChatMessage, ChatTemplate, Thought};
use common::plugins::servable_tiny;
use common::*;
use serde_json::{json, Value};
use std::path::Path;

fn checkout() -> std::path::PathBuf {
    fixtures().join("tiny/tekken_checkout")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A checkout in `dir` whose `tekken.json` is `source`'s with its version set to `version`
/// (from 15 on, with make_tekken.py's settings builder: efforts `none`, the default, and
/// `high`).
fn with_version(source: &Path, version: u64, dir: &Path) {
    let mut doc = read_json(source);
    doc["config"]["version"] = json!(format!("v{version}"));
    if version >= 15 {
        doc["model_settings_builder"] = json!({"reasoning_effort": {
            "type": "enum", "accepts_none": true, "default": "none", "values": ["none", "high"]}});
    }
    std::fs::write(dir.join("tekken.json"), doc.to_string()).unwrap();
}

/// The tiny Mistral in `dir` with the 512-id Tekken file in place of its tokenizer.json.
fn tiny_tekken_model(dir: &Path) -> std::path::PathBuf {
    let model = servable_tiny("mistral", dir);
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::remove_file(model.join(f)).unwrap();
    }
    std::fs::copy(
        checkout().join("tiny/tekken.json"),
        model.join("tekken.json"),
    )
    .unwrap();
    model
}

/// A golden case's messages as templates get them.
fn messages(case: &Value) -> Vec<ChatMessage> {
    (case["messages"].as_array().unwrap().iter())
        .map(|m| {
            let mut message: ChatMessage = serde_json::from_value(json!({
                "role": m["role"], "content": m["content"],
                "tool_calls": m.get("tool_calls"), "tool_call_id": m.get("tool_call_id"),
                "name": m.get("name"),
            }))
            .unwrap();
            message.reasoning = m["reasoning_content"].as_str().map(Thought::new);
            message
        })
        .collect()
}

#[test]
fn the_tekken_file_gives_mistral_commons_ids() {
    assert_checkout_tokenizer_golden(&checkout());
}

/// Versions 7, 11, 13 and 15: system prompts, joined user turns, tool lists where each version
/// puts them, calls and results in each version's form, thoughts sent back, v15's reasoning
/// effort (the request's, else the default).
#[test]
fn conversations_render_as_mistral_common_encodes_them() {
    let golden = read_json(&checkout().join("chat_golden.json"));
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 14);
    for case in cases {
        let version = case["version"].as_u64().unwrap();
        let dir = tempfile::tempdir().unwrap();
        with_version(&checkout().join("tekken.json"), version, dir.path());
        let tok = candor::engine::load::checkout_tokenizer(dir.path())
            .unwrap()
            .expect("a tokenizer");
        let source = tok.chat_template().expect("a template for the version");
        let template = ChatTemplate::new(
            &source,
            tok.bos_token().as_deref(),
            tok.eos_token().as_deref(),
        )
        .unwrap();
        let mut extra = serde_json::Map::new();
        for key in ["tools", "reasoning_effort"] {
            if let Some(value) = case.get(key) {
                extra.insert(key.into(), value.clone());
            }
        }
        let text = template.render_with(&messages(case), true, &extra).unwrap();
        let want: Vec<u32> = (case["ids"].as_array().unwrap().iter())
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            tok.encode(&text, false).unwrap(),
            want,
            "v{version} {}: {text:?}",
            case["name"]
        );
        let format = ToolFormat::detect(&source).unwrap();
        let expected = match version {
            7 => ToolFormat::Mistral,
            _ => ToolFormat::MistralArgs,
        };
        assert_eq!(format, expected, "v{version}");
    }
}

/// An effort v15's settings builder does not list is an error naming those it does.
#[test]
fn an_effort_the_model_does_not_take_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    with_version(&checkout().join("tekken.json"), 15, dir.path());
    let tok = candor::engine::load::checkout_tokenizer(dir.path())
        .unwrap()
        .unwrap();
    let template =
        ChatTemplate::new(&tok.chat_template().unwrap(), Some("<s>"), Some("</s>")).unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("reasoning_effort".into(), json!("low"));
    let e = template
        .render_with(&[ChatMessage::text("user", "Hi")], true, &extra)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reasoning_effort low is not one of this model's: none, high"),
        "{e}"
    );
}

/// A file of a version candor has no template for still tokenizes; one whose split pattern is
/// not Tekken's, or whose special tokens are out of order, is refused by name.
#[test]
fn unknown_versions_have_no_template_and_broken_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    with_version(&checkout().join("tekken.json"), 3, dir.path());
    let tok = candor::engine::load::checkout_tokenizer(dir.path())
        .unwrap()
        .unwrap();
    assert_eq!(tok.chat_template(), None);
    let mut doc = read_json(&checkout().join("tekken.json"));
    doc["config"]["pattern"] = json!(r"\s+|\w+");
    std::fs::write(dir.path().join("tekken.json"), doc.to_string()).unwrap();
    let e = candor::engine::load::checkout_tokenizer(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("tekken.json") && e.contains("split pattern"),
        "{e}"
    );
    let mut doc = read_json(&checkout().join("tekken.json"));
    doc["special_tokens"][3]["rank"] = json!(7);
    std::fs::write(dir.path().join("tekken.json"), doc.to_string()).unwrap();
    let e = candor::engine::load::checkout_tokenizer(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`[INST]` has rank 7, not 3"), "{e}");
}

/// The tiny Mistral with a 512-id Tekken file in place of its tokenizer.json: a chat request
/// with tools is tokenized as mistral_common encodes it, and answered.
#[tokio::test]
async fn a_tekken_checkout_serves_chat() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_tekken_model(tmp.path());
    let tiny = checkout().join("tiny");
    let golden = read_json(&tiny.join("chat_golden.json"));
    let case = &golden["cases"][0];
    let server = common::server::Server::start_path(&model, "tiny", &[]).await;
    // Arguments as clients send them: JSON text.
    let mut messages = case["messages"].clone();
    for message in messages.as_array_mut().unwrap() {
        for call in message["tool_calls"].as_array_mut().into_iter().flatten() {
            let arguments = call["function"]["arguments"].to_string();
            call["function"]["arguments"] = json!(arguments);
        }
    }
    let history = json!({"messages": messages, "tools": case["tools"]});
    let (status, body) = server.post("/tokenize", &history).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tokens"], case["ids"], "{body}");
    // The tiny vocabulary spells most text bytewise: a short question fits its context.
    let question = json!([{"role": "user", "content": "Hi there"}]);
    let (_, prompt) = server
        .post("/tokenize", &json!({"messages": question}))
        .await;
    let request = json!({"model": "tiny", "messages": question, "max_tokens": 3,
                         "temperature": 0, "ignore_eos": true});
    let (status, body) = server.post("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], prompt["count"], "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 3, "{body}");
}

/// A checkout's SYSTEM_PROMPT.txt (Magistral's asks for thoughts in `[THINK]`) is the system
/// prompt of a conversation that brings none, its placeholders filled: the model's name (the
/// directory's), today's and yesterday's dates.
#[test]
fn the_checkouts_system_prompt_is_the_default_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Magistral-Small-2509");
    std::fs::create_dir(&dir).unwrap();
    with_version(&checkout().join("tekken.json"), 13, &dir);
    std::fs::write(
        dir.join("SYSTEM_PROMPT.txt"),
        "You are {name}. Today is {today}, yesterday was {yesterday}.\n\
         Think as [THINK]thoughts[/THINK]answer.",
    )
    .unwrap();
    let tok = candor::engine::load::checkout_tokenizer(&dir)
        .unwrap()
        .unwrap();
    let template = ChatTemplate::new(
        &tok.chat_template().unwrap(),
        tok.bos_token().as_deref(),
        tok.eos_token().as_deref(),
    )
    .unwrap()
    .at_date(chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
    let question = ChatMessage::text("user", "Hi");
    let text = template
        .render(std::slice::from_ref(&question), true)
        .unwrap();
    assert_eq!(
        text,
        "<s>[SYSTEM_PROMPT]You are Magistral-Small-2509. Today is 2026-03-01, yesterday was \
         2026-02-28.\nThink as [THINK]thoughts[/THINK]answer.[/SYSTEM_PROMPT][INST]Hi[/INST]"
    );
    // The thought markers are the control tokens, as in Mistral's own templates.
    let think = tok.token_id("[THINK]").unwrap();
    assert!(tok.encode(&text, false).unwrap().contains(&think));
    let own = ChatMessage::text("system", "Be brief.");
    let text = template.render(&[own, question], true).unwrap();
    assert_eq!(
        text,
        "<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST]"
    );
}

/// Mistral Nemo's template refuses call ids other than nine letters and digits: a history with
/// the ids candor's API (or another) gave is rendered with each id in that form, a call's and
/// its result's alike.
#[tokio::test]
async fn call_ids_reach_mistral_templates_in_their_form() {
    let corpus = read_json(&fixtures().join("chat_templates/corpus.json"));
    let nemo = (corpus["templates"].as_array().unwrap().iter())
        .find(|t| t["name"] == "mistralai-Mistral-Nemo-Instruct-2407")
        .unwrap()["chat_template"]
        .as_str()
        .unwrap()
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_tekken_model(tmp.path());
    let server =
        common::server::Server::start_path(&model, "tiny", &["--chat-template", &nemo]).await;
    let tool = json!({"type": "function", "function": {"name": "f", "parameters": {}}});
    let history = json!([
        {"role": "user", "content": "Call f."},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_0f1e2d3c4b5a69788796a5b4", "type": "function",
             "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_0f1e2d3c4b5a69788796a5b4", "content": "done"},
    ]);
    let (status, body) = server
        .post(
            "/apply-template",
            &json!({"messages": history, "tools": [tool]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let prompt = body["prompt"].as_str().unwrap();
    let id = prompt
        .split("\"id\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the call's id");
    assert!(
        id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{prompt}"
    );
    assert!(
        prompt.contains(&format!("\"call_id\": \"{id}\"")),
        "{prompt}"
    );
}

/// Magistral 2506's system prompt (a v11 file, no thought tokens) asks for thoughts in
/// `<think>` tags: the template holds that text, so its answers are read as a thinking
/// model's. Without the file, the same template does not think.
#[test]
fn a_system_prompt_asking_for_think_tags_makes_a_thinking_model() {
    let dir = tempfile::tempdir().unwrap();
    with_version(&checkout().join("tekken.json"), 11, dir.path());
    let source = |dir: &Path| {
        (candor::engine::load::checkout_tokenizer(dir)
            .unwrap()
            .unwrap())
        .chat_template()
        .unwrap()
    };
    assert_eq!(
        candor::server::reasoning::template_thinks(&source(dir.path())),
        None
    );
    std::fs::write(
        dir.path().join("SYSTEM_PROMPT.txt"),
        "Draft your thinking process first.\n\n<think>\nYour thoughts.\n</think>\n\nThen answer.",
    )
    .unwrap();
    let tags = candor::server::reasoning::template_thinks(&source(dir.path())).unwrap();
    assert_eq!((tags.open, tags.close), ("<think>", "</think>"));
}

/// Mistral's fill-in-the-middle (Codestral's): `[SUFFIX]` suffix `[PREFIX]` prefix after BOS,
/// as mistral_common's `encode_fim` writes it (no middle token), for a completion with a
/// `suffix` and llama-server's `/infill` alike.
#[tokio::test]
async fn fill_in_the_middle_puts_the_suffix_first() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_tekken_model(tmp.path());
    let tok = candor::engine::load::checkout_tokenizer(&model)
        .unwrap()
        .unwrap();
    let fim = tok.fim_tokens().unwrap();
    assert_eq!((fim.prefix, fim.suffix, fim.middle), (14, 16, None));
    let text = |t: &str| tok.encode_text(t, false).unwrap();
    let mut want = vec![1, 16];
    want.extend(text("\n    return x"));
    want.push(14);
    want.extend(text("def f(x):"));
    let server = common::server::Server::start_path(&model, "tiny", &[]).await;
    let (status, body) = server
        .post(
            "/v1/completions",
            &json!({"model": "tiny", "prompt": "def f(x):", "suffix": "\n    return x",
                    "max_tokens": 2, "temperature": 0, "return_token_ids": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["prompt_token_ids"],
        json!(want),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/infill",
            &json!({"input_prefix": "def f(x):", "input_suffix": "\n    return x",
                    "n_predict": 2, "return_tokens": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
