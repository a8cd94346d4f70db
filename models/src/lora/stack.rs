//! The adapters a model serves, on its device, applied per sequence within one batch.
//!
//! For each projection the adapters' `A`s are stacked into one `[Σ r, in]` weight and their
//! `B`s side by side into one `[out, Σ r]`, so a batch's update is three ops whatever mix of
//! adapters its sequences use: `t = x · Aᵀ`, `t ⊙ mask`, `y += t · Bᵀ`, where the mask keeps, in
//! each row, only the columns of that row's adapters, each times its scale (all zero for rows
//! of the base model).
//! That is the "gather by mask" form of multi-LoRA batching (vLLM's punica kernels select rows
//! instead); it needs no op beyond the Backend's products and elementwise ones, so every
//! backend serves adapters. Its arithmetic is `Σ r / in` of the base product per projection
//! (a few percent for ranks 8-64), paid only in steps where some sequence uses an adapter (and
//! the mask is skipped where every row keeps every column: one adapter, all rows using it);
//! at batch 1 on a CPU the four extra small ops per projection and the unfused norm/product
//! path cost more than that (~15-20% of a decode step, README). A batch of base-model
//! sequences takes the unchanged fused path.
use super::adapter::{LoraAdapter, LoraTarget};
use super::mix::LoraMix;
use crate::backend::{Backend, WeightDtype};
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use crate::spec::ModelSpec;
use crate::weights::HostWeight;
use candle_core::{DType, Device, Tensor};
use std::ops::Range;

/// Where each adapter's columns lie in a projection's stack.
#[derive(Debug, Clone)]
struct Layout {
    /// Per adapter: its columns, or None where it leaves this projection alone.
    columns: Vec<Option<Range<usize>>>,
    width: usize,
}

/// A layer's stacked `A` (`[Σ r, in]`) and `B` (`[out, Σ r]`) of one projection.
struct Stacked<B: Backend> {
    a: B::Weight,
    b: B::Weight,
}

pub struct LoraStack<B: Backend> {
    /// Per slot: whether an adapter is in it.
    present: Vec<bool>,
    /// Per target (`LoraTarget::index`); the same in every layer (an adapter's rank on a
    /// target is its largest across layers, smaller ones padded with zeros).
    layouts: [Option<Layout>; 7],
    /// Per layer, per target; None where no adapter updates it.
    layers: Vec<[Option<Stacked<B>>; 7]>,
}

impl<B: Backend> LoraStack<B> {
    /// The adapters of `slots` (each fitted to `spec`) on `backend`: a batch's sequence naming
    /// `i` runs with `slots[i]`, which must hold one.
    pub fn build(backend: &B, spec: &ModelSpec, slots: &[Option<LoraAdapter>]) -> Result<Self> {
        let fitted = slots
            .iter()
            .map(|a| a.as_ref().map(|a| a.fitted(spec)).transpose())
            .collect::<Result<Vec<_>>>()?;
        let adapters = &fitted[..];
        let layouts = LoraTarget::ALL.map(|target| {
            let mut width = 0;
            // An emptied slot has no columns anywhere.
            let columns = adapters
                .iter()
                .map(|a| match a.as_ref().map_or(0, |a| a.rank(target)) {
                    0 => None,
                    r => {
                        width += r;
                        Some(width - r..width)
                    }
                })
                .collect();
            (width > 0).then_some(Layout { columns, width })
        });
        let mut layers = Vec::with_capacity(spec.num_layers);
        for layer in 0..spec.num_layers {
            let mut stacked: [Option<Stacked<B>>; 7] = Default::default();
            for target in LoraTarget::ALL {
                let Some(layout) = &layouts[target.index()] else {
                    continue;
                };
                stacked[target.index()] =
                    stack_layer(backend, spec, adapters, layout, layer, target)?;
            }
            layers.push(stacked);
        }
        Ok(LoraStack {
            present: slots.iter().map(Option::is_some).collect(),
            layouts,
            layers,
        })
    }

    /// Whether no adapter updates anything (every slot emptied).
    pub fn is_empty(&self) -> bool {
        self.layouts.iter().all(Option::is_none)
    }

