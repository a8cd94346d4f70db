//! Grammar-constrained sampling over the real vocabularies (qwen: byte-level BPE; gemma:
//! SentencePiece), without a model: random logits stand in for one, so every token is an
//! adversarial pick among those the grammar allows, and the answers must still be valid.
mod common;

use candle_core::quantized::gguf_file::Content;
use candor::engine::grammar::{
    AddressedMessages, BareOpening, Constraint, GrammarCompiler, LazyGrammar, Trigger,
};
use candor::engine::sampler::{Sampler, SamplingParams};
use candor::engine::thought::{Thought, ThoughtMarkers};
use candor::server::tools::extract::{Piece, ToolCallExtractor};
use candor::server::tools::format::{arguments_grammar, ToolFormat};
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

/// A model's tokenizer, a grammar compiler over its whole vocabulary, and its end token.
fn compiler_for(name: &str) -> (Arc<Tokenizer>, GrammarCompiler, u32) {
    let tok = tokenizer(name);
    let eos = tok.eos_ids()[0];
    let compiler = GrammarCompiler::new(tok.clone(), eos, tok.vocab_size()).unwrap();
    (tok, compiler, eos)
}

/// Which texts are one special token of `tok`'s vocabulary (as the server asks).
fn special_of(tok: &Tokenizer) -> impl Fn(&str) -> bool + '_ {
    |text| tok.is_special_text(text)
}

/// What the extractor reads from a whole answer in `format`.
fn extract(format: ToolFormat, text: &str) -> Vec<Piece> {
    let mut x = ToolCallExtractor::new(format, weather_and_alarm().into());
    let mut pieces = x.push(text);
    pieces.extend(x.finish());
    pieces
}

/// Sample with random logits until the end token; the decoded text.
fn sample_answer(tok: &Tokenizer, compiler: &GrammarCompiler, schema: &Value, seed: u64) -> String {
    let constraint = compiler
        .json_schema(schema.clone())
        .expect("schema compiles");
    sample_constrained(tok, constraint, seed)
}

/// A sampler at temperature 1 under `constraint`.
fn seeded_sampler(seed: u64, constraint: Constraint) -> Sampler {
    let params = SamplingParams {
        temperature: 1.0,
        seed: Some(seed),
        ..SamplingParams::greedy()
    };
    Sampler::new(params).unwrap().constrained(Some(constraint))
}

/// Logits standing in for a model's: every allowed token may win.
fn random_logits(rng: &mut impl Rng, vocab: usize) -> Vec<f32> {
    (0..vocab).map(|_| rng.random::<f32>() * 8.0).collect()
}

