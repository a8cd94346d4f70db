//! Hugging Face safetensors checkouts: one file or shards listed in
//! `model.safetensors.index.json`, memory-mapped; F32/F16/BF16 tensors read in their dtype
//! (a 16-bit checkout stays 16-bit on devices that run it so: half the memory and bandwidth).
use super::fp8::Fp8Format;
use super::names::{
    afmoe_hf, apertus_hf, bamba_hf, bloom_bare_hf, ernie_moe_hf, exaone_moe_hf, falcon_hf,
    falcon_one_norm_hf, gpt2_bare_hf, gpt2_hf, gpt_neox_hf, gpt_oss_hf, gptj_hf, granite_moe_hf,
    granite_swash_hf, hunyuan_hf, jamba_hf, kimi_linear_hf, lfm2_hf, lfm2_moe_hf, llama4_hf,
    mamba1_hf, mamba_hf, mixtral_hf, mpt_hf, nemotron_h_hf, olmo_hybrid_hf, opt_bare_hf, opt_hf,
    phi_hf, qwen2_moe_hf, qwen3_5_hf, sarvam_hf, starcoder2_hf, to_hf, HfNormNaming,
};
use super::quantization::Quantization;
use super::{BlockType, HostWeight, MappedBlocks, WeightSource};
use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::Device;
use std::path::{Path, PathBuf};

mod quantized;

pub struct SafetensorsDir {
    path: String,
    tensors: MmapedSafetensors,
    naming: HfNormNaming,
    /// MXFP4 experts dequantized to f32 rather than kept as their Q5_0 blocks (the reference
    /// path, as for GGUFs).
    dequantize: bool,
    /// `query_key_value` rows stored per group of heads (GPT-NeoX: q, k, v of each head in
    /// turn; Falcon: each KV head's q heads, then its k and v), regrouped as q, k, v
    /// (`with_grouped_qkv`): the groups and the q heads in each.
    grouped_qkv: Option<(usize, usize)>,
    /// GPT-2's `Conv1D` weights (`c_attn`, `c_proj`, `c_fc`) are stored `[in, out]`: read
    /// transposed (`with_conv1d_weights`).
    conv1d_weights: bool,
    /// The stacked experts under gpt-oss's names (`mlp.experts.gate_up_proj`) are
    /// `[experts, out, in]`, gate's rows then up's, as transformers 5 saves the models it
    /// fuses natively (Mistral 4, GLM-4.6V), rather than gpt-oss's `[experts, in, out]`
    /// (`with_experts_out_in`): the shapes alone cannot tell where the hidden size is twice
    /// an expert's width.
    experts_out_in: bool,
    /// Where a vision-language checkout keeps its text model's tensors (None: at the top).
    text_model: Option<TextModelLayout>,
    /// The quantization its config declares: how FP8 weights are dequantized (`fp8`), how
    /// packed integers are read (`packed_int`).
    quantization: Quantization,
}

/// How a vision-language checkout (Gemma 3 4B-27B, Mistral Small 3.1) names its text
/// model's tensors, which candor serves without the vision tower and projector beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextModelLayout {
    /// transformers 4.52 on: `model.language_model.*`, the head `lm_head`.
    Nested,
    /// Earlier: `language_model.model.*`, the head `language_model.lm_head`.
    Wrapped,
}

impl TextModelLayout {
    /// The layout `tensors` has, told by where its token embeddings are.
    fn of(tensors: &MmapedSafetensors) -> Option<Self> {
        let has = |name: &str| tensors.get(name).is_ok();
        if has("model.language_model.embed_tokens.weight") {
            Some(TextModelLayout::Nested)
        } else if has("language_model.model.embed_tokens.weight") {
            Some(TextModelLayout::Wrapped)
        } else {
            None
        }
    }

