//! LFM2's gated short convolutions: `out(C · conv(B · x))`, where B, C and x are one product of
//! the normed stream and `conv` mixes each channel over the last `kernel` tokens (a causal
//! depthwise convolution; kernel 3 in every LFM2).
//!
//! The convolution's state is its inputs `B · x` of the last tokens. transformers and llama.cpp
//! keep them per sequence, rolled forward each step, beside the KV cache; candor writes each
//! token's input into the paged cache at the token's slot (`ModelSpec::cache_layers`: the K and
//! V halves of as many cache layers as `hidden_size` fills) and reads the taps back by
//! position. So the state is wherever the keys are: a prefix shared from the cache, a block
//! copied on write, a speculative step whose drafts were rejected and a slot saved to disk are
//! right without a word about convolutions, which a rolled state would need at each of them.
use crate::backend::{Backend, RopeKvWrite};
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::layer_loader::Loader;
use crate::projection::{NormedInput, Projections};
use crate::spec::ModelSpec;
use crate::weights::names::layer;
use candor_kernels::conv::NO_ROW;
use std::sync::Arc;

/// A layer's convolution kernel in host memory (a few thousand values: backends read it where
/// the convolution runs).
#[derive(Debug, Clone)]
pub struct ShortConvWeights {
    /// `[kernel, width]`, tap-major, the oldest tap first.
    pub weight: Arc<[f32]>,
    pub bias: Option<Arc<[f32]>>,
    /// Channels: the model's hidden size.
    pub width: usize,
}

impl ShortConvWeights {
    pub fn kernel(&self) -> usize {
        self.weight.len() / self.width.max(1)
    }
}

/// What a short-convolution layer reads from the cache in one step.
#[derive(Debug, Clone, Copy)]
pub struct ConvTaps<'a> {
    /// The layer's first cache layer; its inputs fill the K then V halves of `layers` of them
    /// (`ModelSpec::conv_cache_span`), a row of `width` values cut in `kv_dim` pieces.
    pub first_layer: usize,
    pub layers: usize,
    /// Cache slots of the rows the taps read: each sequence's new tokens and the `kernel - 1`
    /// before them.
    pub slots: &'a [u32],
    /// Per token of the step (in the batch's row order), `kernel` indices into `slots`, the
    /// oldest first; `NO_ROW` where the position is before the sequence's start.
    pub index: &'a [u32],
}

/// The taps of every token of `batch` for a kernel of `kernel`: `(slots, index)` of
/// `ConvTaps`.
pub fn conv_taps(batch: &FlatBatch, kernel: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let tokens = batch.ids.len();
    let mut slots = Vec::new();
    let mut index = vec![NO_ROW; tokens * kernel];
    for seq in &batch.seqs {
        let first = seq.start_pos.saturating_sub(kernel - 1);
        let base = slots.len();
        // The positions before the step's tokens, then the step's (whose slots the batch has).
        for p in first..seq.start_pos {
            slots.push(seq.slot(p, batch.block_size).ok_or_else(|| {
                ModelError::InvalidBatch(format!(
                    "position {p} past a block table of {} blocks",
                    seq.block_table.len()
                ))
            })?);
        }
        let new = batch
            .slots
            .get(seq.q_start..seq.q_start + seq.q_len)
            .ok_or_else(|| {
                ModelError::InvalidBatch(format!(
                    "rows {}..{} of a batch of {} slots",
                    seq.q_start,
                    seq.q_start + seq.q_len,
                    batch.slots.len()
                ))
            })?;
        slots.extend_from_slice(new);
        for i in 0..seq.q_len {
            let p = seq.start_pos + i;
            let row = seq.q_start + i;
            let taps = index
                .get_mut(row * kernel..(row + 1) * kernel)
                .ok_or_else(|| {
                    ModelError::InvalidBatch(format!("row {row} of a batch of {tokens}"))
                })?;
            for (j, t) in taps.iter_mut().enumerate() {
                if let Some(src) = (p + j).checked_sub(kernel - 1) {
                    *t = (base + src - first) as u32;
                }
            }
        }
    }
    Ok((slots, index))
}