    /// The masks of `batch` (`FlatBatch::adapters`), or None when none of its sequences uses
    /// an adapter (the step then runs as the base model alone).
    pub fn for_batch(&self, b: &B, batch: &FlatBatch) -> Result<Option<BatchLora<'_, B>>> {
        if batch.adapters.iter().all(LoraMix::is_base) {
            return Ok(None);
        }
        let absent = |a: u32| !self.present.get(a as usize).copied().unwrap_or(false);
        if let Some(a) = batch
            .adapters
            .iter()
            .flat_map(LoraMix::slots)
            .find(|&a| absent(a))
        {
            return Err(ModelError::InvalidBatch(format!(
                "a sequence uses LoRA adapter {a}, which is not loaded"
            )));
        }
        let rows = batch.num_tokens();
        let mut masks: [Option<Mask<B>>; 7] = Default::default();
        for (mask, layout) in masks.iter_mut().zip(&self.layouts) {
            let Some(layout) = layout else { continue };
            let mut values = vec![0f32; rows * layout.width];
            // Whether some row keeps a column, and whether every row keeps every column at
            // scale 1.
            let (mut any, mut every) = (false, true);
            for (seq, mix) in batch.seqs.iter().zip(&batch.adapters) {
                let mut covered = 0;
                for &(slot, scale) in mix.scales() {
                    let Some(cols) = layout.columns[slot as usize].clone() else {
                        continue;
                    };
                    any = true;
                    covered += cols.len();
                    every &= scale == 1.0;
                    for row in seq.q_start..seq.q_start + seq.q_len {
                        let start = row * layout.width;
                        values[start + cols.start..start + cols.end].fill(scale);
                    }
                }
                every &= covered == layout.width || seq.q_len == 0;
            }
            *mask = match (any, every) {
                (false, _) => None,
                // Every row uses every column at its own scale (one adapter, and all
                // sequences run with it): nothing to mask, one op less per projection.
                (true, true) => Some(Mask::Every),
                (true, false) => Some(Mask::Rows(b.upload(&values, &[rows, layout.width])?)),
            };
        }
        Ok(Some(BatchLora { stack: self, masks }))
    }
}

/// Layer `layer`'s stacks of `target`, or None when no adapter updates it there.
fn stack_layer<'a, B: Backend>(
    backend: &B,
    spec: &ModelSpec,
    adapters: &'a [Option<LoraAdapter>],
    layout: &Layout,
    layer: usize,
    target: LoraTarget,
) -> Result<Option<Stacked<B>>> {
    let key = (layer, target);
    let pair_of = |a: &'a Option<LoraAdapter>| a.as_ref()?.pairs.get(&key);
    if adapters.iter().all(|a| pair_of(a).is_none()) {
        return Ok(None);
    }
    let [out, inp] = target.shape(spec);
    // The adapters' own half type where they all share one (adapters are mostly shipped in
    // f16 or bf16: decode reads half the bytes of f32), else f32.
    let mut types = adapters.iter().filter_map(pair_of).map(|p| p.stored);
    let first = types.next().unwrap_or(DType::F32);
    let stored = match types.all(|t| t == first) {
        true => first,
        false => DType::F32,
    };
    let (mut a_parts, mut b_parts) = (Vec::new(), Vec::new());
    for (adapter, cols) in adapters.iter().zip(&layout.columns) {
        let Some(cols) = cols else { continue };
        let width = cols.len();
        match pair_of(adapter) {
            Some(pair) => {
                let pad = width - pair.rank();
                a_parts.push(pad_dim(&pair.a.to_dtype(stored)?, 0, pad)?);
                b_parts.push(pad_dim(&pair.b.to_dtype(stored)?, 1, pad)?);
            }
            None => {
                a_parts.push(Tensor::zeros((width, inp), stored, &Device::Cpu)?);
                b_parts.push(Tensor::zeros((out, width), stored, &Device::Cpu)?);
            }
        }
    }
    let host = |t: Tensor| -> Result<HostWeight> {
        Ok(HostWeight::Dense {
            tensor: t.contiguous()?.to_dtype(stored)?,
            source: match stored {
                DType::F16 => WeightDtype::F16,
                DType::BF16 => WeightDtype::BF16,
                _ => WeightDtype::F32,
            },
        })
    };
    Ok(Some(Stacked {
        a: backend.load_weight(host(Tensor::cat(&a_parts, 0)?)?)?,
        b: backend.load_weight(host(Tensor::cat(&b_parts, 1)?)?)?,
    }))
}

/// `t` with `pad` zeros appended along `dim` (a smaller rank in a layer than elsewhere).
fn pad_dim(t: &Tensor, dim: usize, pad: usize) -> Result<Tensor> {
    Ok(match pad {
        0 => t.clone(),
        _ => t.pad_with_zeros(dim, 0, pad)?,
    })
}

/// Which of a stack's columns each row of a batch keeps.
enum Mask<B: Backend> {
    /// All of them, in every row.
    Every,
    /// `[rows, width]`: a row's adapters' scales over their columns, zeros elsewhere.
    Rows(B::Tensor),
}

/// The adapters of one batch: its masks over the stacks.
pub struct BatchLora<'a, B: Backend> {
    stack: &'a LoraStack<B>,
    masks: [Option<Mask<B>>; 7],
}

impl<B: Backend> BatchLora<'_, B> {
    /// `y` (the base product of `x` for `target` in `layer`) plus each row's adapter update.
    pub fn add(
        &self,
        b: &B,
        layer: usize,
        target: LoraTarget,
        x: &B::Tensor,
        y: B::Tensor,
    ) -> Result<B::Tensor> {
        let stacked = self
            .stack
            .layers
            .get(layer)
            .and_then(|l| l[target.index()].as_ref());
        let (Some(s), Some(mask)) = (stacked, &self.masks[target.index()]) else {
            return Ok(y);
        };
        let t = b.linear(x, &s.a, None)?;
        let t = match mask {
            Mask::Every => t,
            Mask::Rows(mask) => b.mul(&t, mask)?,
        };
        b.add(&y, &b.linear(&t, &s.b, None)?)
    }
}
