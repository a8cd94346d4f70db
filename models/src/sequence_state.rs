//! The recurrent state a gated DeltaNet or Mamba-2 layer keeps per sequence: the last inputs
//! of its convolution and its recurrence's matrices. Unlike keys and values it is not a row per
//! position that the paged cache could hold (Qwen3-Next-80B's is 2 MB per layer, the same at
//! every length), so it lives in slots, one per running sequence (`SeqInput::state_slot`),
//! as vLLM's and llama.cpp's recurrent caches keep it.
//!
//! A slot remembers the position its state has reached. A step from position 0 starts it
//! afresh; a step from any other position must continue exactly where the slot stands, or it
//! is refused: a state is never silently paired with the wrong past (a sequence that resumes a
//! cached prefix has the state kept for it put in its slot first: `restore`). A step that
//! fails leaves its sequences' slots empty, so their next steps are refused too rather than
//! run from a state that is partly advanced.
use crate::batch::FlatBatch;
use crate::error::{ModelError, Result};
use std::sync::Mutex;

/// Most state slots a model keeps: far beyond any engine's running sequences, it only stops
/// a wrong slot number from allocating without end.
const MAX_SLOTS: usize = 1 << 16;

/// One gated DeltaNet layer's state for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerState {
    /// The convolution's inputs of the last `kernel - 1` positions, oldest first
    /// (`[kernel - 1, channels]`; zeros before the sequence's start).
    pub conv: Vec<f32>,
    /// The recurrence's matrices: the delta rule's `[value_heads, key_dim, value_dim]`, or
    /// Mamba-2's `[heads, head_dim, state]`.
    pub recurrent: Vec<f32>,
}

/// One sequence's state: each gated DeltaNet layer's, in layer order.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceState {
    /// The position the state has reached (tokens folded into it).
    pub pos: usize,
    pub layers: Vec<LayerState>,
}

/// Sizes of each recurrent layer's state: `(conv values, recurrent values)`.
pub type StateSizes = Vec<(usize, usize)>;

impl SequenceState {
    /// Whether its layers are of `sizes` (a model's `StateSizes`), one for one.
    pub fn fits(&self, sizes: &[(usize, usize)]) -> bool {
        self.layers.len() == sizes.len()
            && (self.layers.iter().zip(sizes)).all(|(l, &(conv, recurrent))| {
                l.conv.len() == conv && l.recurrent.len() == recurrent
            })
    }

    /// Bytes its values hold (f32).
    pub fn bytes(&self) -> usize {
        let values: usize = (self.layers.iter())
            .map(|l| l.conv.len() + l.recurrent.len())
            .sum();
        4 * values
    }
}

/// Every slot's state, for one model.
#[derive(Debug)]
pub struct SequenceStates {
    sizes: StateSizes,
    slots: Mutex<Vec<Option<SequenceState>>>,
}

impl SequenceStates {
    pub fn new(sizes: StateSizes) -> Self {
        SequenceStates {
            sizes,
            slots: Mutex::new(Vec::new()),
        }
    }

    /// Bytes the slots hold (f32 values): those of the running sequences (a sequence's slot
    /// is emptied when it leaves: `remove`).
    pub fn bytes(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().flatten().map(SequenceState::bytes).sum()
    }

    fn fresh(&self) -> SequenceState {
        SequenceState {
            pos: 0,
            layers: self
                .sizes
                .iter()
                .map(|&(conv, recurrent)| LayerState {
                    conv: vec![0.0; conv],
                    recurrent: vec![0.0; recurrent],
                })
                .collect(),
        }
    }

