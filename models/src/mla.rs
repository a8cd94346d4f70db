//! Multi-head latent attention (DeepSeek-V2/V3), run on the paged attention every backend has.
//!
//! Each token's keys and values come from a small latent (`kv_lora_rank` wide, normed, then
//! one up-projection per head) plus one rotated key part shared by every head. The cache holds
//! them in one of two forms (`CacheForm`): the latent itself with the rotary part, once per
//! token as one KV head shared by every query head, queries taken into the latent space and
//! outputs out of it by per-head matrices (`Backend::heads_linear`), where the backend has
//! those products and attention over heads that wide; else every head's key and value
//! expanded when written (as vLLM first ran MLA), at `2 × heads × max(qk, v)` values per token
//! and layer instead of `kv_lora_rank + qk_rope_head_dim`.
//!
//! Everything that differs from plain attention is folded into the weights at load:
//! - each head's dimensions are laid out so RoPE of the whole head rotates exactly its rotary
//!   part: the rotary dimensions where the pairing style expects them, the others beside them
//!   with a frequency of 0 (a rotation by 0 leaves them as they are, exactly), so no backend
//!   needs a partial rotary op; q and k get the same layout, so their dot products are HF's;
//! - values are padded with zero dimensions to the heads' width, and the output projection
//!   takes zero columns there;
//! - the shared rotated key part reaches every head through a product with a fixed matrix
//!   (`k_rope_spread`) whose entries also carry YaRN's rotary temperature, as q's rotary rows
//!   do, so RoPE itself runs unscaled.
use crate::backend::{Backend, OpDesc, RopeSpec, RopeStyle};
use crate::error::{ModelError, Result};
use crate::layer_loader::Loader;
use crate::projection::{members, NormedInput, Projections};
use crate::rope::{attention_factor, inv_freq};
use crate::spec::{LatentAttention, ModelSpec};
use crate::weights::names::layer;
use crate::weights::{pick_tensor_rows, HostWeight};
use candle_core::{Device, Tensor};

/// transformers builds the latent norms with RMSNorm's default epsilon, not the config's.
const LATENT_NORM_EPS: f32 = 1e-6;

/// Where each dimension of a q or k head goes in candor's head layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadLayout {
    nope: usize,
    rope: usize,
    /// The heads' width: `max(qk_head_dim, v_head_dim)`.
    width: usize,
    style: RopeStyle,
}

impl HeadLayout {
    pub fn new(a: &LatentAttention, style: RopeStyle) -> Self {
        HeadLayout {
            nope: a.qk_nope_head_dim,
            rope: a.qk_rope_head_dim,
            width: a.qk_head_dim().max(a.v_head_dim),
            style,
        }
    }

    /// The position of rotary dimension `j` (`rope::rotary_position`).
    fn rope_position(&self, j: usize) -> usize {
        crate::rope::rotary_position(j, self.rope, self.width, self.style)
    }

    /// For each position of a q/k head, the HF dimension it holds (HF heads are the part
    /// without RoPE, then the rotary part) and whether it rotates; None for padding.
    fn qk_sources(&self) -> Vec<Option<(usize, bool)>> {
        crate::rope::rotary_layout(self.width, self.rope, self.nope, 0..self.nope, self.style)
    }

    /// The frequencies of a whole head (`width / 2`): the rotary part's `freqs` on the pairs
    /// it occupies, 0 on the others.
    fn head_freqs(&self, freqs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.width / 2];
        out[..freqs.len()].copy_from_slice(freqs);
        out
    }
}

/// How the cache holds a latent-attention layer's keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheForm {
    /// Every head's key and value, expanded from the latent (`max(qk, v)` wide).
    Expanded,
    /// The latent and the rotary key part once per token, one KV head of `kv_lora_rank +
    /// rope` shared by every query head (MQA), its value the same vector: queries are taken
    /// into the latent space and outputs out of it by per-head matrices (`heads_linear`).
    /// DeepSeek-V2-Lite: 576 values per token and layer where expanded takes 6144.
    Latent,
}

