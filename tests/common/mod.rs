//! Helpers shared by the integration tests.
#![allow(dead_code)]
pub mod encoder;
pub mod gpu;
pub mod plugins;
pub mod prefix_copy;
pub mod python;
pub mod server;
use std::path::PathBuf;

/// The tiny random models of tests/fixtures/tiny with transformers' goldens, one per
/// architecture variant candor runs.
pub const TINY_ARCHS: [&str; 114] = [
    "llama",
    "llama3_rope",
    "qwen2",
    "qwen3",
    "mistral",
    "gemma3",
    "phi3",
    "deepseek_v3",
    "deepseek_v2",
    "qwen2_yarn",
    "phi3_longrope",
    "qwen3_moe",
    "mixtral",
    "qwen2_moe",
    "glm4_moe",
    "olmoe",
    "gemma2",
    "olmo2",
    "gpt_oss",
    "olmo3",
    "granite",
    "smollm3",
    "exaone4",
    "glm4",
    "ernie4_5",
    "seed_oss",
    "hunyuan_dense",
    "granitemoe",
    "granitemoeshared",
    "cohere",
    "cohere2",
    "starcoder2",
    "lfm2",
    "qwen3_next",
    "qwen3_5",
    "qwen3_5_moe",
    "granitemoehybrid",
    "granitemoehybrid_dense",
    "granitemoehybrid_groups",
    "nemotron_h",
    "nemotron_h_moe",
    "kimi_linear",
    "bamba",
    "mamba2",
    "mamba",
    "falcon_mamba",
    "jamba",
    "afmoe",
    "granite_swa",
    "granitemoe_swa",
    "falcon_h1",
    "falcon_h1_plain",
    "cohere2_moe",
    "cohere2_moe_ln",
    "jais2",
    "bitnet",
    "olmo_hybrid",
    "lfm2_moe",
    "gemma",
    "gemma3_vlm",
    "mistral3",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "qwen3_vl_moe",
    "internvl",
    "llava",
    "llava_next",
    "aya_vision",
    "phi",
    "gpt_neox",
    "gpt_neox_sequential",
    "stablelm",
    "stablelm_parallel",
    "nemotron",
    "gpt2",
    "falcon",
    "falcon_7b",
    "cohere_qk_norm",
    "stablelm_qk_norm",
    "gpt_bigcode",
    "gpt_bigcode_mha",
    "ernie4_5_moe",
    "arcee",
    "hunyuan_moe",
    "dots1",
    "glm",
    "apertus",
    "gptj",
    "olmo",
    "qwen3_fp8",
    "llama4",
    "glm4v",
    "glm4v_moe",
    "mistral4",
    "solar_open",
    "glm4_moe_lite",
    "exaone_moe",
    "flex_olmo",
    "glm46v",
    "sarvam_moe",
    "exaone4_5",
    "llama_fp8_dynamic",
    "ministral3",
    "minimax_m2",
    "vaultgemma",
    "helium",
    "phimoe",
    "opt",
    "opt_350m",
    "minicpm",
    "bloom",
    "mpt",
    "falcon_rw",
];

/// tests/fixtures; `CANDOR_FIXTURES` overrides it for test binaries carried to another machine
/// (the GPU runs of docs/cuda.md), where the compiled-in checkout path does not exist.
pub fn fixtures() -> PathBuf {
    std::env::var_os("CANDOR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

/// The result documents `candor report` tests read (copies of benches/results), sorted.
pub fn report_results() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures().join("report"))
        .expect("tests/fixtures/report")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// A JSON file as transformers writes it (Python's `Infinity` and `NaN` read as strings, as
/// candor reads config.json).
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    candor_models::config_json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn as_u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

pub fn as_f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// llama.cpp's converter's permutation of a q/k weight's rows (`[heads * head_dim, in]`), so
/// RoPE pairs dimensions (2i, 2i+1): as it writes llama-family models and their LoRA adapters.
pub fn permute_rope_rows(w: &candle_core::Tensor, heads: usize) -> candle_core::Tensor {
    let (out, inp) = w.dims2().unwrap();
    w.reshape((heads, 2, out / heads / 2, inp))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((out, inp))
        .unwrap()
}

/// The largest |a - b|; infinite where either side is NaN (`f32::max` would skip a NaN, and a
/// forward pass that made NaNs would pass every tolerance).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length differs");
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x - y).abs() {
            d if d.is_nan() => f32::INFINITY,
            d => d,
        })
        .fold(0.0, f32::max)
}

