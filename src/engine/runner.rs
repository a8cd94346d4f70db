//! The object-safe `Runner` the engine drives: a model and its backend and KV cache behind one
//! batched forward call, returning logits on the host. No generics leak past this point.
use super::error::EngineError;
use candor_models::backend::{Backend, DeviceInfo};
use candor_models::kv_rows::KvRows;
use candor_models::lora::LoraAdapter;
use candor_models::sequence_state::SequenceState;
use candor_models::{Batch, DecoderModel, FlatBatch, ModelSpec};

/// What a forward pass returns for each requested row: its logits on the host, or only the
/// token the device picked (`LogitsWanted::Argmax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRow {
    /// Row `n` of `Logits::data`.
    Values(usize),
    Argmax(u32),
}

/// Host logits, one row per requested position (in batch order), and the final hidden states
/// of the rows that asked for them (embeddings).
#[derive(Debug, Clone, Default)]
pub struct Logits {
    pub vocab: usize,
    /// The rows that came back as values, row-major.
    pub data: Vec<f32>,
    /// Per requested row.
    pub kinds: Vec<LogitRow>,
    /// Final hidden states, row-major, `hidden_size` each, in batch order
    /// (`LogitsWanted::HiddenLast` / `HiddenAll`).
    pub hidden: Vec<f32>,
    pub hidden_size: usize,
    /// Sparse vectors over the vocabulary, `vocab` values each, one per sequence that asked
    /// (`LogitsWanted::Sparse`), in batch order.
    pub sparse: Vec<f32>,
}

impl Logits {
    /// Every row as values (`rows` × `vocab` in `data`).
    pub fn all_values(rows: usize, vocab: usize, data: Vec<f32>) -> Self {
        Logits {
            vocab,
            data,
            kinds: (0..rows).map(LogitRow::Values).collect(),
            ..Default::default()
        }
    }

    /// Hidden-state row `i` of the step; empty past the last.
    pub fn hidden_row(&self, i: usize) -> &[f32] {
        let h = self.hidden_size;
        self.hidden.get(i * h..(i + 1) * h).unwrap_or(&[])
    }

    /// The sparse vector of the step's `i`-th sequence that asked for one; empty past the last.
    pub fn sparse_row(&self, i: usize) -> &[f32] {
        let v = self.vocab;
        self.sparse.get(i * v..(i + 1) * v).unwrap_or(&[])
    }

    /// Rows the step returned (one per requested position).
    pub fn rows(&self) -> usize {
        self.kinds.len()
    }

    /// The logits of row `i`; empty for a row that came back as a token (`token`).
    pub fn row(&self, i: usize) -> &[f32] {
        match self.kinds.get(i) {
            Some(&LogitRow::Values(n)) => &self.data[n * self.vocab..(n + 1) * self.vocab],
            _ => &[],
        }
    }

    /// The token the device picked for row `i`, when it asked for the argmax only.
    pub fn token(&self, i: usize) -> Option<u32> {
        match self.kinds.get(i) {
            Some(&LogitRow::Argmax(id)) => Some(id),
            _ => None,
        }
    }
}

fn no_kv_cache() -> EngineError {
    EngineError::Backend("this model keeps no KV cache whose rows could be saved".into())
}

