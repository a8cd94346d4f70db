//! The quantization a checkout's `config.json` declares (`quantization_config`), as candor
//! reads it: FP8 weights with their scales (`fp8`), 2-, 4- and 8-bit integers packed into int32
//! words by AutoAWQ or GPTQ (`packed_int`), bitsandbytes' 4- and 8-bit weights (`bnb`),
//! gpt-oss's MXFP4 experts (read on their own), BitNet b1.58's ternary weights (`bitnet`), and a
//! clear refusal for the methods candor cannot read, rather than a missing-tensor error at the
//! first packed weight.
use crate::error::{ModelError, Result};
use candle_core::DType;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Quantization {
    #[default]
    None,
    Fp8(Fp8Checkout),
    Packed(PackedCheckout),
    /// bitsandbytes' `load_in_4bit` (NF4 / FP4) or `load_in_8bit` (LLM.int8) weights; the
    /// dtype is the checkout's (what its other weights are, and what dequantized ones take).
    Bitsandbytes {
        dtype: DType,
    },
    /// BitNet b1.58's ternary products (`ternary`): every linear layer but the head, its input
    /// quantized per token to 8 bits.
    BitNet(BitNetCheckout),
}

/// How a BitNet checkout's products are stored and scaled (transformers' `BitNetQuantConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BitNetCheckout {
    /// `weight_scale` multiplies the ternary product (`autobitlinear`, bitnet-b1.58-2B-4T's), or
    /// divides it (`bitlinear`, the default: HF1BitLLM's Llama3-8B-1.58).
    pub scale_divides: bool,
    /// `online` (`autobitlinear` only): the weights are stored in full precision and
    /// ternarized at load, scaled by their mean magnitude; else packed four a byte.
    pub online: bool,
    /// The checkout's dtype (what ternary values times a scale are served in where no block
    /// type holds them).
    pub dtype: DType,
}

/// How a checkout's FP8 weights are read: its scales' block shape where they are per block, and
/// the dtype the weights are dequantized into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fp8Checkout {
    /// Rows × columns of a weight one scale covers, where the config names it
    /// (`weight_block_size`, compressed-tensors' `block_structure` or `group_size`).
    pub block: Option<[usize; 2]>,
    /// The checkout's dtype (`torch_dtype` / `dtype`): what the rest of its weights are.
    pub dtype: DType,
}

impl Default for Fp8Checkout {
    fn default() -> Self {
        Fp8Checkout {
            block: None,
            dtype: DType::BF16,
        }
    }
}

/// Where a packing puts its integers (`packed_int` reads both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedLayout {
    /// AutoAWQ's GEMM layout: `qweight` `[in, out / 8]`, each word 8 outputs in the order
    /// 0, 2, 4, 6, 1, 3, 5, 7; zeros packed alike; `(q - z) · s`.
    Awq,
    /// GPTQ's: `qweight` `[in · bits / 32, out]`, each word consecutive inputs; zeros packed
    /// along the outputs; `g_idx` names each input's group. The first checkpoint format
    /// (`gptq`, AutoGPTQ's) stores each zero minus one (`zero_offset`); `gptq_v2` does not.
    Gptq { zero_offset: bool },
    /// compressed-tensors' `pack-quantized`: `weight_packed` `[out, in · bits / 32]`, each
    /// row's values at bit `i · bits`, stored plus 2^(bits-1); zero points (asymmetric only)
    /// packed along the outputs; scales `[out, groups]`; `weight_g_idx` for act-order.
    CompressedTensors,
}

/// A checkout of packed integer weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackedCheckout {
    pub layout: PackedLayout,
    pub bits: u32,
    /// Inputs per scale and zero; None: the whole row (GPTQ's `group_size: -1`).
    pub group_size: Option<usize>,
    /// The dtype the weights take where no block type holds them exactly.
    pub dtype: DType,
}

