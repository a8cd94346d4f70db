//! Mamba-2 layers (Granite 4.0-H's and Nemotron-H's; transformers' `GraniteMoeHybridMambaLayer`,
//! `NemotronHMamba2Mixer`): a selective state-space model whose memory is a per-sequence state
//! (`crate::sequence_state`).
//!
//! From the normed stream, one product gives the gate z, the convolution's input (x, then B and
//! C of each group) and each head's step dt. x, B, C pass a causal depthwise convolution (with
//! its bias) and a SiLU; then the recurrence (`candor_kernels::ssd`) with dt = softplus(dt +
//! dt_bias) clamped to the model's range and A = −exp(A_log); the output times silu(z) is RMS-normed (over
//! `norm_group` channels at a time) and weighted. The layer's output product (`out_proj`) is
//! the decoder's `wo`.
//!
//! As for the gated DeltaNet, the product runs on the backend and the rest on the host over
//! it read back.
use crate::backend::Backend;
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::layer_loader::Loader;
use crate::projection::NormedInput;
use crate::sequence_state::{causal_conv_silu, each_sequence, silu, softplus};
use crate::sequence_state::{LayerState, SequenceState};
use crate::spec::{GatedNorm, Mamba2, ModelSpec};
use crate::weights::names::layer;
use candor_kernels::ssd::{ssd_scan, SsdInputs, SsdShape};

/// One Mamba-2 layer's weights.
pub(crate) struct Mamba2Layer<B: Backend> {
    in_proj: B::Weight,
    in_bias: Option<B::Weight>,
    /// The convolution, tap-major (`[kernel, channels]`), and its bias.
    conv: Vec<f32>,
    conv_bias: Option<Vec<f32>>,
    dt_bias: Vec<f32>,
    /// −exp(A_log) per head.
    a: Vec<f32>,
    /// The skip's weight per head.
    d: Vec<f32>,
    /// The gated norm's weight, `inner` wide.
    norm: Vec<f32>,
    dims: Mamba2,
    eps: f32,
    /// Which of the model's recurrent layers this is: its place in a sequence's state.
    pub index: usize,
}

impl<B: Backend> Mamba2Layer<B> {
    pub fn load(ld: &Loader<'_, B>, l: usize, spec: &ModelSpec, index: usize) -> Result<Self> {
        let dims = spec
            .mamba
            .clone()
            .ok_or_else(|| ModelError::Config("a Mamba-2 layer without its spec".into()))?;
        let (h, heads) = (spec.hidden_size, dims.heads);
        let rows = dims.inner() + dims.conv_channels() + heads;
        // llama.cpp's converters store the per-head values as `[heads, 1]` and the norm per
        // group, `[groups, inner / groups]`.
        let per_head: &[&[usize]] = &[&[heads, 1]];
        let host = |name: &str, len: usize, shapes: &[&[usize]]| {
            ld.host_vector(&layer(l, name), len, shapes)
        };
        let conv_bias = match ld.src.contains(&layer(l, "ssm_conv1d.bias")) {
            true => Some(host("ssm_conv1d.bias", dims.conv_channels(), &[])?),
            false => None,
        };
        let grouped = [dims.groups, dims.inner() / dims.groups];
        Ok(Mamba2Layer {
            in_proj: ld.weight(&layer(l, "ssm_in.weight"), &[rows, h])?,
            in_bias: ld.opt_weight(&layer(l, "ssm_in.bias"), &[rows])?,
            conv: crate::short_conv::tap_major_kernel(
                ld,
                &layer(l, "ssm_conv1d.weight"),
                dims.conv_channels(),
                dims.conv_kernel,
            )?,
            conv_bias,
            dt_bias: host("ssm_dt.bias", heads, &[])?,
            a: ld.decay_rates(l, heads, per_head)?,
            d: match ld.src.contains(&layer(l, "ssm_d")) {
                true => host("ssm_d", heads, per_head)?,
                false => host("ssm_d.weight", heads, &[])?,
            },
            // Read as stored: the model's own norms' offset is not this one's.
            norm: match dims.gated_norm {
                GatedNorm::None => Vec::new(),
                _ => host("ssm_norm.weight", dims.inner(), &[&grouped])?,
            },
            dims,
            eps: spec.rms_eps,
            index,
        })
    }