impl CacheForm {
    /// The latent form where the backend has per-head products and attention over heads that
    /// wide (the CPU; CUDA up to 640, DeepSeek's being 576), else expanded.
    /// `CANDOR_MLA_CACHE=expanded` forces the expanded form (to compare the two).
    pub fn for_backend<B: Backend + ?Sized>(b: &B, a: &LatentAttention) -> Self {
        let forced = std::env::var("CANDOR_MLA_CACHE").is_ok_and(|v| v == "expanded");
        let attention = OpDesc::PagedAttention {
            head_dim: a.kv_lora_rank + a.qk_rope_head_dim,
            sliding_window: false,
            softcap: false,
            sinks: false,
            alibi: false,
        };
        let even = (a.kv_lora_rank + a.qk_rope_head_dim).is_multiple_of(2);
        if !forced && even && b.supports(&OpDesc::HeadsLinear) && b.supports(&attention) {
            CacheForm::Latent
        } else {
            CacheForm::Expanded
        }
    }

    /// The form a spec's cache heads say (`cache_heads` of the form chosen at load; the
    /// expanded one where both forms would have the same heads).
    pub fn of_spec(spec: &ModelSpec, a: &LatentAttention) -> Self {
        let heads = (spec.num_kv_heads, spec.head_dim);
        let latent = CacheForm::Latent.cache_heads(a, spec.num_heads);
        if heads == latent && heads != CacheForm::Expanded.cache_heads(a, spec.num_heads) {
            CacheForm::Latent
        } else {
            CacheForm::Expanded
        }
    }

    /// The cache's KV heads and head width for a model of `heads` query heads.
    pub fn cache_heads(self, a: &LatentAttention, heads: usize) -> (usize, usize) {
        match self {
            CacheForm::Expanded => (heads, a.qk_head_dim().max(a.v_head_dim)),
            CacheForm::Latent => (1, a.kv_lora_rank + a.qk_rope_head_dim),
        }
    }

    /// The layout of a q/k head: HF's heads expanded, or the latent then the rotary part.
    pub fn layout(self, a: &LatentAttention, style: RopeStyle) -> HeadLayout {
        match self {
            CacheForm::Expanded => HeadLayout::new(a, style),
            CacheForm::Latent => HeadLayout {
                nope: a.kv_lora_rank,
                rope: a.qk_rope_head_dim,
                width: a.kv_lora_rank + a.qk_rope_head_dim,
                style,
            },
        }
    }
}

/// The rotary embedding of latent-attention heads (unscaled: YaRN's temperature is in the
/// weights), and that temperature.
pub fn rope(spec: &ModelSpec, a: &LatentAttention, form: CacheForm) -> (RopeSpec, f32) {
    let layout = form.layout(a, spec.rope.style);
    let mut freqs = inv_freq(a.qk_rope_head_dim, spec.rope.theta, &spec.rope.scaling);
    // Latent attention without positions (Kimi Linear): the shared key part stays as it is,
    // rotated by nothing (every layer: `validate` refuses a mix).
    if spec.unrotated_layers.contains(&true) {
        freqs.iter_mut().for_each(|f| *f = 0.0);
    }
    let rope = RopeSpec {
        inv_freq: layout.head_freqs(&freqs),
        style: spec.rope.style,
        mscale: 1.0,
    };
    (rope, attention_factor(&spec.rope.scaling))
}

/// One layer's latent attention weights, folded into candor's head layout.
pub struct LatentAttentionWeights<B: Backend> {
    /// Products of the normed input: the q latent (or q itself, folded), the kv latent, the
    /// shared rotary key part.
    input: Projections<B>,
    /// The q latent's norm and up-projection (folded), when q has a latent.
    q_latent: Option<(B::Weight, B::Weight)>,
    kv_norm: B::Weight,
    keys: Keys<B>,
    heads: usize,
    width: usize,
}

/// How a layer makes the keys and values its cache holds.
enum Keys<B: Backend> {
    Expanded {
        /// From the normed kv latent: each head's key without its rotary part, and its value.
        kv_up: Projections<B>,
        /// `[heads × width, rope]`: the shared rotary key part into every head.
        k_rope_spread: B::Weight,
    },
    Latent {
        /// `[heads, width, qk]`: each head's query (HF layout) into the latent space, its
        /// rotary part kept.
        absorb_q: B::Weight,
        /// `[width, kv_rank]` and `[width, rope]`: the normed latent and the rotary key part
        /// to their places in the shared key.
        latent_to_key: B::Weight,
        rope_to_key: B::Weight,
        /// `[heads, v, width]`: each head's attention output (in the latent space) to its
        /// value dimensions.
        values_out: B::Weight,
    },
}