    /// A text model's HF name (`model.*`, `lm_head.*`) in this layout.
    fn rebase(self, hf: &str) -> String {
        match (self, hf.strip_prefix("model.")) {
            (TextModelLayout::Nested, Some(rest)) => format!("model.language_model.{rest}"),
            (TextModelLayout::Wrapped, Some(rest)) => format!("language_model.model.{rest}"),
            (TextModelLayout::Wrapped, None) if hf.starts_with("lm_head.") => {
                format!("language_model.{hf}")
            }
            _ => hf.to_string(),
        }
    }
}

/// The weight files of a checkout: the shards of the index, or `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let bad = |reason: String| ModelError::BadSafetensors {
        path: dir.display().to_string(),
        reason,
    };
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let files = super::shard_index::shard_names(&index)?;
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(bad(
        "no model.safetensors or model.safetensors.index.json (nor pytorch_model.bin)".into(),
    ))
}

impl SafetensorsDir {
    pub fn open(dir: &Path, naming: HfNormNaming, dequantize: bool) -> Result<Self> {
        // A checkout of PyTorch checkpoints alone is read once as safetensors written beside.
        super::pytorch::convert_checkout(dir)?;
        let files = weight_files(dir)?;
        for f in &files {
            if !f.exists() {
                return Err(ModelError::BadSafetensors {
                    path: dir.display().to_string(),
                    reason: format!("shard {} is missing", f.display()),
                });
            }
        }
        // SAFETY: read-only maps of files we do not modify (see GgufFile::open).
        let tensors = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
            ModelError::BadSafetensors {
                path: dir.display().to_string(),
                reason: crate::error::candle_message(&e),
            }
        })?;
        Ok(SafetensorsDir {
            path: dir.display().to_string(),
            text_model: TextModelLayout::of(&tensors),
            tensors,
            naming,
            dequantize,
            grouped_qkv: None,
            conv1d_weights: false,
            experts_out_in: false,
            quantization: Quantization::None,
        })
    }

    /// Quantized weights read as the checkout's config declares them
    /// (`quantization::checkout_quantization`).
    pub fn with_quantization(mut self, quantization: Quantization) -> Self {
        self.quantization = quantization;
        self
    }

    /// The tensor named `hf` (a text model's name: under the vision-language layout's prefix
    /// where the checkout has one), and its name in the checkout.
    fn view(&self, hf: &str) -> Option<(safetensors::tensor::TensorView<'_>, String)> {
        let name = match self.text_model {
            Some(layout) => layout.rebase(hf),
            None => hf.to_string(),
        };
        self.tensors.get(&name).ok().map(|v| (v, name))
    }

    /// Read a joined `query_key_value` weight and bias stored per group (`groups` groups of
    /// `q_per_group` q heads, one k and one v head each: GPT-NeoX's per head, Falcon's per KV
    /// head) as the q rows, then the k rows, then the v rows (the layout llama.cpp's converters
    /// write and candor loads).
    pub fn with_grouped_qkv(mut self, groups: usize, q_per_group: usize) -> Self {
        self.grouped_qkv = Some((groups, q_per_group));
        self
    }

    /// Read GPT-2's `Conv1D` weights (`[in, out]`) transposed, as every other product's.
    pub fn with_conv1d_weights(mut self) -> Self {
        self.conv1d_weights = true;
        self
    }

    /// Read the stacked experts as transformers 5 saves them (`experts_out_in`).
    pub fn with_experts_out_in(mut self) -> Self {
        self.experts_out_in = true;
        self
    }
}