/// The convolution of `taps` on the host: each tapped row put together from the K and V halves
/// of the layer's cache layers (`read_layer(cache layer)` gives their rows of `taps.slots`, as
/// f32), then `candor_kernels::conv::short_conv`. `[tokens, width]` values.
pub fn host_short_conv(
    taps: &ConvTaps<'_>,
    w: &ShortConvWeights,
    mut read_layer: impl FnMut(usize) -> Result<(Vec<f32>, Vec<f32>)>,
) -> Result<Vec<f32>> {
    let n = taps.slots.len();
    let width = w.width;
    let mut rows = vec![0.0f32; n * width];
    let mut filled = 0;
    for l in 0..taps.layers {
        let (k, v) = read_layer(taps.first_layer + l)?;
        let piece = match n {
            0 => 0,
            n => k.len() / n,
        };
        if k.len() != n * piece || v.len() != k.len() {
            return Err(ModelError::Backend(format!(
                "short_conv: cache layer rows of {} and {} values for {n} slots",
                k.len(),
                v.len()
            )));
        }
        for half in [&k, &v] {
            let take = piece.min(width.saturating_sub(filled));
            for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                row[filled..filled + take].copy_from_slice(&half[i * piece..][..take]);
            }
            filled += take;
        }
    }
    if n > 0 && filled != width {
        return Err(ModelError::Backend(format!(
            "short_conv: {} cache layers hold {filled} of {width} channels",
            taps.layers
        )));
    }
    let mut out = vec![0.0f32; taps.index.len() / w.kernel().max(1) * width];
    candor_kernels::conv::short_conv(
        &rows,
        width,
        taps.index,
        &w.weight,
        w.bias.as_deref(),
        &mut out,
    )
    .map_err(ModelError::Backend)?;
    Ok(out)
}

/// `Backend::short_conv`'s default: the tapped rows read back (`read_kv_rows`, every cache
/// layer's), convolved on the host, the result uploaded.
pub fn short_conv_via_rows<B: Backend + ?Sized>(
    b: &B,
    cache: &B::KvCache,
    taps: &ConvTaps<'_>,
    w: &ShortConvWeights,
) -> Result<B::Tensor> {
    let rows = match taps.slots.is_empty() {
        true => None,
        false => Some(b.read_kv_rows(cache, taps.slots)?),
    };
    let out = host_short_conv(taps, w, |layer| match &rows {
        Some(rows) => rows.layer_values(layer),
        None => Ok((Vec::new(), Vec::new())),
    })?;
    let tokens = out.len() / w.width.max(1);
    b.upload(&out, &[tokens, w.width])
}

/// One short-convolution layer's weights (its `out_proj` is the layer's output product).
pub(crate) struct ShortConvLayer<B: Backend> {
    /// B's pieces, then C, then x's pieces: B and x cut in `kv_dim`-wide pieces, so each
    /// product `B_j · x_j` is one K or V half of the cache as it comes (no split after it).
    in_proj: Projections<B>,
    pieces: usize,
    /// The cache's KV heads and head width: the shape each piece is written in.
    heads: (usize, usize),
    conv: ShortConvWeights,
}

