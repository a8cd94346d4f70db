//! Cohere's Command R family (`cohere`: Command R, Aya Expanse / Aya 23) and its successor
//! (`cohere2`: Command R7B, Command A): parallel blocks (`x + attn(ln(x)) + mlp(ln(x))`, one
//! norm per layer) of LayerNorms without bias, RoPE over interleaved pairs (transformers'
//! Cohere `rotate_half` takes even and odd dimensions, as llama.cpp's "normal" RoPE), tied
//! embeddings and logits multiplied by `logit_scale`. `cohere2` runs three sliding-window layers
//! to one global, and only the sliding ones rotate: the global layers attend without RoPE.
//! Command R+ (08-2024) adds LayerNorms of q and k before RoPE, each head its own weights.
use super::{base_from_gguf, base_from_hf, layer_norm_eps_from_gguf, sliding_pattern};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, ExpertScoring, HfConfig, MixtureOfExperts, ModelSpec, WeightScale};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;

/// Three sliding layers to one global: transformers' default `sliding_window_pattern` and the
/// one llama.cpp fixes for `cohere2`.
const PATTERN: usize = 4;
/// transformers' defaults where config.json is silent.
const DEFAULT_LOGIT_SCALE: f32 = 0.0625;
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_WINDOW: usize = 4096;

fn cohere_common(spec: &mut ModelSpec, logit_scale: f32) -> Result<()> {
    if !(logit_scale.is_finite() && logit_scale > 0.0) {
        return Err(ModelError::Config(format!(
            "Cohere: logit_scale {logit_scale} must be positive"
        )));
    }
    spec.layer_norm = true;
    spec.parallel_block = true;
    spec.rope.style = RopeStyle::Interleaved;
    spec.logit_divisor = Some(1.0 / logit_scale).filter(|&d| d != 1.0);
    Ok(())
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Cohere)?;
    per_head_qk_norms(&mut spec, c.bool("use_qk_norm", false));
    spec.rms_eps = c.f32("layer_norm_eps", DEFAULT_EPS)?;
    cohere_common(&mut spec, c.f32("logit_scale", DEFAULT_LOGIT_SCALE)?)?;
    Ok(spec)
}

pub fn cohere2_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Cohere2)?;
    spec.rms_eps = c.f32("layer_norm_eps", DEFAULT_EPS)?;
    if c.0.get("layer_types").is_none() {
        // Older configs: the pattern (transformers' `sliding_window_pattern`, 4 by default)
        // and the window (4096 by default).
        let window = c.opt_usize("sliding_window")?.unwrap_or(DEFAULT_WINDOW);
        let pattern = c.opt_usize("sliding_window_pattern")?.unwrap_or(PATTERN);
        if pattern == 0 {
            return Err(ModelError::Config(
                "config.json: `sliding_window_pattern` is 0".into(),
            ));
        }
        spec.layer_windows = sliding_pattern(spec.num_layers, pattern, Some(window));
    }
    // transformers rotates q and k only in the layers with a window.
    spec.unrotated_layers = spec.layer_windows.iter().map(Option::is_none).collect();
    cohere_common(&mut spec, c.f32("logit_scale", DEFAULT_LOGIT_SCALE)?)?;
    Ok(spec)
}

