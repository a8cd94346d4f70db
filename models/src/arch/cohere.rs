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
use crate::spec::{Arch, HfConfig, ModelSpec};
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
