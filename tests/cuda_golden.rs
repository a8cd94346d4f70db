//! The golden checks on a GPU: the tiny models of every architecture in f32 on the CUDA backend
//! against Hugging Face transformers (logits within 1e-3, greedy tokens exact), and a dummy model
//! giving the same logits on the GPU as on the CPU, and a bf16 model decoding (several sequences
//! at once) as it computes the same tokens as a prompt, and LoRA adapters in a mixed batch
//! giving the CPU's logits, and the BERT-style encoders against their goldens. Skipped, saying
//! why, without a GPU.
#![cfg(feature = "cuda")]
mod common;
// Only its PEFT writer is used here.
#[allow(dead_code)]
#[path = "lora/files.rs"]
mod lora_files;

use candor::backend::cpu::KvDtype;
use candor::engine::load::{cpu_runner, cuda_runner};
use candor::engine::sampler::argmax;
use candor_models::backend::WeightDtype;
use candor_models::dummy::{find, open_dummy};
use candor_models::loader::open_model;
use candor_models::lora::LoraMix;
use candor_models::{Batch, LogitsWanted, SeqInput};
use common::*;

const ARCHS: [&str; 114] = TINY_ARCHS;
const TOL: f32 = 1e-3;

fn have_gpu() -> bool {
    gpu::gpus_or_skip().is_some()
}

/// One sequence in blocks 0, 1, 2...: enough for `len` tokens.
fn seq(tokens: Vec<u32>, start_pos: usize, len: usize, logits: LogitsWanted) -> Batch {
    Batch {
        seqs: vec![SeqInput {
            state_slot: 0,
            tokens,
            start_pos,
            block_table: (0..len.div_ceil(16) as u32).collect(),
            logits,
            lora: LoraMix::BASE,
        }],
    }
}

#[test]
fn tiny_models_match_transformers_on_the_gpu() {
    if !have_gpu() {
        return;
    }
    for arch in ARCHS {
        let g = read_json(&fixtures().join("tiny").join(arch).join("golden.json"));
        let ids = as_u32s(&g["input_ids"]);
        let f = &g["float32"];
        let opened = open_model(&fixtures().join("tiny").join(arch), false).unwrap();
        let mut r = cuda_runner(&opened, 0, 4096).unwrap();
        let out = r
            .forward(&seq(ids.clone(), 0, ids.len() + 64, LogitsWanted::All))
            .unwrap();
        for p in as_u32s(&g["positions"]) {
            let want = as_f32s(&f["logits"][p.to_string()]);
            let d = max_abs_diff(out.row(p as usize), &want);
            assert!(d < TOL, "{arch}: position {p} logits differ by {d}");
        }
        // Greedy decoding through the paged KV cache.
        let greedy = as_u32s(&f["greedy_tokens"]);
        let mut tokens = ids.clone();
        let mut next = argmax(out.row(ids.len() - 1));
        let mut generated = Vec::new();
        for _ in 0..greedy.len() {
            generated.push(next);
            tokens.push(next);
            let step = seq(
                vec![next],
                tokens.len() - 1,
                tokens.len() + 64,
                LogitsWanted::Last,
            );
            next = argmax(r.forward(&step).unwrap().row(0));
        }
        assert_eq!(generated, greedy, "{arch}: greedy tokens");
    }
}

/// The prefix cache's block copies on the device (`CudaKvCache::copy_blocks`): prompts
/// continued from copied blocks give the logits of one whole pass.
#[test]
fn prompts_continued_from_copied_blocks_match_on_the_gpu() {
    if !have_gpu() {
        return;
    }
    for arch in ARCHS {
        let g = read_json(&fixtures().join("tiny").join(arch).join("golden.json"));
        let ids = as_u32s(&g["input_ids"]);
        let opened = open_model(&fixtures().join("tiny").join(arch), false).unwrap();
        let whole = cuda_runner(&opened, 0, 4096)
            .unwrap()
            .forward(&seq(ids.clone(), 0, ids.len(), LogitsWanted::All))
            .unwrap();
        let r = cuda_runner(&opened, 0, 4096).unwrap();
        prefix_copy::check(arch, r, &ids, &whole, TOL);
    }
}

#[test]
fn a_dummy_model_gives_the_same_logits_on_gpu_and_cpu() {
    if !have_gpu() {
        return;
    }
    for arch in ["llama", "qwen2"] {
        let opened = open_dummy(find(arch, "tiny").unwrap(), WeightDtype::F32, 3).unwrap();
        let mut gpu = cuda_runner(&opened, 0, 512).unwrap();
        let mut cpu = cpu_runner(&opened, 2, 512, KvDtype::F32).unwrap();
        let prompt: Vec<u32> = (0..40).map(|i| (i * 37 % 256) as u32).collect();
        let batch = seq(prompt, 0, 40, LogitsWanted::All);
        let (a, c) = (gpu.forward(&batch).unwrap(), cpu.forward(&batch).unwrap());
        let d = max_abs_diff(&a.data, &c.data);
        assert!(d < TOL, "{arch}: dummy logits differ by {d}");
    }
}

/// `len`-token sequences `j` in blocks `4j..4j+4` (64 tokens each).
fn seqs(tokens: Vec<Vec<u32>>, start: &[usize], logits: LogitsWanted) -> Batch {
    Batch {
        seqs: tokens
            .into_iter()
            .zip(start)
            .enumerate()
            .map(|(j, (tokens, &start_pos))| SeqInput {
                state_slot: j as u32,
                tokens,
                start_pos,
                block_table: (4 * j as u32..4 * j as u32 + 4).collect(),
                logits,
                lora: LoraMix::BASE,
            })
            .collect(),
    }
}

