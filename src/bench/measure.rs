//! Timed passes through the batched runner: a prefill of N tokens after D tokens of context,
//! and N decode steps of B sequences together (llama-bench's pp and tg, plus batching).
use crate::engine::{BlockManager, BlockTable, EngineError, Runner};
use candor_models::lora::LoraMix;
use candor_models::{Batch, LogitsWanted, SeqInput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

/// Token ids drawn uniformly from the vocabulary (as llama-bench does: content does not change
/// the arithmetic of a dense model).
pub struct TokenSource {
    rng: ChaCha8Rng,
    vocab: u32,
}

impl TokenSource {
    pub fn new(seed: u64, vocab: usize) -> Self {
        TokenSource {
            rng: ChaCha8Rng::seed_from_u64(seed),
            vocab: vocab.max(1) as u32,
        }
    }
    pub fn take(&mut self, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| self.rng.random_range(0..self.vocab))
            .collect()
    }
}

/// Run `tokens` of one sequence (with the adapters of `lora`, its recurrent state in
/// `state_slot`) from position `start` in chunks of at most `ubatch`; logits only for the very
/// last position.
fn fill(
    runner: &mut dyn Runner,
    table: &BlockTable,
    start: usize,
    tokens: &[u32],
    ubatch: usize,
    lora: &LoraMix,
    state_slot: u32,
) -> Result<(), EngineError> {
    let mut pos = start;
    for chunk in tokens.chunks(ubatch.max(1)) {
        let last = pos + chunk.len() == start + tokens.len();
        runner.forward(&Batch {
            seqs: vec![SeqInput {
                state_slot,
                tokens: chunk.to_vec(),
                start_pos: pos,
                block_table: table.ids.clone(),
                logits: if last {
                    LogitsWanted::Last
                } else {
                    LogitsWanted::None
                },
                lora: lora.clone(),
            }],
        })?;
        pos += chunk.len();
    }
    Ok(())
}

/// Time a prefill of `n` tokens with `depth` tokens already in the cache (with the adapters of `lora`).
pub fn time_prefill(
    runner: &mut dyn Runner,
    n: usize,
    depth: usize,
    ubatch: usize,
    lora: &LoraMix,
    src: &mut TokenSource,
) -> Result<Duration, EngineError> {
    let mut blocks = BlockManager::new(runner.num_blocks(), runner.block_size(), false);
    let mut table = BlockTable::default();
    blocks.ensure(&mut table, depth + n)?;
    if depth > 0 {
        fill(runner, &table, 0, &src.take(depth), ubatch, lora, 0)?;
    }
    let prompt = src.take(n);
    let t0 = Instant::now();
    fill(runner, &table, depth, &prompt, ubatch, lora, 0)?;
    Ok(t0.elapsed())
}

/// Time `n` decode steps of `batch` sequences together, each with `depth` tokens of context
/// (with the adapters of `lora`).
pub fn time_decode(
    runner: &mut dyn Runner,
    n: usize,
    depth: usize,
    batch: usize,
    ubatch: usize,
    lora: &LoraMix,
    src: &mut TokenSource,
) -> Result<Duration, EngineError> {
    let mut blocks = BlockManager::new(runner.num_blocks(), runner.block_size(), false);
    let mut tables = vec![BlockTable::default(); batch.max(1)];
    for (slot, t) in tables.iter_mut().enumerate() {
        blocks.ensure(t, depth + n)?;
        if depth > 0 {
            fill(runner, t, 0, &src.take(depth), ubatch, lora, slot as u32)?;
        }
    }
    let t0 = Instant::now();
    for step in 0..n {
        let seqs = tables
            .iter()
            .enumerate()
            .map(|(slot, t)| SeqInput {
                state_slot: slot as u32,
                tokens: src.take(1),
                start_pos: depth + step,
                block_table: t.ids.clone(),
                // Each step picks its tokens on the backend, as greedy serving does and as
                // the transformers side (`generate`, greedy) does.
                logits: LogitsWanted::Argmax,
                lora: lora.clone(),
            })
            .collect();
        runner.forward(&Batch { seqs })?;
    }
    Ok(t0.elapsed())
}