impl<B: Backend> ShortConvLayer<B> {
    pub fn load(ld: &Loader<'_, B>, l: usize, spec: &ModelSpec) -> Result<Self> {
        let (h, kv) = (spec.hidden_size, spec.kv_dim());
        let bias = spec.short_conv.as_ref().is_some_and(|c| c.bias);
        let kernel = spec.short_conv.as_ref().map_or(0, |c| c.kernel);
        let in_proj = ld.checked(&layer(l, "shortconv.in_proj.weight"), &[3 * h, h])?;
        let in_bias = match bias {
            true => Some(ld.checked(&layer(l, "shortconv.in_proj.bias"), &[3 * h])?),
            false => None,
        };
        // Rows `start..start + len` of in_proj (and of its bias, kept as stored as every other
        // bias): one member.
        let member = |start: usize, len: usize| -> Result<(B::Weight, Option<B::Weight>)> {
            let w = ld.backend.load_weight(in_proj.rows(start, len)?)?;
            let b = match &in_bias {
                Some(b) => Some(ld.backend.load_weight(b.rows(start, len)?)?),
                None => None,
            };
            Ok((w, b))
        };
        let pieces = h / kv;
        let mut members = Vec::with_capacity(2 * pieces + 1);
        for j in 0..pieces {
            members.push(member(j * kv, kv)?);
        }
        members.push(member(h, h)?);
        for j in 0..pieces {
            members.push(member(2 * h + j * kv, kv)?);
        }
        Ok(ShortConvLayer {
            in_proj: Projections::new(ld.backend, members)?,
            pieces,
            heads: (spec.num_kv_heads, spec.head_dim),
            conv: load_kernel(ld, l, h, kernel, bias)?,
        })
    }

    /// Whether `in_proj`'s members run as one product.
    pub fn is_joined(&self) -> bool {
        self.in_proj.is_joined()
    }

    /// The layer's mixing up to its output product, from the residual stream (`input`): the
    /// norm and `in_proj`, each token's `B · x` written to the cache at its slot (`kv`:
    /// its first cache layer and the batch's slots), the convolution over the taps, times C.
    /// Returns the stream's next value and `C · conv(B · x)` (`[tokens, hidden]`).
    pub fn mix(
        &self,
        b: &B,
        input: &NormedInput<'_, B>,
        kv: RopeKvWrite<'_, B::KvCache>,
        taps: ConvTaps<'_>,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (stream, parts) = self.in_proj.apply_normed(b, input, None)?;
        let (bs, rest) = parts.split_at(self.pieces);
        let (c, xs) = rest
            .split_first()
            .filter(|(_, xs)| xs.len() == self.pieces)
            .ok_or_else(|| ModelError::Backend("in_proj's members came back short".into()))?;
        let tokens = kv.slots.len();
        let products = bs
            .iter()
            .zip(xs)
            .map(|(bj, xj)| b.reshape(&b.mul(bj, xj)?, &[tokens, self.heads.0, self.heads.1]))
            .collect::<Result<Vec<_>>>()?;
        for (i, pair) in products.chunks(2).enumerate() {
            // An odd last piece fills K alone; its V half holds a copy no tap reads.
            let v = pair.get(1).unwrap_or(&pair[0]);
            b.kv_write(kv.cache, kv.layer + i, &pair[0], v, kv.slots)?;
        }
        let conv = b.short_conv(kv.cache, &taps, &self.conv)?;
        Ok((stream, b.mul(c, &conv)?))
    }
}

/// A depthwise convolution's kernel, from HF's `[channels, 1, kernel]` or a GGUF's
/// `[channels, kernel]`, made tap-major (`[kernel, channels]`, as `conv::short_conv` reads it).
pub(crate) fn tap_major_kernel<B: Backend>(
    ld: &Loader<'_, B>,
    name: &str,
    channels: usize,
    kernel: usize,
) -> Result<Vec<f32>> {
    let w = crate::weights::require(ld.src, name)?;
    let shape = w.shape();
    // Also llama.cpp's `[1, channels, 1, kernel]` (its Kimi Linear converter's): the same
    // values in the same order.
    if shape != [channels, 1, kernel]
        && shape != [channels, kernel]
        && shape != [1, channels, 1, kernel]
    {
        return Err(ModelError::ShapeMismatch {
            tensor: name.to_string(),
            expected: vec![channels, 1, kernel],
            actual: shape,
        });
    }
    let per_channel = w.to_f32()?.flatten_all()?.to_vec1::<f32>()?;
    Ok((0..kernel)
        .flat_map(|j| (0..channels).map(move |c| (c, j)))
        .map(|(c, j)| per_channel[c * kernel + j])
        .collect())
}

