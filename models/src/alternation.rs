//! Consecutive messages of one role, for chat templates that demand user and assistant turns
//! alternate (Gemma 2's and 3's, Mistral Nemo's and Small 3.2's raise "Conversation roles must
//! alternate"). Clients send two user messages in a row (a question after an unanswered one,
//! a reply cut off and dropped); where the template refuses that (`ChatTemplate` asks it
//! once), a run of user or assistant messages becomes one, its texts joined by a blank line
//! as mistral_common joins them, its calls one after another.
use crate::chat_template::ChatMessage;

/// `messages` with each run of consecutive user, or assistant, messages made one.
pub fn merged_runs(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for m in messages {
        let joins = matches!(m.role.as_str(), "user" | "assistant");
        match out.last_mut() {
            Some(last) if joins && last.role == m.role => {
                if let Some(text) = m.content.as_deref().filter(|t| !t.is_empty()) {
                    last.content = Some(match last.content.take().filter(|t| !t.is_empty()) {
                        Some(before) => format!("{before}\n\n{text}"),
                        None => text.to_string(),
                    });
                }
                if let Some(calls) = &m.tool_calls {
                    last.tool_calls
                        .get_or_insert_with(Vec::new)
                        .extend(calls.iter().cloned());
                }
                if last.reasoning.is_none() {
                    last.reasoning = m.reasoning.clone();
                }
            }
            _ => out.push(m.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_role_become_one_message() {
        let messages = [
            ChatMessage::text("user", "First question."),
            ChatMessage::text("user", ""),
            ChatMessage::text("user", "Second question."),
            ChatMessage::text("assistant", "Part one."),
            ChatMessage::text("assistant", "Part two."),
            ChatMessage::text("tool", "a"),
            ChatMessage::text("tool", "b"),
        ];
        let merged = merged_runs(&messages);
        let texts: Vec<(&str, &str)> = merged
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            texts,
            [
                ("user", "First question.\n\nSecond question."),
                ("assistant", "Part one.\n\nPart two."),
                ("tool", "a"),
                ("tool", "b"),
            ]
        );
    }
}
