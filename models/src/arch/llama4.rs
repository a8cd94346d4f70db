//! Llama 4 (`llama4_text`, the text model of `llama4`'s Scout and Maverick; llama.cpp's
//! `llama4`): grouped-query attention whose every fourth layer runs no RoPE (NoPE) and attends
//! to the whole context with its queries tempered by position, while the other layers rotate
//! interleaved pairs (llama3-scaled frequencies), norm q and k by their RMS without weights
//! (`use_qk_norm`) and attend within chunks of 8,192 positions (`attention_chunk_size`);
//! mixture-of-experts layers (all in Scout, every other one in Maverick) where one expert a
//! token is chosen by sigmoid score, the score scaling that expert's input, beside a shared
//! expert of the same width; dense layers of `intermediate_size_mlp`.
use super::experts::softmax_top_k;
use super::smollm3::{every_nth, rotating_flags};
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, AttnTemperature, ExpertScoring, HfConfig, MixtureOfExperts, ModelSpec};
use crate::weights::gguf::GgufFile;
use serde_json::Value;

/// The released models' NoPE interval, attention chunk and temperature (`floor_scale`,
/// `attn_scale`): llama.cpp's fixed values, transformers' defaults.
const NO_ROPE_INTERVAL: usize = 4;
const CHUNK: usize = 8192;
const FLOOR_SCALE: usize = 8192;
const ATTN_SCALE: f32 = 0.1;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    // `layer_types` names the chunked layers, which `attention_chunk_size` and the NoPE layers
    // say already; the base would read it as sliding windows.
    let mut cfg = c.0.clone();
    if let Some(o) = cfg.as_object_mut() {
        o.remove("layer_types");
    }
    let c = &HfConfig(&cfg);
    let mut spec = base_from_hf(c, Arch::Llama4)?;
    // The checkouts keep q and k as Meta wrote them: pairs of adjacent dimensions rotate.
    spec.rope.style = RopeStyle::Interleaved;
    let expert_width = spec.intermediate_size;
    spec.intermediate_size = c
        .opt_usize("intermediate_size_mlp")?
        .unwrap_or(expert_width);
    spec.unrotated_layers = match c.0.get("no_rope_layers").filter(|v| !v.is_null()) {
        Some(list) if list.as_array().is_some_and(|l| !l.is_empty()) => {
            rotating_flags(list, spec.num_layers)?
        }
        _ => every_nth(
            spec.num_layers,
            c.opt_usize("no_rope_layer_interval")?
                .unwrap_or(NO_ROPE_INTERVAL),
        )?,
    };
    spec.rotated_qk_l2_norm = c.bool("use_qk_norm", true);
    spec.attention_chunk = c.opt_usize("attention_chunk_size")?;
    // Meta's configs write the switch as a number (4), transformers' as a bool.
    let tuned = match c.0.get("attn_temperature_tuning") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => false,
    };
    if tuned {
        spec.attn_temperature = Some(AttnTemperature {
            beta: c.f32("attn_scale", ATTN_SCALE)?,
            length: c.opt_usize("floor_scale")?.unwrap_or(FLOOR_SCALE),
            offset: 1,
            unrotated_only: true,
        });
    }
    let layers = match c.0.get("moe_layers").filter(|v| !v.is_null()) {
        Some(list) => listed_layers(list, spec.num_layers)?,
        None => {
            let step = c.opt_usize("interleave_moe_layer_step")?.unwrap_or(1);
            every_step(spec.num_layers, step)
        }
    };
    spec.experts = Some(experts(
        c.usize("num_local_experts")?,
        c.opt_usize("num_experts_per_tok")?.unwrap_or(1),
        expert_width,
        layers,
    ));
    Ok(spec)
}

/// llama.cpp's `llama4` GGUF: a sliding window of 0 marks a model without chunks, NoPE
/// layers or temperatures; otherwise llama.cpp's fixed values. Its rule for the q/k norms:
/// every model has them but the 128-expert one (Maverick).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Llama4, RopeStyle::Interleaved)?;
    let k = |s: &str| format!("llama4.{s}");
    let num_experts = g.require_usize(&k("expert_count"))?;
    let chunked = g.get_usize(&k("attention.sliding_window")) != Some(0);
    if chunked {
        spec.unrotated_layers = every_nth(spec.num_layers, NO_ROPE_INTERVAL)?;
        spec.attention_chunk = Some(CHUNK);
        spec.attn_temperature = Some(AttnTemperature {
            beta: ATTN_SCALE,
            length: FLOOR_SCALE,
            offset: 1,
            unrotated_only: true,
        });
    }
    spec.rotated_qk_l2_norm = num_experts != 128;
    let step = g.require_usize(&k("interleave_moe_layer_step"))?;
    spec.experts = Some(experts(
        num_experts,
        g.require_usize(&k("expert_used_count"))?,
        g.require_usize(&k("expert_feed_forward_length"))?,
        every_step(spec.num_layers, step),
    ));
    Ok(spec)
}

/// `per_token` of `num_experts` experts of `width`, in `layers`, each with the shared expert
/// of the same width beside it.
fn experts(
    num_experts: usize,
    per_token: usize,
    width: usize,
    layers: Vec<bool>,
) -> MixtureOfExperts {
    let mut m = softmax_top_k(num_experts, per_token, width, false, layers);
    m.scoring = ExpertScoring::Sigmoid;
    m.shared_intermediate_size = width;
    m.weights_scale_inputs = true;
    m
}

/// Layer `l` has experts when `(l + 1) % step == 0` (transformers' default `moe_layers`,
/// llama.cpp's rule); a step of 0: none.
fn every_step(layers: usize, step: usize) -> Vec<bool> {
    (0..layers)
        .map(|l| step > 0 && (l + 1).is_multiple_of(step))
        .collect()
}

