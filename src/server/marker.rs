//! Text that may be the start of a marker (a stop string, `<tool_call>`, `</think>`) is held
//! back from a stream until the next piece settles it.

/// Length of the longest end of `text` that is a proper beginning of `marker`.
pub fn held_back(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&k| marker.is_char_boundary(k) && text.ends_with(&marker[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::held_back;

    #[test]
    fn longest_partial_marker_at_the_end() {
        assert_eq!(held_back("abc </th", "</think>"), 4);
        assert_eq!(held_back("abc <", "</think>"), 1);
        assert_eq!(held_back("abc", "</think>"), 0);
        // A whole marker is found by searching, not held back.
        assert_eq!(held_back("x</think>", "</think>"), 0);
        assert_eq!(held_back("é", "éa"), 2);
    }
}
