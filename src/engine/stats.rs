//! Engine metrics, exported as Prometheus text at /metrics. Names follow vLLM's where the
//! concept matches (`candor:` instead of `vllm:`).
use candor_models::lora::LoraMix;
use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct EngineStats {
    pub registry: Registry,
    pub running: IntGauge,
    pub waiting: IntGauge,
    pub kv_usage: Gauge,
    pub kv_blocks_used: IntGauge,
    pub state_bytes: IntGauge,
    pub state_cache_bytes: IntGauge,
    pub kv_blocks_total: IntGauge,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    pub preemptions: IntCounter,
    pub cancelled: IntCounter,
    pub errors: IntCounter,
    pub requests_rejected: IntCounter,
    pub prefix_cache_queries: IntCounter,
    pub prefix_cache_hits: IntCounter,
    pub spec_drafts: IntCounter,
    /// Thoughts cut at their budget: the close forced (`engine::thought`).
    pub thoughts_cut: IntCounter,
    pub spec_draft_tokens: IntCounter,
    pub spec_accepted_tokens: IntCounter,
    pub spec_step_cost_rows: Gauge,
    pub ttft: Histogram,
    pub tpot: Histogram,
    pub e2e: Histogram,
    /// Ops a device plugin did not run, executed on the CPU instead, by op.
    pub backend_fallback_ops: IntCounterVec,
    /// Totals last reported by the runner, so the counters advance by the difference.
    fallback_seen: Mutex<HashMap<&'static str, u64>>,
    /// The LoRA adapters running and waiting requests use (the server names them).
    lora_in_use: Mutex<LoraInUse>,
    /// The running sequences as of the last step (llama-server's `/slots`).
    running_seqs: Mutex<Vec<RunningSeq>>,
}

/// A running sequence as the last step left it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningSeq {
    /// Its place among the running sequences: the lowest free when it was admitted, the same
    /// until it ends.
    pub slot: usize,
    /// The request's id (`cmpl-…`, `/i` for choice i).
    pub request_id: String,
    /// Its admission number: unique, increasing.
    pub admitted: u64,
    pub prompt_tokens: usize,
    /// Tokens (prompt and answer) whose K/V are in the cache.
    pub computed: usize,
    pub generated: usize,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: Option<u64>,
    /// The LoRA adapters it runs with, at their scales.
    pub lora: LoraMix,
    /// Whether it started from the prefix cache (`EngineRequest::cache_prompt`).
    pub cache_prompt: bool,
}

/// The engine slots of the LoRA adapters requests use, each listed once, in slot order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoraInUse {
    pub running: Vec<u32>,
    pub waiting: Vec<u32>,
}

/// Each slot once, in order.
fn distinct(slots: impl Iterator<Item = u32>) -> Vec<u32> {
    let set: std::collections::BTreeSet<u32> = slots.collect();
    set.into_iter().collect()
}

const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
];
const TPOT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5,
];

