//! Calls a template writes into an assistant turn read back as the same calls: for every
//! vendor template in `tests/fixtures/chat_tools` (whose renderings match transformers', see
//! `chat_template::tests::templates_with_tools_match_transformers`), the assistant turns with
//! `tool_calls` are rendered as the model would have written them, and candor's extractor for
//! the format the template is detected to use must return the same functions and arguments,
//! typed as the tools' schemas say (the tag formats write every value as text).
use candor::server::tools::extract::{Piece, ToolCallExtractor};
use candor::server::tools::format::ToolFormat;
use candor_models::chat_template::{ChatMessage, ChatTemplate};
use serde_json::Value;

fn goldens() -> Vec<(String, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chat_tools");
    let mut all: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// The text a template gives the assistant turn `messages[at]`: the conversation through it
/// less the conversation before it (the turn's own header included: GLM-4.7's generation
/// prompt opens a thought its history turns close at once).
fn assistant_turn(
    template: &ChatTemplate,
    messages: &[ChatMessage],
    at: usize,
    tools: &Value,
) -> String {
    let mut extra = serde_json::Map::new();
    extra.insert("tools".into(), tools.clone());
    let before = template
        .render_with(&messages[..at], false, &extra)
        .unwrap();
    let through = template
        .render_with(&messages[..=at], false, &extra)
        .unwrap();
    through
        .strip_prefix(&before)
        .unwrap_or_else(|| {
            panic!("the conversation does not lead into the turn:\n{before}\n{through}")
        })
        .to_string()
}

#[test]
fn calls_in_rendered_turns_read_back_as_the_same_calls() {
    let mut checked = Vec::new();
    for (name, golden) in goldens() {
        let source = golden["chat_template"].as_str().unwrap();
        let format = ToolFormat::detect(source).unwrap();
        let template = ChatTemplate::new(source, None, None).unwrap();
        for case in golden["cases"].as_array().unwrap() {
            let messages: Vec<ChatMessage> =
                serde_json::from_value(case["messages"].clone()).unwrap();
            let functions: Vec<(String, Value)> = case["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let f = &t["function"];
                    (
                        f["name"].as_str().unwrap().to_string(),
                        f["parameters"].clone(),
                    )
                })
                .collect();
            for (at, message) in messages.iter().enumerate() {
                let Some(calls) = &message.tool_calls else {
                    continue;
                };
                let turn = assistant_turn(&template, &messages, at, &case["tools"]);
                let mut extractor = ToolCallExtractor::new(format, functions.clone().into());
                let mut pieces = extractor.push(&turn);
                pieces.extend(extractor.finish());
                let read: Vec<(String, Value)> = pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Call(c) => {
                            Some((c.name.clone(), serde_json::from_str(&c.arguments).unwrap()))
                        }
                        Piece::Content(_) => None,
                    })
                    .collect();
                let written: Vec<(String, Value)> = calls
                    .iter()
                    .map(|c| {
                        let f = &c["function"];
                        (
                            f["name"].as_str().unwrap().to_string(),
                            f["arguments"].clone(),
                        )
                    })
                    .collect();
                assert_eq!(read, written, "{name} {} ({format:?}):\n{turn}", case["id"]);
                checked.push(format!("{name} {}", case["id"]));
            }
        }
    }
    // Every tag format, Kimi's and Hermes took part.
    for family in [
        "qwen2.5-0.5b",
        "Qwen3-Coder",
        "ByteDance-Seed-OSS",
        "GLM-4.6",
        "GLM-4.7",
        "moonshotai-Kimi-K2",
    ] {
        assert!(
            checked.iter().filter(|c| c.starts_with(family)).count() >= 3,
            "{family}: {checked:?}"
        );
    }
}