    /// The states of `batch`'s sequences, in its order, taken out of their slots for the
    /// step: fresh where a sequence starts at position 0, else the slot's, which must stand
    /// at the sequence's start. Give them back with `finish` once the step has run.
    pub fn take(&self, batch: &FlatBatch) -> Result<Vec<SequenceState>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if batch.state_slots.len() != batch.seqs.len() {
            return Err(ModelError::InvalidBatch(format!(
                "{} state slots for {} sequences",
                batch.state_slots.len(),
                batch.seqs.len()
            )));
        }
        for (i, &slot) in batch.state_slots.iter().enumerate() {
            if batch.state_slots[..i].contains(&slot) {
                return Err(ModelError::InvalidBatch(format!(
                    "two sequences of one step share state slot {slot}"
                )));
            }
            if slot as usize >= MAX_SLOTS {
                return Err(ModelError::InvalidBatch(format!(
                    "state slot {slot} past the {MAX_SLOTS} a model keeps"
                )));
            }
        }
        // Every check first, so a refused step takes nothing out.
        for (seq, &slot) in batch.seqs.iter().zip(&batch.state_slots) {
            if seq.start_pos == 0 {
                continue;
            }
            let stands = slots
                .get(slot as usize)
                .and_then(|s| s.as_ref())
                .map(|s| s.pos);
            if stands != Some(seq.start_pos) {
                return Err(ModelError::InvalidBatch(match stands {
                    Some(pos) => format!(
                        "state slot {slot} stands at position {pos}; the step continues from {}",
                        seq.start_pos
                    ),
                    None => format!(
                        "state slot {slot} holds no state to continue from position {}: the \
                         sequence must start over",
                        seq.start_pos
                    ),
                }));
            }
        }
        let needed = batch.state_slots.iter().map(|&s| s as usize + 1).max();
        if let Some(n) = needed.filter(|&n| n > slots.len()) {
            slots.resize(n, None);
        }
        Ok(batch
            .seqs
            .iter()
            .zip(&batch.state_slots)
            .map(|(seq, &slot)| {
                let held = slots[slot as usize].take();
                match seq.start_pos {
                    0 => self.fresh(),
                    _ => held.unwrap_or_else(|| self.fresh()),
                }
            })
            .collect())
    }

    /// A copy of the state slot `slot` holds (what a prefix cache keeps of the tokens the
    /// slot's sequence computed so far); None where it holds none.
    pub fn snapshot(&self, slot: u32) -> Option<SequenceState> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get(slot as usize)?.clone()
    }

    /// The state out of slot `slot`, which is left empty: a sequence that leaves gives its
    /// state up without a copy (and its memory with it).
    pub fn remove(&self, slot: u32) -> Option<SequenceState> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get_mut(slot as usize)?.take()
    }

    /// `state` into slot `slot`: the slot's next step continues from `state.pos` (a sequence
    /// resumed from a cached prefix). Refused, the slot untouched, where its layers' sizes are
    /// not this model's.
    pub fn restore(&self, slot: u32, state: SequenceState) -> Result<()> {
        if !state.fits(&self.sizes) {
            return Err(ModelError::InvalidBatch(
                "a recurrent state of other layer sizes than the model's".into(),
            ));
        }
        if slot as usize >= MAX_SLOTS {
            return Err(ModelError::InvalidBatch(format!(
                "state slot {slot} past the {MAX_SLOTS} a model keeps"
            )));
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() <= slot as usize {
            slots.resize(slot as usize + 1, None);
        }
        slots[slot as usize] = Some(state);
        Ok(())
    }

    /// Put back the states `take` gave for `batch`, each advanced past its sequence's tokens.
    pub fn finish(&self, batch: &FlatBatch, states: Vec<SequenceState>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for ((seq, &slot), mut state) in batch.seqs.iter().zip(&batch.state_slots).zip(states) {
            state.pos = seq.start_pos + seq.q_len;
            if let Some(s) = slots.get_mut(slot as usize) {
                *s = Some(state);
            }
        }
    }
}

