//! Several calls in one assistant message, for chat templates that refuse them (Llama 3.1,
//! 3.2 and 3.3: "This model only supports single tool-calls at once!"). OpenAI's clients send
//! a turn's parallel calls back as one message followed by their results; where the template
//! refuses that (`ChatTemplate` asks it once), the turn is written as the model could have
//! taken it, one call at a time: each call its own assistant message, followed by its result
//! (found by the call's id, else in order), so the history is still whole instead of a 400.
use crate::chat_template::ChatMessage;

/// `messages` with every assistant message of several calls split into one a call, each
/// followed by the tool message answering it.
pub fn one_call_per_message(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len());
    let mut i = 0;
    while i < messages.len() {
        let m = &messages[i];
        i += 1;
        let calls = match &m.tool_calls {
            Some(calls) if m.role == "assistant" && calls.len() > 1 => calls,
            _ => {
                out.push(m.clone());
                continue;
            }
        };
        let results_end = (i..messages.len())
            .find(|&j| messages[j].role != "tool")
            .unwrap_or(messages.len());
        let mut results: Vec<Option<&ChatMessage>> =
            messages[i..results_end].iter().map(Some).collect();
        i = results_end;
        for (k, call) in calls.iter().enumerate() {
            let mut one = m.clone();
            one.tool_calls = Some(vec![call.clone()]);
            if k > 0 {
                // The text goes with the first call; the others keep its kind (an empty text
                // where it was one: Qwen3's template searches it).
                one.content = m.content.as_ref().map(|_| String::new());
                one.reasoning = None;
            }
            out.push(one);
            let id = call.get("id").and_then(|v| v.as_str());
            let by_id = results
                .iter()
                .position(|r| r.is_some_and(|r| id.is_some() && r.tool_call_id.as_deref() == id));
            let at = by_id.or_else(|| results.iter().position(Option::is_some));
            if let Some(result) = at.and_then(|at| results[at].take()) {
                out.push(result.clone());
            }
        }
        out.extend(results.into_iter().flatten().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(id: &str, name: &str) -> serde_json::Value {
        json!({"id": id, "type": "function", "function": {"name": name, "arguments": {}}})
    }

    fn result(id: &str, text: &str) -> ChatMessage {
        let mut m = ChatMessage::text("tool", text);
        m.tool_call_id = Some(id.into());
        m
    }

    fn shape(messages: &[ChatMessage]) -> Vec<String> {
        messages
            .iter()
            .map(|m| match &m.tool_calls {
                Some(calls) => format!("call {}", calls[0]["function"]["name"].as_str().unwrap()),
                None => format!("{} {}", m.role, m.content.clone().unwrap_or_default()),
            })
            .collect()
    }

    /// Results sent in another order follow their own calls; a result for no call stays.
    #[test]
    fn each_call_is_followed_by_its_result() {
        let mut turn = ChatMessage::text("assistant", "Checking.");
        turn.tool_calls = Some(vec![call("a1", "weather"), call("b2", "time")]);
        let messages = [
            ChatMessage::text("user", "Weather and time?"),
            turn,
            result("b2", "noon"),
            result("a1", "sunny"),
            result("zz", "stray"),
            ChatMessage::text("user", "Thanks"),
        ];
        let split = one_call_per_message(&messages);
        assert_eq!(
            shape(&split),
            [
                "user Weather and time?",
                "call weather",
                "tool sunny",
                "call time",
                "tool noon",
                "tool stray",
                "user Thanks"
            ]
        );
        assert_eq!(split[1].content.as_deref(), Some("Checking."));
        assert_eq!(split[3].content.as_deref(), Some(""));
    }
}
