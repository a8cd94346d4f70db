//! How a chat prompt ends (vLLM's `add_generation_prompt` and `continue_final_message`): with
//! the template's opening of an assistant turn (the default), with nothing, or inside the final
//! assistant message, so the model goes on writing it (a prefill: the answer's first words set
//! by the client).
use super::error::ApiError;
use super::openai::{Content, Message};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptEnd {
    GenerationPrompt,
    Bare,
    ContinueFinal,
}

impl PromptEnd {
    /// From the request's fields; continuing a message that is not the assistant's is a 400.
    pub fn of(
        add_generation_prompt: Option<bool>,
        continue_final_message: bool,
        messages: &[Message],
    ) -> Result<Self, ApiError> {
        match (add_generation_prompt, continue_final_message) {
            (Some(true), true) => Err(ApiError::invalid(
                "continue_final_message",
                "`continue_final_message` and `add_generation_prompt` exclude each other",
            )),
            (_, true) => match messages.last() {
                Some(m) if m.role == "assistant" && final_text(m).is_some() => {
                    Ok(PromptEnd::ContinueFinal)
                }
                _ => Err(ApiError::invalid(
                    "continue_final_message",
                    "`continue_final_message` needs a final assistant message with text",
                )),
            },
            (Some(false), false) => Ok(PromptEnd::Bare),
            (_, false) => Ok(PromptEnd::GenerationPrompt),
        }
    }

    pub fn generation_prompt(self) -> bool {
        self == PromptEnd::GenerationPrompt
    }
}

/// The text of a message, when it has some.
pub fn final_text(m: &Message) -> Option<String> {
    let text = match m.content.as_ref()? {
        Content::Text(t) => t.clone(),
        Content::Parts(parts) => parts.iter().filter_map(|p| p.text.as_deref()).collect(),
    };
    (!text.trim().is_empty()).then_some(text)
}

/// The rendered conversation cut right after the final message's text, dropping what the
/// template closes the turn with. Templates may trim a message, so the trimmed text is looked
/// for too; `None` when the template does not show the text.
pub fn cut_after_final(rendered: &str, text: &str) -> Option<usize> {
    [text, text.trim_end(), text.trim()]
        .iter()
        .find_map(|t| rendered.rfind(t).map(|at| at + t.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str, text: &str) -> Message {
        Message {
            role: role.into(),
            content: Some(Content::Text(text.into())),
            tool_calls: None,
            tool_call_id: None,
            name: None,
            reasoning_content: None,
        }
    }

    #[test]
    fn the_fields_choose_the_end() {
        let user = [message("user", "hi")];
        let prefilled = [message("user", "hi"), message("assistant", "Sure, ")];
        assert_eq!(
            PromptEnd::of(None, false, &user).unwrap(),
            PromptEnd::GenerationPrompt
        );
        assert_eq!(
            PromptEnd::of(Some(false), false, &user).unwrap(),
            PromptEnd::Bare
        );
        assert_eq!(
            PromptEnd::of(Some(false), true, &prefilled).unwrap(),
            PromptEnd::ContinueFinal
        );
        assert_eq!(
            PromptEnd::of(None, true, &prefilled).unwrap(),
            PromptEnd::ContinueFinal
        );
        for (add, messages) in [(Some(true), &prefilled[..]), (None, &user[..])] {
            let e = PromptEnd::of(add, true, messages).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("continue_final_message"));
        }
    }

    #[test]
    fn the_cut_falls_after_the_last_showing_of_the_text() {
        let rendered =
            "<|im_start|>user\nSure, <|im_end|>\n<|im_start|>assistant\nSure, <|im_end|>\n";
        let at = cut_after_final(rendered, "Sure, ").unwrap();
        assert_eq!(
            &rendered[..at],
            "<|im_start|>user\nSure, <|im_end|>\n<|im_start|>assistant\nSure, "
        );
        // A template that trims the message still shows its words.
        let trimmed = "<start_of_turn>model\nSure,<end_of_turn>\n";
        assert_eq!(
            &trimmed[..cut_after_final(trimmed, "Sure, ").unwrap()],
            "<start_of_turn>model\nSure,"
        );
        assert_eq!(cut_after_final("nothing here", "Sure"), None);
    }
}
