//! Mamba-1 layers (Mamba, Falcon Mamba; transformers' `MambaMixer`): a selective scan whose
//! memory is a per-sequence state (`crate::sequence_state`).
//!
//! From the normed stream, one product gives x and the gate z. x passes a causal depthwise
//! convolution (with its bias) and a SiLU; from it `x_proj` gives dt's low-rank input and B, C
//! (Falcon Mamba RMS-normalizes the three without weights), `dt_proj` (with its bias) gives
//! each channel's dt through a softplus (Jamba's norms of the three have weights); then the scan (`candor_kernels::selective_scan`) with
//! A = −exp(A_log) and the D skip, times silu(z). The output product (`out_proj`) is the
//! decoder's `wo`.
//!
//! The products run on the backend, the convolution and the scan on the host over them read
//! back: the convolution comes between two products, so a step reads back twice per layer.
use crate::backend::Backend;
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::layer_loader::Loader;
use crate::projection::NormedInput;
use crate::sequence_state::{causal_conv_silu, each_sequence, read_rows};
use crate::sequence_state::{silu, softplus, SequenceState};
use crate::spec::{Mamba1, ModelSpec};
use crate::weights::names::layer;
use candor_kernels::selective_scan::{selective_scan, ScanInputs, ScanShape};

/// One Mamba-1 layer's weights.
pub(crate) struct Mamba1Layer<B: Backend> {
    in_proj: B::Weight,
    in_bias: Option<B::Weight>,
    /// The convolution, tap-major (`[kernel, inner]`), and its bias.
    conv: Vec<f32>,
    conv_bias: Option<Vec<f32>>,
    /// `[dt_rank + 2 · state, inner]`.
    x_proj: B::Weight,
    /// `[inner, dt_rank]` and its bias.
    dt_proj: B::Weight,
    dt_bias: Option<B::Weight>,
    /// −exp(A_log), `[inner, state]`.
    a: Vec<f32>,
    d: Vec<f32>,
    /// Jamba's weights of the norms of dt's low-rank input, B and C, in that order.
    bcdt_norm_weights: Option<[Vec<f32>; 3]>,
    dims: Mamba1,
    /// Which of the model's recurrent layers this is: its place in a sequence's state.
    pub index: usize,
}

impl<B: Backend> Mamba1Layer<B> {
    pub fn load(ld: &Loader<'_, B>, l: usize, spec: &ModelSpec, index: usize) -> Result<Self> {
        let dims = spec
            .mamba1
            .clone()
            .ok_or_else(|| ModelError::Config("a Mamba-1 layer without its spec".into()))?;
        let (h, inner, state, rank) = (spec.hidden_size, dims.inner, dims.state, dims.dt_rank);
        let n = |s: &str| layer(l, s);
        let bcdt_norm_weights = match dims.bcdt_norm_weights {
            true => Some([
                ld.host_vector(&n("ssm_dt_norm.weight"), rank, &[])?,
                ld.host_vector(&n("ssm_b_norm.weight"), state, &[])?,
                ld.host_vector(&n("ssm_c_norm.weight"), state, &[])?,
            ]),
            false => None,
        };
        let conv_bias = match ld.src.contains(&n("ssm_conv1d.bias")) {
            true => Some(ld.host_vector(&n("ssm_conv1d.bias"), inner, &[])?),
            false => None,
        };
        Ok(Mamba1Layer {
            in_proj: ld.weight(&n("ssm_in.weight"), &[2 * inner, h])?,
            in_bias: ld.opt_weight(&n("ssm_in.bias"), &[2 * inner])?,
            conv: crate::short_conv::tap_major_kernel(
                ld,
                &n("ssm_conv1d.weight"),
                inner,
                dims.conv_kernel,
            )?,
            conv_bias,
            x_proj: ld.weight(&n("ssm_x.weight"), &[rank + 2 * state, inner])?,
            dt_proj: ld.weight(&n("ssm_dt.weight"), &[inner, rank])?,
            dt_bias: ld.opt_weight(&n("ssm_dt.bias"), &[inner])?,
            a: ld.decay_rates(l, inner * state, &[&[inner, state]])?,
            d: match ld.src.contains(&n("ssm_d")) {
                true => ld.host_vector(&n("ssm_d"), inner, &[])?,
                false => ld.host_vector(&n("ssm_d.weight"), inner, &[])?,
            },
            bcdt_norm_weights,
            dims,
            index,
        })
    }