fn sample_constrained(tok: &Tokenizer, constraint: Constraint, seed: u64) -> String {
    let eos = constraint.eos();
    let mut sampler = seeded_sampler(seed, constraint);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tokens = Vec::new();
    for _ in 0..400 {
        let logits = random_logits(&mut rng, tok.vocab_size());
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
        let (tok, compiler, _) = compiler_for(name);
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
    let (_, compiler, _) = compiler_for("qwen2.5-0.5b");
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
    let (tok, compiler, _) = compiler_for("qwen2.5-0.5b");
    let functions = weather_and_alarm();
    for format in ToolFormat::ALL {
        for (seed, function) in [
            (1, None),
            (2, None),
            (3, Some("set_alarm")),
            (4, Some("get_weather")),
        ] {
            let grammar = format
                .call_grammar(&functions, function, &special_of(&tok))
                .unwrap();
            let constraint = compiler
                .lark(grammar.clone())
                .unwrap_or_else(|e| panic!("{e}\n{grammar}"));
            let text = format.forced_prefix(function) + &sample_constrained(&tok, constraint, seed);
            let pieces = extract(format, &text);
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

fn weather_and_alarm() -> Vec<(String, Value)> {
    vec![
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
    ]
}

/// The lazy constraint `tool_choice: "auto"` gets in `format`, opened by `trigger`.
fn lazy_constraint(compiler: &GrammarCompiler, format: ToolFormat, trigger: u32) -> Constraint {
    lazy_constraint_with(compiler, format, trigger, true)
}

fn lazy_constraint_with(
    compiler: &GrammarCompiler,
    format: ToolFormat,
    trigger: u32,
    parallel: bool,
) -> Constraint {
    let grammars = format
        .lazy_call_grammar(&weather_and_alarm(), parallel, &|_| false)
        .unwrap();
    let spec = LazyGrammar {
        after_trigger: grammars
            .after_trigger
            .clone()
            .map(|g| (Trigger::Token(trigger), g)),
        rearm: grammars.rearm,
        bare: grammars.bare.clone().map(|grammar| BareOpening {
            grammar,
            marker: format.bare_call_marker().to_string(),
        }),
        addressed: None,
        opened: grammars.after_trigger.clone().filter(|_| grammars.at_start),
    };
    compiler
        .lazy(spec)
        .unwrap_or_else(|e| panic!("{e}\n{grammars:?}"))
}

/// Logits that make `token` the pick whatever the temperature.
fn forcing(vocab: usize, token: u32) -> Vec<f32> {
    let mut logits = vec![0.0; vocab];
    logits[token as usize] = 1e4;
    logits
}

/// `tool_choice: "auto"` (hermes, and the tag formats that open their calls with
/// `<tool_call>`): text stays free, a `<tool_call>` token starts the call grammar, random picks
/// inside it still give a valid call, and after `</tool_call>` the text is free again until
/// the next call.
#[test]
fn auto_tool_calls_follow_a_lazy_grammar_between_free_text() {
    for format in [
        ToolFormat::Hermes,
        ToolFormat::Qwen3Coder,
        ToolFormat::Glm45,
    ] {
        let (tok, _, _) = compiler_for("qwen2.5-0.5b");
        let trigger = tok.encode(format.call_start(), false).unwrap();
        assert_eq!(trigger.len(), 1, "{trigger:?}");
        calls_between_free_text(format, Trigger::Token(trigger[0]), "");
    }
}

/// The same where the call's opening is several tokens of the vocabulary (OLMo 3's
/// `<function_calls>`, MiniCPM5's `<function name="`, MiniMax-M2's and DeepSeek V3.2's block
/// tags in Qwen's): the text is watched for it, however the tokens split it, and the grammar
/// takes over where it is complete, fed what the completing token wrote past it (OLMo 3's
/// newline, a function name's first letters).
#[test]
fn auto_tool_calls_open_on_a_trigger_of_several_tokens() {
    let (tok, _, _) = compiler_for("qwen2.5-0.5b");
    for (format, lead) in [
        (ToolFormat::Olmo3, "\n"),
        (ToolFormat::MiniCpm5, "get"),
        (ToolFormat::MinimaxM2, ""),
        (ToolFormat::DeepseekV32, ""),
    ] {
        let trigger = format.trigger_text();
        assert!(tok.encode(trigger, false).unwrap().len() > 1, "{trigger}");
        calls_between_free_text(format, Trigger::Text(trigger.into()), lead);
    }
}

/// Two calls among free text under `auto`, each opened by `trigger` then `lead` (forced),
/// continued by random picks to the call's end: both valid, the text around them free.
fn calls_between_free_text(format: ToolFormat, trigger: Trigger, lead: &str) {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    let grammars = format
        .lazy_call_grammar(&weather_and_alarm(), true, &|_| false)
        .unwrap();
    let spec = LazyGrammar {
        after_trigger: grammars.after_trigger.map(|g| (trigger.clone(), g)),
        rearm: grammars.rearm,
        bare: None,
        addressed: None,
        opened: None,
    };
    let constraint = compiler.lazy(spec).unwrap();
    assert!(constraint.is_lazy() && !constraint.is_active());
    let mut sampler = seeded_sampler(5, constraint);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut tokens: Vec<u32> = Vec::new();
    let end = format.call_end().unwrap();
    for (i, text) in ["Let me look.", " And an alarm:"].iter().enumerate() {
        // Free text: whatever the logits favour is taken, as without a grammar; then the
        // call's opening.
        let opening = match &trigger {
            Trigger::Token(id) => [tok.encode(text, false).unwrap(), vec![*id]].concat(),
            Trigger::Text(t) => tok
                .encode(format!("{text}{t}{lead}").as_str(), false)
                .unwrap(),
        };
        for id in opening {
            assert_eq!(sampler.sample(&forcing(vocab, id), &tokens), id);
            tokens.push(id);
        }
        assert!(
            sampler.needs_mask(),
            "{format:?}: no grammar after {:?}",
            tok.decode(&tokens, false)
        );
        // Inside the call: adversarial random picks among the allowed tokens, until the
        // grammar lets go (the text is free again: a forced token is then taken).
        let mut steps = 0;
        loop {
            let logits = random_logits(&mut rng, vocab);
            let next = sampler.sample(&logits, &tokens);
            assert_ne!(
                next,
                eos,
                "call {i} ended early: {:?}",
                tok.decode(&tokens, false)
            );
            tokens.push(next);
            let text = tok.decode(&tokens, false).unwrap();
            if text.ends_with(end) {
                break;
            }
            steps += 1;
            assert!(steps < 300, "{format:?}: no end of call: {text:?}");
        }
    }
    let probe = tok.encode(" Done", false).unwrap()[0];
    assert_eq!(sampler.sample(&forcing(vocab, probe), &tokens), probe);
    tokens.push(probe);
    let text = tok.decode(&tokens, true).unwrap();
    let pieces = extract(format, &text);
    let mut calls = Vec::new();
    let mut content = String::new();
    for p in pieces {
        match p {
            Piece::Call(c) => calls.push(c),
            Piece::Content(t) => content.push_str(&t),
        }
    }
    // Hermes' blocks hold one call; OLMo 3's, MiniMax-M2's, DSML's take several.
    let one_a_block = matches!(trigger, Trigger::Token(_));
    assert!(
        calls.len() == 2 || (!one_a_block && calls.len() > 2),
        "{format:?}: {text:?}"
    );
    for c in &calls {
        let args: Value = serde_json::from_str(&c.arguments).unwrap();
        let ok = match c.name.as_str() {
            "get_weather" => args["city"]
                .as_str()
                .is_some_and(|c| c.chars().count() <= 10),
            "set_alarm" => args["hour"].as_i64().is_some_and(|h| (0..=23).contains(&h)),
            _ => false,
        };
        assert!(ok, "{c:?} in {text:?}");
    }
    assert_eq!(
        content.trim(),
        "Let me look. And an alarm: Done",
        "{text:?}"
    );
}

/// Mistral's call list runs to the end of the answer: once opened, the grammar holds until
/// the list closes, and then only the end token may follow. So does GigaChat's one call (a
/// parallel request's too: its templates write one call a turn).
#[test]
fn lazy_calls_to_the_end_end_the_answer() {
    for (format, last) in [
        (ToolFormat::Mistral, ']'),
        (ToolFormat::GigaChat3, '}'),
        (ToolFormat::GigaChat31, '}'),
    ] {
        lazy_calls_end_the_answer(format, last);
    }
}

fn lazy_calls_end_the_answer(format: ToolFormat, last: char) {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    // Qwen has no `[TOOL_CALLS]` token: any single token serves as the trigger here.
    let trigger = tok.encode("<tool_call>", false).unwrap()[0];
    for seed in 0..3 {
        let constraint = lazy_constraint(&compiler, format, trigger);
        let mut sampler = seeded_sampler(seed, constraint);
        assert_eq!(sampler.sample(&forcing(vocab, trigger), &[]), trigger);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut body = Vec::new();
        for _ in 0..400 {
            let logits = random_logits(&mut rng, vocab);
            let next = sampler.sample(&logits, &body);
            if next == eos {
                break;
            }
            body.push(next);
        }
        let text = tok.decode(&body, true).unwrap();
        let calls = format
            .parse_block(&text, &[])
            .unwrap_or_else(|| panic!("{format:?} seed {seed}: not a call: {text:?}"));
        assert!(!calls.is_empty(), "{text:?}");
        assert!(text.trim_end().ends_with(last), "{format:?}: {text:?}");
    }
}

/// A greedy request's steps take the device's argmax while a lazy grammar waits, and the
/// logits once a call opens: the sampler watches the device's picks for the trigger.
#[test]
fn lazy_grammar_wants_logits_only_inside_a_call() {
    use candor::engine::runner::LogitRow;
    use candor::engine::Logits;
    use candor_models::LogitsWanted;
    let (tok, compiler, _) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    let trigger = tok.encode("<tool_call>", false).unwrap()[0];
    let constraint = lazy_constraint(&compiler, ToolFormat::Hermes, trigger);
    let mut sampler = Sampler::new(SamplingParams::greedy())
        .unwrap()
        .constrained(Some(constraint));
    let picked = |id| Logits {
        vocab,
        data: Vec::new(),
        kinds: vec![LogitRow::Argmax(id)],
        ..Default::default()
    };
    let hello = tok.encode("Hello", false).unwrap()[0];
    assert_eq!(sampler.logits_wanted(false), LogitsWanted::Argmax);
    assert_eq!(sampler.next_token(&picked(hello), 0, &[]), hello);
    assert_eq!(sampler.logits_wanted(false), LogitsWanted::Argmax);
    assert_eq!(sampler.next_token(&picked(trigger), 0, &[hello]), trigger);
    assert_eq!(sampler.logits_wanted(false), LogitsWanted::Last);
    // Inside the call the greedy pick is the best allowed token, not the best overall.
    let mut logits = forcing(vocab, hello);
    let newline = tok.encode("\n", false).unwrap()[0];
    logits[newline as usize] = 1.0;
    let out = Logits::all_values(1, vocab, logits);
    let next = sampler.next_token(&out, 0, &[hello, trigger]);
    assert_ne!(next, hello);
    assert!(tok.decode(&[next], false).unwrap().starts_with('\n'));
}

/// A hermes answer that is the bare call object (no `<tool_call>`): the grammar follows the
/// answer from its first token but holds it only once it has spelled `{"name"`; then random
/// picks still give one valid call and the end. An answer that only starts with `{` is free.
#[test]
fn bare_call_answers_are_held_once_they_commit() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    let trigger = tok.encode("<tool_call>", false).unwrap()[0];
    for seed in 0..3 {
        let constraint = lazy_constraint(&compiler, ToolFormat::Hermes, trigger);
        let mut sampler = seeded_sampler(seed, constraint);
        let mut tokens = Vec::new();
        for id in tok.encode("{\"name\": ", false).unwrap() {
            let so_far = tok.decode(&tokens, false).unwrap();
            assert_eq!(
                sampler.needs_mask(),
                so_far.starts_with("{\"name\""),
                "{so_far:?}"
            );
            assert_eq!(sampler.sample(&forcing(vocab, id), &tokens), id);
            tokens.push(id);
        }
        assert!(
            sampler.needs_mask(),
            "committed after {:?}",
            tok.decode(&tokens, false)
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // Random picks until the call is complete (more calls may follow, or the end).
        for step in 0.. {
            assert!(
                step < 300,
                "no end of call: {:?}",
                tok.decode(&tokens, false)
            );
            let logits = random_logits(&mut rng, vocab);
            let next = sampler.sample(&logits, &tokens);
            assert_ne!(next, eos, "{:?}", tok.decode(&tokens, false));
            tokens.push(next);
            let text = tok.decode(&tokens, true).unwrap();
            if text.ends_with("}}") && ToolFormat::Hermes.parse_bare(&text).is_some() {
                break;
            }
        }
        assert_eq!(sampler.sample(&forcing(vocab, eos), &tokens), eos);
    }
    // JSON that is not a call is never bent: after `{"answer` the text is free for good.
    let constraint = lazy_constraint(&compiler, ToolFormat::Hermes, trigger);
    let mut sampler = Sampler::new(SamplingParams::greedy())
        .unwrap()
        .constrained(Some(constraint));
    let mut tokens = Vec::new();
    for id in tok.encode("{\"answer\": {\"name\": 1}}", false).unwrap() {
        assert!(!sampler.needs_mask(), "{:?}", tok.decode(&tokens, false));
        assert_eq!(sampler.sample(&forcing(vocab, id), &tokens), id);
        tokens.push(id);
    }
    assert!(!sampler.needs_mask());
}

/// A mask computed ahead (as the engine does during the forward pass) is the mask computed
/// when sampling: the same seed gives the same answer either way.
#[test]
fn masks_prepared_ahead_change_nothing() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string", "maxLength": 8}},
                        "required": ["n", "s"], "additionalProperties": false});
    let run = |ahead: bool| {
        let constraint = compiler.json_schema(schema.clone()).unwrap();
        let mut sampler = seeded_sampler(9, constraint);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut tokens = Vec::new();
        for _ in 0..200 {
            let logits = random_logits(&mut rng, vocab);
            if ahead {
                assert!(sampler.needs_mask());
                sampler.prepare_mask();
            }
            let next = sampler.sample(&logits, &tokens);
            if next == eos {
                break;
            }
            tokens.push(next);
        }
        tokens
    };
    let plain = run(false);
    assert!(serde_json::from_str::<Value>(&tok.decode(&plain, true).unwrap()).is_ok());
    assert_eq!(run(true), plain);
}

/// Llama 3 answers a call with the JSON alone (`<|python_tag|>` first or not): the answer is
/// held to call objects joined by `;` once it has spelled `{"name"`, and the calls read back.
/// The same for the pythonic list (Llama 4's `<|python_start|>` first or not) once the answer
/// has opened it.
#[test]
fn answers_that_are_calls_follow_the_lazy_grammar() {
    for (format, marker, close) in [
        (ToolFormat::Llama3Json, "{\"name\": ", '}'),
        (ToolFormat::Pythonic, "[", ']'),
        (ToolFormat::Xlam, "[{\"name\": ", ']'),
    ] {
        answer_calls_follow_the_lazy_grammar(format, marker, close);
    }
}

fn answer_calls_follow_the_lazy_grammar(format: ToolFormat, marker: &str, close: char) {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    // Qwen has neither `<|python_tag|>` nor `<|python_start|>`: any single token serves as
    // the trigger here.
    let trigger = tok.encode("<tool_call>", false).unwrap()[0];
    // xLAM's list has no trigger: the answer opens it.
    let triggered = format
        .lazy_call_grammar(&weather_and_alarm(), true, &|_| false)
        .unwrap()
        .after_trigger
        .is_some();
    let openings = [(1, vec![trigger]), (2, Vec::new()), (3, Vec::new())];
    for (seed, opening) in openings
        .into_iter()
        .filter(|(_, o)| triggered || o.is_empty())
    {
        let mut sampler = seeded_sampler(seed, lazy_constraint(&compiler, format, trigger));
        let mut tokens = opening.clone();
        for &id in &opening {
            assert_eq!(sampler.sample(&forcing(vocab, id), &[]), id);
        }
        for id in tok.encode(marker, false).unwrap() {
            assert_eq!(sampler.sample(&forcing(vocab, id), &tokens), id);
            tokens.push(id);
        }
        assert!(sampler.needs_mask(), "seed {seed}: held after the marker");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let answer = |tokens: &[u32]| tok.decode(&tokens[opening.len()..], true).unwrap();
        for step in 0.. {
            assert!(step < 300, "no end of call: {:?}", answer(&tokens));
            let next = sampler.sample(&random_logits(&mut rng, vocab), &tokens);
            assert_ne!(next, eos, "{:?}", answer(&tokens));
            tokens.push(next);
            let text = answer(&tokens);
            if text.ends_with(close) && format.parse_block(&text, &[]).is_some() {
                break;
            }
        }
        assert_eq!(sampler.sample(&forcing(vocab, eos), &tokens), eos);
        let pieces = extract(format, &answer(&tokens));
        assert!(
            pieces.iter().all(|p| matches!(p, Piece::Call(_))) && !pieces.is_empty(),
            "{pieces:?}"
        );
    }
}

/// Functionary v3.2: the prompt's `>>>` opened the first message, so the grammar holds the
/// answer from its first token. Random picks there give a call (or the user's recipient,
/// after which the text is free); a text answer's recipient line frees the text at once, a
/// later `>>>` opens a message again, and a `>>>` before text that names no one (a Python
/// prompt) lets it go after one character. Calls read back valid.
#[test]
fn functionary_messages_are_held_from_the_answer_start() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    let format = ToolFormat::FunctionaryV32;
    let trigger = tok.encode(format.trigger_text(), false).unwrap();
    assert_eq!(trigger.len(), 1, "{trigger:?}");
    let trigger = trigger[0];
    // Random picks from the first token: a whole valid call, `all\n` and free text, or one
    // character that names no one and free text (most single tokens: random picks favour
    // it); from a function name's first token on, always a whole valid call.
    let mut calls = 0;
    for seed in 0..6 {
        let constraint = lazy_constraint(&compiler, format, trigger);
        assert!(constraint.is_active());
        let mut sampler = seeded_sampler(seed, constraint);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tokens = Vec::new();
        if seed % 2 == 0 {
            let name = ["get_weather", "set_alarm"][seed as usize % 4 / 2];
            let first = tok.encode(name, false).unwrap()[0];
            assert_eq!(sampler.sample(&forcing(vocab, first), &tokens), first);
            tokens.push(first);
        }
        while sampler.needs_mask() {
            assert!(tokens.len() < 300, "{:?}", tok.decode(&tokens, false));
            let next = sampler.sample(&random_logits(&mut rng, vocab), &tokens);
            assert_ne!(next, eos, "{:?}", tok.decode(&tokens, false));
            tokens.push(next);
        }
        let text = tok.decode(&tokens, true).unwrap();
        match extract(format, &text).as_slice() {
            [Piece::Call(c)] => {
                let args: Value = serde_json::from_str(&c.arguments).unwrap();
                assert!(
                    matches!(c.name.as_str(), "get_weather" | "set_alarm") && args.is_object(),
                    "{c:?}"
                );
                calls += 1;
            }
            [] => assert_eq!(text, "all\n"),
            [Piece::Content(t)] => assert_eq!(t.chars().count(), 1, "{text:?}"),
            other => panic!("{other:?} from {text:?}"),
        }
    }
    assert!(calls >= 3, "{calls} calls");
    // A text answer, then a call it opens with `>>>`, then a Python prompt in text.
    let mut sampler = seeded_sampler(9, lazy_constraint(&compiler, format, trigger));
    let mut tokens: Vec<u32> = Vec::new();
    let force = |sampler: &mut Sampler, tokens: &mut Vec<u32>, text: &str| {
        for id in tok.encode(text, false).unwrap() {
            assert_eq!(
                sampler.sample(&forcing(vocab, id), &tokens[..]),
                id,
                "{text:?}"
            );
            tokens.push(id);
        }
    };
    force(&mut sampler, &mut tokens, "all\n");
    assert!(!sampler.needs_mask(), "free after the user's recipient");
    force(&mut sampler, &mut tokens, "Let me look.");
    force(&mut sampler, &mut tokens, ">>>");
    assert!(sampler.needs_mask(), "held after `>>>`");
    let first = tok.encode("set_alarm", false).unwrap()[0];
    assert_eq!(sampler.sample(&forcing(vocab, first), &tokens), first);
    tokens.push(first);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    while sampler.needs_mask() {
        assert!(tokens.len() < 300, "{:?}", tok.decode(&tokens, false));
        let next = sampler.sample(&random_logits(&mut rng, vocab), &tokens);
        tokens.push(next);
    }
    force(&mut sampler, &mut tokens, ">>>");
    force(&mut sampler, &mut tokens, " ");
    assert!(!sampler.needs_mask(), "free after `>>> `");
    force(&mut sampler, &mut tokens, "print(1)");
    let text = tok.decode(&tokens, true).unwrap();
    let pieces = extract(format, &text);
    let [Piece::Content(before), Piece::Call(_), Piece::Content(after)] = pieces.as_slice() else {
        panic!("{pieces:?} from {text:?}");
    };
    assert_eq!(
        (before.as_str(), after.as_str()),
        ("Let me look.", ">>> print(1)")
    );
}