pub trait Runner: Send {
    fn spec(&self) -> &ModelSpec;
    fn device(&self) -> DeviceInfo;
    fn block_size(&self) -> usize;
    fn num_blocks(&self) -> usize;
    /// Bytes per K or V value as the backend stores its KV cache (`Backend::kv_bytes_per_value`).
    fn kv_bytes_per_value(&self) -> f64;
    /// Run one batched step (prefill chunks and decode tokens mixed).
    fn forward(&mut self, batch: &Batch) -> Result<Logits, EngineError>;
    /// Copy KV blocks `(src, dst)` (`Backend::copy_kv_blocks`), before the next step.
    fn copy_blocks(&mut self, copies: &[(u32, u32)]) -> Result<(), EngineError>;
    /// Every layer's K and V rows of KV cache `slots` (`Backend::read_kv_rows`): a prompt
    /// cache to save. A runner without a KV cache (an encoder's) refuses.
    fn read_kv_rows(&self, slots: &[u32]) -> Result<KvRows, EngineError> {
        let _ = slots;
        Err(no_kv_cache())
    }
    /// `rows` written back to `slots` (`Backend::write_kv_rows`).
    fn write_kv_rows(&mut self, slots: &[u32], rows: &KvRows) -> Result<(), EngineError> {
        let _ = (slots, rows);
        Err(no_kv_cache())
    }
    /// Ops the backend ran on another device so far (a plugin's CPU fallback), by op name.
    fn fallback_ops(&self) -> Vec<(&'static str, u64)>;
    /// Host memory the model's per-sequence recurrent states hold (0 for a model without).
    fn state_bytes(&self) -> usize {
        0
    }
    /// A copy of the recurrent state in sequence slot `slot` (`DecoderModel::snapshot_state`):
    /// what the state cache keeps of a prefix. None for a model without.
    fn snapshot_state(&self, slot: u32) -> Option<SequenceState> {
        let _ = slot;
        None
    }
    /// The recurrent state out of sequence slot `slot`, which is left empty.
    fn remove_state(&mut self, slot: u32) -> Option<SequenceState> {
        let _ = slot;
        None
    }
    /// `state` into sequence slot `slot`: its next step continues from `state.pos`.
    fn restore_state(&mut self, slot: u32, state: SequenceState) -> Result<(), EngineError> {
        let _ = (slot, state);
        Err(EngineError::Backend(
            "this model keeps no recurrent state to restore".into(),
        ))
    }
    /// Serve contexts of up to `tokens` (a LongRoPE model picks its factors by it; see
    /// `DecoderModel::use_context`). Before the first request.
    fn use_context(&mut self, tokens: usize) {
        let _ = tokens;
    }
    /// Whether each prompt must come in one step, whole (an encoder: every token attends to
    /// every other, so a prompt cannot be cut into chunks over a KV cache).
    fn whole_prompts(&self) -> bool {
        false
    }
    /// LoRA slots so far (the adapters attached at load, then those loaded or emptied since).
    fn lora_slots(&self) -> usize;
    /// Put a LoRA adapter in `slot` (the next new one, or one to empty with None) while
    /// serving; nothing changes on error.
    fn set_lora_slot(
        &mut self,
        slot: usize,
        adapter: Option<LoraAdapter>,
    ) -> Result<(), EngineError>;
}

pub struct ModelRunner<B: Backend> {
    backend: B,
    model: DecoderModel<B>,
    kv: B::KvCache,
    block_size: usize,
    num_blocks: usize,
}

impl<B: Backend> ModelRunner<B> {
    pub fn new(
        backend: B,
        model: DecoderModel<B>,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<Self, EngineError> {
        let kv = backend.alloc_kv_cache(&model.kv_cache_spec(num_blocks, block_size))?;
        Ok(ModelRunner {
            backend,
            model,
            kv,
            block_size,
            num_blocks,
        })
    }
}

impl<B: Backend> Runner for ModelRunner<B> {
    fn spec(&self) -> &ModelSpec {
        self.model.spec()
    }

    fn device(&self) -> DeviceInfo {
        self.backend.info()
    }

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    fn kv_bytes_per_value(&self) -> f64 {
        self.backend.kv_bytes_per_value()
    }

    fn fallback_ops(&self) -> Vec<(&'static str, u64)> {
        self.backend.fallback_ops()
    }

    fn copy_blocks(&mut self, copies: &[(u32, u32)]) -> Result<(), EngineError> {
        Ok(self.backend.copy_kv_blocks(&mut self.kv, copies)?)
    }

    fn read_kv_rows(&self, slots: &[u32]) -> Result<KvRows, EngineError> {
        Ok(self.backend.read_kv_rows(&self.kv, slots)?)
    }

    fn write_kv_rows(&mut self, slots: &[u32], rows: &KvRows) -> Result<(), EngineError> {
        Ok(self.backend.write_kv_rows(&mut self.kv, slots, rows)?)
    }

    fn state_bytes(&self) -> usize {
        self.model.state_bytes()
    }

    fn snapshot_state(&self, slot: u32) -> Option<SequenceState> {
        self.model.snapshot_state(slot)
    }

    fn remove_state(&mut self, slot: u32) -> Option<SequenceState> {
        self.model.remove_state(slot)
    }

    fn restore_state(&mut self, slot: u32, state: SequenceState) -> Result<(), EngineError> {
        Ok(self.model.restore_state(slot, state)?)
    }

    fn use_context(&mut self, tokens: usize) {
        self.model.use_context(tokens);
    }

    fn lora_slots(&self) -> usize {
        self.model.lora_slots()
    }

    fn set_lora_slot(
        &mut self,
        slot: usize,
        adapter: Option<LoraAdapter>,
    ) -> Result<(), EngineError> {
        Ok(self.model.set_lora_slot(&self.backend, slot, adapter)?)
    }

