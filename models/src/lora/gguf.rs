//! Adapters as llama.cpp's `convert_lora_to_gguf.py` writes them: a GGUF file of
//! `general.type` `adapter` and `adapter.type` `lora`, tensors `blk.N.attn_q.weight.lora_a`
//! (`[r, in]`) and `….lora_b` (`[out, r]`), the scale `adapter.lora.alpha / r` (1 without an
//! alpha), as llama.cpp applies it.
use super::adapter::{Halves, LoraAdapter, LoraTarget};
use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;
use candle_core::DType;
use std::path::Path;

/// Which update a tensor name holds: (layer, target, is A).
fn parse_name(name: &str) -> Option<(usize, LoraTarget, bool)> {
    let (weight, half) = name.rsplit_once('.')?;
    let is_a = match half {
        "lora_a" => true,
        "lora_b" => false,
        _ => return None,
    };
    let rest = weight.strip_prefix("blk.")?.strip_suffix(".weight")?;
    let (layer, stem) = rest.split_once('.')?;
    Some((layer.parse().ok()?, LoraTarget::from_gguf_stem(stem)?, is_a))
}

/// Read the GGUF adapter at `path`.
pub fn read_gguf_adapter(path: &Path) -> Result<LoraAdapter> {
    let shown = path.display().to_string();
    let bad = |reason: String| ModelError::BadAdapter {
        path: shown.clone(),
        reason,
    };
    // Dequantized: the updates are small, and they are applied as f32 products.
    let file = GgufFile::open(path, true)?;
    let kind = file.get_str("general.type");
    if kind.as_deref() != Some("adapter") {
        return Err(bad(format!(
            "`general.type` is {}, not `adapter` (a model, not an adapter?)",
            kind.map_or("missing".into(), |k| format!("`{k}`"))
        )));
    }
    match file.get_str("adapter.type").as_deref() {
        Some("lora") => {}
        other => {
            return Err(bad(format!(
                "`adapter.type` is {}, not `lora`",
                other.map_or("missing".into(), |k| format!("`{k}`"))
            )))
        }
    }
    let alpha = file.get_f64("adapter.lora.alpha").unwrap_or(0.0);
    let mut halves = Halves::default();
    let names: Vec<String> = file.tensor_names().cloned().collect();
    for name in names {
        let Some((layer, target, is_a)) = parse_name(&name) else {
            return Err(bad(format!(
                "tensor `{name}` is not a LoRA update of a decoder layer's q/k/v/o/gate/up/down \
                 projection"
            )));
        };
        let host = file
            .get(&name)?
            .ok_or_else(|| bad(format!("tensor `{name}` cannot be read")))?;
        // In the file's own float type (quantized blocks: f32), as `LoraPair::stored` reads it.
        let stored = match host.dtype() {
            Some(WeightDtype::F16) => DType::F16,
            Some(WeightDtype::BF16) => DType::BF16,
            _ => DType::F32,
        };
        let tensor = host.to_f32()?.to_dtype(stored)?;
        let what = format!("blk.{layer}.{}", target.gguf_stem());
        halves.insert(layer, target, what, is_a, tensor);
    }
    // llama.cpp's scale: alpha / rank, or 1 where the file gives no alpha.
    let pairs = halves
        .into_pairs(|_, rank| match alpha {
            0.0 => 1.0,
            a => a / rank as f64,
        })
        .map_err(bad)?;
    // The converter permutes q and k of the architectures llama.cpp runs with interleaved
    // RoPE (as it does the base model's).
    let arch = file.get_str("general.architecture").unwrap_or_default();
    LoraAdapter::new(
        shown.clone(),
        pairs,
        matches!(arch.as_str(), "llama" | "mistral"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llama_cpp_tensor_names() {
        assert_eq!(
            parse_name("blk.12.ffn_down.weight.lora_b"),
            Some((12, LoraTarget::Down, false))
        );
        assert_eq!(
            parse_name("blk.0.attn_q.weight.lora_a"),
            Some((0, LoraTarget::Q, true))
        );
        assert_eq!(parse_name("output.weight.lora_a"), None);
        assert_eq!(parse_name("blk.0.attn_q.weight"), None);
        assert_eq!(parse_name("blk.x.attn_q.weight.lora_a"), None);
    }
}
