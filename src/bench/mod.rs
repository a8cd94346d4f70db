//! `candor bench`: llama-bench's method on candor's own runner. Prefill (`pp N`) and decode
//! (`tg N`, optionally B sequences at once) are timed over R repetitions after a warm-up, and
//! reported as mean ± sd tok/s with every raw repetition kept.
pub mod claims;
pub mod experts;
pub mod hardware;
pub mod kv_traffic;
pub mod lora_label;
pub mod measure;
pub mod projection;
pub mod report;
pub mod roofline;
pub mod specs;
pub mod stats;

use crate::engine::op_profile::{OpProfiler, OpTime};
use crate::engine::{EngineError, Runner};
use candor_models::lora::LoraMix;
use measure::{time_decode, time_prefill, TokenSource};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    pub n_prompt: Vec<usize>,
    pub n_gen: Vec<usize>,
    pub repetitions: usize,
    pub depth: usize,
    pub batch: Vec<usize>,
    /// Largest prefill chunk per forward pass.
    pub ubatch: usize,
    pub seed: u64,
    /// `--lora` / `--lora-scaled`: the LoRA adapters every sequence runs with, as
    /// `lora_label` writes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<String>,
    /// Those adapters by the runner's slots, at their scales.
    #[serde(skip)]
    pub lora_mix: LoraMix,
}

impl BenchConfig {
    /// KV tokens the runner must hold for every test.
    pub fn kv_tokens(&self) -> usize {
        let pp = self
            .n_prompt
            .iter()
            .map(|p| self.depth + p)
            .max()
            .unwrap_or(0);
        let tg = self.n_gen.iter().max().copied().unwrap_or(0) + self.depth;
        let b = self.batch.iter().max().copied().unwrap_or(1).max(1);
        // Whole blocks per sequence, plus a spare block each for rounding.
        pp.max(b * (tg + 16)).max(16)
    }

    /// The tests in run order.
    pub fn tests(&self) -> Vec<Test> {
        let mut t: Vec<Test> = self
            .n_prompt
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| Test::Prefill { n })
            .collect();
        for &n in self.n_gen.iter().filter(|&&n| n > 0) {
            for &b in &self.batch {
                t.push(Test::Decode { n, batch: b.max(1) });
            }
        }
        t
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Prefill { n: usize },
    Decode { n: usize, batch: usize },
}

