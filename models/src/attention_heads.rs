//! Attention by q, k and v projections (every family but DeepSeek's latent attention): loading
//! a layer's projections (joined or apart, with their biases and q/k norms, laid out for a
//! partial RoPE where the model rotates part of each head), and the work from the residual
//! stream to the rotated q with k and v in the cache.
use crate::backend::{Backend, QkvHeads, RopeKvWrite, RopeSpec};
use crate::decoder::Attention;
use crate::error::{ModelError, Result};
use crate::key_offset;
use crate::layer_loader::Loader;
use crate::lora::{BatchLora, LoraTarget};
use crate::partial_rope::{PartialRope, QkvPart};
use crate::projection::{members, NormedInput, Projections};
use crate::rope::rope_spec;
use crate::spec::ModelSpec;
use crate::weights::names::layer;
use crate::weights::HostWeight;

/// A layer's q/k/v heads from its q, k and v projections, up to attention: the norm, the
/// products (with the batch's LoRA updates), the per-head norms, RoPE and the KV write.
/// Returns the residual stream's next value and the rotated q.
#[allow(clippy::too_many_arguments)]
pub(crate) fn heads_q<B: Backend>(
    b: &B,
    s: &ModelSpec,
    li: usize,
    qkv: &Projections<B>,
    (q_norm, k_norm): (&Option<B::Weight>, &Option<B::Weight>),
    lora: Option<&BatchLora<'_, B>>,
    attn_in: &NormedInput<'_, B>,
    kv_write: RopeKvWrite<'_, B::KvCache>,
) -> Result<(B::Tensor, B::Tensor)> {
    let heads = QkvHeads {
        heads: s.num_heads,
        kv_heads: s.num_kv_heads,
        head_dim: s.head_dim,
    };
    match (lora, q_norm, k_norm) {
        // Neither LoRA nor per-head norms: the norm, product, RoPE and KV write as one.
        (None, None, _) | (None, _, None) => {
            qkv.apply_normed_rope_write_kv(b, attn_in, heads, kv_write)
        }
        _ => {
            let (stream, parts) = match lora {
                Some(lora) => qkv.apply_normed_then(b, attn_in, Some(s.head_dim), |i, h, y| {
                    lora.add(b, li, LoraTarget::QKV[i], h, y)
                })?,
                None => qkv.apply_normed(b, attn_in, Some(s.head_dim))?,
            };
            let [q, k, v] = members(parts)?;
            if s.qk_norm_after_rope {
                // Hunyuan: the norms of the rotated q and k; the normed k is cached.
                let rotate = |x: &B::Tensor| b.rope(x, kv_write.positions, kv_write.rope);
                let (q, k) = qk_norms(b, s, rotate(&q)?, rotate(&k)?, (q_norm, k_norm))?;
                b.kv_write(kv_write.cache, kv_write.layer, &k, &v, kv_write.slots)?;
                return Ok((stream, q));
            }
            let (q, k) = qk_norms(b, s, q, k, (q_norm, k_norm))?;
            Ok((stream, b.rope_qk_write_kv(&q, &k, &v, kv_write)?))
        }
    }
}

/// The RoPE of the global layers, and the factor folded into the q/k weights' rotated rows
/// where RoPE covers part of each head (`rope::partial_rope_spec`; 1 otherwise).
pub(crate) fn global_rope(spec: &ModelSpec) -> (RopeSpec, f32) {
    let (d, theta, scaling) = (spec.head_dim, spec.rope.theta, &spec.rope.scaling);
    match spec.rotary_dim {
        Some(r) => crate::rope::partial_rope_spec(d, r, theta, scaling),
        None => (rope_spec(d, theta, scaling, spec.rope.style), 1.0),
    }
}

/// The norms of q and k (`[tokens, heads, head_dim]`) where the model has them, between the
/// products and RoPE: per head (qwen3, gemma3) or over the whole projection (OLMoE, OLMo 2).
pub(crate) fn qk_norms<B: Backend>(
    b: &B,
    s: &ModelSpec,
    q: B::Tensor,
    k: B::Tensor,
    (q_norm, k_norm): (&Option<B::Weight>, &Option<B::Weight>),
) -> Result<(B::Tensor, B::Tensor)> {
    let norm = |x: &B::Tensor, w: &B::Weight| -> Result<B::Tensor> {
        if !s.qk_norm_whole {
            return b.rms_norm(x, w, s.rms_eps);
        }
        let shape = b.shape(x);
        let tokens = shape.first().copied().unwrap_or(0);
        let flat = b.reshape(x, &[tokens, shape.iter().skip(1).product()])?;
        b.reshape(&b.rms_norm(&flat, w, s.rms_eps)?, &shape)
    };
    match (q_norm, k_norm) {
        (Some(qn), Some(kn)) => Ok((norm(&q, qn)?, norm(&k, kn)?)),
        _ => Ok((q, k)),
    }
}

