//! Single-request generation over a runner: chunked prefill, then one decode step per token.
//! The server's scheduler batches many of these; the CLI and benchmarks use this directly.
use super::block_manager::{BlockManager, BlockTable};
use super::error::EngineError;
use super::runner::Runner;
use super::sampler::{History, Sampler, SamplingParams};
use candor_models::lora::LoraMix;
use candor_models::{Batch, LogitsWanted, SeqInput};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt_ids: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Tokens that end generation (not emitted), unless `ignore_eos`.
    pub eos_ids: Vec<u32>,
    pub ignore_eos: bool,
    /// Largest number of prompt tokens run in one forward call.
    pub prefill_chunk: usize,
    /// The LoRA adapters it runs with, at their scales (`SeqInput::lora`).
    pub lora: LoraMix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token was produced.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The caller asked to stop (e.g. a stop string was matched).
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOutput {
    pub generated_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl GenerateOutput {
    pub fn prefill_tok_s(&self, prompt_len: usize) -> f64 {
        rate(prompt_len, self.prefill_seconds)
    }
    /// Decode speed over the tokens after the first (the first comes from the prefill).
    pub fn decode_tok_s(&self) -> f64 {
        rate(
            self.generated_ids.len().saturating_sub(1),
            self.decode_seconds,
        )
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Check the request against the model's context and vocabulary before any work is done.
pub fn validate(
    runner: &dyn Runner,
    req: &GenerateRequest,
    context: usize,
) -> Result<(), EngineError> {
    if req.prompt_ids.is_empty() {
        return Err(EngineError::EmptyPrompt);
    }
    let vocab = runner.spec().vocab_size;
    if let Some(&id) = req.prompt_ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(candor_models::ModelError::TokenOutOfVocab { id, vocab }.into());
    }
    if req.prompt_ids.len() + req.max_tokens > context {
        return Err(EngineError::ContextTooLong {
            prompt: req.prompt_ids.len(),
            max_new: req.max_tokens,
            context,
        });
    }
    req.sampling.validate()
}

/// Generate; `on_token` sees each new token and returns false to stop early.
pub fn generate(
    runner: &mut dyn Runner,
    req: &GenerateRequest,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<GenerateOutput, EngineError> {
    let context = runner.num_blocks() * runner.block_size();
    validate(runner, req, context.min(runner.spec().max_position))?;
    let mut sampler = Sampler::new(req.sampling.clone())?.ending_with(&req.eos_ids, req.ignore_eos);
    let mut blocks = BlockManager::new(runner.num_blocks(), runner.block_size(), false);
    let mut table = BlockTable::default();
    let result = run(
        runner,
        req,
        &mut sampler,
        &mut blocks,
        &mut table,
        &mut on_token,
    );
    blocks.release(&mut table);
    result
}

fn run(
    runner: &mut dyn Runner,
    req: &GenerateRequest,
    sampler: &mut Sampler,
    blocks: &mut BlockManager,
    table: &mut BlockTable,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<GenerateOutput, EngineError> {
    let chunk = req.prefill_chunk.max(1);
    let prompt = &req.prompt_ids;
    // Greedy without penalties: the backend picks each token, no logits come to the host.
    let wanted = sampler.logits_wanted(false);
    let t0 = Instant::now();
    let mut logits = None;
    let mut start = 0;
    while start < prompt.len() {
        let end = (start + chunk).min(prompt.len());
        blocks.ensure(table, end)?;
        let last = end == prompt.len();
        let out = runner.forward(&Batch {
            seqs: vec![SeqInput {
                state_slot: 0,
                tokens: prompt[start..end].to_vec(),
                start_pos: start,
                block_table: table.ids.clone(),
                logits: if last { wanted } else { LogitsWanted::None },
                lora: req.lora.clone(),
            }],
        })?;
        if last {
            logits = Some(out);
        }
        start = end;
    }
    let prefill_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    // The prompt, then the tokens generated (the penalties and DRY read both).
    let mut tokens = prompt.clone();
    let generated = |tokens: &Vec<u32>| tokens.len() - prompt.len();
    let mut finish = FinishReason::Length;
    while generated(&tokens) < req.max_tokens {
        let Some(out) = logits.take() else { break };
        let next = sampler.next_token(&out, 0, History::new(&tokens, prompt.len()));
        if !req.ignore_eos && req.eos_ids.contains(&next) {
            finish = FinishReason::Stop;
            break;
        }
        tokens.push(next);
        if !on_token(next) {
            finish = FinishReason::Cancelled;
            break;
        }
        if generated(&tokens) == req.max_tokens {
            break;
        }
        let len = tokens.len();
        blocks.ensure(table, len)?;
        logits = Some(runner.forward(&Batch {
            seqs: vec![SeqInput {
                state_slot: 0,
                tokens: vec![next],
                start_pos: len - 1,
                block_table: table.ids.clone(),
                logits: wanted,
                lora: req.lora.clone(),
            }],
        })?);
    }
    Ok(GenerateOutput {
        generated_ids: tokens.split_off(prompt.len()),
        finish_reason: finish,
        prefill_seconds,
        decode_seconds: t1.elapsed().as_secs_f64(),
    })
}
