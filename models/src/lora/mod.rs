//! LoRA adapters served beside their base model, unmerged: each sequence of a batch runs with
//! the adapters it asked for, at their scales (or none), so one server answers for the base model and for each
//! fine-tune of it, sharing the base weights.
mod adapter;
mod gguf;
mod mix;
mod peft;
mod stack;

pub use adapter::{JoinedTarget, LoraAdapter, LoraPair, LoraTarget};
pub use gguf::read_gguf_adapter;
pub use mix::{usable_scale, LoraMix, MAX_LORA_SCALE};
pub use peft::read_peft;
pub use stack::{BatchLora, LoraStack};

use crate::error::{ModelError, Result};
use std::path::Path;

/// Read the adapter at `path`: a PEFT directory (`adapter_config.json` and
/// `adapter_model.safetensors`) or a llama.cpp LoRA GGUF file.
pub fn read_adapter(path: &Path) -> Result<LoraAdapter> {
    let meta = std::fs::metadata(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if meta.is_dir() {
        read_peft(path)
    } else {
        read_gguf_adapter(path)
    }
}