impl<B: Backend> LatentAttentionWeights<B> {
    pub(crate) fn load(ld: &Loader<'_, B>, l: usize, spec: &ModelSpec) -> Result<Self> {
        let a = spec
            .latent_attention
            .as_ref()
            .ok_or_else(|| ModelError::Config("no latent attention in the spec".into()))?;
        let form = CacheForm::of_spec(spec, a);
        let layout = form.layout(a, spec.rope.style);
        let (_, temperature) = rope(spec, a, form);
        let (h, heads) = (spec.hidden_size, spec.num_heads);
        let (qk, r, kv_rank) = (a.qk_head_dim(), a.qk_rope_head_dim, a.kv_lora_rank);
        let n = |s: &str| layer(l, s);
        let fold = Fold {
            layout,
            heads,
            temperature,
        };
        let (first, q_latent) = match a.q_lora_rank {
            Some(rank) => {
                let q_a = ld.checked(&n("attn_q_a.weight"), &[rank, h])?;
                let q_b = ld.checked(&n("attn_q_b.weight"), &[heads * qk, rank])?;
                let q_b = match form {
                    CacheForm::Expanded => fold.query(q_b)?,
                    CacheForm::Latent => q_b,
                };
                let q_up = ld.backend.load_weight(q_b)?;
                let norm = ld.norm(&n("attn_q_a_norm.weight"), rank)?;
                (q_a, Some((norm, q_up)))
            }
            None => {
                let q = ld.checked(&n("attn_q.weight"), &[heads * qk, h])?;
                match form {
                    CacheForm::Expanded => (fold.query(q)?, None),
                    CacheForm::Latent => (q, None),
                }
            }
        };
        let kv_a = ld.checked(&n("attn_kv_a_mqa.weight"), &[kv_rank + r, h])?;
        let [latent, k_rope] = split_rows(&kv_a, [kv_rank, r])?;
        let input = Projections::new(
            ld.backend,
            vec![
                (ld.backend.load_weight(first)?, None),
                (ld.backend.load_weight(latent)?, None),
                (ld.backend.load_weight(k_rope)?, None),
            ],
        )?;
        let kv_b = kv_up_projection(ld, l, heads, a)?;
        let keys = match form {
            CacheForm::Expanded => {
                let (k_up, v_up) = fold.key_value(&kv_b, a)?;
                Keys::Expanded {
                    kv_up: Projections::new(
                        ld.backend,
                        vec![
                            (ld.backend.load_weight(k_up)?, None),
                            (ld.backend.load_weight(v_up)?, None),
                        ],
                    )?,
                    k_rope_spread: ld.backend.load_weight(fold.spread()?)?,
                }
            }
            CacheForm::Latent => {
                let [absorb_q, latent_to_key, rope_to_key, values_out] =
                    fold.latent(&kv_b, a)?.map(|w| ld.backend.load_weight(w));
                Keys::Latent {
                    absorb_q: absorb_q?,
                    latent_to_key: latent_to_key?,
                    rope_to_key: rope_to_key?,
                    values_out: values_out?,
                }
            }
        };
        Ok(LatentAttentionWeights {
            input,
            q_latent,
            kv_norm: ld.norm(&n("attn_kv_a_norm.weight"), kv_rank)?,
            keys,
            heads,
            width: layout.width,
        })
    }

    /// The output projection (`[hidden, heads × v_head_dim]`): expanded, with zero columns
    /// for the values' padding (`[hidden, heads × width]`); as stored for the latent form.
    pub(crate) fn load_output(ld: &Loader<'_, B>, l: usize, spec: &ModelSpec) -> Result<B::Weight> {
        let a = spec
            .latent_attention
            .as_ref()
            .ok_or_else(|| ModelError::Config("no latent attention in the spec".into()))?;
        let (heads, v) = (spec.num_heads, a.v_head_dim);
        let width = a.qk_head_dim().max(v);
        let o = ld.checked(
            &layer(l, "attn_output.weight"),
            &[spec.hidden_size, heads * v],
        )?;
        if CacheForm::of_spec(spec, a) == CacheForm::Latent {
            // The latent form: outputs leave the latent space as `heads × v` (`values_out`).
            return ld.backend.load_weight(o);
        }
        let sources: Vec<Option<usize>> = (0..heads * width)
            .map(|p| Some((p / width) * v + p % width).filter(|_| p % width < v))
            .collect();
        let source = o.dtype().unwrap_or(crate::backend::WeightDtype::F32);
        let t = o.to_f32()?.t()?.contiguous()?;
        let folded = pick_tensor_rows(&t, &sources, None)?.t()?.contiguous()?;
        ld.backend
            .load_weight(HostWeight::stored_like(folded, source)?)
    }

