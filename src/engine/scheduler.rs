//! Continuous batching. One engine thread owns the runner and the KV block manager; every step
//! runs the decode token of each running sequence plus chunks of waiting prompts, up to a token
//! budget, in a single batched forward. Requests join and leave between steps. When blocks run
//! out, the newest sequence is preempted and later recomputed (never an error for an accepted
//! request). A request whose receiver is gone (client disconnected, stop string matched) is
//! dropped and its blocks freed at the next step.
use super::block_manager::{prefix_root, BlockCopy, BlockManager, BlockTable, PrefixMatch};
use super::error::EngineError;
use super::generate::FinishReason;
use super::grammar::Constraint;
use super::pooling::{Pool, Pooling};
use super::runner::{Logits, Runner};
use super::sampler::{logprobs, History, Sampler, SamplingParams};
use super::saved_prompts::{SlotAction, SlotOutcome, SlotPrompts};
use super::speculate::{self, Acceptance, DraftPolicy, StepCost};
use super::state_cache::{self, StateCache};
use super::stats::{EngineStats, RunningSeq};
use super::thought::Thought;
use candor_models::lora::{LoraAdapter, LoraMix};
use candor_models::spec::ModelSpec;
use candor_models::{Batch, LogitsWanted, SeqInput};
use rayon::prelude::*;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub max_waiting: usize,
    /// Share computed full blocks across requests with the same prefix.
    pub prefix_caching: bool,
    /// Most tokens a decoding sequence drafts per step by prompt lookup (`speculate`); 0 turns
    /// speculative decoding off.
    pub speculative_tokens: usize,
    /// Most host memory the recurrent states of cached prefixes take (`StateCache`), for a
    /// model whose sequences carry one; None: as much as the host's memory allows. 0 turns
    /// prefix caching off for such a model.
    pub state_cache_bytes: Option<u64>,
}

/// `SchedulerConfig::state_cache_bytes` unless told otherwise: llama-server's default for its
/// prompt cache in host memory (`--cache-ram`).
pub const DEFAULT_STATE_CACHE_BYTES: u64 = 8 << 30;

/// What a step's fixed cost is worth in extra rows (`DraftPolicy`) until the engine has timed
/// enough steps to know (`StepCost`), by device kind. A CPU reads the weights once per step but
/// pays for every row: Qwen2.5 0.5B Q4_K on 2 Xeon threads takes 24 ms for a row, 34 for 4, 52
/// for 8, 71 for 16 (`candor bench -p 1,4,8,16 --profile-ops`), about 6 rows' worth. A GPU
/// reads ~16 GB of an 8B model per step and multiplies a few dozen rows for little more.
fn draft_base_rows_prior(device_kind: &str) -> f32 {
    match device_kind {
        "cpu" => 6.0,
        _ => 32.0,
    }
}

/// What the logits of the prompt rows a scoring request brings back (`prompt_logprobs`) may
/// take on the host at once: its prefill chunks are cut to fit (110 rows of a 150k vocabulary),
/// so a long prompt scored is never a multi-gigabyte step.
const SCORE_LOGITS_BYTES: usize = 64 << 20;

/// The logprob of a sampled token and the top alternatives.
#[derive(Debug, Clone)]
pub struct TokenLogprobs {
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
    /// Where the token ranks in its row, 1 for the most likely (ties share the better rank);
    /// told for prompt tokens only (vLLM's `prompt_logprobs` give it).
    pub rank: Option<u32>,
}

/// A sequence's speculative drafts so far: tokens drafted (each run as a row of some step)
/// and those the sampler kept (llama-server's `draft_n` and `draft_n_accepted`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drafts {
    pub drafted: usize,
    pub accepted: usize,
}

#[derive(Debug, Clone)]
pub enum EngineEvent {
    Token {
        id: u32,
        logprobs: Option<TokenLogprobs>,
        /// The request's drafts, this token's step included.
        drafts: Drafts,
    },
    Finished {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        /// The request's drafts in all: a stop token drawn after kept drafts of its step
        /// ends it with one more kept than its last `Token` could tell.
        drafts: Drafts,
        /// The end token that stopped it (never sent as a `Token`), when one did.
        stop_token: Option<u32>,
    },
    /// A prefill chunk is done: `computed` of the prompt's tokens are in the cache (of which
    /// `cached_tokens` came from the prefix cache). One per chunk until the first token, the
    /// last with the whole prompt; a long prompt's progress for the client.
    PromptProgress {
        computed: usize,
        cached_tokens: usize,
        prompt_len: usize,
    },
    /// The prompt is in the cache and the first token is next; `cached_tokens` of it came
    /// from the prefix cache.
    Prefilled {
        cached_tokens: usize,
    },
    /// Logprobs of the next prompt tokens under the ones before them (`prompt_logprobs`), in
    /// order from the second prompt token on, as prefill chunks compute them; all arrive
    /// before `Prefilled`.
    PromptLogprobs(Vec<TokenLogprobs>),
    /// The prompt's pooled final hidden state (`pooling`), not normalised; comes before
    /// `Finished`.
    Embedding(Vec<f32>),
    Error(String),
}

pub struct EngineRequest {
    /// Names the request in logs (`cmpl-…`, `/i` for choice i of n).
    pub id: String,
    pub prompt_ids: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub eos_ids: Vec<u32>,
    pub ignore_eos: bool,
    /// Number of top alternatives to report per token (None: no logprobs).
    pub logprobs: Option<usize>,
    /// The logprobs reported are those of the distribution each token was drawn from, after
    /// every sampler (llama-server's `post_sampling_probs`), not the model's.
    pub logprobs_after_sampling: bool,
    /// Score the prompt: the logprob of each prompt token after the first, with this many top
    /// alternatives (`echo` with `logprobs`). `max_tokens` 0 then only scores.
    pub prompt_logprobs: Option<usize>,
    /// A grammar the answer must follow (structured outputs, forced tool calls).
    pub constraint: Option<Constraint>,
    /// A thinking model's thought to follow: its budget, and a grammar kept for the answer.
    pub thought: Option<Thought>,
    /// Embed the prompt: pool its final hidden states into one `Embedding` event. Only with
    /// `max_tokens` 0 and no `prompt_logprobs`.
    pub pooling: Option<Pooling>,
    /// What the answer is expected to be (OpenAI's Predicted Outputs): drafts come from it
    /// first, then from prompt lookup. Shared by a request's choices.
    pub prediction: Arc<Vec<u32>>,
    /// Lower goes first (vLLM's `priority`; 0 by default): it is admitted before waiting
    /// requests of higher values, and a running one of a higher value gives way to it.
    pub priority: i64,
    /// The LoRA adapters it runs with (slots of the served adapters), at their scales; none
    /// for the base model. Its prompt shares cached blocks only with requests of the same
    /// adapters at the same scales.
    pub lora: LoraMix,
    /// Start from the prefix cache's K/V of its prompt (llama-server's `cache_prompt`, on by
    /// default). The cached part is then never recomputed: the answer's first logits come from
    /// a pass over fewer rows, whose kernels round differently from the pass that computed the
    /// prompt first (close logprobs, possibly another token at a near-tie). Off, the whole
    /// prompt is computed, and a seeded request repeats its answer exactly on an idle server.
    /// Its blocks join the cache either way.
    pub cache_prompt: bool,
    /// vLLM's `cache_salt`: its prompt shares cached blocks only with requests of the same
    /// salt (a tenant's secret), so no other can learn its prompts by timing cache hits.
    pub cache_salt: Option<Arc<str>>,
    pub events: UnboundedSender<EngineEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the server is at capacity: {0} requests are waiting")]
    QueueFull(usize),
    #[error("the engine has stopped")]
    Stopped,
    #[error("{0}")]
    Invalid(String),
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

struct Queue {
    waiting: VecDeque<Seq>,
    stopped: bool,
    /// Per LoRA slot: whether requests may name it (false once an unload is asked for).
    lora_open: Vec<bool>,
    /// Adapters to load, slots to empty: applied by the engine between steps (an unload once
    /// no sequence uses the slot).
    lora_changes: Vec<LoraChange>,
    /// Who waits for the prefix cache to be emptied (`EngineHandle::reset_prefix_cache`):
    /// told how many blocks it held.
    cache_resets: Vec<tokio::sync::oneshot::Sender<usize>>,
    /// Prompt caches to save, restore or erase between steps, and who waits for each.
    slot_actions: Vec<(SlotAction, SlotAnswer)>,
}

type SlotAnswer = tokio::sync::oneshot::Sender<Result<SlotOutcome, String>>;

/// A change of the served LoRA adapters, and who waits for its outcome (the slot).
struct LoraChange {
    change: LoraEdit,
    done: tokio::sync::oneshot::Sender<Result<u32, String>>,
}

enum LoraEdit {
    Load(LoraAdapter),
    Unload(u32),
}

/// The fewest shared prompt tokens a request waits for another to compute (`prefix_in_flight`):
/// a chat template's header, a block or two that every prompt starts with, is not worth
/// holding a request back a step; a system prompt of a few lines is.
const MIN_SHARED_TO_WAIT: usize = 64;

/// One sequence in the engine.
struct Seq {
    req: EngineRequest,
    sampler: Sampler,
    /// Prompt followed by the generated tokens.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens whose K/V are in the cache.
    computed: usize,
    table: BlockTable,
    /// Prompt tokens taken from the prefix cache at (first) admission.
    cached_tokens: usize,
    arrived: Instant,
    first_token_at: Option<Instant>,
    /// Order of admission (newest is preempted first).
    admitted: u64,
    /// A group's first member: opens when its prompt is in the cache (or it leaves).
    prompt_gate: Option<PromptGate>,
    /// A group's later member: admitted once the first member's prompt is in the cache, whose
    /// full blocks it then takes from the prefix cache instead of computing them again.
    after_gate: Option<Arc<AtomicBool>>,
    /// How many tokens it drafts next (speculative decoding).
    draft: DraftPolicy,
    /// Tokens it drafted and kept so far (for its log line).
    drafted: usize,
    kept: usize,
    /// Prompt positions whose logprob has been sent (`prompt_logprobs`; the first has none).
    scored: usize,
    /// Its embedding so far (`pooling`).
    pool: Pool,
    /// The end token it drew, which stopped it.
    stop_token: Option<u32>,
    /// Its place among the running sequences (llama-server's slot): the lowest free one when
    /// it was admitted.
    slot: usize,
    /// Block boundaries past where it stands at which the state cache should keep its
    /// recurrent state (a model that keeps one): its prompt's chunks end there.
    keep_state_at: Vec<usize>,
}

impl Seq {
    /// What `/slots` shows of it.
    fn snapshot(&self) -> RunningSeq {
        let p = self.sampler.params();
        RunningSeq {
            slot: self.slot,
            request_id: self.req.id.clone(),
            admitted: self.admitted,
            prompt_tokens: self.prompt_len,
            computed: self.computed,
            generated: self.generated(),
            max_tokens: self.req.max_tokens,
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            seed: p.seed,
            lora: self.req.lora.clone(),
            cache_prompt: self.req.cache_prompt,
        }
    }
}

/// A sequence's part of a step: `len` of its own tokens from `start`, then `draft`.
#[derive(Debug)]
struct Planned {
    admitted: u64,
    start: usize,
    len: usize,
    draft: Vec<u32>,
}

/// Where a planned sequence sits in the step: its index in `running`, the position and number
/// of its own tokens the step computes (drafted ones follow them), whether it samples from the
/// output.
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    idx: usize,
    start: usize,
    len: usize,
    wants: bool,
}

