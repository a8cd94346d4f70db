//! The scheduler over scripted runners: what each step batches, how the queue takes groups,
//! and what drafted tokens change (nothing in the answers).
use super::*;
use crate::engine::fake_runner::FakeRunner;
use crate::engine::pooling::Pooling;
use crate::engine::runner::{LogitRow, Logits};
use candor_models::kv_rows::KvRows;
use std::sync::mpsc;
use std::time::Duration;

const VOCAB: usize = 8;

/// The scripted step: rows that want values favour token 1; rows that want the argmax get
/// token 2 picked "on the device", so a test sees which way each token came.
fn scripted_logits(batch: &Batch) -> Logits {
    let mut data = Vec::new();
    let mut kinds = Vec::new();
    let mut hidden = Vec::new();
    let mut sparse = Vec::new();
    for s in &batch.seqs {
        // A hidden state names its token: `[token, 1, 0, 0]`.
        for r in s.hidden_rows() {
            hidden.extend([s.tokens[r] as f32, 1.0, 0.0, 0.0]);
        }
        match s.logits {
            LogitsWanted::None
            | LogitsWanted::HiddenLast
            | LogitsWanted::HiddenAll
            | LogitsWanted::HiddenFirst => {}
            // A sparse vector counts the sequence's tokens.
            LogitsWanted::Sparse => {
                let mut row = [0.0; VOCAB];
                for &t in &s.tokens {
                    row[t as usize % VOCAB] += 1.0;
                }
                sparse.extend(row);
            }
            LogitsWanted::Argmax => kinds.push(LogitRow::Argmax(2)),
            LogitsWanted::ArgmaxAll => kinds.extend(s.tokens.iter().map(|_| LogitRow::Argmax(2))),
            LogitsWanted::Last | LogitsWanted::All => {
                kinds.push(LogitRow::Values(data.len() / VOCAB));
                let mut row = [0.0; VOCAB];
                row[1] = 5.0;
                data.extend(row);
            }
        }
    }
    Logits {
        vocab: VOCAB,
        data,
        kinds,
        hidden,
        hidden_size: 4,
        sparse,
    }
}

