//! Lark grammars that hold a call in a tag format (`tagged::Style`) to the offered functions:
//! the schema's properties in their order, the required ones always, the others optionally; a
//! string parameter's text free (or its schema's enum, const or length bounds) up to its
//! closing tag, any other value the schema's JSON (`%json`).
//!
//! A marker that is one special token of the vocabulary (Seed-OSS's `</seed:tool_call>`, and
//! GLM's tags where its vocabulary marks them so) is named as that token, which plain text
//! could never spell in a constrained answer; the others are text.
use super::format::{
    call_alternatives, function_index, literal, marker, schema_properties, schema_text,
};
use super::tagged::{text_body, with_definitions, Style};
use serde_json::Value;

/// The lark regex body of a free value's text: its schema's enum or length bounds where it
/// declares them, else any text (for the nested formats' values of no type they follow).
pub(super) fn text_regex(schema: &Value) -> String {
    text_body(schema)
        .unwrap_or_else(|| "(?s:.*)".to_string())
        .replace('/', "\\/")
}

/// Rule `{rule}_j`, a number or boolean of `schema` as its JSON text (bounds and all), added
/// to `rules`; returns its name.
pub(super) fn json_scalar(
    rule: &str,
    schema: &Value,
    rules: &mut String,
) -> Result<String, String> {
    rules.push_str(&format!("{rule}_j: %json {}\n", schema_text(schema)?));
    Ok(format!("{rule}_j"))
}

/// How deep the nested formats (MiniMax-M3's elements, Gemma 4's objects) follow a schema into
/// their grammars; below, values are free text.
pub(super) const MAX_NESTING: usize = 8;

/// The lark lexeme of a free value's text matching the regex `body`: where `excluded` is
/// given, text that never holds it (a format's own tag marker, so that a model forgetting the
/// value's closing tag cannot run on into more tags).
pub(super) fn text_lexeme(body: &str, excluded: Option<&str>) -> String {
    match excluded {
        Some(mark) => format!(
            "/{body}/ & ~/(?s:.*){}(?s:.*)/",
            regex_syntax::escape(mark).replace('/', "\\/")
        ),
        None => format!("/{body}/"),
    }
}

/// The optional newlines between tags.
const NL_RULE: &str = "NL: \"\\n\"\n";

pub struct TagGrammar<'a> {
    pub style: Style,
    /// Whether a text is one special token of the model's vocabulary.
    pub special: &'a dyn Fn(&str) -> bool,
}

