//! Kimi Delta Attention layers (Kimi Linear; transformers' `KimiLinearDeltaAttention`): the
//! gated delta rule with a decay per key channel, over a per-sequence state
//! (`crate::sequence_state`).
//!
//! From the normed stream: q, k and v by three products, convolved (causal, depthwise, no
//! bias) and through a SiLU; the log-decay of each channel g = −exp(A_log) · softplus(f +
//! dt_bias), f from a low-rank pair of products (`f_a`, `f_b`); β = sigmoid(b); the rule
//! (`candor_kernels::gated_delta`, `channel_decay`); each head's output RMS-normed, weighted
//! and times sigmoid of a low-rank gate (`g_a`, `g_b`). The output product (`o_proj`) is the
//! decoder's `wo`. As for the gated DeltaNet, the products run on the backend and the rest on
//! the host over them read back.
use crate::backend::Backend;
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::layer_loader::Loader;
use crate::projection::{members, NormedInput, Projections};
use crate::sequence_state::{causal_conv_silu, each_sequence, gated_head_norm};
use crate::sequence_state::{read_rows, sigmoid, softplus};
use crate::sequence_state::{LayerState, SequenceState};
use crate::spec::{LinearAttention, ModelSpec};
use crate::weights::names::layer;
use candor_kernels::gated_delta::{gated_delta_rule, DeltaInputs, DeltaShape};

/// One Kimi Delta Attention layer's weights.
pub(crate) struct KimiDeltaLayer<B: Backend> {
    /// q, k, v, b and the two low-rank pairs' first products, all of the normed stream.
    in_proj: Projections<B>,
    /// The forget gate's and the output gate's second products (`[heads · dim, dim]`).
    f_b: B::Weight,
    g_b: B::Weight,
    /// q's, k's and v's convolutions, tap-major over their joined channels.
    conv: Vec<f32>,
    /// −exp(A_log) per head.
    a: Vec<f32>,
    /// The forget gate's bias, per channel.
    dt_bias: Vec<f32>,
    /// The output norm's weight, one head wide.
    norm: Vec<f32>,
    dims: LinearAttention,
    eps: f32,
    /// Which of the model's recurrent layers this is: its place in a sequence's state.
    pub index: usize,
}

impl<B: Backend> KimiDeltaLayer<B> {
    pub fn load(ld: &Loader<'_, B>, l: usize, spec: &ModelSpec, index: usize) -> Result<Self> {
        let dims = spec
            .linear_attention
            .clone()
            .filter(|d| d.channel_decay)
            .ok_or_else(|| ModelError::Config("a Kimi Delta layer without its spec".into()))?;
        if dims.key_heads != dims.value_heads || dims.key_dim != dims.value_dim {
            return Err(ModelError::Config(format!(
                "Kimi Delta Attention: {} key heads of {} for {} value heads of {}",
                dims.key_heads, dims.key_dim, dims.value_heads, dims.value_dim
            )));
        }
        let (h, heads, d) = (spec.hidden_size, dims.value_heads, dims.value_dim);
        let width = heads * d;
        let product = |name: &str, rows: usize| -> Result<(B::Weight, Option<B::Weight>)> {
            Ok((ld.weight(&layer(l, name), &[rows, h])?, None))
        };
        let in_proj = Projections::new(
            ld.backend,
            vec![
                product("attn_q.weight", width)?,
                product("attn_k.weight", width)?,
                product("attn_v.weight", width)?,
                product("ssm_beta.weight", heads)?,
                product("ssm_f_a.weight", d)?,
                product("ssm_g_a.weight", d)?,
            ],
        )?;
        // The three convolutions as one over q | k | v.
        let taps = dims.conv_kernel;
        let parts = [
            "ssm_conv1d_q.weight",
            "ssm_conv1d_k.weight",
            "ssm_conv1d_v.weight",
        ]
        .map(|name| crate::short_conv::tap_major_kernel(ld, &layer(l, name), width, taps));
        let mut conv = vec![0.0f32; taps * 3 * width];
        for (p, part) in parts.into_iter().enumerate() {
            let part = part?;
            for (t, row) in part.chunks_exact(width).enumerate() {
                conv[(t * 3 + p) * width..][..width].copy_from_slice(row);
            }
        }
        Ok(KimiDeltaLayer {
            in_proj,
            f_b: ld.weight(&layer(l, "ssm_f_b.weight"), &[width, d])?,
            g_b: ld.weight(&layer(l, "ssm_g_b.weight"), &[width, d])?,
            conv,
            // transformers keeps A_log as `[1, 1, heads, 1]`.
            a: ld.decay_rates(l, heads, &[&[1, 1, heads, 1], &[heads, 1]])?,
            dt_bias: ld.host_vector(&layer(l, "ssm_dt.bias"), width, &[])?,
            // Read as stored: the model's norm offset is not this one's.
            norm: ld.host_vector(&layer(l, "ssm_norm.weight"), d, &[])?,
            dims,
            eps: spec.rms_eps,
            index,
        })
    }

