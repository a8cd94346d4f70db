//! Perplexity of a text, measured the way llama.cpp's `llama-perplexity` does so numbers can be
//! set side by side: the tokens are cut into chunks of `ctx`, each chunk starts with BOS where
//! the model wants one (replacing its first token), and only the second half of each chunk is
//! scored, so every scored token sees at least `ctx / 2` tokens before it. A backend that is
//! fast but wrong shows here: the same model and text must give the same perplexity on every
//! device, up to rounding.
use super::block_manager::{BlockManager, BlockTable};
use super::error::EngineError;
use super::runner::Runner;
use super::sampler::logprobs;
use candor_models::lora::LoraMix;
use candor_models::{Batch, LogitsWanted, SeqInput};
use rayon::prelude::*;
use std::time::Instant;

/// What the logits of one forward pass may take on the host: scored rows are run in pieces
/// that fit (110 rows of a 150k vocabulary), as the server's scoring does.
const LOGITS_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct PerplexityOptions {
    /// Tokens per chunk (llama-perplexity's `-c`).
    pub ctx: usize,
    /// Score at most this many chunks (all whole chunks of the text otherwise).
    pub max_chunks: Option<usize>,
    /// The token that starts each chunk, when the model adds one.
    pub bos: Option<u32>,
    /// Most prompt rows run in one forward pass where no logits are needed.
    pub prefill_chunk: usize,
    /// The LoRA adapters the text is scored with, at their scales (`SeqInput::lora`).
    pub lora: LoraMix,
}

/// Scored tokens whose model's pick and logprob a result keeps, for comparing devices token by
/// token (the first ones in text order; 16 chunks of 512).
pub const KEPT_TOKENS: usize = 4096;

/// One scored position: the model's most likely token there and the logprob of the text's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredToken {
    pub top1: u32,
    pub logprob: f32,
}

/// The score of the chunks so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Perplexity {
    pub chunks: usize,
    /// Tokens scored (`ctx / 2 - 1` per chunk, as llama-perplexity).
    pub tokens: usize,
    /// Sum and sum of squares of the scored tokens' negative log-likelihoods (nats).
    nll: f64,
    nll_squares: f64,
    /// Scored tokens that were their position's most likely token.
    pub top1: usize,
    /// The first `KEPT_TOKENS` scored positions, in text order.
    pub kept: Vec<ScoredToken>,
    pub seconds: f64,
}

impl Perplexity {
    fn add(&mut self, target: u32, token: ScoredToken) {
        self.record(token.logprob, token.top1 == target);
        if self.kept.len() < KEPT_TOKENS {
            self.kept.push(token);
        }
    }

    /// Count one scored token: the logprob of the text's token, and whether it was the most
    /// likely one (for scores that come without token ids, as from a remote server).
    pub fn record(&mut self, logprob: f32, was_top1: bool) {
        let nll = -(logprob as f64);
        self.tokens += 1;
        self.nll += nll;
        self.nll_squares += nll * nll;
        self.top1 += usize::from(was_top1);
    }

    /// Mean negative log-likelihood per scored token, in nats.
    pub fn mean_nll(&self) -> f64 {
        self.nll / self.tokens.max(1) as f64
    }

    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        self.mean_nll().exp()
    }

    /// The perplexity's standard error from the spread of the tokens' NLL (the standard error
    /// of the mean NLL, carried through exp), as llama-perplexity reports `± x`.
    pub fn ppl_stderr(&self) -> f64 {
        let n = self.tokens as f64;
        if self.tokens < 2 {
            return f64::NAN;
        }
        let mean = self.mean_nll();
        let variance = (self.nll_squares / n - mean * mean).max(0.0) * n / (n - 1.0);
        self.ppl() * (variance / n).sqrt()
    }

    /// Share of scored tokens that were their position's argmax.
    pub fn top1_rate(&self) -> f64 {
        self.top1 as f64 / self.tokens.max(1) as f64
    }

    /// Scored tokens per second.
    pub fn tok_s(&self) -> f64 {
        match self.seconds > 0.0 {
            true => self.tokens as f64 / self.seconds,
            false => 0.0,
        }
    }
}

/// A chunk must leave a scored row after its first half.
pub fn check_chunk_size(ctx: usize) -> Result<(), String> {
    match ctx < 4 {
        true => Err(format!(
            "a chunk of {ctx} tokens scores nothing: use at least 4"
        )),
        false => Ok(()),
    }
}

/// How many chunks of `ctx` a text of `tokens` tokens gives to score: its whole chunks, at most
/// `max_chunks`. Local and remote runs (`loadgen::score`) cut the same chunks.
pub fn chunks_to_score(
    tokens: usize,
    ctx: usize,
    max_chunks: Option<usize>,
) -> Result<usize, String> {
    check_chunk_size(ctx)?;
    let whole = tokens / ctx;
    match max_chunks.map_or(whole, |m| m.min(whole)) {
        0 => Err(format!(
            "the text has {tokens} tokens, fewer than one chunk of {ctx}"
        )),
        n => Ok(n),
    }
}