/// Opened by the first of `n` choices once their shared prompt is computed, or when that
/// choice leaves the engine for any reason (so the others never wait on a request that is gone).
struct PromptGate(Arc<AtomicBool>);

impl PromptGate {
    fn open(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Drop for PromptGate {
    fn drop(&mut self) {
        self.open();
    }
}

impl Seq {
    /// The one log line of a request that leaves the engine.
    fn log(&self, outcome: &str, now: Instant) {
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        tracing::info!(
            request = %self.req.id,
            outcome = %outcome,
            prompt_tokens = self.prompt_len,
            cached_tokens = self.cached_tokens,
            completion_tokens = self.generated(),
            drafted_tokens = self.drafted,
            kept_drafts = self.kept,
            ttft_ms = self.first_token_at.map(|t| ms(t.duration_since(self.arrived))),
            duration_ms = ms(now.duration_since(self.arrived)),
            "request done"
        );
    }
    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
    /// Whether only its last token is left to compute (its next step samples a new one).
    fn decoding(&self) -> bool {
        self.tokens.len() - self.computed == 1
    }
    fn cancelled(&self) -> bool {
        self.req.events.is_closed()
    }
    /// Whether prompt tokens are still to be scored: its steps then bring back the logits of
    /// every prompt row, and it takes nothing from the prefix cache (a cached block has no
    /// logits to score with).
    fn scoring(&self) -> bool {
        self.req.prompt_logprobs.is_some() && self.scored < self.prompt_len
    }
    /// Whether prompt positions are still to be pooled by their mean (or each kept): its
    /// steps bring back the hidden state of every prompt row, and (as for scoring) it takes
    /// nothing from the prefix cache.
    fn pooling_every_row(&self) -> bool {
        self.req.pooling.is_some_and(Pooling::reads_every_row) && self.pool.upto() < self.prompt_len
    }
    /// Whether it needs a row computed for every prompt position.
    fn needs_every_row(&self) -> bool {
        self.scoring() || self.pooling_every_row()
    }
    /// Where it stands among running sequences: the first is served first and preempted last.
    fn rank(&self) -> (i64, u64) {
        (self.req.priority, self.admitted)
    }
}

/// Queue `seq` by priority: after those of its priority (a new request), or before them (a
/// preempted one, which was admitted before any of them).
fn enqueue(waiting: &mut VecDeque<Seq>, seq: Seq, before_equals: bool) -> usize {
    let p = seq.req.priority;
    let at = waiting
        .iter()
        .position(|w| match before_equals {
            true => w.req.priority >= p,
            false => w.req.priority > p,
        })
        .unwrap_or(waiting.len());
    waiting.insert(at, seq);
    at
}

/// Handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
    config: SchedulerConfig,
    /// Tokens per KV block (whether a shared prompt has a full block to share).
    block_size: usize,
    pub stats: Arc<EngineStats>,
}

impl EngineHandle {
    /// Queue a request; the events arrive on its channel.
    pub fn submit(&self, req: EngineRequest) -> Result<(), SubmitError> {
        self.submit_group(vec![req])
    }