struct Harness {
    handle: EngineHandle,
    steps: Arc<Mutex<Vec<(usize, usize)>>>,
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

fn harness(max_num_seqs: usize, max_waiting: usize, hold_first_step: bool) -> Harness {
    harness_with(max_num_seqs, max_waiting, hold_first_step, false)
}

fn harness_with(
    max_num_seqs: usize,
    max_waiting: usize,
    hold_first_step: bool,
    prefix_caching: bool,
) -> Harness {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    // Records the (sequences, tokens) of every step; the first waits for `release`.
    let mut hold = hold_first_step.then_some(release_rx);
    let record = steps.clone();
    let runner = FakeRunner::new(64, move |batch| {
        let tokens = batch.seqs.iter().map(|s| s.tokens.len()).sum();
        record.lock().unwrap().push((batch.seqs.len(), tokens));
        let _ = entered_tx.send(());
        if let Some(release) = hold.take() {
            let _ = release.recv();
        }
        scripted_logits(batch)
    });
    let config = SchedulerConfig {
        max_num_seqs,
        max_num_batched_tokens: 256,
        max_waiting,
        prefix_caching,
        speculative_tokens: 0,
        state_cache_bytes: None,
    };
    let stats = Arc::new(EngineStats::new(64).expect("stats"));
    let (handle, _thread) = spawn(Box::new(runner), config, stats);
    Harness {
        handle,
        steps,
        entered,
        release,
    }
}

/// The prompt of `request`: four tokens.
const PROMPT: [u32; 4] = [2, 3, 4, 5];

fn request(id: &str, max_tokens: usize) -> (EngineRequest, UnboundedReceiverOf) {
    request_with_prompt(id, max_tokens, PROMPT.to_vec())
}

fn request_with_prompt(
    id: &str,
    max_tokens: usize,
    prompt_ids: Vec<u32>,
) -> (EngineRequest, UnboundedReceiverOf) {
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let req = EngineRequest {
        constraint: None,
        thought: None,
        id: id.to_string(),
        prompt_ids,
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        eos_ids: Vec::new(),
        ignore_eos: true,
        logprobs: None,
        logprobs_after_sampling: false,
        prompt_logprobs: None,
        pooling: None,
        prediction: Arc::default(),
        priority: 0,
        lora: LoraMix::BASE,
        cache_prompt: true,
        cache_salt: None,
        events,
    };
    (req, rx)
}

type UnboundedReceiverOf = tokio::sync::mpsc::UnboundedReceiver<EngineEvent>;

/// Wait for a request's end: the tokens it generated.
fn finish(mut rx: UnboundedReceiverOf) -> Vec<u32> {
    let mut tokens = Vec::new();
    loop {
        match rx.blocking_recv() {
            Some(EngineEvent::Token { id, .. }) => tokens.push(id),
            Some(EngineEvent::Finished { .. }) | None => return tokens,
            Some(EngineEvent::Error(e)) => panic!("request failed: {e}"),
            Some(
                EngineEvent::Prefilled { .. }
                | EngineEvent::PromptProgress { .. }
                | EngineEvent::PromptLogprobs(_)
                | EngineEvent::Embedding(_),
            ) => {}
        }
    }
}

/// Submit `n` requests of `prompt` (ids `{prefix}/{i}`, `max_tokens` each) as one group and
/// wait for them: every member must generate `want`.
fn run_group(h: &Harness, prefix: &str, n: usize, max_tokens: usize, prompt: &[u32], want: &[u32]) {
    let (reqs, rxs): (Vec<_>, Vec<_>) = (0..n)
        .map(|i| request_with_prompt(&format!("{prefix}/{i}"), max_tokens, prompt.to_vec()))
        .unzip();
    h.handle.submit_group(reqs).expect("queued");
    for rx in rxs {
        assert_eq!(finish(rx), want);
    }
}

#[test]
fn a_group_is_prefilled_in_one_step() {
    // Repeated: choices submitted one by one would now and then let the engine thread start a
    // step with the first choice alone.
    for _ in 0..20 {
        let h = harness(8, 16, false);
        run_group(&h, "r", 3, 2, &PROMPT, &[2, 2]);
        // Prefill of the three together, then their second token together.
        assert_eq!(*h.steps.lock().unwrap(), vec![(3, 12), (3, 3)]);
        h.handle.shutdown();
    }
}

#[test]
fn a_group_is_queued_whole_or_refused_whole() {
    let h = harness(1, 2, true);
    // The first request runs (its step is held); the queue behind it takes at most two.
    let (first, first_rx) = request("first", 1);
    h.handle.submit(first).expect("queued");
    h.entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the first step starts");
    let (c, rx_c) = request("c", 1);
    h.handle.submit(c).expect("queued");
    let (two, _rx2): (Vec<_>, Vec<_>) = (0..2).map(|i| request(&format!("b/{i}"), 1)).unzip();
    assert!(matches!(
        h.handle.submit_group(two),
        Err(SubmitError::QueueFull(1))
    ));
    let (d, rx_d) = request("d", 1);
    h.handle.submit(d).expect("room for one");
    let (e, _rx_e) = request("e", 1);
    assert!(matches!(h.handle.submit(e), Err(SubmitError::QueueFull(2))));
    h.release.send(()).expect("release");
    for rx in [first_rx, rx_c, rx_d] {
        assert_eq!(finish(rx), vec![2]);
    }
    h.handle.shutdown();
}

#[test]
fn a_group_larger_than_the_queue_waits_for_an_empty_queue() {
    let h = harness(8, 2, false);
    let (reqs, rxs): (Vec<_>, Vec<_>) = (0..5).map(|i| request(&format!("n/{i}"), 1)).unzip();
    h.handle
        .submit_group(reqs)
        .expect("an empty queue takes any group");
    for rx in rxs {
        assert_eq!(finish(rx), vec![2]);
    }
    h.handle.shutdown();
}

#[test]
fn greedy_tokens_are_picked_on_the_backend_unless_logprobs_need_the_values() {
    let h = harness(8, 16, false);
    let (greedy, greedy_rx) = request("greedy", 3);
    let (mut scored, scored_rx) = request("scored", 3);
    scored.logprobs = Some(2);
    let (mut biased, biased_rx) = request("biased", 3);
    biased.sampling.logit_bias = vec![(4, 0.5)];
    h.handle
        .submit_group(vec![greedy, scored, biased])
        .expect("queued");
    // The backend's pick (token 2) for the plain greedy request; the sampler's argmax of the
    // values (token 1) where logprobs or a logit bias need them.
    assert_eq!(finish(greedy_rx), vec![2, 2, 2]);
    assert_eq!(finish(scored_rx), vec![1, 1, 1]);
    assert_eq!(finish(biased_rx), vec![1, 1, 1]);
    h.handle.shutdown();
}

#[test]
fn a_group_sharing_a_long_prompt_computes_it_once() {
    // 40 tokens: two full blocks of 16 to share, and 7 tokens of the third copied from the
    // first member's, which it is still filling; each member computes the last token itself.
    let prompt: Vec<u32> = (0..40).map(|i| 1 + i % 7).collect();
    for _ in 0..5 {
        let h = harness_with(8, 16, false, true);
        run_group(&h, "n", 3, 2, &prompt, &[2, 2]);
        // The first member's prompt alone; then its decode token with the others' last
        // prompt token each; then the others' decode tokens.
        assert_eq!(*h.steps.lock().unwrap(), vec![(1, 40), (3, 3), (2, 2)]);
        h.handle.shutdown();
    }
    // Without prefix caching there is nothing to share: the three prefill together.
    let h = harness_with(8, 16, false, false);
    run_group(&h, "m", 3, 1, &prompt, &[2]);
    assert_eq!(*h.steps.lock().unwrap(), vec![(3, 120)]);
    h.handle.shutdown();
}

/// Independent requests queued together behind one long prompt: the first computes it, the
/// others wait for its blocks and take them from the cache instead of computing the same
/// prompt in the same step. Without prefix caching, or sharing less than `MIN_SHARED_TO_WAIT`
/// tokens, they prefill together.
#[test]
fn requests_behind_one_long_prompt_compute_it_once() {
    let steps_of = |len: usize, caching: bool| {
        let prompt: Vec<u32> = (0..len).map(|i| 1 + i as u32 % 7).collect();
        let h = harness_with(8, 16, true, caching);
        // The engine is held in a first step (another, short prompt) while the three arrive.
        let (blocker, blocker_rx) = request("blocker", 1);
        h.handle.submit(blocker).expect("queued");
        h.entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the first step starts");
        let rxs: Vec<_> = (0..3)
            .map(|i| {
                let (req, rx) = request_with_prompt(&format!("same/{i}"), 1, prompt.clone());
                h.handle.submit(req).expect("queued");
                rx
            })
            .collect();
        h.release.send(()).expect("release");
        assert_eq!(finish(blocker_rx), vec![2]);
        for rx in rxs {
            assert_eq!(finish(rx), vec![2]);
        }
        let steps = h.steps.lock().unwrap().clone();
        h.handle.shutdown();
        steps
    };
    // 80 tokens: the first alone, then the others, each computing only its last prompt token
    // (five full blocks from the cache, the last copied but for that token).
    assert_eq!(steps_of(80, true), vec![(1, 4), (1, 80), (2, 2)]);
    assert_eq!(steps_of(80, false), vec![(1, 4), (3, 240)]);
    // 40 tokens share two blocks: not worth a step's wait.
    assert_eq!(steps_of(40, true), vec![(1, 4), (3, 120)]);
}

/// Requests held for a running prompt they share stay first in the queue, but do not hold up
/// a request behind them that shares nothing: it is admitted beside the prompt they wait for.
#[test]
fn a_request_behind_held_ones_is_not_held_with_them() {
    let shared: Vec<u32> = (0..80).map(|i| 1 + i % 7).collect();
    let other: Vec<u32> = (0..80).map(|i| 20 + i % 5).collect();
    let h = harness_with(8, 16, true, true);
    let (blocker, blocker_rx) = request("blocker", 1);
    h.handle.submit(blocker).expect("queued");
    h.entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the first step starts");
    let mut rxs: Vec<_> = (0..3)
        .map(|i| {
            let (req, rx) = request_with_prompt(&format!("same/{i}"), 1, shared.clone());
            h.handle.submit(req).expect("queued");
            rx
        })
        .collect();
    let (req, rx) = request_with_prompt("other", 1, other);
    h.handle.submit(req).expect("queued");
    rxs.push(rx);
    h.release.send(()).expect("release");
    assert_eq!(finish(blocker_rx), vec![2]);
    for rx in rxs {
        assert_eq!(finish(rx), vec![2]);
    }
    // The first shared prompt and the other one together; then the two held requests, each
    // computing only its last prompt token.
    let steps = h.steps.lock().unwrap().clone();
    assert_eq!(steps, vec![(1, 4), (2, 160), (2, 2)]);
    h.handle.shutdown();
}

#[test]
fn later_members_do_not_wait_on_a_first_member_that_left() {
    // 600 tokens: the first member's prefill takes three steps (256-token budget); its client
    // goes away during the first, so the prompt is never computed for the others to share.
    let prompt: Vec<u32> = (0..600).map(|i| 1 + i % 5).collect();
    let h = harness_with(8, 16, true, true);
    let (reqs, mut rxs): (Vec<_>, Vec<_>) = (0..2)
        .map(|i| request_with_prompt(&format!("g/{i}"), 1, prompt.clone()))
        .unzip();
    h.handle.submit_group(reqs).expect("queued");
    h.entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the first member's prefill starts");
    drop(rxs.remove(0));
    h.release.send(()).expect("release");
    let follower = rxs.remove(0);
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(finish(follower));
    });
    let tokens = done
        .recv_timeout(Duration::from_secs(10))
        .expect("the second member is admitted once the first is gone");
    assert_eq!(tokens, vec![2]);
    // It computed the rest of the prompt itself; the first member's one chunk (16 full
    // blocks) stayed in the prefix cache after it left.
    let steps = h.steps.lock().unwrap().clone();
    assert_eq!(steps[0], (1, 256));
    assert_eq!(steps.iter().skip(1).map(|s| s.1).sum::<usize>(), 600 - 256);
    h.handle.shutdown();
}