/// Cohere's mixture of experts (`cohere2_moe`): Command R7B's parallel blocks (LayerNorms, or
/// RMSNorms where `rms_norm_eps` is set) and windows; the first layers dense
/// (`mlp_layer_types`, or `first_k_dense_replace`) MLPs of `prefix_dense_intermediate_size`,
/// global with RoPE where `prefix_dense_sliding_window_pattern` is 1; the others top-k of
/// `num_experts` experts of `intermediate_size`, weighted by a softmax over the chosen logits
/// or by their sigmoids (normalized where `norm_topk_prob`), beside `num_shared_experts`
/// shared ones, the two summed or averaged (`shared_expert_combination_strategy`: the average
/// folds its half into the routed weights and the shared experts' output product).
pub fn cohere2_moe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = cohere2_from_hf(c)?;
    spec.arch = Arch::Cohere2Moe;
    let layers = spec.num_layers;
    let first_dense = c.opt_usize("first_k_dense_replace")?.unwrap_or(0);
    let prefix_pattern = c
        .opt_usize("prefix_dense_sliding_window_pattern")?
        .unwrap_or(1)
        .max(1);
    let dense: Vec<bool> = match c.0.get("mlp_layer_types").and_then(|v| v.as_array()) {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("dense") => Ok(true),
                Some("sparse") => Ok(false),
                _ => Err(ModelError::Config(format!(
                    "config.json: unknown `mlp_layer_types` entry {t}"
                ))),
            })
            .collect::<Result<_>>()?,
        None => (0..layers).map(|l| l < first_dense).collect(),
    };
    if dense.len() != layers {
        return Err(ModelError::Config(format!(
            "config.json: {} `mlp_layer_types` for {layers} layers",
            dense.len()
        )));
    }
    if c.0.get("layer_types").is_none() && first_dense > 0 {
        // The dense prefix keeps a pattern of its own; the rest counts from its end.
        let window = c.opt_usize("sliding_window")?.unwrap_or(DEFAULT_WINDOW);
        let pattern = c
            .opt_usize("sliding_window_pattern")?
            .unwrap_or(PATTERN)
            .max(1);
        let slides = |i: usize, p: usize| (!(i + 1).is_multiple_of(p)).then_some(window);
        spec.layer_windows = (0..layers)
            .map(|l| match l < first_dense {
                true => slides(l, prefix_pattern),
                false => slides(l - first_dense, pattern),
            })
            .collect();
    }
    // Global layers attend without RoPE, but for a dense prefix of global layers.
    let forced = |l: usize| dense[l] && prefix_pattern == 1;
    spec.unrotated_layers = (0..layers)
        .map(|l| spec.layer_windows[l].is_none() && !forced(l))
        .collect();
    if let Some(eps) = c.opt_f32("rms_norm_eps")? {
        spec.layer_norm = false;
        spec.rms_eps = eps;
    }
    let width = c.usize("intermediate_size")?;
    if dense.contains(&true) {
        spec.intermediate_size = c
            .opt_usize("prefix_dense_intermediate_size")?
            .unwrap_or(width);
    }
    let mut moe = super::experts::softmax_top_k(
        c.usize("num_experts")?,
        c.usize("num_experts_per_tok")?,
        width,
        true,
        dense.iter().map(|&d| !d).collect(),
    );
    match c.str("expert_selection_fn").unwrap_or("softmax") {
        "softmax" => {}
        "sigmoid" => {
            moe.scoring = crate::spec::ExpertScoring::Sigmoid;
            moe.normalize = c.bool("norm_topk_prob", true);
        }
        other => {
            return Err(ModelError::Config(format!(
                "config.json: unknown `expert_selection_fn` {other}"
            )))
        }
    }
    let shared = c.opt_usize("num_shared_experts")?.unwrap_or(0);
    moe.shared_intermediate_size = shared * width;
    match c
        .str("shared_expert_combination_strategy")
        .unwrap_or("average")
    {
        _ if shared == 0 => {}
        "sum" => {}
        "average" => average_with_shared(&mut spec, &mut moe),
        other => {
            return Err(ModelError::Config(format!(
                "config.json: unknown `shared_expert_combination_strategy` {other}"
            )))
        }
    }
    spec.experts = Some(moe);
    spec.validate()?;
    Ok(spec)
}

/// The routed experts' output averaged with the shared ones' (Cohere2-MoE's "average"
/// strategy), its half folded into the routed weights and the shared down projection.
fn average_with_shared(spec: &mut ModelSpec, moe: &mut MixtureOfExperts) {
    moe.routed_scaling *= 0.5;
    spec.weight_scales.push(WeightScale {
        tensor: "ffn_down_shexp.weight",
        runs: vec![(usize::MAX, 0.5)],
    });
}

