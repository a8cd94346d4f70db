//! Tiny random models of each architecture against Hugging Face transformers (f32, eager):
//! full-sequence logits, greedy decoding through the paged KV cache, decode-step logits, and the
//! same through one batched forward mixing sequences of different lengths.
mod common;

use candor::engine::load::{cpu_runner, KvCacheDtype};
use candor::engine::sampler::argmax;
use candor::engine::{BlockManager, BlockTable, Logits, Runner};
use candor_models::loader::open_model;
use candor_models::{Batch, LogitsWanted, SeqInput};
use common::*;

const ARCHS: [&str; 114] = TINY_ARCHS;
const TOL: f32 = 1e-4;

struct Golden {
    input_ids: Vec<u32>,
    positions: Vec<usize>,
    logits: serde_json::Value,
    greedy: Vec<u32>,
    decode_steps: Vec<serde_json::Value>,
}

fn golden(arch: &str) -> Golden {
    let g = read_json(&fixtures().join("tiny").join(arch).join("golden.json"));
    let f = &g["float32"];
    Golden {
        input_ids: as_u32s(&g["input_ids"]),
        positions: as_u32s(&g["positions"])
            .into_iter()
            .map(|p| p as usize)
            .collect(),
        logits: f["logits"].clone(),
        greedy: as_u32s(&f["greedy_tokens"]),
        decode_steps: f["decode_steps"].as_array().expect("decode_steps").clone(),
    }
}

fn runner(arch: &str) -> Box<dyn Runner> {
    runner_of(&fixtures().join("tiny").join(arch))
}

fn runner_of(model: &std::path::Path) -> Box<dyn Runner> {
    let opened = open_model(model, false).expect("open tiny model");
    let kv = KvCacheDtype::Auto
        .resolve(&opened, false)
        .expect("KV dtype");
    cpu_runner(&opened, 2, 4096, kv).expect("build runner")
}

fn golden_logits(g: &Golden, pos: usize) -> Vec<f32> {
    as_f32s(&g.logits[pos.to_string()])
}

/// One forward pass of the golden input on a fresh runner, asking for `wanted`.
fn whole_input(arch: &str, g: &Golden, wanted: LogitsWanted) -> Logits {
    whole_input_on(runner(arch), g, wanted)
}

fn whole_input_on(mut r: Box<dyn Runner>, g: &Golden, wanted: LogitsWanted) -> Logits {
    let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
    let mut table = BlockTable::default();
    bm.ensure(&mut table, g.input_ids.len()).unwrap();
    let batch = Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: g.input_ids.clone(),
            start_pos: 0,
            block_table: table.ids,
            logits: wanted,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    r.forward(&batch).unwrap()
}

#[test]
fn full_sequence_logits_match_transformers() {
    for arch in ARCHS {
        let g = golden(arch);
        let out = whole_input(arch, &g, LogitsWanted::All);
        assert_eq!(out.rows(), g.input_ids.len());
        for &p in &g.positions {
            let d = max_abs_diff(out.row(p), &golden_logits(&g, p));
            assert!(d < TOL, "{arch}: position {p} logits differ by {d}");
        }
    }
}

#[test]
fn greedy_decoding_through_the_kv_cache_matches() {
    for arch in ARCHS {
        decode_through_the_cache(arch, 0);
    }
}

/// Every decode step verifies two wrong drafts after its token, as a speculative step whose
/// drafts are all rejected: the drafts' keys (and LFM2's convolution inputs) are written past
/// the sequence and overwritten by the next step. The token's logits and the greedy tokens stay
/// transformers'.
#[test]
fn rejected_drafts_leave_no_trace() {
    for arch in ARCHS {
        // A recurrent state keeps what a step ran, drafts included: the engine drafts
        // nothing for such models (`scheduler::for_model`).
        if runner(arch).spec().keeps_sequence_state() {
            continue;
        }
        decode_through_the_cache(arch, 2);
    }
}

