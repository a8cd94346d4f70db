//! Opening a model path: a GGUF file or an HF safetensors checkout directory.
use crate::arch::{hf_norm_naming, spec_from_gguf, spec_from_hf};
use crate::error::{ModelError, Result};
use crate::spec::ModelSpec;
use crate::weights::gguf::GgufFile;
use crate::weights::safetensors::SafetensorsDir;
use crate::weights::WeightSource;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ModelFormat {
    Gguf,
    Safetensors,
    /// Random weights of a known model's shapes (`--load-format dummy`, see `crate::dummy`).
    Dummy,
}

/// The weights of a model and what is needed to build it.
pub struct OpenedModel {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub spec: ModelSpec,
    pub source: Box<dyn WeightSource>,
    /// Present for GGUF files (tokenizer and chat template live in its metadata).
    pub gguf: Option<std::sync::Arc<GgufFile>>,
}

impl WeightSource for std::sync::Arc<GgufFile> {
    fn get(&self, name: &str) -> Result<Option<crate::weights::HostWeight>> {
        self.as_ref().get(name)
    }
    fn contains(&self, name: &str) -> bool {
        self.as_ref().contains(name)
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    crate::config_json::parse(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
}

/// Open `path`: a `.gguf` file, or a directory with `config.json` and safetensors weights.
/// `dequantize` turns every quantized weight (GGUF blocks, a checkout's MXFP4 experts) into
/// f32 (the reference path).
pub fn open_model(path: &Path, dequantize: bool) -> Result<OpenedModel> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| ModelError::Io {
        path: shown.clone(),
        source,
    })?;
    if meta.is_dir() {
        let config = path.join("config.json");
        if !config.exists() {
            let reason = match path.join("params.json").exists() {
                // Mistral's own format (`consolidated.safetensors`) beside no transformers config.
                true => {
                    "directory without config.json (params.json and consolidated \
                         safetensors are Mistral's own format, which candor does not read: use \
                         a transformers-format or GGUF conversion)"
                }
                false => "directory without config.json",
            };
            return Err(ModelError::NotAModel {
                path: shown,
                reason: reason.into(),
            });
        }
        let cfg = read_json(&config)?;
        let mut spec = spec_from_hf(&cfg)?;
        let gen = path.join("generation_config.json");
        if gen.exists() {
            let g = read_json(&gen)?;
            let ids = crate::spec::HfConfig(&g).token_ids("eos_token_id");
            for id in ids {
                if !spec.eos_token_ids.contains(&id) {
                    spec.eos_token_ids.push(id);
                }
            }
        }
        let quantization = crate::weights::quantization::checkout_quantization(&cfg)?;
        let mut source = SafetensorsDir::open(path, hf_norm_naming(spec.arch), dequantize)?
            .with_quantization(quantization);
        // Experts stacked under `mlp.experts.gate_up_proj` are `[experts, in, out]` in the
        // Hub's gpt-oss and Qwen3-VL-MoE checkouts, `[experts, out, in]` wherever else
        // transformers 5 saved them natively (Mistral 4, GLM-4.6V).
        let hub_in_out = spec.arch == crate::spec::Arch::GptOss
            || cfg.get("model_type").and_then(|t| t.as_str()) == Some("qwen3_vl_moe");
        if !hub_in_out {
            source = source.with_experts_out_in();
        }
        match spec.arch {
            crate::spec::Arch::GptNeox | crate::spec::Arch::Bloom => {
                source = source.with_grouped_qkv(spec.num_heads, 1)
            }
            crate::spec::Arch::Falcon => {
                let groups = spec.num_kv_heads;
                source = source.with_grouped_qkv(groups, spec.num_heads / groups.max(1));
            }
            crate::spec::Arch::Gpt2 => source = source.with_conv1d_weights(),
            // llm-foundry's MPT may keep a learned position table beside ALiBi
            // (`learned_pos_emb`); transformers' has none. Refused rather than dropped.
            crate::spec::Arch::Mpt if source.contains("position_embd.weight") => {
                return Err(ModelError::Config(
                    "MPT with learned positions (transformer.wpe) is not supported".into(),
                ));
            }
            // The xIELU numbers are weights of the checkout.
            crate::spec::Arch::Apertus => {
                spec.xielu = crate::arch::apertus::xielu_from(&source, spec.num_layers)?;
                spec.validate()?;
            }
            // Without multi-query, `c_attn` holds each head's q, k and v in turn.
            crate::spec::Arch::GptBigcode if spec.num_kv_heads == spec.num_heads => {
                source = source.with_grouped_qkv(spec.num_heads, 1)
            }
            _ => {}
        }
        return Ok(OpenedModel {
            path: path.to_path_buf(),
            format: ModelFormat::Safetensors,
            spec,
            source: Box::new(source),
            gguf: None,
        });
    }
    let gguf = std::sync::Arc::new(GgufFile::open(path, dequantize)?);
    let spec = spec_from_gguf(&gguf)?;
    Ok(OpenedModel {
        path: path.to_path_buf(),
        format: ModelFormat::Gguf,
        spec,
        source: Box::new(gguf.clone()),
        gguf: Some(gguf),
    })
}
