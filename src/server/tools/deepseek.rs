//! DeepSeek's tool calls (vLLM's `deepseek_v3` and `deepseek_v31` parsers): one section of
//! calls between special tokens, each call between its own, the function's name before a
//! separator token. DeepSeek-V3 / R1 (and the R1 distills under llama.cpp's template) write
//! the call's type first and the arguments in a JSON fence:
//! `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{...}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>`;
//! DeepSeek-V3.1 the name, then the arguments as they are:
//! `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>`.
use super::format::{
    literal, marker, name_first_call_grammar, name_then_args_rules, section_calls, ParsedCall,
    WS_RULE,
};
use serde_json::Value;

pub const SECTION_BEGIN: &str = "<｜tool▁calls▁begin｜>";
pub const SECTION_END: &str = "<｜tool▁calls▁end｜>";
const CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
const CALL_END: &str = "<｜tool▁call▁end｜>";
const SEP: &str = "<｜tool▁sep｜>";
/// V3's call type before the separator, and its fence around the arguments.
const CALL_TYPE: &str = "function";
const FENCE_OPEN: &str = "\n```json\n";
const FENCE_CLOSE: &str = "\n```";

/// Which of DeepSeek's two layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `function<sep>NAME` and fenced arguments (V3, R1).
    Fenced,
    /// `NAME<sep>` and bare arguments (V3.1).
    Bare,
}

impl Layout {
    /// The layout a template writes its history's calls in: fenced where it writes the fence.
    pub fn of_template(template: &str) -> Layout {
        match template.contains("```json") {
            true => Layout::Fenced,
            false => Layout::Bare,
        }
    }

    /// The calls in a section's body (between its markers); `None` unless it is only calls.
    pub fn parse(self, body: &str) -> Option<Vec<ParsedCall>> {
        section_calls(body, (CALL_BEGIN, SEP, CALL_END), |head, call| {
            let (name, arguments) = match self {
                Layout::Fenced if head.trim() == CALL_TYPE => {
                    let (name, fenced) = call.split_once('\n')?;
                    let fenced = fenced.trim();
                    let inner = fenced
                        .strip_prefix("```json")
                        .or(fenced.strip_prefix("```"));
                    (
                        name,
                        inner.unwrap_or(fenced).trim_end().strip_suffix("```")?,
                    )
                }
                Layout::Fenced => return None,
                Layout::Bare => (head, call),
            };
            Some((name.trim(), arguments))
        })
    }

    /// What a demanded call's answer starts with: the section and a call opened, up to the
    /// function's name, or through to its arguments when `function` is named.
    pub fn forced_prefix(self, function: Option<&str>) -> String {
        let head = match self {
            Layout::Fenced => format!("{CALL_TYPE}{SEP}"),
            Layout::Bare => String::new(),
        };
        let named = function
            .map(|f| format!("{f}{}", self.before_arguments()))
            .unwrap_or_default();
        format!("{SECTION_BEGIN}{CALL_BEGIN}{head}{named}")
    }

    /// What comes between the name and the arguments, as text.
    fn before_arguments(self) -> &'static str {
        match self {
            Layout::Fenced => FENCE_OPEN,
            Layout::Bare => SEP,
        }
    }

    /// The same as lark items (the separator a token where it is one).
    fn before_arguments_items(self, special: &dyn Fn(&str) -> bool) -> String {
        match self {
            Layout::Fenced => literal(FENCE_OPEN),
            Layout::Bare => marker(SEP, special),
        }
    }

    /// What closes a call after its arguments, as lark items.
    fn call_close(self, special: &dyn Fn(&str) -> bool) -> String {
        let fence = match self {
            Layout::Fenced => format!("{} ", literal(FENCE_CLOSE)),
            Layout::Bare => String::new(),
        };
        format!("{fence}{}", marker(CALL_END, special))
    }

    /// After `forced_prefix(function)`: the rest of that call, then the section's end.
    /// `special` says which markers are one special token of the vocabulary (DeepSeek's are),
    /// named as tokens.
    pub fn call_grammar(
        self,
        functions: &[(String, Value)],
        function: Option<&str>,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        let end = format!(
            "{} WS? {}",
            self.call_close(special),
            marker(SECTION_END, special)
        );
        name_first_call_grammar(functions, function, &end, WS_RULE, || {
            self.call_rules(functions, special)
        })
    }

    /// After the section's opening token (a lazy grammar's trigger): its calls (one only
    /// unless `parallel`), then its end.
    pub fn section_grammar(
        self,
        functions: &[(String, Value)],
        parallel: bool,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        let more = if parallel { " one*" } else { "" };
        let head = match self {
            Layout::Fenced => format!("{} {} ", literal(CALL_TYPE), marker(SEP, special)),
            Layout::Bare => String::new(),
        };
        Ok(format!(
            "start: one{more} WS? {}\none: WS? {} {head}call {}\n{}{WS_RULE}",
            marker(SECTION_END, special),
            marker(CALL_BEGIN, special),
            self.call_close(special),
            self.call_rules(functions, special)?
        ))
    }

    /// Rules `call` (a function's name, then its arguments) and `args_i`.
    fn call_rules(
        self,
        functions: &[(String, Value)],
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        name_then_args_rules(functions, &self.before_arguments_items(special))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall::new(name, arguments)
    }

    #[test]
    fn both_layouts_parse() {
        let fenced = "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n\
                      {\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function\
                      <｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>";
        let both = Some(vec![
            call("get_weather", "{\"city\":\"Paris\"}"),
            call("get_time", "{}"),
        ]);
        assert_eq!(Layout::Fenced.parse(fenced), both);
        let bare = "<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}\
                    <｜tool▁call▁end｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜>";
        assert_eq!(Layout::Bare.parse(bare), both);
        // Stopped after the arguments.
        assert_eq!(
            Layout::Bare.parse("<｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": 1}"),
            Some(vec![call("f", "{\"a\":1}")])
        );
        for (layout, bad) in [
            (Layout::Fenced, ""),
            (Layout::Fenced, "text"),
            // V3.1's layout is not V3's, nor the reverse.
            (Layout::Fenced, bare),
            (Layout::Bare, fenced),
            (
                Layout::Fenced,
                "<｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n[1]\n```<｜tool▁call▁end｜>",
            ),
            (
                Layout::Bare,
                "<｜tool▁call▁begin｜><｜tool▁sep｜>{}<｜tool▁call▁end｜>",
            ),
        ] {
            assert_eq!(layout.parse(bad), None, "{layout:?} {bad:?}");
        }
    }

    #[test]
    fn forced_prefixes_continue_into_calls() {
        for (layout, named_tail, open_tail) in [
            (
                Layout::Fenced,
                "{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜>",
                "get_weather\n```json\n{\"city\": \"Oslo\"}\n```<｜tool▁call▁end｜>",
            ),
            (
                Layout::Bare,
                "{\"city\": \"Oslo\"}<｜tool▁call▁end｜>",
                "get_weather<｜tool▁sep｜>{\"city\": \"Oslo\"}<｜tool▁call▁end｜>",
            ),
        ] {
            let named = layout.forced_prefix(Some("get_weather")) + named_tail;
            let open = layout.forced_prefix(None) + open_tail;
            for text in [named, open] {
                let body = text.strip_prefix(SECTION_BEGIN).unwrap();
                assert_eq!(
                    layout.parse(body),
                    Some(vec![call("get_weather", "{\"city\":\"Oslo\"}")]),
                    "{text}"
                );
            }
        }
    }
}
