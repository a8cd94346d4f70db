//! One encoder layer: bidirectional attention over each input's own rows, then the
//! feed-forward block, each added to its input and normed after (post-norm), as BERT and
//! NomicBERT run them. On the CPU the q|k|v projection is one product and attention, bias
//! adds, GELU and SwiGLU are candor's kernels (`cpu_ops`); on a GPU they are candle's ops.
use super::config::{EncoderActivation, EncoderConfig};
use super::cpu_ops::{AddLayerNorm, Attention, Bias, Gated};
use super::rotary::Rotary;
use crate::error::Result;
use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

/// `y = x · W + b` with `W` kept transposed (`[in, out]`, contiguous): candle's product of
/// that layout ran 20% faster than of the stored `[out, in]` seen through a transpose.
pub(super) struct Projection {
    wt: Tensor,
    /// The bias, with a copy on the host for the CPU kernel that adds it; None where the
    /// checkout's projections have none (NomicBERT's).
    bias: Option<(Tensor, Vec<f32>)>,
}

impl Projection {
    /// The projection `vb` holds (`weight`, and `bias` where `biased`), times `scale`.
    pub(super) fn load(
        vb: &VarBuilder,
        inputs: usize,
        outputs: usize,
        scale: f64,
        biased: bool,
    ) -> Result<Projection> {
        let w = (vb.get((outputs, inputs), "weight")? * scale)?;
        let bias = match biased {
            true => Some((vb.get(outputs, "bias")? * scale)?),
            false => None,
        };
        Projection::from_weight(w, bias)
    }

    /// The projection `vb` holds, with its bias where the file has one (NomicBERT's and
    /// ModernBERT's checkouts leave them out).
    pub(super) fn load_as_stored(
        vb: &VarBuilder,
        inputs: usize,
        outputs: usize,
    ) -> Result<Projection> {
        Projection::load(vb, inputs, outputs, 1.0, vb.contains_tensor("bias"))
    }

    /// The projection of a stored weight (`[out, in]`) and bias.
    pub(super) fn from_weight(weight: Tensor, bias: Option<Tensor>) -> Result<Projection> {
        Projection::new(weight.t()?.contiguous()?, bias)
    }

    fn new(wt: Tensor, bias: Option<Tensor>) -> Result<Projection> {
        let bias = match bias {
            Some(b) => {
                let host = b.to_device(&candle_core::Device::Cpu)?.to_vec1::<f32>()?;
                Some((b, host))
            }
            None => None,
        };
        Ok(Projection { wt, bias })
    }

    /// Projections of the same input side by side: one product.
    pub(super) fn joined(parts: &[Projection]) -> Result<Projection> {
        let wts: Vec<&Tensor> = parts.iter().map(|p| &p.wt).collect();
        let biases: Option<Vec<&Tensor>> = parts
            .iter()
            .map(|p| p.bias.as_ref().map(|b| &b.0))
            .collect();
        let bias = biases.map(|b| Tensor::cat(&b, 0)).transpose()?;
        Projection::new(Tensor::cat(&wts, 1)?, bias)
    }

    /// `act(x · W + b)`: a GELU fused with the bias add where it is one.
    pub(super) fn activated(&self, x: &Tensor, act: EncoderActivation) -> Result<Tensor> {
        let gelu = match act {
            EncoderActivation::GeluErf => Some(false),
            EncoderActivation::GeluTanh => Some(true),
            EncoderActivation::Relu | EncoderActivation::Silu => None,
        };
        let y = self.forward(x, gelu)?;
        Ok(match act {
            EncoderActivation::Relu => y.relu()?,
            EncoderActivation::Silu => y.silu()?,
            EncoderActivation::GeluErf | EncoderActivation::GeluTanh => y,
        })
    }

