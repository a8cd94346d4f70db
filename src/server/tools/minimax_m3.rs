//! MiniMax-M3's tool calls: MiniMax-M2's invocations with every tag behind M3's namespace
//! marker `]<]minimax[>[`, and arguments as elements named by their keys whose values are
//! nested elements in turn (a list's items `<item>`, an object's keys by name; scalars as text,
//! booleans `true` / `false`; null values left out):
//! `NS<tool_call>\nNS<invoke name="f">NS<city>Oslo NS</city>NS<days>NS<item>1NS</item>NS</days>
//! NS</invoke>\nNS</tool_call>` (without the spaces).
//!
//! The text does not say whether an element holds text, a number, a list or an object: the
//! function's schema does, as it types the tag formats' values (`tagged`); where it says
//! nothing, an element whose children are all `item`s is a list, other children make an
//! object. The grammars follow the schema the same way, down the nesting.
use super::format::{call_alternatives, function_index, literal, schema_properties, ParsedCall};
use super::tag_grammar::{json_scalar, text_lexeme, text_regex, MAX_NESTING};
use super::tagged::{declared_types, typed_value};
use serde_json::{Map, Value};

/// The namespace marker before every tag of M3's calls.
const NS: &str = "]<]minimax[>[";
pub const OPEN: &str = "]<]minimax[>[<tool_call>";
pub const CLOSE: &str = "]<]minimax[>[</tool_call>";
const INVOKE_OPEN: &str = "]<]minimax[>[<invoke name=\"";
const INVOKE_CLOSE: &str = "]<]minimax[>[</invoke>";

/// The calls in a block's body; `None` unless it is only well-formed invocations (the last
/// may stop before its closing tag).
pub fn parse(body: &str, functions: &[(String, Value)]) -> Option<Vec<ParsedCall>> {
    let mut calls = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.strip_prefix(INVOKE_OPEN)?.split_once("\">")?;
        if name.is_empty() || name.contains(['<', '>', '\n']) {
            return None;
        }
        let (arguments, after) = elements(after)?;
        rest = match after.trim_start().strip_prefix(INVOKE_CLOSE) {
            Some(after) => after.trim_start(),
            None if after.trim().is_empty() => "",
            None => return None,
        };
        let params = functions.iter().find(|(n, _)| n == name).map(|(_, p)| p);
        let arguments = object_of(&arguments, params);
        calls.push(ParsedCall::new(
            name,
            &serde_json::to_string(&arguments).ok()?,
        ));
    }
    (!calls.is_empty()).then_some(calls)
}

/// The elements at the start of `text` (whitespace between them aside), each its tag and the
/// text inside it, and the text after them.
fn elements(mut text: &str) -> Option<(Vec<(&str, &str)>, &str)> {
    let mut found = Vec::new();
    loop {
        let trimmed = text.trim_start();
        let Some(after) = trimmed.strip_prefix(NS).and_then(|t| t.strip_prefix('<')) else {
            return Some((found, text));
        };
        if after.starts_with('/') {
            return Some((found, text));
        }
        let (tag, inner) = after.split_once('>')?;
        let (value, rest) = element_body(tag, inner)?;
        found.push((tag, value));
        text = rest;
    }
}

/// The text of element `tag` from after its opening tag, to its closing tag (elements of
/// the same name nest: a list of lists), and the text after that closing tag.
fn element_body<'a>(tag: &str, text: &'a str) -> Option<(&'a str, &'a str)> {
    let open = format!("{NS}<{tag}>");
    let close = format!("{NS}</{tag}>");
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(found) = text[at..].find(NS) {
        let from = at + found;
        let here = &text[from..];
        if here.starts_with(&close) {
            if depth == 0 {
                return Some((&text[..from], &text[from + close.len()..]));
            }
            depth -= 1;
        } else if here.starts_with(&open) {
            depth += 1;
        }
        at = from + NS.len();
    }
    None
}

/// An element's value: its children decoded where it has any, else its text typed by
/// `schema`.
fn decode(text: &str, schema: Option<&Value>) -> Value {
    let types: Vec<&str> = schema.map(declared_types).unwrap_or_default();
    match elements(text) {
        Some((children, rest)) if !children.is_empty() && rest.trim().is_empty() => {
            decode_children(&children, schema)
        }
        _ if text.is_empty() && types == ["array"] => Value::Array(Vec::new()),
        _ if text.is_empty() && types == ["object"] => Value::Object(Map::new()),
        _ => typed_value(text, schema),
    }
}