/// Rows of a `[groups · (q + 2) · d, ...]` tensor stored per group (the group's `q` q heads,
/// then its k head and its v head, `d` rows each) regrouped as all q rows, then k, then v.
fn regroup_qkv(
    t: candle_core::Tensor,
    groups: usize,
    q_per_group: usize,
) -> Result<candle_core::Tensor> {
    let rows = t.dim(0)?;
    let per_group = q_per_group + 2;
    if groups == 0 || rows % (groups * per_group) != 0 {
        return Err(ModelError::Config(format!(
            "query_key_value: {rows} rows are not {groups} groups of {per_group} heads"
        )));
    }
    let d = rows / (groups * per_group);
    let mut dims = t.dims().to_vec();
    let rest = dims.split_off(1);
    let grouped = t.reshape([vec![groups, per_group, d], rest.clone()].concat())?;
    let part = |from: usize, n: usize| -> Result<candle_core::Tensor> {
        let p = grouped.narrow(1, from, n)?.contiguous()?;
        Ok(p.reshape([vec![groups * n * d], rest.clone()].concat())?)
    };
    let parts = [
        part(0, q_per_group)?,
        part(q_per_group, 1)?,
        part(q_per_group + 1, 1)?,
    ];
    Ok(candle_core::Tensor::cat(&parts, 0)?)
}

impl SafetensorsDir {
    /// The HF name this checkout holds a canonical tensor under: the usual one, or Mixtral's
    /// or Qwen2-MoE's for their experts.
    fn hf_name(&self, name: &str) -> Option<String> {
        self.hf_candidates(name)
            .into_iter()
            .find(|m| self.view(m).is_some())
    }

    /// The HF names a canonical tensor may have, the usual one first.
    fn hf_candidates(&self, name: &str) -> Vec<String> {
        let Some(hf) = to_hf(name, self.naming) else {
            return Vec::new();
        };
        let alternates = [
            mixtral_hf(&hf),
            qwen2_moe_hf(&hf),
            ernie_moe_hf(&hf),
            gpt_oss_hf(&hf),
            hunyuan_hf(&hf),
            granite_moe_hf(&hf),
            granite_swash_hf(&hf),
            starcoder2_hf(&hf),
            lfm2_hf(&hf),
            lfm2_moe_hf(&hf),
            apertus_hf(&hf),
            gpt_neox_hf(&hf),
            gpt2_hf(&hf),
            gpt2_bare_hf(&hf),
            gptj_hf(&hf),
            opt_hf(&hf),
            opt_bare_hf(&hf),
            falcon_hf(&hf),
            falcon_one_norm_hf(&hf),
            bloom_bare_hf(&hf),
            mpt_hf(&hf),
            phi_hf(&hf),
            llama4_hf(&hf),
            exaone_moe_hf(&hf),
            sarvam_hf(&hf),
            qwen3_5_hf(&hf),
            mamba_hf(&hf),
            nemotron_h_hf(&hf, "backbone"),
            nemotron_h_hf(&hf, "model"),
            kimi_linear_hf(&hf),
            bamba_hf(&hf),
            mamba1_hf(&hf),
            jamba_hf(&hf),
            afmoe_hf(&hf),
            olmo_hybrid_hf(&hf),
        ];
        std::iter::once(hf.clone())
            .chain(alternates.into_iter().flatten())
            .collect()
    }
}

/// How a checkout stacks every expert's projections in one tensor each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stacking {
    /// gpt-oss's `mlp.experts.{gate_up_proj,down_proj}`: `[experts, in, out]`, gate and up
    /// interleaved along `out`, biases beside. Qwen3-VL-MoE's text model stacks its experts
    /// under the same names without biases, gate's columns then up's (`halved_gate_up`).
    GptOss,
    /// Granite MoE's `block_sparse_moe.{input_linear,output_linear}`: `[experts, out, in]`,
    /// gate's rows then up's.
    GraniteMoe,
    /// Granite's "swash" models (`granitemoe_swa`): Granite MoE's layout under
    /// `block_sparse_moe.experts.{gate_up_proj,down_proj}`, parameters without a `.weight`.
    GraniteSwash,
    /// Llama 4's `feed_forward.experts.{gate_up_proj,down_proj}`: gpt-oss's `[experts, in,
    /// out]` without biases, gate's columns then up's.
    Llama4,
}

/// Where one expert's tensor lies in a checkout's stacked expert tensors.
struct StackedExpert {
    /// The stacked tensor's HF name.
    hf: String,
    stacking: Stacking,
    expert: usize,
    /// Of gate/up: which one (0 gate, 1 up); None: the down projection.
    pair: Option<usize>,
    bias: bool,
}