    /// q, k and v (`[tokens, heads, width]` each) from the layer's input (the attention norm
    /// of the residual stream), and the stream's next value.
    pub fn q_k_v(&self, b: &B, input: &NormedInput<'_, B>) -> Result<(B::Tensor, [B::Tensor; 3])> {
        let (stream, parts) = self.input.apply_normed(b, input, None)?;
        let [q, latent, k_rope] = members(parts)?;
        let q = match &self.q_latent {
            Some((norm, up)) => b.linear(&b.rms_norm(&q, norm, LATENT_NORM_EPS)?, up, None)?,
            None => q,
        };
        let latent = b.rms_norm(&latent, &self.kv_norm, LATENT_NORM_EPS)?;
        let tokens = b.shape(&q).first().copied().unwrap_or(0);
        let shape = [tokens, self.heads, self.width];
        match &self.keys {
            Keys::Expanded {
                kv_up,
                k_rope_spread,
            } => {
                let [k, v] = members(kv_up.apply(b, &latent, None)?)?;
                let k = b.add(&k, &b.linear(&k_rope, k_rope_spread, None)?)?;
                Ok((
                    stream,
                    [
                        b.reshape(&q, &shape)?,
                        b.reshape(&k, &shape)?,
                        b.reshape(&v, &shape)?,
                    ],
                ))
            }
            Keys::Latent {
                absorb_q,
                latent_to_key,
                rope_to_key,
                ..
            } => {
                let width = b.shape(&q).get(1).copied().unwrap_or(0) / self.heads.max(1);
                let q = b.reshape(&q, &[tokens, self.heads, width])?;
                let q = b.heads_linear(&q, absorb_q)?;
                let k = b.add(
                    &b.linear(&latent, latent_to_key, None)?,
                    &b.linear(&k_rope, rope_to_key, None)?,
                )?;
                let k = b.reshape(&k, &[tokens, 1, self.width])?;
                // The value is the key before RoPE: its latent part is what the outputs
                // need, its rotary part meets zero columns of `values_out`.
                Ok((stream, [q, k.clone(), k]))
            }
        }
    }

    /// The attention's output (`[tokens, heads × width]`) as the output projection takes it:
    /// as it is expanded, out of the latent space (`[tokens, heads × v]`) for the latent form.
    pub fn attention_output(&self, b: &B, attn: B::Tensor) -> Result<B::Tensor> {
        let Keys::Latent { values_out, .. } = &self.keys else {
            return Ok(attn);
        };
        let tokens = b.shape(&attn).first().copied().unwrap_or(0);
        let attn = b.reshape(&attn, &[tokens, self.heads, self.width])?;
        let out = b.heads_linear(&attn, values_out)?;
        let v = b.shape(&out).get(2).copied().unwrap_or(0);
        b.reshape(&out, &[tokens, self.heads * v])
    }

    pub fn joined_groups(&self) -> usize {
        let kv = match &self.keys {
            Keys::Expanded { kv_up, .. } => kv_up.is_joined() as usize,
            Keys::Latent { .. } => 0,
        };
        self.input.is_joined() as usize + kv
    }
}

/// kv_b (`[heads × (nope + v), kv_rank]`, HF's `kv_b_proj`), or the same rebuilt from the
/// halves llama.cpp's newer GGUFs store: `attn_k_b` (`[heads, kv_rank, nope]`, each head's key
/// part transposed) and `attn_v_b` (`[heads, v, kv_rank]`).
fn kv_up_projection<B: Backend>(
    ld: &Loader<'_, B>,
    l: usize,
    heads: usize,
    a: &LatentAttention,
) -> Result<HostWeight> {
    let (nope, v, rank) = (a.qk_nope_head_dim, a.v_head_dim, a.kv_lora_rank);
    let joined = layer(l, "attn_kv_b.weight");
    if ld.src.contains(&joined) || !ld.src.contains(&layer(l, "attn_k_b.weight")) {
        return ld.checked(&joined, &[heads * (nope + v), rank]);
    }
    let k_b = ld.checked(&layer(l, "attn_k_b.weight"), &[heads, rank, nope])?;
    let v_b = ld.checked(&layer(l, "attn_v_b.weight"), &[heads, v, rank])?;
    let source = k_b.dtype().unwrap_or(crate::backend::WeightDtype::F32);
    let k = k_b.to_f32()?.transpose(1, 2)?;
    let joined = Tensor::cat(&[&k, &v_b.to_f32()?], 1)?.reshape((heads * (nope + v), rank))?;
    HostWeight::stored_like(joined.contiguous()?, source)
}