/// Child elements as the list or object `schema` declares (or, where it declares neither,
/// a list when every child is an `item`).
fn decode_children(children: &[(&str, &str)], schema: Option<&Value>) -> Value {
    let types: Vec<&str> = schema.map(declared_types).unwrap_or_default();
    let listed = types.contains(&"array")
        || (!types.contains(&"object") && children.iter().all(|(tag, _)| *tag == "item"));
    if listed {
        let items = schema.and_then(|s| s.get("items"));
        Value::Array(children.iter().map(|(_, v)| decode(v, items)).collect())
    } else {
        Value::Object(object_of(children, schema))
    }
}

/// Child elements as an object's keys, each value typed by its property's schema.
fn object_of(children: &[(&str, &str)], schema: Option<&Value>) -> Map<String, Value> {
    let properties = schema.and_then(|s| s.get("properties"));
    let mut object = Map::new();
    for (key, text) in children {
        let schema = properties.and_then(|p| p.get(*key));
        object.insert(key.to_string(), decode(text, schema));
    }
    object
}

/// What a demanded call's answer starts with: the block's tag, and the named function's
/// invocation up to its arguments.
pub fn forced_prefix(function: Option<&str>) -> String {
    let head = function.map(head).unwrap_or_default();
    format!("{OPEN}\n{head}")
}

/// An invocation's text before its arguments.
fn head(name: &str) -> String {
    format!("{INVOKE_OPEN}{name}\">")
}

/// The grammar after `forced_prefix(function)`: that call's arguments, or one call to any of
/// `functions`, then the block's end.
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
) -> Result<String, String> {
    let end = format!("NL? {}", literal(CLOSE));
    match function {
        Some(name) => {
            let i = function_index(functions, name)?;
            let mut rules = String::new();
            let args = object_items(&format!("a{i}"), &functions[i].1, 0, &mut rules)?;
            Ok(format!(
                "start: {args} {} {end}\n{rules}{NL_RULE}",
                literal(INVOKE_CLOSE)
            ))
        }
        None => Ok(format!("start: call {end}\n{}", call_rules(functions)?)),
    }
}

/// The grammar after the block's opening a model writes under auto: its invocations (one
/// only unless `parallel`), then the block's end.
pub fn block_grammar(functions: &[(String, Value)], parallel: bool) -> Result<String, String> {
    let more = if parallel { " (NL? call)*" } else { "" };
    Ok(format!(
        "start: NL? call{more} NL? {}\n{}",
        literal(CLOSE),
        call_rules(functions)?
    ))
}

const NL_RULE: &str = "NL: \"\\n\"\n";

/// Rules `call` (one invocation of any of `functions`) and the rules of its arguments.
fn call_rules(functions: &[(String, Value)]) -> Result<String, String> {
    let lark = call_alternatives(functions, |i, name, params| {
        let mut rules = String::new();
        let args = object_items(&format!("a{i}"), params, 0, &mut rules)?;
        Ok(format!(
            "call_{i}: {} {args} {}\n{rules}",
            literal(&head(name)),
            literal(INVOKE_CLOSE)
        ))
    })?;
    Ok(format!("{lark}{NL_RULE}"))
}

/// Lark items of an object's elements (its schema's properties in order, the required ones
/// always), their rules added to `rules` under names that start with `id`.
fn object_items(
    id: &str,
    schema: &Value,
    depth: usize,
    rules: &mut String,
) -> Result<String, String> {
    let mut items = Vec::new();
    for (j, (key, property, required)) in schema_properties(schema).into_iter().enumerate() {
        let rule = format!("{id}_{j}");
        element_rule(&rule, key, property, depth, rules)?;
        items.push(format!("{rule}{}", if required { "" } else { "?" }));
    }
    Ok(match items.is_empty() {
        true => "\"\"".to_string(),
        false => items.join(" "),
    })
}

