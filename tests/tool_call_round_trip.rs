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

/// The text a template gives the assistant turn `messages[at]`, as the model writes it: the
/// conversation through it less the prompt before it (which ends with the generation prompt),
/// or, where the two part ways (GLM-4.7's generation prompt opens a thought its history turns
/// close at once), less the conversation before it, the turn's header included.
fn assistant_turn(
    template: &ChatTemplate,
    format: ToolFormat,
    messages: &[ChatMessage],
    at: usize,
    tools: &Value,
) -> String {
    let mut extra = serde_json::Map::new();
    extra.insert("tools".into(), tools.clone());
    // The variables the server gives the format's template, at a fixed time.
    let noon = chrono::DateTime::from_timestamp(1_796_644_800, 0).unwrap();
    for (name, value) in format.template_variables(Some(tools), noon) {
        extra.insert(name.into(), value);
    }
    let render = |messages: &[ChatMessage], generation_prompt: bool| {
        template
            .render_with(messages, generation_prompt, &extra)
            .unwrap()
    };
    let through = render(&messages[..=at], false);
    let prompt = render(&messages[..at], true);
    let before = render(&messages[..at], false);
    let turn = through
        .strip_prefix(&prompt)
        .or_else(|| through.strip_prefix(&before))
        .or_else(|| turn_before_an_instruction(&through, &prompt, &before))
        .unwrap_or_else(|| {
            panic!("the conversation does not lead into the turn:\n{before}\n{through}")
        });
    // The model's output stops at its end-of-turn token, which the template then writes
    // (FireFunction's then writes the next generation prompt whatever it is asked).
    let turn = turn.trim_end();
    let turn = turn
        .strip_suffix("<|start_header_id|>assistant<|end_header_id|>")
        .unwrap_or(turn);
    END_OF_TURN
        .iter()
        .find_map(|end| turn.strip_suffix(end))
        .unwrap_or(turn)
        .to_string()
}

/// The turn where the template writes an instruction after the whole history, generation
/// prompt or not (Command R+'s "Write 'Action:' ..." turn): `through` less that instruction
/// (the text it ends with as `before` does), less the conversation before the turn and the
/// generation prompt's header (what `prompt` adds to `before`).
fn turn_before_an_instruction<'a>(through: &'a str, prompt: &str, before: &str) -> Option<&'a str> {
    let header = prompt.strip_prefix(before)?;
    let common = through
        .bytes()
        .rev()
        .zip(before.bytes().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let instruction = &before[before.len() - common..];
    let history = before.strip_suffix(instruction)?;
    through
        .strip_suffix(instruction)?
        .strip_prefix(history)?
        .strip_prefix(header)
}

/// End-of-turn tokens the corpus' templates write after an assistant turn.
const END_OF_TURN: [&str; 11] = [
    "<|eot_id|>",
    "<|END_OF_TURN_TOKEN|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<EOS>",
    "</s>",
    "<｜hy_eos:opensource｜>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
    "<turn|>",
];

/// One conversation of a golden: its id, its tools, its messages.
struct Conversation {
    id: String,
    tools: Value,
    messages: Vec<ChatMessage>,
}