/// The golden prompt, then greedy decoding one token a step (with `drafts` wrong tokens after
/// it in each step, whose rows are not read): each step's top logits and the greedy tokens are
/// transformers'.
fn decode_through_the_cache(arch: &str, drafts: u32) {
    let g = golden(arch);
    let mut r = runner(arch);
    let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
    let mut table = BlockTable::default();
    let mut tokens = g.input_ids.clone();
    bm.ensure(&mut table, tokens.len()).unwrap();
    let seq = |tokens: Vec<u32>, start_pos: usize, table: &BlockTable, logits| SeqInput {
        state_slot: 0,
        tokens,
        start_pos,
        block_table: table.ids.clone(),
        logits,
        lora: candor_models::lora::LoraMix::BASE,
    };
    let batch = Batch {
        seqs: vec![seq(tokens.clone(), 0, &table, LogitsWanted::Last)],
    };
    let mut row = r.forward(&batch).unwrap().row(0).to_vec();
    let vocab = row.len() as u32;
    let mut generated = Vec::new();
    for (step, want) in g.decode_steps.iter().enumerate() {
        let top_ids = as_u32s(&want["top_ids"]);
        for (id, l) in top_ids.iter().zip(as_f32s(&want["top_logits"])) {
            let d = (row[*id as usize] - l).abs();
            assert!(
                d < TOL,
                "{arch}: decode step {step}, token {id}: logit differs by {d}"
            );
        }
        let next = argmax(&row);
        generated.push(next);
        tokens.push(next);
        let wrong = (1..=drafts).map(|i| (next + 6 * i - 5) % vocab);
        let step_tokens: Vec<u32> = std::iter::once(next).chain(wrong).collect();
        bm.ensure(&mut table, tokens.len() + drafts as usize)
            .unwrap();
        let logits = match drafts {
            0 => LogitsWanted::Last,
            _ => LogitsWanted::All,
        };
        let batch = Batch {
            seqs: vec![seq(step_tokens, tokens.len() - 1, &table, logits)],
        };
        row = r.forward(&batch).unwrap().row(0).to_vec();
    }
    assert_eq!(generated, g.greedy, "{arch}: greedy tokens");
}

#[test]
fn batched_variable_length_forward_matches() {
    for arch in ARCHS {
        let g = golden(arch);
        let ids = &g.input_ids;
        let mut r = runner(arch);
        let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
        let (mut ta, mut tb, mut tc) = (
            BlockTable::default(),
            BlockTable::default(),
            BlockTable::default(),
        );
        // Step 1: two prefills of different lengths (A: 20 tokens, B: 7 tokens).
        bm.ensure(&mut tc, 3).unwrap(); // interleave allocations so tables are not contiguous
        bm.ensure(&mut ta, 20).unwrap();
        bm.ensure(&mut tb, 7).unwrap();
        let step1 = Batch {
            seqs: vec![
                SeqInput {
                    state_slot: 0,
                    tokens: ids[..20].to_vec(),
                    start_pos: 0,
                    block_table: ta.ids.clone(),
                    logits: LogitsWanted::All,
                    lora: candor_models::lora::LoraMix::BASE,
                },
                SeqInput {
                    state_slot: 1,
                    tokens: ids[..7].to_vec(),
                    start_pos: 0,
                    block_table: tb.ids.clone(),
                    logits: LogitsWanted::None,
                    lora: candor_models::lora::LoraMix::BASE,
                },
            ],
        };
        let out = r.forward(&step1).unwrap();
        assert_eq!(out.rows(), 20);
        for p in 0..20 {
            if g.positions.contains(&p) {
                let d = max_abs_diff(out.row(p), &golden_logits(&g, p));
                assert!(d < TOL, "{arch}: step 1 seq A position {p}: {d}");
            }
        }
        // Step 2, one call: A decodes one token, B continues its prefill to 33, C prefills 40.
        bm.ensure(&mut ta, 21).unwrap();
        bm.ensure(&mut tb, 33).unwrap();
        bm.ensure(&mut tc, 40).unwrap();
        let step2 = Batch {
            seqs: vec![
                SeqInput {
                    state_slot: 0,
                    tokens: vec![ids[20]],
                    start_pos: 20,
                    block_table: ta.ids.clone(),
                    logits: LogitsWanted::Last,
                    lora: candor_models::lora::LoraMix::BASE,
                },
                SeqInput {
                    state_slot: 1,
                    tokens: ids[7..33].to_vec(),
                    start_pos: 7,
                    block_table: tb.ids.clone(),
                    logits: LogitsWanted::All,
                    lora: candor_models::lora::LoraMix::BASE,
                },
                SeqInput {
                    state_slot: 2,
                    tokens: ids.to_vec(),
                    start_pos: 0,
                    block_table: tc.ids.clone(),
                    logits: LogitsWanted::All,
                    lora: candor_models::lora::LoraMix::BASE,
                },
            ],
        };
        let out = r.forward(&step2).unwrap();
        assert_eq!(out.rows(), 1 + 26 + 40);
        let check = |row: usize, pos: usize, what: &str| {
            if g.positions.contains(&pos) {
                let d = max_abs_diff(out.row(row), &golden_logits(&g, pos));
                assert!(d < TOL, "{arch}: step 2 {what} position {pos}: {d}");
            }
        };
        check(0, 20, "A");
        for (i, pos) in (7..33).enumerate() {
            check(1 + i, pos, "B");
        }
        for pos in 0..40 {
            check(27 + pos, pos, "C");
        }
        // The argmax at every position of C agrees with transformers' prefill argmax.
        let gj = read_json(&fixtures().join("tiny").join(arch).join("golden.json"));
        let want = as_u32s(&gj["float32"]["prefill_argmax"]);
        let got: Vec<u32> = (0..40).map(|p| argmax(out.row(27 + p))).collect();
        assert_eq!(
            got, want,
            "{arch}: prefill argmax of the batched sequence C"
        );
    }
}

