//! Attention by q, k and v projections (every family but DeepSeek's latent attention): loading
//! a layer's projections (joined or apart, with their biases and q/k norms, laid out for a
//! partial RoPE where the model rotates part of each head), and the work from the residual
//! stream to the rotated q with k and v in the cache.
use crate::backend::{Backend, QkvHeads, RopeKvWrite, RopeSpec, WeightDtype};
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
use candle_core::Device;

/// `heads_q`'s outputs: the residual stream's next value, the rotated q, the output gate's
/// product where the model has one.
pub(crate) type HeadsQ<T> = (T, T, Option<T>);

/// A layer's q/k/v heads from its q, k and v projections, up to attention: the norm, the
/// products (with the batch's LoRA updates), the per-head norms, RoPE and the KV write.
/// Returns the residual stream's next value, the rotated q and, where the model gates the
/// attention's output (`ModelSpec::attn_output_gate`), the gate's product (the group's fourth
/// member, `[tokens, heads, head_dim]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn heads_q<B: Backend>(
    b: &B,
    s: &ModelSpec,
    li: usize,
    qkv: &Projections<B>,
    qk_norms: Option<&QkNorms<B>>,
    lora: Option<&BatchLora<'_, B>>,
    attn_in: &NormedInput<'_, B>,
    kv_write: RopeKvWrite<'_, B::KvCache>,
) -> Result<HeadsQ<B::Tensor>> {
    let heads = QkvHeads {
        heads: s.num_heads,
        kv_heads: s.num_kv_heads,
        head_dim: s.head_dim,
    };
    match (lora, qk_norms) {
        // Neither LoRA nor per-head norms: the norm, product, RoPE and KV write as one.
        (None, None) if !s.attn_output_gate => {
            let (stream, q) = qkv.apply_normed_rope_write_kv(b, attn_in, heads, kv_write)?;
            Ok((stream, q, None))
        }
        _ => {
            let (stream, mut parts) = match lora {
                // The output gate's product (a fourth member) takes no adapter.
                Some(lora) => qkv.apply_normed_then(b, attn_in, Some(s.head_dim), |i, h, y| {
                    match LoraTarget::QKV.get(i) {
                        Some(&target) => lora.add(b, li, target, h, y),
                        None => Ok(y),
                    }
                })?,
                None => qkv.apply_normed(b, attn_in, Some(s.head_dim))?,
            };
            let gate = match s.attn_output_gate {
                true => Some(parts.pop().ok_or_else(|| {
                    ModelError::Backend("the attention's gate product is missing".into())
                })?),
                false => None,
            };
            let [q, k, v] = members(parts)?;
            if s.qk_norm_after_rope {
                // Hunyuan: the norms of the rotated q and k; the normed k is cached.
                let rotate = |x: &B::Tensor| b.rope(x, kv_write.positions, kv_write.rope);
                let (q, k) = norm_qk(b, s, rotate(&q)?, rotate(&k)?, qk_norms)?;
                b.kv_write(kv_write.cache, kv_write.layer, &k, &v, kv_write.slots)?;
                return Ok((stream, q, gate));
            }
            let (q, k) = norm_qk(b, s, q, k, qk_norms)?;
            Ok((stream, b.rope_qk_write_kv(&q, &k, &v, kv_write)?, gate))
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

/// The norms of q and k some families have, between the products and RoPE.
pub(crate) struct QkNorms<B: Backend> {
    q: B::Weight,
    k: B::Weight,
    /// Each head's own weights (Command R+, StableLM-2-12B): `q` and `k` are then unit weights
    /// of one head's width, and these `[1, heads · head_dim]` tables scale the normed heads.
    /// The backends' norms take one weight for every row, a row being one head of one token
    /// here, so the per-head weights come after, tiled over the tokens by `embedding`.
    per_head: Option<(B::Weight, B::Weight)>,
}

/// The norms of q and k (`[tokens, heads, head_dim]`) where the model has them, between the
/// products and RoPE: per head with one weight (qwen3, gemma3) or each head its own
/// (Command R+), or over the whole projection (OLMoE, OLMo 2).
pub(crate) fn norm_qk<B: Backend>(
    b: &B,
    s: &ModelSpec,
    q: B::Tensor,
    k: B::Tensor,
    norms: Option<&QkNorms<B>>,
) -> Result<(B::Tensor, B::Tensor)> {
    let Some(norms) = norms else {
        return Ok((q, k));
    };
    let norm = |x: &B::Tensor, w: &B::Weight, table: Option<&B::Weight>| -> Result<B::Tensor> {
        let shape = b.shape(x);
        let tokens = shape.first().copied().unwrap_or(0);
        if let Some(table) = table {
            let d = shape.last().copied().unwrap_or(0);
            let rows = b.reshape(x, &[shape.iter().product::<usize>() / d.max(1), d])?;
            let normed = b.reshape(&b.layer_norm(&rows, w, None, s.rms_eps)?, &shape)?;
            let weights = b.reshape(&b.embedding(table, &vec![0; tokens])?, &shape)?;
            return b.mul(&normed, &weights);
        }
        if !s.qk_norm_whole {
            return b.rms_norm(x, w, s.rms_eps);
        }
        let flat = b.reshape(x, &[tokens, shape.iter().skip(1).product()])?;
        b.reshape(&b.rms_norm(&flat, w, s.rms_eps)?, &shape)
    };
    let (q_table, k_table) = match &norms.per_head {
        Some((q, k)) => (Some(q), Some(k)),
        None => (None, None),
    };
    Ok((norm(&q, &norms.q, q_table)?, norm(&k, &norms.k, k_table)?))
}

/// Layer `l`'s q/k norms as `spec` says the model has them.
fn load_qk_norms<B: Backend>(
    ld: &Loader<'_, B>,
    l: usize,
    spec: &ModelSpec,
    partial: Option<&PartialRope>,
) -> Result<Option<QkNorms<B>>> {
    let (q, kv, d) = (spec.q_dim(), spec.kv_dim(), spec.head_dim);
    let (q_name, k_name) = (
        layer(l, "attn_q_norm.weight"),
        layer(l, "attn_k_norm.weight"),
    );
    let rotated = spec.unrotated_layers.get(l) != Some(&true);
    if spec.rotated_qk_l2_norm && rotated {
        // Llama 4's weightless norms: unit weights of one head's width. An RMS norm of each
        // head is the same before RoPE as after it (a rotation keeps the head's length).
        let unit = || unit_weight(ld, d);
        return Ok(Some(QkNorms {
            q: unit()?,
            k: unit()?,
            per_head: None,
        }));
    }
    if !spec.qk_norm {
        return Ok(None);
    }
    if spec.qk_norm_whole {
        // Over the whole projection; with partial RoPE its weights follow the heads' rows as
        // they are laid out (a norm over all of them is the same over any order).
        let whole = |name: &str, width: usize, heads: usize| -> Result<B::Weight> {
            match partial {
                Some(p) => ld
                    .backend
                    .load_weight(p.fold_norm(ld.norm_host(name, width)?, heads)?),
                None => ld.norm(name, width),
            }
        };
        return Ok(Some(QkNorms {
            q: whole(&q_name, q, spec.num_heads)?,
            k: whole(&k_name, kv, spec.num_kv_heads)?,
            per_head: None,
        }));
    }
    if spec.qk_norm_per_head {
        let table = |name: &str, heads: usize| -> Result<B::Weight> {
            let w = ld.checked(name, &[heads, d])?;
            let w = match partial {
                Some(p) => p.fold_norm(w, heads)?,
                None => w,
            };
            let source = w.dtype().unwrap_or(WeightDtype::F32);
            let tensor = w.to_f32()?.reshape((1, heads * d))?;
            ld.backend.load_weight(HostWeight::Dense { tensor, source })
        };
        let unit = || unit_weight(ld, d);
        let per_head = (
            table(&q_name, spec.num_heads)?,
            table(&k_name, spec.num_kv_heads)?,
        );
        return Ok(Some(QkNorms {
            q: unit()?,
            k: unit()?,
            per_head: Some(per_head),
        }));
    }
    let norm = |name: &str| -> Result<B::Weight> {
        match partial {
            Some(p) => ld
                .backend
                .load_weight(p.fold_norm(ld.norm_host(name, d)?, 1)?),
            None => ld.norm(name, d),
        }
    };
    Ok(Some(QkNorms {
        q: norm(&q_name)?,
        k: norm(&k_name)?,
        per_head: None,
    }))
}

/// A norm weight of ones, `width` wide.
fn unit_weight<B: Backend>(ld: &Loader<'_, B>, width: usize) -> Result<B::Weight> {
    let tensor = candle_core::Tensor::ones(width, candle_core::DType::F32, &Device::Cpu)?;
    ld.backend.load_weight(HostWeight::Dense {
        tensor,
        source: WeightDtype::F32,
    })
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
    let qk_norms = load_qk_norms(ld, l, spec, partial.as_ref())?;
    let given_or = |given: Option<HostWeight>, name: &str, rows: usize| match given {
        Some(w) => Ok(w),
        None => ld.checked(&n(name), &[rows, h]),
    };
    // AFMoE: the gate's own product. Qwen3-Next: q's product holds each head's query rows,
    // then its gate's.
    let own_gate = n("attn_gate.weight");
    let (wq, gate) = match spec.attn_output_gate {
        true if ld.src.contains(&own_gate) => (wq, Some(ld.weight(&own_gate, &[q, h])?)),
        true => {
            if split || bq.is_some() {
                return Err(ModelError::Config(
                    "an attention output gate with joined q/k/v or biases is not supported".into(),
                ));
            }
            let doubled = ld.checked(&n("attn_q.weight"), &[2 * q, h])?;
            let half = |second: usize| -> Vec<Option<usize>> {
                (0..spec.num_heads)
                    .flat_map(|head| (0..d).map(move |i| Some(head * 2 * d + second * d + i)))
                    .collect()
            };
            (
                Some(doubled.pick_rows(&half(0))?),
                Some(ld.backend.load_weight(doubled.pick_rows(&half(1))?)?),
            )
        }
        false => (wq, None),
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
            [
                (fold(given_or(wq, "attn_q.weight", q)?, QkvPart::Q)?, bq),
                (fold(given_or(wk, "attn_k.weight", kv)?, QkvPart::K)?, bk),
                (
                    ld.backend.load_weight(given_or(wv, "attn_v.weight", kv)?)?,
                    bv,
                ),
            ]
            .into_iter()
            .chain(gate.map(|g| (g, None)))
            .collect(),
        )?,
    };
    Ok(Attention::Heads {
        qkv,
        qk_norms,
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
