//! Apertus (`apertus`: swiss-ai Apertus-8B / 70B): llama's attention with per-head q/k
//! RMSNorms, and an ungated MLP through xIELU, a learned activation with four numbers per layer
//! (`crate::xielu`). Checkouts keep those numbers as `mlp.act_fn.{alpha_p, alpha_n, beta, eps}`
//! tensors, read at load (`xielu_from`); llama.cpp's converter writes them as per-layer
//! metadata arrays (`apertus.xielu.*`) and keeps q/k rows as transformers stores them.
use super::{base_from_gguf, base_from_hf};
use crate::backend::{RopeStyle, WeightDtype};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;
use crate::xielu::XieluParams;

/// The four numbers, as checkouts name them (under `mlp.act_fn`) and llama.cpp's arrays.
const XIELU: [&str; 4] = ["alpha_p", "alpha_n", "beta", "eps"];

fn apertus_common(spec: &mut ModelSpec) {
    spec.gated_ffn = false;
    spec.qk_norm = true;
}

/// The spec of a checkout's config.json; its xIELU numbers are the weights' (`xielu_from`, at
/// load): until then every layer holds transformers' initial ones.
pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut cfg = c.0.clone();
    match c.str("hidden_act") {
        Some("xielu") | None => {
            // The activation is the layers' own xIELU, not one of `Activation`'s.
            if let Some(o) = cfg.as_object_mut() {
                o.remove("hidden_act");
            }
        }
        Some(other) => {
            return Err(ModelError::Config(format!(
                "config.json: Apertus with activation `{other}` is not supported (xielu is)"
            )))
        }
    }
    let mut spec = base_from_hf(&HfConfig(&cfg), Arch::Apertus)?;
    apertus_common(&mut spec);
    let initial = XieluParams::from_stored(0.8f32.exp_m1().ln(), 0.3f32.exp_m1().ln(), 0.5, -1e-6);
    spec.xielu = vec![initial; spec.num_layers];
    Ok(spec)
}

/// Every layer's xIELU numbers from a checkout's `blk.L.ffn_act.*` tensors (one value each).
pub fn xielu_from(src: &dyn WeightSource, num_layers: usize) -> Result<Vec<XieluParams>> {
    (0..num_layers)
        .map(|l| {
            let value = |what: &str| -> Result<(f32, Option<WeightDtype>)> {
                let name = layer(l, &format!("ffn_act.{what}"));
                let w = crate::weights::require(src, &name)?;
                let values = w.to_f32()?.flatten_all()?.to_vec1::<f32>()?;
                match values[..] {
                    [v] => Ok((v, w.dtype())),
                    _ => Err(ModelError::Config(format!(
                        "{name}: one number expected, {} found",
                        values.len()
                    ))),
                }
            };
            let [p, n, b, e] = XIELU.map(value);
            let ((p, dtype), (n, _), (b, _), (e, _)) = (p?, n?, b?, e?);
            // transformers computes the softplus and the sum in the numbers' own dtype.
            let round = move |v: f32| match dtype {
                Some(WeightDtype::BF16) => half::bf16::from_f32(v).to_f32(),
                Some(WeightDtype::F16) => half::f16::from_f32(v).to_f32(),
                _ => v,
            };
            Ok(XieluParams::from_stored_rounded(p, n, b, e, round))
        })
        .collect()
}

/// An `apertus` GGUF: the xIELU numbers from its `apertus.xielu.*` arrays, one per layer.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Apertus, RopeStyle::Neox)?;
    apertus_common(&mut spec);
    let arrays: Vec<Vec<f32>> = XIELU
        .iter()
        .map(|what| {
            let key = format!("apertus.xielu.{what}");
            g.get_f32_array(&key)
                .filter(|a| a.len() == spec.num_layers)
                .ok_or_else(|| {
                    ModelError::Config(format!(
                        "apertus GGUF: `{key}` must hold a number per layer ({})",
                        spec.num_layers
                    ))
                })
        })
        .collect::<Result<_>>()?;
    spec.xielu = (0..spec.num_layers)
        .map(|l| XieluParams::from_stored(arrays[0][l], arrays[1][l], arrays[2][l], arrays[3][l]))
        .collect();
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// swiss-ai/Apertus-8B-Instruct-2509's config.json (fewer layers).
    #[test]
    fn apertus_runs_an_ungated_xielu_under_qk_norms() {
        let cfg = serde_json::json!({"model_type": "apertus", "architectures":
            ["ApertusForCausalLM"], "hidden_act": "xielu", "hidden_size": 4096,
            "intermediate_size": 21504, "num_hidden_layers": 2, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 131072, "rms_norm_eps": 1e-5,
            "rope_theta": 12000000, "max_position_embeddings": 65536,
            "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "tie_word_embeddings": false});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::Apertus);
        assert!(!spec.gated_ffn && spec.qk_norm && spec.xielu.len() == 2);
        assert!((spec.xielu[0].alpha_p - 0.8).abs() < 1e-6);
        let mut bad = cfg.clone();
        bad["hidden_act"] = "silu".into();
        assert!(crate::arch::spec_from_hf(&bad).is_err());
    }
}