/// `parallel_tool_calls: false`: once a call is complete only the end may follow, in each
/// format and either way in (trigger or bare), so no tokens go to calls that would be dropped.
#[test]
fn one_call_only_when_calls_are_not_parallel() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let vocab = tok.vocab_size();
    let trigger = tok.encode("<tool_call>", false).unwrap()[0];
    let cases = [
        (ToolFormat::Hermes, true),
        (ToolFormat::Hermes, false),
        (ToolFormat::Mistral, true),
        (ToolFormat::Llama3Json, false),
        (ToolFormat::MinimaxM1, true),
        (ToolFormat::MiniCpm5, true),
        (ToolFormat::HyV3, true),
        (ToolFormat::DeepseekV32, true),
        (ToolFormat::MinimaxM3, true),
        (ToolFormat::Gemma4, true),
        (ToolFormat::Olmo3, true),
        (ToolFormat::Lfm2, true),
        (ToolFormat::Granite20bFc, true),
    ];
    for (seed, (format, triggered)) in cases.into_iter().enumerate() {
        let constraint = lazy_constraint_with(&compiler, format, trigger, false);
        let mut sampler = seeded_sampler(seed as u64, constraint);
        let mut tokens = Vec::new();
        let opening = if triggered {
            vec![trigger]
        } else {
            tok.encode("{\"name\": ", false).unwrap()
        };
        for id in opening {
            assert_eq!(sampler.sample(&forcing(vocab, id), &tokens), id);
            tokens.push(id);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed as u64);
        let mut ended = false;
        for _ in 0..300 {
            let next = sampler.sample(&random_logits(&mut rng, vocab), &tokens);
            if next == eos {
                ended = true;
                break;
            }
            tokens.push(next);
        }
        // The stand-in trigger is spelled as the format's own marker.
        let text = match triggered {
            true => format.call_start().to_string() + &tok.decode(&tokens[1..], false).unwrap(),
            false => tok.decode(&tokens, false).unwrap(),
        };
        assert!(ended, "{format:?}: no end: {text:?}");
        let pieces = extract(format, &text);
        let calls = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Call(_)))
            .count();
        assert_eq!(calls, 1, "{format:?}: {text:?} -> {pieces:?}");
    }
}