    /// Queue requests that belong together (the `n` choices of one API request): all or none,
    /// under one lock, so the engine admits them in the same step. Choices that trickled in one
    /// by one could be prefilled in different batches, and since batched kernels may round
    /// differently with the batch's shape (VNNI panels from 8 rows, tiles below), the same
    /// seeded request would then not always repeat itself on an idle server.
    ///
    /// The queue takes a group while it has room for all of it; a group larger than the whole
    /// queue is taken when the queue is empty, so a large `n` is slow, never refused forever.
    ///
    /// With prefix caching, members that share a prompt of a full block or more compute it
    /// once: the first is prefilled, the others are admitted when its prompt is in the cache,
    /// take its full blocks and a copy of its partly filled one, and compute only the prompt's
    /// last token (vLLM forks `n` choices after the prompt the same way). Not for requests that take nothing from the cache
    /// (`cache_prompt` off): each computes the whole prompt.
    pub fn submit_group(&self, mut reqs: Vec<EngineRequest>) -> Result<(), SubmitError> {
        if reqs
            .iter()
            .any(|r| r.pooling.is_some() && (r.max_tokens > 0 || r.prompt_logprobs.is_some()))
        {
            return Err(SubmitError::Invalid(
                "an embedding request generates and scores nothing".into(),
            ));
        }
        let samplers = reqs
            .iter_mut()
            .map(|r| {
                Sampler::new(r.sampling.clone()).map(|s| {
                    s.constrained(r.constraint.take())
                        .thinking(r.thought.take())
                        .ending_with(&r.eos_ids, r.ignore_eos)
                        .keeping_candidates(r.logprobs.is_some() && r.logprobs_after_sampling)
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let mut q = self.open_queue()?;
        let closed = |a: u32| !q.lora_open.get(a as usize).copied().unwrap_or(false);
        if let Some(a) = reqs
            .iter()
            .flat_map(|r| r.lora.slots())
            .find(|&a| closed(a))
        {
            return Err(SubmitError::Invalid(format!(
                "LoRA adapter {a} is not loaded (unloaded since the request was read?)"
            )));
        }
        let waiting = q.waiting.len();
        let room = self.config.max_waiting.saturating_sub(waiting);
        if room == 0 || (reqs.len() > room && waiting > 0) {
            return Err(SubmitError::QueueFull(waiting));
        }
        let arrived = Instant::now();
        // A scoring member, or one pooling rows the cache holds (mean, first), takes nothing
        // from the cache, so there would be nothing to share.
        let shares_prompt = self.config.prefix_caching
            && reqs.len() > 1
            && reqs.iter().all(|r| {
                r.cache_prompt
                    && r.prompt_logprobs.is_none()
                    && r.pooling.is_none_or(Pooling::takes_from_cache)
            })
            && reqs[0].prompt_ids.len() > self.block_size
            && reqs.iter().all(|r| r.prompt_ids == reqs[0].prompt_ids);
        let gate = Arc::new(AtomicBool::new(false));
        for (i, (req, sampler)) in reqs.into_iter().zip(samplers).enumerate() {
            let (prompt_gate, after_gate) = match (shares_prompt, i) {
                (false, _) => (None, None),
                (true, 0) => (Some(PromptGate(gate.clone())), None),
                (true, _) => (None, Some(gate.clone())),
            };
            let tokens = req.prompt_ids.clone();
            let root = prefix_root(&req.lora, req.cache_salt.as_deref());
            let seq = Seq {
                prompt_len: tokens.len(),
                tokens,
                req,
                sampler,
                computed: 0,
                table: BlockTable::rooted(root),
                cached_tokens: 0,
                arrived,
                first_token_at: None,
                admitted: 0,
                prompt_gate,
                after_gate,
                // Replaced at admission, from the engine's recent acceptance.
                draft: DraftPolicy::new(
                    self.config.speculative_tokens,
                    speculate::server_prior(&Acceptance::default()),
                ),
                drafted: 0,
                kept: 0,
                scored: 1,
                pool: Pool::default(),
                stop_token: None,
                slot: 0,
                keep_state_at: Vec::new(),
            };
            enqueue(&mut q.waiting, seq, false);
        }
        self.stats.waiting.set(q.waiting.len() as i64);
        self.stats
            .set_lora_waiting(q.waiting.iter().flat_map(|s| s.req.lora.slots()));
        drop(q);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Stop taking requests; the thread exits once running and waiting requests are done.
    pub fn shutdown(&self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.stopped = true;
        }
        self.shared.wake.notify_all();
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Serve `adapter` from now on, in a new slot: the answer is the slot requests name it
    /// by (`EngineRequest::adapter`), or why it does not fit the model.
    pub fn load_lora(
        &self,
        adapter: LoraAdapter,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<u32, String>>, SubmitError> {
        self.change_lora(LoraEdit::Load(adapter))
    }

    /// Stop serving the adapter in `slot`: requests naming it are refused from now on, and the
    /// slot is emptied once no request uses it (the answer comes then).
    pub fn unload_lora(
        &self,
        slot: u32,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<u32, String>>, SubmitError> {
        self.change_lora(LoraEdit::Unload(slot))
    }

    /// The queue, locked, while the engine takes requests (`Stopped` once it does not).
    fn open_queue(&self) -> Result<MutexGuard<'_, Queue>, SubmitError> {
        let q = self.shared.queue.lock().map_err(|_| SubmitError::Stopped)?;
        match q.stopped {
            true => Err(SubmitError::Stopped),
            false => Ok(q),
        }
    }

    /// Empty the prefix cache before the next step (vLLM's `reset_prefix_cache`): no request
    /// admitted after it takes K/V computed before it. The answer is how many blocks were
    /// cached.
    pub fn reset_prefix_cache(&self) -> Result<tokio::sync::oneshot::Receiver<usize>, SubmitError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let mut q = self.open_queue()?;
        q.cache_resets.push(done);
        self.shared.wake.notify_all();
        Ok(answer)
    }

    /// Save, restore or erase a prompt cache (llama-server's slot actions) before the next
    /// step; the answer is what it did, or why it could not.
    pub fn slot_action(
        &self,
        action: SlotAction,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<SlotOutcome, String>>, SubmitError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let mut q = self.open_queue()?;
        q.slot_actions.push((action, done));
        self.shared.wake.notify_all();
        Ok(answer)
    }

    fn change_lora(
        &self,
        change: LoraEdit,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<u32, String>>, SubmitError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let mut q = self.open_queue()?;
        if let LoraEdit::Unload(slot) = change {
            match q.lora_open.get_mut(slot as usize) {
                Some(open) if *open => *open = false,
                _ => {
                    return Err(SubmitError::Invalid(format!(
                        "no LoRA adapter is loaded in slot {slot}"
                    )))
                }
            }
        }
        q.lora_changes.push(LoraChange { change, done });
        self.shared.wake.notify_all();
        Ok(answer)
    }
}

/// Start the engine thread over `runner`.
pub fn spawn(
    runner: Box<dyn Runner>,
    config: SchedulerConfig,
    stats: Arc<EngineStats>,
) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let config = for_model(config, runner.spec());
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            waiting: VecDeque::new(),
            stopped: false,
            lora_open: vec![true; runner.lora_slots()],
            lora_changes: Vec::new(),
            cache_resets: Vec::new(),
            slot_actions: Vec::new(),
        }),
        wake: Condvar::new(),
    });
    let handle = EngineHandle {
        shared: shared.clone(),
        config: config.clone(),
        block_size: runner.block_size(),
        stats: stats.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("candor-engine".into())
        .spawn(move || Engine::new(runner, config, shared, stats).run())
        .unwrap_or_else(|e| panic!("cannot start the engine thread: {e}"));
    (handle, thread)
}

/// `config` as `spec` can be served on this host (`for_model_within` of its available
/// memory, read when the engine starts: after the weights and the KV cache are in place).
fn for_model(config: SchedulerConfig, spec: &ModelSpec) -> SchedulerConfig {
    for_model_within(config, spec, crate::rss::host_memory().1)
}

/// `config` as `spec` can be served with `available` bytes of host memory free: a model whose
/// sequences carry a recurrent state (gated DeltaNet, Mamba or Kimi Delta layers) drafts
/// nothing, since a rejected draft would stay folded into the state (vLLM and llama.cpp turn
/// it off for such models too). Its states live in host memory apart from the KV cache's
/// token budget, one per running sequence: no more sequences run together than
/// `sequences_whose_states_fit` (vLLM bounds them by the memory its state blocks take
/// likewise), rather than the process failing when the last ones start. The prefix cache's
/// blocks hold keys and values but not the state a sequence reached there: a cached prefix is
/// resumed where the state cache kept one (`StateCache`), which takes what is left of that
/// half of memory, at most `state_cache_bytes`; with no room for it, prefix caching is off.
fn for_model_within(
    mut config: SchedulerConfig,
    spec: &ModelSpec,
    available: Option<u64>,
) -> SchedulerConfig {
    if !spec.keeps_sequence_state() {
        return config;
    }
    let per_sequence = spec.sequence_state_bytes();
    let mib = per_sequence as f64 / (1 << 20) as f64;
    let fit = available.map(|a| sequences_whose_states_fit(per_sequence as u64, a));
    if let Some(fit) = fit.filter(|&fit| fit < config.max_num_seqs) {
        tracing::warn!(
            state_mib_per_sequence = (mib * 10.0).round() / 10.0,
            max_num_seqs = config.max_num_seqs,
            fit,
            "the recurrent states of --max-num-seqs sequences would take more than half the \
             host's available memory: at most {fit} sequences run together"
        );
        config.max_num_seqs = fit;
    }
    let running = per_sequence as u64 * config.max_num_seqs as u64;
    let room = available.map(|a| (a / 2).saturating_sub(running));
    let cache = match (config.state_cache_bytes, room) {
        (Some(asked), Some(room)) => asked.min(room),
        (Some(asked), None) => asked,
        (None, Some(room)) => room,
        (None, None) => DEFAULT_STATE_CACHE_BYTES,
    };
    let cache = match config.prefix_caching {
        true => cache,
        false => 0,
    };
    config.prefix_caching = cache > 0;
    config.state_cache_bytes = Some(cache);
    config.speculative_tokens = 0;
    tracing::info!(
        state_mib_per_sequence = (mib * 10.0).round() / 10.0,
        state_mib_at_max_num_seqs = (mib * config.max_num_seqs as f64).round(),
        state_cache_mib = cache >> 20,
        "the model keeps a recurrent state per sequence (in host memory, beside the KV cache): \
         speculative decoding is off; {}",
        match config.prefix_caching {
            true => "cached prefixes resume where the state cache kept their states",
            false => "prefix caching is off",
        }
    );
    config
}

/// How many sequences' recurrent states of `per_sequence` bytes fit in half of `available`
/// bytes of host memory (the other half left to what grows beside them: request buffers,
/// the allocator's slack, other processes), and at least one: a model too large for one
/// state still runs one sequence, as it would alone.
fn sequences_whose_states_fit(per_sequence: u64, available: u64) -> usize {
    let fit = (available / 2) / per_sequence.max(1);
    usize::try_from(fit).unwrap_or(usize::MAX).max(1)
}

/// Fails the requests still waiting when the engine thread ends however it ends (a panic
/// outside a step included), and refuses new ones: a request never waits on a dead engine.
struct FailWaitingOnExit(Arc<Shared>);

impl Drop for FailWaitingOnExit {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.stopped = true;
        for seq in q.waiting.drain(..) {
            let _ = seq
                .req
                .events
                .send(EngineEvent::Error("the engine stopped".into()));
        }
        // Their senders dropped, LoRA changes and cache resets waiting are told it stopped.
        q.lora_changes.clear();
        q.cache_resets.clear();
        q.slot_actions.clear();
    }
}

/// What a caught panic says (its `&str` or `String` payload).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

struct Engine {
    runner: Box<dyn Runner>,
    blocks: BlockManager,
    config: SchedulerConfig,
    shared: Arc<Shared>,
    stats: Arc<EngineStats>,
    running: Vec<Seq>,
    admissions: u64,
    /// What rows cost in the decode steps so far (for `DraftPolicy`).
    step_cost: StepCost,
    /// How drafts have fared lately over all sequences (new sequences' prior).
    acceptance: Acceptance,
    /// Most prompt rows a scoring sequence computes per step (`SCORE_LOGITS_BYTES`).
    score_rows: usize,
    /// Each slot's last prompt, for llama-server's slot actions.
    slot_prompts: SlotPrompts,
    /// The recurrent states of cached prefixes (a model whose sequences carry one).
    states: StateCache,
    /// A prompt's state is kept every this many tokens (`state_cache::interval`).
    state_interval: usize,
}

impl Engine {
    fn new(
        runner: Box<dyn Runner>,
        config: SchedulerConfig,
        shared: Arc<Shared>,
        stats: Arc<EngineStats>,
    ) -> Self {
        let blocks = BlockManager::new(
            runner.num_blocks(),
            runner.block_size(),
            config.prefix_caching,
        );
        let states = match runner.spec().keeps_sequence_state() && config.prefix_caching {
            true => StateCache::new(config.state_cache_bytes.unwrap_or(0) as usize),
            false => StateCache::new(0),
        };
        let state_interval =
            state_cache::interval(config.max_num_batched_tokens, runner.block_size());
        Engine {
            step_cost: StepCost::new(draft_base_rows_prior(&runner.device().kind)),
            acceptance: Acceptance::default(),
            score_rows: (SCORE_LOGITS_BYTES / (runner.spec().vocab_size.max(1) * 4)).max(1),
            runner,
            blocks,
            config,
            shared,
            stats,
            running: Vec::new(),
            admissions: 0,
            slot_prompts: SlotPrompts::default(),
            states,
            state_interval,
        }
    }