impl TagGrammar<'_> {
    /// A marker as a lark item: its special token, or its text.
    fn mark(&self, text: &str) -> String {
        marker(text, self.special)
    }

    /// The grammar of what follows a demanded call's forced prefix (the block's opening tag,
    /// and `function`'s head when one is named): the call to the block's `end`.
    pub fn call_grammar(
        &self,
        functions: &[(String, Value)],
        function: Option<&str>,
        end: &str,
    ) -> Result<String, String> {
        let close = format!("NL? {}", self.mark(end));
        match function {
            Some(name) => {
                let i = function_index(functions, name)?;
                Ok(format!(
                    "start: args_{i}{} {close}\n{}{NL_RULE}",
                    self.call_foot(),
                    self.argument_rules(i, &functions[i].1)?
                ))
            }
            None => Ok(format!(
                "start: call {close}\n{}",
                self.call_rules(functions)?
            )),
        }
    }

    /// The grammar of a block after its opening tag (a lazy grammar's trigger): one call to
    /// any of `functions` (or `several`, for the styles that write them in one block), to the
    /// block's `end`.
    pub fn block_grammar(
        &self,
        functions: &[(String, Value)],
        end: &str,
        several: bool,
    ) -> Result<String, String> {
        // MiniCPM5's name follows its opening tag's quote at once.
        let lead = match self.style {
            Style::FunctionParam => "",
            _ => "NL? ",
        };
        let more = match several && self.style.several_per_block() {
            true => " (NL? call)*",
            false => "",
        };
        Ok(format!(
            "start: {lead}call{more} NL? {}\n{}",
            self.mark(end),
            self.call_rules(functions)?
        ))
    }

    /// Rules `call`, one call to any of `functions` from its head to its end, and per function
    /// `args_i`, its arguments.
    fn call_rules(&self, functions: &[(String, Value)]) -> Result<String, String> {
        let lark = call_alternatives(functions, |i, name, params| {
            // Hy3's call tags are special tokens: named as tokens around the name.
            let head = match self.style.call_tags() {
                Some((open, name_end, _)) => {
                    format!(
                        "{} {} {}",
                        self.mark(open),
                        literal(name),
                        self.mark(name_end)
                    )
                }
                None => literal(&self.style.head(name)),
            };
            Ok(format!(
                "call_{i}: {head} args_{i}{}\n{}",
                self.call_foot(),
                self.argument_rules(i, params)?
            ))
        })?;
        Ok(format!("{lark}{NL_RULE}"))
    }

    /// Lark items after a call's arguments.
    fn call_foot(&self) -> String {
        match self.style.call_tags() {
            Some((_, _, close)) => format!(" NL? {}", self.mark(close)),
            None => String::new(),
        }
    }

    /// Rule `args_i` and the rules of its arguments.
    fn argument_rules(&self, i: usize, params: &Value) -> Result<String, String> {
        let tags = self.style.tags();
        let close = self.mark(tags.value_close);
        let mut items = Vec::new();
        let mut rules = String::new();
        for (j, (key, schema, required)) in schema_properties(params).into_iter().enumerate() {
            let rule = format!("arg_{i}_{j}");
            items.push(format!("{rule}{}", if required { "" } else { "?" }));
            let text = text_body(schema);
            let opening = match self.style.tags_key_and_value() {
                false => literal(&format!(
                    "{}{key}{}",
                    tags.key_open,
                    self.style.key_close_for(text.is_some())
                )),
                true => format!(
                    "{} {} {} NL? {}",
                    self.mark(tags.key_open),
                    literal(key),
                    self.mark(tags.key_close),
                    self.mark(tags.value_open)
                ),
            };
            match text {
                Some(body) => {
                    // The newlines Qwen's templates pad a value with belong to the text.
                    let body = match self.style {
                        Style::Function => format!("\\n?{body}\\n?"),
                        _ => body,
                    };
                    let lexeme = text_lexeme(&body.replace('/', "\\/"), self.style.text_excludes());
                    if (self.special)(tags.value_close) {
                        // Text cannot run into a special token: a plain terminal ends there.
                        rules.push_str(&format!(
                            "{rule}: NL? {opening} TEXT_{i}_{j} {close}\nTEXT_{i}_{j}: {lexeme}\n"
                        ));
                    } else {
                        // The text, up to and with its closing tag.
                        rules.push_str(&format!(
                            "{rule}: NL? {opening} text_{i}_{j}\n\
                             text_{i}_{j}[suffix={close}]: {lexeme}\n"
                        ));
                    }
                }
                None => {
                    let padding = match self.style {
                        Style::Function => " NL?",
                        _ => "",
                    };
                    rules.push_str(&format!(
                        "{rule}: NL? {opening}{padding} json_{i}_{j}{padding} {close}\n\
                         json_{i}_{j}: %json {}\n",
                        schema_text(&with_definitions(schema, params))?
                    ));
                }
            }
        }
        let args = if items.is_empty() {
            "\"\"".to_string()
        } else {
            items.join(" ")
        };
        Ok(format!("args_{i}: {args}\n{rules}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text_markers(style: Style) -> TagGrammar<'static> {
        TagGrammar {
            style,
            special: &|_| false,
        }
    }

    #[test]
    fn string_parameters_are_text_rules_and_the_rest_json() {
        let params = json!({"type": "object", "$defs": {"u": {"enum": [1, 2]}}, "properties": {
            "city": {"type": "string", "maxLength": 10},
            "unit": {"enum": ["c", "f/k"]},
            "n": {"$ref": "#/$defs/u"}
        }, "required": ["unit"]});
        let rules = text_markers(Style::Function)
            .argument_rules(0, &params)
            .unwrap();
        assert!(
            rules.starts_with("args_0: arg_0_0? arg_0_1 arg_0_2?\n"),
            "{rules}"
        );
        assert!(
            rules.contains("text_0_0[suffix=\"</parameter>\"]: /\\n?(?s:.{0,10})\\n?/"),
            "{rules}"
        );
        assert!(rules.contains("/\\n?(c|f\\/k)\\n?/"), "{rules}");
        assert!(rules.contains("json_0_2: %json {"), "{rules}");
        assert!(rules.contains("\"$defs\""), "{rules}");
        let glm = text_markers(Style::ArgPairs)
            .argument_rules(3, &json!({"type": "object"}))
            .unwrap();
        assert!(glm.starts_with("args_3: \"\"\n"), "{glm}");
    }

    /// Markers the vocabulary holds as special tokens are named as tokens (bare), and a text
    /// value before a special closing tag is a plain terminal (llguidance takes no special
    /// token in a suffix).
    #[test]
    fn special_markers_are_tokens() {
        let specials = [
            "<arg_key>",
            "</arg_key>",
            "<arg_value>",
            "</arg_value>",
            "</tool_call>",
        ];
        let special = |t: &str| specials.contains(&t);
        let g = TagGrammar {
            style: Style::ArgPairs,
            special: &special,
        };
        let params = json!({"properties": {"city": {"type": "string"}, "n": {"type": "integer"}}});
        let functions = [("f".to_string(), params)];
        let grammar = g.call_grammar(&functions, None, "</tool_call>").unwrap();
        assert!(
            grammar.starts_with("start: call NL? </tool_call>\n"),
            "{grammar}"
        );
        assert!(
            grammar.contains(
                "arg_0_0: NL? <arg_key> \"city\" </arg_key> NL? <arg_value> TEXT_0_0 </arg_value>\n\
                 TEXT_0_0: /(?s:.*)/\n"
            ),
            "{grammar}"
        );
        assert!(
            grammar.contains(
                "arg_0_1: NL? <arg_key> \"n\" </arg_key> NL? <arg_value> json_0_1 </arg_value>"
            ),
            "{grammar}"
        );
        let seed = TagGrammar {
            style: Style::Function,
            special: &|t| t == "</seed:tool_call>",
        };
        let lazy = seed
            .block_grammar(&functions, "</seed:tool_call>", true)
            .unwrap();
        assert!(
            lazy.starts_with("start: NL? call NL? </seed:tool_call>\n"),
            "{lazy}"
        );
        assert!(lazy.contains("[suffix=\"</parameter>\"]"), "{lazy}");
    }

    /// DSML's string values may not open DSML's tags (a value the model forgets to close
    /// cannot run on into more parameters); its key tags say text or JSON by the schema.
    #[test]
    fn dsml_text_excludes_its_tags() {
        let g = TagGrammar {
            style: Style::Dsml,
            special: &|_| false,
        };
        let functions = [(
            "f".to_string(),
            json!({"properties": {"city": {"type": "string"}, "n": {"type": "integer"}}}),
        )];
        let grammar = g
            .call_grammar(&functions, Some("f"), "</｜DSML｜function_calls>")
            .unwrap();
        assert!(
            grammar.contains(
                "[suffix=\"</｜DSML｜parameter>\"]: /(?s:.*)/ & ~/(?s:.*)<｜DSML｜(?s:.*)/\n"
            ),
            "{grammar}"
        );
        assert!(
            grammar.contains("\"<｜DSML｜parameter name=\\\"city\\\" string=\\\"true\\\">\""),
            "{grammar}"
        );
        assert!(
            grammar.contains("\"<｜DSML｜parameter name=\\\"n\\\" string=\\\"false\\\">\""),
            "{grammar}"
        );
    }

    /// Hy3's tags are special tokens of its vocabulary, its calls' heads too; its template
    /// writes a turn's calls in one block, as a parallel lazy grammar then takes them.
    #[test]
    fn hy3_heads_are_tokens_and_blocks_hold_several_calls() {
        let g = TagGrammar {
            style: Style::Hy3,
            special: &|t| t.ends_with(":opensource>"),
        };
        let functions = [(
            "f".to_string(),
            json!({"properties": {"city": {"type": "string"}}, "required": ["city"]}),
        )];
        let end = "</tool_calls:opensource>";
        let several = g.block_grammar(&functions, end, true).unwrap();
        assert!(
            several.starts_with("start: NL? call (NL? call)* NL? </tool_calls:opensource>\n"),
            "{several}"
        );
        assert!(
            several.contains(
                "call_0: <tool_call:opensource> \"f\" <tool_sep:opensource> args_0 NL? \
                 </tool_call:opensource>\n"
            ),
            "{several}"
        );
        assert!(
            several.contains(
                "arg_0_0: NL? <arg_key:opensource> \"city\" </arg_key:opensource> NL? \
                 <arg_value:opensource> TEXT_0_0 </arg_value:opensource>\n"
            ),
            "{several}"
        );
        let one = g.block_grammar(&functions, end, false).unwrap();
        assert!(one.starts_with("start: NL? call NL? </tool_calls"), "{one}");
        // Qwen's style keeps a block a call.
        let qwen = TagGrammar {
            style: Style::Function,
            special: &|_| false,
        };
        let qwen = qwen
            .block_grammar(&functions, "</tool_call>", true)
            .unwrap();
        assert!(
            qwen.starts_with("start: NL? call NL? \"</tool_call>\""),
            "{qwen}"
        );
    }
}