/// Chunk `c` of `tokens`: its `ctx` tokens, the first replaced by `bos` where the model adds
/// one (llama-perplexity's way).
pub fn chunk<T: Copy>(tokens: &[T], c: usize, ctx: usize, bos: Option<T>) -> Vec<T> {
    let mut chunk = tokens[c * ctx..(c + 1) * ctx].to_vec();
    if let Some(bos) = bos {
        chunk[0] = bos;
    }
    chunk
}

/// Score `tokens` chunk by chunk; `on_chunk` sees the running result after each.
pub fn perplexity(
    runner: &mut dyn Runner,
    tokens: &[u32],
    opts: &PerplexityOptions,
    mut on_chunk: impl FnMut(&Perplexity),
) -> Result<Perplexity, EngineError> {
    let ctx = opts.ctx;
    check_chunk_size(ctx).map_err(EngineError::Perplexity)?;
    let context = (runner.num_blocks() * runner.block_size()).min(runner.spec().max_position);
    if ctx > context {
        return Err(EngineError::ContextTooLong {
            prompt: ctx,
            max_new: 0,
            context,
        });
    }
    let vocab = runner.spec().vocab_size;
    if let Some(&id) = tokens.iter().find(|&&id| id as usize >= vocab) {
        return Err(candor_models::ModelError::TokenOutOfVocab { id, vocab }.into());
    }
    let chunks =
        chunks_to_score(tokens.len(), ctx, opts.max_chunks).map_err(EngineError::Perplexity)?;
    let score_rows = (LOGITS_BYTES / (vocab.max(1) * 4)).max(1);
    let mut blocks = BlockManager::new(runner.num_blocks(), runner.block_size(), false);
    let mut total = Perplexity::default();
    let started = Instant::now();
    for c in 0..chunks {
        let chunk = chunk(tokens, c, ctx, opts.bos);
        let mut table = BlockTable::default();
        let result = score_chunk(
            runner,
            &mut blocks,
            &mut table,
            &chunk,
            opts,
            score_rows,
            &mut total,
        );
        blocks.release(&mut table);
        result?;
        total.chunks += 1;
        total.seconds = started.elapsed().as_secs_f64();
        on_chunk(&total);
    }
    Ok(total)
}

