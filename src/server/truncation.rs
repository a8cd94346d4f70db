//! `truncation: "auto"` (the Responses API): a conversation longer than the context loses its
//! oldest turns, whole (a turn runs from a user message to the next), until the prompt and
//! the room asked for the answer fit. System messages stay; the last turn is never dropped
//! (a prompt still too long is then refused as any other).
use super::error::ApiError;
use super::openai::Message;

/// Where each turn starts (its user message).
fn turn_starts(messages: &[Message]) -> Vec<usize> {
    messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == "user")
        .map(|(i, _)| i)
        .collect()
}

/// `messages` without their `dropped` oldest turns: the system messages that lead them, then
/// the turns from the next one on; `None` when no turn would be left.
fn without_oldest_turns(messages: &[Message], dropped: usize) -> Option<Vec<Message>> {
    let first_kept = *turn_starts(messages).get(dropped)?;
    let leading_system = messages.iter().take_while(|m| m.role == "system");
    Some(
        leading_system
            .chain(&messages[first_kept..])
            .cloned()
            .collect(),
    )
}

/// Render `messages`, dropping as few of their oldest turns as make the rendered prompt's
/// token count `fit` (the last turn always stays). Returns the prompt text, its tokens, and
/// how many messages went. A prompt shrinks as turns go, so the fewest are found by bisection:
/// a long conversation is rendered a handful of times, not once per turn.
pub fn render_fitting<Text>(
    messages: &[Message],
    fits: impl Fn(usize) -> bool,
    render: impl Fn(&[Message]) -> Result<(Text, Vec<u32>), ApiError>,
) -> Result<(Text, Vec<u32>, usize), ApiError> {
    let (text, ids) = render(messages)?;
    let most = turn_starts(messages).len().saturating_sub(1);
    if fits(ids.len()) || most == 0 {
        return Ok((text, ids, 0));
    }
    let attempt = |dropped: usize| -> Result<(Text, Vec<u32>, usize), ApiError> {
        let kept = without_oldest_turns(messages, dropped).unwrap_or_default();
        let (text, ids) = render(&kept)?;
        Ok((text, ids, messages.len() - kept.len()))
    };
    // The fewest turns to drop, in 1..=most, if any number fits.
    let (mut lo, mut hi) = (1, most);
    let mut fewest = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let rendered = attempt(mid)?;
        if fits(rendered.1.len()) {
            fewest = Some(rendered);
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    match fewest {
        Some(rendered) => Ok(rendered),
        // Not even the last turn alone fits: it is refused as any prompt too long.
        None => attempt(most),
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
        let once = without_oldest_turns(&m, 1).unwrap();
        assert_eq!(roles(&once), ["system", "user", "assistant", "user"]);
        let twice = without_oldest_turns(&m, 2).unwrap();
        assert_eq!(roles(&twice), ["system", "user"]);
        assert!(without_oldest_turns(&m, 3).is_none());
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

    #[test]
    fn bisection_drops_as_few_turns_as_dropping_one_by_one() {
        let mut m = vec![Message::new("system", Some("s".into()))];
        for _ in 0..9 {
            m.push(Message::new("user", Some("u".into())));
            m.push(Message::new("assistant", Some("a".into())));
        }
        let render = |m: &[Message]| Ok((String::new(), vec![0; m.len()]));
        for limit in 0..22 {
            let one_by_one = (0..9)
                .find(|&k| without_oldest_turns(&m, k).is_some_and(|kept| kept.len() <= limit))
                .unwrap_or(8);
            let want = m.len() - without_oldest_turns(&m, one_by_one).unwrap().len();
            let (_, _, dropped) = render_fitting(&m, |n| n <= limit, render).unwrap();
            assert_eq!(dropped, want, "limit {limit}");
        }
    }
}