impl StackedExpert {
    /// The stacked tensor behind a canonical per-expert name (`names::expert`, or the same
    /// with `.bias` for `.weight`), in the names `stacking`'s checkouts use.
    fn of(name: &str, stacking: Stacking) -> Option<Self> {
        let (stem, suffix) = name.rsplit_once('.')?;
        let (whole, e) = stem.rsplit_once('.')?;
        let (layer, what) = whole.strip_prefix("blk.")?.split_once('.')?;
        let (pair, gate_up) = match what {
            "ffn_gate_exps" => (Some(0), true),
            "ffn_up_exps" => (Some(1), true),
            "ffn_down_exps" => (None, false),
            _ => return None,
        };
        let bias = match suffix {
            "weight" => false,
            "bias" => true,
            _ => return None,
        };
        let hf = match (stacking, gate_up, bias) {
            (Stacking::GptOss, true, b) => format!("mlp.experts.gate_up_proj{}", bias_tail(b)),
            (Stacking::GptOss, false, b) => format!("mlp.experts.down_proj{}", bias_tail(b)),
            (Stacking::GraniteMoe, _, true) => return None,
            (Stacking::GraniteMoe, true, false) => "block_sparse_moe.input_linear.weight".into(),
            (Stacking::GraniteMoe, false, false) => "block_sparse_moe.output_linear.weight".into(),
            (Stacking::GraniteSwash, _, true) => return None,
            (Stacking::GraniteSwash, true, false) => "block_sparse_moe.experts.gate_up_proj".into(),
            (Stacking::GraniteSwash, false, false) => "block_sparse_moe.experts.down_proj".into(),
            (Stacking::Llama4, _, true) => return None,
            (Stacking::Llama4, true, false) => "feed_forward.experts.gate_up_proj".into(),
            (Stacking::Llama4, false, false) => "feed_forward.experts.down_proj".into(),
        };
        Some(StackedExpert {
            hf: format!("model.layers.{layer}.{hf}"),
            stacking,
            expert: e.parse().ok()?,
            pair,
            bias,
        })
    }

    /// Those of every stacking.
    fn all(name: &str) -> impl Iterator<Item = Self> + '_ {
        [
            Stacking::GptOss,
            Stacking::GraniteMoe,
            Stacking::GraniteSwash,
            Stacking::Llama4,
        ]
        .into_iter()
        .filter_map(move |s| Self::of(name, s))
    }
}

fn bias_tail(bias: bool) -> &'static str {
    if bias {
        "_bias"
    } else {
        ""
    }
}

/// The candle dtype and the file's weight type of a safetensors dtype candor reads.
fn dtypes(tensor: &str, d: safetensors::Dtype) -> Result<(candle_core::DType, WeightDtype)> {
    use candle_core::DType;
    match d {
        safetensors::Dtype::F32 => Ok((DType::F32, WeightDtype::F32)),
        safetensors::Dtype::F16 => Ok((DType::F16, WeightDtype::F16)),
        safetensors::Dtype::BF16 => Ok((DType::BF16, WeightDtype::BF16)),
        other => Err(ModelError::UnsupportedDtype {
            tensor: tensor.to_string(),
            dtype: format!("{other:?}"),
        }),
    }
}