/// A layer's kernel and bias, the kernel tap-major.
fn load_kernel<B: Backend>(
    ld: &Loader<'_, B>,
    l: usize,
    h: usize,
    kernel: usize,
    bias: bool,
) -> Result<ShortConvWeights> {
    let weight = tap_major_kernel(ld, &layer(l, "shortconv.conv.weight"), h, kernel)?;
    let bias = match bias {
        true => Some(
            ld.checked(&layer(l, "shortconv.conv.bias"), &[h])?
                .to_f32()?
                .to_vec1::<f32>()?
                .into(),
        ),
        false => None,
    };
    Ok(ShortConvWeights {
        weight: weight.into(),
        bias,
        width: h,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SeqAttention;

    /// A batch of `seqs` with the new tokens' slots as `FlatBatch::new` gives them (`u32::MAX`
    /// past a block table).
    fn batch(seqs: Vec<SeqAttention>, block_size: usize) -> FlatBatch {
        let tokens: usize = seqs.iter().map(|s| s.q_len).sum();
        let mut slots = vec![u32::MAX; tokens];
        for s in &seqs {
            for i in 0..s.q_len {
                slots[s.q_start + i] = s.slot(s.start_pos + i, block_size).unwrap_or(u32::MAX);
            }
        }
        FlatBatch {
            ids: vec![0; tokens],
            positions: vec![],
            slots,
            seqs,
            logit_rows: vec![],
            argmax_only: vec![],
            hidden_rows: vec![],
            adapters: vec![],
            state_slots: vec![],
            block_size,
        }
    }

    #[test]
    fn taps_read_the_new_rows_and_the_cached_ones_before_them() {
        // A prompt's first two tokens, and a sequence decoding position 5 from blocks 3, 1.
        let b = batch(
            vec![
                SeqAttention {
                    q_start: 1,
                    q_len: 2,
                    start_pos: 0,
                    block_table: vec![7],
                },
                SeqAttention {
                    q_start: 0,
                    q_len: 1,
                    start_pos: 5,
                    block_table: vec![3, 1],
                },
            ],
            4,
        );
        let (slots, index) = conv_taps(&b, 3).unwrap();
        // Prompt: slots 28, 29; decode: positions 3, 4, 5 at slots 15, 4, 5.
        assert_eq!(slots, vec![28, 29, 15, 4, 5]);
        assert_eq!(
            index,
            vec![2, 3, 4, NO_ROW, NO_ROW, 0, NO_ROW, 0, 1],
            "rows in batch order: the decode token first"
        );
    }

    #[test]
    fn taps_past_the_block_table_are_an_error() {
        // Position 4, a tap of position 5, is past the one block.
        let b = batch(
            vec![SeqAttention {
                q_start: 0,
                q_len: 1,
                start_pos: 5,
                block_table: vec![0],
            }],
            4,
        );
        assert!(conv_taps(&b, 3).is_err());
    }

    #[test]
    fn host_convolution_reads_rows_cut_across_cache_layers() {
        // Width 6 in pieces of 2: layer 0 holds channels 0-1 (K) and 2-3 (V), layer 1 4-5 (K).
        let rows: [[f32; 6]; 2] = [[1., 2., 3., 4., 5., 6.], [10., 20., 30., 40., 50., 60.]];
        let read = |l: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            let piece = |p: usize| rows.iter().flat_map(move |r| r[2 * p..2 * p + 2].to_vec());
            Ok(match l {
                4 => (piece(0).collect(), piece(1).collect()),
                5 => (piece(2).collect(), piece(2).collect()),
                _ => return Err(ModelError::Backend(format!("layer {l}"))),
            })
        };
        let w = ShortConvWeights {
            weight: vec![0.5; 12].into(),
            bias: None,
            width: 6,
        };
        let taps = ConvTaps {
            first_layer: 4,
            layers: 2,
            slots: &[9, 3],
            index: &[NO_ROW, 0, 0, 1],
        };
        let out = host_short_conv(&taps, &w, read).unwrap();
        assert_eq!(out[..6], [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(out[6..], [5.5, 11.0, 16.5, 22.0, 27.5, 33.0]);
    }
}