    fn forward(&mut self, batch: &Batch) -> Result<Logits, EngineError> {
        let ModelRunner {
            backend,
            model,
            kv,
            block_size,
            num_blocks,
        } = self;
        backend.run_step(|| step(backend, model, kv, batch, *block_size, *num_blocks))
    }
}

/// One step of `model` over `batch`: the forward, then its logits (and hidden states where
/// asked) on the host.
fn step<B: Backend>(
    backend: &B,
    model: &DecoderModel<B>,
    kv: &mut B::KvCache,
    batch: &Batch,
    block_size: usize,
    num_blocks: usize,
) -> Result<Logits, EngineError> {
    let vocab = model.spec().vocab_size;
    let flat = FlatBatch::new(batch, block_size, num_blocks, vocab)?;
    let out = model.forward_outputs(backend, kv, &flat)?;
    let mut logits = bring_back(backend, &out.logits, &flat.argmax_only, vocab)?;
    if let Some(hidden) = out.hidden {
        logits.hidden = backend.download(&hidden)?;
        logits.hidden_size = model.spec().output_width();
        if logits.hidden.len() != flat.hidden_rows.len() * logits.hidden_size {
            return Err(EngineError::Backend(format!(
                "{} hidden values came back for {} rows of {}",
                logits.hidden.len(),
                flat.hidden_rows.len(),
                logits.hidden_size
            )));
        }
    }
    Ok(logits)
}

/// The logits of a step on the host: rows that want only their argmax get it on the device,
/// the others are downloaded (each group gathered first when the step mixes them).
fn bring_back<B: Backend>(
    b: &B,
    logits: &B::Tensor,
    argmax_only: &[bool],
    vocab: usize,
) -> Result<Logits, EngineError> {
    let rows = argmax_only.len();
    let picked: Vec<u32> = (0..rows as u32)
        .filter(|&r| argmax_only[r as usize])
        .collect();
    if picked.is_empty() {
        return Ok(Logits::all_values(rows, vocab, b.download(logits)?));
    }
    let valued: Vec<u32> = (0..rows as u32)
        .filter(|&r| !argmax_only[r as usize])
        .collect();
    let (ids, data) = if valued.is_empty() {
        (b.argmax(logits)?, Vec::new())
    } else {
        let ids = b.argmax(&b.gather_rows(logits, &picked)?)?;
        (ids, b.download(&b.gather_rows(logits, &valued)?)?)
    };
    if ids.len() != picked.len() {
        return Err(EngineError::Backend(format!(
            "argmax returned {} tokens for {} rows",
            ids.len(),
            picked.len()
        )));
    }
    let (mut ids, mut values) = (ids.into_iter(), 0..);
    let kinds = argmax_only
        .iter()
        .map(|&only| match only {
            true => ids.next().map(LogitRow::Argmax),
            false => values.next().map(LogitRow::Values),
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| EngineError::Backend("fewer picks than argmax rows".into()))?;
    Ok(Logits {
        vocab,
        data,
        kinds,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn argmax_rows_come_back_as_tokens_and_the_rest_as_values() {
        let b = CpuBackend::new(1);
        let rows: [[f32; 4]; 3] = [
            [0.1, 0.9, 0.3, 0.2],
            [5.0, 1.0, 7.0, 7.0],
            [-1.0, -2.0, -0.5, -3.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let logits = b.upload(&flat, &[3, 4]).unwrap();

        let mixed = bring_back(&b, &logits, &[true, false, true], 4).unwrap();
        assert_eq!(mixed.rows(), 3);
        assert_eq!(mixed.token(0), Some(1));
        assert_eq!(mixed.row(1), &rows[1]);
        assert_eq!(mixed.token(1), None);
        assert_eq!(mixed.token(2), Some(2));
        assert!(mixed.row(2).is_empty());
        assert_eq!(mixed.data.len(), 4, "only the valued row was downloaded");

        let picks = bring_back(&b, &logits, &[true; 3], 4).unwrap();
        assert_eq!(
            (0..3).map(|r| picks.token(r)).collect::<Vec<_>>(),
            // Row 1 ties at 7.0: the first, as the sampler's argmax picks.
            vec![Some(1), Some(2), Some(2)]
        );
        assert!(picks.data.is_empty());

        let values = bring_back(&b, &logits, &[false; 3], 4).unwrap();
        assert_eq!(values.data, flat);
        assert!((0..3).all(|r| values.token(r).is_none()));
    }
}
