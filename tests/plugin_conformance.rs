//! The reference device plugin passes the conformance suite, a plugin with wrong numbers for one
//! op is caught, and a model generates the same greedy tokens on the plugin as on the CPU.
#![cfg(unix)]
mod common;

use common::plugins::{self, candor};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Rows of the conformance table whose first column is `op`.
fn rows<'a>(table: &'a str, op: &str) -> Vec<&'a str> {
    table
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(op))
        .collect()
}

/// Rows of `op` whose line mentions `needle` (a dtype, a variant, a flag).
fn rows_with<'a>(table: &'a str, op: &str, needle: &str) -> Vec<&'a str> {
    rows(table, op)
        .into_iter()
        .filter(|l| l.contains(needle))
        .collect()
}

#[test]
fn reference_plugin_passes_conformance() {
    let fixture = common::fixtures().join("tiny/qwen2");
    let out = candor(&[
        "devices",
        "--conformance",
        plugins::reference().to_str().unwrap(),
        "--model",
        fixture.to_str().unwrap(),
    ]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}\n{}", text(&out.stderr));
    assert!(table.contains(" 0 FAIL"), "{table}");
    // Every op of the ABI has rows; the deliberately missing ones are reported as such.
    for op in [
        "embedding",
        "rms_norm",
        "add_rms_norm",
        "linear",
        "rope",
        "kv_write",
        "paged_attention",
        "glu",
        "add",
        "mul",
        "scale",
        "softcap",
        "softmax",
        "argmax",
        "cast",
        "heads_linear",
        "layer_norm",
    ] {
        let r = rows(&table, op);
        assert!(!r.is_empty(), "no rows for {op}:\n{table}");
        // Q5_K is the weight type the reference plugin leaves to the CPU.
        let ok = |l: &&str| l.contains(" ok ") || (l.contains("Q5_K") && l.contains("unsupported"));
        assert!(r.iter().all(ok), "{op} not ok:\n{table}");
    }
    // The prefix cache's block copies and a saved prompt cache's rows, read and written back,
    // in an f32 and an f16 cache.
    for moved in ["copied blocks", "blocks restored from their rows"] {
        let r = rows_with(&table, "paged_attention", moved);
        assert!(
            r.len() == 2 && r.iter().all(|l| l.contains(" ok ")),
            "{moved}:\n{table}"
        );
    }
    let gather = rows(&table, "gather_rows");
    assert!(gather.iter().all(|l| l.contains("unsupported")), "{table}");
    let q5k = rows_with(&table, "linear", "Q5_K");
    assert!(
        !q5k.is_empty() && q5k.iter().all(|l| l.contains("unsupported")),
        "{table}"
    );
    // End-to-end rows: the synthetic models and the fixture.
    let models = rows(&table, "model");
    assert!(models.len() >= 5, "{table}");
    assert!(models.iter().all(|l| l.contains(" ok ")), "{table}");
    assert!(models.iter().any(|l| l.contains("tiny/qwen2")), "{table}");
}

#[test]
fn wrong_numbers_are_caught() {
    let out = candor(&[
        "devices",
        "--conformance",
        plugins::variant("fault_wrong_glu").to_str().unwrap(),
    ]);
    let table = text(&out.stdout);
    assert!(!out.status.success(), "a wrong glu passed:\n{table}");
    let glu = rows(&table, "glu");
    assert!(
        !glu.is_empty() && glu.iter().all(|l| l.contains("FAIL") && l.contains("nmse")),
        "{table}"
    );
    // The other ops are still judged on their own merits.
    assert!(
        rows(&table, "rms_norm").iter().all(|l| l.contains(" ok ")),
        "{table}"
    );
    assert!(text(&out.stderr).contains("conformance case(s) failed"));
}

