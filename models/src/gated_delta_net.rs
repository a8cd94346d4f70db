//! Gated DeltaNet layers (Qwen3-Next; transformers' `Qwen3NextGatedDeltaNet`): linear
//! attention whose memory is a per-sequence state (`crate::sequence_state`).
//!
//! From the normed stream: q, k, v (and the output gate z) by one product, β and the decay's
//! input a by another. q, k, v pass a causal depthwise convolution of `conv_kernel` taps and a
//! SiLU; then the gated delta rule (`candor_kernels::gated_delta`) with β = sigmoid(b) and
//! g = −exp(A_log) · softplus(a + dt_bias); each value head's output is RMS-normed, weighted,
//! and times silu(z). The layer's output product (`out_proj`) is the decoder's `wo`.
//!
//! The products run on the backend; the convolution, the rule and the gated norm run on the
//! host over the products read back (a few values per channel and token beside the
//! projections' `hidden` per channel). A backend with kernels of its own for them would
//! override this path; none does yet.
use crate::backend::Backend;
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::layer_loader::Loader;
use crate::projection::{NormedInput, Projections};
use crate::sequence_state::{causal_conv_silu, each_sequence, gated_head_norm};
use crate::sequence_state::{sigmoid, silu, softplus};
use crate::sequence_state::{LayerState, SequenceState};
use crate::spec::{LinearAttention, ModelSpec};
use crate::weights::names::layer;
use candor_kernels::gated_delta::{gated_delta_rule, DeltaInputs, DeltaShape};

/// How a checkout stores q, k, v and z's product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QkvzLayout {
    /// One product, per key head its q, k, then the v and z of its value heads (Qwen3-Next's
    /// `in_proj_qkvz`, llama.cpp's first qwen3next GGUFs' `ssm_in`).
    PerKeyHead,
    /// q, k, v in one product (q of every head, then k, then v) and z in another (Qwen3.5's
    /// `in_proj_qkv` and `in_proj_z`; llama.cpp's `attn_qkv` and `attn_gate`).
    Concatenated,
    /// q, k, v and z each a product of its own (OLMo Hybrid's `q_proj`, `k_proj`, `v_proj`,
    /// `g_proj`), joined on the host into the convolution's rows.
    Apart,
}

/// How a checkout stores b and a's product (β's and the decay's inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RatesLayout {
    /// One product, per key head the b then the a of its value heads (`in_proj_ba`,
    /// `ssm_ba`).
    PerKeyHead,
    /// Two products (Qwen3.5's `in_proj_b` and `in_proj_a`; `ssm_beta`, `ssm_alpha`).
    Apart,
}

/// One gated DeltaNet layer's weights.
pub(crate) struct GatedDeltaNetLayer<B: Backend> {
    /// q, k, v and z's products, then b and a's, as the checkout stores them (`qkvz`,
    /// `rates`).
    in_proj: Projections<B>,
    qkvz: QkvzLayout,
    rates: RatesLayout,
    /// The convolution, tap-major (`[kernel, channels]`).
    conv: Vec<f32>,
    /// −exp(A_log) per value head: the decay's rate.
    a: Vec<f32>,
    dt_bias: Vec<f32>,
    /// The gated norm's weight, `value_dim` wide (a plain weight, not `1 + w`).
    norm: Vec<f32>,
    dims: LinearAttention,
    eps: f32,
    /// Which of the model's gated DeltaNet layers this is: its place in a sequence's state.
    pub index: usize,
}