/// The quantization `cfg` declares.
pub fn checkout_quantization(cfg: &Value) -> Result<Quantization> {
    let Some(q) = cfg.get("quantization_config").filter(|q| !q.is_null()) else {
        return Ok(Quantization::None);
    };
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    let dtype = checkout_dtype(cfg);
    match method {
        "mxfp4" => Ok(Quantization::None),
        "fp8" => Ok(Quantization::Fp8(Fp8Checkout {
            block: block_shape(q.get("weight_block_size"))?,
            dtype,
        })),
        "fbgemm_fp8" => Ok(Quantization::Fp8(Fp8Checkout { block: None, dtype })),
        "compressed-tensors" => compressed_tensors(q, dtype),
        "awq" => awq(q, dtype),
        "gptq" => gptq(q, dtype),
        "bitsandbytes" => bitsandbytes(q, dtype),
        "bitnet" => bitnet(q, dtype),
        other => Err(unsupported(format!("quantization method `{other}`"))),
    }
}

fn unsupported(what: String) -> ModelError {
    ModelError::Config(format!(
        "config.json: {what} is not supported (candor reads unquantized checkouts, FP8, MXFP4, \
         AWQ's GEMM packing, GPTQ's and bitsandbytes' 4- and 8-bit weights, BitNet's ternary \
         ones; for other formats serve a GGUF)"
    ))
}

/// compressed-tensors: its FP8 schemes (`FP8`, `FP8_DYNAMIC`, block FP8), its packed
/// integers (`pack-quantized`: `W4A16`, `W8A16`, asymmetric or not) and its int8 weights
/// (`int-quantized`: `W8A8`, whose activations candor keeps in floats).
fn compressed_tensors(q: &Value, dtype: DType) -> Result<Quantization> {
    let groups = q.get("config_groups").and_then(Value::as_object);
    let format = q.get("format").and_then(Value::as_str).unwrap_or("");
    let mut block = None;
    for (name, group) in groups.into_iter().flatten() {
        let w = group.get("weights").unwrap_or(&Value::Null);
        let kind = w.get("type").and_then(Value::as_str).unwrap_or("int");
        let bits = w.get("num_bits").and_then(Value::as_u64).unwrap_or(0);
        // Packed integers, or 8-bit ones stored as int8 as they are (`int-quantized`: W8A8,
        // run here weight-only).
        let stored_as_int8 = matches!(format, "int-quantized" | "naive-quantized") && bits == 8;
        if kind == "int"
            && (format == "pack-quantized" && matches!(bits, 2 | 4 | 8) || stored_as_int8)
        {
            let size = match w.get("strategy").and_then(Value::as_str) {
                Some("group") => w.get("group_size").and_then(Value::as_i64),
                _ => Some(-1),
            };
            return Ok(Quantization::Packed(PackedCheckout {
                layout: PackedLayout::CompressedTensors,
                bits: bits as u32,
                group_size: group_size(size)?,
                dtype,
            }));
        }
        if kind != "float" || bits != 8 {
            return Err(unsupported(format!(
                "compressed-tensors group `{name}` with {bits}-bit {kind} weights"
            )));
        }
        let shape = match w.get("strategy").and_then(Value::as_str) {
            Some("block") => block_shape(w.get("block_structure"))?,
            Some("group") => w
                .get("group_size")
                .and_then(Value::as_u64)
                .map(|g| [1, g as usize]),
            _ => None,
        };
        block = block.or(shape);
    }
    Ok(Quantization::Fp8(Fp8Checkout { block, dtype }))
}

/// AutoAWQ's config (`bits` / `group_size`, or its own `w_bit` / `q_group_size`): 4-bit GEMM
/// packing with zero points, the one every AWQ checkout on the Hub has.
fn awq(q: &Value, dtype: DType) -> Result<Quantization> {
    let num = |keys: [&str; 2]| keys.iter().find_map(|k| q.get(*k).and_then(Value::as_i64));
    let bits = num(["bits", "w_bit"]).unwrap_or(4);
    let version = q.get("version").and_then(Value::as_str).unwrap_or("gemm");
    let zero_point = q.get("zero_point").and_then(Value::as_bool).unwrap_or(true);
    if bits != 4 || !version.eq_ignore_ascii_case("gemm") || !zero_point {
        return Err(unsupported(format!(
            "AWQ {bits}-bit, version `{version}`, zero_point {zero_point} (candor reads the \
             4-bit GEMM packing with zero points)"
        )));
    }
    Ok(Quantization::Packed(PackedCheckout {
        layout: PackedLayout::Awq,
        bits: 4,
        group_size: group_size(num(["group_size", "q_group_size"]))?,
        dtype,
    }))
}