    /// `x · W + b`, then GELU where asked (`Some(tanh form)`).
    pub(super) fn forward(&self, x: &Tensor, gelu: Option<bool>) -> Result<Tensor> {
        let y = x.matmul(&self.wt)?;
        if y.device().is_cpu() {
            match (&self.bias, gelu) {
                (None, None) => {}
                (Some((_, bias)), _) => y.inplace_op1(&Bias { bias, gelu })?,
                (None, Some(_)) => {
                    let zeros = vec![0.0; self.wt.dim(1)?];
                    y.inplace_op1(&Bias { bias: &zeros, gelu })?
                }
            }
            return Ok(y);
        }
        let y = match &self.bias {
            Some((bias, _)) => y.broadcast_add(bias)?,
            None => y,
        };
        Ok(match gelu {
            None => y,
            Some(true) => y.gelu()?,
            Some(false) => y.gelu_erf()?,
        })
    }
}

pub(super) struct Layer {
    /// Queries (scaled by 1/√head_dim), keys and values in one product.
    pub(super) qkv: Projection,
    pub(super) attention_out: Projection,
    pub(super) attention_norm: PostNorm,
    /// The up projection; for a gated feed-forward the gate's then the up's columns, one
    /// product.
    pub(super) up: Projection,
    pub(super) down: Projection,
    pub(super) output_norm: PostNorm,
}

/// A post-norm: `LayerNorm(x + residual)`.
pub(super) struct PostNorm {
    norm: LayerNorm,
    /// Its weight and bias on the host, for the CPU kernel.
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f64,
}

impl PostNorm {
    pub(super) fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<PostNorm> {
        let norm = layer_norm(vb, size, eps)?;
        let host = |t: &Tensor| t.to_device(&candle_core::Device::Cpu)?.to_vec1::<f32>();
        Ok(PostNorm {
            weight: host(norm.weight())?,
            bias: norm
                .bias()
                .map(host)
                .transpose()?
                .unwrap_or_else(|| vec![0.0; size]),
            norm,
            eps,
        })
    }

    fn forward(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            let op = AddLayerNorm {
                weight: &self.weight,
                bias: &self.bias,
                eps: self.eps as f32,
            };
            return Ok(x
                .contiguous()?
                .apply_op2_no_bwd(&residual.contiguous()?, &op)?);
        }
        Ok(self.norm.forward(&(x + residual)?)?)
    }
}

impl Layer {
    pub(super) fn load(vb: &VarBuilder, c: &EncoderConfig) -> Result<Layer> {
        let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let attention = vb.pp("attention");
        let own = attention.pp("self");
        let scale = c.query_scale();
        let qkv = Projection::joined(&[
            Projection::load(&own.pp("query"), h, h, scale, true)?,
            Projection::load(&own.pp("key"), h, h, 1.0, true)?,
            Projection::load(&own.pp("value"), h, h, 1.0, true)?,
        ])?;
        let output = attention.pp("output");
        Ok(Layer {
            qkv,
            attention_out: Projection::load(&output.pp("dense"), h, h, 1.0, true)?,
            attention_norm: PostNorm::load(&output.pp("LayerNorm"), h, eps)?,
            up: Projection::load(&vb.pp("intermediate").pp("dense"), h, i, 1.0, true)?,
            down: Projection::load(&vb.pp("output").pp("dense"), i, h, 1.0, true)?,
            output_norm: PostNorm::load(&vb.pp("output").pp("LayerNorm"), h, eps)?,
        })
    }

    pub(super) fn forward(
        &self,
        x: &Tensor,
        spans: &[(usize, usize)],
        rotary: Option<&Rotary>,
        c: &EncoderConfig,
    ) -> Result<Tensor> {
        let qkv = self.qkv.forward(x, None)?;
        let context = attention(&qkv, spans, rotary, None, c)?;
        let attended =
            (self.attention_norm).forward(&self.attention_out.forward(&context, None)?, x)?;
        let hidden = match c.gated {
            true => gated(&self.up.forward(&attended, None)?, c)?,
            false => self.activated_up(&attended, c)?,
        };
        self.output_norm
            .forward(&self.down.forward(&hidden, None)?, &attended)
    }