impl<B: Backend> GatedDeltaNetLayer<B> {
    pub fn load(ld: &Loader<'_, B>, l: usize, spec: &ModelSpec, index: usize) -> Result<Self> {
        let dims = spec
            .linear_attention
            .clone()
            .ok_or_else(|| ModelError::Config("a gated DeltaNet layer without its spec".into()))?;
        let h = spec.hidden_size;
        let (vh, vd) = (dims.value_heads, dims.value_dim);
        let has = |name: &str| ld.src.contains(&layer(l, name));
        let product = |name: &str, rows: usize| -> Result<(B::Weight, Option<B::Weight>)> {
            Ok((ld.weight(&layer(l, name), &[rows, h])?, None))
        };
        let mut members = Vec::with_capacity(4);
        let key_width = dims.key_heads * dims.key_dim;
        let qkvz = if has("ssm_in.weight") {
            members.push(product("ssm_in.weight", dims.conv_channels() + vh * vd)?);
            QkvzLayout::PerKeyHead
        } else if has("attn_qkv.weight") {
            members.push(product("attn_qkv.weight", dims.conv_channels())?);
            members.push(product("attn_gate.weight", vh * vd)?);
            QkvzLayout::Concatenated
        } else {
            for (name, rows) in [
                ("attn_q.weight", key_width),
                ("attn_k.weight", key_width),
                ("attn_v.weight", vh * vd),
                ("attn_gate.weight", vh * vd),
            ] {
                members.push(product(name, rows)?);
            }
            QkvzLayout::Apart
        };
        let rates = match has("ssm_ba.weight") {
            true => {
                members.push(product("ssm_ba.weight", 2 * vh)?);
                RatesLayout::PerKeyHead
            }
            false => {
                members.push(product("ssm_beta.weight", vh)?);
                members.push(product("ssm_alpha.weight", vh)?);
                RatesLayout::Apart
            }
        };
        let in_proj = Projections::new(ld.backend, members)?;
        Ok(GatedDeltaNetLayer {
            in_proj,
            qkvz,
            rates,
            conv: crate::short_conv::tap_major_kernel(
                ld,
                &layer(l, "ssm_conv1d.weight"),
                dims.conv_channels(),
                dims.conv_kernel,
            )?,
            a: ld.decay_rates(l, vh, &[])?,
            dt_bias: ld.host_vector(&layer(l, "ssm_dt.bias"), vh, &[])?,
            // Read as stored: the model's `1 + w` norms (`norm_offset`) are not this one.
            norm: ld.host_vector(&layer(l, "ssm_norm.weight"), vd, &[])?,
            eps: dims.norm_eps.unwrap_or(spec.rms_eps),
            dims,
            index,
        })
    }

    /// Whether `in_proj`'s members run as one product.
    pub fn is_joined(&self) -> bool {
        self.in_proj.is_joined()
    }

