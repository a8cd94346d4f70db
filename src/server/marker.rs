//! Text that may be the start of a marker (a stop string, `<tool_call>`, `</think>`) is held
//! back from a stream until the next piece settles it.

/// Length of the longest end of `text` that is a proper beginning of `marker`.
pub fn held_back(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&k| marker.is_char_boundary(k) && text.ends_with(&marker[..k]))
        .unwrap_or(0)
}

/// Whether text that may only open with `marker` (after whitespace) does so.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening<'a> {
    /// It does: the text from the marker on.
    Opens(&'a str),
    /// Only whitespace or part of the marker so far: wait for more.
    Undecided,
    /// It does not.
    Not,
}

pub fn opening<'a>(text: &'a str, marker: &str) -> Opening<'a> {
    let trimmed = text.trim_start();
    if trimmed.starts_with(marker) {
        Opening::Opens(trimmed)
    } else if marker.starts_with(trimmed) {
        Opening::Undecided
    } else {
        Opening::Not
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_partial_marker_at_the_end() {
        assert_eq!(held_back("abc </th", "</think>"), 4);
        assert_eq!(held_back("abc <", "</think>"), 1);
        assert_eq!(held_back("abc", "</think>"), 0);
        // A whole marker is found by searching, not held back.
        assert_eq!(held_back("x</think>", "</think>"), 0);
        assert_eq!(held_back("é", "éa"), 2);
    }

    #[test]
    fn openings_after_whitespace() {
        assert_eq!(
            opening(" \n<think>x", "<think>"),
            Opening::Opens("<think>x")
        );
        assert_eq!(opening(" <th", "<think>"), Opening::Undecided);
        assert_eq!(opening("  ", "<think>"), Opening::Undecided);
        assert_eq!(opening("a<think>", "<think>"), Opening::Not);
    }
}
