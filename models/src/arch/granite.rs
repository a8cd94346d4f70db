//! IBM Granite 3.x (`granite`): llama with four scalars of its own. The embeddings are
//! multiplied by `embedding_multiplier`, the attention scores by `attention_multiplier` (in
//! place of 1/sqrt(head_dim)), each attention and FFN output by `residual_multiplier` before
//! it joins the residual stream, and the logits divided by `logits_scaling`. llama.cpp's
//! `granite` GGUFs keep them as `embedding_scale`, `attention.scale`, `residual_scale` and
//! `logit_scale`, with llama's Q/K rows permuted for its interleaved RoPE.
//!
//! Granite 3.x MoE (`granitemoe`: granite-3.x-1b-a400m, 3b-a800m) adds Mixtral's experts to
//! every layer (softmax over the top-k router logits); its checkouts stack each layer's expert
//! projections (`input_linear` `[experts, 2·ffn, hidden]`, gate rows then up rows;
//! `output_linear`), which `weights::safetensors` reads one expert at a time. Granite MoE with
//! a shared expert (`granitemoeshared`) adds an ungated MLP of `shared_intermediate_size` to
//! the experts' output (`shared_mlp.input_linear`, gate rows then up rows; `output_linear`);
//! llama.cpp converts it as `granitemoe` with `expert_shared_feed_forward_length` and
//! `ffn_*_shexp` tensors, which the generic `experts::from_gguf` reads.
//!
//! Granite 4.0-H (`granitemoehybrid`: -Micro, -Tiny, -Small) mixes tokens by Mamba-2 layers
//! (`crate::mamba2`) with an attention layer every so often (`layer_types`), without RoPE
//! unless `position_embedding_type` is `rope`; its FFN is granitemoeshared's experts and shared
//! MLP, or the shared MLP alone where it has no experts (-Micro).
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, Mamba2, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    granite_from_hf(c, Arch::Granite)
}

pub fn moe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = granite_from_hf(c, Arch::GraniteMoe)?;
    let mut experts = super::experts::mixtral_from_hf(c, spec.num_layers)?;
    // granitemoeshared's MLP beside the experts, without a gate of its own.
    experts.shared_intermediate_size = c.opt_usize("shared_intermediate_size")?.unwrap_or(0);
    spec.experts = Some(experts);
    Ok(spec)
}

/// transformers' defaults where a `granitemoehybrid` config.json is silent.
const DEFAULT_HYBRID_EXPERTS: usize = 8;
const DEFAULT_MAMBA_HEADS: usize = 128;
const DEFAULT_MAMBA_STATE: usize = 256;
const DEFAULT_MAMBA_EXPAND: usize = 2;
const DEFAULT_MAMBA_CONV: usize = 4;
/// transformers' `BambaConfig` sets RoPE over half of each head.
const DEFAULT_BAMBA_ROTARY: f32 = 0.5;

pub fn hybrid_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let layers = c.usize("num_hidden_layers")?;
    let types =
        c.0.get("layer_types")
            .or_else(|| c.0.get("layers_block_type"))
            .and_then(|v| v.as_array());
    let mamba_layers: Vec<bool> = match types {
        None => vec![true; layers],
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("mamba") => Ok(true),
                Some("attention") => Ok(false),
                _ => Err(ModelError::Config(format!(
                    "unknown Granite 4.0-H layer type {t}"
                ))),
            })
            .collect::<Result<_>>()?,
    };
    if mamba_layers.len() != layers {
        return Err(ModelError::Config(format!(
            "{} layer types for {layers} layers",
            mamba_layers.len()
        )));
    }
    let experts = c
        .opt_usize("num_local_experts")?
        .unwrap_or(DEFAULT_HYBRID_EXPERTS);
    // The base reads llama's keys: the layer types (mamba / attention, not windows) out of its
    // way; without experts the shared MLP is the FFN, of its width.
    let mut cfg = c.0.clone();
    if let Some(fields) = cfg.as_object_mut() {
        fields.remove("layer_types");
        if experts == 0 {
            let shared = c.opt_usize("shared_intermediate_size")?.unwrap_or(1024);
            fields.insert("intermediate_size".into(), shared.into());
        }
    }
    let cfg = HfConfig(&cfg);
    let mut spec = match experts {
        0 => granite_from_hf(&cfg, Arch::GraniteMoeHybrid)?,
        _ => {
            let mut spec = granite_from_hf(&cfg, Arch::GraniteMoeHybrid)?;
            let mut moe = super::experts::mixtral_from_hf(&cfg, layers)?;
            moe.shared_intermediate_size = cfg.opt_usize("shared_intermediate_size")?.unwrap_or(0);
            spec.experts = Some(moe);
            spec
        }
    };
    if c.str("position_embedding_type") != Some("rope") {
        spec.unrotated_layers = vec![true; layers];
    }
    spec.mamba = Some(mamba_from_hf(c, spec.hidden_size, mamba_layers)?);
    spec.validate()?;
    Ok(spec)
}

