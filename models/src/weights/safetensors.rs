//! Hugging Face safetensors checkouts: one file or shards listed in
//! `model.safetensors.index.json`, memory-mapped; F32/F16/BF16 tensors read in their dtype
//! (a 16-bit checkout stays 16-bit on devices that run it so: half the memory and bandwidth).
use super::names::{mixtral_hf, qwen2_moe_hf, to_hf, HfNormNaming};
use super::{HostWeight, WeightSource};
use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::Device;
use std::path::{Path, PathBuf};

pub struct SafetensorsDir {
    path: String,
    tensors: MmapedSafetensors,
    naming: HfNormNaming,
}

/// The weight files of a checkout: the shards of the index, or `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let bad = |reason: String| ModelError::BadSafetensors {
        path: dir.display().to_string(),
        reason,
    };
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| ModelError::Io {
            path: index.display().to_string(),
            source,
        })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("model.safetensors.index.json: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("model.safetensors.index.json has no `weight_map` object".into()))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        files.sort();
        files.dedup();
        if files.is_empty() {
            return Err(bad("model.safetensors.index.json lists no files".into()));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(bad(
        "no model.safetensors or model.safetensors.index.json".into()
    ))
}

impl SafetensorsDir {
    pub fn open(dir: &Path, naming: HfNormNaming) -> Result<Self> {
        let files = weight_files(dir)?;
        for f in &files {
            if !f.exists() {
                return Err(ModelError::BadSafetensors {
                    path: dir.display().to_string(),
                    reason: format!("shard {} is missing", f.display()),
                });
            }
        }
        // SAFETY: read-only maps of files we do not modify (see GgufFile::open).
        let tensors = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| {
            ModelError::BadSafetensors {
                path: dir.display().to_string(),
                reason: crate::error::candle_message(&e),
            }
        })?;
        Ok(SafetensorsDir {
            path: dir.display().to_string(),
            tensors,
            naming,
        })
    }
}

impl SafetensorsDir {
    /// The HF name this checkout holds a canonical tensor under: the usual one, or Mixtral's
    /// or Qwen2-MoE's for their experts.
    fn hf_name(&self, name: &str) -> Option<String> {
        let hf = to_hf(name, self.naming)?;
        if self.tensors.get(&hf).is_ok() {
            return Some(hf);
        }
        [mixtral_hf(&hf), qwen2_moe_hf(&hf)]
            .into_iter()
            .flatten()
            .find(|m| self.tensors.get(m).is_ok())
    }
}

impl WeightSource for SafetensorsDir {
    fn get(&self, name: &str) -> Result<Option<HostWeight>> {
        let Some(hf) = self.hf_name(name) else {
            return Ok(None);
        };
        let view = match self.tensors.get(&hf) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        let source = match view.dtype() {
            safetensors::Dtype::F32 => WeightDtype::F32,
            safetensors::Dtype::F16 => WeightDtype::F16,
            safetensors::Dtype::BF16 => WeightDtype::BF16,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    tensor: hf,
                    dtype: format!("{other:?}"),
                });
            }
        };
        let tensor =
            self.tensors
                .load(&hf, &Device::Cpu)
                .map_err(|e| ModelError::BadSafetensors {
                    path: self.path.clone(),
                    reason: format!("{hf}: {}", crate::error::candle_message(&e)),
                })?;
        Ok(Some(HostWeight::Dense { tensor, source }))
    }

    fn contains(&self, name: &str) -> bool {
        self.hf_name(name).is_some()
    }
}