/// The load-time rewrites of one layer's weights into the head layout.
struct Fold {
    layout: HeadLayout,
    heads: usize,
    /// YaRN's rotary temperature, carried by q's rotary rows and the key spread.
    temperature: f32,
}

impl Fold {
    /// q's weight (`[heads × qk, in]`, HF head layout) in candor's.
    fn query(&self, q: HostWeight) -> Result<HostWeight> {
        let (width, qk) = (self.layout.width, self.layout.nope + self.layout.rope);
        let per_head = self.layout.qk_sources();
        let mut sources = Vec::with_capacity(self.heads * width);
        let mut scales = Vec::with_capacity(self.heads * width);
        for h in 0..self.heads {
            for s in &per_head {
                sources.push(s.map(|(d, _)| h * qk + d));
                scales.push(match s {
                    Some((_, true)) => self.temperature,
                    _ => 1.0,
                });
            }
        }
        q.pick_rows_scaled(&sources, &scales)
    }

    /// kv_b (`[heads × (nope + v), kv_rank]`) as the key's up-projection (its part without
    /// RoPE at those positions, zero rows at the rotary ones) and the value's (zero rows
    /// past `v_head_dim`), both `[heads × width, kv_rank]`.
    fn key_value(
        &self,
        kv_b: &HostWeight,
        a: &LatentAttention,
    ) -> Result<(HostWeight, HostWeight)> {
        let (width, stride) = (self.layout.width, a.qk_nope_head_dim + a.v_head_dim);
        let per_head = self.layout.qk_sources();
        let mut k_sources = Vec::with_capacity(self.heads * width);
        let mut v_sources = Vec::with_capacity(self.heads * width);
        for h in 0..self.heads {
            for (p, s) in per_head.iter().enumerate() {
                k_sources.push(match s {
                    Some((d, false)) => Some(h * stride + d),
                    _ => None,
                });
                v_sources
                    .push(Some(h * stride + a.qk_nope_head_dim + p).filter(|_| p < a.v_head_dim));
            }
        }
        Ok((kv_b.pick_rows(&k_sources)?, kv_b.pick_rows(&v_sources)?))
    }

    /// The latent form's matrices from kv_b (`[heads × (nope + v), kv_rank]`), this fold's
    /// layout being the latent one: `absorb_q` `[heads, width, qk]`, `latent_to_key`
    /// `[width, kv_rank]`, `rope_to_key` `[width, rope]`, `values_out` `[heads, v, width]`.
    fn latent(&self, kv_b: &HostWeight, a: &LatentAttention) -> Result<[HostWeight; 4]> {
        let (n, v, r, rank) = (
            a.qk_nope_head_dim,
            a.v_head_dim,
            a.qk_rope_head_dim,
            a.kv_lora_rank,
        );
        let (heads, width, qk) = (self.heads, self.layout.width, n + r);
        let kv = kv_b.to_f32()?.flatten_all()?.to_vec1::<f32>()?;
        let kv_row = |h: usize, row: usize| &kv[(h * (n + v) + row) * rank..][..rank];
        let sources = self.layout.qk_sources();
        let mut absorb_q = vec![0f32; heads * width * qk];
        let mut values_out = vec![0f32; heads * v * width];
        let mut latent_to_key = vec![0f32; width * rank];
        let mut rope_to_key = vec![0f32; width * r];
        for (p, src) in sources.iter().enumerate() {
            match *src {
                Some((d, true)) => {
                    let j = d - rank;
                    rope_to_key[p * r + j] = self.temperature;
                    for h in 0..heads {
                        absorb_q[(h * width + p) * qk + n + j] = self.temperature;
                    }
                }
                Some((c, false)) => {
                    latent_to_key[p * rank + c] = 1.0;
                    for h in 0..heads {
                        for i in 0..n {
                            absorb_q[(h * width + p) * qk + i] = kv_row(h, i)[c];
                        }
                        for i in 0..v {
                            values_out[(h * v + i) * width + p] = kv_row(h, n + i)[c];
                        }
                    }
                }
                None => {}
            }
        }
        let dense = |values: Vec<f32>, shape: &[usize]| -> Result<HostWeight> {
            Ok(HostWeight::Dense {
                tensor: Tensor::from_vec(values, shape, &Device::Cpu)?,
                source: crate::backend::WeightDtype::F32,
            })
        };
        Ok([
            dense(absorb_q, &[heads, width, qk])?,
            dense(latent_to_key, &[width, rank])?,
            dense(rope_to_key, &[width, r])?,
            dense(values_out, &[heads, v, width])?,
        ])
    }