impl SafetensorsDir {
    /// One expert's weight or bias out of a checkout's stacked tensors (`Stacking`), as candor
    /// runs it (`[out, in]`, gate and up apart): only that expert's bytes are read. None when
    /// the checkout has no such stack.
    fn stacked_expert(&self, name: &str) -> Result<Option<HostWeight>> {
        for at in StackedExpert::all(name) {
            let found = match self.view(&at.hf).map(|(v, _)| v) {
                Some(view) => self.expert_of_stack(&at, view).map(Some),
                None if at.stacking == Stacking::GptOss => self.mxfp4_expert(&at),
                None => Ok(None),
            }?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Whether `at`'s gate/up stack holds gate's columns, then up's (Qwen3-VL-MoE's, Llama 4's), rather
    /// than the two interleaved (gpt-oss's): the stack without gpt-oss's biases beside it.
    fn halved_gate_up(&self, at: &StackedExpert) -> bool {
        let weights = at.hf.strip_suffix("_bias").unwrap_or(&at.hf);
        match at.stacking {
            Stacking::GptOss => {
                at.pair.is_some() && self.view(&format!("{weights}_bias")).is_none()
            }
            Stacking::Llama4 => true,
            Stacking::GraniteMoe | Stacking::GraniteSwash => false,
        }
    }

    /// `at`'s expert out of the stacked tensor `view`.
    fn expert_of_stack(
        &self,
        at: &StackedExpert,
        view: safetensors::tensor::TensorView<'_>,
    ) -> Result<HostWeight> {
        let (dtype, source) = dtypes(&at.hf, view.dtype())?;
        let shape = view.shape();
        let bad = |reason: String| ModelError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("{}: {reason}", at.hf),
        };
        let (&experts, per) = shape.split_first().ok_or_else(|| bad("a scalar".into()))?;
        if at.expert >= experts || per.len() != if at.bias { 1 } else { 2 } {
            return Err(bad(format!("shape {shape:?} has no expert {}", at.expert)));
        }
        let bytes = view.data().len() / experts;
        let data = &view.data()[at.expert * bytes..(at.expert + 1) * bytes];
        let t = candle_core::Tensor::from_raw_buffer(data, dtype, per, &Device::Cpu)?;
        let out_in = matches!(at.stacking, Stacking::GraniteMoe | Stacking::GraniteSwash)
            || (self.experts_out_in && at.stacking == Stacking::GptOss && !at.bias);
        if out_in {
            // `[out, in]` already; gate's rows first, then up's.
            let t = match at.pair {
                Some(k) => {
                    let half = per[0] / 2;
                    t.narrow(0, k * half, half)?.contiguous()?
                }
                None => t,
            };
            return Ok(HostWeight::Dense { tensor: t, source });
        }
        let t = match at.pair {
            Some(k) => {
                let last = t.rank() - 1;
                let cols = per[last] / 2;
                if self.halved_gate_up(at) {
                    t.narrow(last, k * cols, cols)?
                } else {
                    // Columns 2i (gate) or 2i + 1 (up) of the last dimension.
                    let mut pairs = per.to_vec();
                    pairs[last] = cols;
                    pairs.push(2);
                    t.reshape(pairs)?
                        .narrow(last + 1, k, 1)?
                        .squeeze(last + 1)?
                }
            }
            None => t,
        };
        // Stored `[in, out]`: candor's products take `[out, in]`.
        let t = if at.bias {
            t.contiguous()?
        } else {
            t.t()?.contiguous()?
        };
        Ok(HostWeight::Dense { tensor: t, source })
    }
}

impl SafetensorsDir {
    /// One expert's matrix out of OpenAI's MXFP4 stacks (`{stack}_blocks` `[experts, out,
    /// in / 32, 16]` codes and `{stack}_scales` `[experts, out, in / 32]`, gate and up rows
    /// interleaved), as ggml's MXFP4 blocks in memory of their own (`mxfp4`), or in f32 when
    /// the checkout is opened dequantized. None without such a stack.
    fn mxfp4_expert(&self, at: &StackedExpert) -> Result<Option<HostWeight>> {
        let (blocks, scales) = (format!("{}_blocks", at.hf), format!("{}_scales", at.hf));
        let (Some((codes, _)), Some((exps, _)), false) =
            (self.view(&blocks), self.view(&scales), at.bias)
        else {
            return Ok(None);
        };
        let bad = |reason: String| ModelError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("{blocks}: {reason}"),
        };
        let &[experts, out, nb, 16] = codes.shape() else {
            return Err(bad(format!("shape {:?} is not MXFP4 codes", codes.shape())));
        };
        if exps.shape() != [experts, out, nb] {
            return Err(bad(format!(
                "scales of shape {:?} for codes of {:?}",
                exps.shape(),
                codes.shape()
            )));
        }
        let u8s = safetensors::Dtype::U8;
        if codes.dtype() != u8s || exps.dtype() != u8s || at.expert >= experts {
            return Err(bad(format!(
                "no expert {} of {experts} in u8 blocks",
                at.expert
            )));
        }
        let rows: Vec<usize> = match at.pair {
            Some(k) => (k..out).step_by(2).collect(),
            None => (0..out).collect(),
        };
        let row = |r: usize| at.expert * out + r;
        let picked_codes: Vec<u8> = rows
            .iter()
            .flat_map(|&r| &codes.data()[row(r) * nb * 16..(row(r) + 1) * nb * 16])
            .copied()
            .collect();
        let picked_scales: Vec<u8> = rows
            .iter()
            .flat_map(|&r| &exps.data()[row(r) * nb..(row(r) + 1) * nb])
            .copied()
            .collect();
        let ggml = super::mxfp4::openai_to_ggml(&picked_codes, &picked_scales)?;
        let shape = vec![rows.len(), nb * super::mxfp4::BLOCK];
        let w = MappedBlocks::owned(&ggml, BlockType::Mxfp4, shape)?;
        match self.dequantize {
            true => HostWeight::from_blocks(&blocks, w.to_qtensor()?, true).map(Some),
            false => Ok(Some(HostWeight::Mapped(w))),
        }
    }
}