/// Layer `l`'s q/k/v projections (q, k and v stored apart or joined) and per-head norms.
pub(crate) fn heads_attention<B: Backend>(
    ld: &Loader<'_, B>,
    l: usize,
    spec: &ModelSpec,
) -> Result<Attention<B>> {
    let (h, q, kv, d) = (spec.hidden_size, spec.q_dim(), spec.kv_dim(), spec.head_dim);
    let n = |s: &str| layer(l, s);
    // RoPE over part of each head: q's and k's rows (and biases, norms) laid out for a
    // whole-head rotation.
    let partial = spec
        .rotary_dim
        .map(|r| PartialRope::new(spec, r, global_rope(spec).1));
    let fold = |w: HostWeight, part: QkvPart| -> Result<B::Weight> {
        let w = match &partial {
            Some(p) => p.fold_rows(w, part)?,
            None => w,
        };
        ld.backend.load_weight(w)
    };
    // q/k/v stored as one tensor with one bias (Phi-2 GGUFs converted from the original
    // checkpoints, Falcon's with `bias`), or stored joined for a backend that cannot split a
    // joined product's outputs (plugins): split into the three projections, which take their
    // biases apart.
    let joined_bias = spec.qkv_bias && ld.src.contains(&n("attn_qkv.bias"));
    let unsplittable = ld.src.contains(&n("attn_qkv.weight")) && !ld.backend.splits_outputs();
    let ([wq, wk, wv], [sbq, sbk, sbv]) = match joined_bias || unsplittable {
        true => {
            let (w, b) = split_joined_qkv(ld, l, [q, kv, kv], h, joined_bias)?;
            (w.map(Some), b)
        }
        false => Default::default(),
    };
    let split = wq.is_some();
    let bias = |name: &str, len: usize, part: QkvPart, given: Option<HostWeight>| {
        let b = match given {
            Some(b) => b,
            None if !ld.src.contains(name) => return Ok(None),
            None => ld.checked(name, &[len])?,
        };
        Ok::<_, ModelError>(Some(match &partial {
            Some(p) => p.fold_bias(b, part)?,
            None => b,
        }))
    };
    let load = |b: Option<HostWeight>| b.map(|b| ld.backend.load_weight(b)).transpose();
    let (bq, bk, bv, k_offset) = if spec.qkv_bias {
        let bk = bias(&n("attn_k.bias"), kv, QkvPart::K, sbk)?;
        let k_offset = match &bk {
            Some(b) if key_offset::applies(spec) => {
                let values = b.to_f32()?.flatten_all()?.to_vec1::<f32>()?;
                let rope = global_rope(spec).0;
                Some(key_offset::key_offset(&values, &rope, d, spec.max_position))
            }
            _ => None,
        };
        (
            load(bias(&n("attn_q.bias"), q, QkvPart::Q, sbq)?)?,
            load(bk)?,
            load(bias(&n("attn_v.bias"), kv, QkvPart::V, sbv)?)?,
            k_offset,
        )
    } else {
        (None, None, None, None)
    };
    let norm = |name: &str| -> Result<B::Weight> {
        match &partial {
            Some(p) => ld.backend.load_weight(p.fold_norm(ld.norm_host(name, d)?)?),
            None => ld.norm(name, d),
        }
    };
    let (q_norm, k_norm) = match (spec.qk_norm, spec.qk_norm_whole) {
        (true, false) => (
            Some(norm(&n("attn_q_norm.weight"))?),
            Some(norm(&n("attn_k_norm.weight"))?),
        ),
        (true, true) => (
            Some(ld.norm(&n("attn_q_norm.weight"), q)?),
            Some(ld.norm(&n("attn_k_norm.weight"), kv)?),
        ),
        (false, _) => (None, None),
    };
    let given_or = |given: Option<HostWeight>, name: &str, rows: usize| match given {
        Some(w) => Ok(w),
        None => ld.checked(&n(name), &[rows, h]),
    };
    let joined_name = n("attn_qkv.weight");
    let joined = match ld.src.contains(&joined_name) && !split {
        true => Some(fold(
            ld.checked(&joined_name, &[q + 2 * kv, h])?,
            QkvPart::Joined,
        )?),
        false => None,
    };
    let qkv = match joined {
        Some(joined) if bq.is_none() && bk.is_none() && bv.is_none() => {
            Projections::joined(ld.backend, joined, vec![q, kv, kv])?
        }
        Some(_) => {
            return Err(ModelError::Config(
                "joined q/k/v weights with biases of their own are not supported".into(),
            ))
        }
        None => Projections::new(
            ld.backend,
            vec![
                (fold(given_or(wq, "attn_q.weight", q)?, QkvPart::Q)?, bq),
                (fold(given_or(wk, "attn_k.weight", kv)?, QkvPart::K)?, bk),
                (
                    ld.backend.load_weight(given_or(wv, "attn_v.weight", kv)?)?,
                    bv,
                ),
            ],
        )?,
    };
    Ok(Attention::Heads {
        qkv,
        q_norm,
        k_norm,
        k_offset,
    })
}

/// q, k and v's weights and biases, taken apart from a joined tensor.
type SplitQkv = ([HostWeight; 3], [Option<HostWeight>; 3]);

/// Layer `l`'s joined `attn_qkv` weight (and, `with_bias`, its bias) split into q, k and v
/// (`rows` each): the three weights (rows picked in the file's own storage) and the three
/// biases.
fn split_joined_qkv<B: Backend>(
    ld: &Loader<'_, B>,
    l: usize,
    rows: [usize; 3],
    h: usize,
    with_bias: bool,
) -> Result<SplitQkv> {
    let total: usize = rows.iter().sum();
    let weight = ld.checked(&layer(l, "attn_qkv.weight"), &[total, h])?;
    let bias = match with_bias {
        true => Some(ld.checked(&layer(l, "attn_qkv.bias"), &[total])?),
        false => None,
    };
    let starts = [0, rows[0], rows[0] + rows[1]];
    let piece = |i: usize| -> Result<(HostWeight, Option<HostWeight>)> {
        let b = bias
            .as_ref()
            .map(|b| b.rows(starts[i], rows[i]))
            .transpose()?;
        Ok((weight.rows(starts[i], rows[i])?, b))
    };
    let [(wq, bq), (wk, bk), (wv, bv)] = [piece(0)?, piece(1)?, piece(2)?];
    Ok(([wq, wk, wv], [bq, bk, bv]))
}