/// An engine over `runner` (64 blocks): 4 sequences, prefix caching, no drafts.
fn small_engine(runner: FakeRunner) -> (EngineHandle, Arc<EngineStats>) {
    let config = SchedulerConfig {
        max_num_seqs: 4,
        max_num_batched_tokens: 256,
        max_waiting: 4,
        prefix_caching: true,
        speculative_tokens: 0,
        state_cache_bytes: None,
    };
    let stats = Arc::new(EngineStats::new(64).expect("stats"));
    let (handle, _thread) = spawn(Box::new(runner), config, stats.clone());
    (handle, stats)
}

/// A conversation's second turn (the first's prompt and answer, then three new tokens) starts
/// where the first turn's K/V end: its last, partly filled block is copied from the cache.
/// When the copy fails, the turn computes that block again from its start.
#[test]
fn a_conversations_next_turn_computes_only_its_new_tokens() {
    for copies_work in [true, false] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let runner = FakeRunner::new(64, move |batch| {
            for s in &batch.seqs {
                record.lock().unwrap().push((s.start_pos, s.tokens.len()));
            }
            scripted_logits(batch)
        });
        let runner = if copies_work {
            runner
        } else {
            runner.failing_copies()
        };
        let copies = runner.copies();
        let (handle, _stats) = small_engine(runner);
        // Turn one: 20 prompt tokens and 5 answered (the last never computed): 24 tokens of
        // K/V, a full block and 8 tokens of the next.
        let first: Vec<u32> = (0..20).map(|i| 3 + i % 5).collect();
        let (req, rx) = request_with_prompt("turn/1", 5, first.clone());
        handle.submit(req).expect("queued");
        let answer = finish(rx);
        let mut second = first;
        second.extend(&answer);
        second.extend([4, 5, 6]);
        seen.lock().unwrap().clear();
        let (req, rx) = request_with_prompt("turn/2", 1, second);
        handle.submit(req).expect("queued");
        finish(rx);
        let starts = seen.lock().unwrap().clone();
        let logged = copies.lock().unwrap().clone();
        if copies_work {
            assert_eq!(starts, vec![(24, 4)]);
            assert_eq!(logged.len(), 1, "{logged:?}");
        } else {
            assert_eq!(starts, vec![(16, 12)]);
        }
        handle.shutdown();
    }
}

/// A step that panics (a bug somewhere below the engine) fails the requests it ran, with an
/// error each; the engine serves the next request as before, from an empty cache.
#[test]
fn a_panicking_step_fails_its_requests_and_the_engine_serves_on() {
    let runner = FakeRunner::new(64, |batch| {
        if batch.seqs.iter().any(|s| s.tokens.contains(&7)) {
            panic!("token 7 breaks this model");
        }
        scripted_logits(batch)
    });
    let (handle, stats) = small_engine(runner);
    let (warm, rx) = request_with_prompt("warm", 2, (2..40).map(|i| 2 + i % 5).collect());
    handle.submit(warm).expect("queued");
    assert_eq!(finish(rx), vec![2, 2]);
    let (bad, mut rx) = request_with_prompt("bad", 3, vec![2, 7, 3]);
    handle.submit(bad).expect("queued");
    let mut failed = None;
    while let Some(event) = rx.blocking_recv() {
        if let EngineEvent::Error(e) = event {
            failed = Some(e);
        }
    }
    let failed = failed.expect("the request was told it failed");
    assert!(failed.contains("token 7 breaks this model"), "{failed}");
    let (good, rx) = request("good", 3);
    handle.submit(good).expect("queued after the panic");
    assert_eq!(finish(rx), vec![2, 2, 2]);
    assert_eq!(stats.errors.get(), 1);
    handle.shutdown();
}

