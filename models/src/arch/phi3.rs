//! Phi-3 (and Phi-3.5, Phi-4, Phi-4-mini, which keep its architecture): llama with q/k/v stored
//! as one tensor (`qkv_proj`; llama.cpp's `attn_qkv`) and gate/up as one (`gate_up_proj`;
//! llama.cpp's double-height `ffn_up`), loaded as the joined products candor runs anyway
//! (`Projections::joined`), a sliding window on every layer where the config sets one, RoPE over
//! part of each head where `partial_rotary_factor` says (Phi-4-mini: 96 of 128), and LongRoPE
//! (`rope_scaling` `longrope`; llama.cpp's `rope_factors_long`/`_short` tensors) for the
//! 128k-context models.
use super::{base_from_gguf, base_from_hf, rotary_dim_from_gguf, rotary_dim_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{
    longrope_attention_factor, Arch, ExpertScoring, HfConfig, ModelSpec, RopeScaling,
};
use crate::weights::gguf::GgufFile;
use crate::weights::{require, WeightSource};

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Phi3)?;
    let window = c.opt_usize("sliding_window")?;
    spec.layer_windows = vec![window; spec.num_layers];
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, None)?;
    check_longrope(&spec)?;
    Ok(spec)
}

/// Phi-3.5-MoE (`phimoe`): Phi-3's attention with q/k/v apart and biased, LayerNorms with
/// biases (`rms_norm_eps` their epsilon), Mixtral's experts (`block_sparse_moe`, two a token)
/// routed by sparsemixer with the config's `router_jitter_noise`, a head with a bias
/// (`lm_head_bias`), LongRoPE as Phi-3's. Its GGUFs: `phimoe_from_gguf`.
pub fn phimoe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::PhiMoe)?;
    let window = c.opt_usize("sliding_window")?;
    spec.layer_windows = vec![window; spec.num_layers];
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.qkv_bias = c.bool("attention_bias", false);
    let mut experts = super::experts::mixtral_from_hf(c, spec.num_layers)?;
    experts.scoring = ExpertScoring::SparseMixer {
        jitter_eps: c.f32("router_jitter_noise", DEFAULT_ROUTER_JITTER)?,
    };
    experts.normalize = false;
    spec.experts = Some(experts);
    // Its LongRoPE scales cos/sin by the config's own `short_mscale` / `long_mscale` (by the
    // context, as its factors) rather than by the factor's formula.
    let scaling = c.0.get("rope_scaling");
    let mscale = |key: &str| scaling.and_then(|s| s.get(key)).and_then(|m| m.as_f64());
    if let (
        RopeScaling::LongRope {
            attention_factor, ..
        },
        Some(short),
        Some(long),
    ) = (
        &mut spec.rope.scaling,
        mscale("short_mscale"),
        mscale("long_mscale"),
    ) {
        if short != long {
            return Err(ModelError::Config(format!(
                "config.json: phimoe LongRoPE with short_mscale {short} and long_mscale {long} \
                 apart is not supported (one attention factor is)"
            )));
        }
        *attention_factor = short as f32;
    }
    check_longrope(&spec)?;
    Ok(spec)
}

/// transformers' `PhimoeConfig` default for `router_jitter_noise` (Phi-3.5-MoE's value).
const DEFAULT_ROUTER_JITTER: f32 = 0.01;

/// Phi-3.5-MoE's LongRoPE attention factor, its config's `short_mscale` and `long_mscale`.
const PHI35_MOE_MSCALE: f32 = 1.243_163_1;

/// A `phimoe` GGUF as llama.cpp's converter writes it: Phi-3's keys and LongRoPE tensors, q/k/v
/// apart with their biases, the LayerNorms' weights and biases under `attn_norm` / `ffn_norm`,
/// Mixtral's experts stacked, the head's bias. Run as the model runs (LayerNorms, sparsemixer),
/// not as llama.cpp's `phimoe` graph does (RMSNorms, a softmax over the top two renormalized).
/// Two numbers the converter does not keep are the model's own: the router's jitter (0.01 in
/// every `phimoe` config) and the LongRoPE attention factor, for which the converter writes the
/// formula's (1.19 at 128k over 4k) where the config says 1.2432: a file holding the formula's
/// value gets the config's, one holding another value keeps it.
pub fn phimoe_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = phi3_family_from_gguf(g, Arch::PhiMoe)?;
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.qkv_bias = g.contains("blk.0.attn_q.bias");
    let mut experts = super::experts::required_from_gguf(g, spec.num_layers)?;
    experts.scoring = ExpertScoring::SparseMixer {
        jitter_eps: DEFAULT_ROUTER_JITTER,
    };
    experts.normalize = false;
    spec.experts = Some(experts);
    let max_position = spec.max_position;
    if let RopeScaling::LongRope {
        attention_factor,
        original_max_position,
        ..
    } = &mut spec.rope.scaling
    {
        let formula = longrope_attention_factor(
            max_position as f32 / *original_max_position as f32,
            *original_max_position,
        );
        if (*attention_factor - formula).abs() < 1e-5 {
            *attention_factor = PHI35_MOE_MSCALE;
        }
    }
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    phi3_family_from_gguf(g, Arch::Phi3)
}