/// The calls `source` writes into each assistant turn of `conversations` that are not read
/// back as the same calls by the extractor of the format it is detected to use; `None` when
/// the template has no format candor reads. `checked` counts the turns read.
fn misread_calls(
    name: &str,
    source: &str,
    conversations: &[Conversation],
    checked: &mut Vec<String>,
) -> Option<Vec<String>> {
    let format = ToolFormat::detect(source).ok()?;
    let template = ChatTemplate::new(source, None, None).unwrap();
    let mut wrong = Vec::new();
    for conversation in conversations {
        let functions: Vec<(String, Value)> = conversation
            .tools
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
        // As the server gives them to the template: calls in the content where the template
        // prints content only (LFM2's).
        let mut messages = conversation.messages.clone();
        candor::server::tools::calls_into_content(&mut messages, format, source);
        let messages = &messages;
        for (at, message) in messages.iter().enumerate() {
            let Some(calls) = &message.tool_calls else {
                continue;
            };
            let turn = assistant_turn(&template, format, messages, at, &conversation.tools);
            let mut extractor = ToolCallExtractor::new(format, functions.clone().into());
            let mut pieces = extractor.push(&turn);
            pieces.extend(extractor.finish());
            let read: Vec<(String, Value)> = pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Call(c) => {
                        let arguments = serde_json::from_str(&c.arguments).unwrap();
                        Some((c.name.clone(), arguments))
                    }
                    Piece::Content(_) => None,
                })
                .collect();
            // GigaChat's templates write a turn's first call only.
            let shown = if format.single_call() { 1 } else { calls.len() };
            let written: Vec<(String, Value)> = calls[..shown]
                .iter()
                .map(|c| {
                    let f = &c["function"];
                    (
                        f["name"].as_str().unwrap().to_string(),
                        f["arguments"].clone(),
                    )
                })
                .collect();
            if read != written {
                wrong.push(format!(
                    "{name} {} ({format:?}): read {read:?}\n{turn}",
                    conversation.id
                ));
            }
            checked.push(format!("{name} {}", conversation.id));
        }
    }
    Some(wrong)
}

#[test]
fn calls_in_rendered_turns_read_back_as_the_same_calls() {
    let mut checked = Vec::new();
    let mut wrong = Vec::new();
    for (name, golden) in goldens() {
        let conversations: Vec<Conversation> = golden["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|case| Conversation {
                id: case["id"].as_str().unwrap().to_string(),
                tools: case["tools"].clone(),
                messages: serde_json::from_value(case["messages"].clone()).unwrap(),
            })
            .collect();
        let source = golden["chat_template"].as_str().unwrap();
        let misread = misread_calls(&name, source, &conversations, &mut checked);
        wrong.extend(misread.unwrap_or_else(|| panic!("{name}: no call format")));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
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

/// The same over every template llama.cpp keeps whose format candor reads
/// (`tests/fixtures/chat_templates/corpus.json`), with the conversations transformers renders
/// with it.
#[test]
fn calls_in_the_template_corpus_read_back_as_the_same_calls() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chat_templates/corpus.json"
    );
    let corpus: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = Vec::new();
    let mut wrong = Vec::new();
    for template in corpus["templates"].as_array().unwrap() {
        let name = template["name"].as_str().unwrap();
        let conversations: Vec<Conversation> = corpus["conversations"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(id, c)| !c["tools"].is_null() && template["texts"].get(id.as_str()).is_some())
            .map(|(id, c)| Conversation {
                id: id.clone(),
                tools: c["tools"].clone(),
                messages: serde_json::from_value(c["messages"].clone()).unwrap(),
            })
            .collect();
        let source = template["chat_template"].as_str().unwrap();
        if let Some(misread) = misread_calls(name, source, &conversations, &mut checked) {
            wrong.extend(misread);
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n\n{} turns read",
        wrong.join("\n\n"),
        checked.len()
    );
    // Hermes, the tag formats, Kimi's, Mistral's list and its `[ARGS]` calls, Apriel's,
    // llama 3's, Command R7B's: most templates with tools.
    assert!(checked.len() >= 60, "{checked:?}");
    // Command R7B's action lists among them.
    let r7b = checked.iter().filter(|c| c.contains("command-r7b")).count();
    assert!(r7b >= 3, "{checked:?}");
    // Apertus' name-keyed lists (transformers renders its typed-arguments conversation),
    // MiniMax-M2's invocations, Nemotron Nano 2's `<TOOLCALL>` lists, Solar Open's
    // sections of calls with ids, GigaChat's `function call` turns and markers, MiniCPM5's
    // `<function name=...>` calls, MiniMax-M1's objects a line, Hy3's suffixed tags and
    // DeepSeek's DSML invocations, MiniMax-M3's nested values, Gemma 4's objects, OLMo 3's
    // Python calls a line and xLAM's answer lists (vLLM's templates).
    for family in [
        "Apertus",
        "MiniMax-M2",
        "NVIDIA-Nemotron-Nano-v2",
        "upstage-Solar-Open",
        "GigaChat3-10B",
        "GigaChat3.1-10B",
        "openbmb-MiniCPM5",
        "MiniMax-M1",
        "tencent-Hy3",
        "deepseek-ai-DeepSeek-V3.2",
        "deepseek-ai-DeepSeek-V4",
        "MiniMax-M3",
        "google-gemma-4-31B-it",
        "vllm-tool_chat_template_olmo3",
        "vllm-tool_chat_template_xlam_qwen",
    ] {
        assert!(
            checked.iter().any(|c| c.starts_with(family)),
            "{family}: {checked:?}"
        );
    }
}