    fn run(mut self) {
        let _exit = FailWaitingOnExit(self.shared.clone());
        loop {
            if !self.admit() {
                return;
            }
            self.drop_cancelled();
            if self.running.is_empty() {
                self.publish();
                continue;
            }
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| self.step())) {
                self.recover_from_panic(&panic_message(panic.as_ref()));
            }
            self.publish();
        }
    }

    /// A step panicked (a bug, in the engine, a model or a backend): it may have left the
    /// sequences and their blocks half updated, so the requests it ran are failed and the
    /// block manager starts over empty (the cached prefixes go with it). Waiting requests are
    /// served as usual: one bad step costs its own requests, not the server.
    fn recover_from_panic(&mut self, message: &str) {
        tracing::error!(
            error = %message,
            requests = self.running.len(),
            "an engine step panicked: its requests failed, the KV cache emptied, serving on"
        );
        for seq in self.running.drain(..) {
            let _ = seq.req.events.send(EngineEvent::Error(format!(
                "internal error in the engine step: {message}"
            )));
            self.runner.remove_state(seq.slot as u32);
        }
        // The new block manager hands its uids out from 1 again: a state kept under an old
        // one would name another prefix.
        self.states.clear();
        self.blocks = BlockManager::new(
            self.blocks.num_blocks(),
            self.blocks.block_size(),
            self.config.prefix_caching,
        );
        self.stats.errors.inc();
    }

    /// Move waiting requests into the running set while there is room. Blocks (idle) when
    /// there is nothing to do; returns false when the engine should exit.
    fn admit(&mut self) -> bool {
        let shared = self.shared.clone();
        let Ok(mut q) = shared.queue.lock() else {
            return false;
        };
        loop {
            self.apply_lora_changes(&mut q);
            for done in std::mem::take(&mut q.cache_resets) {
                self.states.clear();
                let _ = done.send(self.blocks.forget_cached());
            }
            for (action, done) in std::mem::take(&mut q.slot_actions) {
                let outcome = self.slot_prompts.apply(
                    action,
                    &mut self.blocks,
                    self.runner.as_mut(),
                    &mut self.states,
                );
                let _ = done.send(outcome);
            }
            // Requests held for a prompt a running sequence is computing (theirs to share)
            // stay at the head of the queue, in order, while those behind them are admitted:
            // a burst behind one long system prompt delays no one else (as vLLM's scheduler
            // passes over requests waiting for their KV transfer or grammar).
            let mut held = 0;
            while let Some(front) = q.waiting.get(held) {
                if front.cancelled() {
                    q.waiting.remove(held);
                    continue;
                }
                if front
                    .after_gate
                    .as_ref()
                    .is_some_and(|g| !g.load(Ordering::Acquire))
                {
                    // Its group's prompt is still being computed by a running member.
                    held += 1;
                    continue;
                }
                if self.running.len() >= self.config.max_num_seqs {
                    // Full: a waiting request of a better priority takes the worst one's place.
                    match self.evict_for(front.req.priority) {
                        Some(evicted) => {
                            if enqueue(&mut q.waiting, evicted, true) <= held {
                                held += 1;
                            }
                        }
                        None => break,
                    }
                    continue;
                }
                // Admit when the whole prompt (+1 token) fits in free blocks beside its cached
                // prefix, so admitted prefills are not preempted right away.
                let need = self.blocks.blocks_for(front.tokens.len() + 1);
                let root = prefix_root(&front.req.lora, front.req.cache_salt.as_deref());
                let found = if front.needs_every_row()
                    || !front.req.cache_prompt
                    || !front.req.pooling.is_none_or(Pooling::takes_from_cache)
                {
                    PrefixMatch::none(root)
                } else if front.req.pooling.is_some() {
                    // Embeddings take whole blocks only: a text embedded again is computed
                    // over the same rows as the first time (its vector repeats exactly for
                    // a text under 17 tokens), and a query shared by many reranked documents
                    // is still computed once.
                    self.blocks.match_full_blocks(&front.tokens, root)
                } else if let Some((src, tokens)) = self.first_members_prompt_block(front) {
                    // A later member of `n` choices: the first member's full prompt blocks,
                    // then its partly filled one, copied while it runs.
                    let found = self.blocks.match_full_blocks(&front.tokens, root);
                    match found.tokens + tokens + 1 == front.tokens.len() {
                        true => self.blocks.with_copy_of(found, src, tokens),
                        false => found,
                    }
                } else {
                    // Looked up without taking anything: a match would take its blocks (and
                    // may evict an idle one for a copy) on every step the request waits.
                    let cached = match self.states.enabled() {
                        true => self.resumable(&front.tokens, root),
                        false => self.blocks.cached_start(&front.tokens, root).1,
                    };
                    if let Some((sharer, at)) = self.prefix_in_flight(&front.tokens, root, cached) {
                        // A running prompt is computing blocks this one shares: take them
                        // from the cache once they are there rather than compute them twice
                        // in the same steps (a burst of requests behind one system prompt).
                        // A recurrent model's sharer keeps its state where this one resumes.
                        let wanted = &mut self.running[sharer].keep_state_at;
                        if self.states.enabled() && !wanted.contains(&at) {
                            wanted.push(at);
                        }
                        held += 1;
                        continue;
                    }
                    self.blocks.match_prefix(&front.tokens, root)
                };
                let (found, resume, branch) = self.cut_to_kept_state(found);
                let PrefixMatch {
                    table,
                    tokens: hit,
                    copy,
                } = found;
                if need - table.len() > self.blocks.num_free() && !self.running.is_empty() {
                    let mut table = table;
                    self.blocks.release(&mut table);
                    let priority = front.req.priority;
                    match self.evict_for(priority) {
                        Some(evicted) => {
                            if enqueue(&mut q.waiting, evicted, true) <= held {
                                held += 1;
                            }
                            continue;
                        }
                        None => break,
                    }
                }
                if need > self.blocks.num_blocks() {
                    let mut table = table;
                    self.blocks.release(&mut table);
                    if let Some(seq) = q.waiting.remove(held) {
                        let _ = seq.req.events.send(EngineEvent::Error(format!(
                            "the request needs {need} KV blocks, the cache has {}",
                            self.blocks.num_blocks()
                        )));
                    }
                    continue;
                }
                if let Some(mut seq) = q.waiting.remove(held) {
                    let hit = hit - self.copy_shared_start(copy, &seq.req.id);
                    seq.slot = (0..)
                        .find(|s| self.running.iter().all(|r| r.slot != *s))
                        .unwrap_or(0);
                    let (table, hit) = self.resume_state(&mut seq, table, hit, resume, branch);
                    self.admissions += 1;
                    seq.admitted = self.admissions;
                    if seq.first_token_at.is_none() {
                        // A prediction is the client's word that the answer follows it: its
                        // drafts start trusted, whatever prompt lookup has been worth lately,
                        // and may run longer (where drafting is on at all).
                        let max = self.config.speculative_tokens;
                        let (max, prior) = match seq.req.prediction.is_empty() {
                            true => (max, speculate::server_prior(&self.acceptance)),
                            false if max == 0 => (0, 0.0),
                            false => (
                                max.max(speculate::PREDICTION_MAX_DRAFT),
                                speculate::PREDICTION_PRIOR,
                            ),
                        };
                        seq.draft = DraftPolicy::new(max, prior);
                        // First admission: count the prompt against the cache.
                        seq.cached_tokens = hit;
                        self.stats
                            .prefix_cache_queries
                            .inc_by(seq.tokens.len() as u64);
                        self.stats.prefix_cache_hits.inc_by(hit as u64);
                    }
                    seq.table = table;
                    seq.computed = hit;
                    self.running.push(seq);
                }
            }
            self.stats.waiting.set(q.waiting.len() as i64);
            self.stats
                .set_lora_waiting(q.waiting.iter().flat_map(|s| s.req.lora.slots()));
            self.stats
                .set_lora_running(self.running.iter().flat_map(|s| s.req.lora.slots()));
            if !self.running.is_empty() {
                return true;
            }
            self.publish();
            if q.stopped && q.waiting.is_empty() {
                return false;
            }
            q = match self.shared.wake.wait(q) {
                Ok(q) => q,
                Err(_) => return false,
            };
        }
    }

    /// Whether a running sequence is still computing prompt blocks that `tokens` (rooted at
    /// `root`, `hit` tokens already found in the prefix cache) shares: whole blocks of their
    /// common start, at least `MIN_SHARED_TO_WAIT` tokens beyond `hit`, not yet computed. Such
    /// a request waits for them (a step or a few of the other prompt's prefill) instead of
    /// computing them beside it.
    /// Returns the sharer's index and where the shared blocks end.
    fn prefix_in_flight(&self, tokens: &[u32], root: u64, hit: usize) -> Option<(usize, usize)> {
        if !self.blocks.caching() {
            // Nothing computed is ever shared: waiting would only serialize the prompts.
            return None;
        }
        let block = self.blocks.block_size();
        // The last prompt token is always computed by its own request.
        let usable = tokens.len().saturating_sub(1);
        self.running.iter().enumerate().find_map(|(i, r)| {
            if r.table.root() != root || !r.req.cache_prompt || r.computed >= r.prompt_len {
                return None;
            }
            let common = r.tokens[..r.prompt_len]
                .iter()
                .zip(tokens)
                .take_while(|(a, b)| a == b)
                .count();
            let shareable = common.min(usable) / block * block;
            (shareable >= hit + MIN_SHARED_TO_WAIT && r.computed < shareable)
                .then_some((i, shareable))
        })
    }

    /// How much of `tokens`' start under `root` a recurrent model could resume now: the
    /// longest cached prefix whose state the state cache kept.
    fn resumable(&self, tokens: &[u32], root: u64) -> usize {
        let points = self.blocks.cached_resume_points(tokens, root);
        state_cache::best_resume(&self.states, &points).map_or(0, |(pos, _)| pos)
    }

    /// A prefix match cut back, for a model whose sequences carry a recurrent state, to the
    /// longest prefix whose state was kept (the rest is computed again, the state with it),
    /// with where that state is (`(tokens, key)`) and where its full blocks ended before the
    /// cut: the point where this prompt leaves what others computed, worth keeping its state
    /// at for the next one. Any other model's match as it is.
    fn cut_to_kept_state(
        &mut self,
        found: PrefixMatch,
    ) -> (PrefixMatch, Option<(usize, u64)>, usize) {
        if !self.states.enabled() {
            return (found, None, 0);
        }
        let points = self.blocks.resume_points(&found);
        let bs = self.blocks.block_size();
        let branch = (points.iter().map(|&(pos, _)| pos))
            .filter(|pos| pos.is_multiple_of(bs))
            .max()
            .unwrap_or(0);
        let resume = state_cache::best_resume(&self.states, &points);
        let found = self
            .blocks
            .cut_match(found, resume.map_or(0, |(pos, _)| pos));
        (found, resume, branch)
    }

    /// Put the kept state `resume` names in the slot of `seq`, admitted with `table` and `hit`
    /// tokens from the prefix cache, and note where its state is worth keeping. Returns its
    /// table and start: as given where the state was put in place (or the model keeps none),
    /// else empty, from the first token (the block copy of a resumed tail failed, or the
    /// model refused the state).
    fn resume_state(
        &mut self,
        seq: &mut Seq,
        mut table: BlockTable,
        hit: usize,
        resume: Option<(usize, u64)>,
        branch: usize,
    ) -> (BlockTable, usize) {
        if !self.states.enabled() {
            return (table, hit);
        }
        let restored = match resume {
            Some((pos, key)) if pos == hit => self.states.get(key, pos),
            _ => None,
        }
        .map(|state| self.runner.restore_state(seq.slot as u32, state));
        let hit = match restored {
            Some(Ok(())) => hit,
            Some(Err(e)) => {
                tracing::warn!(request = %seq.req.id, error = %e, "a kept state was refused; recomputing");
                0
            }
            None => 0,
        };
        if hit == 0 {
            self.blocks.release(&mut table);
        }
        let bs = self.blocks.block_size();
        // The first of `n` choices keeps its state where the others resume (all of the
        // prompt's full blocks but its last token's).
        let group_start = match seq.prompt_gate {
            Some(_) => seq.prompt_len.saturating_sub(1) / bs * bs,
            None => 0,
        };
        seq.keep_state_at
            .extend([branch, group_start].into_iter().filter(|&at| at > hit));
        (table, hit)
    }

    /// For a later member of a group whose first member runs with its prompt computed: the
    /// first member's partly filled prompt block and how many of its tokens the member can
    /// take (all but the prompt's last, which the member computes for its own logits).
    fn first_members_prompt_block(&self, member: &Seq) -> Option<(u32, usize)> {
        let gate = member.after_gate.as_ref()?;
        let first = self.running.iter().find(|s| {
            s.prompt_gate
                .as_ref()
                .is_some_and(|g| Arc::ptr_eq(&g.0, gate))
        })?;
        let bs = self.blocks.block_size();
        let last = member.tokens.len().checked_sub(1)?;
        let (j, tokens) = (last / bs, last % bs);
        let computed =
            first.computed >= member.tokens.len() && first.tokens.starts_with(&member.tokens);
        match computed && tokens > 0 {
            true => first.table.ids.get(j).map(|&src| (src, tokens)),
            false => None,
        }
    }

    /// Make the block copy a prefix match asked for (`PrefixMatch::copy`). Returns the tokens
    /// the sequence must compute after all: none, or the copy's when the device failed it
    /// (the destination block is then written from its start, as a fresh one).
    fn copy_shared_start(&mut self, copy: Option<BlockCopy>, request: &str) -> usize {
        let Some(c) = copy else {
            return 0;
        };
        match self.runner.copy_blocks(&[(c.src, c.dst)]) {
            Ok(()) => 0,
            Err(e) => {
                tracing::warn!(request, error = %e, "prefix cache block copy failed; recomputing");
                c.tokens
            }
        }
    }

    /// Load the adapters asked for; empty the slots asked for that no sequence (running or
    /// waiting) uses any more, keeping the others for a later step.
    fn apply_lora_changes(&mut self, q: &mut Queue) {
        let changes = std::mem::take(&mut q.lora_changes);
        for LoraChange { change, done } in changes {
            let outcome = match change {
                LoraEdit::Load(adapter) => {
                    let slot = self.runner.lora_slots();
                    self.runner
                        .set_lora_slot(slot, Some(adapter))
                        .map(|()| {
                            q.lora_open.resize(slot + 1, false);
                            q.lora_open[slot] = true;
                            slot as u32
                        })
                        .map_err(|e| e.to_string())
                }
                LoraEdit::Unload(slot) => {
                    let uses = |s: &Seq| s.req.lora.uses(slot);
                    if self.running.iter().any(uses) || q.waiting.iter().any(uses) {
                        q.lora_changes.push(LoraChange {
                            change: LoraEdit::Unload(slot),
                            done,
                        });
                        continue;
                    }
                    self.runner
                        .set_lora_slot(slot as usize, None)
                        .map(|()| slot)
                        .map_err(|e| e.to_string())
                }
            };
            let _ = done.send(outcome);
        }
    }

    fn drop_cancelled(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].cancelled() {
                let mut seq = self.running.swap_remove(i);
                self.end(&mut seq);
                self.stats.cancelled.inc();
                seq.log("cancelled", Instant::now());
            } else {
                i += 1;
            }
        }
    }

    /// A sequence leaves for good (finished or cancelled): its blocks are released, its last
    /// block kept in the cache, and its slot remembers its tokens (a prompt cache to save).
    fn end(&mut self, seq: &mut Seq) {
        let computed = seq.computed.min(seq.tokens.len());
        self.slot_prompts
            .record(seq.slot, seq.table.root(), &seq.tokens[..computed]);
        self.retire(seq);
    }

    /// Release the blocks of `seq`, which leaves the running set, keeping its last one cached,
    /// and its recurrent state (a model that keeps one) in the state cache under the prefix
    /// it computed: moved there, not copied, for the next turn of its chat or its own return
    /// after preemption to resume from.
    fn retire(&mut self, seq: &mut Seq) {
        let state = self.runner.remove_state(seq.slot as u32);
        let computed = seq.computed.min(seq.tokens.len());
        let last = self.blocks.retire(&mut seq.table, &seq.tokens, computed);
        if let (Some(key), Some(state)) = (last, state) {
            if self.states.enabled() && state.pos == computed {
                self.states.insert(key, state);
            }
        }
        seq.keep_state_at.clear();
    }

    /// Take running sequence `idx` out: free its blocks; its tokens so far become its prompt
    /// when it is computed again.
    fn evict(&mut self, idx: usize) -> Seq {
        let mut seq = self.running.remove(idx);
        self.retire(&mut seq);
        seq.computed = 0;
        self.stats.preemptions.inc();
        seq
    }

    /// Preempt running sequence `idx`: queue it again ahead of the waiting ones of its
    /// priority.
    fn preempt(&mut self, idx: usize) {
        let seq = self.evict(idx);
        if let Ok(mut q) = self.shared.queue.lock() {
            enqueue(&mut q.waiting, seq, true);
        }
    }

    /// The running sequence of the worst rank, taken out, if its priority is worse than
    /// `priority` (a waiting request's).
    fn evict_for(&mut self, priority: i64) -> Option<Seq> {
        let (worst, _) = self
            .running
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.rank())
            .filter(|(_, s)| s.req.priority > priority)?;
        Some(self.evict(worst))
    }

    /// Give the sequence admitted as `me` blocks for `tokens` tokens, preempting the newest
    /// sequences until it fits. Returns its index, or None when it was the newest and yielded.
    fn reserve(&mut self, me: u64, tokens: usize) -> Option<usize> {
        loop {
            let idx = self.running.iter().position(|s| s.admitted == me)?;
            if self
                .blocks
                .ensure(&mut self.running[idx].table, tokens)
                .is_ok()
            {
                return Some(idx);
            }
            // The worst ranked goes: of the lowest priority, the newest.
            let (worst, admitted) = self
                .running
                .iter()
                .enumerate()
                .max_by_key(|(_, s)| s.rank())
                .map(|(i, s)| (i, s.admitted))?;
            self.preempt(worst);
            if admitted == me {
                return None;
            }
        }
    }

    fn step(&mut self) {
        let mut budget = self.config.max_num_batched_tokens.max(1);
        // Plan: by rank (priority, then the oldest first); the sequences a step cannot hold
        // are the worst ranked, which `reserve` preempts first.
        self.running.sort_by_key(|s| s.rank());
        let decoding = self.running.iter().filter(|s| s.decoding()).count();
        let whole_prompts = self.runner.whole_prompts();
        let mut plan: Vec<Planned> = Vec::new();
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let (start, pending, scoring) = {
                let s = &self.running[i];
                (s.computed, s.tokens.len() - s.computed, s.scoring())
            };
            let mut len = match scoring {
                true => pending.min(budget).min(self.score_rows),
                false => pending.min(budget),
            };
            if self.states.enabled() {
                len = self.to_next_kept_state(&self.running[i], start, len);
            }
            if whole_prompts && len < pending {
                // An encoder reads its whole prompt at once: one that does not fit this
                // step's budget waits for the next, unless nothing else would run.
                match plan.is_empty() {
                    true => len = pending,
                    false => len = 0,
                }
            }
            if len == 0 {
                i += 1;
                continue;
            }
            let admitted = self.running[i].admitted;
            match self.reserve(admitted, start + len) {
                Some(j) => {
                    budget = budget.saturating_sub(len);
                    let draft = self.draft(j, decoding, budget);
                    budget -= draft.len();
                    plan.push(Planned {
                        admitted,
                        start,
                        len,
                        draft,
                    });
                    i = j + 1;
                }
                // It yielded its blocks: every newer sequence is gone too, so the plan is done.
                None => break,
            }
        }
        if plan.is_empty() {
            return;
        }
        tracing::trace!(?plan, free_blocks = self.blocks.num_free(), "engine step");
        let mut order = Vec::with_capacity(plan.len());
        let mut batch = Batch::default();
        for p in &plan {
            let Some(idx) = self.running.iter().position(|s| s.admitted == p.admitted) else {
                continue;
            };
            let s = &self.running[idx];
            let finishes_prompt = p.start + p.len == s.tokens.len();
            let logprobs = s.req.logprobs.is_some();
            let mut tokens = s.tokens[p.start..p.start + p.len].to_vec();
            tokens.extend_from_slice(&p.draft);
            batch.seqs.push(SeqInput {
                state_slot: s.slot as u32,
                tokens,
                start_pos: p.start,
                block_table: s.table.ids.clone(),
                lora: s.req.lora.clone(),
                logits: match (finishes_prompt, p.draft.is_empty()) {
                    _ if s.scoring() => LogitsWanted::All,
                    _ if s.pooling_every_row() => LogitsWanted::HiddenAll,
                    // An encoder's runner pools the whole prompt it is handed.
                    _ if s.req.pooling == Some(Pooling::Sparse) => match p.start {
                        0 => LogitsWanted::Sparse,
                        _ => LogitsWanted::None,
                    },
                    _ if s.req.pooling == Some(Pooling::Cls) => match p.start {
                        0 => LogitsWanted::HiddenFirst,
                        _ => LogitsWanted::None,
                    },
                    (false, _) => LogitsWanted::None,
                    (true, _) if s.req.pooling.is_some() => LogitsWanted::HiddenLast,
                    (true, true) => s.sampler.logits_wanted(logprobs),
                    (true, false) => s.sampler.logits_wanted_with_drafts(logprobs),
                },
            });
            order.push(Scheduled {
                idx,
                start: p.start,
                len: p.len,
                wants: finishes_prompt,
            });
        }
        let decode_only = plan.iter().all(|p| p.len == 1);
        let started = Instant::now();
        let out = self.forward_with_masks(&batch, &order);
        if decode_only && out.is_ok() {
            let rows = batch.seqs.iter().map(|s| s.tokens.len()).sum();
            self.step_cost
                .observe(rows, started.elapsed().as_secs_f64());
        }
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                // The step failed: fail the requests in it, keep serving the others.
                let msg = e.to_string();
                let mut failed: Vec<usize> = order.iter().map(|o| o.idx).collect();
                failed.sort_unstable_by(|a, b| b.cmp(a));
                for idx in failed {
                    let mut seq = self.running.remove(idx);
                    let _ = seq.req.events.send(EngineEvent::Error(msg.clone()));
                    self.blocks.release(&mut seq.table);
                    tracing::warn!(request = %seq.req.id, error = %msg, "request failed");
                }
                self.stats.errors.inc();
                return;
            }
        };
        let mut row = 0;
        let mut hidden_row = 0;
        let mut sparse_row = 0;
        // Who takes tokens from this step: (sequence, its first row, its drafts).
        let mut takers: Vec<(usize, usize, &[u32])> = Vec::new();
        for (input, sch) in batch.seqs.iter().zip(&order) {
            let seq = &mut self.running[sch.idx];
            seq.computed += sch.len;
            if seq.first_token_at.is_none() && sch.len > 0 {
                // Not again for a preempted sequence's recompute: its client has its answer.
                let _ = seq.req.events.send(EngineEvent::PromptProgress {
                    computed: seq.computed.min(seq.prompt_len),
                    cached_tokens: seq.cached_tokens,
                    prompt_len: seq.prompt_len,
                });
            }
            if seq.computed >= seq.prompt_len {
                if let Some(gate) = &seq.prompt_gate {
                    gate.open();
                }
            }
            let rows = input.logit_rows().len();
            if seq.scoring() {
                score_prompt(seq, &out, row, sch.start, rows);
            }
            let hidden = input.hidden_rows();
            if let Some(pooling) = seq.req.pooling {
                let states = (0..hidden.len()).map(|k| out.hidden_row(hidden_row + k));
                seq.pool.take_in(pooling, sch.start + hidden.start, states);
            }
            hidden_row += hidden.len();
            if input.logits == LogitsWanted::Sparse {
                if let Some(pooling) = seq.req.pooling {
                    seq.pool.take_in(pooling, 0, [out.sparse_row(sparse_row)]);
                }
                sparse_row += 1;
            }
            if sch.wants {
                let draft = &input.tokens[sch.len..];
                // The row of its last own token: the last row but the drafts'. A prompt-only
                // request (an embedding) has no rows, and none is read.
                let last = (row + rows).saturating_sub(1 + draft.len());
                takers.push((sch.idx, last, draft));
            }
            row += rows;
        }
        let taken = take_all_tokens(&mut self.running, &takers, &out, &self.stats);
        let mut finished = Vec::new();
        for (&(idx, _, draft), (finish, accepted)) in takers.iter().zip(taken) {
            let seq = &mut self.running[idx];
            // The kept drafts' K/V, computed in this pass, now belong to the sequence.
            seq.computed += accepted;
            seq.draft.update(draft.len(), accepted);
            seq.drafted += draft.len();
            seq.kept += accepted;
            // The server's record is prompt lookup's: a prediction's drafts say nothing of
            // how other requests' would fare.
            if !draft.is_empty() && seq.req.prediction.is_empty() {
                self.acceptance
                    .record(draft.len(), accepted, speculate::SERVER_FADE);
            }
            if !draft.is_empty() {
                self.stats.spec_drafts.inc();
                self.stats.spec_draft_tokens.inc_by(draft.len() as u64);
                self.stats.spec_accepted_tokens.inc_by(accepted as u64);
            }
            if let Some(reason) = finish {
                finished.push((idx, reason));
            }
        }
        for sch in &order {
            let seq = &mut self.running[sch.idx];
            self.blocks
                .register_computed(&mut seq.table, &seq.tokens, seq.computed);
            if self.states.enabled() {
                self.keep_state(sch.idx);
            }
        }
        finished.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        // Free the blocks and update the gauges before telling the clients, so that a client
        // that reads /metrics right after its response sees its request gone.
        let mut done_seqs = Vec::with_capacity(finished.len());
        for (idx, reason) in finished {
            let mut seq = self.running.remove(idx);
            self.end(&mut seq);
            done_seqs.push((seq, reason));
        }
        self.publish();
        let done = Instant::now();
        for (seq, reason) in done_seqs {
            let completion = seq.generated();
            if let Some(first) = seq.first_token_at {
                if completion > 1 {
                    self.stats.tpot.observe(
                        done.duration_since(first).as_secs_f64() / (completion - 1) as f64,
                    );
                }
            }
            self.stats
                .e2e
                .observe(done.duration_since(seq.arrived).as_secs_f64());
            seq.log(reason.as_str(), done);
            let _ = seq.req.events.send(EngineEvent::Finished {
                reason,
                prompt_tokens: seq.prompt_len,
                completion_tokens: completion,
                drafts: Drafts {
                    drafted: seq.drafted,
                    accepted: seq.kept,
                },
                stop_token: seq.stop_token,
            });
        }
    }

    /// How many of the `len` tokens from `start` that `seq` could compute this step it does:
    /// its chunk ends where its recurrent state is to be kept (`keep_state`) if that comes
    /// first.
    fn to_next_kept_state(&self, seq: &Seq, start: usize, len: usize) -> usize {
        let every = self.state_interval;
        let next_interval = (start / every + 1) * every;
        (seq.keep_state_at.iter().copied())
            .chain((next_interval <= seq.prompt_len).then_some(next_interval))
            .filter(|&at| at > start && at < start + len)
            .min()
            .map_or(len, |at| at - start)
    }

    /// After a step: keep the recurrent state of running sequence `idx` in the state cache
    /// if it now stands where one is wanted (`keep_state_at`, or every `state_interval`
    /// tokens of its prompt) at the end of a full block, under that block's prefix.
    fn keep_state(&mut self, idx: usize) {
        let bs = self.blocks.block_size();
        let s = &mut self.running[idx];
        let at = s.computed;
        let wanted = s.keep_state_at.contains(&at)
            || (at.is_multiple_of(self.state_interval) && at <= s.prompt_len);
        s.keep_state_at.retain(|&p| p > at);
        if !wanted || at == 0 || !at.is_multiple_of(bs) {
            return;
        }
        let Some(key) = s.table.uid_of_full_block(at / bs - 1) else {
            return;
        };
        if self.states.holds(key, at) {
            return;
        }
        if let Some(state) = self.runner.snapshot_state(s.slot as u32) {
            if state.pos == at {
                self.states.insert(key, state);
            }
        }
    }

    /// The tokens running sequence `idx` drafts after its last token this step, with `decoding`
    /// sequences decoding and at most `room`: as many as its `DraftPolicy` finds
    /// worth their rows, never past its `max_tokens`, and only into KV blocks that are free now
    /// (a guess preempts no one). A grammar needs no exception: the rows are sampled in order,
    /// each under the mask of the grammar as the tokens kept before it left it, and a rejected
    /// draft never reached the grammar.
    fn draft(&mut self, idx: usize, decoding: usize, room: usize) -> Vec<u32> {
        let later = self.running.len() - idx - 1;
        let s = &mut self.running[idx];
        if self.config.speculative_tokens == 0 || !s.decoding() {
            return Vec::new();
        }
        // Each kept draft is one more token emitted after the step's first.
        let left = s.req.max_tokens.saturating_sub(s.generated() + 1);
        let wanted = s.draft.length(decoding, self.step_cost.base_rows());
        let limit = wanted.min(left).min(room);
        let predicted =
            speculate::propose_from(&s.req.prediction, &s.tokens[s.prompt_len..], limit);
        let draft = match predicted.is_empty() {
            true => speculate::propose(&s.tokens, limit),
            false => predicted,
        };
        // Blocks for the drafts only where every sequence planned after this one still finds
        // a free block for its own next token, so that no one is preempted for a guess.
        let extra = self
            .blocks
            .blocks_for(s.computed + 1 + draft.len())
            .saturating_sub(s.table.len());
        if draft.is_empty()
            || extra + later > self.blocks.num_free()
            || self
                .blocks
                .ensure(&mut s.table, s.computed + 1 + draft.len())
                .is_err()
        {
            return Vec::new();
        }
        draft
    }

    /// Run a step's forward pass; meanwhile the grammar masks its constrained rows will need
    /// are computed on other threads (a mask depends only on the tokens so far), so the
    /// parser's time (~0.5 ms a row for a 150k vocabulary) hides behind the device's instead
    /// of adding up row after row once the logits are back.
    fn forward_with_masks(
        &mut self,
        batch: &Batch,
        order: &[Scheduled],
    ) -> Result<Logits, EngineError> {
        let mut sampled = vec![false; self.running.len()];
        for s in order {
            sampled[s.idx] = s.wants;
        }
        let mut masked: Vec<&mut Sampler> = self
            .running
            .iter_mut()
            .zip(sampled)
            .filter(|(s, wants)| *wants && s.sampler.needs_mask())
            .map(|(s, _)| &mut s.sampler)
            .collect();
        if masked.is_empty() {
            return self.runner.forward(batch);
        }
        let runner = &mut self.runner;
        std::thread::scope(|scope| {
            let masks = std::thread::Builder::new()
                .name("candor-masks".into())
                .spawn_scoped(scope, || {
                    masked.par_iter_mut().for_each(|s| s.prepare_mask());
                });
            // Without a thread the masks are computed when sampling, as they would be anyway.
            let out = runner.forward(batch);
            if let Ok(masks) = masks {
                let _ = masks.join();
            }
            out
        })
    }

    fn publish(&self) {
        self.stats
            .spec_step_cost_rows
            .set(self.step_cost.base_rows() as f64);
        self.stats.record_fallbacks(&self.runner.fallback_ops());
        self.stats.running.set(self.running.len() as i64);
        self.stats
            .state_bytes
            .set(i64::try_from(self.runner.state_bytes()).unwrap_or(i64::MAX));
        self.stats
            .state_cache_bytes
            .set(i64::try_from(self.states.bytes()).unwrap_or(i64::MAX));
        self.stats
            .set_lora_running(self.running.iter().flat_map(|s| s.req.lora.slots()));
        self.stats
            .set_running_seqs(self.running.iter().map(Seq::snapshot));
        let total = self.blocks.num_blocks().max(1);
        self.stats
            .kv_blocks_used
            .set((self.blocks.num_blocks() - self.blocks.num_free()) as i64);
        self.stats
            .kv_usage
            .set((self.blocks.num_blocks() - self.blocks.num_free()) as f64 / total as f64);
    }
}