/// Granite MoE's shared MLP (`granitemoeshared`) behind a canonical shared-expert name:
/// gate and up are the halves of `shared_mlp.input_linear` (gate's rows first), down is
/// `shared_mlp.output_linear`. The HF name and which half; None for any other name.
fn granite_shared_mlp(name: &str) -> Option<(String, Option<usize>)> {
    let (layer, what) = name.strip_prefix("blk.")?.split_once('.')?;
    let (stack, half) = match what {
        "ffn_gate_shexp.weight" => ("input_linear", Some(0)),
        "ffn_up_shexp.weight" => ("input_linear", Some(1)),
        "ffn_down_shexp.weight" => ("output_linear", None),
        // Granite 4.0-H without experts: the shared MLP is the FFN.
        "ffn_gate.weight" => ("input_linear", Some(0)),
        "ffn_up.weight" => ("input_linear", Some(1)),
        "ffn_down.weight" => ("output_linear", None),
        _ => return None,
    };
    Some((
        format!("model.layers.{layer}.shared_mlp.{stack}.weight"),
        half,
    ))
}

/// OLMo Hybrid's DeltaNet convolution as its checkouts store it: q's, k's and v's channels
/// apart (`linear_attn.{q,k,v}_conv1d`, joined along the channels as transformers loads
/// them). Their names, for the canonical `ssm_conv1d`; None for any other name.
fn split_conv1d(name: &str) -> Option<[String; 3]> {
    let layer = name
        .strip_prefix("blk.")?
        .strip_suffix(".ssm_conv1d.weight")?;
    Some(["q", "k", "v"].map(|p| format!("model.layers.{layer}.linear_attn.{p}_conv1d.weight")))
}

/// StableLM-2-12B's per-head q/k norms behind a canonical q/k norm name: one module per head,
/// `model.layers.L.self_attn.{q,k}_layernorm.norms.H.weight`. The names' stem, up to `H`.
fn per_head_norm_modules(name: &str) -> Option<String> {
    let (layer, what) = name.strip_prefix("blk.")?.split_once('.')?;
    let module = match what {
        "attn_q_norm.weight" => "q_layernorm",
        "attn_k_norm.weight" => "k_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.self_attn.{module}.norms."))
}

