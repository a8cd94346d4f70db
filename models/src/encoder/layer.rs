//! One encoder layer: bidirectional attention over each input's own rows, then the
//! feed-forward block, each added to its input and normed after (post-norm), as BERT and
//! NomicBERT run them. On the CPU the q|k|v projection is one product and attention, bias
//! adds, GELU and SwiGLU are candor's kernels (`cpu_ops`); on a GPU they are candle's ops.
use super::config::{EncoderActivation, EncoderConfig};
use super::cpu_ops::{AddLayerNorm, BandSoftmax, Bias, Gated, Softmax};
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
/// the CPU the softmax skips the keys outside it (`BandSoftmax`); elsewhere `masks`
/// (`window_masks`, one per input) add -inf to their scores.
#[derive(Clone, Copy)]
pub(super) struct Local<'a> {
    pub window: usize,
    pub masks: &'a [Option<Tensor>],
}

/// Per input, `softmax(q · kᵀ) · v` over its rows: candle's products (on the CPU faster than
/// a hand-written loop over each head's keys and values, and than one batched product over
/// several inputs of a length), the softmax candor's kernel on the CPU. With rotary
/// positions each input's queries and keys are turned by their positions from 0 first; with
/// `local`, a token attends only to those within its window.
pub(super) fn attention(
    qkv: &Tensor,
    spans: &[(usize, usize)],
    rotary: Option<&Rotary>,
    local: Option<Local>,
    c: &EncoderConfig,
) -> Result<Tensor> {
    let (heads, head_dim) = (c.num_heads, c.head_dim());
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
        let out = match q.device().is_cpu() {
            true => {
                let window = local.map(|l| l.window).filter(|&w| len > w + 1);
                cpu_attention(&q, &k, &v, window)?
            }
            false => {
                let scores = q.matmul(&k.t()?.contiguous()?)?;
                let scores = match local.and_then(|l| l.masks.get(n)?.as_ref()) {
                    Some(mask) => scores.broadcast_add(mask)?,
                    None => scores,
                };
                candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?
            }
        };
        let out = out.transpose(0, 1)?.contiguous()?;
        context.push(out.reshape((len, width))?);
    }
    Ok(Tensor::cat(&context, 0)?)
}

/// The most score values one block of queries holds on the CPU (32 MB of f32): a longer input
/// runs its queries in blocks, each against every key it may see, so that an 8192-token input
/// never holds `[heads, 8192, 8192]` scores (3.2 GB at 12 heads) at once. Each block's rows are
/// whole softmax rows: the result is the same.
const SCORE_BLOCK_VALUES: usize = 1 << 23;

/// One input's attention on the CPU from `q`, `k`, `v` (`[heads, len, head_dim]`), the same
/// shape out. Its queries run in blocks: under a `window` (local attention) of twice the window,
/// each against only the keys its window reaches (at 512 tokens and a window of 64, half the
/// score products of the whole matrix); else of as many rows as `SCORE_BLOCK_VALUES` holds (one
/// block up to ~1.3k tokens at 12 heads).
fn cpu_attention(q: &Tensor, k: &Tensor, v: &Tensor, window: Option<usize>) -> Result<Tensor> {
    cpu_attention_in_blocks(q, k, v, window, SCORE_BLOCK_VALUES)
}

/// `cpu_attention` with blocks of at most `budget` score values (outside a window).
fn cpu_attention_in_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    window: Option<usize>,
    budget: usize,
) -> Result<Tensor> {
    let (heads, len, _) = q.dims3()?;
    let rows = match window {
        Some(w) => 2 * w,
        None => budget / (heads * len).max(1),
    };
    // At least 16 rows a block, at most the input, and never 0 (an empty input).
    let rows = rows.clamp(16, len.max(16)).min(len).max(1);
    let kt = k.t()?.contiguous()?;
    let mut blocks = Vec::with_capacity(len.div_ceil(rows));
    for first_query in (0..len).step_by(rows) {
        let n = rows.min(len - first_query);
        let (first_key, end) = match window {
            Some(w) => (
                first_query.saturating_sub(w),
                (first_query + n + w).min(len),
            ),
            None => (0, len),
        };
        let keys = end - first_key;
        let qb = q.narrow(1, first_query, n)?.contiguous()?;
        let scores = qb.matmul(&kt.narrow(2, first_key, keys)?.contiguous()?)?;
        match window {
            Some(window) => scores.inplace_op1(&BandSoftmax {
                window,
                first_query,
                first_key,
            })?,
            None => scores.inplace_op1(&Softmax)?,
        }
        blocks.push(scores.matmul(&v.narrow(1, first_key, keys)?.contiguous()?)?);
    }
    match blocks.len() {
        1 => Ok(blocks.remove(0)),
        _ => Ok(Tensor::cat(&blocks, 1)?),
    }
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

    /// `[heads, len, dim]` of values from `seed`.
    fn tensor(heads: usize, len: usize, dim: usize, seed: usize) -> Tensor {
        let values: Vec<f32> = (0..heads * len * dim)
            .map(|i| (((i + seed) * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        Tensor::from_vec(values, (heads, len, dim), &Device::Cpu).unwrap()
    }

    /// `softmax(q·kᵀ + mask)·v` over the whole matrix, -inf outside `window`, in f64.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, window: Option<usize>) -> Vec<f64> {
        let [q, k, v] = [q, k, v].map(|t| t.to_vec3::<f32>().unwrap());
        let mut out = Vec::new();
        for h in 0..q.len() {
            for (i, qi) in q[h].iter().enumerate() {
                let seen = |j: usize| window.is_none_or(|w| i.abs_diff(j) <= w);
                let scores: Vec<f64> = (k[h].iter().enumerate())
                    .map(|(j, kj)| match seen(j) {
                        true => qi.iter().zip(kj).map(|(a, b)| (a * b) as f64).sum(),
                        false => f64::NEG_INFINITY,
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = weights.iter().sum();
                for d in 0..v[h][0].len() {
                    let mixed: f64 = (weights.iter().zip(&v[h]))
                        .map(|(w, vj)| w * vj[d] as f64)
                        .sum();
                    out.push(mixed / sum);
                }
            }
        }
        out
    }

    #[test]
    fn queries_in_blocks_attend_as_the_whole_matrix_does() {
        let (heads, len, dim) = (3, 70, 8);
        let (q, k, v) = (
            tensor(heads, len, dim, 1),
            tensor(heads, len, dim, 2),
            tensor(heads, len, dim, 3),
        );
        // Whole rows (one block, then blocks of 16 and of 23 queries), and windows of 5 and 20
        // (blocks of 16 and 40 queries against the keys they reach).
        for (window, budget) in [
            (None, usize::MAX),
            (None, heads * len * 16),
            (None, heads * len * 23),
            (Some(5), usize::MAX),
            (Some(20), usize::MAX),
        ] {
            let got = cpu_attention_in_blocks(&q, &k, &v, window, budget).unwrap();
            assert_eq!(got.dims(), [heads, len, dim]);
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            let want = reference(&q, &k, &v, window);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() < 1e-5,
                    "{window:?} {budget}: value {i}: {g} vs {w}"
                );
            }
        }
    }
}
