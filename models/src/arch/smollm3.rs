//! SmolLM3 (`smollm3`): llama whose every fourth layer (3, 7, 11, ...) attends without RoPE
//! (NoPE), positions known to it through the causal mask alone. HF checkouts list the layers
//! (`no_rope_layers`: 1 where a layer rotates) or give the interval
//! (`no_rope_layer_interval`, 4); llama.cpp's `smollm3` GGUFs carry no key for it and take
//! every fourth, as the released models have.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// The released models' interval, and llama.cpp's fixed one.
const NO_ROPE_INTERVAL: usize = 4;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Smollm3)?;
    if c.bool("mlp_bias", false) {
        return Err(ModelError::Config(
            "config.json: SmolLM3 with `mlp_bias` is not supported".into(),
        ));
    }
    spec.unrotated_layers = match c.0.get("no_rope_layers").filter(|v| !v.is_null()) {
        Some(list) => rotating_flags(list, spec.num_layers)?,
        None => {
            let interval = c
                .opt_usize("no_rope_layer_interval")?
                .unwrap_or(NO_ROPE_INTERVAL);
            every_nth(spec.num_layers, interval)?
        }
    };
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Smollm3, RopeStyle::Interleaved)?;
    spec.unrotated_layers = every_nth(spec.num_layers, NO_ROPE_INTERVAL)?;
    Ok(spec)
}

/// Layer `l` unrotated when `(l + 1) % interval == 0`.
pub(crate) fn every_nth(layers: usize, interval: usize) -> Result<Vec<bool>> {
    if interval == 0 {
        return Err(ModelError::Config(
            "config.json: `no_rope_layer_interval` is 0".into(),
        ));
    }
    Ok((0..layers).map(|l| (l + 1) % interval == 0).collect())
}

/// `no_rope_layers` (1: the layer rotates, 0: it does not) as the unrotated layers.
pub(crate) fn rotating_flags(list: &serde_json::Value, layers: usize) -> Result<Vec<bool>> {
    let bad = || {
        ModelError::Config(format!(
            "config.json: `no_rope_layers` must list 0 or 1 for each of the {layers} layers"
        ))
    };
    let flags = list.as_array().ok_or_else(bad)?;
    if flags.len() != layers {
        return Err(bad());
    }
    flags
        .iter()
        .map(|f| match f.as_u64() {
            Some(1) => Ok(false),
            Some(0) => Ok(true),
            _ => Err(bad()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fourth_layer_is_unrotated() {
        let flags = every_nth(8, 4).unwrap();
        assert_eq!(
            flags,
            [false, false, false, true, false, false, false, true]
        );
        assert!(every_nth(8, 0).is_err());
    }

    #[test]
    fn the_listed_flags_say_which_layers_rotate() {
        let list = serde_json::json!([1, 0, 1]);
        assert_eq!(rotating_flags(&list, 3).unwrap(), [false, true, false]);
        assert!(rotating_flags(&list, 4).is_err());
        assert!(rotating_flags(&serde_json::json!([1, 2, 1]), 3).is_err());
        assert!(rotating_flags(&serde_json::json!("1,0,1"), 3).is_err());
    }
}
