//! Gemma 4's tool calls: `<|tool_call>call:NAME{key:value,...}<tool_call|>` per call, the
//! arguments in Gemma's own object syntax: keys bare and sorted, strings between `<|"|>`
//! marks (special tokens of its vocabulary), numbers, `true` / `false` and `null` bare, lists
//! in brackets, objects in braces (vLLM's `gemma4` parser). FunctionGemma (Gemma 3 270M tuned
//! for calls) writes the same syntax between `<start_function_call>` and
//! `<end_function_call>`, strings between `<escape>` marks (vLLM's `functiongemma`).
//!
//! The syntax has no JSON reader, so it is read by hand here (a small recursive descent). The
//! grammars hold a call to its function's schema the same way down the nesting: each object's
//! properties in sorted order (as the template writes them), required ones always, text free
//! up to its closing mark, numbers and booleans as their JSON with its bounds.
use super::format::{
    call_alternatives, function_index, literal, marker, schema_properties, separated_members,
    ParsedCall,
};
use super::tag_grammar::{json_scalar, text_lexeme, text_regex, MAX_NESTING};
use super::tagged::declared_types;
use serde_json::{Map, Number, Value};

/// The marks of a dialect of Gemma's call syntax: the call block's and a string's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub open: &'static str,
    pub close: &'static str,
    /// What opens and closes a string.
    quote: &'static str,
}

pub const GEMMA4: Marks = Marks {
    open: "<|tool_call>",
    close: "<tool_call|>",
    quote: "<|\"|>",
};

pub const FUNCTION_GEMMA: Marks = Marks {
    open: "<start_function_call>",
    close: "<end_function_call>",
    quote: "<escape>",
};

/// What opens a call after the block's mark.
const CALL: &str = "call:";

impl Marks {
    /// The call in a block's body (`call:NAME{...}`); `None` unless it is one well-formed
    /// call.
    pub fn parse(self, body: &str) -> Option<Vec<ParsedCall>> {
        let (name, arguments) = body.trim().strip_prefix(CALL)?.split_once('{')?;
        if name.is_empty() || name.contains(['<', '>', '\n', ' ', ':']) {
            return None;
        }
        let mut reader = Reader {
            rest: arguments,
            quote: self.quote,
        };
        let arguments = reader.object_body()?;
        reader.rest.trim().is_empty().then(|| {
            let arguments = serde_json::to_string(&Value::Object(arguments)).unwrap_or_default();
            vec![ParsedCall::new(name, &arguments)]
        })
    }

    /// What a demanded call's answer starts with: the block's mark and the call's opening,
    /// with the named function up to its arguments.
    pub fn forced_prefix(self, function: Option<&str>) -> String {
        let head = function.map(|f| format!("{f}{{")).unwrap_or_default();
        format!("{}{CALL}{head}", self.open)
    }

    /// The grammar after `forced_prefix(function)`: that call's arguments, or one call to any
    /// of `functions`, then the block's end.
    pub fn call_grammar(
        self,
        functions: &[(String, Value)],
        function: Option<&str>,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        let grammar = Grammar {
            special,
            quote: self.quote,
        };
        let end = grammar.mark(self.close);
        match function {
            Some(name) => {
                let i = function_index(functions, name)?;
                let mut rules = String::new();
                let args =
                    grammar.object_items(&format!("a{i}"), &functions[i].1, 0, &mut rules)?;
                Ok(format!("start: {args} \"}}\" {end}\n{rules}"))
            }
            None => Ok(format!(
                "start: call {end}\n{}",
                grammar.call_rules(functions)?
            )),
        }
    }

    /// The grammar after the block's mark a model writes under auto: one call, then the
    /// block's end (the templates write a block a call).
    pub fn block_grammar(
        self,
        functions: &[(String, Value)],
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        let grammar = Grammar {
            special,
            quote: self.quote,
        };
        Ok(format!(
            "start: {} call {}\n{}",
            literal(CALL),
            grammar.mark(self.close),
            grammar.call_rules(functions)?
        ))
    }
}

/// A reader over Gemma's object syntax.
struct Reader<'a> {
    rest: &'a str,
    quote: &'static str,
}