/// Send the logprobs of the prompt tokens that a scoring sequence's `rows` rows from `row`
/// predict (row j is position `start + j`, which predicts the token after it), each once: a
/// sequence preempted and recomputed does not score again what it sent.
fn score_prompt(seq: &mut Seq, out: &Logits, row: usize, start: usize, rows: usize) {
    let Some(k) = seq.req.prompt_logprobs else {
        return;
    };
    let targets = (start + 1).max(seq.scored)..(start + rows + 1).min(seq.prompt_len);
    if targets.is_empty() {
        return;
    }
    // A 150k-vocabulary row takes ~0.5 ms to normalise and rank: spread a chunk's rows.
    let tokens = &seq.tokens;
    let scored: Vec<TokenLogprobs> = targets
        .clone()
        .into_par_iter()
        .map(|t| {
            let logits = out.row(row + t - 1 - start);
            let (logprob, top) = logprobs(logits, tokens[t], k);
            TokenLogprobs {
                logprob,
                top,
                rank: Some(rank_in(logits, tokens[t])),
            }
        })
        .collect();
    seq.scored = targets.end;
    let _ = seq.req.events.send(EngineEvent::PromptLogprobs(scored));
}

/// 1 + how many tokens of `logits` are likelier than `token`.
fn rank_in(logits: &[f32], token: u32) -> u32 {
    let Some(&own) = logits.get(token as usize) else {
        return logits.len() as u32 + 1;
    };
    1 + logits.iter().filter(|&&l| l > own).count() as u32
}