/// Runs `f` over each sequence of `batch` with its state of recurrent layer `layer` and its
/// rows of `out` (`width` values a token): `f(the step's rows of the sequence, its state, its
/// outputs)`. The per-sequence walk of every recurrent layer's mixing.
pub(crate) fn each_sequence(
    batch: &FlatBatch,
    states: &mut [SequenceState],
    layer: usize,
    (out, width): (&mut [f32], usize),
    mut f: impl FnMut(std::ops::Range<usize>, &mut LayerState, &mut [f32]) -> Result<()>,
) -> Result<()> {
    if states.len() != batch.seqs.len() {
        return Err(ModelError::InvalidBatch(format!(
            "{} states for {} sequences",
            states.len(),
            batch.seqs.len()
        )));
    }
    for (seq, state) in batch.seqs.iter().zip(states.iter_mut()) {
        let state = state.layers.get_mut(layer).ok_or_else(|| {
            ModelError::InvalidBatch(format!("no state for recurrent layer {layer}"))
        })?;
        let rows = seq.q_start..seq.q_start + seq.q_len;
        let o = out
            .get_mut(rows.start * width..rows.end * width)
            .ok_or_else(|| {
                ModelError::InvalidBatch(format!("rows {rows:?} past the step's outputs"))
            })?;
        f(rows, state, o)?;
    }
    Ok(())
}

/// A causal depthwise convolution of `rows` (each `channels` wide, the step's inputs in order)
/// continuing from `history` (the inputs of the `kernel - 1` positions before, oldest first,
/// advanced in place to this step's last), then SiLU: `[rows, channels]` values. `kernel` is
/// tap-major (`conv::short_conv`'s), `bias` per channel where the layer has one.
pub(crate) fn causal_conv_silu<'a>(
    history: &mut [f32],
    rows: impl Iterator<Item = &'a [f32]>,
    channels: usize,
    (kernel, bias): (&[f32], Option<&[f32]>),
) -> Result<Vec<f32>> {
    let taps_per_token = kernel.len() / channels.max(1);
    let mut src = history.to_vec();
    rows.for_each(|r| src.extend_from_slice(r));
    let n = (src.len() - history.len()) / channels.max(1);
    let taps: Vec<u32> = (0..n)
        .flat_map(|t| (t..t + taps_per_token).map(|r| r as u32))
        .collect();
    let mut out = vec![0.0f32; n * channels];
    candor_kernels::conv::short_conv(&src, channels, &taps, kernel, bias, &mut out)
        .map_err(ModelError::Backend)?;
    out.iter_mut().for_each(|v| *v = silu(*v));
    let keep = history.len();
    history.copy_from_slice(&src[src.len() - keep..]);
    Ok(out)
}

pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Each head's output (`dim` wide rows of `out`) RMS-normed, weighted by `weight`, and times
/// `act` of its gate (the same layout as `out`): the gated DeltaNet's output norm (SiLU), Kimi
/// Delta Attention's (sigmoid).
pub(crate) fn gated_head_norm(
    out: &mut [f32],
    gate: &[f32],
    weight: &[f32],
    eps: f32,
    act: fn(f32) -> f32,
) {
    let dim = weight.len().max(1);
    for (o, z) in out.chunks_exact_mut(dim).zip(gate.chunks_exact(dim)) {
        let mean = o.iter().map(|x| x * x).sum::<f32>() / dim as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for ((x, &w), &zj) in o.iter_mut().zip(weight).zip(z) {
            *x = *x * inv * w * act(zj);
        }
    }
}