/// The output projection of a tiny model as rows of f32 (`lm_head.weight`, GPT-NeoX's
/// `embed_out.weight`, or the token embedding where the model ties them: GPT-2's `wte`,
/// Falcon's `word_embeddings`, Mamba's `embeddings`, a vision-language checkout's text
/// model's), the hidden size, and the head's bias (zeros where it has none).
fn output_rows(arch: &str) -> (Vec<f32>, usize, Vec<f32>) {
    let bytes = std::fs::read(fixtures().join("tiny").join(arch).join("model.safetensors"))
        .expect("read weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let w = st
        .tensor("lm_head.weight")
        .or_else(|_| st.tensor("embed_out.weight"))
        .or_else(|_| st.tensor("transformer.wte.weight"))
        .or_else(|_| st.tensor("transformer.word_embeddings.weight"))
        .or_else(|_| st.tensor("model.embed_tokens.weight"))
        .or_else(|_| st.tensor("model.decoder.embed_tokens.weight"))
        // Mamba's `backbone`.
        .or_else(|_| st.tensor("backbone.embeddings.weight"))
        // Vision-language checkouts keep the text model under `language_model`.
        .or_else(|_| st.tensor("language_model.lm_head.weight"))
        .or_else(|_| st.tensor("language_model.model.embed_tokens.weight"))
        .expect("output weights");
    let f32s = |t: &safetensors::tensor::TensorView<'_>| -> Vec<f32> {
        assert_eq!(t.dtype(), safetensors::Dtype::F32);
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let bias = match st.tensor("lm_head.bias") {
        Ok(b) => f32s(&b),
        Err(_) => vec![0.0; w.shape()[0]],
    };
    (f32s(&w), w.shape()[1], bias)
}

#[test]
fn final_hidden_states_give_transformers_logits_through_the_output_weights() {
    // What `/v1/embeddings` pools: the final hidden states (after the final norm). Multiplied
    // by the output weights here, outside the model, they must give transformers' logits.
    for arch in ARCHS {
        let g = golden(arch);
        let out = whole_input(arch, &g, LogitsWanted::HiddenAll);
        assert_eq!(out.rows(), 0, "{arch}: no logits were asked for");
        let (w, hidden, bias) = output_rows(arch);
        assert_eq!(out.hidden_size, hidden, "{arch}");
        // Gemma 2 caps its logits after the product: cap × tanh(logit / cap); Granite divides
        // them by its `logits_scaling`, Cohere and Falcon-H1 multiply them by their
        // `logit_scale` / `lm_head_multiplier`; MiniCPM divides them by hidden_size /
        // dim_model_base.
        let cfg = read_json(&fixtures().join("tiny").join(arch).join("config.json"));
        let cap = cfg["final_logit_softcapping"].as_f64().map(|c| c as f32);
        let divisor = cfg["logits_scaling"].as_f64().unwrap_or(1.0) as f32
            / cfg["logit_scale"].as_f64().unwrap_or(1.0) as f32
            / cfg["lm_head_multiplier"].as_f64().unwrap_or(1.0) as f32
            * cfg["dim_model_base"]
                .as_f64()
                .map_or(1.0, |base| (hidden as f64 / base) as f32);
        for &p in &g.positions {
            let h = out.hidden_row(p);
            // Phi adds a bias to its head's products.
            let logits: Vec<f32> = w
                .chunks_exact(hidden)
                .zip(&bias)
                .map(|(row, b)| (row.iter().zip(h).map(|(a, x)| a * x).sum::<f32>() + b) / divisor)
                .map(|l| cap.map_or(l, |c| c * (l / c).tanh()))
                .collect();
            let d = max_abs_diff(&logits, &golden_logits(&g, p));
            assert!(
                d < TOL,
                "{arch}: position {p} logits from hidden states differ by {d}"
            );
        }
    }
}

/// The prefix cache's copies of partly shared blocks (a finished sequence's kept tail, a full
/// block a prompt leaves before its end) hold every layer's K/V as computed, in every
/// architecture (sliding windows, latent attention, sinks).
#[test]
fn prompts_continued_from_copied_blocks_match_the_whole_computation() {
    for arch in ARCHS {
        let g = golden(arch);
        let whole = whole_input(arch, &g, LogitsWanted::All);
        prefix_copy::check(arch, runner(arch), &g.input_ids, &whole, TOL);
    }
}

/// Every fixture a test reads is in the repository: a generated file that `.gitignore`
/// matches (the `*.gguf` rule once hid three) is there in this checkout but not in CI's clean
/// clone. Checked where the checkout is a git work tree with git at hand.
#[test]
fn no_fixture_is_left_out_of_the_repository() {
    let root = env!("CARGO_MANIFEST_DIR");
    let listed = std::process::Command::new("git")
        .args([
            "-C",
            root,
            "ls-files",
            "--others",
            "--ignored",
            "--exclude-standard",
        ])
        .args(["--", "tests/fixtures"])
        .output();
    let Ok(out) = listed else {
        return;
    };
    if !out.status.success() {
        return;
    }
    let ignored: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("__pycache__"))
        .map(str::to_string)
        .collect();
    assert!(
        ignored.is_empty(),
        "fixtures ignored by .gitignore: {ignored:?}"
    );
}

