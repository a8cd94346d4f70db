//! Arcee's AFMoE (`afmoe`: Trinity Nano, Mini, Large): llama's attention with per-head q/k
//! RMSNorms and its output times the sigmoid of a gate product of its own (`gate_proj`, from
//! the layer's normed input), three sliding-window layers with RoPE to one global layer
//! without it; RMSNorms before and after both attention and FFN (Gemma's sandwich, plain
//! weights); a SwiGLU MLP in the first `num_dense_layers` layers, DeepSeek-V3's experts in the
//! others (sigmoid scores chosen with a correction bias, `expert_bias`; the chosen weights
//! normalized and times `route_scale`; a shared expert of `num_shared_experts` experts'
//! width); the embeddings times sqrt(hidden) where `mup_enabled` (llama.cpp's `afmoe` GGUFs
//! always). llama.cpp stores q/k unpermuted and rotates them as NeoX does.
use super::experts::{sigmoid_experts, ExpertCounts};
use super::{base_from_gguf, base_from_hf, sliding_pattern};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `AfmoeConfig` defaults where config.json is silent.
const DEFAULT_DENSE_LAYERS: usize = 1;
const DEFAULT_EXPERTS: usize = 64;
const DEFAULT_EXPERTS_PER_TOKEN: usize = 6;
const DEFAULT_SHARED: usize = 2;
const DEFAULT_EXPERT_WIDTH: usize = 1408;
const DEFAULT_GLOBAL_EVERY: usize = 4;
/// llama.cpp's fixed interval of layers without RoPE (and default window pattern).
const GGUF_GLOBAL_EVERY: usize = 4;

/// What both readers set: the attention's norms and gate, the sandwich norms, RoPE in the
/// sliding layers only.
fn afmoe_common(spec: &mut ModelSpec) {
    spec.qk_norm = true;
    spec.attn_output_gate = true;
    spec.sandwich_norms = true;
    spec.unrotated_layers = spec.layer_windows.iter().map(Option::is_none).collect();
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Afmoe)?;
    let layers = spec.num_layers;
    if c.0.get("layer_types").is_none() {
        let every = c
            .opt_usize("global_attn_every_n_layers")?
            .unwrap_or(DEFAULT_GLOBAL_EVERY)
            .max(1);
        spec.layer_windows = sliding_pattern(layers, every, c.opt_usize("sliding_window")?);
    }
    afmoe_common(&mut spec);
    if c.bool("mup_enabled", false) {
        spec.embed_scale = Some((spec.hidden_size as f32).sqrt());
    }
    let dense = c
        .opt_usize("num_dense_layers")?
        .unwrap_or(DEFAULT_DENSE_LAYERS);
    let width = c
        .opt_usize("moe_intermediate_size")?
        .unwrap_or(DEFAULT_EXPERT_WIDTH);
    let shared = c.opt_usize("num_shared_experts")?.unwrap_or(DEFAULT_SHARED);
    spec.experts = Some(sigmoid_experts(
        (0..layers).map(|l| l >= dense).collect(),
        ExpertCounts {
            experts: c.opt_usize("num_experts")?.unwrap_or(DEFAULT_EXPERTS),
            per_token: c
                .opt_usize("num_experts_per_tok")?
                .unwrap_or(DEFAULT_EXPERTS_PER_TOKEN),
            width,
            shared_width: shared * width,
            groups: 1,
            topk_groups: 1,
            // transformers always normalizes; the original release's config says so too.
            normalize: c.bool("route_norm", true),
            scaling: c.f32("route_scale", 1.0)?,
        },
    ));
    spec.validate()?;
    Ok(spec)
}

/// llama.cpp's `afmoe` GGUF: the window over `sliding_window_pattern` layers (4 unless the
/// file says), RoPE skipped every fourth layer, the experts as DeepSeek's converter writes
/// them (`leading_dense_block_count`, `exp_probs_b`, `expert_weights_norm` / `_scale`),
/// scored by sigmoid unless the file names a gating function.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = base_from_gguf(g, Arch::Afmoe, RopeStyle::Neox)?;
    let layers = spec.num_layers;
    let window = g
        .get_usize(&k("attention.sliding_window"))
        .filter(|&w| w > 0);
    let pattern = g
        .get_usize(&k("attention.sliding_window_pattern"))
        .unwrap_or(GGUF_GLOBAL_EVERY)
        .max(1);
    spec.layer_windows = sliding_pattern(layers, pattern, window);
    afmoe_common(&mut spec);
    spec.unrotated_layers = (0..layers)
        .map(|l| (l + 1) % GGUF_GLOBAL_EVERY == 0)
        .collect();
    spec.embed_scale = Some((spec.hidden_size as f32).sqrt());
    spec.experts = Some(super::deepseek::sigmoid_gguf_experts(g, layers)?);
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// arcee-ai/Trinity-Mini's config.json (its shapes and layer plan).
    #[test]
    fn trinity_mini_rotates_its_sliding_layers_and_routes_past_its_dense_ones() {
        let c = serde_json::json!({
            "architectures": ["AfmoeForCausalLM"], "model_type": "afmoe",
            "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 1024,
            "num_hidden_layers": 32, "num_dense_layers": 2, "num_attention_heads": 32,
            "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128,
            "num_experts_per_tok": 8, "num_shared_experts": 1, "route_scale": 2.826,
            "route_norm": true, "global_attn_every_n_layers": 4, "sliding_window": 2048,
            "mup_enabled": true, "rms_norm_eps": 1e-5, "rope_theta": 10000,
            "max_position_embeddings": 131072, "vocab_size": 200192,
            "tie_word_embeddings": false
        });
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert_eq!(spec.arch, Arch::Afmoe);
        assert_eq!(
            spec.layer_windows[..4],
            [Some(2048), Some(2048), Some(2048), None]
        );
        assert_eq!(spec.unrotated_layers[..4], [false, false, false, true]);
        assert!(spec.qk_norm && spec.attn_output_gate && spec.sandwich_norms);
        assert_eq!(spec.embed_scale, Some(2048f32.sqrt()));
        let moe = spec.experts.unwrap();
        assert!(!moe.layers[1] && moe.layers[2] && moe.correction_bias && moe.normalize);
        assert_eq!(
            (
                moe.num_experts,
                moe.experts_per_token,
                moe.shared_intermediate_size
            ),
            (128, 8, 1024)
        );
        assert_eq!(moe.routed_scaling, 2.826);
    }
}