/// A model whose next-token logits depend only on a token and its position: it counts 1..5 in
/// a cycle (so prompt lookup drafts the cycle), except after every 11th position, where it
/// favours token 7 (so some drafts are wrong). Rows that ask for the argmax get this row's.
fn counting_logits(pos: usize, token: u32) -> [f32; VOCAB] {
    let favoured = if pos % 11 == 10 { 7 } else { token % 5 + 1 };
    let mut row = [0.0; VOCAB];
    for (i, x) in row.iter_mut().enumerate() {
        *x = ((pos * 7 + token as usize * 3 + i * 5) % 4) as f32 * 0.5;
    }
    row[favoured as usize] += 3.0;
    row
}

/// A step of the counting model.
fn counting_step(batch: &Batch) -> Logits {
    let mut data = Vec::new();
    let mut kinds = Vec::new();
    for s in &batch.seqs {
        let argmax = s.argmax_only();
        for j in s.logit_rows() {
            let row = counting_logits(s.start_pos + j, s.tokens[j]);
            if argmax {
                kinds.push(LogitRow::Argmax(super::super::sampler::argmax(&row)));
            } else {
                kinds.push(LogitRow::Values(data.len() / VOCAB));
                data.extend(row);
            }
        }
    }
    Logits {
        vocab: VOCAB,
        data,
        kinds,
        ..Default::default()
    }
}

/// An engine over the counting model with 64 KV blocks drafting up to `speculative_tokens`: its
/// handle, its step count and its stats.
fn counting_engine(
    speculative_tokens: usize,
) -> (EngineHandle, Arc<Mutex<usize>>, Arc<EngineStats>) {
    counting_engine_with(speculative_tokens, 64)
}

fn counting_engine_with(
    speculative_tokens: usize,
    num_blocks: usize,
) -> (EngineHandle, Arc<Mutex<usize>>, Arc<EngineStats>) {
    let steps = Arc::new(Mutex::new(0));
    let count = steps.clone();
    let runner = FakeRunner::new(num_blocks, move |batch| {
        *count.lock().unwrap() += 1;
        counting_step(batch)
    });
    let config = SchedulerConfig {
        max_num_seqs: 8,
        max_num_batched_tokens: 256,
        max_waiting: 16,
        prefix_caching: true,
        speculative_tokens,
        state_cache_bytes: None,
    };
    let stats = Arc::new(EngineStats::new(num_blocks).expect("stats"));
    let (handle, _thread) = spawn(Box::new(runner), config, stats.clone());
    (handle, steps, stats)
}

/// Every event of a request until it ends: tokens with their logprobs, and the finish.
fn events(mut rx: UnboundedReceiverOf) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(e) = rx.blocking_recv() {
        match e {
            EngineEvent::Token { id, logprobs, .. } => {
                out.push(format!("{id} {:?}", logprobs.map(|l| (l.logprob, l.top))))
            }
            EngineEvent::Finished {
                reason,
                completion_tokens,
                ..
            } => {
                out.push(format!("{} {completion_tokens}", reason.as_str()));
                break;
            }
            EngineEvent::Error(e) => panic!("request failed: {e}"),
            EngineEvent::Prefilled { .. } | EngineEvent::PromptProgress { .. } => {}
            EngineEvent::Embedding(v) => out.push(format!("embedding {v:?}")),
            EngineEvent::PromptLogprobs(scored) => out.extend(
                scored
                    .into_iter()
                    .map(|l| format!("prompt {:?}", (l.logprob, l.top))),
            ),
        }
    }
    out
}

/// Requests of every kind the drafts must not change: greedy (picked on the device), greedy
/// with logprobs, seeded sampling, a stop token, a `max_tokens` inside a draft.
fn speculation_requests() -> Vec<(EngineRequest, UnboundedReceiverOf)> {
    let prompt: Vec<u32> = vec![1, 2, 3, 4, 5, 1, 2];
    let mut out = Vec::new();
    let (r, rx) = request_with_prompt("greedy", 40, prompt.clone());
    out.push((r, rx));
    let (mut r, rx) = request_with_prompt("logprobs", 40, prompt.clone());
    r.logprobs = Some(2);
    out.push((r, rx));
    for seed in 0..3 {
        let (mut r, rx) = request_with_prompt(&format!("seeded/{seed}"), 40, prompt.clone());
        r.sampling.temperature = 0.8;
        r.sampling.seed = Some(seed);
        r.logprobs = Some(1);
        out.push((r, rx));
    }
    let (mut r, rx) = request_with_prompt("stop", 40, prompt.clone());
    (r.ignore_eos, r.eos_ids) = (false, vec![7]);
    out.push((r, rx));
    let (r, rx) = request_with_prompt("short", 6, prompt);
    out.push((r, rx));
    out
}

/// Each token tells the request's drafts so far (llama-server's `draft_n`,
/// `draft_n_accepted`): never fewer than before, and at the end what the engine counted.
#[test]
fn tokens_tell_the_drafts_so_far() {
    let (handle, _steps, stats) = counting_engine(4);
    let (req, mut rx) = request_with_prompt("drafting", 40, vec![1, 2, 3, 4, 5, 1, 2]);
    handle.submit(req).expect("queued");
    let mut told = Vec::new();
    while let Some(event) = rx.blocking_recv() {
        if let EngineEvent::Token { drafts, .. } = event {
            told.push(drafts);
        }
    }
    assert_eq!(told.len(), 40);
    for pair in told.windows(2) {
        assert!(pair[0].drafted <= pair[1].drafted && pair[0].accepted <= pair[1].accepted);
    }
    let last = told[told.len() - 1];
    assert!(
        last.accepted > 0 && last.accepted < last.drafted,
        "{last:?}"
    );
    assert_eq!(last.drafted as u64, stats.spec_draft_tokens.get());
    assert_eq!(last.accepted as u64, stats.spec_accepted_tokens.get());
    handle.shutdown();
}

