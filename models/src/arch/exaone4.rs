//! EXAONE 4.0 (`exaone4`): OLMo 2's layout (norms after attention and after the FFN only) with
//! per-head q/k norms. Where the model has a sliding window (the 32B), its layers run three
//! sliding to one global, and only the sliding layers rotate: the global ones attend without
//! RoPE. Without a window (the 1.2B) every layer is global and rotates.
use super::{base_from_gguf, base_from_hf, sliding_pattern};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// Three sliding layers to one global: transformers' default `sliding_window_pattern` and the
/// one llama.cpp fixes.
const PATTERN: usize = 4;
/// The window of the 32B: transformers' default where config.json is silent, and the one
/// llama.cpp assumes for a 64-layer GGUF that does not say it.
const WINDOW_OF_64_LAYERS: usize = 4096;

/// `windowed`: whether the model has a sliding window at all; then its global layers are the
/// ones without RoPE (transformers tests the configured window, not whether a layer uses it).
fn exaone4_common(spec: &mut ModelSpec, windowed: bool) {
    spec.qk_norm = true;
    spec.sandwich_norms = true;
    spec.pre_norms = false;
    if windowed {
        spec.unrotated_layers = spec.layer_windows.iter().map(Option::is_none).collect();
    }
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Exaone4)?;
    // transformers' `Exaone4Config` defaults an absent `sliding_window` to 4096; only an
    // explicit null turns the window off.
    let window = match c.0.get("sliding_window") {
        None => Some(WINDOW_OF_64_LAYERS),
        Some(_) => c.opt_usize("sliding_window")?,
    };
    if c.0.get("layer_types").is_none() {
        if let Some(w) = window {
            spec.layer_windows = hf_windows(c, spec.num_layers, w)?;
        }
    }
    exaone4_common(&mut spec, window.is_some());
    Ok(spec)
}

/// K-EXAONE (`exaone_moe`): EXAONE 4's attention in pre-norm layers (OLMoE's), with
/// DeepSeek-V3's experts (sigmoid scores chosen with a correction bias, shared experts of
/// `num_shared_experts` times an expert's width) past the dense layers `mlp_layer_types`
/// lists (or `first_k_dense_replace`).
pub fn moe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = from_hf(c)?;
    spec.arch = Arch::ExaoneMoe;
    spec.sandwich_norms = false;
    spec.pre_norms = true;
    // DeepSeek's names for the experts' numbers.
    let cfg = c.with_keys(
        &[
            ("num_experts", "n_routed_experts"),
            ("num_shared_experts", "n_shared_experts"),
        ],
        &[("first_k_dense_replace", 1.into())],
    );
    let c = &HfConfig(&cfg);
    let mut experts = super::deepseek::experts(c, true, spec.num_layers)?.ok_or_else(|| {
        ModelError::Config("config.json: exaone_moe without `num_experts`".into())
    })?;
    let first_dense = c.opt_usize("first_k_dense_replace")?.unwrap_or(1);
    experts.layers = super::deepseek::listed_moe_layers(c, spec.num_layers, first_dense)?;
    spec.experts = Some(experts);
    Ok(spec)
}

/// The layers' windows from `sliding_window_pattern`: every n-th layer global (an integer), or
/// a string of `L` (local) and `G` (global) repeated over the layers.
fn hf_windows(c: &HfConfig, layers: usize, window: usize) -> Result<Vec<Option<usize>>> {
    let bad = |v: &serde_json::Value| {
        ModelError::Config(format!(
            "config.json: `sliding_window_pattern` must be a positive integer or a string of \
             L and G, got {v}"
        ))
    };
    match c.0.get("sliding_window_pattern") {
        None | Some(serde_json::Value::Null) => Ok(sliding_pattern(layers, PATTERN, Some(window))),
        Some(v @ serde_json::Value::String(s)) => {
            let kinds: Vec<char> = s.chars().collect();
            if kinds.is_empty() || kinds.iter().any(|k| !matches!(k, 'L' | 'G')) {
                return Err(bad(v));
            }
            Ok((0..layers)
                .map(|l| (kinds[l % kinds.len()] == 'L').then_some(window))
                .collect())
        }
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(sliding_pattern(layers, n as usize, Some(window))),
            _ => Err(bad(v)),
        },
    }
}

/// An `exaone4` GGUF: NeoX RoPE (its Q/K rows are not permuted); a window where
/// `exaone4.attention.sliding_window` gives one or the model has the 32B's 64 layers (llama.cpp
/// assumes 4096 there). llama.cpp runs a window only for 64 layers; a window the file states is
/// taken for any depth here, as transformers runs the checkout it came from.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Exaone4, RopeStyle::Neox)?;
    let window = g
        .get_usize("exaone4.attention.sliding_window")
        .filter(|&w| w > 0)
        .or((spec.num_layers == 64).then_some(WINDOW_OF_64_LAYERS));
    if let Some(w) = window {
        spec.layer_windows = sliding_pattern(spec.num_layers, PATTERN, Some(w));
    }
    exaone4_common(&mut spec, window.is_some());
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(cfg: serde_json::Value) -> Result<Vec<Option<usize>>> {
        hf_windows(&HfConfig(&cfg), 8, 16)
    }

    #[test]
    fn the_window_pattern_is_an_interval_or_a_string() {
        let every_fourth = windows(serde_json::json!({})).unwrap();
        assert_eq!(every_fourth[3], None);
        assert_eq!(every_fourth[2], Some(16));
        let n = windows(serde_json::json!({"sliding_window_pattern": 2})).unwrap();
        assert_eq!(n, [Some(16), None].repeat(4));
        let s = windows(serde_json::json!({"sliding_window_pattern": "LLG"})).unwrap();
        assert_eq!(s[2], None);
        assert_eq!(s[5], None);
        assert_eq!(s[6], Some(16));
        for bad in [
            serde_json::json!(0),
            serde_json::json!("LXG"),
            serde_json::json!(""),
        ] {
            assert!(windows(serde_json::json!({ "sliding_window_pattern": bad })).is_err());
        }
    }

    #[test]
    fn global_layers_run_without_rope_when_a_window_is_configured() {
        let cfg = serde_json::json!({
            "model_type": "exaone4", "vocab_size": 32, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
            "sliding_window": 8,
        });
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!(spec.unrotated_layers, [false, false, false, true]);
        let mut plain = cfg.clone();
        plain["sliding_window"] = serde_json::Value::Null;
        let spec = from_hf(&HfConfig(&plain)).unwrap();
        assert!(spec.unrotated_layers.is_empty());
        assert!(spec.layer_windows.iter().all(Option::is_none));
        // As transformers: a silent config has the 32B's window; a configured window with
        // only full layers still turns RoPE off on them.
        let mut silent = cfg.clone();
        silent.as_object_mut().unwrap().remove("sliding_window");
        let spec = from_hf(&HfConfig(&silent)).unwrap();
        assert_eq!(spec.layer_windows[0], Some(WINDOW_OF_64_LAYERS));
        let mut all_full = cfg.clone();
        all_full["layer_types"] = serde_json::json!(vec!["full_attention"; 4]);
        let spec = from_hf(&HfConfig(&all_full)).unwrap();
        assert_eq!(spec.unrotated_layers, [true; 4]);
    }
}
