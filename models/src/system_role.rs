//! System messages for chat templates that have no system role (Gemma 1 and 2 refuse one:
//! "System role not supported"; Mistral 7B v0.1's demands alternating user and assistant
//! turns; others drop it unread). OpenAI's clients send one with most requests, so where a
//! template does not show a system message's text (`ChatTemplate` asks it once), the system
//! text goes to the start of the next user message instead, as llama.cpp's templates do
//! (minja's system-role polyfill: system texts joined by a line break, then a line break
//! before the user's text; a system text no user message follows becomes a user message).
use crate::chat_template::ChatMessage;

/// `messages` with their system messages' texts moved into the user messages after them.
pub fn folded_into_user_turns(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len());
    let mut pending = String::new();
    for m in messages {
        let text = m.content.as_deref();
        match (m.role.as_str(), text) {
            ("system", Some(text)) => {
                if !pending.is_empty() {
                    pending.push('\n');
                }
                pending.push_str(text);
                continue;
            }
            ("system", None) => continue,
            ("user", _) if !pending.is_empty() => {
                let mut m = m.clone();
                let own = m.content.take().unwrap_or_default();
                let joined = match own.is_empty() {
                    true => std::mem::take(&mut pending),
                    false => format!("{}\n{own}", std::mem::take(&mut pending)),
                };
                m.content = Some(joined);
                out.push(m);
                continue;
            }
            _ if !pending.is_empty() => {
                out.push(ChatMessage::text("user", &std::mem::take(&mut pending)));
            }
            _ => {}
        }
        out.push(m.clone());
    }
    if !pending.is_empty() {
        out.push(ChatMessage::text("user", &pending));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(messages: &[ChatMessage]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone().unwrap_or_default()))
            .collect()
    }

    fn pair(role: &str, text: &str) -> (String, String) {
        (role.to_string(), text.to_string())
    }

    #[test]
    fn system_texts_open_the_next_user_message() {
        let messages = [
            ChatMessage::text("system", "Be brief."),
            ChatMessage::text("system", "Answer in French."),
            ChatMessage::text("user", "Hi"),
            ChatMessage::text("assistant", "Salut"),
            ChatMessage::text("system", "Now in German."),
            ChatMessage::text("assistant", "Hallo"),
            ChatMessage::text("system", "Last."),
        ];
        assert_eq!(
            texts(&folded_into_user_turns(&messages)),
            [
                pair("user", "Be brief.\nAnswer in French.\nHi"),
                pair("assistant", "Salut"),
                pair("user", "Now in German."),
                pair("assistant", "Hallo"),
                pair("user", "Last."),
            ]
        );
        let plain = [ChatMessage::text("user", "Hi")];
        assert_eq!(texts(&folded_into_user_turns(&plain)), [pair("user", "Hi")]);
    }
}