    /// `[heads × width, rope]`: rotary dimension j of the shared key part to its position in
    /// every head, times the rotary temperature.
    fn spread(&self) -> Result<HostWeight> {
        let (width, rope) = (self.layout.width, self.layout.rope);
        let mut m = vec![0f32; self.heads * width * rope];
        for h in 0..self.heads {
            for j in 0..rope {
                m[(h * width + self.layout.rope_position(j)) * rope + j] = self.temperature;
            }
        }
        Ok(HostWeight::Dense {
            tensor: Tensor::from_vec(m, (self.heads * width, rope), &Device::Cpu)?,
            source: crate::backend::WeightDtype::F32,
        })
    }
}

/// `w`'s rows cut in two consecutive parts.
fn split_rows(w: &HostWeight, [a, b]: [usize; 2]) -> Result<[HostWeight; 2]> {
    let part =
        |start: usize, len: usize| w.pick_rows(&(start..start + len).map(Some).collect::<Vec<_>>());
    Ok([part(0, a)?, part(a, b)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latent(nope: usize, rope: usize, v: usize) -> LatentAttention {
        LatentAttention {
            q_lora_rank: None,
            kv_lora_rank: 4,
            qk_nope_head_dim: nope,
            qk_rope_head_dim: rope,
            v_head_dim: v,
        }
    }

    #[test]
    fn interleaved_heads_keep_the_rotary_part_first() {
        let l = HeadLayout::new(&latent(4, 4, 4), RopeStyle::Interleaved);
        let s: Vec<_> = l.qk_sources().into_iter().map(|s| s.unwrap()).collect();
        assert_eq!(
            s,
            vec![
                (4, true),
                (5, true),
                (6, true),
                (7, true),
                (0, false),
                (1, false),
                (2, false),
                (3, false)
            ]
        );
        assert_eq!(l.head_freqs(&[1.0, 0.5]), vec![1.0, 0.5, 0.0, 0.0]);
    }

    #[test]
    fn neox_heads_pair_the_rotary_halves_across_the_head() {
        // width 12 (v wider than qk = 8): rotary dims 0, 1 at 0, 1 and 2, 3 at 6, 7.
        let l = HeadLayout::new(&latent(4, 4, 12), RopeStyle::Neox);
        let s = l.qk_sources();
        assert_eq!(s[0], Some((4, true)));
        assert_eq!(s[6], Some((6, true)));
        assert_eq!(s[7], Some((7, true)));
        assert_eq!(s[2], Some((0, false)));
        assert_eq!(s.iter().filter(|s| s.is_none()).count(), 4);
    }

    /// A rotation of the folded head equals HF's rotation of the rotary part, the other
    /// dimensions untouched, for both pairings.
    #[test]
    fn rotating_the_whole_folded_head_rotates_only_the_rotary_part() {
        for style in [RopeStyle::Interleaved, RopeStyle::Neox] {
            let l = HeadLayout::new(&latent(2, 4, 2), style);
            let hf: Vec<f32> = vec![0.3, -0.7, 1.0, 2.0, 3.0, 4.0];
            let freqs = [1.0f32, 0.25];
            let pos = 3.0f32;
            // HF: the rotary part [1, 2, 3, 4] rotated by pairs of its own style.
            let rot = &hf[2..];
            let mut want = hf.clone();
            for (i, f) in freqs.iter().enumerate() {
                let (s, c) = (pos * f).sin_cos();
                let (a, b) = match style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + 2),
                };
                want[2 + a] = rot[a] * c - rot[b] * s;
                want[2 + b] = rot[b] * c + rot[a] * s;
            }
            // candor: the folded head, rotated whole with the padded frequencies.
            let sources = l.qk_sources();
            let mut head: Vec<f32> = sources
                .iter()
                .map(|s| s.map_or(0.0, |(d, _)| hf[d]))
                .collect();
            let hf_freqs = l.head_freqs(&freqs);
            let w = l.width;
            for (i, f) in hf_freqs.iter().enumerate() {
                let (s, c) = (pos * f).sin_cos();
                let (a, b) = match style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + w / 2),
                };
                let (x, y) = (head[a], head[b]);
                head[a] = x * c - y * s;
                head[b] = y * c + x * s;
            }
            for (p, s) in sources.iter().enumerate() {
                if let Some((d, _)) = s {
                    assert!((head[p] - want[*d]).abs() < 1e-6, "{style:?} dim {d}");
                }
            }
        }
    }
}