/// GPTQ's config: 2, 4 or 8 bits, AutoGPTQ's checkpoint format or GPTQModel's `gptq_v2`.
fn gptq(q: &Value, dtype: DType) -> Result<Quantization> {
    let bits = q.get("bits").and_then(Value::as_i64).unwrap_or(4);
    let format = q
        .get("checkpoint_format")
        .and_then(Value::as_str)
        .unwrap_or("gptq");
    let zero_offset = match format {
        "gptq" => true,
        "gptq_v2" => false,
        other => return Err(unsupported(format!("GPTQ checkpoint format `{other}`"))),
    };
    if !matches!(bits, 2 | 4 | 8) {
        return Err(unsupported(format!("GPTQ with {bits} bits")));
    }
    Ok(Quantization::Packed(PackedCheckout {
        layout: PackedLayout::Gptq { zero_offset },
        bits: bits as u32,
        group_size: group_size(q.get("group_size").and_then(Value::as_i64))?,
        dtype,
    }))
}

/// bitsandbytes' config: 4-bit (NF4 or FP4, each weight's block size and shape stored beside
/// it) or 8-bit weights. transformers writes both the flags and their `_`-prefixed copies.
fn bitsandbytes(q: &Value, dtype: DType) -> Result<Quantization> {
    let flag = |k: &str| {
        [k.to_string(), format!("_{k}")]
            .iter()
            .any(|k| q.get(k).and_then(Value::as_bool) == Some(true))
    };
    if !flag("load_in_4bit") && !flag("load_in_8bit") {
        return Err(unsupported(
            "bitsandbytes without load_in_4bit or load_in_8bit".into(),
        ));
    }
    Ok(Quantization::Bitsandbytes { dtype })
}

/// transformers' BitNet config: `linear_class` `bitlinear` (the default) or `autobitlinear`,
/// `quantization_mode` `offline` (packed) or `online` (autobitlinear only). A per-product RMSNorm
/// (`use_rms_norm`) and modules left unconverted beside the head are refused: candor quantizes
/// the input of every decoder product.
fn bitnet(q: &Value, dtype: DType) -> Result<Quantization> {
    let text = |k: &str, default: &'static str| {
        q.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    let (class, mode) = (
        text("linear_class", "bitlinear"),
        text("quantization_mode", "offline"),
    );
    let online = match (class.as_str(), mode.as_str()) {
        ("bitlinear" | "autobitlinear", "offline") => false,
        ("autobitlinear", "online") => true,
        _ => {
            return Err(unsupported(format!(
                "BitNet linear_class `{class}` with quantization_mode `{mode}`"
            )))
        }
    };
    if q.get("use_rms_norm").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported(
            "BitNet with an RMSNorm inside each product (use_rms_norm)".into(),
        ));
    }
    let kept: Vec<&str> = match q.get("modules_to_not_convert") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(other) = kept.iter().find(|m| !m.ends_with("lm_head")) {
        return Err(unsupported(format!(
            "BitNet with `{other}` left unquantized (only the head may be)"
        )));
    }
    Ok(Quantization::BitNet(BitNetCheckout {
        scale_divides: class == "bitlinear",
        online,
        dtype,
    }))
}

/// A config's group size: positive, or -1 for whole rows (None); 128 where it names none.
fn group_size(v: Option<i64>) -> Result<Option<usize>> {
    match v {
        None => Ok(Some(128)),
        Some(-1) => Ok(None),
        Some(g) if g > 0 => Ok(Some(g as usize)),
        Some(g) => Err(ModelError::Config(format!(
            "config.json: group_size {g} is neither positive nor -1"
        ))),
    }
}

/// `[rows, columns]` from a config's block shape; None for null or absent.
fn block_shape(v: Option<&Value>) -> Result<Option<[usize; 2]>> {
    let dims = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(dims)) => dims,
        Some(_) => return Err(bad_block(v)),
    };
    match dims.as_slice() {
        [r, c] => match (r.as_u64(), c.as_u64()) {
            (Some(r), Some(c)) if r > 0 && c > 0 => Ok(Some([r as usize, c as usize])),
            _ => Err(bad_block(v)),
        },
        _ => Err(bad_block(v)),
    }
}

fn bad_block(v: Option<&Value>) -> ModelError {
    ModelError::Config(format!(
        "config.json: FP8 block shape {} is not two positive sizes",
        v.unwrap_or(&Value::Null)
    ))
}

