//! Grammar-constrained sampling over the real vocabularies (qwen: byte-level BPE; gemma:
//! SentencePiece), without a model: random logits stand in for one, so every token is an
//! adversarial pick among those the grammar allows, and the answers must still be valid.
mod common;

use candle_core::quantized::gguf_file::Content;
use candor::engine::grammar::{Constraint, GrammarCompiler};
use candor::engine::sampler::{Sampler, SamplingParams};
use candor::server::tools::extract::{Piece, ToolCallExtractor};
use candor::server::tools::format::ToolFormat;
use candor_models::tokenizer::Tokenizer;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::Arc;

fn tokenizer(name: &str) -> Arc<Tokenizer> {
    let path = common::real_model(name);
    let mut f = std::fs::File::open(&path).expect("open model");
    let content = Content::read(&mut f).expect("read gguf");
    Arc::new(Tokenizer::from_gguf_metadata(&content.metadata).expect("tokenizer"))
}

/// Sample with random logits until the end token; the decoded text.
fn sample_answer(tok: &Tokenizer, compiler: &GrammarCompiler, schema: &Value, seed: u64) -> String {
    let constraint = compiler
        .json_schema(schema.clone())
        .expect("schema compiles");
    sample_constrained(tok, constraint, seed)
}

fn sample_constrained(tok: &Tokenizer, constraint: Constraint, seed: u64) -> String {
    let eos = constraint.eos();
    let params = SamplingParams {
        temperature: 1.0,
        seed: Some(seed),
        ..SamplingParams::greedy()
    };
    let mut sampler = Sampler::new(params).unwrap().constrained(Some(constraint));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tokens = Vec::new();
    for _ in 0..400 {
        let logits: Vec<f32> = (0..tok.vocab_size())
            .map(|_| rng.random::<f32>() * 8.0)
            .collect();
        let next = sampler.sample(&logits, &tokens);
        if next == eos {
            return tok.decode(&tokens, true).unwrap();
        }
        tokens.push(next);
    }
    panic!("no end after 400 tokens: {:?}", tok.decode(&tokens, false));
}

#[test]
fn random_logits_under_a_schema_give_valid_json() {
    let schema = json!({
        "type": "object",
        "properties": {
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "city": {"type": "string", "maxLength": 12},
            "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}
        },
        "required": ["unit", "days", "city", "tags"],
        "additionalProperties": false
    });
    for name in ["qwen2.5-0.5b", "gemma3-270m"] {
        let tok = tokenizer(name);
        let eos = tok.eos_ids()[0];
        let compiler = GrammarCompiler::new(tok.clone(), eos, tok.vocab_size()).unwrap();
        for seed in 0..4 {
            let text = sample_answer(&tok, &compiler, &schema, seed);
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} seed {seed}: {e}: {text:?}"));
            let ok = matches!(v["unit"].as_str(), Some("celsius" | "fahrenheit"))
                && v["days"].as_i64().is_some_and(|d| (1..=14).contains(&d))
                && v["city"].as_str().is_some_and(|c| c.chars().count() <= 12)
                && v["tags"]
                    .as_array()
                    .is_some_and(|t| t.len() <= 3 && t.iter().all(Value::is_boolean))
                && v.as_object().is_some_and(|o| o.len() == 4);
            assert!(ok, "{name} seed {seed}: {text}");
        }
    }
}

#[test]
fn bad_schemas_are_errors_not_panics() {
    let tok = tokenizer("qwen2.5-0.5b");
    let compiler = GrammarCompiler::new(tok.clone(), tok.eos_ids()[0], tok.vocab_size()).unwrap();
    for schema in [
        json!({"type": "no-such-type"}),
        json!({"type": "string", "pattern": "(unclosed"}),
        json!({"$ref": "#/definitions/missing"}),
    ] {
        assert!(compiler.json_schema(schema.clone()).is_err(), "{schema}");
    }
}

/// A demanded call, in each format, continued by random picks: always exactly one call, to a
/// function offered, with arguments following its schema.
#[test]
fn demanded_tool_calls_always_parse() {
    let tok = tokenizer("qwen2.5-0.5b");
    let compiler = GrammarCompiler::new(tok.clone(), tok.eos_ids()[0], tok.vocab_size()).unwrap();
    let functions = vec![
        (
            "get_weather".to_string(),
            json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                   "required": ["city"], "additionalProperties": false}),
        ),
        (
            "set_alarm".to_string(),
            json!({"type": "object", "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23}},
                   "required": ["hour"], "additionalProperties": false}),
        ),
    ];
    for format in [
        ToolFormat::Hermes,
        ToolFormat::Mistral,
        ToolFormat::Llama3Json,
    ] {
        for (seed, function) in [(1, None), (2, None), (3, Some("set_alarm"))] {
            let grammar = format.call_grammar(&functions, function).unwrap();
            let constraint = compiler
                .lark(grammar.clone())
                .unwrap_or_else(|e| panic!("{e}\n{grammar}"));
            let text = format.forced_prefix(function) + &sample_constrained(&tok, constraint, seed);
            let mut x = ToolCallExtractor::new(format);
            let mut pieces = x.push(&text);
            pieces.extend(x.finish());
            let calls: Vec<_> = pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Call(c) => Some(c),
                    Piece::Content(_) => None,
                })
                .collect();
            assert_eq!(calls.len(), 1, "{format:?}: {text:?} -> {pieces:?}");
            let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
            match calls[0].name.as_str() {
                "get_weather" => assert!(
                    args["city"]
                        .as_str()
                        .is_some_and(|c| c.chars().count() <= 10),
                    "{text}"
                ),
                "set_alarm" => assert!(
                    args["hour"].as_i64().is_some_and(|h| (0..=23).contains(&h)),
                    "{text}"
                ),
                other => panic!("unknown function {other}: {text}"),
            }
            if let Some(f) = function {
                assert_eq!(calls[0].name, f, "{text}");
            }
        }
    }
}