#[test]
fn a_bf16_model_decodes_as_it_prefills_on_the_gpu() {
    if !have_gpu() {
        return;
    }
    // One, two and three sequences decoding together (matvec.cu's 1, 2 and 4-row instances:
    // the add + RMSNorm inside the q/k/v and gate/up products at 1 and 2 rows, the GLU inside
    // the down product at all three) against the same tokens computed as prompts (the norm and
    // GLU kernels, cuBLAS products, the tensor-core attention), both in bf16 on the GPU: only
    // roundings may differ.
    let (prompts, steps) = ([36usize, 30, 20], 5);
    let all: Vec<Vec<u32>> = (0..3)
        .map(|j| {
            (0..prompts[j] + steps)
                .map(|i| ((i * 37 + j * 11) % 256) as u32)
                .collect()
        })
        .collect();
    for arch in ["llama", "qwen2"] {
        let opened = open_dummy(find(arch, "tiny").unwrap(), WeightDtype::BF16, 5).unwrap();
        for n in 1..=3 {
            let tokens = &all[..n];
            let zeros = vec![0; n];
            let mut whole = cuda_runner(&opened, 0, 512).unwrap();
            let reference = whole
                .forward(&seqs(tokens.to_vec(), &zeros, LogitsWanted::All))
                .unwrap();
            let mut stepped = cuda_runner(&opened, 0, 512).unwrap();
            let prompt_tokens = (0..n).map(|j| tokens[j][..prompts[j]].to_vec()).collect();
            stepped
                .forward(&seqs(prompt_tokens, &zeros, LogitsWanted::Last))
                .unwrap();
            for s in 0..steps {
                let at: Vec<usize> = prompts[..n].iter().map(|p| p + s).collect();
                let step_tokens = (0..n).map(|j| vec![tokens[j][at[j]]]).collect();
                let out = stepped
                    .forward(&seqs(step_tokens, &at, LogitsWanted::Last))
                    .unwrap();
                for j in 0..n {
                    let row: usize = tokens[..j].iter().map(Vec::len).sum::<usize>() + at[j];
                    let want = reference.row(row);
                    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    let d = max_abs_diff(out.row(j), want) / scale;
                    assert!(
                        d < 3e-2,
                        "{arch}, {n} sequences: sequence {j}, step {s}: relative difference {d}"
                    );
                }
            }
        }
    }
}

/// Every row's logits of a batch of `adapters.len()` sequences of one prompt, sequence `i`
/// with `adapters[i]`, on `backend`.
fn lora_batch_logits(
    model: &std::path::Path,
    backend: candor::backend::BackendChoice,
    lora: Vec<candor_models::lora::LoraAdapter>,
    adapters: &[LoraMix],
) -> Vec<f32> {
    use candor::engine::load::{runner_for, KvCacheDtype, LoadOptions};
    let opened = open_model(model, false).unwrap();
    let opts = LoadOptions {
        dequantize: false,
        threads: 2,
        kv_tokens: 1024,
        backend,
        kv_cache_dtype: KvCacheDtype::Auto,
        op_profiler: None,
        lora,
        classifier_tokens: Vec::new(),
    };
    let mut r = runner_for(&opened, &opts).unwrap();
    let prompt = vec![1u32, 17, 230, 5, 99, 411, 3];
    let batch = Batch {
        seqs: adapters
            .iter()
            .enumerate()
            .map(|(j, mix)| SeqInput {
                state_slot: j as u32,
                tokens: prompt.clone(),
                start_pos: 0,
                block_table: vec![j as u32],
                logits: LogitsWanted::All,
                lora: mix.clone(),
            })
            .collect(),
    };
    let out = r.forward(&batch).unwrap();
    (0..out.rows()).flat_map(|i| out.row(i).to_vec()).collect()
}

#[test]
fn lora_adapters_in_a_mixed_batch_match_the_cpu_on_the_gpu() {
    if !have_gpu() {
        return;
    }
    for arch in ["llama", "qwen3"] {
        let dir = tempfile::tempdir().unwrap();
        let base = fixtures().join("tiny").join(arch);
        let lora = lora_files::Lora::random(&base, &lora_files::ALL_MODULES, 4, 8.0, 7);
        let adapter =
            candor_models::lora::read_adapter(&lora.write_peft(&dir.path().join("a"))).unwrap();
        // The adapter at its own scale, at half of it (llama-server's `lora` list), and not.
        let adapters = [
            LoraMix::BASE,
            LoraMix::one(0),
            LoraMix::BASE,
            LoraMix::scaled([(0, 0.5)]),
        ];
        let run = |backend| lora_batch_logits(&base, backend, vec![adapter.clone()], &adapters);
        let gpu = run(candor::backend::BackendChoice::Cuda(0));
        let cpu = run(candor::backend::BackendChoice::Cpu);
        let d = max_abs_diff(&gpu, &cpu);
        assert!(d < TOL, "{arch}: LoRA logits on the GPU are off by {d}");
    }
}

#[test]
fn encoders_match_transformers_on_the_gpu() {
    if !have_gpu() {
        return;
    }
    let device = candle_core::Device::new_cuda(0).unwrap();
    // BERT, RoBERTa, NomicBERT's rotary positions and SwiGLU, ModernBERT's window mask, GeGLU
    // and mean-reading head: candle's CUDA ops against transformers.
    for name in common::encoder::ENCODERS {
        common::encoder::assert_matches_golden(name, &device);
    }
    // SPLADE's masked-LM heads and pooling (max of log(1 + relu), and the sum of
    // log(1 + log(1 + relu)) on the device) against sentence-transformers.
    for name in common::encoder::SPLADE_ENCODERS {
        common::encoder::assert_splade_matches_golden(name, &device);
    }
    // BGE-M3's lexical layer over the GPU's states.
    common::encoder::assert_bge_m3_matches_golden(&device);
}
