//! Adapters as Hugging Face PEFT saves them: a directory with `adapter_config.json` and
//! `adapter_model.safetensors`, tensors named
//! `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
//! `…lora_B.weight` (`[out, r]`). The scale of each module is `lora_alpha / r` (`/ sqrt(r)` with
//! `use_rslora`), with PEFT's `alpha_pattern` overrides.
use super::adapter::{Halves, LoraAdapter, Updated};
use crate::error::{ModelError, Result};
use candle_core::Device;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// What of `adapter_config.json` the scales need.
struct PeftConfig {
    alpha: f64,
    rslora: bool,
    /// Module name (or its dotted suffix) → its own alpha.
    alpha_pattern: Vec<(String, f64)>,
}

impl PeftConfig {
    fn read(dir: &Path, bad: &impl Fn(String) -> ModelError) -> Result<Self> {
        let file = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&file).map_err(|source| ModelError::Io {
            path: file.display().to_string(),
            source,
        })?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("adapter_config.json: {e}")))?;
        if let Some(kind) = json.get("peft_type").and_then(Value::as_str) {
            if kind != "LORA" {
                return Err(bad(format!("a {kind} adapter, not LoRA")));
            }
        }
        let flag = |key: &str| json.get(key).and_then(Value::as_bool).unwrap_or(false);
        if flag("use_dora") {
            return Err(bad("a DoRA adapter (`use_dora`), which is not LoRA".into()));
        }
        if flag("fan_in_fan_out") {
            return Err(bad(
                "`fan_in_fan_out` (GPT-2 style Conv1D weights) is not supported".into(),
            ));
        }
        let saves_modules = json
            .get("modules_to_save")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty());
        if saves_modules {
            return Err(bad(
                "`modules_to_save` replaces whole modules, which an adapter served beside the \
                 base model cannot do (merge it into the model instead)"
                    .into(),
            ));
        }
        let rank = json.get("r").and_then(Value::as_f64).unwrap_or(8.0);
        let alpha = json
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .unwrap_or(rank);
        let mut alpha_pattern = Vec::new();
        if let Some(map) = json.get("alpha_pattern").and_then(Value::as_object) {
            for (key, v) in map {
                if key.contains(['*', '+', '?', '(', '[', '|', '\\', '^', '$']) {
                    return Err(bad(format!(
                        "`alpha_pattern` key `{key}` is a regular expression; only module names \
                         are supported"
                    )));
                }
                let a = v
                    .as_f64()
                    .ok_or_else(|| bad(format!("`alpha_pattern.{key}` is not a number")))?;
                alpha_pattern.push((key.clone(), a));
            }
        }
        Ok(PeftConfig {
            alpha,
            rslora: flag("use_rslora"),
            alpha_pattern,
        })
    }

    /// The scale of `module` (`model.layers.3.self_attn.q_proj`) at rank `r`.
    fn scale(&self, module: &str, rank: usize) -> f64 {
        let alpha = self
            .alpha_pattern
            .iter()
            .find(|(key, _)| module == key || module.ends_with(&format!(".{key}")))
            .map_or(self.alpha, |&(_, a)| a);
        let r = rank as f64;
        if self.rslora {
            alpha / r.sqrt()
        } else {
            alpha / r
        }
    }
}

/// Which update a tensor name holds: (module path, layer, what it updates, is A).
fn parse_key(key: &str) -> Option<(String, usize, Updated, bool)> {
    let (module, rest, is_a) = match (key.split_once(".lora_A."), key.split_once(".lora_B.")) {
        (Some((m, r)), None) => (m, r, true),
        (None, Some((m, r))) => (m, r, false),
        _ => return None,
    };
    // `weight`, or `{adapter name}.weight` as PEFT keeps it in memory.
    let weight_of = |name: &str| name.strip_suffix(".weight").map(|n| !n.contains('.'));
    if rest != "weight" && weight_of(rest) != Some(true) {
        return None;
    }
    let module = module.strip_prefix("base_model.model.").unwrap_or(module);
    let parts: Vec<&str> = module.split('.').collect();
    let at = parts.iter().position(|&p| p == "layers")?;
    let layer: usize = parts.get(at + 1)?.parse().ok()?;
    let target = Updated::from_hf_module(&parts.get(at + 2..)?.join("."))?;
    Some((module.to_string(), layer, target, is_a))
}