/// GBNF grammars (llama.cpp's format), translated to lark and compiled: every answer sampled
/// from random logits matches the language the GBNF describes (checked with a regex of it).
#[test]
fn gbnf_grammars_hold_random_answers_to_their_language() {
    let cases = [
        (
            "# sums and products\nroot ::= term ([-+*/] term){0,3}\nterm ::= [0-9]{1,3} | \"(\" [0-9]{1,2} \")\"",
            r"^([0-9]{1,3}|\([0-9]{1,2}\))([-+*/]([0-9]{1,3}|\([0-9]{1,2}\))){0,3}$",
        ),
        (
            "root ::= item{1,3}\nitem ::= \"- \" [a-z]{1,8} \"\\n\"",
            r"^(- [a-z]{1,8}\n){1,3}$",
        ),
        (
            "root ::= \"{\\\"name\\\": \" str \", \\\"ok\\\": \" (\"true\" | \"false\") \"}\"\n\
             str ::= \"\\\"\" [^\"\\\\\\x7F\\x00-\\x1F]{1,10} \"\\\"\"",
            r#"^\{"name": "[^"\\\x7F\x00-\x1F]{1,10}", "ok": (true|false)\}$"#,
        ),
    ];
    let cases: Vec<(&str, regex::Regex)> = cases
        .iter()
        .map(|(gbnf, language)| (*gbnf, regex::Regex::new(language).unwrap()))
        .collect();
    let phone = regex::Regex::new(r"^[0-9]{3}-[0-9]{4}$").unwrap();
    for name in ["qwen2.5-0.5b", "gemma3-270m"] {
        let (tok, compiler, _) = compiler_for(name);
        for (gbnf, language) in &cases {
            let lark = candor::server::gbnf::to_lark(gbnf).expect("translates");
            for seed in 0..4 {
                let constraint = compiler
                    .lark(lark.clone())
                    .unwrap_or_else(|e| panic!("{lark}: {e}"));
                let answer = sample_constrained(&tok, constraint, seed);
                assert!(language.is_match(&answer), "{name} {gbnf}: {answer:?}");
            }
        }
        // A regex guide too.
        for seed in 0..4 {
            let answer =
                sample_constrained(&tok, compiler.regex("[0-9]{3}-[0-9]{4}").unwrap(), seed);
            assert!(phone.is_match(&answer), "{name}: {answer:?}");
        }
    }
}