/// The Mamba-2 layers of a Bamba, Granite 4.0-H or Falcon-H1 config.json (`mamba_*` keys; the
/// inner width `mamba_d_ssm` where given, Falcon-H1's, else `mamba_expand` times the hidden
/// size), with transformers' `MambaRMSNormGated` over the whole inner width.
pub(crate) fn mamba_from_hf(c: &HfConfig, hidden: usize, layers: Vec<bool>) -> Result<Mamba2> {
    let heads = c.opt_usize("mamba_n_heads")?.unwrap_or(DEFAULT_MAMBA_HEADS);
    let inner = match c.opt_usize("mamba_d_ssm")? {
        Some(n) => n,
        None => c.opt_usize("mamba_expand")?.unwrap_or(DEFAULT_MAMBA_EXPAND) * hidden,
    };
    let head_dim = match c.opt_usize("mamba_d_head") {
        Ok(Some(d)) => d,
        // `"auto"` (transformers' default): the heads share the inner width.
        _ => inner / heads.max(1),
    };
    if heads * head_dim != inner {
        return Err(ModelError::Config(format!(
            "Mamba-2: {heads} heads of {head_dim} for an inner width of {inner}"
        )));
    }
    Ok(Mamba2 {
        layers,
        heads,
        head_dim,
        groups: c.opt_usize("mamba_n_groups")?.unwrap_or(1),
        state: c.opt_usize("mamba_d_state")?.unwrap_or(DEFAULT_MAMBA_STATE),
        conv_kernel: c.opt_usize("mamba_d_conv")?.unwrap_or(DEFAULT_MAMBA_CONV),
        // transformers' norm is over the whole inner width, whatever the groups.
        norm_group: inner,
        dt_limit: (0.0, f32::INFINITY),
        gated_norm: crate::spec::GatedNorm::AfterGate,
    })
}

/// Bamba (`bamba`: IBM's Bamba-9B): Granite 4.0-H's Mamba-2 layers beside llama attention
/// layers (listed in `attn_layer_indices`) with RoPE over part of each head (half unless
/// `partial_rotary_factor` says), a SwiGLU FFN in every layer, no multipliers. llama.cpp
/// converts it as `granitehybrid`.
pub fn bamba_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Bamba)?;
    let layers = spec.num_layers;
    let attention: Vec<usize> = match c.0.get("attn_layer_indices") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(list) => serde_json::from_value(list.clone())
            .map_err(|e| ModelError::Config(format!("config.json: `attn_layer_indices`: {e}")))?,
    };
    if let Some(l) = attention.iter().find(|&&l| l >= layers) {
        return Err(ModelError::Config(format!(
            "config.json: attention layer {l} of {layers}"
        )));
    }
    spec.rotary_dim = super::rotary_dim_from_hf(c, spec.head_dim, Some(DEFAULT_BAMBA_ROTARY))?;
    let mamba = (0..layers).map(|l| !attention.contains(&l)).collect();
    spec.mamba = Some(mamba_from_hf(c, spec.hidden_size, mamba)?);
    spec.validate()?;
    Ok(spec)
}

/// transformers' `GraniteSWAConfig` window where config.json is silent.
const DEFAULT_SWA_WINDOW: usize = 128;