/// Read the PEFT adapter in `dir`.
pub fn read_peft(dir: &Path) -> Result<LoraAdapter> {
    let shown = dir.display().to_string();
    let bad = |reason: String| ModelError::BadAdapter {
        path: shown.clone(),
        reason,
    };
    let config = PeftConfig::read(dir, &bad)?;
    let weights = dir.join("adapter_model.safetensors");
    if !weights.exists() {
        let reason = match dir.join("adapter_model.bin").exists() {
            true => "only adapter_model.bin (a pickle, never read); save it as safetensors",
            false => "no adapter_model.safetensors",
        };
        return Err(bad(reason.into()));
    }
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| {
        bad(format!(
            "adapter_model.safetensors: {}",
            crate::error::candle_message(&e)
        ))
    })?;
    let mut halves = Halves::default();
    for (key, tensor) in tensors {
        let Some((module, layer, target, is_a)) = parse_key(&key) else {
            let what = if key.contains("lora_magnitude_vector") {
                "a DoRA magnitude, which is not LoRA"
            } else if key.contains("lora_embedding") {
                "an update of the embedding table, which is not supported"
            } else {
                "not a LoRA update of a decoder layer's q/k/v/o/gate/up/down projection (or \
                 Phi-3's joined qkv/gate_up)"
            };
            return Err(bad(format!("tensor `{key}`: {what}")));
        };
        halves.insert(layer, target, module, is_a, tensor);
    }
    let updates = halves
        .into_pairs(|module, rank| config.scale(module, rank))
        .map_err(bad)?;
    let (mut pairs, mut joined) = (BTreeMap::new(), BTreeMap::new());
    for ((layer, updated), pair) in updates {
        match updated {
            Updated::One(target) => pairs.insert((layer, target), pair),
            Updated::Joined(group) => joined.insert((layer, group), pair),
        };
    }
    // Hugging Face's row order, whatever the architecture.
    LoraAdapter::with_joined(shown.clone(), pairs, joined, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{JoinedTarget, LoraTarget};

    #[test]
    fn reads_peft_tensor_names() {
        assert_eq!(
            parse_key("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"),
            Some((
                "model.layers.3.self_attn.q_proj".into(),
                3,
                Updated::One(LoraTarget::Q),
                true
            ))
        );
        assert_eq!(
            parse_key("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight")
                .map(|k| (k.1, k.2, k.3)),
            Some((0, Updated::One(LoraTarget::Down), false))
        );
        // Multimodal checkpoints nest the language model one level deeper.
        assert_eq!(
            parse_key("base_model.model.language_model.model.layers.1.mlp.up_proj.lora_A.weight")
                .map(|k| (k.1, k.2)),
            Some((1, Updated::One(LoraTarget::Up)))
        );
        // Phi-3's joined groups.
        assert_eq!(
            parse_key("base_model.model.model.layers.2.self_attn.qkv_proj.lora_B.weight")
                .map(|k| (k.1, k.2)),
            Some((2, Updated::Joined(JoinedTarget::Qkv)))
        );
        assert_eq!(parse_key("base_model.model.lm_head.lora_A.weight"), None);
        assert_eq!(
            parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.x.y.weight"),
            None
        );
    }

    #[test]
    fn scales_follow_alpha_rank_rslora_and_patterns() {
        let c = PeftConfig {
            alpha: 16.0,
            rslora: false,
            alpha_pattern: vec![("layers.1.self_attn.q_proj".into(), 4.0)],
        };
        assert_eq!(c.scale("model.layers.0.self_attn.q_proj", 8), 2.0);
        assert_eq!(c.scale("model.layers.1.self_attn.q_proj", 8), 0.5);
        assert_eq!(c.scale("model.layers.11.self_attn.q_proj", 8), 2.0);
        let rs = PeftConfig {
            alpha: 16.0,
            rslora: true,
            alpha_pattern: vec![],
        };
        assert_eq!(rs.scale("model.layers.0.mlp.up_proj", 16), 4.0);
    }
}