/// Rule `rule`: element `tag` holding a value of `schema`.
fn element_rule(
    rule: &str,
    tag: &str,
    schema: &Value,
    depth: usize,
    rules: &mut String,
) -> Result<(), String> {
    let open = literal(&format!("{NS}<{tag}>"));
    let close = format!("{NS}</{tag}>");
    let types = declared_types(schema);
    let nested = depth < MAX_NESTING;
    let inner = match types.as_slice() {
        ["array"] if nested => {
            let item = format!("{rule}_i");
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            element_rule(&item, "item", &items, depth + 1, rules)?;
            format!("{item}*")
        }
        ["object"] if nested => object_items(rule, schema, depth + 1, rules)?,
        ["integer"] | ["number"] | ["boolean"] => json_scalar(rule, schema, rules)?,
        _ => {
            // Text, up to and with the element's closing tag. It may not hold the marker, so
            // that a model forgetting the marker's closing tag cannot run on into more
            // elements.
            rules.push_str(&format!(
                "{rule}: {open} {rule}_t\n{rule}_t[suffix={}]: {}\n",
                literal(&close),
                text_lexeme(&text_regex(schema), Some(NS))
            ));
            return Ok(());
        }
    };
    rules.push_str(&format!("{rule}: {open} {inner} {}\n", literal(&close)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ns(text: &str) -> String {
        text.replace("NS", NS)
    }

    fn forecast() -> Vec<(String, Value)> {
        vec![(
            "get_forecast".into(),
            json!({"type": "object", "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "hourly": {"type": "boolean"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "zip": {"type": "string"},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
                "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}
            }, "required": ["city", "days"]}),
        )]
    }

    /// Nested values come back as the schema types them: a list of strings, an object, a
    /// list of lists (same-named elements nest), an empty list; a string that reads as a
    /// number stays text; an unknown function's values by their shape alone.
    #[test]
    fn nested_elements_read_as_the_schema_types_them() {
        let body = ns(
            "\nNS<invoke name=\"get_forecast\">NS<city>São Paulo\nSPNS</city>\
                       NS<days>3NS</days>NS<hourly>falseNS</hourly>\
                       NS<fields>NS<item>rainNS</item>NS<item>windNS</item>NS</fields>\
                       NS<zip>01310NS</zip>NS<where>NS<lat>-23.5NS</lat>NS</where>\
                       NS<grid>NS<item>NS<item>1NS</item>NS</item>NS<item>NS</item>NS</grid>\
                       NS</invoke>\nNS<invoke name=\"other\">NS<tags>NS<item>aNS</item>NS</tags>\
                       NS<opts>NS<x>1NS</x>NS</opts>NS</invoke>\n",
        );
        let calls = parse(&body, &forecast()).unwrap();
        let args: Vec<Value> = calls
            .iter()
            .map(|c| serde_json::from_str(&c.arguments).unwrap())
            .collect();
        assert_eq!(calls[0].name, "get_forecast");
        assert_eq!(
            args[0],
            json!({"city": "São Paulo\nSP", "days": 3, "hourly": false,
                   "fields": ["rain", "wind"], "zip": "01310", "where": {"lat": -23.5},
                   "grid": [[1], []]})
        );
        assert_eq!(calls[1].name, "other");
        assert_eq!(args[1], json!({"tags": ["a"], "opts": {"x": "1"}}));
    }

    #[test]
    fn malformed_invocations_are_not_calls() {
        for body in [
            "",
            "NS<invoke name=\"f\">NS<city>Paris",
            "NS<invoke name=\"f\">NS<city>ParisNS</town>NS</invoke>",
            "NS<invoke name=\"f\">NS</invoke> trailing text",
            "<invoke name=\"f\"></invoke>",
            "NS<invoke name=\"\">NS</invoke>",
        ] {
            assert_eq!(parse(&ns(body), &forecast()), None, "{body:?}");
        }
        // Stopped right after the arguments: still the call.
        assert_eq!(
            parse(&ns("NS<invoke name=\"f\">NS<a>1NS</a>"), &[]),
            Some(vec![ParsedCall::new("f", "{\"a\":\"1\"}")])
        );
    }

    /// The grammar follows the schema into the nesting: lists as `item` elements, objects by
    /// their keys, numbers and booleans by their syntax, text up to its closing tag.
    #[test]
    fn grammars_nest_as_the_schema_does() {
        let grammar = call_grammar(&forecast(), Some("get_forecast")).unwrap();
        let close = |tag: &str| literal(&format!("{NS}</{tag}>"));
        assert!(
            grammar.starts_with("start: a0_0 a0_1 a0_2? a0_3?"),
            "{grammar}"
        );
        assert!(
            grammar.contains(&format!(
                "a0_3: {} a0_3_i* {}",
                literal(&ns("NS<fields>")),
                close("fields")
            )),
            "{grammar}"
        );
        assert!(
            grammar.contains(&format!("a0_3_i_t[suffix={}]: /(?s:.*)/", close("item"))),
            "{grammar}"
        );
        assert!(
            grammar.contains("a0_2_j: %json {\"type\":\"boolean\","),
            "{grammar}"
        );
        assert!(grammar.contains("a0_5: "), "{grammar}");
        assert!(grammar.contains("a0_6_i_i"), "{grammar}");
    }
}
