//! Random LoRA adapters of a tiny model, written as PEFT saves them, as llama.cpp's converter
//! writes them, and merged into the model's weights (the reference they must equal).
use super::common::plugins::servable_tiny;
use super::common::{permute_rope_rows, read_json};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const ALL_MODULES: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// Phi-3's modules: q/k/v and gate/up joined.
pub const PHI3_MODULES: [&str; 4] = [
    "self_attn.qkv_proj",
    "self_attn.o_proj",
    "mlp.gate_up_proj",
    "mlp.down_proj",
];

/// One update: layer, module, `A` (`[r, in]`), `B` (`[out, r]`).
struct Update {
    layer: usize,
    module: &'static str,
    a: Tensor,
    b: Tensor,
}

pub struct Lora {
    rank: usize,
    alpha: f64,
    updates: Vec<Update>,
}

/// Uniform values in (-0.2, 0.2) from a seeded generator (tests repeat exactly).
fn random(shape: (usize, usize), state: &mut u64) -> Tensor {
    let values: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn base_tensors(base: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(base.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn gguf_stem(module: &str) -> &'static str {
    match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("no GGUF name for {other}"),
    }
}

impl Lora {
    /// Rank-`rank` updates of `modules` in every layer of the model at `base` that has them
    /// (LFM2's attention layers alone have `self_attn.q_proj`).
    pub fn random(
        base: &Path,
        modules: &[&'static str],
        rank: usize,
        alpha: f64,
        seed: u64,
    ) -> Self {
        let tensors = base_tensors(base);
        let layers = read_json(&base.join("config.json"))["num_hidden_layers"]
            .as_u64()
            .unwrap() as usize;
        let mut state = seed;
        let mut updates = Vec::new();
        for layer in 0..layers {
            for &module in modules {
                let Some(w) = tensors.get(&format!("model.layers.{layer}.{module}.weight")) else {
                    continue;
                };
                let (out, inp) = w.dims2().unwrap();
                updates.push(Update {
                    layer,
                    module,
                    a: random((rank, inp), &mut state),
                    b: random((out, rank), &mut state),
                });
            }
        }
        Lora {
            rank,
            alpha,
            updates,
        }
    }

    /// The same updates times `s` (what a server running this adapter at scale `s` computes).
    pub fn scaled(&self, s: f64) -> Self {
        Lora {
            rank: self.rank,
            alpha: self.alpha * s,
            updates: self
                .updates
                .iter()
                .map(|u| Update {
                    layer: u.layer,
                    module: u.module,
                    a: u.a.clone(),
                    b: u.b.clone(),
                })
                .collect(),
        }
    }

    /// The same updates rounded to `dtype` and written in it (as adapters trained in half
    /// precision ship).
    pub fn rounded_to(mut self, dtype: DType) -> Self {
        for u in &mut self.updates {
            u.a = u.a.to_dtype(dtype).unwrap();
            u.b = u.b.to_dtype(dtype).unwrap();
        }
        self
    }

    /// As PEFT's `save_pretrained` writes it.
    pub fn write_peft(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let mut tensors = HashMap::new();
        for u in &self.updates {
            let key = format!("base_model.model.model.layers.{}.{}", u.layer, u.module);
            tensors.insert(format!("{key}.lora_A.weight"), u.a.clone());
            tensors.insert(format!("{key}.lora_B.weight"), u.b.clone());
        }
        candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors")).unwrap();
        let mut modules: Vec<&str> = self.updates.iter().map(|u| u.module).collect();
        modules.dedup();
        let config = serde_json::json!({
            "peft_type": "LORA", "r": self.rank, "lora_alpha": self.alpha,
            "target_modules": modules, "bias": "none", "use_rslora": false, "use_dora": false,
            "fan_in_fan_out": false, "modules_to_save": null, "task_type": "CAUSAL_LM",
        });
        std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
        dir.to_path_buf()
    }

    /// As llama.cpp's `convert_lora_to_gguf.py` writes it for `arch`.
    pub fn write_gguf(&self, base: &Path, arch: &str, path: &Path) -> PathBuf {
        self.write_gguf_as(base, arch, path, "adapter");
        path.to_path_buf()
    }

    /// `write_gguf` with another `general.type`.
    pub fn write_gguf_as(&self, base: &Path, arch: &str, path: &Path, general_type: &str) {
        let config = read_json(&base.join("config.json"));
        let heads = |k: &str| config[k].as_u64().unwrap() as usize;
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        for u in &self.updates {
            let mut b = u.b.clone();
            if arch == "llama" {
                match u.module {
                    "self_attn.q_proj" => b = permute_rope_rows(&b, heads("num_attention_heads")),
                    "self_attn.k_proj" => b = permute_rope_rows(&b, heads("num_key_value_heads")),
                    _ => {}
                }
            }
            let name = format!("blk.{}.{}.weight", u.layer, gguf_stem(u.module));
            for (half, t) in [("lora_a", &u.a), ("lora_b", &b)] {
                let q = QTensor::quantize(t, GgmlDType::F32).unwrap();
                tensors.push((format!("{name}.{half}"), q));
            }
        }
        let md = [
            (
                "general.architecture",
                gguf_file::Value::String(arch.into()),
            ),
            (
                "general.type",
                gguf_file::Value::String(general_type.into()),
            ),
            ("adapter.type", gguf_file::Value::String("lora".into())),
            (
                "adapter.lora.alpha",
                gguf_file::Value::F32(self.alpha as f32),
            ),
        ];
        let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut f = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
    }

    /// The model at `base` with the updates merged into its weights (`W + alpha/r · B·A`),
    /// beside copies of its other files.
    pub fn write_merged(&self, base: &Path, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        for entry in std::fs::read_dir(base).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "model.safetensors" {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
            }
        }
        let mut tensors = base_tensors(base);
        let scale = self.alpha / self.rank as f64;
        for u in &self.updates {
            let key = format!("model.layers.{}.{}.weight", u.layer, u.module);
            let w = &tensors[&key];
            let f32 = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
            let delta = f32(&u.b)
                .matmul(&f32(&u.a))
                .unwrap()
                .affine(scale, 0.0)
                .unwrap();
            let merged = (w.to_dtype(DType::F32).unwrap() + delta)
                .unwrap()
                .to_dtype(w.dtype())
                .unwrap();
            tensors.insert(key, merged);
        }
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
        dir.to_path_buf()
    }
}

/// The adapter `tuned_tiny` writes for the model at `base` with `seed`.
pub fn tuned_tiny_lora(base: &Path, seed: u64) -> Lora {
    Lora::random(base, &ALL_MODULES, 4, 8.0, seed)
}

/// A tiny llama `candor serve` can run, under `dir`; a random rank-4 adapter of it on every
/// projection (`seed`), as PEFT writes it; and the model merged with it: (base, adapter,
/// merged).
pub fn tuned_tiny(dir: &Path, seed: u64) -> (PathBuf, PathBuf, PathBuf) {
    let base = servable_tiny("llama", &dir.join("base"));
    let lora = tuned_tiny_lora(&base, seed);
    let peft = lora.write_peft(&dir.join("tuned"));
    let merged = lora.write_merged(&base, &dir.join("merged"));
    (base, peft, merged)
}