/// The prompt is in the cache: tell the client and count it (once, not again after a
/// preemption).
fn note_prefilled(seq: &mut Seq, stats: &EngineStats) {
    if seq.first_token_at.is_some() {
        return;
    }
    let now = Instant::now();
    seq.first_token_at = Some(now);
    let _ = seq.req.events.send(EngineEvent::Prefilled {
        cached_tokens: seq.cached_tokens,
    });
    stats.prompt_tokens.inc_by(seq.prompt_len as u64);
    stats
        .ttft
        .observe(now.duration_since(seq.arrived).as_secs_f64());
}

/// `take_tokens` for each of `takers` (a running sequence's index, its first row, its drafts;
/// each sequence once), in their order. Sampling a row from its logits (a 150k vocabulary:
/// penalties, truncation, logprobs, a grammar's mask) costs a fraction of a millisecond, which
/// a batch of sampled requests paid one after another; where two or more sample from logits
/// they run in parallel (device picks take nothing to read).
fn take_all_tokens(
    running: &mut [Seq],
    takers: &[(usize, usize, &[u32])],
    out: &Logits,
    stats: &EngineStats,
) -> Vec<(Option<FinishReason>, usize)> {
    let mut slots: Vec<Option<&mut Seq>> = running.iter_mut().map(Some).collect();
    let mut work: Vec<(usize, &mut Seq, usize, &[u32])> = Vec::with_capacity(takers.len());
    for (k, &(idx, first, draft)) in takers.iter().enumerate() {
        // Each sequence is scheduled once a step; a second entry would take nothing.
        if let Some(seq) = slots.get_mut(idx).and_then(Option::take) {
            work.push((k, seq, first, draft));
        }
    }
    let sampled = work
        .iter()
        .filter(|(_, _, first, _)| out.token(*first).is_none())
        .count();
    let take = |(k, seq, first, draft): (usize, &mut Seq, usize, &[u32])| {
        (k, take_tokens(seq, out, first, draft, stats))
    };
    let taken: Vec<_> = if sampled >= 2 {
        work.into_par_iter().map(take).collect()
    } else {
        work.into_iter().map(take).collect()
    };
    let mut results = vec![(None, 0); takers.len()];
    for (k, result) in taken {
        results[k] = result;
    }
    results
}