/// A stop token drawn after drafts kept in its step: the finish tells them (its last token
/// could not, the drafts before the stop being kept only once it was drawn), and the token.
#[test]
fn the_finish_tells_the_drafts_kept_before_a_stop_token() {
    let (handle, _steps, stats) = counting_engine(4);
    // The counting model writes 3, 4, 5, 1 after this prompt, then its token 7 (the end):
    // prompt lookup drafts 4, 5, 1, 2 after the 3, of which the first three are kept.
    let (mut req, mut rx) = request_with_prompt("stop", 40, vec![1, 2, 3, 4, 5, 1, 2]);
    (req.ignore_eos, req.eos_ids) = (false, vec![7]);
    handle.submit(req).expect("queued");
    let mut last_token = Drafts::default();
    let mut finished = None;
    while let Some(event) = rx.blocking_recv() {
        match event {
            EngineEvent::Token { drafts, .. } => last_token = drafts,
            EngineEvent::Finished {
                reason,
                drafts,
                stop_token,
                ..
            } => {
                assert_eq!((reason, stop_token), (FinishReason::Stop, Some(7)));
                finished = Some(drafts);
                break;
            }
            _ => {}
        }
    }
    let finished = finished.expect("finished");
    assert_eq!(finished.drafted as u64, stats.spec_draft_tokens.get());
    assert_eq!(finished.accepted as u64, stats.spec_accepted_tokens.get());
    assert!(
        finished.accepted > last_token.accepted,
        "{finished:?} after {last_token:?}"
    );
    handle.shutdown();
}

#[test]
fn drafted_tokens_change_no_answer_and_save_steps() {
    let run = |speculative_tokens: usize, together: bool| {
        let (handle, steps, stats) = counting_engine(speculative_tokens);
        let (reqs, rxs): (Vec<_>, Vec<_>) = speculation_requests().into_iter().unzip();
        let answers: Vec<Vec<String>> = if together {
            for r in reqs {
                handle.submit(r).expect("queued");
            }
            rxs.into_iter().map(events).collect()
        } else {
            reqs.into_iter()
                .zip(rxs)
                .map(|(r, rx)| {
                    handle.submit(r).expect("queued");
                    events(rx)
                })
                .collect()
        };
        handle.shutdown();
        let steps = *steps.lock().unwrap();
        (answers, steps, stats)
    };
    for together in [false, true] {
        let (plain, plain_steps, plain_stats) = run(0, together);
        let (drafted, drafted_steps, stats) = run(4, together);
        assert_eq!(drafted, plain, "together: {together}");
        assert_eq!(plain_stats.spec_draft_tokens.get(), 0);
        let (tried, kept) = (
            stats.spec_draft_tokens.get(),
            stats.spec_accepted_tokens.get(),
        );
        assert!(
            kept > 0 && kept < tried,
            "kept {kept} of {tried} drafted tokens"
        );
        // One request at a time, each step is that request's alone (together, the slowest
        // request and the moments of arrival set the count).
        assert!(
            together || drafted_steps < plain_steps,
            "{drafted_steps} steps with drafts, {plain_steps} without"
        );
        assert_eq!(
            stats.generation_tokens.get(),
            plain_stats.generation_tokens.get()
        );
    }
    // The answers are what they should be: the stop token ends one, `max_tokens` another.
    let (answers, _, _) = run(4, false);
    assert_eq!(answers[5].last().map(String::as_str), Some("stop 4"));
    assert_eq!(answers[6].last().map(String::as_str), Some("length 6"));
}

#[test]
fn drafts_survive_a_full_cache() {
    // Six requests of 7 + 40 tokens need 18 blocks at their ends; the cache has 10, so the
    // newest are preempted and recomputed, drafts or not. Greedy answers stay the same.
    let run = |speculative_tokens: usize| {
        let (handle, _, stats) = counting_engine_with(speculative_tokens, 10);
        let (reqs, rxs): (Vec<_>, Vec<_>) = (0..6u32)
            .map(|i| request_with_prompt(&format!("r/{i}"), 40, vec![1, 2, 3, 4, 5, 1 + i % 5, 2]))
            .unzip();
        for r in reqs {
            handle.submit(r).expect("queued");
        }
        let answers: Vec<Vec<String>> = rxs.into_iter().map(events).collect();
        handle.shutdown();
        (answers, stats)
    };
    let (plain, plain_stats) = run(0);
    let (drafted, stats) = run(4);
    assert_eq!(drafted, plain);
    assert!(plain_stats.preemptions.get() > 0, "the cache is not full");
    assert!(stats.preemptions.get() > 0);
    assert!(stats.spec_accepted_tokens.get() > 0);
    assert!(plain
        .iter()
        .all(|a| a.last().map(String::as_str) == Some("length 40")));
}

/// What scoring `prompt` under the counting model must send: one entry per prompt token after
/// the first, as `events` prints it.
fn counting_scores(prompt: &[u32], k: usize) -> Vec<String> {
    (1..prompt.len())
        .map(|t| {
            let row = counting_logits(t - 1, prompt[t - 1]);
            format!("prompt {:?}", logprobs(&row, prompt[t], k))
        })
        .collect()
}

#[test]
fn a_scored_prompt_sends_every_token_once_in_order() {
    // 300 tokens: longer than a scoring chunk (110 rows of the spec's 150k vocabulary), and
    // already in the prefix cache, which scoring must not take (its blocks have no logits).
    let prompt: Vec<u32> = (0..300).map(|i| 1 + (i * 3 + i / 7) % 7).collect();
    let (handle, steps, _) = counting_engine(4);
    let (warm, rx) = request_with_prompt("warm", 3, prompt.clone());
    handle.submit(warm).expect("queued");
    let plain = events(rx);
    let before = *steps.lock().unwrap();
    let (mut only, only_rx) = request_with_prompt("only-scored", 0, prompt.clone());
    only.prompt_logprobs = Some(2);
    handle.submit(only).expect("queued");
    let mut want = counting_scores(&prompt, 2);
    want.push("length 0".into());
    assert_eq!(events(only_rx), want);
    assert_eq!(*steps.lock().unwrap() - before, 3, "chunks of 110, 110, 80");
    // Scored and answered: the answer is the one without scoring.
    let (mut both, both_rx) = request_with_prompt("scored", 3, prompt.clone());
    both.prompt_logprobs = Some(0);
    handle.submit(both).expect("queued");
    let mut want = counting_scores(&prompt, 0);
    want.extend(plain);
    assert_eq!(events(both_rx), want);
    handle.shutdown();
}