/// `moe_layers` (the indices of the layers with experts) as flags.
fn listed_layers(list: &Value, layers: usize) -> Result<Vec<bool>> {
    let bad = || {
        ModelError::Config(format!(
            "config.json: `moe_layers` must list layers below {layers}"
        ))
    };
    let mut flags = vec![false; layers];
    for l in list.as_array().ok_or_else(bad)? {
        let l = l.as_u64().map(|l| l as usize).filter(|&l| l < layers);
        flags[l.ok_or_else(bad)?] = true;
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// After meta-llama/Llama-4-Scout-17B-16E-Instruct's text config (fewer layers).
    fn scout() -> Value {
        json!({"model_type": "llama4_text", "vocab_size": 202048, "hidden_size": 5120,
            "intermediate_size": 8192, "intermediate_size_mlp": 16384, "num_hidden_layers": 8,
            "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 10485760,
            "rope_scaling": {"rope_type": "llama3", "factor": 16.0, "low_freq_factor": 1.0,
                "high_freq_factor": 1.0, "original_max_position_embeddings": 8192},
            "num_local_experts": 16, "num_experts_per_tok": 1, "interleave_moe_layer_step": 1,
            "use_qk_norm": true, "no_rope_layers": [], "attention_chunk_size": 8192,
            "attn_temperature_tuning": 4, "floor_scale": 8192, "attn_scale": 0.1,
            "tie_word_embeddings": false})
    }

    #[test]
    fn scout_rotates_three_layers_in_four_within_chunks_and_tempers_the_fourth() {
        let spec = from_hf(&HfConfig(&scout())).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.rope.style, RopeStyle::Interleaved);
        assert_eq!(
            spec.unrotated_layers,
            [false, false, false, true, false, false, false, true]
        );
        assert_eq!(spec.attention_chunk, Some(8192));
        assert!(spec.rotated_qk_l2_norm);
        let t = spec.attn_temperature.unwrap();
        assert_eq!((t.length, t.offset, t.unrotated_only), (8192, 1, true));
        // transformers' `log(floor((pos + 1) / 8192) + 1) · 0.1 + 1`.
        assert_eq!(t.at(8190), 1.0);
        assert!((t.at(8191) - (1.0 + 0.1 * 2f32.ln())).abs() < 1e-7);
        let m = spec.experts.unwrap();
        assert_eq!(m.layers, vec![true; 8]);
        assert_eq!(
            (m.expert_intermediate_size, m.shared_intermediate_size),
            (8192, 8192)
        );
        assert!(m.weights_scale_inputs && !m.normalize);
        assert_eq!(m.scoring, ExpertScoring::Sigmoid);
        assert_eq!(spec.intermediate_size, 16384);
    }

    /// llama.cpp's keys for Scout and Maverick (its converter's), and for a model converted
    /// with every layer global (`sliding_window` 0).
    #[test]
    fn gguf_files_take_llama_cpps_fixed_chunks_and_temperatures() {
        use candle_core::quantized::gguf_file::Value as V;
        let file = |experts: u32, step: u32, window: Option<u32>| {
            let mut meta = vec![
                ("general.architecture", V::String("llama4".into())),
                ("llama4.embedding_length", V::U32(5120)),
                ("llama4.feed_forward_length", V::U32(16384)),
                ("llama4.block_count", V::U32(8)),
                ("llama4.attention.head_count", V::U32(40)),
                ("llama4.attention.head_count_kv", V::U32(8)),
                ("llama4.vocab_size", V::U32(202048)),
                ("llama4.expert_count", V::U32(experts)),
                ("llama4.expert_used_count", V::U32(1)),
                ("llama4.expert_feed_forward_length", V::U32(8192)),
                ("llama4.interleave_moe_layer_step", V::U32(step)),
            ];
            if let Some(w) = window {
                meta.push(("llama4.attention.sliding_window", V::U32(w)));
            }
            let g = crate::weights::gguf::metadata_only(&format!("llama4-{experts}"), &meta);
            from_gguf(&g).unwrap()
        };
        let scout = file(16, 1, None);
        scout.validate().unwrap();
        assert_eq!(scout.attention_chunk, Some(8192));
        assert_eq!(
            scout.unrotated_layers,
            [false, false, false, true, false, false, false, true]
        );
        assert!(scout.rotated_qk_l2_norm);
        assert_eq!(scout.attn_temperature.unwrap().offset, 1);
        let m = scout.experts.unwrap();
        assert!(m.layers.iter().all(|&l| l) && m.weights_scale_inputs);
        assert_eq!(
            (scout.intermediate_size, m.shared_intermediate_size),
            (16384, 8192)
        );
        let maverick = file(128, 2, None);
        assert!(!maverick.rotated_qk_l2_norm);
        assert_eq!(
            maverick.experts.unwrap().layers,
            [false, true, false, true, false, true, false, true]
        );
        let global = file(16, 1, Some(0));
        assert!(global.attention_chunk.is_none() && global.attn_temperature.is_none());
        assert!(global.unrotated_layers.iter().all(|&u| !u));
    }

    #[test]
    fn maverick_alternates_dense_and_expert_layers_without_qk_norms() {
        let mut cfg = scout();
        cfg["interleave_moe_layer_step"] = json!(2);
        cfg["use_qk_norm"] = json!(false);
        cfg["attn_temperature_tuning"] = json!(false);
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        let m = spec.experts.unwrap();
        assert_eq!(
            m.layers,
            [false, true, false, true, false, true, false, true]
        );
        assert!(!spec.rotated_qk_l2_norm && spec.attn_temperature.is_none());
        cfg["moe_layers"] = json!([0, 9]);
        assert!(from_hf(&HfConfig(&cfg)).is_err(), "a layer past the model");
    }
}