impl SafetensorsDir {
    /// Each head's norm weights under `stem` (`per_head_norm_modules`) stacked as one
    /// `[heads, head_dim]` tensor, as llama.cpp's converter writes them; None when the checkout
    /// has no such modules.
    fn stacked_head_norms(&self, stem: &str) -> Result<Option<HostWeight>> {
        let mut heads = Vec::new();
        let mut source = WeightDtype::F32;
        while let Some((tensor, dtype)) = self.dense(&format!("{stem}{}.weight", heads.len()))? {
            heads.push(tensor);
            source = dtype;
        }
        if heads.is_empty() {
            return Ok(None);
        }
        let tensor = candle_core::Tensor::stack(&heads, 0)?;
        Ok(Some(HostWeight::Dense { tensor, source }))
    }

    /// The whole tensor `hf` as read from the checkout; None when it has none.
    fn dense(&self, hf: &str) -> Result<Option<(candle_core::Tensor, WeightDtype)>> {
        let Some((view, name)) = self.view(hf) else {
            return Ok(None);
        };
        if let Some(format) = Fp8Format::of(view.dtype()) {
            return self.fp8_dense(hf, &view, format).map(Some);
        }
        let (_, source) = dtypes(hf, view.dtype())?;
        let tensor =
            self.tensors
                .load(&name, &Device::Cpu)
                .map_err(|e| ModelError::BadSafetensors {
                    path: self.path.clone(),
                    reason: format!("{hf}: {}", crate::error::candle_message(&e)),
                })?;
        Ok(Some((tensor, source)))
    }
}

impl WeightSource for SafetensorsDir {
    fn get(&self, name: &str) -> Result<Option<HostWeight>> {
        if let Some(w) = self.stacked_expert(name)? {
            return Ok(Some(w));
        }
        if let Quantization::Packed(c) = &self.quantization {
            if let Some(w) = self.packed_weight(name, c)? {
                return Ok(Some(w));
            }
        }
        if let Some(parts) = split_conv1d(name).filter(|p| self.view(&p[0]).is_some()) {
            let mut joined = Vec::with_capacity(3);
            let mut source = WeightDtype::F32;
            for part in &parts {
                let Some((t, dtype)) = self.dense(part)? else {
                    return Err(ModelError::BadSafetensors {
                        path: self.path.clone(),
                        reason: format!("{} without {part}", parts[0]),
                    });
                };
                joined.push(t);
                source = dtype;
            }
            let tensor = candle_core::Tensor::cat(&joined, 0)?;
            return Ok(Some(HostWeight::Dense { tensor, source }));
        }
        if let Some((hf, half)) = granite_shared_mlp(name) {
            if let Some((tensor, source)) = self.dense(&hf)? {
                let tensor = match half {
                    Some(k) => {
                        let rows = tensor.dim(0)? / 2;
                        tensor.narrow(0, k * rows, rows)?.contiguous()?
                    }
                    None => tensor,
                };
                return Ok(Some(HostWeight::Dense { tensor, source }));
            }
        }
        let Some(hf) = self.hf_name(name) else {
            return match per_head_norm_modules(name) {
                Some(stem) => self.stacked_head_norms(&stem),
                None => Ok(None),
            };
        };
        if let Some(w) = self.int8_weight(&hf)? {
            return Ok(Some(w));
        }
        if let Some(w) = self.bnb_weight(&hf)? {
            return Ok(Some(w));
        }
        if let Some(w) = self.ternary_weight(name, &hf)? {
            return Ok(Some(w));
        }
        let Some((mut tensor, source)) = self.dense(&hf)? else {
            return Ok(None);
        };
        if let Some((groups, q_per_group)) = self.grouped_qkv {
            // GPT-NeoX's and Falcon's `query_key_value`, GPT-BigCode's `c_attn` without
            // multi-query.
            if hf.contains(".query_key_value.") || hf.contains(".c_attn.") {
                tensor = regroup_qkv(tensor, groups, q_per_group)?;
            }
        }
        let conv1d = [".c_attn.weight", ".c_proj.weight", ".c_fc.weight"];
        if self.conv1d_weights && conv1d.iter().any(|s| hf.ends_with(s)) && tensor.rank() == 2 {
            tensor = tensor.t()?.contiguous()?;
        }
        Ok(Some(HostWeight::Dense { tensor, source }))
    }