/// A thought for `tok`'s vocabulary, marked by `open` and `close`, with a budget whose
/// closing is `message` then `close`.
fn thought_of(
    tok: &Tokenizer,
    (open, close): (&str, &str),
    in_thought: bool,
    budget: Option<usize>,
    message: &str,
) -> Thought {
    let markers = Arc::new(ThoughtMarkers::new(open, close, tok.token_bytes()));
    let closing = tok.encode(&format!("{message}{close}"), false).unwrap();
    Thought::new(markers, in_thought, budget, Arc::new(closing))
}

/// Sample with random logits after `written` (tokens the logits force, one by one) until the
/// end token; the decoded text.
fn sample_after(
    tok: &Tokenizer,
    sampler: &mut Sampler,
    eos: u32,
    written: &[u32],
    seed: u64,
) -> String {
    let tokens = sample_tokens_after(tok, sampler, eos, written, seed);
    tok.decode(&tokens, false).unwrap()
}

/// `sample_after`'s tokens, the end token left out.
fn sample_tokens_after(
    tok: &Tokenizer,
    sampler: &mut Sampler,
    eos: u32,
    written: &[u32],
    seed: u64,
) -> Vec<u32> {
    let vocab = tok.vocab_size();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tokens: Vec<u32> = Vec::new();
    for &id in written {
        assert_eq!(
            sampler.sample(&forcing(vocab, id), &tokens),
            id,
            "{tokens:?}"
        );
        tokens.push(id);
    }
    for _ in 0..400 {
        let next = sampler.sample(&random_logits(&mut rng, vocab), &tokens);
        if next == eos {
            return tokens;
        }
        tokens.push(next);
    }
    panic!("no end after 400 tokens: {:?}", tok.decode(&tokens, false));
}

