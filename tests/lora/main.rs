//! LoRA adapters served unmerged: a sequence running with an adapter gets exactly the logits of
//! the model whose weights are `W + (alpha / r)·B·A` (the merge written out and loaded as a model
//! of its own), whatever else shares its batch; adapters read from PEFT directories and from
//! llama.cpp GGUF files agree; and over HTTP an adapter is a model of its own.
mod bench;
#[path = "../common/mod.rs"]
mod common;
mod files;
mod http;

use candor::backend::BackendChoice;
use candor::engine::load::{runner_for, KvCacheDtype, LoadOptions};
use candor::engine::{BlockManager, BlockTable, Logits, Runner};
use candor_models::loader::open_model;
use candor_models::lora::{read_adapter, LoraAdapter, LoraMix};
use candor_models::{Batch, LogitsWanted, SeqInput};
use common::*;
use files::*;
use std::path::Path;

/// CPU load options with `lora` attached and room for `kv_tokens`.
fn cpu_options(lora: Vec<LoraAdapter>, kv_tokens: usize) -> LoadOptions {
    LoadOptions {
        dequantize: false,
        threads: 2,
        kv_tokens,
        backend: BackendChoice::Cpu,
        kv_cache_dtype: KvCacheDtype::Auto,
        op_profiler: None,
        lora,
        classifier_tokens: Vec::new(),
    }
}

fn runner(model: &Path, lora: Vec<LoraAdapter>) -> Box<dyn Runner> {
    let opened = open_model(model, false).expect("open model");
    runner_for(&opened, &cpu_options(lora, 1024)).expect("build runner")
}

const PROMPT: [u32; 7] = [1, 17, 230, 5, 99, 411, 3];
const NEXT: u32 = 42;

/// Every row's logits of each sequence: the prompt in one step (all rows), then one more token;
/// the sequences run together, sequence `i` with `adapters[i]` (a slot, or None for the base
/// model).
fn run(r: &mut dyn Runner, adapters: &[Option<u32>]) -> Vec<Vec<Vec<f32>>> {
    let mixes: Vec<LoraMix> = adapters.iter().map(|&a| LoraMix::of(a)).collect();
    run_mixes(r, &mixes)
}

/// `run` with each sequence's adapters and scales.
fn run_mixes(r: &mut dyn Runner, adapters: &[LoraMix]) -> Vec<Vec<Vec<f32>>> {
    let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
    let tables: Vec<BlockTable> = adapters
        .iter()
        .map(|_| {
            let mut t = BlockTable::default();
            bm.ensure(&mut t, PROMPT.len() + 1).unwrap();
            t
        })
        .collect();
    let step = |r: &mut dyn Runner, tokens: &[u32], start: usize| -> Logits {
        let seqs = adapters
            .iter()
            .zip(&tables)
            .map(|(mix, t)| SeqInput {
                state_slot: 0,
                tokens: tokens.to_vec(),
                start_pos: start,
                block_table: t.ids.clone(),
                logits: LogitsWanted::All,
                lora: mix.clone(),
            })
            .collect();
        r.forward(&Batch { seqs }).expect("forward")
    };
    let prompt = step(r, &PROMPT, 0);
    let next = step(r, &[NEXT], PROMPT.len());
    (0..adapters.len())
        .map(|s| {
            let mut rows: Vec<Vec<f32>> = (0..PROMPT.len())
                .map(|i| prompt.row(s * PROMPT.len() + i).to_vec())
                .collect();
            rows.push(next.row(s).to_vec());
            rows
        })
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| max_abs_diff(x, y))
        .fold(0.0, f32::max)
}

const TOL: f32 = 1e-3;