/// A plugin of ABI 1.0 still passes: the cases of 1.1's codes (attention sinks, the clamped
/// SwiGLU, per-head products) and 1.5's (ALiBi, the elementwise ops) are reported as running on the CPU fallback,
/// and MXFP4 products run on it as Q5_0.
#[test]
fn a_plugin_of_abi_1_0_passes_with_1_1_cases_on_the_fallback() {
    let out = candor(&[
        "devices",
        "--conformance",
        plugins::variant("reference_abi_1_0").to_str().unwrap(),
    ]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}\n{}", text(&out.stderr));
    assert!(table.contains(" 0 FAIL"), "{table}");
    let sinks = rows_with(&table, "paged_attention", "sinks");
    let swiglu = rows_with(&table, "glu", "SwigluOai");
    let per_head = rows(&table, "heads_linear");
    let alibi = rows_with(&table, "paged_attention", "alibi");
    let host_ops = ["clamp", "xielu", "quantize_rows", "mul_sigmoid"].map(|op| rows(&table, op));
    for r in [&sinks, &swiglu, &per_head, &alibi]
        .into_iter()
        .chain(&host_ops)
    {
        assert!(
            !r.is_empty() && r.iter().all(|l| l.contains("unsupported")),
            "{table}"
        );
    }
    let mxfp4 = rows_with(&table, "linear", "MXFP4");
    assert!(
        !mxfp4.is_empty() && mxfp4.iter().all(|l| l.contains(" ok ")),
        "{table}"
    );
}

fn generated_ids(backend: &str) -> (Vec<u64>, serde_json::Value, String) {
    generated_ids_of("llama", backend)
}

fn generated_ids_of(model: &str, backend: &str) -> (Vec<u64>, serde_json::Value, String) {
    generated_ids_with(model, backend, &[])
}