impl Test {
    /// llama-bench's names (`pp512`, `tg128`), with `@bB` for batched decode.
    pub fn name(&self) -> String {
        match *self {
            Test::Prefill { n } => format!("pp{n}"),
            Test::Decode { n, batch: 1 } => format!("tg{n}"),
            Test::Decode { n, batch } => format!("tg{n}@b{batch}"),
        }
    }
    /// Tokens one repetition processes.
    pub fn tokens(&self) -> usize {
        match *self {
            Test::Prefill { n } => n,
            Test::Decode { n, batch } => n * batch,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub test: String,
    pub kind: &'static str,
    pub n_tokens: usize,
    pub batch: usize,
    pub depth: usize,
    /// Seconds of each repetition.
    pub seconds: Vec<f64>,
    /// Tokens per second of each repetition.
    pub tok_s: Vec<f64>,
    pub tok_s_mean: f64,
    pub tok_s_sd: f64,
}

fn time(
    runner: &mut dyn Runner,
    test: Test,
    c: &BenchConfig,
    src: &mut TokenSource,
) -> Result<f64, EngineError> {
    let d = match test {
        Test::Prefill { n } => time_prefill(runner, n, c.depth, c.ubatch, &c.lora_mix, src)?,
        Test::Decode { n, batch } => {
            time_decode(runner, n, c.depth, batch, c.ubatch, &c.lora_mix, src)?
        }
    };
    Ok(d.as_secs_f64())
}

/// Run every test: a small warm-up pass, then `repetitions` timed ones. `progress` is told
/// of each repetition (test, index) as it ends.
pub fn run(
    runner: &mut dyn Runner,
    c: &BenchConfig,
    mut progress: impl FnMut(&Test, usize),
) -> Result<Vec<TestResult>, EngineError> {
    let mut src = TokenSource::new(c.seed, runner.spec().vocab_size);
    let mut out = Vec::new();
    for test in c.tests() {
        let warm = match test {
            Test::Prefill { n } => Test::Prefill { n: n.min(32) },
            Test::Decode { batch, .. } => Test::Decode { n: 2, batch },
        };
        time(runner, warm, c, &mut src)?;
        let mut seconds = Vec::with_capacity(c.repetitions);
        for r in 0..c.repetitions.max(1) {
            seconds.push(time(runner, test, c, &mut src)?);
            progress(&test, r);
        }
        let tok_s: Vec<f64> = seconds
            .iter()
            .map(|s| test.tokens() as f64 / s.max(1e-12))
            .collect();
        let (tok_s_mean, tok_s_sd) = stats::mean_sd(&tok_s);
        let (kind, batch) = match test {
            Test::Prefill { .. } => ("prefill", 1),
            Test::Decode { batch, .. } => ("decode", batch),
        };
        out.push(TestResult {
            test: test.name(),
            kind,
            n_tokens: test.tokens(),
            batch,
            depth: c.depth,
            seconds,
            tok_s,
            tok_s_mean,
            tok_s_sd,
        });
    }
    Ok(out)
}

/// One untimed pass of a test with every op synchronised and timed (`--profile-ops`), as
/// written to the result document and read back by `candor report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestProfile {
    pub test: String,
    /// The whole pass, slower than a timed repetition by the per-op synchronisation.
    pub wall_seconds: f64,
    /// The pass minus its ops: the host's batch building, sampling and bookkeeping.
    #[serde(default)]
    pub host_seconds: f64,
    /// Slowest first.
    #[serde(default)]
    pub ops: Vec<OpTime>,
}

/// After the timed runs: one pass of each test with `profiler` switched on.
pub fn profile(
    runner: &mut dyn Runner,
    c: &BenchConfig,
    profiler: &OpProfiler,
) -> Result<Vec<TestProfile>, EngineError> {
    let mut src = TokenSource::new(c.seed ^ 0x9e37_79b9, runner.spec().vocab_size);
    let mut out = Vec::new();
    for test in c.tests() {
        profiler.take();
        profiler.set_enabled(true);
        let wall = time(runner, test, c, &mut src);
        profiler.set_enabled(false);
        let wall_seconds = wall?;
        let ops = profiler.take();
        let in_ops: f64 = ops.iter().map(|o| o.seconds).sum();
        out.push(TestProfile {
            test: test.name(),
            wall_seconds,
            host_seconds: (wall_seconds - in_ops).max(0.0),
            ops,
        });
    }
    Ok(out)
}

/// The profile of one test as a table: op, calls, ms, share of the pass.
pub fn profile_table(p: &TestProfile) -> String {
    let mut s = format!(
        "op profile of {} (one pass, each op synchronised: {:.1} ms)\n| op | calls | ms | % |\n| --- | ---: | ---: | ---: |\n",
        p.test,
        p.wall_seconds * 1e3
    );
    let pct = |x: f64| 100.0 * x / p.wall_seconds.max(1e-12);
    for o in &p.ops {
        s += &format!(
            "| {} | {} | {:.2} | {:.1} |\n",
            o.op,
            o.calls,
            o.seconds * 1e3,
            pct(o.seconds)
        );
    }
    s += &format!(
        "| (host) | | {:.2} | {:.1} |\n",
        p.host_seconds * 1e3,
        pct(p.host_seconds)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_are_named_like_llama_bench_and_size_the_cache() {
        let c = BenchConfig {
            n_prompt: vec![512],
            n_gen: vec![128],
            repetitions: 5,
            depth: 0,
            batch: vec![1, 16],
            ubatch: 512,
            seed: 1,
            lora: None,
            lora_mix: LoraMix::BASE,
        };
        let names: Vec<String> = c.tests().iter().map(Test::name).collect();
        assert_eq!(names, ["pp512", "tg128", "tg128@b16"]);
        assert!(c.kv_tokens() >= 16 * 128);
        assert_eq!(Test::Decode { n: 128, batch: 16 }.tokens(), 2048);
        let none = BenchConfig {
            n_prompt: vec![0],
            n_gen: vec![0],
            ..c
        };
        assert!(none.tests().is_empty());
    }
}