impl EngineStats {
    pub fn new(kv_blocks_total: usize) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let int_gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let histogram =
            |name: &str, help: &str, buckets: &[f64]| -> prometheus::Result<Histogram> {
                let h =
                    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let kv_usage = Gauge::with_opts(Opts::new(
            "candor:kv_cache_usage_perc",
            "Fraction of KV cache blocks in use (0-1).",
        ))?;
        registry.register(Box::new(kv_usage.clone()))?;
        let spec_step_cost_rows = Gauge::with_opts(Opts::new(
            "candor:spec_decode_step_cost_rows",
            "A decode step's fixed cost in rows, fitted from timed steps: how cheap a drafted \
             token's row is on this device and model.",
        ))?;
        registry.register(Box::new(spec_step_cost_rows.clone()))?;
        let backend_fallback_ops = IntCounterVec::new(
            Opts::new(
                "candor:backend_fallback_ops_total",
                "Ops the device plugin does not support, run on the CPU backend with copies.",
            ),
            &["op"],
        )?;
        registry.register(Box::new(backend_fallback_ops.clone()))?;
        let stats = EngineStats {
            running: int_gauge(
                "candor:num_requests_running",
                "Requests in the running batch.",
            )?,
            waiting: int_gauge(
                "candor:num_requests_waiting",
                "Requests waiting to be scheduled.",
            )?,
            kv_usage,
            kv_blocks_used: int_gauge("candor:kv_cache_blocks_used", "KV cache blocks in use.")?,
            state_bytes: int_gauge(
                "candor:recurrent_state_bytes",
                "Host memory held by the running sequences' recurrent states (a gated DeltaNet \
                 or Mamba model's; 0 for other models).",
            )?,
            state_cache_bytes: int_gauge(
                "candor:recurrent_state_cache_bytes",
                "Host memory held by the recurrent states kept for cached prefixes (a gated \
                 DeltaNet or Mamba model's: where a request can resume one; --cache-ram).",
            )?,
            kv_blocks_total: int_gauge("candor:kv_cache_blocks_total", "KV cache blocks in all.")?,
            prompt_tokens: counter("candor:prompt_tokens_total", "Prompt tokens processed.")?,
            generation_tokens: counter("candor:generation_tokens_total", "Tokens generated.")?,
            preemptions: counter(
                "candor:num_preemptions_total",
                "Sequences preempted for recompute.",
            )?,
            cancelled: counter(
                "candor:request_cancelled_total",
                "Requests whose client went away.",
            )?,
            errors: counter("candor:request_errors_total", "Engine steps that failed.")?,
            requests_rejected: counter(
                "candor:requests_rejected_total",
                "Requests refused because the queue was full.",
            )?,
            prefix_cache_queries: counter(
                "candor:prefix_cache_queries_total",
                "Prompt tokens looked up in the prefix cache.",
            )?,
            prefix_cache_hits: counter(
                "candor:prefix_cache_hits_total",
                "Prompt tokens whose K/V came from the prefix cache.",
            )?,
            thoughts_cut: counter(
                "candor:reasoning_budget_exhausted_total",
                "Thoughts of thinking models cut at their token budget (the close forced).",
            )?,
            spec_drafts: counter(
                "candor:spec_decode_num_drafts_total",
                "Steps in which a sequence checked drafted tokens (speculative decoding).",
            )?,
            spec_draft_tokens: counter(
                "candor:spec_decode_num_draft_tokens_total",
                "Tokens drafted by prompt lookup and checked.",
            )?,
            spec_accepted_tokens: counter(
                "candor:spec_decode_num_accepted_tokens_total",
                "Drafted tokens kept (each one a forward pass saved).",
            )?,
            spec_step_cost_rows,
            ttft: histogram(
                "candor:time_to_first_token_seconds",
                "Time from arrival to the first token.",
                LATENCY_BUCKETS,
            )?,
            tpot: histogram(
                "candor:time_per_output_token_seconds",
                "Mean time per output token after the first.",
                TPOT_BUCKETS,
            )?,
            e2e: histogram(
                "candor:e2e_request_latency_seconds",
                "Time from arrival to the last token.",
                LATENCY_BUCKETS,
            )?,
            backend_fallback_ops,
            fallback_seen: Mutex::new(HashMap::new()),
            lora_in_use: Mutex::default(),
            running_seqs: Mutex::default(),
            registry,
        };
        stats.kv_blocks_total.set(kv_blocks_total as i64);
        Ok(stats)
    }

    /// Bring the fallback counters up to the runner's totals (op name, count since start).
    pub fn record_fallbacks(&self, totals: &[(&'static str, u64)]) {
        let Ok(mut seen) = self.fallback_seen.lock() else {
            return;
        };
        for &(op, total) in totals {
            let last = seen.entry(op).or_insert(0);
            if total > *last {
                self.backend_fallback_ops
                    .with_label_values(&[op])
                    .inc_by(total - *last);
                *last = total;
            }
        }
    }

    /// The adapters of the running requests.
    pub fn set_lora_running(&self, slots: impl Iterator<Item = u32>) {
        if let Ok(mut in_use) = self.lora_in_use.lock() {
            in_use.running = distinct(slots);
        }
    }

    /// The adapters of the waiting requests.
    pub fn set_lora_waiting(&self, slots: impl Iterator<Item = u32>) {
        if let Ok(mut in_use) = self.lora_in_use.lock() {
            in_use.waiting = distinct(slots);
        }
    }

    /// The running sequences now, in slot order.
    pub fn set_running_seqs(&self, seqs: impl Iterator<Item = RunningSeq>) {
        if let Ok(mut running) = self.running_seqs.lock() {
            let mut now: Vec<RunningSeq> = seqs.collect();
            now.sort_by_key(|s| s.slot);
            *running = now;
        }
    }

    pub fn running_seqs(&self) -> Vec<RunningSeq> {
        self.running_seqs
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn lora_in_use(&self) -> LoraInUse {
        self.lora_in_use
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = prometheus::TextEncoder::new();
        if prometheus::Encoder::encode(&enc, &self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_counters_follow_the_runner_totals() {
        let stats = EngineStats::new(4).unwrap();
        stats.record_fallbacks(&[("gather_rows", 2)]);
        stats.record_fallbacks(&[("gather_rows", 5), ("linear", 1)]);
        stats.record_fallbacks(&[("gather_rows", 5)]);
        let text = stats.render();
        assert!(text.contains("candor:backend_fallback_ops_total{op=\"gather_rows\"} 5"));
        assert!(text.contains("candor:backend_fallback_ops_total{op=\"linear\"} 1"));
    }
}
