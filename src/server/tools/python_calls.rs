//! Tool calls written as Python calls with keyword arguments, `get_weather(city="Paris")`, in
//! the three layouts models are taught:
//! - LFM2's: a list between special tokens, `<|tool_call_start|>[f(a=1), g()]<|tool_call_end|>`
//!   (`lfm2`, llama.cpp's LFM2 parser);
//! - the bare list that is the whole answer, `[f(a=1), g()]` (vLLM's `pythonic`: Llama 3.2,
//!   ToolACE, Gemma 3 and Llama 4 with vLLM's pythonic templates; Llama 4 may wrap it in
//!   `<|python_start|>` ... `<|python_end|>`, special tokens the decoder leaves out of the
//!   text, as vLLM's `llama4_pythonic` strips them);
//! - a call a line in `<function_calls>` ... `</function_calls>` (OLMo 3; vLLM's `olmo3`).
//!
//! The values are Python literals or JSON's (`true`, `false`, `null` taken beside Python's
//! words, as vLLM's OLMo 3 parser and llama.cpp's LFM2 parser take them); grammars write them
//! as JSON of each property's schema.
use super::format::{
    call_alternatives, literal, marker, schema_properties, schema_text, separated_members,
    ParsedCall,
};
use super::lfm2;
use super::py_literal;
use super::tagged::with_definitions;
use serde_json::Value;

/// OLMo 3's call block.
pub const LINES_BLOCK: (&str, &str) = ("<function_calls>", "</function_calls>");
/// Llama 4's code tokens, around the list where its model writes them.
pub const PYTHON_START: &str = "<|python_start|>";
const PYTHON_END: &str = "<|python_end|>";
/// How vLLM's pythonic templates (Llama 3.2's, Llama 4's, ToolACE's, Gemma 3's) show the
/// model its calls.
pub const LIST_TEMPLATE_EXAMPLE: &str = "[func_name1(";

/// Lark's optional whitespace after a list's commas.
const WS_RULE: &str = "WS: /[ \\t\\n]{1,4}/\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// LFM2's list between its tokens.
    Lfm2,
    /// The answer is the list.
    List,
    /// A call a line in OLMo 3's block.
    Lines,
}

impl Layout {
    /// The calls of a block's body (LFM2's list, the whole answer's list, OLMo 3's lines);
    /// `None` unless it is nothing but such calls.
    pub fn parse(self, body: &str) -> Option<Vec<ParsedCall>> {
        let calls = match self {
            Layout::Lfm2 | Layout::List => py_literal::parse_calls(body.trim())?,
            Layout::Lines => py_literal::parse_call_lines(body)?,
        };
        calls
            .into_iter()
            .map(|(name, arguments)| {
                let arguments = serde_json::to_string(&Value::Object(arguments)).ok()?;
                Some(ParsedCall::new(&name, &arguments))
            })
            .collect()
    }

    /// What a demanded call's answer starts with: what opens the calls, then the named
    /// function's name and `(`.
    pub fn forced_prefix(self, function: Option<&str>) -> String {
        let named = function.map(|f| format!("{f}(")).unwrap_or_default();
        format!("{}{named}", self.opening())
    }

    /// The grammar after `forced_prefix(function)`: that call's arguments, or one call to any
    /// of `functions`, then the calls' close.
    pub fn call_grammar(
        self,
        functions: &[(String, Value)],
        function: Option<&str>,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        let end = self.closing(special);
        match function {
            Some(name) => {
                let i = super::format::function_index(functions, name)?;
                let args = argument_rules(i, &functions[i].1)?;
                Ok(format!("start: args_{i} {} {end}\n{args}", literal(")")))
            }
            None => Ok(format!("start: call {end}\n{}", call_rules(functions)?)),
        }
    }