    /// Whether `in_proj`'s members run as one product.
    pub fn is_joined(&self) -> bool {
        self.in_proj.is_joined()
    }

    /// The layer's mixing up to its output product, from the residual stream (`input`), each
    /// sequence of `batch` continuing from its state in `states` (advanced in place). Returns
    /// the stream's next value and the gated, normed outputs (`[tokens, heads · dim]`).
    pub fn mix(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        batch: &FlatBatch,
        states: &mut [SequenceState],
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (stream, parts) = self.in_proj.apply_normed(b, input, None)?;
        let [q, k, v, beta, f_a, g_a] = members(parts)?;
        let f = b.linear(&f_a, &self.f_b, None)?;
        let gate = b.linear(&g_a, &self.g_b, None)?;
        let tokens = batch.ids.len();
        let d = &self.dims;
        let width = d.value_heads * d.value_dim;
        let read = |t: &B::Tensor, w: usize, what: &str| {
            read_rows(b, t, (tokens, w), ("Kimi Delta Attention", what))
        };
        let (q, k, v) = (
            read(&q, width, "q")?,
            read(&k, width, "k")?,
            read(&v, width, "v")?,
        );
        // The convolution's input rows: q | k | v per token.
        let mut conv_in = Vec::with_capacity(tokens * 3 * width);
        for t in 0..tokens {
            for part in [&q, &k, &v] {
                conv_in.extend_from_slice(&part[t * width..(t + 1) * width]);
            }
        }
        let inputs = Products {
            conv: conv_in,
            beta: read(&beta, d.value_heads, "b")?,
            forget: read(&f, width, "the forget gate")?,
            gate: read(&gate, width, "the output gate")?,
        };
        let mut out = vec![0.0f32; tokens * width];
        each_sequence(
            batch,
            states,
            self.index,
            (&mut out, width),
            |rows, state, o| self.run_sequence(&inputs, rows, state, o),
        )?;
        Ok((stream, b.upload(&out, &[tokens, width])?))
    }

    /// One sequence's tokens (`rows` of the batch) through the convolution, the rule and the
    /// gated norm, into `out`.
    fn run_sequence(
        &self,
        inputs: &Products,
        rows: std::ops::Range<usize>,
        state: &mut LayerState,
        out: &mut [f32],
    ) -> Result<()> {
        let d = &self.dims;
        let (heads, dim) = (d.value_heads, d.value_dim);
        let width = heads * dim;
        let ch = 3 * width;
        let n = rows.len();
        let step = inputs.conv[rows.start * ch..rows.end * ch].chunks_exact(ch);
        let mixed = causal_conv_silu(&mut state.conv, step, ch, (&self.conv, None))?;
        let (mut q, mut k, mut v) = (
            Vec::with_capacity(n * width),
            Vec::with_capacity(n * width),
            Vec::with_capacity(n * width),
        );
        for row in mixed.chunks_exact(ch) {
            q.extend_from_slice(&row[..width]);
            k.extend_from_slice(&row[width..2 * width]);
            v.extend_from_slice(&row[2 * width..]);
        }
        let forget = &inputs.forget[rows.start * width..rows.end * width];
        let g: Vec<f32> = forget
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                let c = i % width;
                self.a[c / dim] * softplus(f + self.dt_bias[c])
            })
            .collect();
        let beta: Vec<f32> = inputs.beta[rows.start * heads..rows.end * heads]
            .iter()
            .map(|&x| sigmoid(x))
            .collect();
        let shape = DeltaShape {
            tokens: n,
            key_heads: heads,
            value_heads: heads,
            k_dim: dim,
            v_dim: dim,
            tiled: false,
            channel_decay: true,
        };
        let rule_inputs = DeltaInputs {
            q: &q,
            k: &k,
            v: &v,
            g: &g,
            beta: &beta,
        };
        gated_delta_rule(shape, rule_inputs, &mut state.recurrent, out)
            .map_err(ModelError::Backend)?;
        // Each head's output RMS-normed, weighted, times sigmoid(gate).
        let gate = &inputs.gate[rows.start * width..rows.end * width];
        gated_head_norm(out, gate, &self.norm, self.eps, sigmoid);
        Ok(())
    }
}

/// A step's products read back: the convolution's input rows (`[tokens, 3 · heads · dim]`),
/// b (`[tokens, heads]`), the forget gate's and the output gate's (`[tokens, heads · dim]`).
struct Products {
    conv: Vec<f32>,
    beta: Vec<f32>,
    forget: Vec<f32>,
    gate: Vec<f32>,
}