    fn contains(&self, name: &str) -> bool {
        self.hf_name(name).is_some()
            || self.packed_stem(name).is_some()
            || per_head_norm_modules(name)
                .is_some_and(|stem| self.view(&format!("{stem}0.weight")).is_some())
            || granite_shared_mlp(name).is_some_and(|(hf, _)| self.view(&hf).is_some())
            || split_conv1d(name).is_some_and(|p| self.view(&p[0]).is_some())
            || StackedExpert::all(name).any(|at| {
                self.view(&at.hf).is_some()
                    || (at.stacking == Stacking::GptOss
                        && !at.bias
                        && self.view(&format!("{}_blocks", at.hf)).is_some())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::{regroup_qkv, TextModelLayout};
    use candle_core::{Device, Tensor};

    /// A text model's names under both vision-language layouts: transformers 4.52-5's
    /// (`model.language_model.*`, the head at the top) and the earlier one the released Gemma 3
    /// and Mistral Small 3.1 checkouts have (`language_model.model.*`,
    /// `language_model.lm_head`).
    #[test]
    fn text_model_names_move_under_the_layouts_prefix() {
        let nested = TextModelLayout::Nested;
        let wrapped = TextModelLayout::Wrapped;
        let embed = "model.embed_tokens.weight";
        assert_eq!(
            nested.rebase(embed),
            "model.language_model.embed_tokens.weight"
        );
        assert_eq!(nested.rebase("lm_head.weight"), "lm_head.weight");
        assert_eq!(
            wrapped.rebase(embed),
            "language_model.model.embed_tokens.weight"
        );
        assert_eq!(
            wrapped.rebase("lm_head.weight"),
            "language_model.lm_head.weight"
        );
        assert_eq!(
            wrapped.rebase("transformer.h.0.ln_1.weight"),
            "transformer.h.0.ln_1.weight"
        );
    }

    /// Two heads of two rows each: q0 k0 v0 q1 k1 v1 become q0 q1 k0 k1 v0 v1, for a weight's
    /// rows and a bias alike.
    #[test]
    fn per_head_qkv_rows_are_regrouped_as_q_k_v() {
        let rows: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let bias = Tensor::from_vec(rows.clone(), 12, &Device::Cpu).unwrap();
        let got = regroup_qkv(bias, 2, 1).unwrap().to_vec1::<f32>().unwrap();
        // Head h, part p (q, k, v), row r at 6h + 2p + r.
        let want: Vec<f32> = [0., 1., 6., 7., 2., 3., 8., 9., 4., 5., 10., 11.].to_vec();
        assert_eq!(got, want);
        let weight = Tensor::from_vec(rows.repeat(3), (12, 3), &Device::Cpu).unwrap();
        let w = regroup_qkv(weight.clone(), 2, 1).unwrap();
        let w = w.to_vec2::<f32>().unwrap();
        let original = weight.to_vec2::<f32>().unwrap();
        for (i, &src) in want.iter().enumerate() {
            assert_eq!(w[i], original[src as usize]);
        }
        assert!(regroup_qkv(
            Tensor::zeros(10, candle_core::DType::F32, &Device::Cpu).unwrap(),
            2,
            1
        )
        .is_err());
    }

    /// Falcon's groups: two KV heads with two q heads each (rows of one value): q0 q1 k0 v0
    /// q2 q3 k1 v1 become q0 q1 q2 q3 k0 k1 v0 v1.
    #[test]
    fn grouped_qkv_rows_are_regrouped_as_q_k_v() {
        let rows = Tensor::from_vec((0..8).map(|i| i as f32).collect(), 8, &Device::Cpu).unwrap();
        let got = regroup_qkv(rows, 2, 2).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, [0., 1., 4., 5., 2., 6., 3., 7.]);
    }
}