/// A schema whose answers end soon even under random picks.
fn small_object() -> Value {
    json!({
        "type": "object",
        "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer", "minimum": 1, "maximum": 14}},
        "required": ["unit", "days"],
        "additionalProperties": false
    })
}

/// The JSON object after `close` in `text`, and the thought before it.
fn thought_and_json<'t>(text: &'t str, close: &str) -> (&'t str, Value) {
    let at = text
        .find(close)
        .unwrap_or_else(|| panic!("no close in {text:?}"));
    let answer = &text[at + close.len()..];
    let json: Value =
        serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {answer:?} in {text:?}"));
    assert!(json.is_object(), "{text:?}");
    (&text[..at], json)
}

/// A prompt that opened a thought (DeepSeek-R1's template), a JSON answer asked for, and a
/// budget of six tokens: six random tokens of thought, the message and `</think>` forced
/// (several tokens in this vocabulary), then the grammar holds random picks to valid JSON.
#[test]
fn a_budgeted_thought_closes_then_the_grammar_shapes_the_answer() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let markers = ("<think>", "</think>");
    for seed in 0..4 {
        let thought = thought_of(&tok, markers, true, Some(6), " Time is up.");
        let constraint = compiler.json_schema(small_object()).unwrap();
        let mut sampler = seeded_sampler(seed, constraint).thinking(Some(thought));
        let tokens = sample_tokens_after(&tok, &mut sampler, eos, &[], seed);
        let text = tok.decode(&tokens, false).unwrap();
        thought_and_json(&text, "</think>");
        // Six picks, then the closing forced (random tokens need not re-encode as six).
        let closing = tok.encode(" Time is up.</think>", false).unwrap();
        assert_eq!(&tokens[6..6 + closing.len()], &closing[..], "{text:?}");
    }
}

/// Without a budget the model closes its own thought, in whatever pieces (`>` merged with
/// the newlines after it): until then the grammar lets the thought be (a JSON grammar would
/// refuse its words), then it shapes the answer.
#[test]
fn a_grammar_waits_for_the_thought_the_model_closes() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let written = tok.encode("Hmm, an object.</think>\n\n", false).unwrap();
    let constraint = compiler.json_schema(small_object()).unwrap();
    let thought = thought_of(&tok, ("<think>", "</think>"), true, None, "");
    let mut sampler = seeded_sampler(3, constraint).thinking(Some(thought));
    let text = sample_after(&tok, &mut sampler, eos, &written, 3);
    let (thought, _) = thought_and_json(&text, "</think>");
    assert_eq!(thought, "Hmm, an object.");
}