/// A llama.cpp `cohere2moe` GGUF: Command R7B's parallel blocks, RMSNorms where the file
/// gives `attention.layer_norm_rms_epsilon` (LayerNorms otherwise, as llama.cpp reads it), the
/// window per layer in `attention.sliding_window_pattern`, RoPE in the sliding layers and in a
/// dense prefix of global layers (`leading_dense_block_count`), the experts scored by sigmoid
/// unless `expert_gating_func` says softmax (then over the chosen logits, normalized, as
/// transformers runs them), averaged with the shared ones (the converter's only strategy).
pub fn cohere2_moe_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = gguf_common(g, Arch::Cohere2Moe)?;
    if let Some(eps) = g.get_f64(&k("attention.layer_norm_rms_epsilon")) {
        spec.layer_norm = false;
        spec.rms_eps = eps as f32;
    }
    let layers = spec.num_layers;
    let window = g
        .get_usize(&k("attention.sliding_window"))
        .filter(|&w| w > 0)
        .unwrap_or(DEFAULT_WINDOW);
    spec.layer_windows = match g.get_bool_array(&k("attention.sliding_window_pattern")) {
        Some(sliding) if sliding.len() == layers => {
            sliding.iter().map(|&s| s.then_some(window)).collect()
        }
        Some(sliding) => {
            return Err(ModelError::Config(format!(
                "{a}: {} entries of attention.sliding_window_pattern for {layers} layers",
                sliding.len()
            )))
        }
        None => sliding_pattern(layers, PATTERN, Some(window)),
    };
    let mut moe = super::deepseek::gguf_experts(g, layers)?
        .ok_or_else(|| ModelError::Config(format!("{a} GGUF without `{a}.expert_count`")))?;
    match g.get_usize(&k("expert_gating_func")) {
        None => moe.scoring = ExpertScoring::Sigmoid,
        Some(_) if moe.scoring == ExpertScoring::Softmax => moe.normalize = true,
        Some(_) => {}
    }
    let dense = moe.layers.iter().take_while(|&&e| !e).count();
    let global_prefix = spec.layer_windows[..dense].iter().all(Option::is_none);
    spec.unrotated_layers = (0..layers)
        .map(|l| spec.layer_windows[l].is_none() && !(l < dense && global_prefix))
        .collect();
    if moe.shared_intermediate_size > 0 {
        average_with_shared(&mut spec, &mut moe);
    }
    spec.experts = Some(moe);
    spec.validate()?;
    Ok(spec)
}

/// A `command-r` GGUF (llama.cpp's name for `cohere`): per-head q/k norms where the file has
/// them (llama.cpp reads them only in models of 64 layers or more, Command R+'s; candor
/// wherever they are).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = gguf_common(g, Arch::Cohere)?;
    per_head_qk_norms(&mut spec, g.contains("blk.0.attn_q_norm.weight"));
    Ok(spec)
}

/// Command R+ (08-2024, `use_qk_norm`): LayerNorms of q and k before RoPE, each head its own
/// weights.
fn per_head_qk_norms(spec: &mut ModelSpec, on: bool) {
    spec.qk_norm = on;
    spec.qk_norm_per_head = on;
}

/// A `cohere2` GGUF: the window from `cohere2.attention.sliding_window`, the pattern fixed.
pub fn cohere2_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = gguf_common(g, Arch::Cohere2)?;
    let window = g
        .get_usize("cohere2.attention.sliding_window")
        .filter(|&w| w > 0)
        .unwrap_or(DEFAULT_WINDOW);
    spec.layer_windows = sliding_pattern(spec.num_layers, PATTERN, Some(window));
    spec.unrotated_layers = spec.layer_windows.iter().map(Option::is_none).collect();
    Ok(spec)
}