    /// BERT's feed-forward middle: `act(up · x + b)`.
    fn activated_up(&self, attended: &Tensor, c: &EncoderConfig) -> Result<Tensor> {
        self.up.activated(attended, c.activation)
    }
}

/// A gated feed-forward's middle from its joined `[gate | up]` columns: `act(gate) ⊙ up`,
/// `act` SiLU (NomicBERT) or the erf GELU (ModernBERT) as the config's activation says.
pub(super) fn gated(gate_up: &Tensor, c: &EncoderConfig) -> Result<Tensor> {
    let width = c.intermediate_size;
    let gelu = c.activation == EncoderActivation::GeluErf;
    if gate_up.device().is_cpu() {
        return Ok(gate_up.apply_op1_no_bwd(&Gated { width, gelu })?);
    }
    let gate = gate_up.narrow(1, 0, width)?;
    let up = gate_up.narrow(1, width, width)?;
    let gate = match gelu {
        true => gate.gelu_erf()?,
        false => gate.silu()?,
    };
    Ok((gate * up)?)
}

/// Attention within `window` positions each side of a token (ModernBERT's local layers): on
/// the CPU the softmax skips the keys outside it; elsewhere `masks` (`window_masks`, one per
/// input) add -inf to their scores.
#[derive(Clone, Copy)]
pub(super) struct Local<'a> {
    pub window: usize,
    pub masks: &'a [Option<Tensor>],
}

/// Per input, `softmax(q · kᵀ) · v` over its rows (the queries already scaled), its queries
/// and keys turned by `rotary`'s positions from 0 first where given, each token attending
/// only to those within its window under `local`: on the CPU candor's kernel straight from
/// the q|k|v rows (`cpu_ops::Attention`), elsewhere candle's products per input.
pub(super) fn attention(
    qkv: &Tensor,
    spans: &[(usize, usize)],
    rotary: Option<&Rotary>,
    local: Option<Local>,
    c: &EncoderConfig,
) -> Result<Tensor> {
    if !qkv.device().is_cpu() {
        return tensor_attention(qkv, spans, rotary, local, c.num_heads, c.head_dim());
    }
    let op = Attention {
        spans,
        heads: c.num_heads,
        head_dim: c.head_dim(),
        rotary: rotary.and_then(Rotary::host),
        window: local.map(|l| l.window),
    };
    if rotary.is_some() && op.rotary.is_none() {
        return Err(candle_core::Error::msg("rotary angles missing on the CPU").into());
    }
    Ok(qkv.apply_op1_no_bwd(&op)?)
}

/// `attention` of candle's ops, one input at a time (the path off the CPU).
fn tensor_attention(
    qkv: &Tensor,
    spans: &[(usize, usize)],
    rotary: Option<&Rotary>,
    local: Option<Local>,
    heads: usize,
    head_dim: usize,
) -> Result<Tensor> {
    let width = heads * head_dim;
    let mut context = Vec::with_capacity(spans.len());
    for (n, &(start, len)) in spans.iter().enumerate() {
        // Part `part` of the input's rows as [heads, len, head_dim].
        let split = |part: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(0, start, len)?
                .narrow(1, part * width, width)?
                .reshape((len, heads, head_dim))?
                .transpose(0, 1)?
                .contiguous()
        };
        let (mut q, mut k, v) = (split(0)?, split(1)?, split(2)?);
        if let Some(rotary) = rotary {
            q = rotary.turn(&q)?;
            k = rotary.turn(&k)?;
        }
        let scores = q.matmul(&k.t()?.contiguous()?)?;
        let scores = match local.and_then(|l| l.masks.get(n)?.as_ref()) {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let out = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let out = out.transpose(0, 1)?.contiguous()?;
        context.push(out.reshape((len, width))?);
    }
    Ok(Tensor::cat(&context, 0)?)
}