    /// The grammar after the token that opens the calls under `tool_choice: "auto"` (LFM2's
    /// `<|tool_call_start|>`, OLMo 3's `<function_calls>`, Llama 4's `<|python_start|>`): the
    /// calls (one where the request takes one) and their close.
    pub fn block_grammar(
        self,
        functions: &[(String, Value)],
        parallel: bool,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        let calls = self.calls(parallel);
        let start = match self {
            Layout::Lfm2 => format!("\"[\" {calls} {}", self.closing(special)),
            // Llama 4 may close its code with its token.
            Layout::List => format!("\"[\" {calls} \"]\" {}?", marker(PYTHON_END, special)),
            Layout::Lines => format!("\"\\n\" {calls} {}", self.closing(special)),
        };
        Ok(format!(
            "start: {start}\n{WS_RULE}{}",
            call_rules(functions)?
        ))
    }

    /// The grammar of an answer that is the list without a token before it (the list
    /// layout's calls, committed to once the answer opens with `[`).
    pub fn bare_grammar(
        self,
        functions: &[(String, Value)],
        parallel: bool,
    ) -> Result<Option<String>, String> {
        match self {
            Layout::List => Ok(Some(format!(
                "start: WS? \"[\" {} \"]\"\n{WS_RULE}{}",
                self.calls(parallel),
                call_rules(functions)?
            ))),
            Layout::Lfm2 | Layout::Lines => Ok(None),
        }
    }

    /// Text that opens the calls, up to the first call's name.
    fn opening(self) -> String {
        match self {
            Layout::Lfm2 => format!("{}[", lfm2::OPEN),
            Layout::List => "[".to_string(),
            Layout::Lines => format!("{}\n", LINES_BLOCK.0),
        }
    }

    /// Lark items of the calls: one, or any number joined as the layout joins them.
    fn calls(self, parallel: bool) -> &'static str {
        match (parallel, self) {
            (false, _) => "call",
            (true, Layout::Lfm2 | Layout::List) => "call (\",\" WS? call)*",
            (true, Layout::Lines) => "call (\"\\n\" call)*",
        }
    }

    /// Lark items after the last call's `)`.
    fn closing(self, special: &dyn Fn(&str) -> bool) -> String {
        match self {
            Layout::Lfm2 => format!("{} {}", literal("]"), marker(lfm2::CLOSE, special)),
            Layout::List => literal("]"),
            Layout::Lines => format!("{} {}", literal("\n"), marker(LINES_BLOCK.1, special)),
        }
    }
}

/// Rule `call`: one of `functions` by name, `(`, its arguments, `)`.
fn call_rules(functions: &[(String, Value)]) -> Result<String, String> {
    call_alternatives(functions, |i, name, params| {
        Ok(format!(
            "call_{i}: {} args_{i} {}\n{}",
            literal(&format!("{name}(")),
            literal(")"),
            argument_rules(i, params)?
        ))
    })
}