/// `generated_ids_of` with `extra` arguments to `candor generate`.
fn generated_ids_with(
    model: &str,
    backend: &str,
    extra: &[&str],
) -> (Vec<u64>, serde_json::Value, String) {
    let fixture = common::fixtures().join("tiny").join(model);
    let mut args = vec![
        "generate",
        "--model",
        fixture.to_str().unwrap(),
        "--offline",
        "--prompt-tokens",
        "1,45,300,7,99,12",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        "--ignore-eos",
        "--format",
        "json",
        "--backend",
        backend,
    ];
    args.extend_from_slice(extra);
    let out = candor(&args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{backend}: {stderr}");
    let last = text(&out.stdout).lines().last().unwrap_or("").to_string();
    let v: serde_json::Value = serde_json::from_str(&last).expect("json line");
    let ids = v["generated_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect();
    (ids, v["fallback_ops"].clone(), stderr)
}

#[test]
fn generate_on_the_reference_plugin_matches_the_cpu() {
    let (cpu, cpu_fallbacks, _) = generated_ids("cpu");
    let plugin = format!("plugin:{}", plugins::reference().display());
    let (on_plugin, fallbacks, stderr) = generated_ids(&plugin);
    assert_eq!(cpu.len(), 12);
    assert_eq!(on_plugin, cpu, "greedy tokens differ");
    assert_eq!(cpu_fallbacks, serde_json::json!({}));
    // gather_rows is left to the CPU by the reference plugin: one per forward with logits.
    assert_eq!(
        fallbacks["gather_rows"],
        serde_json::json!(12),
        "{fallbacks}"
    );
    assert!(
        stderr.contains("ops the plugin lacks (CPU fallback): gather_rows"),
        "{stderr}"
    );
}

/// An f16 KV cache on a plugin that keeps one (ABI 1.1): the same greedy tokens as the CPU's
/// f16 cache (the cache's rounding is the same; the plugin attends over the same values). A
/// 1.0 plugin asked for one by name refuses, saying why.
#[test]
fn an_f16_cache_on_a_plugin_matches_the_cpus() {
    let f16 = ["--kv-cache-dtype", "f16"];
    let (cpu, _, _) = generated_ids_with("gemma3", "cpu", &f16);
    let plugin = format!("plugin:{}", plugins::reference().display());
    let (on_plugin, fallbacks, stderr) = generated_ids_with("gemma3", &plugin, &f16);
    assert_eq!(cpu.len(), 12);
    assert_eq!(on_plugin, cpu, "greedy tokens differ: {stderr}");
    for op in ["kv_write", "paged_attention"] {
        assert!(fallbacks.get(op).is_none(), "{op}: {fallbacks}");
    }
    let older = format!("plugin:{}", plugins::variant("reference_abi_1_0").display());
    let fixture = common::fixtures().join("tiny/gemma3");
    let out = candor(&[
        "generate",
        "--model",
        fixture.to_str().unwrap(),
        "--offline",
        "--prompt-tokens",
        "1,45",
        "--max-tokens",
        "2",
        "--backend",
        &older,
        "--kv-cache-dtype",
        "f16",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("keeps KV caches in f32 only"),
        "{}",
        text(&out.stderr)
    );
}

/// DeepSeek's latent attention and experts on a plugin: with ABI 1.1's per-head products it
/// caches the latent once per token as the CPU does; a 1.0 plugin has none, so there latent
/// attention runs expanded (every head cached). The experts' outputs are added back through
/// host memory. The same greedy tokens everywhere.
#[test]
fn latent_attention_and_experts_on_the_reference_plugin_match_the_cpu() {
    let (cpu, _, _) = generated_ids_of("deepseek_v3", "cpu");
    assert_eq!(cpu.len(), 12);
    for path in [plugins::reference(), plugins::variant("reference_abi_1_0")] {
        let plugin = format!("plugin:{}", path.display());
        let (on_plugin, fallbacks, stderr) = generated_ids_of("deepseek_v3", &plugin);
        assert_eq!(on_plugin, cpu, "{plugin}: greedy tokens differ: {stderr}");
        assert!(fallbacks.get("heads_linear").is_none(), "{fallbacks}");
    }
}

/// Which form latent attention takes on each plugin: the latent once per token where the
/// plugin has per-head products (ABI 1.1), every head expanded where it has not (1.0).
#[test]
fn a_plugin_with_per_head_products_caches_the_latent() {
    use candor::backend::cpu::CpuBackend;
    use candor::backend::plugin::PluginBackend;
    use candor_models::mla::CacheForm;
    let opened =
        candor_models::loader::open_model(&common::fixtures().join("tiny/deepseek_v3"), false)
            .expect("open the fixture");
    let latent = opened
        .spec
        .latent_attention
        .expect("a latent-attention model");
    for (path, form) in [
        (plugins::reference(), CacheForm::Latent),
        (plugins::variant("reference_abi_1_0"), CacheForm::Expanded),
    ] {
        let backend = PluginBackend::load(&path, CpuBackend::new(1)).expect("load the plugin");
        assert_eq!(
            CacheForm::for_backend(&backend, &latent),
            form,
            "{}",
            path.display()
        );
    }
}

/// gpt-oss on a plugin of ABI 1.1: attention with sinks and the clamped SwiGLU run on the
/// plugin (only the reference's deliberately missing gather_rows falls back). The same greedy
/// tokens as the CPU.
#[test]
fn attention_sinks_and_clamped_swiglu_run_on_a_plugin() {
    let (cpu, _, _) = generated_ids_of("gpt_oss", "cpu");
    let plugin = format!("plugin:{}", plugins::reference().display());
    let (on_plugin, fallbacks, stderr) = generated_ids_of("gpt_oss", &plugin);
    assert_eq!(cpu.len(), 12);
    assert_eq!(on_plugin, cpu, "greedy tokens differ: {stderr}");
    let ops: Vec<&str> = fallbacks
        .as_object()
        .expect("fallback counts")
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(ops, ["gather_rows"], "{fallbacks}");
}

/// A plugin written against ABI 1.0 (whose `supports_op` never looked at GLU variants or
/// attention flags) is not asked about 1.1's: gpt-oss's sinks and clamped SwiGLU run on the
/// CPU fallback there (and are counted), with the same greedy tokens; so does BLOOM's ALiBi
/// (1.5).
#[test]
fn a_plugin_of_abi_1_0_runs_gpt_oss_with_the_cpu_fallback() {
    let plugin = format!("plugin:{}", plugins::variant("reference_abi_1_0").display());
    for (model, ops) in [
        ("gpt_oss", &["paged_attention", "glu"][..]),
        ("bloom", &["paged_attention"][..]),
    ] {
        let (cpu, _, _) = generated_ids_of(model, "cpu");
        let (on_plugin, fallbacks, stderr) = generated_ids_of(model, &plugin);
        assert_eq!(on_plugin, cpu, "{model}: greedy tokens differ: {stderr}");
        for op in ops {
            assert!(
                fallbacks[op].as_u64().is_some_and(|n| n > 0),
                "{model} {op}: {fallbacks}"
            );
        }
    }
}

/// Command R7B's parallel LayerNorm blocks, StarCoder2's biased LayerNorms and ungated MLP
/// (its activation as the plugin's GLU over ones), Phi-2's biased parallel blocks and LM head,
/// GPT-NeoX's two-norm parallel blocks (the exact GELU: ABI 1.3), StableLM's SwiGLU under
/// LayerNorms, Nemotron's squared ReLU (ABI 1.3), GPT-2's learned positions and Falcon's
/// two-norm parallel blocks over grouped KV heads on a 1.3 plugin, and Phi-3's q/k/v and
/// gate/up stored joined (given to a plugin, which cannot split a product's outputs, as weights
/// of their own), and Command R+'s and StableLM-2-12B's per-head q/k norms (a LayerNorm of unit
/// weight, then each head's weights tiled by `embedding` and multiplied), StarCoder's
/// multi-query GPT-2 blocks, AFM's ungated squared ReLU under RMSNorms, GPT-J's interleaved
/// partial RoPE in parallel blocks, BitNet's sub-norms, OPT's ReLU (ABI 1.4), BLOOM's and
/// Falcon-RW's ALiBi, MPT's and OLMo's clamp of q/k/v, Apertus's xIELU and BitNet's 8-bit
/// product inputs (ABI 1.5): the same greedy tokens as the CPU's, the norms run by the plugin
/// (only the reference plugin's deliberate gap falls back).
#[test]
fn layer_norm_models_run_on_the_plugin() {
    let plugin = format!("plugin:{}", plugins::reference().display());
    for model in [
        "cohere2",
        "starcoder2",
        "phi",
        "gpt_neox",
        "stablelm",
        "nemotron",
        "gpt2",
        "falcon",
        "phi3",
        "cohere_qk_norm",
        "stablelm_qk_norm",
        "gpt_bigcode",
        "gpt_bigcode_mha",
        "arcee",
        "jais2",
        "gptj",
        "cohere2_moe",
        "cohere2_moe_ln",
        "phimoe",
        "opt",
        "opt_350m",
        "bloom",
        "falcon_rw",
        "mpt",
        "olmo",
        "apertus",
        "bitnet",
    ] {
        let (cpu, _, _) = generated_ids_with(model, "cpu", &[]);
        let (on_plugin, fallbacks, _) = generated_ids_with(model, &plugin, &[]);
        assert_eq!(cpu.len(), 12, "{model}");
        assert_eq!(on_plugin, cpu, "{model}: greedy tokens differ");
        let ops: Vec<&String> = fallbacks.as_object().unwrap().keys().collect();
        assert_eq!(ops, ["gather_rows"], "{model}: {fallbacks}");
    }
    // On a 1.0 plugin the 1.5 ops run on the host, counted.
    let older = format!("plugin:{}", plugins::variant("reference_abi_1_0").display());
    for (model, host_op) in [("apertus", "xielu"), ("bitnet", "quantize_rows")] {
        let (cpu, _, _) = generated_ids_with(model, "cpu", &[]);
        let (on_older, fallbacks, _) = generated_ids_with(model, &older, &[]);
        assert_eq!(on_older, cpu, "{model}: greedy tokens differ");
        assert!(
            fallbacks[host_op].as_u64().is_some_and(|n| n > 0),
            "{model}: {fallbacks}"
        );
    }
}

/// Ministral 3's queries scaled by position (past its tiny original context of 8, which the
/// prompt and its continuation cross) through the plugin's own `mul`: the CPU's greedy
/// tokens, and no fallback but the reference plugin's usual one.
#[test]
fn query_temperatures_run_on_the_plugin() {
    let plugin = format!("plugin:{}", plugins::reference().display());
    let (cpu, _, _) = generated_ids_with("ministral3", "cpu", &[]);
    let (on_plugin, fallbacks, stderr) = generated_ids_with("ministral3", &plugin, &[]);
    assert_eq!(cpu.len(), 12);
    assert_eq!(on_plugin, cpu, "greedy tokens differ: {stderr}");
    let ops: Vec<&String> = fallbacks.as_object().unwrap().keys().collect();
    assert_eq!(ops, ["gather_rows"], "{fallbacks}");
}

/// Llama 4 on a plugin: its chunked attention as pieces of the sequence over the block table's
/// tail (the continuation crosses the tiny model's chunk of 16), its NoPE layer's query
/// temperatures, its weightless q/k norms and its experts' scaled inputs; and Mistral 4's
/// temperatures on latent attention's queries. All through ABI ops: the CPU's greedy tokens,
/// and no fallback but the reference plugin's usual one.
#[test]
fn llama4_and_mistral4_run_on_the_plugin() {
    let plugin = format!("plugin:{}", plugins::reference().display());
    for model in ["llama4", "mistral4"] {
        let (cpu, _, _) = generated_ids_with(model, "cpu", &[]);
        let (on_plugin, fallbacks, stderr) = generated_ids_with(model, &plugin, &[]);
        assert_eq!(cpu.len(), 12);
        assert_eq!(on_plugin, cpu, "{model}: greedy tokens differ: {stderr}");
        let ops: Vec<&String> = fallbacks.as_object().unwrap().keys().collect();
        assert_eq!(ops, ["gather_rows"], "{model}: {fallbacks}");
    }
}

/// AFMoE's attention gate, a product of its own, on a plugin (the gate's sigmoid by its
/// `mul_sigmoid`, ABI 1.5), its sandwich norms, windows and sigmoid-routed experts there too:
/// the CPU's greedy tokens, no fallback but the reference plugin's usual one.
#[test]
fn gated_attention_of_its_own_product_runs_on_the_plugin() {
    let plugin = format!("plugin:{}", plugins::reference().display());
    let (cpu, _, _) = generated_ids_with("afmoe", "cpu", &[]);
    let (on_plugin, fallbacks, stderr) = generated_ids_with("afmoe", &plugin, &[]);
    assert_eq!(cpu.len(), 12);
    assert_eq!(on_plugin, cpu, "greedy tokens differ: {stderr}");
    let ops: Vec<&String> = fallbacks.as_object().unwrap().keys().collect();
    assert_eq!(ops, ["gather_rows"], "{fallbacks}");
}

/// Qwen3-Next's, Qwen3.5's and OLMo Hybrid's gated DeltaNet layers and Granite 4.0-H's Mamba-2 layers on a
/// plugin: their products on the plugin, the convolution, recurrence and gated norm on the
/// host over the products read back (as on every backend), Qwen3-Next's attention output gate
/// by the plugin's `mul_sigmoid` (ABI 1.5). The CPU's greedy tokens.
#[test]
fn recurrent_models_run_on_the_plugin() {
    let plugin = format!("plugin:{}", plugins::reference().display());
    for (model, host_ops) in [
        ("qwen3_next", &["gather_rows"][..]),
        ("qwen3_5", &["gather_rows"]),
        ("granitemoehybrid", &["gather_rows"]),
        ("nemotron_h_moe", &["gather_rows"]),
        ("kimi_linear", &["gather_rows"]),
        ("mamba2", &["gather_rows"]),
        ("bamba", &["gather_rows"]),
        ("falcon_mamba", &["gather_rows"]),
        ("jamba", &["gather_rows"]),
        ("falcon_h1", &["gather_rows"]),
        ("olmo_hybrid", &["gather_rows"]),
    ] {
        let (cpu, _, _) = generated_ids_with(model, "cpu", &[]);
        let (on_plugin, fallbacks, stderr) = generated_ids_with(model, &plugin, &[]);
        assert_eq!(cpu.len(), 12);
        assert_eq!(on_plugin, cpu, "{model}: greedy tokens differ: {stderr}");
        let ops: Vec<&String> = fallbacks.as_object().unwrap().keys().collect();
        assert_eq!(ops, host_ops, "{model}: {fallbacks}");
    }
}

/// LFM2's short convolutions on a plugin: the inputs written through the plugin's `kv_write`,
/// the taps read back through its `read_kv_rows` and convolved on the host (no ABI op: counted
/// as `short_conv` fallbacks), the attention layers on the plugin; LFM2-MoE's experts too.
/// The CPU's greedy tokens.
#[test]
fn short_convolution_models_run_on_the_plugin() {
    let plugin = format!("plugin:{}", plugins::reference().display());
    for model in ["lfm2", "lfm2_moe"] {
        let (cpu, _, _) = generated_ids_with(model, "cpu", &[]);
        let (on_plugin, fallbacks, stderr) = generated_ids_with(model, &plugin, &[]);
        assert_eq!(cpu.len(), 12);
        assert_eq!(on_plugin, cpu, "{model}: greedy tokens differ: {stderr}");
        let ops: Vec<&String> = fallbacks.as_object().unwrap().keys().collect();
        assert_eq!(ops, ["gather_rows", "short_conv"], "{model}: {fallbacks}");
    }
}