/// The fused q|k|v projection `[3h, h]` with its query rows (and bias) scaled.
pub(super) fn fused_qkv(vb: &VarBuilder, h: usize, scale: f64) -> Result<Projection> {
    let scale_first = |t: Tensor| -> Result<Tensor> {
        let q = (t.narrow(0, 0, h)? * scale)?;
        Ok(Tensor::cat(&[q, t.narrow(0, h, 2 * h)?], 0)?)
    };
    let weight = scale_first(vb.get((3 * h, h), "weight")?)?;
    let bias = match vb.contains_tensor("bias") {
        true => Some(scale_first(vb.get(3 * h, "bias")?)?),
        false => None,
    };
    Projection::from_weight(weight, bias)
}

/// Per input (`spans`), the mask `attention` adds to its scores off the CPU for a window of
/// `window` positions each side: None where the input is no longer than the window, whose
/// every token sees every other. Built once per forward pass, for every local layer.
pub(super) fn window_masks(
    spans: &[(usize, usize)],
    window: usize,
    device: &candle_core::Device,
) -> Result<Vec<Option<Tensor>>> {
    (spans.iter())
        .map(|&(_, len)| match len > window + 1 {
            true => outside_window(len, window, device).map(Some),
            false => Ok(None),
        })
        .collect()
}

/// `[len, len]`: 0 where two positions are at most `window` apart, -inf where further.
fn outside_window(len: usize, window: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len * len)
        .map(|at| match (at / len).abs_diff(at % len) <= window {
            true => 0.0,
            false => f32::NEG_INFINITY,
        })
        .collect();
    Ok(Tensor::from_vec(mask, (len, len), device)?)
}

/// A LayerNorm saved as `weight`/`bias`, or as `gamma`/`beta` (checkpoints converted from the
/// original TensorFlow BERT).
pub(super) fn layer_norm(vb: &VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    let (w, b) = match vb.contains_tensor("weight") {
        true => ("weight", "bias"),
        false => ("gamma", "beta"),
    };
    Ok(LayerNorm::new(vb.get(size, w)?, vb.get(size, b)?, eps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The CPU kernel's attention against candle's ops (the GPU path, here on the CPU) over
    /// inputs of 70, 5 and 1 rows: BERT's, with rotary positions, and within a window.
    #[test]
    fn the_cpu_kernel_attends_as_candles_products_do() {
        let (heads, head_dim, tokens) = (3, 8, 76);
        let spans = [(0, 70), (70, 5), (75, 1)];
        let values: Vec<f32> = (0..tokens * 3 * heads * head_dim)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let qkv = Tensor::from_vec(values, (tokens, 3 * heads * head_dim), &Device::Cpu).unwrap();
        let rotary = Rotary::new(10_000.0, 1.0, head_dim, 128, &Device::Cpu).unwrap();
        let masks = window_masks(&spans, 6, &Device::Cpu).unwrap();
        let local = Local {
            window: 6,
            masks: &masks,
        };
        for (rotary, local) in [
            (None, None),
            (Some(&rotary), None),
            (Some(&rotary), Some(local)),
        ] {
            let op = Attention {
                spans: &spans,
                heads,
                head_dim,
                rotary: rotary.and_then(Rotary::host),
                window: local.map(|l| l.window),
            };
            let got = qkv.apply_op1_no_bwd(&op).unwrap();
            let want = tensor_attention(&qkv, &spans, rotary, local, heads, head_dim).unwrap();
            assert_eq!(got.dims(), want.dims());
            let (got, want) = (
                got.to_vec2::<f32>().unwrap(),
                want.to_vec2::<f32>().unwrap(),
            );
            for (row, (g, w)) in got.iter().zip(&want).enumerate() {
                for (g, w) in g.iter().zip(w) {
                    assert!(
                        (g - w).abs() < 1e-5,
                        "rotary {} window {}: row {row}: {g} vs {w}",
                        rotary.is_some(),
                        local.is_some()
                    );
                }
            }
        }
    }
}