fn gguf_common(g: &GgufFile, arch: Arch) -> Result<ModelSpec> {
    let a = g.architecture()?;
    // Cohere's GGUFs keep HF's interleaved q/k rows: no permutation to undo.
    let mut spec = base_from_gguf(g, arch, RopeStyle::Interleaved)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    let logit_scale = g
        .get_f64(&format!("{a}.logit_scale"))
        .map_or(DEFAULT_LOGIT_SCALE, |s| s as f32);
    cohere_common(&mut spec, logit_scale)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> serde_json::Value {
        let mut cfg = serde_json::json!({
            "model_type": "cohere2", "vocab_size": 64, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 8, "num_attention_heads": 4,
            "num_key_value_heads": 2, "logit_scale": 0.25, "layer_norm_eps": 1e-5,
        });
        if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), extra.as_object()) {
            cfg.extend(extra.clone());
        }
        cfg
    }

    #[test]
    fn cohere2_moe_layers_routing_and_shared_average() {
        let mut c = config(serde_json::json!({
            "model_type": "cohere2_moe", "num_hidden_layers": 6, "first_k_dense_replace": 2,
            "prefix_dense_intermediate_size": 128, "num_experts": 8, "num_experts_per_tok": 2,
            "num_shared_experts": 1, "expert_selection_fn": "sigmoid", "norm_topk_prob": false,
            "sliding_window": 512, "rms_norm_eps": 1e-6
        }));
        let spec = super::super::spec_from_hf(&c).unwrap();
        assert_eq!(spec.arch, Arch::Cohere2Moe);
        // Two dense global layers with RoPE, then three sliding to one global.
        assert_eq!(
            spec.layer_windows,
            [None, None, Some(512), Some(512), Some(512), None]
        );
        assert_eq!(
            spec.unrotated_layers,
            [false, false, false, false, false, true]
        );
        assert!(!spec.layer_norm && spec.parallel_block);
        assert_eq!((spec.rms_eps, spec.intermediate_size), (1e-6, 128));
        let moe = spec.experts.as_ref().unwrap();
        assert_eq!(moe.scoring, crate::spec::ExpertScoring::Sigmoid);
        assert!(!moe.normalize && !moe.layers[1] && moe.layers[2]);
        assert_eq!(
            (moe.shared_intermediate_size, moe.routed_scaling),
            (64, 0.5)
        );
        assert_eq!(spec.weight_scales[0].tensor, "ffn_down_shexp.weight");
        c["shared_expert_combination_strategy"] = "max".into();
        let e = super::super::spec_from_hf(&c).unwrap_err().to_string();
        assert!(e.contains("shared_expert_combination_strategy"), "{e}");
    }

    #[test]
    fn cohere2_rotates_only_its_sliding_layers() {
        let cfg = config(serde_json::json!({"sliding_window": 16}));
        let spec = cohere2_from_hf(&HfConfig(&cfg)).unwrap();
        let global: Vec<bool> = spec.layer_windows.iter().map(Option::is_none).collect();
        assert_eq!(
            global,
            [false, false, false, true, false, false, false, true]
        );
        assert_eq!(spec.unrotated_layers, global);
        assert_eq!(spec.layer_windows[0], Some(16));
        assert_eq!(spec.logit_divisor, Some(4.0));
        assert!(spec.layer_norm && spec.parallel_block);
        assert_eq!(spec.rope.style, RopeStyle::Interleaved);
        spec.validate().unwrap();
    }

    #[test]
    fn command_r_plus_norms_q_and_k_per_head() {
        let mut cfg = config(serde_json::json!({"use_qk_norm": true}));
        cfg["model_type"] = "cohere".into();
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert!(spec.qk_norm && spec.qk_norm_per_head && !spec.qk_norm_whole);
        spec.validate().unwrap();
    }

    #[test]
    fn bad_scales_are_refused() {
        let cfg = config(serde_json::json!({"logit_scale": 0.0}));
        assert!(cohere2_from_hf(&HfConfig(&cfg)).is_err());
    }
}