/// A GGUF of Phi-3's keys under its own architecture's prefix (`phi3`, `phimoe`).
fn phi3_family_from_gguf(g: &GgufFile, arch: Arch) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let mut spec = base_from_gguf(g, arch, RopeStyle::Neox)?;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    let window = g.get_usize(&k("attention.sliding_window"));
    spec.layer_windows = vec![window; spec.num_layers];
    if g.contains("rope_factors_long.weight") || g.contains("rope_factors_short.weight") {
        let factors = |name: &str| -> Result<Vec<f32>> {
            Ok(require(g, name)?
                .to_f32()?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let original = g
            .get_usize(&k("rope.scaling.original_context_length"))
            .ok_or_else(|| {
                ModelError::Config(
                    "phi3: LongRoPE factors without rope.scaling.original_context_length".into(),
                )
            })?;
        let factor = spec.max_position as f32 / original as f32;
        spec.rope.scaling = RopeScaling::LongRope {
            short_factor: factors("rope_factors_short.weight")?,
            long_factor: factors("rope_factors_long.weight")?,
            original_max_position: original,
            attention_factor: g
                .get_f64(&k("rope.scaling.attn_factor"))
                .map_or_else(|| longrope_attention_factor(factor, original), |a| a as f32),
            long: spec.max_position > original,
        };
    }
    check_longrope(&spec)?;
    Ok(spec)
}

/// LongRoPE's factors must cover the rotated pairs.
fn check_longrope(spec: &ModelSpec) -> Result<()> {
    if let RopeScaling::LongRope {
        short_factor,
        long_factor,
        ..
    } = &spec.rope.scaling
    {
        let pairs = spec.rotary_dim.unwrap_or(spec.head_dim) / 2;
        if short_factor.len() != pairs || long_factor.len() != pairs {
            return Err(ModelError::Config(format!(
                "phi3: LongRoPE factors ({} short, {} long) for {pairs} rotated pairs",
                short_factor.len(),
                long_factor.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({
            "model_type": "phi3", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 512, "sliding_window": 2047
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    /// microsoft/Phi-3.5-MoE-instruct's config.json as published (its 64 LongRoPE factors a
    /// side shortened to their count).
    fn phi35_moe_config() -> serde_json::Value {
        json!({
            "architectures": ["PhiMoEForCausalLM"], "attention_bias": true,
            "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 32000,
            "hidden_act": "silu", "hidden_dropout": 0.0, "hidden_size": 4096,
            "initializer_range": 0.02, "input_jitter_noise": 0.01, "intermediate_size": 6400,
            "lm_head_bias": true, "max_position_embeddings": 131072, "model_type": "phimoe",
            "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
            "num_key_value_heads": 8, "num_local_experts": 16,
            "original_max_position_embeddings": 4096, "output_router_logits": false,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"long_factor": vec![1.5; 64], "long_mscale": 1.243163121016122,
                             "original_max_position_embeddings": 4096,
                             "short_factor": vec![1.0; 64], "short_mscale": 1.243163121016122,
                             "type": "longrope"},
            "rope_theta": 10000.0, "router_aux_loss_coef": 0.0, "router_jitter_noise": 0.01,
            "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
            "vocab_size": 32064
        })
    }

    #[test]
    fn phi35_moe_reads_its_experts_norms_and_mscale() {
        let spec = crate::arch::spec_from_hf(&phi35_moe_config()).unwrap();
        assert_eq!(spec.arch, Arch::PhiMoe);
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias);
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (32, 8, 128)
        );
        let moe = spec.experts.as_ref().unwrap();
        assert_eq!(
            (moe.num_experts, moe.experts_per_token, moe.normalize),
            (16, 2, false)
        );
        assert_eq!(moe.scoring, ExpertScoring::SparseMixer { jitter_eps: 0.01 });
        let RopeScaling::LongRope {
            attention_factor,
            long,
            ..
        } = spec.rope.scaling
        else {
            panic!("{:?}", spec.rope.scaling)
        };
        // The config's mscale, not the formula's 1.19.
        assert!((attention_factor - 1.243_163_1).abs() < 1e-6 && long);
        let mut c = phi35_moe_config();
        c["rope_scaling"]["long_mscale"] = 1.3.into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
        c = phi35_moe_config();
        c["num_experts_per_tok"] = 4.into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
    }

    #[test]
    fn the_window_covers_every_layer() {
        let spec = from_hf(&HfConfig(&config(json!({})))).unwrap();
        assert_eq!(spec.layer_windows, vec![Some(2047); 2]);
        let spec = from_hf(&HfConfig(&config(json!({"sliding_window": null})))).unwrap();
        assert_eq!(spec.layer_windows, vec![None; 2]);
    }

    #[test]
    fn partial_rotary_and_longrope_are_read() {
        let cfg = config(
            json!({"partial_rotary_factor": 0.75, "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "longrope", "short_factor": vec![1.0; 6],
                             "long_factor": vec![2.0; 6]}}),
        );
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!(spec.rotary_dim, Some(12));
        match spec.rope.scaling {
            RopeScaling::LongRope {
                long,
                attention_factor,
                original_max_position,
                ..
            } => {
                assert!(long);
                assert_eq!(original_max_position, 4096);
                let want = (1.0 + 32f32.ln() / 4096f32.ln()).sqrt();
                assert!((attention_factor - want).abs() < 1e-6);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            from_hf(&HfConfig(&config(json!({"partial_rotary_factor": 1.0}))))
                .unwrap()
                .rotary_dim,
            None
        );
        let short = config(
            json!({"rope_scaling": {"type": "longrope", "short_factor": [1.0],
                                                   "long_factor": [2.0]},
                                  "original_max_position_embeddings": 64}),
        );
        let e = from_hf(&HfConfig(&short)).unwrap_err();
        assert!(e.to_string().contains("LongRoPE factors"), "{e}");
    }

    /// A Phi-3.5-MoE GGUF's shape as llama.cpp's converter writes it (one layer here): the
    /// attention factor the converter computes (1.19) read as the config's 1.2432; another
    /// value kept.
    fn phimoe_gguf(attn_factor: f32) -> GgufFile {
        use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
        use candle_core::{Device, Tensor};
        let u = |v: u32| gguf_file::Value::U32(v);
        let meta = [
            (
                "general.architecture",
                gguf_file::Value::String("phimoe".into()),
            ),
            ("phimoe.embedding_length", u(4096)),
            ("phimoe.attention.head_count", u(32)),
            ("phimoe.attention.head_count_kv", u(8)),
            ("phimoe.block_count", u(1)),
            ("phimoe.context_length", u(131072)),
            ("phimoe.feed_forward_length", u(6400)),
            ("phimoe.vocab_size", u(32064)),
            (
                "phimoe.attention.layer_norm_rms_epsilon",
                gguf_file::Value::F32(1e-5),
            ),
            ("phimoe.rope.dimension_count", u(128)),
            ("phimoe.rope.freq_base", gguf_file::Value::F32(10000.0)),
            ("phimoe.rope.scaling.original_context_length", u(4096)),
            (
                "phimoe.rope.scaling.attn_factor",
                gguf_file::Value::F32(attn_factor),
            ),
            ("phimoe.expert_count", u(16)),
            ("phimoe.expert_used_count", u(2)),
        ];
        let f32s = |n: usize| {
            let t = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
            QTensor::quantize(&t, GgmlDType::F32).unwrap()
        };
        let tensors = [
            ("rope_factors_long.weight", f32s(64)),
            ("rope_factors_short.weight", f32s(64)),
            ("blk.0.ffn_gate_inp.weight", f32s(16)),
            ("blk.0.attn_q.bias", f32s(4096)),
        ];
        let path = std::env::temp_dir().join(format!(
            "candor-phimoe-{}-{attn_factor}.gguf",
            std::process::id()
        ));
        let mut file = std::fs::File::create(&path).unwrap();
        let meta: Vec<(&str, &gguf_file::Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut file, &meta, &tensors).unwrap();
        drop(file);
        let g = GgufFile::open(&path, false).unwrap();
        let _ = std::fs::remove_file(&path);
        g
    }

    #[test]
    fn phimoe_ggufs_run_the_models_norms_routing_and_mscale() {
        let factor = |g: &GgufFile| {
            let spec = crate::arch::spec_from_gguf(g).unwrap();
            assert_eq!(spec.arch, Arch::PhiMoe);
            assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias);
            let moe = spec.experts.as_ref().unwrap();
            assert_eq!((moe.num_experts, moe.experts_per_token), (16, 2));
            assert!(!moe.normalize);
            assert_eq!(moe.scoring, ExpertScoring::SparseMixer { jitter_eps: 0.01 });
            match spec.rope.scaling {
                RopeScaling::LongRope {
                    attention_factor,
                    long: true,
                    ..
                } => attention_factor,
                other => panic!("{other:?}"),
            }
        };
        let converters = longrope_attention_factor(32.0, 4096);
        assert!((converters - 1.190_239).abs() < 1e-5, "{converters}");
        assert_eq!(factor(&phimoe_gguf(converters)), PHI35_MOE_MSCALE);
        assert_eq!(factor(&phimoe_gguf(1.5)), 1.5);
    }
}