/// A model whose positions are a learned table refuses a batch that reaches past it, by name,
/// rather than reading past the table: GPT-2's 256 positions here, and OPT's 256 (its table's
/// 258 rows less the two before position 0).
#[test]
fn positions_past_a_learned_table_are_refused() {
    for arch in ["gpt2", "opt"] {
        positions_past_the_table_are_refused(arch);
    }
}

fn positions_past_the_table_are_refused(arch: &str) {
    let mut r = runner(arch);
    let mut bm = BlockManager::new(r.num_blocks(), r.block_size(), false);
    let mut table = BlockTable::default();
    bm.ensure(&mut table, 260).unwrap();
    let batch = |start_pos: usize, n: u32| Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens: (3..3 + n).collect(),
            start_pos,
            block_table: table.ids.clone(),
            logits: LogitsWanted::Last,
            lora: candor_models::lora::LoraMix::BASE,
        }],
    };
    assert!(
        r.forward(&batch(250, 6)).is_ok(),
        "{arch}: positions 250..256 fit"
    );
    let Err(err) = r.forward(&batch(252, 6)) else {
        panic!("{arch}: positions 252..258 do not fit");
    };
    assert!(
        err.to_string().contains("learned positions"),
        "{arch}: {err}"
    );
}

/// A config.json as transformers 4 and NVIDIA's own code write Nemotron-H's (`time_step_limit:
/// [0.0, Infinity]`, Python's constant bare) loads, and runs as the transformers 5 save of it
/// (`{"__float__": "Infinity"}`) does.
#[test]
fn python_constants_in_a_config_load() {
    let src = fixtures().join("tiny").join("nemotron_h");
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.safetensors", "golden.json"] {
        std::fs::copy(src.join(file), dir.path().join(file)).unwrap();
    }
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    let bare = config.replace(
        r#"{
      "__float__": "Infinity"
    }"#,
        "Infinity",
    );
    assert!(
        bare.contains("Infinity\n") && !bare.contains("__float__"),
        "{bare}"
    );
    std::fs::write(dir.path().join("config.json"), bare).unwrap();
    let g = golden("nemotron_h");
    let out = whole_input_on(runner_of(dir.path()), &g, LogitsWanted::All);
    let p = g.positions[0];
    let d = max_abs_diff(out.row(p), &golden_logits(&g, p));
    assert!(d < TOL, "position {p} logits differ by {d}");
}