/// Rule `args_i`: the keyword arguments of a function of parameters `params`, in the schema's
/// order, the required ones always, each value JSON of its property's schema (JSON is Python
/// but for three words, which `py_literal` takes), comma-separated.
///
/// With optional arguments a comma goes only between arguments present: `first_i_j` is the
/// list from property j on with none written before it, `rest_i_j` the same after one was.
fn argument_rules(i: usize, params: &Value) -> Result<String, String> {
    let properties = schema_properties(params);
    let mut rules = format!("args_{i}: first_{i}_0\n");
    let mut members = Vec::with_capacity(properties.len());
    for (j, (key, schema, required)) in properties.into_iter().enumerate() {
        let arg = format!("arg_{i}_{j}");
        rules.push_str(&format!(
            "{arg}: {} json_{i}_{j}\njson_{i}_{j}: %json {}\n",
            literal(&format!("{key}=")),
            schema_text(&with_definitions(schema, params))?
        ));
        members.push((arg, required));
    }
    let (first, rest) = (format!("first_{i}_"), format!("rest_{i}_"));
    rules.push_str(&separated_members(&first, &rest, &members, "\",\" \" \""));
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arguments_of(call: &ParsedCall) -> Value {
        serde_json::from_str(&call.arguments).unwrap()
    }

    #[test]
    fn call_lists_read_back_as_calls() {
        for layout in [Layout::Lfm2, Layout::List] {
            assert_eq!(
                layout.parse(" [get_weather(city=\"Paris\", days=2), now()] "),
                Some(vec![
                    ParsedCall::new("get_weather", "{\"city\":\"Paris\",\"days\":2}"),
                    ParsedCall::new("now", "{}"),
                ])
            );
            for bad in ["", "[]", "get_weather(city=\"Paris\")", "[f(\"Paris\")]"] {
                assert_eq!(layout.parse(bad), None, "{bad:?}");
            }
            let named = layout.forced_prefix(Some("f")) + "a=1)]";
            let body = named.strip_prefix(lfm2::OPEN).unwrap_or(&named);
            assert_eq!(
                layout.parse(body),
                Some(vec![ParsedCall::new("f", "{\"a\":1}")])
            );
        }
    }

    /// OLMo 3's lines, as its template writes a turn's calls (strings single-quoted, JSON's
    /// words); a list or prose in the block is no call.
    #[test]
    fn call_lines_read_back_as_calls() {
        let calls = Layout::Lines
            .parse("\nget_weather(unit='celsius', city='Paris', at=null)\nget_time()\n")
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(
            arguments_of(&calls[0]),
            json!({"unit": "celsius", "city": "Paris", "at": null})
        );
        assert_eq!(calls[1], ParsedCall::new("get_time", "{}"));
        for bad in [
            "",
            "\n",
            "[f(a=1)]",
            "f(a=1)\nI will call it.",
            "f(a=1), g()",
        ] {
            assert_eq!(Layout::Lines.parse(bad), None, "{bad:?}");
        }
        let demanded = Layout::Lines.forced_prefix(Some("f")) + "a=1)\n";
        let body = demanded.strip_prefix(LINES_BLOCK.0).unwrap();
        assert_eq!(
            Layout::Lines.parse(body),
            Some(vec![ParsedCall::new("f", "{\"a\":1}")])
        );
    }

    #[test]
    fn grammars_join_calls_as_their_layout_does() {
        let functions = [("f".to_string(), json!({"type": "object", "properties": {}}))];
        let no_special = |_: &str| false;
        let lines = Layout::Lines
            .block_grammar(&functions, true, &no_special)
            .unwrap();
        assert!(
            lines
                .starts_with("start: \"\\n\" call (\"\\n\" call)* \"\\n\" \"</function_calls>\"\n"),
            "{lines}"
        );
        let list = Layout::List
            .block_grammar(&functions, false, &|t| t == PYTHON_END)
            .unwrap();
        assert!(
            list.starts_with("start: \"[\" call \"]\" <|python_end|>?\n"),
            "{list}"
        );
        assert!(Layout::Lfm2
            .bare_grammar(&functions, true)
            .unwrap()
            .is_none());
        let bare = Layout::List
            .bare_grammar(&functions, true)
            .unwrap()
            .unwrap();
        assert!(
            bare.starts_with("start: WS? \"[\" call (\",\" WS? call)* \"]\"\n"),
            "{bare}"
        );
    }

    #[test]
    fn arguments_keep_the_schema_order_with_commas_between_those_present() {
        let params = json!({"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}},
            "required": ["b"]});
        let rules = argument_rules(0, &params).unwrap();
        assert!(
            rules.contains("first_0_0: arg_0_0 rest_0_1 | first_0_1\n"),
            "{rules}"
        );
        assert!(rules.contains("first_0_1: arg_0_1 rest_0_2\n"), "{rules}");
        assert!(
            rules.contains("rest_0_2: (\",\" \" \" arg_0_2)? rest_0_3\n"),
            "{rules}"
        );
        assert!(rules.contains("arg_0_1: \"b=\" json_0_1\n"), "{rules}");
    }
}