#[test]
fn scored_prompts_survive_a_full_cache() {
    // As `drafts_survive_a_full_cache`: preempted sequences are recomputed, and a recomputed
    // sequence does not score its prompt again. Every member of a group scores its own.
    let (handle, _, stats) = counting_engine_with(4, 10);
    let prompts: Vec<Vec<u32>> = (0..6u32)
        .map(|i| vec![1, 2, 3, 4, 5, 1 + i % 5, 2])
        .collect();
    let (reqs, rxs): (Vec<_>, Vec<_>) = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (mut r, rx) = request_with_prompt(&format!("r/{i}"), 40, p.clone());
            r.prompt_logprobs = Some(1);
            (r, rx)
        })
        .unzip();
    handle.submit_group(reqs).expect("queued");
    for (prompt, rx) in prompts.iter().zip(rxs) {
        let got = events(rx);
        let scores = counting_scores(prompt, 1);
        assert_eq!(got[..scores.len()], scores[..]);
        assert!(!got[scores.len()..].iter().any(|e| e.starts_with("prompt")));
        assert_eq!(got.last().map(String::as_str), Some("length 40"));
    }
    assert!(stats.preemptions.get() > 0, "the cache is not full");
    handle.shutdown();
}

#[test]
fn an_embedding_pools_every_prompt_position_once_or_the_last() {
    // 600 tokens: three prefill chunks of the harness's 256-token budget, and already in the
    // prefix cache, which a mean must not take (a cached block has no hidden states).
    let h = harness_with(4, 16, false, true);
    let prompt: Vec<u32> = (0..600).map(|i| 1 + (i % 7) as u32).collect();
    let (warm, rx) = request_with_prompt("warm", 2, prompt.clone());
    h.handle.submit(warm).expect("queued");
    finish(rx);
    let embed = |id: &str, pooling| {
        let (mut r, rx) = request_with_prompt(id, 0, prompt.clone());
        r.pooling = Some(pooling);
        h.handle.submit(r).expect("queued");
        events(rx)
    };
    let sum: f32 = prompt.iter().map(|&t| t as f32).sum();
    let mean = vec![sum / 600.0, 1.0, 0.0, 0.0];
    assert_eq!(
        embed("mean", Pooling::Mean),
        [format!("embedding {mean:?}"), "length 0".into()]
    );
    let last = vec![prompt[599] as f32, 1.0, 0.0, 0.0];
    assert_eq!(
        embed("last", Pooling::Last),
        [format!("embedding {last:?}"), "length 0".into()]
    );
    // The first row is in the cache's first block: computed again, not taken from it.
    let first = vec![prompt[0] as f32, 1.0, 0.0, 0.0];
    assert_eq!(
        embed("cls", Pooling::Cls),
        [format!("embedding {first:?}"), "length 0".into()]
    );
    let (mut both, _rx) = request_with_prompt("both", 3, prompt.clone());
    both.pooling = Some(Pooling::Last);
    assert!(matches!(
        h.handle.submit(both),
        Err(SubmitError::Invalid(_))
    ));
    h.handle.shutdown();
}

/// An engine over a scripted runner that reads whole prompts (an encoder's), four sequences
/// and 256 tokens a step, recording what `seen` makes of each step's batch.
fn whole_prompt_engine<T: Send + 'static>(
    seen: impl Fn(&Batch) -> T + Send + 'static,
) -> (EngineHandle, Arc<Mutex<Vec<T>>>) {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let record = steps.clone();
    let runner = FakeRunner::new(64, move |batch| {
        record.lock().unwrap().push(seen(batch));
        scripted_logits(batch)
    })
    .reading_whole_prompts();
    let config = SchedulerConfig {
        max_num_seqs: 4,
        max_num_batched_tokens: 256,
        max_waiting: 16,
        prefix_caching: false,
        speculative_tokens: 0,
        state_cache_bytes: None,
    };
    let stats = Arc::new(EngineStats::new(64).expect("stats"));
    let (handle, _thread) = spawn(Box::new(runner), config, stats);
    (handle, steps)
}

#[test]
fn sparse_vectors_and_hidden_states_of_one_step_reach_their_own_requests() {
    let (handle, steps) = whole_prompt_engine(|batch| {
        (batch.seqs.iter())
            .map(|s| s.logits)
            .collect::<Vec<LogitsWanted>>()
    });
    let asks = [
        (vec![1, 3, 3, 5], Pooling::Sparse),
        (vec![6, 2], Pooling::Cls),
        (vec![2, 2, 2], Pooling::Sparse),
    ];
    let (reqs, rxs): (Vec<_>, Vec<_>) = (asks.iter().enumerate())
        .map(|(i, (prompt, pooling))| {
            let (mut r, rx) = request_with_prompt(&format!("s{i}"), 0, prompt.clone());
            r.pooling = Some(*pooling);
            (r, rx)
        })
        .unzip();
    handle.submit_group(reqs).expect("queued");
    let want = [
        vec![0.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0],
        vec![6.0, 1.0, 0.0, 0.0],
        vec![0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ];
    for (rx, want) in rxs.into_iter().zip(want) {
        assert_eq!(
            events(rx),
            [format!("embedding {want:?}"), "length 0".into()]
        );
    }
    let steps = steps.lock().unwrap().clone();
    use LogitsWanted::{HiddenFirst, Sparse};
    assert_eq!(steps, [vec![Sparse, HiddenFirst, Sparse]]);
    handle.shutdown();
}

#[test]
fn a_runner_of_whole_prompts_gets_each_prompt_in_one_step() {
    // Prompts of 200, 150 and 300 tokens under a 256-token budget: the first runs alone
    // (150 more would cut the second), the second alone, and the third, over the budget,
    // alone and whole rather than in chunks.
    let (handle, steps) = whole_prompt_engine(|batch| {
        (batch.seqs.iter())
            .map(|s| (s.start_pos, s.tokens.len()))
            .collect::<Vec<_>>()
    });
    let reqs: Vec<(EngineRequest, UnboundedReceiverOf)> = [200usize, 150, 300]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let (mut r, rx) = request_with_prompt(&format!("e{i}"), 0, vec![3; n]);
            r.pooling = Some(Pooling::Cls);
            (r, rx)
        })
        .collect();
    let (reqs, rxs): (Vec<_>, Vec<_>) = reqs.into_iter().unzip();
    handle.submit_group(reqs).expect("queued");
    for rx in rxs {
        let got = events(rx);
        assert_eq!(got.last().map(String::as_str), Some("length 0"), "{got:?}");
    }
    let steps = steps.lock().unwrap().clone();
    assert_eq!(steps, [vec![(0, 200)], vec![(0, 150)], vec![(0, 300)]]);
    handle.shutdown();
}