/// Path of a real test model (`qwen2.5-0.5b`, `gemma3-270m`), pulled through candor's own
/// fetch path when missing (a fresh CI machine).
pub fn real_model(name: &str) -> PathBuf {
    match candor::pull::resolve_model(name, true) {
        Ok(p) => p,
        Err(e) => panic!("cannot get the test model {name}: {e}"),
    }
}

/// A chat request through one weather call (`call_id`, its `arguments` as the other API sends
/// them) and the call's result, answered in one short sentence, greedy: what the Responses
/// and Messages tests send in their own shapes, to compare the answers.
pub fn weather_call_chat(call_id: &str, arguments: &str) -> serde_json::Value {
    serde_json::json!({
        "messages": [
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the weather like in Paris today?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function",
                "function": {"name": "get_weather", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "{\"temperature_c\": 21, \"sky\": \"sunny\"}"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "none", "max_tokens": 24, "temperature": 0,
    })
}

/// The tokenizer `candor::engine::load::checkout_tokenizer` reads from the checkout `dir`
/// gives the ids of its `tokenizer_golden.json` (`{"cases": [{"text", "ids", "decoded"}]}`,
/// made with transformers) and decodes them to its texts.
pub fn assert_checkout_tokenizer_golden(dir: &std::path::Path) {
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_golden.json")).unwrap())
            .unwrap();
    let tok = candor::engine::load::checkout_tokenizer(dir)
        .unwrap()
        .expect("a tokenizer");
    for case in golden["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = (case["ids"].as_array().unwrap().iter())
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(ids, want, "{text:?}");
        assert_eq!(
            tok.decode(&ids, true).unwrap(),
            case["decoded"].as_str().unwrap(),
            "{text:?}"
        );
    }
}

/// Every position's logits of `tokens` (one block of 64) through the checkout or GGUF at
/// `path` on a CPU runner in f32.
pub fn cpu_logits(path: &std::path::Path, tokens: &[u32]) -> Vec<f32> {
    let opened = candor_models::loader::open_model(path, false).expect("open");
    let kv = candor::backend::cpu::KvDtype::F32;
    let mut r = candor::engine::load::cpu_runner(&opened, 2, 64, kv).expect("runner");
    let batch = candor_models::Batch {
        seqs: vec![candor_models::SeqInput {
            state_slot: 0,
            tokens: tokens.to_vec(),
            start_pos: 0,
            block_table: vec![0],
            logits: candor_models::LogitsWanted::All,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    r.forward(&batch).expect("forward").data
}

/// The largest difference from transformers' logits over a tiny golden's positions (`g`, its
/// golden.json), for the whole input in one forward pass of `r`.
pub fn tiny_golden_distance(r: &mut dyn candor::engine::Runner, g: &serde_json::Value) -> f32 {
    let ids = as_u32s(&g["input_ids"]);
    let mut bm = candor::engine::BlockManager::new(r.num_blocks(), r.block_size(), false);
    let mut table = candor::engine::BlockTable::default();
    bm.ensure(&mut table, ids.len()).unwrap();
    let out = r
        .forward(&candor_models::Batch {
            seqs: vec![candor_models::SeqInput {
                state_slot: 0,
                tokens: ids,
                start_pos: 0,
                block_table: table.ids,
                logits: candor_models::LogitsWanted::All,
                lora: candor_models::lora::LoraMix::BASE,
            }],
        })
        .unwrap();
    as_u32s(&g["positions"])
        .into_iter()
        .map(|p| {
            let want = as_f32s(&g["float32"]["logits"][p.to_string()]);
            max_abs_diff(out.row(p as usize), &want)
        })
        .fold(0.0, f32::max)
}