    /// The layer's mixing up to its output product, from the residual stream (`input`), each
    /// sequence of `batch` continuing from its state in `states` (advanced in place). Returns
    /// the stream's next value and the gated scan's outputs (`[tokens, inner]`).
    pub fn mix(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        batch: &FlatBatch,
        states: &mut [SequenceState],
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (stream, h) = input.normed(b)?;
        let d = &self.dims;
        let (tokens, inner, state, rank) = (batch.ids.len(), d.inner, d.state, d.dt_rank);
        let read = |t: &B::Tensor, width: usize, what: &str| {
            read_rows(b, t, (tokens, width), ("Mamba-1", what))
        };
        let xz = b.linear(&h, &self.in_proj, self.in_bias.as_ref())?;
        let xz = read(&xz, 2 * inner, "in_proj")?;
        // The convolution of each sequence's x, from its state.
        let mut xc = vec![0.0f32; tokens * inner];
        each_sequence(
            batch,
            states,
            self.index,
            (&mut xc, inner),
            |rows, s, out| {
                let step = xz[rows.start * 2 * inner..rows.end * 2 * inner]
                    .chunks_exact(2 * inner)
                    .map(|row| &row[..inner]);
                let kernel = (&self.conv[..], self.conv_bias.as_deref());
                out.copy_from_slice(&causal_conv_silu(&mut s.conv, step, inner, kernel)?);
                Ok(())
            },
        )?;
        let params = b.linear(&b.upload(&xc, &[tokens, inner])?, &self.x_proj, None)?;
        let params = read(&params, rank + 2 * state, "x_proj")?;
        let (mut low, mut bs, mut cs) = (
            Vec::with_capacity(tokens * rank),
            Vec::with_capacity(tokens * state),
            Vec::with_capacity(tokens * state),
        );
        for row in params.chunks_exact(rank + 2 * state) {
            for (which, (part, to)) in [
                (&row[..rank], &mut low),
                (&row[rank..rank + state], &mut bs),
                (&row[rank + state..], &mut cs),
            ]
            .into_iter()
            .enumerate()
            {
                let from = to.len();
                to.extend_from_slice(part);
                if let Some(e) = d.bcdt_norm {
                    let weight = self.bcdt_norm_weights.as_ref().map(|w| &w[which][..]);
                    rms_normalize(&mut to[from..], e, weight);
                }
            }
        }
        let dt = b.linear(
            &b.upload(&low, &[tokens, rank])?,
            &self.dt_proj,
            self.dt_bias.as_ref(),
        )?;
        let dt: Vec<f32> = read(&dt, inner, "dt_proj")?
            .into_iter()
            .map(softplus)
            .collect();
        let mut y = vec![0.0f32; tokens * inner];
        each_sequence(
            batch,
            states,
            self.index,
            (&mut y, inner),
            |rows, s, out| {
                let shape = ScanShape {
                    tokens: rows.len(),
                    channels: inner,
                    state,
                };
                let per_channel = rows.start * inner..rows.end * inner;
                let per_state = rows.start * state..rows.end * state;
                let inputs = ScanInputs {
                    x: &xc[per_channel.clone()],
                    dt: &dt[per_channel],
                    b: &bs[per_state.clone()],
                    c: &cs[per_state],
                    a: &self.a,
                    d: &self.d,
                };
                selective_scan(shape, inputs, &mut s.recurrent, out).map_err(ModelError::Backend)
            },
        )?;
        for (v, row) in y.chunks_exact_mut(inner).zip(xz.chunks_exact(2 * inner)) {
            for (yi, &z) in v.iter_mut().zip(&row[inner..]) {
                *yi *= silu(z);
            }
        }
        Ok((stream, b.upload(&y, &[tokens, inner])?))
    }
}

/// `v` divided by its root mean square (ε under the root), times `weight` where it has one:
/// Falcon Mamba's `rms_forward` (none), Jamba's RMSNorms.
fn rms_normalize(v: &mut [f32], eps: f32, weight: Option<&[f32]>) {
    let mean = v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32;
    let inv = 1.0 / (mean + eps).sqrt();
    match weight {
        Some(w) => v.iter_mut().zip(w).for_each(|(x, w)| *x *= inv * w),
        None => v.iter_mut().for_each(|x| *x *= inv),
    }
}