#[test]
fn better_priorities_are_admitted_first_and_take_a_worse_ones_place() {
    // One sequence at a time; each step notes the first token of the sequences it starts.
    let starts = Arc::new(Mutex::new(Vec::new()));
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let mut hold = Some(release_rx);
    let record = starts.clone();
    let runner = FakeRunner::new(64, move |batch| {
        for s in batch.seqs.iter().filter(|s| s.start_pos == 0) {
            record.lock().unwrap().push(s.tokens[0]);
        }
        let _ = entered_tx.send(());
        if let Some(release) = hold.take() {
            let _ = release.recv();
        }
        scripted_logits(batch)
    });
    let config = SchedulerConfig {
        max_num_seqs: 1,
        max_num_batched_tokens: 256,
        max_waiting: 16,
        prefix_caching: false,
        speculative_tokens: 0,
        state_cache_bytes: None,
    };
    let stats = Arc::new(EngineStats::new(64).expect("stats"));
    let (handle, _thread) = spawn(Box::new(runner), config, stats.clone());
    let request = |id: &str, first: u32, priority: i64| {
        let (mut r, rx) = request_with_prompt(id, 3, vec![first; 3]);
        r.priority = priority;
        (r, rx)
    };
    let (x, x_rx) = request("x", 1, 0);
    handle.submit(x).expect("queued");
    entered
        .recv_timeout(Duration::from_secs(5))
        .expect("x runs");
    // While x runs: a worse, an equal and a better one arrive, in that order.
    let mut rxs = vec![x_rx];
    for (id, first, priority) in [("a", 2, 5), ("b", 3, 0), ("c", 4, -3)] {
        let (r, rx) = request(id, first, priority);
        handle.submit(r).expect("queued");
        rxs.push(rx);
    }
    release.send(()).unwrap();
    for rx in rxs {
        assert_eq!(finish(rx).len(), 3);
    }
    // c takes x's place at once; x, preempted, goes on before b (admitted first, same
    // priority); a, the worst, comes last.
    assert_eq!(*starts.lock().unwrap(), [1, 4, 1, 3, 2]);
    assert!(stats.render().contains("candor:num_preemptions_total 1"));
    handle.shutdown();
}

fn no_updates() -> LoraAdapter {
    LoraAdapter {
        path: "test".into(),
        pairs: Default::default(),
        joined: Default::default(),
        qk_interleaved: false,
    }
}

#[test]
fn an_adapter_is_unloaded_only_once_its_requests_are_done() {
    // The first step (the request with the adapter) is held while the unload is asked for.
    let h = harness(4, 8, true);
    let slot = h
        .handle
        .load_lora(no_updates())
        .expect("asked")
        .blocking_recv()
        .expect("answered")
        .expect("loaded");
    assert_eq!(slot, 0);
    let (mut tuned, tuned_rx) = request("tuned", 3);
    tuned.lora = LoraMix::one(slot);
    h.handle.submit(tuned).expect("queued");
    h.entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the first step starts");
    // Its adapter is in use, as `/metrics` names it (`lora_requests_info`).
    let in_use = h.handle.stats.lora_in_use();
    assert_eq!((in_use.running, in_use.waiting), (vec![slot], vec![]));
    let mut unloaded = h.handle.unload_lora(slot).expect("asked");
    // From now on the adapter is refused to new requests, and asked twice it is not there.
    let (mut late, _late_rx) = request("late", 1);
    late.lora = LoraMix::one(slot);
    assert!(matches!(
        h.handle.submit(late),
        Err(SubmitError::Invalid(_))
    ));
    assert!(h.handle.unload_lora(slot).is_err());
    // The running request is not cut short: the slot empties after its last step (the fake
    // runner fails a step naming an empty slot).
    assert!(unloaded.try_recv().is_err(), "unloaded while in use");
    h.release.send(()).expect("release");
    assert_eq!(finish(tuned_rx), vec![2, 2, 2]);
    assert_eq!(unloaded.blocking_recv().expect("answered"), Ok(slot));
    assert_eq!(h.handle.stats.lora_in_use(), Default::default());
    // A new adapter takes a new slot; the base model serves throughout.
    let next = h
        .handle
        .load_lora(no_updates())
        .expect("asked")
        .blocking_recv();
    assert_eq!(next.expect("answered"), Ok(1));
    let (plain, plain_rx) = request("plain", 2);
    h.handle.submit(plain).expect("queued");
    assert_eq!(finish(plain_rx), vec![2, 2]);
    h.handle.shutdown();
}

#[test]
fn a_prompt_token_ranks_after_the_likelier_ones_and_ties_share_a_rank() {
    let logits = [0.5, 2.0, 0.5, -1.0, 2.0];
    assert_eq!(rank_in(&logits, 1), 1);
    assert_eq!(rank_in(&logits, 4), 1);
    assert_eq!(rank_in(&logits, 0), 3);
    assert_eq!(rank_in(&logits, 3), 5);
    assert_eq!(rank_in(&logits, 9), 6, "outside the row: past every token");
}

/// What a slot action did (it must succeed).
fn slot_action(handle: &EngineHandle, action: SlotAction) -> Result<SlotOutcome, String> {
    handle
        .slot_action(action)
        .expect("queued")
        .blocking_recv()
        .expect("answered")
}