    /// The layer's mixing up to its output product, from the residual stream (`input`), each
    /// sequence of `batch` continuing from its state in `states` (advanced in place). Returns
    /// the stream's next value and the gated, normed outputs (`[tokens, value_heads ·
    /// value_dim]`).
    pub fn mix(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        batch: &FlatBatch,
        states: &mut [SequenceState],
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (stream, parts) = self.in_proj.apply_normed(b, input, None)?;
        let parts = parts
            .iter()
            .map(|p| b.download(p))
            .collect::<Result<Vec<_>>>()?;
        let tokens = batch.ids.len();
        let inputs = Unpacked::new(&self.dims, self.qkvz, self.rates, parts, tokens)?;
        let width = self.dims.value_heads * self.dims.value_dim;
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
        inputs: &Unpacked,
        rows: std::ops::Range<usize>,
        state: &mut LayerState,
        out: &mut [f32],
    ) -> Result<()> {
        let d = &self.dims;
        let ch = d.conv_channels();
        let n = rows.len();
        let step = inputs.conv[rows.start * ch..rows.end * ch].chunks_exact(ch);
        let mixed = causal_conv_silu(&mut state.conv, step, ch, (&self.conv, None))?;

        let key_width = d.key_heads * d.key_dim;
        let (mut q, mut k, mut v) = (
            Vec::with_capacity(n * key_width),
            Vec::with_capacity(n * key_width),
            Vec::with_capacity(n * d.value_heads * d.value_dim),
        );
        for row in mixed.chunks_exact(ch) {
            q.extend_from_slice(&row[..key_width]);
            k.extend_from_slice(&row[key_width..2 * key_width]);
            v.extend_from_slice(&row[2 * key_width..]);
        }
        let heads = d.value_heads;
        let (mut g, mut beta) = (Vec::with_capacity(n * heads), Vec::with_capacity(n * heads));
        for t in rows.clone() {
            for h in 0..heads {
                let a = inputs.a[t * heads + h] + self.dt_bias[h];
                g.push(self.a[h] * softplus(a));
                beta.push(d.beta_scale * sigmoid(inputs.b[t * heads + h]));
            }
        }
        let shape = DeltaShape {
            tokens: n,
            key_heads: d.key_heads,
            value_heads: heads,
            k_dim: d.key_dim,
            v_dim: d.value_dim,
            tiled: d.value_heads_tiled,
            channel_decay: false,
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
        // The gated norm of each value head's output.
        let z = &inputs.z[rows.start * heads * d.value_dim..rows.end * heads * d.value_dim];
        gated_head_norm(out, z, &self.norm, self.eps, silu);
        Ok(())
    }
}

/// A step's products, regrouped on the host: the convolution's input rows (q, k, v channels,
/// `[tokens, conv_channels]`), z (`[tokens, value_heads · value_dim]`), b and a (`[tokens,
/// value_heads]`).
struct Unpacked {
    conv: Vec<f32>,
    z: Vec<f32>,
    b: Vec<f32>,
    a: Vec<f32>,
}

impl Unpacked {
    /// From the products `parts` (`GatedDeltaNetLayer::in_proj`'s members, read back; each
    /// kept as it is where its layout is the one used) of `tokens` tokens, laid out as `qkvz`
    /// and `rates` say.
    fn new(
        d: &LinearAttention,
        qkvz: QkvzLayout,
        rates: RatesLayout,
        parts: Vec<Vec<f32>>,
        tokens: usize,
    ) -> Result<Self> {
        let (kh, kd, vh, vd) = (d.key_heads, d.key_dim, d.value_heads, d.value_dim);
        let group = vh / kh;
        let ch = d.conv_channels();
        let widths: Vec<usize> = match qkvz {
            QkvzLayout::PerKeyHead => vec![ch + vh * vd],
            QkvzLayout::Concatenated => vec![ch, vh * vd],
            QkvzLayout::Apart => vec![kh * kd, kh * kd, vh * vd, vh * vd],
        }
        .into_iter()
        .chain(match rates {
            RatesLayout::PerKeyHead => vec![2 * vh],
            RatesLayout::Apart => vec![vh, vh],
        })
        .collect();
        let fits = parts.len() == widths.len()
            && parts
                .iter()
                .zip(&widths)
                .all(|(p, w)| p.len() == tokens * w);
        if !fits {
            let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
            return Err(ModelError::Backend(format!(
                "gated DeltaNet products of {lens:?} values for {tokens} tokens of widths {widths:?}"
            )));
        }
        // Each part taken as it comes where its layout is the one kept (lengths checked above).
        let mut parts = parts.into_iter();
        let mut next = || parts.next().unwrap_or_default();
        let (conv, z) = match qkvz {
            QkvzLayout::Concatenated => (next(), next()),
            QkvzLayout::Apart => {
                let (q, k, v) = (next(), next(), next());
                let mut conv = Vec::with_capacity(tokens * ch);
                let (key_width, v_width) = (kh * kd, vh * vd);
                for t in 0..tokens {
                    conv.extend_from_slice(&q[t * key_width..(t + 1) * key_width]);
                    conv.extend_from_slice(&k[t * key_width..(t + 1) * key_width]);
                    conv.extend_from_slice(&v[t * v_width..(t + 1) * v_width]);
                }
                (conv, next())
            }
            QkvzLayout::PerKeyHead => {
                // Per key head: q, k, the v of its value heads, their z.
                let joined = next();
                let per_head = 2 * kd + 2 * group * vd;
                let v_width = group * vd;
                let key_width = kh * kd;
                let mut conv = vec![0.0; tokens * ch];
                let mut z = vec![0.0; tokens * vh * vd];
                for t in 0..tokens {
                    let conv = &mut conv[t * ch..(t + 1) * ch];
                    let z = &mut z[t * vh * vd..(t + 1) * vh * vd];
                    for h in 0..kh {
                        let src = &joined[(t * kh + h) * per_head..(t * kh + h + 1) * per_head];
                        let (q, rest) = src.split_at(kd);
                        let (k, rest) = rest.split_at(kd);
                        let (v, zs) = rest.split_at(v_width);
                        conv[h * kd..(h + 1) * kd].copy_from_slice(q);
                        conv[key_width + h * kd..key_width + (h + 1) * kd].copy_from_slice(k);
                        conv[2 * key_width + h * v_width..2 * key_width + (h + 1) * v_width]
                            .copy_from_slice(v);
                        z[h * v_width..(h + 1) * v_width].copy_from_slice(zs);
                    }
                }
                (conv, z)
            }
        };
        let (b, a) = match rates {
            RatesLayout::Apart => (next(), next()),
            RatesLayout::PerKeyHead => {
                // Per key head: the b of its value heads, then their a.
                let joined = next();
                let (mut b, mut a) = (vec![0.0; tokens * vh], vec![0.0; tokens * vh]);
                for (t, ba) in joined.chunks_exact(2 * vh).enumerate() {
                    for (h, pair) in ba.chunks_exact(2 * group).enumerate() {
                        let heads = t * vh + h * group;
                        b[heads..heads + group].copy_from_slice(&pair[..group]);
                        a[heads..heads + group].copy_from_slice(&pair[group..]);
                    }
                }
                (b, a)
            }
        };
        Ok(Unpacked { conv, z, b, a })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regroups_qwen3_next_products_per_key_head() {
        // 2 key heads of 1 dim, 2 value heads each of 1 dim: per key head q, k, v0, v1, z0, z1.
        let d = LinearAttention {
            layers: vec![true],
            key_heads: 2,
            value_heads: 4,
            key_dim: 1,
            value_dim: 1,
            conv_kernel: 2,
            value_heads_tiled: false,
            channel_decay: false,
            beta_scale: 1.0,
            norm_eps: None,
        };
        let qkvz = vec![1., 2., 3., 4., 5., 6., 11., 12., 13., 14., 15., 16.];
        let ba = vec![1., 2., 3., 4., 5., 6., 7., 8.];
        let per_head = |parts: Vec<Vec<f32>>| {
            Unpacked::new(
                &d,
                QkvzLayout::PerKeyHead,
                RatesLayout::PerKeyHead,
                parts,
                1,
            )
        };
        let u = per_head(vec![qkvz.clone(), ba.clone()]).unwrap();
        // q of both heads, k of both, then the four v.
        assert_eq!(u.conv, vec![1., 11., 2., 12., 3., 4., 13., 14.]);
        assert_eq!(u.z, vec![5., 6., 15., 16.]);
        assert_eq!(u.b, vec![1., 2., 5., 6.]);
        assert_eq!(u.a, vec![3., 4., 7., 8.]);
        assert!(per_head(vec![qkvz[1..].to_vec(), ba]).is_err());
        // Qwen3.5's: every part as it comes.
        let parts = vec![u.conv.clone(), u.z.clone(), u.b.clone(), u.a.clone()];
        let apart =
            Unpacked::new(&d, QkvzLayout::Concatenated, RatesLayout::Apart, parts, 1).unwrap();
        assert_eq!(
            (apart.conv, apart.z, apart.b, apart.a),
            (u.conv, u.z, u.b, u.a)
        );
    }
}
