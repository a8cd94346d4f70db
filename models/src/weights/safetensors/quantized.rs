//! A safetensors checkout's quantized weights, read as its config declares them
//! (`quantization`): FP8 values times their scales (`fp8`), packed or int8 integers as ggml
//! blocks or dequantized (`packed_int`), bitsandbytes' 4-bit codes (`bnb`) as Q8_0 blocks or
//! dequantized, BitNet's ternary values (`ternary`) as TQ2_0 blocks or dequantized.
use super::SafetensorsDir;
use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use crate::weights::fp8::Fp8Format;
use crate::weights::packed_int::PackedWeight;
use crate::weights::quantization::{Fp8Checkout, PackedCheckout, PackedLayout, Quantization};
use crate::weights::ternary::Ternary;
use crate::weights::{BlockType, HostWeight, MappedBlocks};
use candle_core::Device;

impl SafetensorsDir {
    /// An FP8 weight times the scales stored beside it (`<hf>_scale_inv`, else `<hf>_scale`),
    /// in the checkout's dtype (f32 on the reference path).
    pub(super) fn fp8_dense(
        &self,
        hf: &str,
        view: &safetensors::tensor::TensorView<'_>,
        format: Fp8Format,
    ) -> Result<(candle_core::Tensor, WeightDtype)> {
        let bad = |reason: String| ModelError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("{hf}: {reason}"),
        };
        let names = [format!("{hf}_scale_inv"), format!("{hf}_scale")];
        let Some((scale, _)) = names
            .iter()
            .find_map(|n| self.dense(n).transpose())
            .transpose()?
        else {
            return Err(bad(format!(
                "FP8 values without scales (no {} or {})",
                names[0], names[1]
            )));
        };
        let (scales, scale_shape) = f32_values(&scale).map_err(bad)?;
        let fp8 = match self.quantization {
            Quantization::Fp8(f) => f,
            _ => Fp8Checkout::default(),
        };
        let (dtype, source) = self.dequantized_dtype(fp8.dtype);
        let tensor = crate::weights::fp8::dequantize(
            view.data(),
            view.shape(),
            format,
            &scales,
            &scale_shape,
            fp8.block,
            dtype,
        )
        .map_err(bad)?;
        Ok((tensor, source))
    }

    /// The dtype a dequantized weight takes: f32 on the reference path, else the checkout's.
    fn dequantized_dtype(&self, checkout: candle_core::DType) -> (candle_core::DType, WeightDtype) {
        use candle_core::DType;
        match (self.dequantize, checkout) {
            (true, _) | (false, DType::F32) => (DType::F32, WeightDtype::F32),
            (false, DType::F16) => (DType::F16, WeightDtype::F16),
            _ => (DType::BF16, WeightDtype::BF16),
        }
    }

    /// The HF stem (`...q_proj`) under which the checkout packs the canonical weight `name`
    /// (`<stem>.qweight`, `<stem>.weight_packed`); None where it does not, or is not a packed
    /// checkout.
    pub(super) fn packed_stem(&self, name: &str) -> Option<String> {
        let Quantization::Packed(c) = self.quantization else {
            return None;
        };
        let packed = PackedNames::of(c.layout).values;
        self.hf_candidates(name)
            .into_iter()
            .filter_map(|hf| hf.strip_suffix(".weight").map(str::to_string))
            .find(|stem| self.view(&format!("{stem}.{packed}")).is_some())
    }

    /// A packed AWQ / GPTQ weight (`packed_int`): ggml blocks where they hold its values
    /// exactly, else dequantized (always on the reference path).
    pub(super) fn packed_weight(
        &self,
        name: &str,
        c: &PackedCheckout,
    ) -> Result<Option<HostWeight>> {
        let Some(stem) = self.packed_stem(name) else {
            return Ok(None);
        };
        let bad = |reason: String| ModelError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("{stem}: {reason}"),
        };
        if self.grouped_qkv.is_some() || self.conv1d_weights {
            return Err(bad(
                "packed weights of a model whose q/k/v or Conv1D layout is rearranged at load"
                    .into(),
            ));
        }
        let int32 = |suffix: &str| {
            let full = format!("{stem}.{suffix}");
            match self.view(&full) {
                Some((v, _)) if v.dtype() == safetensors::Dtype::I32 => Ok(Some(v)),
                Some((v, _)) => Err(bad(format!("{suffix} is {:?}, not int32", v.dtype()))),
                None => Ok(None),
            }
        };
        let names = PackedNames::of(c.layout);
        let (Some(qweight), qzeros) = (int32(names.values)?, int32(names.zeros)?) else {
            return Err(bad(format!("no {}", names.values)));
        };
        // compressed-tensors stores zero points only where asymmetric; the others always.
        if qzeros.is_none() && c.layout != PackedLayout::CompressedTensors {
            return Err(bad(format!("{} without {}", names.values, names.zeros)));
        }
        let g_idx = int32(names.g_idx)?;
        let Some((scales, _)) = self.dense(&format!("{stem}.{}", names.scales))? else {
            return Err(bad(format!("{} without {}", names.values, names.scales)));
        };
        let (scales, scales_shape) = f32_values(&scales).map_err(bad)?;
        let unpacked = crate::weights::packed_int::unpack(
            &PackedWeight {
                qweight: qweight.data(),
                qweight_shape: qweight.shape(),
                qzeros: qzeros.as_ref().map(|z| (z.data(), z.shape())),
                scales: &scales,
                scales_shape: &scales_shape,
                g_idx: g_idx.as_ref().map(|g| g.data()),
            },
            c,
        )
        .map_err(bad)?;
        self.serve_unpacked(unpacked, c.dtype)
            .map(Some)
            .map_err(bad)
    }

    /// A compressed-tensors `int-quantized` weight (int8 `hf`, `weight_scale` per tensor, row
    /// or group, `weight_zero_point` where asymmetric), served as `serve_unpacked` says; None
    /// where `hf` is no int8 tensor of such a checkout.
    pub(super) fn int8_weight(&self, hf: &str) -> Result<Option<HostWeight>> {
        let Quantization::Packed(c) = self.quantization else {
            return Ok(None);
        };
        let Some((values, _)) = self
            .view(hf)
            .filter(|(v, _)| v.dtype() == safetensors::Dtype::I8)
        else {
            return Ok(None);
        };
        let stem = hf.strip_suffix(".weight").unwrap_or(hf);
        let bad = |reason: String| ModelError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("{hf}: {reason}"),
        };
        let Some((scales, _)) = self.dense(&format!("{stem}.weight_scale"))? else {
            return Err(bad("int8 values without weight_scale".into()));
        };
        let (mut scales, mut scales_shape) = f32_values(&scales).map_err(bad)?;
        let out = values.shape().first().copied().unwrap_or(0);
        if scales.len() == 1 {
            // One scale for the tensor: one per row, alike.
            (scales, scales_shape) = (vec![scales[0]; out], vec![out, 1]);
        }
        if let [rows] = scales_shape[..] {
            scales_shape = vec![rows, 1];
        }
        let zero_points = self.view(&format!("{stem}.weight_zero_point"));
        let unpacked = crate::weights::packed_int::from_int8(
            values.data(),
            values.shape(),
            &scales,
            &scales_shape,
            zero_points.as_ref().map(|(z, _)| z.data()),
            c.group_size,
        )
        .map_err(bad)?;
        self.serve_unpacked(unpacked, c.dtype)
            .map(Some)
            .map_err(bad)
    }

    /// A bitsandbytes weight: LLM.int8's int8 rows (`hf`) with `SCB` beside them, served as
    /// `serve_unpacked` says, or NF4 / FP4 codes with their quant state (`bnb`). The 4-bit
    /// values are no ggml block type's: they are served as Q8_0 (within 1/254 of each block's
    /// largest value; half the memory of bf16, twice the checkout's), or dequantized into the
    /// checkout's dtype where rows are not whole blocks of 32 (always on the reference path).
    /// None where `hf` is not quantized (the modules bitsandbytes skips).
    pub(super) fn bnb_weight(&self, hf: &str) -> Result<Option<HostWeight>> {
        use crate::weights::bnb::{self, Absmax, QuantState};
        let Quantization::Bitsandbytes { dtype: checkout } = self.quantization else {
            return Ok(None);
        };
        let Some((values, _)) = self.view(hf) else {
            return Ok(None);
        };
        let bad = |reason: String| ModelError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("{hf}: {reason}"),
        };
        let stem = hf.strip_suffix(".weight").unwrap_or(hf);
        if values.dtype() == safetensors::Dtype::I8 {
            let Some((scb, _)) = self.dense(&format!("{stem}.SCB"))? else {
                return Err(bad("int8 values without SCB".into()));
            };
            let scales = bnb::int8_row_scales(&f32_values(&scb).map_err(bad)?.0);
            let unpacked = crate::weights::packed_int::from_int8(
                values.data(),
                values.shape(),
                &scales,
                &[scales.len(), 1],
                None,
                None,
            )
            .map_err(bad)?;
            return self
                .serve_unpacked(unpacked, checkout)
                .map(Some)
                .map_err(bad);
        }
        let Some((state, _)) = ["nf4", "fp4"]
            .iter()
            .find_map(|t| self.view(&format!("{hf}.quant_state.bitsandbytes__{t}")))
        else {
            return Ok(None);
        };
        let state = QuantState::parse(state.data()).map_err(bad)?;
        let f32s = |suffix: &str| -> Result<Vec<f32>> {
            match self.dense(&format!("{hf}.{suffix}"))? {
                Some((t, _)) => Ok(f32_values(&t).map_err(bad)?.0),
                None => Err(bad(format!("4-bit codes without {hf}.{suffix}"))),
            }
        };
        let quant_map = f32s("quant_map")?;
        let (nested_map, nested_absmax, plain);
        let absmax = match self.view(&format!("{hf}.nested_absmax")) {
            Some(_) => {
                let Some((codes, _)) = self.view(&format!("{hf}.absmax")) else {
                    return Err(bad("4-bit codes without absmax".into()));
                };
                (nested_map, nested_absmax) = (f32s("nested_quant_map")?, f32s("nested_absmax")?);
                Absmax::Nested {
                    codes: codes.data(),
                    map: &nested_map,
                    absmax: &nested_absmax,
                }
            }
            None => {
                plain = f32s("absmax")?;
                Absmax::Plain(&plain)
            }
        };
        let dense = bnb::dequantize_4bit(values.data(), absmax, &quant_map, &state).map_err(bad)?;
        let tensor = candle_core::Tensor::from_vec(dense, state.shape.clone(), &Device::Cpu)?;
        let whole_blocks = matches!(state.shape[..], [_, inner] if inner % 32 == 0);
        if !self.dequantize && whole_blocks {
            let q = candle_core::quantized::QTensor::quantize(
                &tensor,
                candle_core::quantized::GgmlDType::Q8_0,
            )?;
            return Ok(Some(HostWeight::Quant(q)));
        }
        let (dtype, source) = self.dequantized_dtype(checkout);
        Ok(Some(HostWeight::Dense {
            tensor: tensor.to_dtype(dtype)?,
            source,
        }))
    }

    /// Unpacked integers as ggml blocks where they hold the values exactly, else dequantized
    /// into `checkout`'s dtype (always on the reference path).
    /// A BitNet checkout's decoder product `name` (canonical), stored at `hf`: its packed
    /// ternary values times `weight_scale` (or divided by it: `bitlinear`), or its full-precision
    /// values ternarized (`online`); served as TQ2_0 blocks where rows are whole blocks, else
    /// dequantized into the checkout's dtype (always on the reference path). None for the
    /// weights that are not products (norms, embeddings, the head: stored as they are).
    pub(super) fn ternary_weight(&self, name: &str, hf: &str) -> Result<Option<HostWeight>> {
        let Quantization::BitNet(c) = self.quantization else {
            return Ok(None);
        };
        const PRODUCTS: [&str; 7] = [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ];
        let product = name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(_, part)| part.strip_suffix(".weight"))
            .is_some_and(|part| PRODUCTS.contains(&part));
        let Some((view, _)) = self.view(hf).filter(|_| product) else {
            return Ok(None);
        };
        let bad = |reason: String| ModelError::BadSafetensors {
            path: self.path.clone(),
            reason: format!("{hf}: {reason}"),
        };
        let ternary = if c.online {
            let Some((tensor, _)) = self.dense(hf)? else {
                return Ok(None);
            };
            let (out, inner) = tensor.dims2()?;
            let values = tensor
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            Ternary::ternarize(&values, out, inner)
        } else {
            if view.dtype() != safetensors::Dtype::U8 {
                return Err(bad(format!(
                    "{:?}, not packed ternary bytes (uint8), in an offline BitNet checkout",
                    view.dtype()
                )));
            }
            let stem = hf.strip_suffix(".weight").unwrap_or(hf);
            let Some((scale, _)) = self.dense(&format!("{stem}.weight_scale"))? else {
                return Err(bad("packed ternary values without weight_scale".into()));
            };
            let (scale, _) = f32_values(&scale).map_err(bad)?;
            let [scale] = scale[..] else {
                return Err(bad(format!(
                    "{} weight_scale values (one per tensor)",
                    scale.len()
                )));
            };
            let scale = match c.scale_divides {
                true => 1.0 / scale,
                false => scale,
            };
            Ternary::unpack(view.data(), view.shape(), scale).map_err(bad)?
        };
        let tq2_0 = BlockType::Grid(candor_kernels::quant::QuantType::Tq2_0);
        self.serve_blocks(
            vec![ternary.out, ternary.inner],
            || Some((tq2_0, ternary.tq2_0_blocks()?)),
            || ternary.dense(),
            c.dtype,
        )
        .map(Some)
        .map_err(bad)
    }

    fn serve_unpacked(
        &self,
        unpacked: crate::weights::packed_int::Unpacked,
        checkout: candle_core::DType,
    ) -> std::result::Result<HostWeight, String> {
        self.serve_blocks(
            vec![unpacked.out, unpacked.inner],
            || {
                let (ty, bytes) = unpacked.ggml_blocks()?;
                Some((BlockType::Ggml(ty), bytes))
            },
            || unpacked.dense(),
            checkout,
        )
    }

    /// A weight of `shape` served as the blocks `blocks` gives (None: no block type holds its
    /// values exactly), else (and always on the reference path) as the values `dense` gives
    /// in the checkout's dtype.
    fn serve_blocks(
        &self,
        shape: Vec<usize>,
        blocks: impl FnOnce() -> Option<(BlockType, Vec<u8>)>,
        dense: impl FnOnce() -> Vec<f32>,
        checkout: candle_core::DType,
    ) -> std::result::Result<HostWeight, String> {
        if !self.dequantize {
            if let Some((ty, bytes)) = blocks() {
                let blocks = MappedBlocks::owned(&bytes, ty, shape).map_err(|e| e.to_string())?;
                return Ok(HostWeight::Mapped(blocks));
            }
        }
        let (dtype, source) = self.dequantized_dtype(checkout);
        let tensor = candle_core::Tensor::from_vec(dense(), shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| crate::error::candle_message(&e))?;
        Ok(HostWeight::Dense { tensor, source })
    }
}

/// A scale tensor's values as f32, and its shape.
fn f32_values(t: &candle_core::Tensor) -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
    t.to_dtype(candle_core::DType::F32)
        .and_then(|s| s.flatten_all())
        .and_then(|s| s.to_vec1::<f32>())
        .map(|v| (v, t.dims().to_vec()))
        .map_err(|e| crate::error::candle_message(&e))
}

/// The tensors beside a packed weight's stem, by layout.
struct PackedNames {
    values: &'static str,
    zeros: &'static str,
    scales: &'static str,
    g_idx: &'static str,
}

impl PackedNames {
    fn of(layout: PackedLayout) -> Self {
        match layout {
            PackedLayout::Awq | PackedLayout::Gptq { .. } => PackedNames {
                values: "qweight",
                zeros: "qzeros",
                scales: "scales",
                g_idx: "g_idx",
            },
            PackedLayout::CompressedTensors => PackedNames {
                values: "weight_packed",
                zeros: "weight_zero_point",
                scales: "weight_scale",
                g_idx: "weight_g_idx",
            },
        }
    }
}