/// Granite with interleaved sliding windows (`granite_swa`, `granitemoe_swa`: IBM's "swash"
/// models): Granite's layers (or Granite MoE's, with its shared MLP) with a window in the
/// layers `layer_types` marks (all but every fourth from the first where it is silent), a
/// learned per-head sink in each attention (an extra logit in the softmax: transformers'
/// `sigmoid(logsumexp - sink)` scaling is gpt-oss's sink), and RoPE per layer as
/// `layer_rope_theta` gives it (0: none) or `no_rope_layers` marks it (0: none; the key
/// llama.cpp's converter reads). llama.cpp converts both as `granite_swa`.
pub fn swa_from_hf(c: &HfConfig, moe: bool) -> Result<ModelSpec> {
    let window = match c.0.get("sliding_window") {
        None => Some(DEFAULT_SWA_WINDOW),
        Some(_) => c.opt_usize("sliding_window")?,
    };
    let mut cfg = c.0.clone();
    if let (Some(fields), Some(w)) = (cfg.as_object_mut(), window) {
        fields.insert("sliding_window".into(), w.into());
    }
    let c = &HfConfig(&cfg);
    let mut spec = match moe {
        true => moe_from_hf(c)?,
        false => granite_from_hf(c, Arch::GraniteSwa)?,
    };
    spec.arch = Arch::GraniteSwa;
    let layers = spec.num_layers;
    if c.0.get("layer_types").is_none() {
        spec.layer_windows = (0..layers).map(|l| window.filter(|_| l % 4 != 0)).collect();
    }
    spec.attn_sinks = true;
    per_layer_rope(c, &mut spec)?;
    spec.validate()?;
    Ok(spec)
}

/// A swash config's RoPE per layer onto `spec`: `layer_rope_theta` (one base per layer, 0 for
/// none), which candor runs where the global layers share one base and the sliding ones one
/// (`rope_local_theta`), or `no_rope_layers` (1: RoPE, 0: none).
fn per_layer_rope(c: &HfConfig, spec: &mut ModelSpec) -> Result<()> {
    let layers = spec.num_layers;
    let list = |key: &str| -> Result<Option<Vec<f64>>> {
        match c.0.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => {
                let values: Vec<f64> = serde_json::from_value(v.clone())
                    .map_err(|e| ModelError::Config(format!("config.json: `{key}`: {e}")))?;
                if values.len() != layers {
                    return Err(ModelError::Config(format!(
                        "config.json: `{key}` has {} entries for {layers} layers",
                        values.len()
                    )));
                }
                Ok(Some(values))
            }
        }
    };
    if let Some(thetas) = list("layer_rope_theta")? {
        let (mut global, mut local) = (None::<f64>, None::<f64>);
        for (l, &theta) in thetas.iter().enumerate() {
            if theta == 0.0 {
                continue;
            }
            let base = match spec.layer_windows[l].is_some() {
                true => &mut local,
                false => &mut global,
            };
            match *base {
                Some(b) if b != theta => {
                    return Err(ModelError::Config(format!(
                        "config.json: `layer_rope_theta` {thetas:?}: more than one RoPE base \
                         among the global or the sliding layers is not supported"
                    )))
                }
                _ => *base = Some(theta),
            }
        }
        match (global, local) {
            (Some(g), l) => {
                spec.rope.theta = g as f32;
                spec.rope_local_theta = l.filter(|&l| l != g).map(|l| l as f32);
            }
            (None, Some(l)) => spec.rope.theta = l as f32,
            (None, None) => {}
        }
        spec.unrotated_layers = thetas.iter().map(|&t| t == 0.0).collect();
    } else if let Some(flags) = list("no_rope_layers")? {
        spec.unrotated_layers = flags.iter().map(|&f| f == 0.0).collect();
    }
    Ok(())
}

/// llama.cpp's `granite_swa` GGUF: Granite's scalars and permuted q/k, the window with its
/// per-layer pattern (`attention.sliding_window_pattern`, true where a layer slides), the
/// layers that rotate (`attention.rope_pattern`, every one where absent), the sinks
/// (`attn_sinks`); experts where `expert_count` says so (the swash MoE converter's gate and up
/// joined, the experts' in `ffn_gate_up_exps`, the shared MLP's in `ffn_up_shexp`: both read).
pub fn swa_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = base_from_gguf(g, Arch::GraniteSwa, RopeStyle::Interleaved)?;
    apply_scalars(&mut spec, gguf_scalars(g)?);
    let layers = spec.num_layers;
    let window = g
        .get_usize(&k("attention.sliding_window"))
        .filter(|&w| w > 0);
    let sliding = g
        .get_bool_array(&k("attention.sliding_window_pattern"))
        .unwrap_or_else(|| (0..layers).map(|l| l % 4 != 0).collect());
    let rotated = g.get_bool_array(&k("attention.rope_pattern"));
    for (what, len) in [
        ("sliding_window_pattern", sliding.len()),
        ("rope_pattern", rotated.as_ref().map_or(layers, Vec::len)),
    ] {
        if len != layers {
            return Err(ModelError::Config(format!(
                "{a} GGUF: {len} entries of attention.{what} for {layers} layers"
            )));
        }
    }
    spec.layer_windows = sliding.iter().map(|&s| window.filter(|_| s)).collect();
    if let Some(rotated) = rotated {
        spec.unrotated_layers = rotated.iter().map(|&r| !r).collect();
    }
    spec.attn_sinks = true;
    spec.experts = super::experts::from_gguf(g, layers)?;
    spec.validate()?;
    Ok(spec)
}