/// Under a grammar, a thought may still open at the answer's start when its opening is one
/// token (Qwen3's `<think>`; `<tool_call>` stands in for it in this vocabulary): taken beside
/// what the grammar allows, then the budget and the grammar as above. Any other first token
/// is the grammar's.
#[test]
fn under_a_grammar_a_single_token_opening_is_still_allowed() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let markers = ("<tool_call>", "</tool_call>");
    let open = tok.encode(markers.0, false).unwrap();
    assert_eq!(open.len(), 1);
    let constraint = compiler.json_schema(small_object()).unwrap();
    let thought = thought_of(&tok, markers, false, Some(3), "");
    let mut sampler = seeded_sampler(8, constraint).thinking(Some(thought));
    let text = sample_after(&tok, &mut sampler, eos, &open, 8);
    let (thought, _) = thought_and_json(&text, markers.1);
    let spent = thought.strip_prefix(markers.0).expect("the opening");
    assert_eq!(tok.encode(spent, false).unwrap().len(), 3, "{text:?}");

    // An answer that does not open a thought: the grammar's from the first token.
    let constraint = compiler.json_schema(small_object()).unwrap();
    let thought = thought_of(&tok, markers, false, Some(3), "");
    let mut sampler = seeded_sampler(9, constraint).thinking(Some(thought));
    let text = sample_after(&tok, &mut sampler, eos, &[], 9);
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(json.is_object());
}

/// Qwen's vocabulary with harmony's markers added as control tokens (gpt-oss's vocabulary
/// holds them so; no real harmony model is reachable here).
fn harmony_vocabulary() -> Arc<Tokenizer> {
    use candle_core::quantized::gguf_file::Value as Md;
    let path = common::real_model("qwen2.5-0.5b");
    let mut f = std::fs::File::open(&path).expect("open model");
    let mut md = Content::read(&mut f).expect("read gguf").metadata;
    for (key, added) in [
        (
            "tokenizer.ggml.tokens",
            HARMONY_MARKERS.map(|m| Md::String(m.into())),
        ),
        (
            "tokenizer.ggml.token_type",
            HARMONY_MARKERS.map(|_| Md::I32(3)),
        ),
    ] {
        let Some(Md::Array(values)) = md.get_mut(key) else {
            panic!("no {key}");
        };
        values.extend(added);
    }
    Arc::new(Tokenizer::from_gguf_metadata(&md).expect("tokenizer"))
}

const HARMONY_MARKERS: [&str; 6] = [
    "<|constrain|>",
    "<|message|>",
    "<|call|>",
    "<|channel|>",
    "<|start|>",
    "<|end|>",
];

/// `tool_choice: "required"` on a harmony model: after the forced opening the grammar picks a
/// function by name, then demands the header's markers as the special tokens they are (never
/// spelled out in text), then arguments of that function's schema. Random logits stand in
/// for the model; the harmony reader returns each answer as a call with valid arguments.
#[test]
fn harmony_required_calls_name_a_function_then_its_markers_as_tokens() {
    use candor::server::harmony::{any_call_grammar, any_call_opening, HarmonySplitter};
    let tok = harmony_vocabulary();
    let call_end = tok.token_id("<|call|>").unwrap();
    let compiler = GrammarCompiler::new(tok.clone(), call_end, tok.vocab_size()).unwrap();
    let functions = vec![
        ("get_weather".to_string(), small_object()),
        (
            "get_time".to_string(),
            json!({"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}},
                   "required": ["zone"], "additionalProperties": false}),
        ),
    ];
    let special = |t: &str| tok.is_special_text(t);
    let grammar = any_call_grammar(&functions, &special).unwrap();
    let marker_ids: Vec<u32> = HARMONY_MARKERS[..2]
        .iter()
        .map(|m| tok.token_id(m).unwrap())
        .collect();
    let mut names = std::collections::HashSet::new();
    for seed in 0..12 {
        let constraint = compiler.lark(grammar.clone()).expect("grammar compiles");
        let mut sampler = seeded_sampler(seed, constraint);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tokens = Vec::new();
        while tokens.len() < 300 {
            let next = sampler.sample(&random_logits(&mut rng, tok.vocab_size()), &tokens);
            if next == call_end {
                break;
            }
            tokens.push(next);
        }
        let text = tok.decode(&tokens, false).unwrap();
        for id in &marker_ids {
            assert_eq!(tokens.iter().filter(|&t| t == id).count(), 1, "{text}");
        }
        let mut reader = HarmonySplitter::new(true);
        let mut split = reader.push(&format!("{}{text}", any_call_opening()));
        split.calls.extend(reader.finish().calls);
        assert_eq!(split.calls.len(), 1, "{text}");
        let call = &split.calls[0];
        let args: Value = serde_json::from_str(&call.arguments).expect("JSON arguments");
        let valid = match call.name.as_str() {
            "get_weather" => {
                matches!(args["unit"].as_str(), Some("celsius" | "fahrenheit"))
                    && args["days"].as_i64().is_some_and(|d| (1..=14).contains(&d))
            }
            "get_time" => matches!(args["zone"].as_str(), Some("utc" | "cet")),
            _ => false,
        };
        assert!(valid, "{text}");
        names.insert(call.name.clone());
    }
    assert_eq!(names.len(), 2, "both functions are reachable: {names:?}");
}