/// llama.cpp's DeepSeek-R1 template (the R1 distills' template with tools) writes its calls in
/// DeepSeek-V3's fenced layout. transformers renders none of the corpus' tool conversations
/// with it (so the corpus has no golden for them); candor's renderings, whose other templates
/// match transformers', are read back as the same calls.
#[test]
fn deepseek_r1_calls_read_back_as_the_same_calls() {
    // The template writes a turn's text or its calls, never both: a turn with both shows no
    // calls to read back.
    let checked = candor_rendered_calls_read_back(
        "llama-cpp-deepseek-r1",
        ToolFormat::DeepseekV3,
        &["assistant_text_and_call"],
    );
    assert_eq!(checked.len(), 2, "{checked:?}");
}

/// FireFunction v2's template (its ` functools[...]` list after the text) reads a `datetime`
/// transformers is not given, so the corpus has no golden for it either: candor's renderings
/// are read back as the same calls.
#[test]
fn firefunction_calls_read_back_as_the_same_calls() {
    let checked = candor_rendered_calls_read_back(
        "fireworks-ai-llama-3-firefunction-v2",
        ToolFormat::Firefunction,
        &[],
    );
    assert!(checked.len() >= 3, "{checked:?}");
}

/// Functionary v3.2's template concatenates a call's arguments to text, which transformers
/// refuses for the arguments' object (so the corpus has no golden of its calls); candor gives
/// such templates the arguments' JSON text, and its renderings read back as the same calls
/// (the answer opens after the prompt's `>>>`, with a text's recipient or the first call's).
#[test]
fn functionary_v32_calls_read_back_as_the_same_calls() {
    let checked = candor_rendered_calls_read_back(
        "meetkai-functionary-medium-v3.2",
        ToolFormat::FunctionaryV32,
        &[],
    );
    assert!(checked.len() >= 3, "{checked:?}");
}

/// The corpus template `name`, told to write `format`, rendered by candor with each of the
/// corpus' conversations with tools but `skipped`: the misread calls must be none. The turns
/// read.
fn candor_rendered_calls_read_back(
    name: &str,
    format: ToolFormat,
    skipped: &[&str],
) -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chat_templates/corpus.json"
    );
    let corpus: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let template = corpus["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap();
    let source = template["chat_template"].as_str().unwrap();
    assert_eq!(ToolFormat::detect(source), Ok(format));
    let conversations: Vec<Conversation> = corpus["conversations"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(id, c)| !c["tools"].is_null() && !skipped.contains(&id.as_str()))
        .map(|(id, c)| Conversation {
            id: id.clone(),
            tools: c["tools"].clone(),
            messages: serde_json::from_value(c["messages"].clone()).unwrap(),
        })
        .collect();
    let mut checked = Vec::new();
    let wrong = misread_calls(name, source, &conversations, &mut checked);
    assert_eq!(wrong, Some(vec![]));
    checked
}