/// A slot's last prompt saved in one engine and restored in another is taken from the second
/// one's prefix cache, rows and all: a conversation goes on from it computing only its new
/// tokens. Erasing it drops it from the cache.
#[test]
fn a_saved_prompt_restored_in_another_engine_is_taken_from_its_cache() {
    let prompt: Vec<u32> = (0..40).map(|i| 1 + i % 7).collect();
    let (a, _) = small_engine(FakeRunner::new(64, scripted_logits));
    let (req, rx) = request_with_prompt("a", 3, prompt.clone());
    a.submit(req).expect("queued");
    let answer = finish(rx);
    let Ok(SlotOutcome::Saved(saved)) = slot_action(&a, SlotAction::Save(0)) else {
        panic!("slot 0 saved");
    };
    // The prompt and the answer but its last token, whose K/V were never computed.
    let mut want = prompt.clone();
    want.extend(&answer[..2]);
    assert_eq!(saved.tokens, want);
    assert_eq!(saved.rows.rows(), 42);
    let e = slot_action(&a, SlotAction::Save(1)).expect_err("slot 1 never ran");
    assert!(e.contains("slot 1"), "{e}");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (b, _) = small_engine(FakeRunner::new(64, move |batch| {
        for s in &batch.seqs {
            record.lock().unwrap().push(s.start_pos);
        }
        scripted_logits(batch)
    }));
    assert_eq!(
        slot_action(&b, SlotAction::Restore(saved.clone())),
        Ok(SlotOutcome::Restored(42))
    );
    let mut next = saved.tokens.clone();
    next.extend([5, 6]);
    let (req, rx) = request_with_prompt("b", 1, next.clone());
    b.submit(req).expect("queued");
    finish(rx);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![42],
        "only the new tokens computed"
    );
    let Ok(SlotOutcome::Saved(again)) = slot_action(&b, SlotAction::Save(0)) else {
        panic!("slot 0 saved");
    };
    assert_eq!(again.tokens, next);
    let restored = |rows: &KvRows| rows.layers[0].0[..42 * 4].to_vec();
    assert_eq!(restored(&again.rows), restored(&saved.rows));

    let Ok(SlotOutcome::Erased(erased)) = slot_action(&b, SlotAction::Erase(0)) else {
        panic!("slot 0 erased");
    };
    assert!(erased >= 32, "{erased}");
    assert!(slot_action(&b, SlotAction::Save(0)).is_err());
    seen.lock().unwrap().clear();
    let (req, rx) = request_with_prompt("c", 1, next);
    b.submit(req).expect("queued");
    finish(rx);
    assert_eq!(*seen.lock().unwrap(), vec![0], "nothing cached any more");
    // Rows of another cache, or fewer than the tokens, are refused.
    let mut short = saved.clone();
    short.tokens.push(1);
    assert!(slot_action(&b, SlotAction::Restore(short)).is_err());
    a.shutdown();
    b.shutdown();
}

/// A model whose sequences carry a recurrent state is served without drafts (a rejected one
/// would stay in the state), runs no more sequences together than their states fit in half
/// the host's available memory, and keeps the prefix cache where the state cache has room in
/// the rest of that half; other models are left as configured.
#[test]
fn recurrent_models_draft_nothing_and_cache_prefixes_in_the_memory_left() {
    let config = SchedulerConfig {
        max_num_seqs: 4,
        max_num_batched_tokens: 64,
        max_waiting: 8,
        prefix_caching: true,
        speculative_tokens: 4,
        state_cache_bytes: None,
    };
    let spec = |model_type: &str| {
        candor_models::arch::spec_from_hf(&serde_json::json!({
            "model_type": model_type, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "intermediate_size": 128, "vocab_size": 512, "linear_conv_kernel_dim": 4,
            "linear_key_head_dim": 16, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
            "linear_value_head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
            "full_attention_interval": 2
        }))
        .unwrap()
    };
    let served = for_model(config.clone(), &spec("qwen3_next"));
    assert_eq!(served.speculative_tokens, 0);
    let served = for_model(config.clone(), &spec("qwen2_moe"));
    assert!(served.prefix_caching);
    assert_eq!(served.speculative_tokens, 4);
    // The states of --max-num-seqs sequences bounded by half the host's available memory.
    let next = spec("qwen3_next");
    let per_sequence = next.sequence_state_bytes() as u64;
    let fitted =
        |available: u64| for_model_within(config.clone(), &next, Some(available)).max_num_seqs;
    assert_eq!(fitted(2 * per_sequence * 100), config.max_num_seqs);
    assert_eq!(fitted(2 * per_sequence * 3 + 1), 3);
    assert_eq!(fitted(per_sequence), 1);
    // Unknown available memory (no /proc/meminfo): as configured; a model without states is
    // never bounded so.
    assert_eq!(
        for_model_within(config.clone(), &next, None).max_num_seqs,
        config.max_num_seqs
    );
    let moe = spec("qwen2_moe");
    assert_eq!(
        for_model_within(config.clone(), &moe, Some(1)).max_num_seqs,
        config.max_num_seqs
    );
    // Prefix caching stays on where the state cache has room: what is left of that half of
    // memory, at most what was asked for; off with none.
    let cached = |asked: Option<u64>, available: Option<u64>, caching: bool| {
        let config = SchedulerConfig {
            state_cache_bytes: asked,
            prefix_caching: caching,
            ..config.clone()
        };
        let served = for_model_within(config, &next, available);
        (served.prefix_caching, served.state_cache_bytes)
    };
    let running = per_sequence * config.max_num_seqs as u64;
    let available = 2 * (running + 10 * per_sequence);
    assert_eq!(
        cached(None, Some(available), true),
        (true, Some(10 * per_sequence))
    );
    assert_eq!(
        cached(Some(per_sequence), Some(available), true),
        (true, Some(per_sequence))
    );
    assert_eq!(cached(Some(0), Some(available), true), (false, Some(0)));
    assert_eq!(cached(None, Some(available), false), (false, Some(0)));
    assert_eq!(cached(None, Some(2 * running), true), (false, Some(0)));
    assert_eq!(
        cached(None, None, true),
        (true, Some(DEFAULT_STATE_CACHE_BYTES))
    );
    // A model without states is left as configured.
    let served = for_model_within(config.clone(), &moe, Some(1));
    assert_eq!(served.state_cache_bytes, config.state_cache_bytes);
}