/// A product of `tokens` rows of `width` read back to the host for a recurrent layer's host
/// path; an error (naming `layer` and `what`) where the backend gave another length.
pub(crate) fn read_rows<B: crate::backend::Backend>(
    b: &B,
    t: &B::Tensor,
    (tokens, width): (usize, usize),
    (layer, what): (&str, &str),
) -> Result<Vec<f32>> {
    let values = b.download(t)?;
    match values.len() == tokens * width {
        true => Ok(values),
        false => Err(ModelError::Backend(format!(
            "{layer}: {} values of {what} for {tokens} tokens of {width}",
            values.len()
        ))),
    }
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// PyTorch's softplus (threshold 20: linear past it, where `ln(1 + e^x)` is `x` in f32).
pub(crate) fn softplus(x: f32) -> f32 {
    match x > 20.0 {
        true => x,
        false => x.exp().ln_1p(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, LogitsWanted, SeqInput};
    use crate::lora::LoraMix;

    fn step(seqs: &[(u32, usize, usize)]) -> FlatBatch {
        let batch = Batch {
            seqs: seqs
                .iter()
                .map(|&(slot, start, n)| SeqInput {
                    state_slot: slot,
                    tokens: vec![1; n],
                    start_pos: start,
                    block_table: (0..8).collect(),
                    logits: LogitsWanted::None,
                    lora: LoraMix::BASE,
                })
                .collect(),
        };
        FlatBatch::new(&batch, 16, 64, 8).unwrap()
    }

    #[test]
    fn slots_continue_where_they_stand_and_restart_at_zero() {
        let states = SequenceStates::new(vec![(3, 4)]);
        let first = step(&[(0, 0, 5), (2, 0, 3)]);
        let mut taken = states.take(&first).unwrap();
        taken[0].layers[0].recurrent[0] = 7.0;
        states.finish(&first, taken);
        // Slots 0 and 2 hold a state of 3 + 4 values each.
        assert_eq!(states.bytes(), 2 * 4 * 7);

        let next = step(&[(2, 3, 1), (0, 5, 2)]);
        let taken = states.take(&next).unwrap();
        assert_eq!(taken[1].layers[0].recurrent[0], 7.0);
        assert_eq!(taken[0].layers[0].recurrent[0], 0.0);
        states.finish(&next, taken);

        // A new sequence in slot 0 starts afresh whatever the slot held.
        let again = step(&[(0, 0, 1)]);
        assert_eq!(states.take(&again).unwrap()[0].layers[0].recurrent[0], 0.0);
    }

    #[test]
    fn refuses_a_step_that_does_not_continue_its_slot() {
        let states = SequenceStates::new(vec![(1, 1)]);
        let first = step(&[(1, 0, 4)]);
        let taken = states.take(&first).unwrap();
        states.finish(&first, taken);
        let err = states.take(&step(&[(1, 3, 1)])).unwrap_err().to_string();
        assert!(err.contains("stands at position 4"), "{err}");
        let err = states.take(&step(&[(5, 2, 1)])).unwrap_err().to_string();
        assert!(err.contains("holds no state"), "{err}");
        let err = states
            .take(&step(&[(1, 4, 1), (1, 0, 1)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("share state slot 1"), "{err}");
        // The refused steps took nothing: slot 1 still continues from 4.
        assert!(states.take(&step(&[(1, 4, 1)])).is_ok());
    }

    #[test]
    fn a_snapshot_restored_in_another_slot_continues_from_its_position() {
        let states = SequenceStates::new(vec![(2, 3)]);
        let first = step(&[(0, 0, 6)]);
        let mut taken = states.take(&first).unwrap();
        taken[0].layers[0].conv[1] = 5.0;
        states.finish(&first, taken);
        let kept = states.snapshot(0).unwrap();
        assert_eq!((kept.pos, kept.layers[0].conv[1]), (6, 5.0));
        assert_eq!(states.remove(0), Some(kept.clone()));
        assert_eq!(states.bytes(), 0, "a removed state gives its memory up");
        assert!(states.snapshot(0).is_none());

        states.restore(3, kept.clone()).unwrap();
        let resumed = step(&[(3, 6, 2)]);
        assert_eq!(states.take(&resumed).unwrap()[0].layers[0].conv[1], 5.0);
        // Another model's shapes are refused and leave the slot as it was.
        let mut other = kept;
        other.layers[0].recurrent.push(0.0);
        let err = states.restore(1, other).unwrap_err().to_string();
        assert!(err.contains("other layer sizes"), "{err}");
        assert!(states.snapshot(1).is_none());
    }

    #[test]
    fn a_step_that_fails_leaves_its_slots_empty() {
        let states = SequenceStates::new(vec![(1, 1)]);
        let first = step(&[(0, 0, 4)]);
        let taken = states.take(&first).unwrap();
        states.finish(&first, taken);
        // Taken for a step that never finishes (an error mid-forward drops them).
        drop(states.take(&step(&[(0, 4, 1)])).unwrap());
        let err = states.take(&step(&[(0, 5, 1)])).unwrap_err().to_string();
        assert!(err.contains("holds no state"), "{err}");
    }
}