/// The dtype a checkout's unquantized weights have (`torch_dtype` in transformers 4, `dtype` in
/// 5, in `text_config` for a vision-language wrapper); bf16 where it says none.
fn checkout_dtype(cfg: &Value) -> DType {
    let named = |c: &Value| {
        ["dtype", "torch_dtype"]
            .iter()
            .find_map(|k| c.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    };
    let name = named(cfg).or_else(|| cfg.get("text_config").and_then(named));
    match name.as_deref() {
        Some("float32") => DType::F32,
        Some("float16") => DType::F16,
        _ => DType::BF16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fp8(cfg: &Value) -> Option<Fp8Checkout> {
        match checkout_quantization(cfg).unwrap() {
            Quantization::Fp8(f) => Some(f),
            _ => None,
        }
    }

    /// bitnet-b1.58-2B-4T's config, HF1BitLLM's (BitLinear's defaults), an online one; the
    /// layouts candor cannot serve refused by name.
    #[test]
    fn bitnet_configs_name_how_the_scale_applies() {
        let read = |q: Value| checkout_quantization(&json!({"quantization_config": q}));
        let microsoft = json!({"quant_method": "bitnet", "linear_class": "autobitlinear",
            "quantization_mode": "offline"});
        assert_eq!(
            read(microsoft).unwrap(),
            Quantization::BitNet(BitNetCheckout {
                scale_divides: false,
                online: false,
                dtype: DType::BF16
            })
        );
        let hf1bit = json!({"quant_method": "bitnet", "modules_to_not_convert": ["lm_head"]});
        assert!(matches!(
            read(hf1bit).unwrap(),
            Quantization::BitNet(BitNetCheckout {
                scale_divides: true,
                online: false,
                ..
            })
        ));
        let online = json!({"quant_method": "bitnet", "linear_class": "autobitlinear",
            "quantization_mode": "online"});
        assert!(matches!(
            read(online).unwrap(),
            Quantization::BitNet(BitNetCheckout { online: true, .. })
        ));
        for (q, named) in [
            (
                json!({"quant_method": "bitnet", "quantization_mode": "online"}),
                "online",
            ),
            (
                json!({"quant_method": "bitnet", "use_rms_norm": true}),
                "use_rms_norm",
            ),
            (
                json!({"quant_method": "bitnet", "modules_to_not_convert": ["lm_head", "o_proj"]}),
                "o_proj",
            ),
        ] {
            let err = read(q).unwrap_err().to_string();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn fp8_configs_name_the_block_and_dtype() {
        assert_eq!(
            checkout_quantization(&json!({"model_type": "llama"})).unwrap(),
            Quantization::None
        );
        let qwen3 = json!({"torch_dtype": "bfloat16", "quantization_config": {"quant_method": "fp8",
            "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}});
        assert_eq!(
            fp8(&qwen3),
            Some(Fp8Checkout {
                block: Some([128, 128]),
                dtype: DType::BF16
            })
        );
        let ministral = json!({"text_config": {"dtype": "float32"}, "quantization_config":
            {"quant_method": "fp8", "activation_scheme": "static", "weight_block_size": null}});
        assert_eq!(
            fp8(&ministral),
            Some(Fp8Checkout {
                block: None,
                dtype: DType::F32
            })
        );
        let dynamic = json!({"quantization_config": {"quant_method": "compressed-tensors",
            "format": "float-quantized", "config_groups": {"group_0": {"targets": ["Linear"],
            "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}}});
        assert_eq!(fp8(&dynamic), Some(Fp8Checkout::default()));
        let blocked = json!({"quantization_config": {"quant_method": "compressed-tensors",
            "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float",
            "strategy": "block", "block_structure": [64, 32]}}}}});
        assert_eq!(fp8(&blocked).unwrap().block, Some([64, 32]));
        let gpt_oss = json!({"quantization_config": {"quant_method": "mxfp4"}});
        assert_eq!(checkout_quantization(&gpt_oss).unwrap(), Quantization::None);
        let bad =
            json!({"quantization_config": {"quant_method": "fp8", "weight_block_size": [0, 128]}});
        assert!(checkout_quantization(&bad).is_err());
    }

    #[test]
    fn awq_and_gptq_configs_name_their_packing() {
        // Qwen2.5-7B-Instruct-AWQ's.
        let awq = json!({"torch_dtype": "float16", "quantization_config": {"bits": 4,
            "group_size": 128, "modules_to_not_convert": null, "quant_method": "awq",
            "version": "gemm", "zero_point": true}});
        assert_eq!(
            checkout_quantization(&awq).unwrap(),
            Quantization::Packed(PackedCheckout {
                layout: PackedLayout::Awq,
                bits: 4,
                group_size: Some(128),
                dtype: DType::F16
            })
        );
        // Qwen2.5-7B-Instruct-GPTQ-Int8's, and a GPTQModel v2 checkout of whole rows.
        let gptq = json!({"quantization_config": {"bits": 8, "group_size": 128,
            "desc_act": false, "sym": true, "quant_method": "gptq", "damp_percent": 0.01}});
        assert_eq!(
            checkout_quantization(&gptq).unwrap(),
            Quantization::Packed(PackedCheckout {
                layout: PackedLayout::Gptq { zero_offset: true },
                bits: 8,
                group_size: Some(128),
                dtype: DType::BF16
            })
        );
        let v2 = json!({"quantization_config": {"bits": 4, "group_size": -1,
            "quant_method": "gptq", "checkpoint_format": "gptq_v2"}});
        let Quantization::Packed(p) = checkout_quantization(&v2).unwrap() else {
            panic!("not packed")
        };
        assert_eq!(
            (p.layout, p.group_size),
            (PackedLayout::Gptq { zero_offset: false }, None)
        );
        // RedHatAI's `quantized.w4a16` checkouts.
        let w4a16 = json!({"quantization_config": {"quant_method": "compressed-tensors",
            "format": "pack-quantized", "config_groups": {"group_0": {"targets": ["Linear"],
            "weights": {"num_bits": 4, "type": "int", "symmetric": true, "strategy": "group",
            "group_size": 128, "actorder": null}}}, "ignore": ["lm_head"]}});
        assert_eq!(
            checkout_quantization(&w4a16).unwrap(),
            Quantization::Packed(PackedCheckout {
                layout: PackedLayout::CompressedTensors,
                bits: 4,
                group_size: Some(128),
                dtype: DType::BF16
            })
        );
    }

    #[test]
    fn bitsandbytes_configs_name_four_or_eight_bits() {
        // unsloth's `*-bnb-4bit` releases, and an 8-bit one as transformers 4.57 writes it.
        let nf4 = json!({"torch_dtype": "float16", "quantization_config": {
            "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": true, "llm_int8_skip_modules": ["lm_head"],
            "load_in_4bit": true, "load_in_8bit": false, "quant_method": "bitsandbytes"}});
        assert_eq!(
            checkout_quantization(&nf4).unwrap(),
            Quantization::Bitsandbytes { dtype: DType::F16 }
        );
        let int8 = json!({"quantization_config": {"_load_in_8bit": true,
            "quant_method": "bitsandbytes"}});
        assert_eq!(
            checkout_quantization(&int8).unwrap(),
            Quantization::Bitsandbytes { dtype: DType::BF16 }
        );
    }

    #[test]
    fn methods_candor_cannot_read_are_refused_by_name() {
        let refused = |q: Value| {
            checkout_quantization(&json!({"quantization_config": q}))
                .unwrap_err()
                .to_string()
        };
        let w4a8 = refused(json!({"quant_method": "compressed-tensors",
            "format": "int-quantized",
            "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int"}}}}));
        assert!(
            w4a8.contains("4-bit int") && w4a8.contains("GGUF"),
            "{w4a8}"
        );
        assert!(refused(json!({"quant_method": "hqq"})).contains("`hqq`"));
        assert!(refused(json!({"quant_method": "bitsandbytes"})).contains("load_in_4bit"));
        assert!(refused(json!({"quant_method": "awq", "version": "gemv"})).contains("gemv"));
        assert!(refused(json!({"quant_method": "awq", "zero_point": false})).contains("zero_point"));
        assert!(refused(json!({"quant_method": "gptq", "bits": 3})).contains("3 bits"));
        assert!(
            refused(json!({"quant_method": "gptq", "checkpoint_format": "marlin"}))
                .contains("marlin")
        );
        assert!(refused(json!({"quant_method": "gptq", "group_size": 0})).contains("group_size"));
    }
}