impl Reader<'_> {
    fn eat(&mut self, text: &str) -> bool {
        match self.rest.strip_prefix(text) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// An object's keys and values after its `{`, through its `}`.
    fn object_body(&mut self) -> Option<Map<String, Value>> {
        let mut object = Map::new();
        if self.eat("}") {
            return Some(object);
        }
        loop {
            // Keys are bare in calls; a quoted one (the template's other spelling) reads too.
            let key = if self.eat(self.quote) {
                self.string_body()?
            } else {
                let end = self.rest.find(':')?;
                let key = &self.rest[..end];
                self.rest = &self.rest[end..];
                key.to_string()
            };
            if key.is_empty() || !self.eat(":") {
                return None;
            }
            let value = self.value()?;
            object.insert(key, value);
            if self.eat("}") {
                return Some(object);
            }
            if !self.eat(",") {
                return None;
            }
        }
    }

    /// A string's text after its opening mark, through its closing one.
    fn string_body(&mut self) -> Option<String> {
        let (text, rest) = self.rest.split_once(self.quote)?;
        self.rest = rest;
        Some(text.to_string())
    }

    fn value(&mut self) -> Option<Value> {
        if self.eat(self.quote) {
            return self.string_body().map(Value::String);
        }
        if self.eat("{") {
            return self.object_body().map(Value::Object);
        }
        if self.eat("[") {
            let mut items = Vec::new();
            if self.eat("]") {
                return Some(Value::Array(items));
            }
            loop {
                items.push(self.value()?);
                if self.eat("]") {
                    return Some(Value::Array(items));
                }
                if !self.eat(",") {
                    return None;
                }
            }
        }
        // A bare scalar, to the next delimiter.
        let end = self.rest.find([',', '}', ']']).unwrap_or(self.rest.len());
        let scalar = self.rest[..end].trim();
        self.rest = &self.rest[end..];
        match scalar {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            "null" => Some(Value::Null),
            number => serde_json::from_str::<Number>(number)
                .ok()
                .map(Value::Number),
        }
    }
}

struct Grammar<'a> {
    special: &'a dyn Fn(&str) -> bool,
    quote: &'static str,
}

