//! `truncation: "auto"` (the Responses API): a conversation longer than the context loses its
//! oldest turns, whole (a turn runs from a user message to the next), until the prompt and
//! the room asked for the answer fit. System messages stay; the last turn is never dropped
//! (a prompt still too long is then refused as any other).
use super::error::ApiError;
use super::openai::Message;

/// `messages` without their oldest turn; `None` when only the last turn is left.
pub fn without_oldest_turn(messages: &[Message]) -> Option<Vec<Message>> {
    let turn_starts: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == "user")
        .map(|(i, _)| i)
        .collect();
    let first_kept = *turn_starts.get(1)?;
    let first_dropped = messages.iter().position(|m| m.role != "system")?;
    let mut kept: Vec<Message> = messages[..first_dropped]
        .iter()
        .filter(|m| m.role == "system")
        .cloned()
        .collect();
    kept.extend(messages[first_kept..].iter().cloned());
    Some(kept)
}

/// Render `messages`, dropping their oldest turns while the rendered prompt's token count
/// does not `fit`. Returns the prompt text and its tokens, and how many messages went.
pub fn render_fitting(
    messages: &[Message],
    fits: impl Fn(usize) -> bool,
    render: impl Fn(&[Message]) -> Result<(String, Vec<u32>), ApiError>,
) -> Result<(String, Vec<u32>, usize), ApiError> {
    let mut current = messages.to_vec();
    loop {
        let (text, ids) = render(&current)?;
        if fits(ids.len()) {
            return Ok((text, ids, messages.len() - current.len()));
        }
        match without_oldest_turn(&current) {
            Some(shorter) => current = shorter,
            None => return Ok((text, ids, messages.len() - current.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.role.as_str()).collect()
    }

    fn conversation() -> Vec<Message> {
        [
            "system",
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
            "user",
        ]
        .iter()
        .map(|r| Message::new(r, Some(format!("{r} text"))))
        .collect()
    }

    #[test]
    fn turns_go_oldest_first_and_whole() {
        let m = conversation();
        let once = without_oldest_turn(&m).unwrap();
        assert_eq!(roles(&once), ["system", "user", "assistant", "user"]);
        let twice = without_oldest_turn(&once).unwrap();
        assert_eq!(roles(&twice), ["system", "user"]);
        assert!(without_oldest_turn(&twice).is_none());
    }

    #[test]
    fn rendering_stops_dropping_once_it_fits() {
        let m = conversation();
        // A "token" per message: fits at 4.
        let render = |m: &[Message]| Ok((String::new(), vec![0; m.len()]));
        let (_, ids, dropped) = render_fitting(&m, |n| n <= 4, render).unwrap();
        assert_eq!((ids.len(), dropped), (4, 4));
        let (_, ids, dropped) = render_fitting(&m, |n| n <= 1, render).unwrap();
        assert_eq!((ids.len(), dropped), (2, 6), "the last turn stays");
    }
}