#[test]
fn each_sequence_gets_its_adapters_merged_weights_in_a_mixed_batch() {
    let q_and_v: &[&'static str] = &["self_attn.q_proj", "self_attn.v_proj"];
    // Phi-3's adapters update its joined groups (split into their members when loaded).
    let phi3_small: &[&'static str] = &["self_attn.qkv_proj"];
    for (arch, every_module, small) in [
        ("llama", &ALL_MODULES[..], q_and_v),
        ("qwen2", &ALL_MODULES[..], q_and_v),
        ("qwen3", &ALL_MODULES[..], q_and_v),
        ("gemma3", &ALL_MODULES[..], q_and_v),
        ("phi3", &PHI3_MODULES[..], phi3_small),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let base = fixtures().join("tiny").join(arch);
        // One adapter on every projection, one on q and v alone (PEFT's default targets), at
        // other ranks and scales.
        let every = Lora::random(&base, every_module, 4, 8.0, 1);
        let qv = Lora::random(&base, small, 2, 32.0, 2);
        let every_dir = every.write_peft(&dir.path().join("every"));
        let qv_dir = qv.write_peft(&dir.path().join("qv"));
        let adapters = vec![
            read_adapter(&every_dir).expect("read PEFT adapter"),
            read_adapter(&qv_dir).expect("read PEFT adapter"),
        ];
        let mixed = run(
            runner(&base, adapters).as_mut(),
            &[None, Some(0), Some(1), Some(0)],
        );
        let alone = |model: &Path| run(runner(model, vec![]).as_mut(), &[None]).remove(0);
        let plain = alone(&base);
        let merged_every = alone(&every.write_merged(&base, &dir.path().join("m-every")));
        let merged_qv = alone(&qv.write_merged(&base, &dir.path().join("m-qv")));
        for (seq, expected, what) in [
            (0, &plain, "the base model"),
            (1, &merged_every, "the every-projection adapter"),
            (2, &merged_qv, "the q/v adapter"),
            (3, &merged_every, "the every-projection adapter, again"),
        ] {
            let d = max_diff(&mixed[seq], expected);
            assert!(d < TOL, "{arch}: sequence {seq} ({what}) is off by {d}");
        }
        // The adapters change the answer (the comparison above could not pass by accident).
        assert!(max_diff(&merged_every, &plain) > 100.0 * TOL, "{arch}");
        assert!(max_diff(&merged_qv, &plain) > 100.0 * TOL, "{arch}");
    }
}

#[test]
fn adapters_at_scales_give_the_model_merged_at_those_scales() {
    // llama-server's `lora` list: each adapter's update times its scale, several adapters in
    // one sequence, beside sequences of the base model and of one adapter alone.
    let dir = tempfile::tempdir().unwrap();
    let base = fixtures().join("tiny").join("qwen3");
    let every = Lora::random(&base, &ALL_MODULES, 4, 8.0, 8);
    let qv = Lora::random(&base, &["self_attn.q_proj", "self_attn.v_proj"], 2, 32.0, 9);
    let adapters = vec![
        read_adapter(&every.write_peft(&dir.path().join("every"))).unwrap(),
        read_adapter(&qv.write_peft(&dir.path().join("qv"))).unwrap(),
    ];
    let half = LoraMix::scaled([(0, 0.5)]);
    let blend = LoraMix::scaled([(0, -0.75), (1, 1.5)]);
    let out = run_mixes(
        runner(&base, adapters).as_mut(),
        &[half, LoraMix::BASE, blend, LoraMix::one(1)],
    );
    let alone = |model: &Path| run(runner(model, vec![]).as_mut(), &[None]).remove(0);
    let merged =
        |lora: &Lora, from: &Path, name: &str| lora.write_merged(from, &dir.path().join(name));
    let plain = alone(&base);
    let merged_half = alone(&merged(&every.scaled(0.5), &base, "half"));
    let blend_first = merged(&every.scaled(-0.75), &base, "blend-first");
    let merged_blend = alone(&merged(&qv.scaled(1.5), &blend_first, "blend"));
    let merged_qv = alone(&merged(&qv, &base, "qv-merged"));
    for (seq, expected, what) in [
        (0, &merged_half, "the adapter at half its scale"),
        (1, &plain, "the base model"),
        (2, &merged_blend, "two adapters at -0.75 and 1.5"),
        (3, &merged_qv, "the q/v adapter at its own scale"),
    ] {
        let d = max_diff(&out[seq], expected);
        assert!(d < TOL, "sequence {seq} ({what}) is off by {d}");
    }
    let full = alone(&merged(&every, &base, "every-merged"));
    assert!(
        max_diff(&merged_half, &full) > 100.0 * TOL,
        "the scale matters"
    );
    assert!(max_diff(&merged_blend, &plain) > 100.0 * TOL);
}

#[test]
fn a_half_precision_adapter_gives_the_model_merged_from_its_values() {
    // Shipped in f16 or bf16, an adapter is kept in its type on the device (half the bytes a
    // decode step reads) and gives the model merged from its values.
    for dtype in [candle_core::DType::F16, candle_core::DType::BF16] {
        let dir = tempfile::tempdir().unwrap();
        let base = fixtures().join("tiny").join("qwen3");
        let lora = Lora::random(&base, &ALL_MODULES, 4, 8.0, 6).rounded_to(dtype);
        let adapter = read_adapter(&lora.write_peft(&dir.path().join("half"))).unwrap();
        let out = run(runner(&base, vec![adapter]).as_mut(), &[Some(0), None]);
        let merged = lora.write_merged(&base, &dir.path().join("merged"));
        let expected = run(runner(&merged, vec![]).as_mut(), &[None]).remove(0);
        let d = max_diff(&out[0], &expected);
        assert!(d < TOL, "{dtype:?}: off by {d}");
    }
}

#[test]
fn a_llama_cpp_gguf_adapter_equals_its_peft_original() {
    // llama.cpp's converter permutes llama's q/k rows for its interleaved RoPE, in the model
    // and in the adapter alike: candor puts them back for a Hugging Face base model.
    for arch in ["llama", "qwen2"] {
        let dir = tempfile::tempdir().unwrap();
        let base = fixtures().join("tiny").join(arch);
        let lora = Lora::random(&base, &ALL_MODULES, 4, 8.0, 3);
        let peft = read_adapter(&lora.write_peft(&dir.path().join("peft"))).unwrap();
        let gguf = read_adapter(&lora.write_gguf(&base, arch, &dir.path().join("a.gguf")))
            .expect("read GGUF adapter");
        let out = run(
            runner(&base, vec![peft, gguf]).as_mut(),
            &[Some(0), Some(1)],
        );
        let d = max_diff(&out[0], &out[1]);
        assert!(d < TOL, "{arch}: GGUF and PEFT adapters differ by {d}");
    }
}

#[test]
fn adapters_that_do_not_fit_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let llama = fixtures().join("tiny").join("llama");
    let gemma = fixtures().join("tiny").join("gemma3");
    // gemma3's heads are twice as wide: its q update does not fit llama's q.
    let other = Lora::random(&gemma, &["self_attn.q_proj"], 2, 4.0, 4);
    let adapter = read_adapter(&other.write_peft(&dir.path().join("gemma"))).unwrap();
    let opened = open_model(&llama, false).unwrap();
    let err = runner_for(&opened, &cpu_options(vec![adapter], 256))
        .err()
        .expect("a misfit adapter is refused")
        .to_string();
    assert!(err.contains("blk.0.attn_q"), "{err}");

    // LayerNorm models (Cohere's and Phi's parallel blocks, StarCoder2's, StableLM's and Nemotron's) run their blocks unfused,
    // where no update is added, and LFM2's convolution layers have no projections an adapter
    // names: an adapter for them is refused, not ignored.
    for (arch, kind) in [
        ("cohere2", "LayerNorm"),
        ("starcoder2", "LayerNorm"),
        ("phi", "LayerNorm"),
        ("stablelm", "LayerNorm"),
        ("nemotron", "LayerNorm"),
        ("lfm2", "short-convolution"),
    ] {
        let base = fixtures().join("tiny").join(arch);
        let lora = Lora::random(&base, &["self_attn.q_proj"], 2, 4.0, 5);
        let adapter = read_adapter(&lora.write_peft(&dir.path().join(arch))).unwrap();
        let opened = open_model(&base, false).unwrap();
        let err = runner_for(&opened, &cpu_options(vec![adapter], 256))
            .err()
            .expect("an adapter on an unfused or convolution model is refused")
            .to_string();
        assert!(err.contains(kind), "{arch}: {err}");
    }

    // A PEFT directory that is not LoRA, or replaces whole modules, says so.
    let peft = other.write_peft(&dir.path().join("dora"));
    let config = peft.join("adapter_config.json");
    std::fs::write(
        &config,
        r#"{"peft_type": "LORA", "r": 2, "use_dora": true}"#,
    )
    .unwrap();
    let err = read_adapter(&peft).unwrap_err().to_string();
    assert!(err.contains("DoRA"), "{err}");
    std::fs::write(&config, r#"{"r": 2, "modules_to_save": ["lm_head"]}"#).unwrap();
    let err = read_adapter(&peft).unwrap_err().to_string();
    assert!(err.contains("modules_to_save"), "{err}");
    // A model file is not an adapter.
    let gguf = dir.path().join("model.gguf");
    other.write_gguf_as(&gemma, "gemma3", &gguf, "model");
    let err = read_adapter(&gguf).unwrap_err().to_string();
    assert!(err.contains("not `adapter`"), "{err}");
}