/// `tool_choice: "auto"` on a harmony model: text stays free (a thought that even mentions a
/// recipient, a final answer) until a header addressed to a function ends; that message's
/// body is then held to the function's arguments, and the text is free again after it.
#[test]
fn harmony_messages_to_functions_hold_their_bodies_to_the_arguments() {
    use candor::server::harmony::HarmonySplitter;
    let tok = harmony_vocabulary();
    let id = |m: &str| tok.token_id(m).unwrap();
    let call_end = id("<|call|>");
    let compiler = GrammarCompiler::new(tok.clone(), call_end, tok.vocab_size()).unwrap();
    let get_time = json!({"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}},
                          "required": ["zone"], "additionalProperties": false});
    let functions = vec![
        ("get_weather".to_string(), small_object()),
        ("get_time".to_string(), get_time),
    ];
    let lazy = || -> Constraint {
        let spec = LazyGrammar {
            after_trigger: None,
            rearm: true,
            bare: None,
            opened: None,
            addressed: Some(AddressedMessages {
                body_opening: id("<|message|>"),
                body_ends: vec![id("<|end|>"), call_end],
                recipient: candor::server::harmony::recipient,
                grammars: functions
                    .iter()
                    .map(|(name, _)| {
                        let args = arguments_grammar(&functions, name, "").unwrap();
                        (format!("functions.{name}"), args)
                    })
                    .collect(),
            }),
        };
        compiler.lazy(spec).expect("lazy grammar compiles")
    };
    let prefix = "<|channel|>analysis<|message|>I could ask to=functions.get_weather here.<|end|>\
                  <|start|>assistant<|channel|>commentary to=functions.get_time \
                  <|constrain|>json<|message|>";
    let prefix_ids = tok.encode(prefix, false).unwrap();
    assert_eq!(
        prefix_ids
            .iter()
            .filter(|&&t| t == id("<|message|>"))
            .count(),
        2,
        "the markers are single tokens"
    );
    // The recipient first, as the answer's first message (gpt-oss's template writes calls so).
    let first = tok
        .encode(
            " to=functions.get_time<|channel|>commentary json<|message|>",
            false,
        )
        .unwrap();
    for seed in 0..6 {
        let prefix_ids = if seed % 2 == 0 { &prefix_ids } else { &first };
        let mut constraint = lazy();
        for (i, &t) in prefix_ids.iter().enumerate() {
            assert!(
                !constraint.is_active(),
                "held before token {i} of the header"
            );
            constraint.accept(t);
        }
        assert!(constraint.is_active(), "the call's body is not held");
        let mut sampler = seeded_sampler(seed, constraint);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tokens = prefix_ids.clone();
        while tokens.len() < prefix_ids.len() + 400 {
            let mut logits = random_logits(&mut rng, tok.vocab_size());
            // A model ends its call once the arguments are written.
            logits[call_end as usize] = 100.0;
            let next = sampler.sample(&logits, &tokens);
            if next == call_end {
                break;
            }
            tokens.push(next);
        }
        let text = tok.decode(&tokens, false).unwrap();
        let mut reader = HarmonySplitter::new(true);
        let mut split = reader.push(&text);
        split.calls.extend(reader.finish().calls);
        assert_eq!(split.calls.len(), 1, "{text}");
        assert_eq!(split.calls[0].name, "get_time", "{text}");
        let args: Value = serde_json::from_str(&split.calls[0].arguments).expect("JSON");
        assert!(
            matches!(args["zone"].as_str(), Some("utc" | "cet")),
            "{text}"
        );
    }
    // A message to no function (the final answer) stays free, even after a thought that
    // named one in its text.
    let mut constraint = lazy();
    let free = "<|channel|>analysis<|message|>ask to=functions.get_time<|end|>\
                <|start|>assistant<|channel|>final<|message|>Hello";
    for t in tok.encode(free, false).unwrap() {
        constraint.accept(t);
        assert!(!constraint.is_active());
    }
}

/// The tag grammars close a free-text value with the closing tag's special token where the
/// vocabulary holds one (`tag_grammar`): a plain text terminal followed by that token. Random
/// picks under such a grammar write text, then the token, then end.
#[test]
fn free_text_runs_until_a_special_token_closes_it() {
    let (tok, compiler, eos) = compiler_for("qwen2.5-0.5b");
    let close = tok.token_id("<|fim_middle|>").unwrap();
    assert!(tok.is_special(close));
    let grammar = "start: \"<v>\" TEXT <|fim_middle|> \"!\"\nTEXT: /(?s:.{0,40})/\n".to_string();
    for seed in 0..3 {
        let constraint = compiler.lark(grammar.clone()).unwrap();
        let mut sampler = seeded_sampler(seed, constraint);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tokens = Vec::new();
        loop {
            let next = sampler.sample(&random_logits(&mut rng, tok.vocab_size()), &tokens);
            if next == eos {
                break;
            }
            tokens.push(next);
            assert!(tokens.len() < 100, "{:?}", tok.decode(&tokens, false));
        }
        let text = tok.decode(&tokens, false).unwrap();
        let body = text
            .strip_prefix("<v>")
            .and_then(|t| t.strip_suffix("<|fim_middle|>!"))
            .unwrap_or_else(|| panic!("seed {seed}: {text:?}"));
        assert!(
            body.chars().count() <= 40 && !body.contains("<|fim_middle|>"),
            "{text:?}"
        );
        assert_eq!(
            tokens.iter().filter(|&&t| t == close).count(),
            1,
            "{text:?}"
        );
    }
}
