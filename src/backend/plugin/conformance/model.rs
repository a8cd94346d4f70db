//! End-to-end checks: a whole model on the plugin against the same model on the CPU backend,
//! logits compared over a mixed batch (a long prefill, a short prefill, then batched decode
//! steps). Built-in synthetic models need no files; `--model` adds a model from disk (the tiny
//! fixtures in tests/fixtures, or any model candor loads).
use super::inputs::{block_elems, host_weight, Inputs};
use crate::backend::cpu::CpuBackend;
use crate::backend::plugin::PluginBackend;
use crate::engine::runner::{ModelRunner, Runner};
use crate::engine::EngineError;
use candor_models::backend::{Activation, RopeStyle, WeightDtype};
use candor_models::spec::{Arch, ModelSpec, RopeConfig, RopeScaling};
use candor_models::weights::{HostWeight, WeightSource};
use candor_models::{Batch, DecoderModel, LogitsWanted, SeqInput};
use std::collections::BTreeMap;

/// A model described by its spec, with seeded random weights of one storage type.
pub struct SyntheticModel {
    pub name: &'static str,
    pub spec: ModelSpec,
    /// Storage of the matrices (norms and biases stay f32).
    pub dtype: WeightDtype,
}

fn base_spec(
    arch: Arch,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> ModelSpec {
    ModelSpec {
        arch,
        vocab_size: 300,
        hidden_size: hidden,
        intermediate_size: 2 * hidden,
        num_layers: 2,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_eps: 1e-6,
        max_position: 512,
        rope: RopeConfig {
            theta: 1e6,
            scaling: RopeScaling::None,
            style: RopeStyle::Neox,
        },
        rope_local_theta: None,
        layer_windows: vec![None, None],
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        attn_softcap: None,
        final_softcap: None,
        attn_sinks: false,
        qkv_bias: false,
        qk_norm: false,
        qk_norm_whole: false,
        qk_norm_after_rope: false,
        qk_norm_per_head: false,
        sandwich_norms: false,
        pre_norms: true,
        layer_norm: false,
        parallel_block: false,
        parallel_ffn_norm: false,
        norm_bias: false,
        gated_ffn: true,
        norm_weight_offset: 0.0,
        embed_scale: None,
        residual_scale: None,
        logit_divisor: None,
        unrotated_layers: Vec::new(),
        activation: Activation::Silu,
        rotary_dim: None,
        latent_attention: None,
        experts: None,
        short_conv: None,
        linear_attention: None,
        mamba: None,
        mamba1: None,
        layer_parts: Vec::new(),
        parallel_mamba: false,
        weight_scales: Vec::new(),
        qk_rows_permuted: false,
        attn_output_gate: false,
        sub_norms: false,
        post_norm_layers: Vec::new(),
        post_residual_norms: false,
        embed_width: None,
        alibi: None,
        embed_norm: false,
        activation_bits: None,
        learned_positions: false,
        learned_position_offset: 0,
        xielu: Vec::new(),
        weightless_norms: false,
        clip_qkv: None,
        attn_temperature: None,
        attention_chunk: None,
        rotated_qk_l2_norm: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
    }
}

/// qwen2-like (biases, tied head) in f32 and Q8_0; gemma-like (windows, q/k norms, sandwich
/// norms, GeGLU, softcaps, embedding scale, local RoPE base); llama-like with 256-wide rows so
/// K-quant weights (Q4_K) apply.
pub fn synthetic_models() -> Vec<SyntheticModel> {
    let mut qwen = base_spec(Arch::Qwen2, 64, 4, 2, 16);
    qwen.qkv_bias = true;
    let mut gemma = base_spec(Arch::Gemma3, 64, 4, 2, 32);
    gemma.qk_norm = true;
    gemma.sandwich_norms = true;
    gemma.layer_windows = vec![Some(8), None];
    gemma.rope_local_theta = Some(1e4);
    gemma.embed_scale = Some(8.0);
    gemma.activation = Activation::GeluTanh;
    gemma.attn_softcap = Some(50.0);
    gemma.final_softcap = Some(30.0);
    let mut llama = base_spec(Arch::Llama, 256, 4, 2, 64);
    llama.rope.style = RopeStyle::Interleaved;
    vec![
        SyntheticModel {
            name: "qwen2-like",
            spec: qwen.clone(),
            dtype: WeightDtype::F32,
        },
        SyntheticModel {
            name: "qwen2-like",
            spec: qwen,
            dtype: WeightDtype::Q8_0,
        },
        SyntheticModel {
            name: "gemma-like",
            spec: gemma,
            dtype: WeightDtype::F32,
        },
        SyntheticModel {
            name: "llama-like",
            spec: llama,
            dtype: WeightDtype::Q4K,
        },
    ]
}

/// Canonical tensor names of a spec with their shapes (what `DecoderModel::load` asks for).
fn tensor_shapes(s: &ModelSpec) -> BTreeMap<String, Vec<usize>> {
    let (h, q, kv, f, d) = (
        s.hidden_size,
        s.q_dim(),
        s.kv_dim(),
        s.intermediate_size,
        s.head_dim,
    );
    let mut m = BTreeMap::new();
    m.insert("token_embd.weight".to_string(), vec![s.vocab_size, h]);
    m.insert("output_norm.weight".to_string(), vec![h]);
    if s.arch != Arch::Qwen2 {
        m.insert("output.weight".to_string(), vec![s.vocab_size, h]);
    }
    for l in 0..s.num_layers {
        let mut add = |name: &str, shape: Vec<usize>| {
            m.insert(format!("blk.{l}.{name}"), shape);
        };
        add("attn_norm.weight", vec![h]);
        add("attn_q.weight", vec![q, h]);
        add("attn_k.weight", vec![kv, h]);
        add("attn_v.weight", vec![kv, h]);
        add("attn_output.weight", vec![h, q]);
        add("ffn_norm.weight", vec![h]);
        add("ffn_gate.weight", vec![f, h]);
        add("ffn_up.weight", vec![f, h]);
        add("ffn_down.weight", vec![h, f]);
        if s.qkv_bias {
            add("attn_q.bias", vec![q]);
            add("attn_k.bias", vec![kv]);
            add("attn_v.bias", vec![kv]);
        }
        if s.qk_norm {
            add("attn_q_norm.weight", vec![d]);
            add("attn_k_norm.weight", vec![d]);
        }
        if s.sandwich_norms {
            add("post_attention_norm.weight", vec![h]);
            add("post_ffw_norm.weight", vec![h]);
        }
    }
    m
}

struct SyntheticSource {
    shapes: BTreeMap<String, Vec<usize>>,
    dtype: WeightDtype,
}

impl WeightSource for SyntheticSource {
    fn get(&self, name: &str) -> candor_models::Result<Option<HostWeight>> {
        let Some((index, shape)) = self
            .shapes
            .iter()
            .enumerate()
            .find(|(_, (n, _))| *n == name)
            .map(|(i, (_, s))| (i, s))
        else {
            return Ok(None);
        };
        let mut r = Inputs::new(1000 + index as u64);
        let n: usize = shape.iter().product();
        if shape.len() == 1 {
            let v = if name.contains("norm") {
                r.around_one(n)
            } else {
                r.values(n, 0.5)
            };
            return host_weight(&v, shape, WeightDtype::F32).map(Some);
        }
        // Scaled so activations keep a unit-ish spread through the layers.
        let v = r.values(n, 1.5 / (shape[1] as f32).sqrt());
        let dtype = if shape[1].is_multiple_of(block_elems(self.dtype)) {
            self.dtype
        } else {
            WeightDtype::F32
        };
        host_weight(&v, shape, dtype).map(Some)
    }

    fn contains(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
}

impl SyntheticModel {
    pub fn source(&self) -> impl WeightSource {
        SyntheticSource {
            shapes: tensor_shapes(&self.spec),
            dtype: self.dtype,
        }
    }
}

/// NMSE bound of whole-model logits: float weights agree to rounding through the layers;
/// quantized weights carry the CPU's 8-bit activations through every layer.
pub fn model_bound(dtype: WeightDtype) -> f64 {
    if block_elems(dtype) > 1 {
        5e-3
    } else {
        1e-5
    }
}

/// Runs the batch schedule on a runner; all logits of every step, concatenated.
pub fn run_schedule(runner: &mut dyn Runner, vocab: usize) -> Result<Vec<f32>, EngineError> {
    let a: Vec<u32> = (0..24).map(|i| ((i * 37 + 5) % vocab) as u32).collect();
    let b: Vec<u32> = (0..5).map(|i| ((i * 11 + 3) % vocab) as u32).collect();
    // Sequence a owns blocks 0-1 (32 slots), b owns block 2: 24 + 4 and 5 + 4 tokens fit.
    let mut out = Vec::new();
    let mut batch = Batch {
        seqs: vec![
            SeqInput {
                state_slot: 0,
                tokens: a.clone(),
                start_pos: 0,
                block_table: vec![0, 1],
                logits: LogitsWanted::All,
                lora: candor_models::lora::LoraMix::BASE,
            },
            SeqInput {
                state_slot: 0,
                tokens: b.clone(),
                start_pos: 0,
                block_table: vec![2],
                logits: LogitsWanted::Last,
                lora: candor_models::lora::LoraMix::BASE,
            },
        ],
    };
    let mut lens = [a.len(), b.len()];
    for step in 0..4 {
        let logits = runner.forward(&batch)?;
        out.extend_from_slice(&logits.data);
        // The next tokens are fixed (not sampled), so both backends see the same inputs even
        // where their greedy choices would differ.
        let next = [(step * 13 + 7) % vocab, (step * 29 + 1) % vocab];
        for (i, seq) in batch.seqs.iter_mut().enumerate() {
            seq.start_pos = lens[i];
            seq.tokens = vec![next[i] as u32];
            seq.logits = LogitsWanted::Last;
            lens[i] += 1;
        }
    }
    Ok(out)
}

/// Logits of a model on both backends: (plugin, cpu).
pub fn compare_runners(
    plugin: &PluginBackend,
    cpu: &CpuBackend,
    spec: &ModelSpec,
    src: &dyn WeightSource,
) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
    const BLOCKS: usize = 4;
    let vocab = spec.vocab_size;
    let cpu_model = DecoderModel::load(cpu, spec.clone(), src)?;
    let mut cpu_runner = ModelRunner::new(cpu.clone(), cpu_model, BLOCKS, 16)?;
    let want = run_schedule(&mut cpu_runner, vocab)?;
    let plugin_model = DecoderModel::load(plugin, spec.clone(), src)?;
    let mut plugin_runner = ModelRunner::new(plugin.clone(), plugin_model, BLOCKS, 16)?;
    let got = run_schedule(&mut plugin_runner, vocab)?;
    Ok((got, want))
}
