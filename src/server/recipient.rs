//! Functionary v3's recipients (MeetKai's functionary-*-v3.2): its template ends the prompt with
//! `>>>`, after which the model names whom it writes to, `all` for the user (then its text) or
//! a function (then the call's arguments). Every text answer so starts with `all\n`, which is
//! the template's protocol, not the answer: read from the answer's start, it is dropped there.
//! (With tools, the call extractor reads the recipients instead: `tools::functionary_v32`.)

/// What opens each message (the template's, before every recipient).
pub const MESSAGE: &str = ">>>";
/// The recipient that is the user: its message is the answer's text.
pub const USER: &str = "all";
/// `USER`'s line: what the template writes before a message to the user.
pub const TO_USER: &str = "all\n";

/// Whether a chat template is functionary v3.2's: it writes the assistant's text to `all`.
/// (The tool format `tools::functionary_v32` is told by the same test.)
pub fn of_template(template: &str) -> bool {
    template.contains(">>>all")
}

/// The recipient line a chat's answer starts with: `TO_USER` where the template is
/// functionary's and the prompt ends in its `>>>`.
pub fn answer_prefix(template: &str, prompt: &str) -> Option<&'static str> {
    (of_template(template) && prompt.ends_with(MESSAGE)).then_some(TO_USER)
}

/// Drops `prefix` from the start of a streamed text: held back while the text could still be
/// it, released whole where it is not.
#[derive(Debug)]
pub struct PrefixDropper {
    prefix: &'static str,
    held: String,
    settled: bool,
}

impl PrefixDropper {
    pub fn new(prefix: &'static str) -> Self {
        PrefixDropper {
            prefix,
            held: String::new(),
            settled: false,
        }
    }

    /// The text to release after `text` arrives.
    pub fn push(&mut self, text: &str) -> String {
        if self.settled {
            return text.to_string();
        }
        self.held.push_str(text);
        if self.held.len() < self.prefix.len() && self.prefix.starts_with(self.held.as_str()) {
            return String::new();
        }
        self.settled = true;
        let held = std::mem::take(&mut self.held);
        match held.strip_prefix(self.prefix) {
            Some(rest) => rest.to_string(),
            None => held,
        }
    }

    /// The answer ended: what is still held (a beginning of the prefix, never finished).
    pub fn finish(&mut self) -> String {
        self.settled = true;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` pushed in pieces of `size` bytes (at char boundaries), then finished.
    fn through(text: &str, size: usize) -> String {
        let mut d = PrefixDropper::new(TO_USER);
        let mut out = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut cut = size.min(rest.len());
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            out.push_str(&d.push(&rest[..cut]));
            rest = &rest[cut..];
        }
        out + &d.finish()
    }

    #[test]
    fn the_recipient_is_dropped_at_any_chunking() {
        for size in 1..8 {
            assert_eq!(
                through("all\nHello, all\nof you", size),
                "Hello, all\nof you"
            );
            assert_eq!(through("allé\nbien", size), "allé\nbien");
            assert_eq!(through("al", size), "al");
            assert_eq!(through("all\n", size), "");
            assert_eq!(through("get_weather\n{}", size), "get_weather\n{}");
            assert_eq!(through("", size), "");
        }
    }

    #[test]
    fn only_functionary_prompts_have_it() {
        let template = "{{ '>>>all\\n' + message['content'] }}";
        assert_eq!(
            answer_prefix(template, "...<|end_header_id|>\n\n>>>"),
            Some(TO_USER)
        );
        assert_eq!(answer_prefix(template, "...<|end_header_id|>\n\n"), None);
        assert_eq!(answer_prefix("{{ messages }}", "a >>>"), None);
    }
}
