//! Thoughts a template writes into an assistant turn read back as the same thought and the
//! same answer: for every thinking template of the corpus (`tests/fixtures/chat_templates`)
//! that keeps the last turn's thought in the history, the turn is rendered as the model would
//! have written it, and the server's splitter for the tags told from the template must return
//! the thought as `reasoning_content` and the rest as `content`.
use candor::server::reasoning::{
    prompt_opens_thought, template_thinks, ReasoningSplitter, ANSWER_WRAPPERS,
};
use candor_models::chat_template::{ChatMessage, ChatTemplate, Thought};
use serde_json::Value;

const THOUGHT: &str = "Two and two make four.";
const ANSWER: &str = "It is 4.";

/// End-of-turn tokens the corpus' thinking templates write after an assistant turn (the
/// model stops at them: they are not part of what it writes).
const END_OF_TURN: [&str; 10] = [
    "<|im_end|>",
    "<|end|>",
    "<|END_OF_TURN_TOKEN|>",
    "</s>",
    "<EOS>",
    "<seed:eos>",
    "[e~[",
    "<｜end▁of▁sentence｜>",
    "<|role_end|>",
    "</assistant>",
];

/// The assistant turn `messages[1]` as the model writes it after the prompt for
/// `messages[0]`, with the answer wrappers decoding leaves out; `None` where the rendering
/// does not continue the prompt.
fn written_turn(template: &ChatTemplate, messages: &[ChatMessage]) -> Option<(String, String)> {
    let extra = serde_json::Map::new();
    let prompt = template.render_with(&messages[..1], true, &extra).ok()?;
    let through = template.render_with(messages, false, &extra).ok()?;
    let mut turn = through.strip_prefix(&prompt)?.trim_end().to_string();
    if let Some(end) = END_OF_TURN.iter().find(|end| turn.ends_with(*end)) {
        turn.truncate(turn.len() - end.len());
    }
    for wrapper in ANSWER_WRAPPERS {
        turn = turn.replace(wrapper, "");
    }
    Some((prompt, turn))
}

#[test]
fn thoughts_in_rendered_turns_read_back_as_the_same_thought() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chat_templates/corpus.json"
    );
    let corpus: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut assistant = ChatMessage::text("assistant", ANSWER);
    assistant.reasoning = Some(Thought::new(THOUGHT));
    let messages = [ChatMessage::text("user", "What is 2+2?"), assistant];
    let (mut checked, mut wrong) = (Vec::new(), Vec::new());
    for entry in corpus["templates"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let source = entry["chat_template"].as_str().unwrap();
        let Some(tags) = template_thinks(source) else {
            continue;
        };
        let template = ChatTemplate::new(source, None, None).unwrap();
        let Some((prompt, turn)) = written_turn(&template, &messages) else {
            continue;
        };
        // Templates that drop the thought from the history (DeepSeek-R1's) show nothing to
        // read back.
        if !turn.contains(THOUGHT) {
            continue;
        }
        for step in [1, 4, 1000] {
            let mut splitter = ReasoningSplitter::new(prompt_opens_thought(&prompt, tags), tags);
            let (mut reasoning, mut content) = (String::new(), String::new());
            let chars: Vec<char> = turn.chars().collect();
            for piece in chars.chunks(step) {
                let out = splitter.push(&piece.iter().collect::<String>());
                reasoning += &out.reasoning;
                content += &out.content;
            }
            let out = splitter.finish();
            reasoning += &out.reasoning;
            content += &out.content;
            if (reasoning.trim(), content.trim()) != (THOUGHT, ANSWER) {
                wrong.push(format!(
                    "{name} (step {step}): reasoning {reasoning:?}, content {content:?}\n{turn}"
                ));
            }
        }
        checked.push(name.to_string());
    }
    assert!(
        wrong.is_empty(),
        "{}\n\nchecked {checked:?}",
        wrong.join("\n\n")
    );
    // `<think>` (Qwen3, GLM, MiniMax-M2...), Seed-OSS's, Command A Reasoning's (its text
    // blocks) and Solar Open's thought turns among them.
    for family in [
        "Qwen-Qwen3-0.6B",
        "GLM-4.6",
        "MiniMax-M2",
        "ByteDance-Seed-OSS",
        "Cohere2MoE",
        "upstage-Solar-Open-100B",
    ] {
        assert!(
            checked.iter().any(|c| c.starts_with(family)),
            "{family}: {checked:?}"
        );
    }
}