/// Sample a sequence's tokens from its rows of a step, starting at `row`: the row of its last
/// token, then, while the samples equal the drafted tokens, one row per draft (all of them
/// kept: the row after the last draft too). Each sampled token is sent to the client. Returns
/// how the sequence finished, if it did, and how many drafted tokens it kept. A request for no
/// tokens (a prompt only scored) ends at its prompt.
fn take_tokens(
    seq: &mut Seq,
    out: &Logits,
    row: usize,
    draft: &[u32],
    stats: &EngineStats,
) -> (Option<FinishReason>, usize) {
    if seq.req.max_tokens == 0 {
        note_prefilled(seq, stats);
        if let Some(pooling) = seq.req.pooling {
            let embedding = seq.pool.embedding(pooling, seq.prompt_len);
            let _ = seq.req.events.send(EngineEvent::Embedding(embedding));
        }
        return (Some(FinishReason::Length), 0);
    }
    for (i, drafted) in (0..).zip(draft.iter().map(Some).chain([None])) {
        let r = row + i;
        if seq.sampler.cuts_a_thought() {
            stats.thoughts_cut.inc();
        }
        let next = seq
            .sampler
            .next_token(out, r, History::new(&seq.tokens, seq.prompt_len));
        let lp = seq.req.logprobs.map(|k| {
            let (logprob, top) = match seq.sampler.drawn_from() {
                Some(drawn) => drawn.logprobs(next, k),
                None => logprobs(out.row(r), next, k),
            };
            TokenLogprobs {
                logprob,
                top,
                rank: None,
            }
        });
        note_prefilled(seq, stats);
        if !seq.req.ignore_eos && seq.req.eos_ids.contains(&next) {
            seq.stop_token = Some(next);
            return (Some(FinishReason::Stop), i);
        }
        seq.tokens.push(next);
        stats.generation_tokens.inc();
        let sent = seq.req.events.send(EngineEvent::Token {
            id: next,
            logprobs: lp,
            // The drafts before row i were kept to get here (as `accepted` counts them).
            drafts: Drafts {
                drafted: seq.drafted + draft.len(),
                accepted: seq.kept + i,
            },
        });
        if sent.is_err() {
            return (None, i); // dropped at the next step
        }
        if seq.generated() >= seq.req.max_tokens {
            return (Some(FinishReason::Length), i);
        }
        if drafted != Some(&next) {
            return (None, i);
        }
    }
    (None, draft.len())
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