fn granite_from_hf(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, arch)?;
    if c.bool("mlp_bias", false) {
        return Err(ModelError::Config(
            "config.json: Granite with `mlp_bias` is not supported".into(),
        ));
    }
    apply_scalars(
        &mut spec,
        Scalars {
            embedding: c.opt_f32("embedding_multiplier")?,
            attention: c.opt_f32("attention_multiplier")?,
            residual: c.opt_f32("residual_multiplier")?,
            logits: c.opt_f32("logits_scaling")?,
        },
    );
    Ok(spec)
}

/// A `granite` or `granitemoe` GGUF (the experts of the latter are read by the generic
/// `experts::from_gguf`).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let arch = match a.as_str() {
        "granitemoe" => Arch::GraniteMoe,
        _ => Arch::Granite,
    };
    let mut spec = base_from_gguf(g, arch, RopeStyle::Interleaved)?;
    apply_scalars(&mut spec, gguf_scalars(g)?);
    Ok(spec)
}

/// llama.cpp's `granitehybrid` GGUF (Granite 4.0-H, and Bamba, which its converter writes
/// the same way): the Mamba-2 layers are those with no KV heads in the per-layer
/// `attention.head_count_kv`, their shapes the `ssm.*` keys (`inner_size` over
/// `time_step_rank` heads); RoPE only where `rope.scaling.finetuned` says so (the converter's
/// flag for it: Bamba's), with llama's permuted q/k rows; the gated norm per group of
/// `inner / group_count` channels (llama.cpp's, which transformers' matches with one group);
/// experts where `expert_count` is positive, else the dense FFN.
///
/// Bamba rotates half of each head (transformers hardcodes its `partial_rotary_factor` 0.5;
/// its checkouts' `attn_rotary_emb`, which the converter writes as `rope.dimension_count`) in
/// HF's halves, which the converter's permutation over whole heads does not make adjacent
/// pairs of (llama.cpp then rotates other pairs than the checkout): where the file rotates
/// part of each head, its rows are restored at load and rotated as the checkout is
/// (`ModelSpec::qk_rows_permuted`). A file that gives no part rotates whole heads (a Granite
/// 4.0-H with RoPE; a Bamba converted from a config without `attn_rotary_emb` then runs as
/// llama.cpp runs it).
pub fn hybrid_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = base_from_gguf(g, Arch::GraniteMoeHybrid, RopeStyle::Interleaved)?;
    apply_scalars(&mut spec, gguf_scalars(g)?);
    let layers = super::layers_without_attention(g, &mut spec)?;
    let rotated = g.get_bool(&k("rope.scaling.finetuned")).unwrap_or(true);
    if !rotated {
        spec.unrotated_layers = vec![true; spec.num_layers];
    } else if let Some(part) = g
        .get_usize(&k("rope.dimension_count"))
        .filter(|&d| d < spec.head_dim)
    {
        spec.rotary_dim = Some(part);
        spec.rope.style = RopeStyle::Neox;
        spec.qk_rows_permuted = true;
    }
    spec.mamba = Some(super::mamba2::mamba2_from_gguf(g, layers)?);
    spec.experts = super::experts::from_gguf(g, spec.num_layers)?;
    spec.validate()?;
    Ok(spec)
}

/// Granite's scalars, each None where the file leaves it out (transformers' defaults then:
/// 1, 1/sqrt(head_dim), 1, 1; llama.cpp treats a 0 the same way).
/// MiniCPM's μP scalings are the same (`minicpm`).
pub(super) struct Scalars {
    pub embedding: Option<f32>,
    pub attention: Option<f32>,
    pub residual: Option<f32>,
    pub logits: Option<f32>,
}

/// As llama.cpp's converter writes them: `embedding_scale`, `attention.scale`,
/// `residual_scale`, `logit_scale`.
pub(super) fn gguf_scalars(g: &GgufFile) -> Result<Scalars> {
    let a = g.architecture()?;
    let key = |k: &str| g.get_f64(&format!("{a}.{k}")).map(|v| v as f32);
    Ok(Scalars {
        embedding: key("embedding_scale"),
        attention: key("attention.scale"),
        residual: key("residual_scale"),
        logits: key("logit_scale"),
    })
}