impl Grammar<'_> {
    fn mark(&self, text: &str) -> String {
        marker(text, self.special)
    }

    /// Rules `call` (a function's name, its arguments in braces) and their rules.
    fn call_rules(&self, functions: &[(String, Value)]) -> Result<String, String> {
        call_alternatives(functions, |i, name, params| {
            let mut rules = String::new();
            let args = self.object_items(&format!("a{i}"), params, 0, &mut rules)?;
            Ok(format!(
                "call_{i}: {} {args} \"}}\"\n{rules}",
                literal(&format!("{name}{{"))
            ))
        })
    }

    /// Lark items of an object's members after its `{` (its schema's properties in sorted
    /// order, the required ones always, commas between), their rules added to `rules` under
    /// names that start with `id`.
    fn object_items(
        &self,
        id: &str,
        schema: &Value,
        depth: usize,
        rules: &mut String,
    ) -> Result<String, String> {
        let mut properties = schema_properties(schema);
        properties.sort_by(|a, b| a.0.cmp(b.0));
        for (j, (key, property, _)) in properties.iter().enumerate() {
            let value = format!("{id}_{j}");
            self.value_rule(&value, property, depth, rules)?;
            rules.push_str(&format!(
                "{id}_m{j}: {} {value}\n",
                literal(&format!("{key}:"))
            ));
        }
        // `{id}_f{j}`: members j.. with none written yet; `{id}_r{j}`: after one, each with
        // its comma.
        let members: Vec<(String, bool)> = properties
            .iter()
            .enumerate()
            .map(|(j, (_, _, required))| (format!("{id}_m{j}"), *required))
            .collect();
        let (first, rest) = (format!("{id}_f"), format!("{id}_r"));
        rules.push_str(&separated_members(&first, &rest, &members, "\",\""));
        Ok(format!("{first}0"))
    }

    /// Rule `rule`: a value of `schema`.
    fn value_rule(
        &self,
        rule: &str,
        schema: &Value,
        depth: usize,
        rules: &mut String,
    ) -> Result<(), String> {
        let types = declared_types(schema);
        let nested = depth < MAX_NESTING;
        let body = match types.as_slice() {
            ["array"] if nested => {
                let item = format!("{rule}_i");
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                self.value_rule(&item, &items, depth + 1, rules)?;
                format!("\"[\" ({item} (\",\" {item})*)? \"]\"")
            }
            ["object"] if nested => {
                let members = self.object_items(rule, schema, depth + 1, rules)?;
                format!("\"{{\" {members} \"}}\"")
            }
            ["integer"] | ["number"] | ["boolean"] => json_scalar(rule, schema, rules)?,
            _ => {
                // Text between the marks.
                let text = text_lexeme(&text_regex(schema), None);
                let quote = self.mark(self.quote);
                if (self.special)(self.quote) {
                    // Text cannot run into a special token: a plain terminal ends there.
                    rules.push_str(&format!("{}_T: {text}\n", rule.to_uppercase()));
                    format!("{quote} {}_T {quote}", rule.to_uppercase())
                } else {
                    rules.push_str(&format!("{rule}_t[suffix={quote}]: {text}\n"));
                    format!("{quote} {rule}_t")
                }
            }
        };
        rules.push_str(&format!("{rule}: {body}\n"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> String {
        text.replace('"', GEMMA4.quote)
    }

    fn parse(body: &str) -> Option<Vec<ParsedCall>> {
        GEMMA4.parse(body)
    }

    fn call_grammar(
        functions: &[(String, Value)],
        function: Option<&str>,
        special: &dyn Fn(&str) -> bool,
    ) -> Result<String, String> {
        GEMMA4.call_grammar(functions, function, special)
    }

    /// Calls as Gemma 4's template writes them: bare sorted keys, marked strings, nested
    /// lists and objects, bare scalars.
    #[test]
    fn gemma_objects_read_as_json() {
        let body = q(
            "call:get_forecast{city:\"São Paulo, \"SP\"\",days:3,fields:[\"rain\",\"wind\"],\
                       hourly:false,where:{lat:-23.5,tags:[]},zip:\"01310\",none:null}",
        );
        // The string's inner marks close it: the template never writes them inside.
        assert_eq!(parse(&body), None);
        let body = q(
            "call:get_forecast{city:\"São Paulo\",days:3,fields:[\"rain\",\"wind\"],\
                      hourly:false,where:{lat:-23.5,tags:[]},zip:\"01310\",none:null}",
        );
        let calls = parse(&body).unwrap();
        assert_eq!(calls[0].name, "get_forecast");
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(
            args,
            json!({"city": "São Paulo", "days": 3, "fields": ["rain", "wind"], "hourly": false,
                   "where": {"lat": -23.5, "tags": []}, "zip": "01310", "none": null})
        );
        assert_eq!(
            parse("call:get_time{}"),
            Some(vec![ParsedCall::new("get_time", "{}")])
        );
        for bad in [
            "",
            "get_time{}",
            "call:{}",
            "call:f{a:1",
            "call:f{a:1}}",
            "call:f{a:one}",
            "call:f{a:[1,2}",
            "call:f{:1}",
            "call:f{a:1} text",
        ] {
            assert_eq!(parse(&q(bad)), None, "{bad:?}");
        }
    }

    /// The grammar writes members in sorted order with commas only between them, optional
    /// ones skippable anywhere; strings between marks, scalars as their JSON.
    #[test]
    fn grammars_sort_members_and_place_commas() {
        let functions = [(
            "f".to_string(),
            json!({"properties": {"b": {"type": "integer"}, "a": {"type": "string"},
                                  "c": {"type": "array", "items": {"type": "boolean"}}},
                   "required": ["b"]}),
        )];
        let grammar = call_grammar(&functions, Some("f"), &|_| false).unwrap();
        assert!(
            grammar.starts_with("start: a0_f0 \"}\" \"<tool_call|>\"\n"),
            "{grammar}"
        );
        // Sorted: a (optional), b (required), c (optional).
        assert!(grammar.contains("a0_m0: \"a:\" a0_0\n"), "{grammar}");
        assert!(
            grammar.contains("a0_f0: a0_m0 a0_r1 | a0_f1\n"),
            "{grammar}"
        );
        assert!(grammar.contains("a0_f1: a0_m1 a0_r2\n"), "{grammar}");
        assert!(grammar.contains("a0_r1: \",\" a0_m1 a0_r2\n"), "{grammar}");
        assert!(
            grammar.contains("a0_r2: (\",\" a0_m2)? a0_r3\n"),
            "{grammar}"
        );
        assert!(
            grammar.contains("a0_2: \"[\" (a0_2_i (\",\" a0_2_i)*)? \"]\""),
            "{grammar}"
        );
        assert!(
            grammar.contains("a0_0_t[suffix=\"<|\\\"|>\"]: /(?s:.*)/"),
            "{grammar}"
        );
        // The mark as a special token: a plain terminal before it.
        let special = call_grammar(&functions, Some("f"), &|t| t == GEMMA4.quote).unwrap();
        assert!(special.contains("a0_0: <|\"|> A0_0_T <|\"|>"), "{special}");
    }

    /// FunctionGemma's calls: the same syntax, strings between `<escape>` marks, in its own
    /// block; its grammar writes its marks.
    #[test]
    fn function_gemma_writes_the_syntax_with_its_marks() {
        let body =
            "call:set_alarm{hour:7,label:<escape>Wake, \"now\"<escape>,days:[<escape>mon<escape>]}";
        let calls = FUNCTION_GEMMA.parse(body).unwrap();
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(
            args,
            json!({"hour": 7, "label": "Wake, \"now\"", "days": ["mon"]})
        );
        assert_eq!(FUNCTION_GEMMA.parse(&q("call:f{a:\"x\"}")), None);
        assert_eq!(
            FUNCTION_GEMMA.forced_prefix(Some("f")),
            "<start_function_call>call:f{"
        );
        let functions = [(
            "f".to_string(),
            json!({"properties": {"a": {"type": "string"}}}),
        )];
        let special = |t: &str| t.starts_with('<');
        let grammar = FUNCTION_GEMMA
            .call_grammar(&functions, Some("f"), &special)
            .unwrap();
        assert!(
            grammar.starts_with("start: a0_f0 \"}\" <end_function_call>\n"),
            "{grammar}"
        );
        assert!(
            grammar.contains("a0_0: <escape> A0_0_T <escape>"),
            "{grammar}"
        );
    }
}