/// Run one chunk (prompt rows `opts.prefill_chunk` at a time, with `opts.adapter`): its first
/// half without logits, then rows `ctx/2 .. ctx-1` (each predicting
/// the token after it) in pieces of `score_rows`; the last token predicts nothing and is not run.
fn score_chunk(
    runner: &mut dyn Runner,
    blocks: &mut BlockManager,
    table: &mut BlockTable,
    chunk: &[u32],
    opts: &PerplexityOptions,
    score_rows: usize,
    total: &mut Perplexity,
) -> Result<(), EngineError> {
    let prefill_chunk = opts.prefill_chunk.max(1);
    let first = chunk.len() / 2;
    let end = chunk.len() - 1;
    let mut start = 0;
    while start < end {
        let scoring = start >= first;
        let piece = match scoring {
            true => score_rows,
            false => prefill_chunk.min(first - start),
        };
        let stop = (start + piece).min(end);
        blocks.ensure(table, stop)?;
        let out = runner.forward(&Batch {
            seqs: vec![SeqInput {
                state_slot: 0,
                tokens: chunk[start..stop].to_vec(),
                start_pos: start,
                block_table: table.ids.clone(),
                logits: match scoring {
                    true => LogitsWanted::All,
                    false => LogitsWanted::None,
                },
                lora: opts.lora.clone(),
            }],
        })?;
        if scoring {
            // A 150k-vocabulary row takes ~0.5 ms to normalise: spread the piece's rows.
            let scored: Vec<(u32, ScoredToken)> = (start..stop)
                .into_par_iter()
                .map(|pos| {
                    let row = out.row(pos - start);
                    let target = chunk[pos + 1];
                    let (logprob, top) = logprobs(row, target, 1);
                    let top1 = top.first().map_or(u32::MAX, |t| t.0);
                    (target, ScoredToken { top1, logprob })
                })
                .collect();
            for (target, token) in scored {
                total.add(target, token);
            }
        }
        start = stop;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake_runner::FakeRunner;
    use crate::engine::runner::Logits;

    const VOCAB: usize = 6;

    /// Logits that depend on a position's token and position only: position p favours token
    /// `(token + p) % VOCAB` by a margin that grows with p.
    fn row(pos: usize, token: u32) -> Vec<f32> {
        let mut r = vec![0.0; VOCAB];
        r[(token as usize + pos) % VOCAB] = 1.0 + pos as f32 * 0.25;
        r[(token as usize * 2 + 1) % VOCAB] += 0.5;
        r
    }

    type Batches = std::sync::Arc<std::sync::Mutex<Vec<(usize, usize, LogitsWanted)>>>;

    /// A runner over `row` (16 blocks of 4 tokens), recording every batch's (start, rows,
    /// logits wanted).
    fn runner() -> (FakeRunner, Batches) {
        let batches = Batches::default();
        let seen = batches.clone();
        let runner = FakeRunner::new(16, move |batch| {
            let s = &batch.seqs[0];
            seen.lock()
                .unwrap()
                .push((s.start_pos, s.tokens.len(), s.logits));
            let mut data = Vec::new();
            for j in s.logit_rows() {
                data.extend(row(s.start_pos + j, s.tokens[j]));
            }
            Logits::all_values(data.len() / VOCAB, VOCAB, data)
        });
        (runner.with_block_size(4).with_vocab(VOCAB), batches)
    }

    /// The NLL of `target` after `token` at `pos`, computed independently of `logprobs`.
    fn nll(pos: usize, token: u32, target: u32) -> f64 {
        let r = row(pos, token);
        let lse = r.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        lse - r[target as usize] as f64
    }

    #[test]
    fn scores_the_second_half_of_each_chunk_after_bos() {
        let tokens: Vec<u32> = (0..27).map(|i| (i * 5 % 7 % VOCAB) as u32).collect();
        let opts = PerplexityOptions {
            ctx: 12,
            max_chunks: None,
            bos: Some(5),
            prefill_chunk: 4,
            lora: LoraMix::BASE,
        };
        let (mut r, batches) = runner();
        let mut seen = Vec::new();
        let p = perplexity(&mut r, &tokens, &opts, |p| seen.push(p.chunks)).unwrap();
        // Two whole chunks of 12 (3 tokens left over); positions 6..11 scored in each.
        assert_eq!((p.chunks, p.tokens, seen), (2, 10, vec![1, 2]));
        let mut want = 0.0;
        let mut best = 0;
        let mut picks = Vec::new();
        for c in 0..2 {
            let mut chunk = tokens[c * 12..(c + 1) * 12].to_vec();
            chunk[0] = 5;
            for pos in 6..11 {
                want += nll(pos, chunk[pos], chunk[pos + 1]);
                let pick = crate::engine::sampler::argmax(&row(pos, chunk[pos]));
                best += usize::from(pick == chunk[pos + 1]);
                picks.push(pick);
            }
        }
        assert!((p.mean_nll() - want / 10.0).abs() < 1e-5, "{p:?} {want}");
        assert_eq!(p.top1, best);
        // Every scored position kept, in text order, with its pick and logprob.
        assert_eq!(p.kept.iter().map(|k| k.top1).collect::<Vec<_>>(), picks);
        let kept_nll: f64 = p.kept.iter().map(|k| -(k.logprob as f64)).sum();
        assert!((kept_nll - want).abs() < 1e-4);
        // Per chunk: the first half in prefill pieces of 4 without logits, then the scored rows
        // (the last token is never run).
        let none = LogitsWanted::None;
        let all = LogitsWanted::All;
        let chunk = [(0, 4, none), (4, 2, none), (6, 5, all)];
        assert_eq!(*batches.lock().unwrap(), [chunk, chunk].concat());
    }

    #[test]
    fn spread_and_limits() {
        let mut p = Perplexity::default();
        for x in [1.0, 2.0, 3.0] {
            p.add(
                7,
                ScoredToken {
                    top1: 0,
                    logprob: -x,
                },
            );
        }
        assert_eq!(p.kept.len(), 3);
        assert!((p.ppl() - 2f64.exp()).abs() < 1e-12);
        // Sample variance 1: stderr of the mean sqrt(1/3), times the perplexity.
        assert!((p.ppl_stderr() - 2f64.exp() * (1.0f64 / 3.0).sqrt()).abs() < 1e-9);
        let opts = |ctx, max_chunks| PerplexityOptions {
            ctx,
            max_chunks,
            bos: None,
            prefill_chunk: 512,
            lora: LoraMix::BASE,
        };
        let tokens = vec![1u32; 30];
        let (mut r, _) = runner();
        assert!(perplexity(&mut r, &tokens, &opts(3, None), |_| {}).is_err());
        assert!(perplexity(&mut r, &tokens, &opts(40, None), |_| {}).is_err());
        assert!(perplexity(&mut r, &tokens[..5], &opts(8, None), |_| {}).is_err());
        let two = perplexity(&mut r, &tokens, &opts(8, Some(2)), |_| {}).unwrap();
        assert_eq!((two.chunks, two.tokens), (2, 6));
        assert!(perplexity(&mut r, &[9], &opts(8, None), |_| {}).is_err());
    }
}