pub(super) fn apply_scalars(spec: &mut ModelSpec, s: Scalars) {
    let set = |v: Option<f32>| v.filter(|&v| v != 0.0 && v != 1.0);
    spec.embed_scale = set(s.embedding);
    spec.residual_scale = set(s.residual);
    spec.logit_divisor = set(s.logits);
    if let Some(a) = s.attention.filter(|&a| a != 0.0) {
        spec.attn_scale = a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Granite 4.0-H-Tiny-shaped config: 40 layers, attention in four of them.
    fn tiny_h() -> serde_json::Value {
        let types: Vec<&str> = (0..40)
            .map(|l| match l % 10 == 5 {
                true => "attention",
                false => "mamba",
            })
            .collect();
        serde_json::json!({
            "model_type": "granitemoehybrid", "hidden_size": 1536, "num_hidden_layers": 40,
            "num_attention_heads": 12, "num_key_value_heads": 4, "intermediate_size": 512,
            "vocab_size": 100352, "rms_norm_eps": 1e-5, "max_position_embeddings": 131072,
            "layer_types": types, "mamba_n_heads": 48, "mamba_d_head": 64,
            "mamba_n_groups": 1, "mamba_d_state": 128, "mamba_d_conv": 4, "mamba_expand": 2,
            "num_local_experts": 64, "num_experts_per_tok": 6, "shared_intermediate_size": 1024,
            "position_embedding_type": "nope", "embedding_multiplier": 12.0,
            "attention_multiplier": 0.0078125, "residual_multiplier": 0.22,
            "logits_scaling": 6.0, "tie_word_embeddings": true
        })
    }

    #[test]
    fn reads_a_granite_4_h_config() {
        let spec = super::super::spec_from_hf(&tiny_h()).unwrap();
        assert_eq!(spec.arch, Arch::GraniteMoeHybrid);
        let m = spec.mamba.as_ref().unwrap();
        assert_eq!((m.heads, m.head_dim, m.groups, m.state), (48, 64, 1, 128));
        assert_eq!(
            (m.inner(), m.conv_channels(), m.norm_group),
            (3072, 3328, 3072)
        );
        assert_eq!(m.layers.iter().filter(|&&l| !l).count(), 4);
        assert!(spec.keeps_sequence_state() && spec.unrotated_layers.iter().all(|&u| u));
        // Only the four attention layers hold KV rows.
        assert_eq!(spec.cache_layers().total, 4);
        let moe = spec.experts.as_ref().unwrap();
        assert_eq!((moe.num_experts, moe.shared_intermediate_size), (64, 1024));
        assert_eq!(spec.embed_scale, Some(12.0));
        // -Micro: no experts, the shared MLP is the FFN; RoPE where the config says so.
        let mut micro = tiny_h();
        micro["num_local_experts"] = 0.into();
        micro["position_embedding_type"] = "rope".into();
        let spec = super::super::spec_from_hf(&micro).unwrap();
        assert!(spec.experts.is_none() && spec.unrotated_layers.is_empty());
        assert_eq!(spec.intermediate_size, 1024);
    }

    /// A swash config: windows where `layer_types` says (every layer but each fourth from the
    /// first where it is silent), sinks, RoPE per layer; bases beyond one for the global and one
    /// for the sliding layers refused.
    #[test]
    fn granite_swa_windows_sinks_and_rope_per_layer() {
        let mut c = serde_json::json!({
            "model_type": "granite_swa", "hidden_size": 2560, "num_hidden_layers": 8,
            "num_attention_heads": 20, "num_key_value_heads": 4, "intermediate_size": 8192,
            "vocab_size": 100352, "rms_norm_eps": 1e-5, "max_position_embeddings": 8192,
            "rope_theta": 10000.0, "attention_multiplier": 0.0078125,
            "embedding_multiplier": 12.0, "residual_multiplier": 0.22, "logits_scaling": 8.0,
            "layer_rope_theta": [1e6, 1e4, 1e4, 0, 1e6, 1e4, 1e4, 1e4]
        });
        let spec = super::super::spec_from_hf(&c).unwrap();
        assert_eq!(spec.arch, Arch::GraniteSwa);
        assert!(spec.attn_sinks && spec.experts.is_none());
        assert_eq!(
            spec.layer_windows[..5],
            [None, Some(128), Some(128), Some(128), None]
        );
        assert_eq!((spec.rope.theta, spec.rope_local_theta), (1e6, Some(1e4)));
        assert!(spec.unrotated_layers[3] && !spec.unrotated_layers[4]);
        assert_eq!(spec.attn_scale, 0.0078125);
        c["layer_rope_theta"][5] = 5e4.into();
        let e = super::super::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("more than one RoPE base"), "{e}");
        // llama.cpp's converter's key for the layers without RoPE.
        c["layer_rope_theta"] = serde_json::Value::Null;
        c["no_rope_layers"] = serde_json::json!([1, 1, 1, 0, 1, 1, 1, 0]);
        let spec = super::super::spec_from_hf(&c).unwrap();
        assert_eq!(spec.unrotated_layers.iter().filter(|&&u| u).count(), 2);
        assert_eq!(spec.rope_local_theta, None);
        c["model_type"] = "granitemoe_swa".into();
        c["num_local_experts"] = 8.into();
        c["num_experts_per_tok"] = 2.into();
        c["shared_intermediate_size"] = 1024.into();
        let moe = super::super::spec_from_hf(&c).unwrap().experts.unwrap();
        assert_eq!((moe.num_experts, moe.shared_intermediate_size), (8, 1024));
    }

    /// llama.cpp's `granite_swa` keys: the window per layer, the layers that rotate, the
    /// multipliers; a pattern of another length refused.
    #[test]
    fn granite_swa_gguf_reads_its_patterns() {
        use candle_core::quantized::gguf_file::Value as V;
        let flags = |f: &[bool]| V::Array(f.iter().map(|&b| V::Bool(b)).collect());
        let file = |rope: &[bool]| {
            let meta = vec![
                ("general.architecture", V::String("granite_swa".into())),
                ("granite_swa.embedding_length", V::U32(2560)),
                ("granite_swa.feed_forward_length", V::U32(8192)),
                ("granite_swa.block_count", V::U32(4)),
                ("granite_swa.attention.head_count", V::U32(20)),
                ("granite_swa.attention.head_count_kv", V::U32(4)),
                ("granite_swa.vocab_size", V::U32(100352)),
                ("granite_swa.attention.sliding_window", V::U32(128)),
                (
                    "granite_swa.attention.sliding_window_pattern",
                    flags(&[false, true, true, true]),
                ),
                ("granite_swa.attention.rope_pattern", flags(rope)),
                ("granite_swa.attention.scale", V::F32(0.0078125)),
                ("granite_swa.embedding_scale", V::F32(12.0)),
            ];
            let g = crate::weights::gguf::metadata_only(&format!("swa-{}", rope.len()), &meta);
            swa_from_gguf(&g)
        };
        let spec = file(&[true, true, false, true]).unwrap();
        assert_eq!(spec.arch, Arch::GraniteSwa);
        assert_eq!(spec.layer_windows, [None, Some(128), Some(128), Some(128)]);
        assert_eq!(spec.unrotated_layers, [false, false, true, false]);
        assert!(spec.attn_sinks && spec.experts.is_none());
        assert_eq!((spec.attn_scale, spec.embed_scale), (0.0078125, Some(12.0)));
        let e = file(&[true, true]).unwrap_err().to_string();
        assert!(e.contains("2 entries of attention.rope_pattern"), "{e}");
    }

    /// ibm-ai-platform/Bamba-9B-v2's config.json (its shapes and attention layers).
    #[test]
    fn bamba_attends_in_its_listed_layers_with_half_head_rope() {
        let mut c = serde_json::json!({
            "architectures": ["BambaForCausalLM"], "model_type": "bamba",
            "attn_layer_indices": [9, 18, 27], "hidden_size": 4096, "intermediate_size": 14336,
            "mamba_chunk_size": 256, "mamba_conv_bias": true, "mamba_d_conv": 4,
            "mamba_d_head": 32, "mamba_d_state": 128, "mamba_expand": 2, "mamba_n_groups": 1,
            "mamba_n_heads": 256, "num_attention_heads": 32, "num_hidden_layers": 32,
            "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "vocab_size": 128256
        });
        let spec = super::super::spec_from_hf(&c).unwrap();
        assert_eq!(spec.arch, Arch::Bamba);
        assert_eq!((spec.rotary_dim, spec.cache_layers().total), (Some(64), 3));
        let m = spec.mamba.unwrap();
        assert_eq!(
            (m.heads, m.head_dim, m.state, m.norm_group),
            (256, 32, 128, 8192)
        );
        assert!(!m.layers[9] && m.layers[10]);
        c["attn_layer_indices"] = serde_json::json!([32]);
        let e = super::super::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("attention layer 32"), "{e}");
    }
}