    /// The layer's mixing up to its output product, from the residual stream (`input`), each
    /// sequence of `batch` continuing from its state in `states` (advanced in place). Returns
    /// the stream's next value and the gated, normed outputs (`[tokens, inner]`).
    pub fn mix(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        batch: &FlatBatch,
        states: &mut [SequenceState],
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (stream, h) = input.normed(b)?;
        let projected = b.download(&b.linear(&h, &self.in_proj, self.in_bias.as_ref())?)?;
        let (tokens, inner) = (batch.ids.len(), self.dims.inner());
        let width = inner + self.dims.conv_channels() + self.dims.heads;
        if projected.len() != tokens * width {
            return Err(ModelError::Backend(format!(
                "Mamba-2: a product of {} values for {tokens} tokens of {width}",
                projected.len()
            )));
        }
        let mut out = vec![0.0f32; tokens * inner];
        each_sequence(
            batch,
            states,
            self.index,
            (&mut out, inner),
            |rows, state, o| {
                let rows = &projected[rows.start * width..rows.end * width];
                self.run_sequence(rows, state, o)
            },
        )?;
        Ok((stream, b.upload(&out, &[tokens, inner])?))
    }

    /// One sequence's rows of the product (`[n, inner + channels + heads]`) through the
    /// convolution, the recurrence and the gated norm, into `out`.
    fn run_sequence(&self, rows: &[f32], state: &mut LayerState, out: &mut [f32]) -> Result<()> {
        let d = &self.dims;
        let (inner, ch) = (d.inner(), d.conv_channels());
        let width = inner + ch + d.heads;
        let n = rows.len() / width;
        let step = rows.chunks_exact(width).map(|row| &row[inner..inner + ch]);
        let kernel = (&self.conv[..], self.conv_bias.as_deref());
        let mixed = causal_conv_silu(&mut state.conv, step, ch, kernel)?;

        let bc = d.groups * d.state;
        let (mut x, mut bs, mut cs) = (
            Vec::with_capacity(n * inner),
            Vec::with_capacity(n * bc),
            Vec::with_capacity(n * bc),
        );
        for row in mixed.chunks_exact(ch) {
            x.extend_from_slice(&row[..inner]);
            bs.extend_from_slice(&row[inner..inner + bc]);
            cs.extend_from_slice(&row[inner + bc..]);
        }
        let dt: Vec<f32> = rows
            .chunks_exact(width)
            .flat_map(|row| {
                row[inner + ch..]
                    .iter()
                    .zip(&self.dt_bias)
                    .map(|(v, bias)| softplus(v + bias).clamp(d.dt_limit.0, d.dt_limit.1))
            })
            .collect();
        let shape = SsdShape {
            tokens: n,
            heads: d.heads,
            groups: d.groups,
            head_dim: d.head_dim,
            state: d.state,
        };
        let inputs = SsdInputs {
            x: &x,
            b: &bs,
            c: &cs,
            dt: &dt,
            a: &self.a,
            d: &self.d,
        };
        ssd_scan(shape, inputs, &mut state.recurrent, out).map_err(ModelError::Backend)?;
        // y · silu(z), RMS-normed per group of `norm_group` channels and weighted after the gate
        // or before it, or not at all (`GatedNorm`).
        let group = d.norm_group.max(1);
        let norm = |y: &mut [f32]| {
            for (part, w) in y.chunks_mut(group).zip(self.norm.chunks(group)) {
                let mean = part.iter().map(|v| v * v).sum::<f32>() / part.len() as f32;
                let inv = 1.0 / (mean + self.eps).sqrt();
                part.iter_mut().zip(w).for_each(|(v, &w)| *v *= inv * w);
            }
        };
        for (y, row) in out.chunks_exact_mut(inner).zip(rows.chunks_exact(width)) {
            if d.gated_norm == GatedNorm::BeforeGate {
                norm(y);
            }
            for (v, &z) in y.iter_mut().zip(&row[..inner]) {
                *v *= silu(z);
            }
            if d.gated_norm == GatedNorm::AfterGate {
                norm(y);
            }
        }
        Ok(())
    }
}
