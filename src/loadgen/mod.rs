//! A load generator for any OpenAI-compatible server (candor, llama-server, vLLM): at each
//! concurrency level, that many clients send streaming completions back to back; the level
//! reports TTFT, TPOT and inter-token latency percentiles, aggregate output tok/s and errors.
mod request;
pub(crate) use request::chain;
pub mod score;
mod server_drafts;
pub mod server_models;
pub mod summary;

pub use request::{timed_completion, RequestSpec, RequestTiming};
pub use server_drafts::{draft_counters, parse_draft_counters, DraftCounts};
pub use server_models::{parse_model_ids, served_model_ids};
pub use summary::{LevelReport, Percentiles};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `--serve` URL must be a base URL with its scheme (requests append `/v1/...`).
pub fn check_base_url(url: &str) -> Result<(), String> {
    match url.starts_with("http://") || url.starts_with("https://") {
        true => Ok(()),
        false => Err(format!(
            "--serve `{url}`: give a base URL such as http://127.0.0.1:8080"
        )),
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub request: RequestSpec,
    pub concurrency: Vec<usize>,
    /// Requests per level, per client (each client sends this many, one after another).
    pub requests_per_client: usize,
    /// Give up on a request after this long.
    pub timeout: Duration,
}

/// An HTTP client as `builder` makes it, speaking HTTP/1.1 only: one connection per client
/// as the benchmarks of vLLM and llama.cpp open them, so a server offering HTTP/2 (candor over
/// TLS) is not measured through one multiplexed connection where the others get one each.
/// reqwest refuses to build one over a system certificate store whose every certificate is
/// unreadable (and `Client::new` panics there): Mozilla's roots alone then, rather than no
/// client.
pub fn http_client(
    builder: impl Fn() -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, String> {
    let builder = || builder().http1_only();
    builder()
        .build()
        .or_else(|_| builder().tls_built_in_native_certs(false).build())
        .map_err(|e| format!("cannot set up the HTTP client: {}", request::chain(&e)))
}

/// Run every level in turn; `on_done` sees each finished level.
pub async fn run(config: &LoadConfig, mut on_done: impl FnMut(&LevelReport)) -> Vec<LevelReport> {
    let idle_per_host = config.concurrency.iter().copied().max().unwrap_or(1);
    let client = match http_client(|| {
        reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_max_idle_per_host(idle_per_host)
    }) {
        Ok(client) => client,
        // Every request of every level fails the same way, and says so.
        Err(e) => {
            return config
                .concurrency
                .iter()
                .map(|&c| {
                    let total = c * config.requests_per_client.max(1);
                    summarize(c, vec![Err(e.clone()); total], Duration::ZERO)
                })
                .collect()
        }
    };
    let mut reports = Vec::new();
    // Unique prompts are unique across runs too: a second run against the same server finds
    // none of the first's in its cache.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    for &c in &config.concurrency {
        let report = run_level(&client, config, c.max(1), run).await;
        on_done(&report);
        reports.push(report);
    }
    reports
}

async fn run_level(
    client: &reqwest::Client,
    config: &LoadConfig,
    concurrency: usize,
    run: u64,
) -> LevelReport {
    let total = concurrency * config.requests_per_client.max(1);
    let (url, key) = (&config.request.url, config.request.api_key.as_deref());
    let drafts_before = draft_counters(client, url, key).await;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let client = client.clone();
        let spec = config.request.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let prompt = spec.tagged_prompt(&format!("{n}-{concurrency}-{run:x}"));
                results.push(timed_completion(&client, &spec, &prompt).await);
            }
            results
        }));
    }
    let mut results = Vec::with_capacity(total);
    for t in tasks {
        match t.await {
            Ok(r) => results.extend(r),
            Err(e) => results.push(Err(format!("client task failed: {e}"))),
        }
    }
    let wall = start.elapsed();
    let mut report = summarize(concurrency, results, wall);
    let drafts_after = draft_counters(client, url, key).await;
    report.drafts = drafts_after.zip(drafts_before).map(|(a, b)| a.since(b));
    report
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Fold the request results of one level into its report.
pub fn summarize(
    concurrency: usize,
    results: Vec<Result<RequestTiming, String>>,
    wall: Duration,
) -> LevelReport {
    let requests = results.len();
    let mut errors = Vec::new();
    let (mut ttft, mut tpot, mut itl) = (Vec::new(), Vec::new(), Vec::new());
    let mut output_tokens = 0;
    for r in results {
        match r {
            Ok(t) => {
                output_tokens += t.output_tokens;
                ttft.push(ms(t.ttft));
                if t.output_tokens > 1 {
                    tpot.push(ms(t.total - t.ttft) / (t.output_tokens - 1) as f64);
                }
                itl.extend(t.gaps.into_iter().map(ms));
            }
            Err(e) => errors.push(e),
        }
    }
    let secs = wall.as_secs_f64().max(1e-9);
    LevelReport {
        concurrency,
        requests,
        errors: errors.len(),
        error_samples: errors.into_iter().take(3).collect(),
        duration_s: secs,
        output_tokens,
        output_tok_s: output_tokens as f64 / secs,
        requests_per_s: (requests as f64) / secs,
        ttft_ms: Percentiles::of(ttft),
        tpot_ms: Percentiles::of(tpot),
        itl_ms: Percentiles::of(itl),
        drafts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_sums_tokens_over_wall_time_and_counts_errors() {
        let ok = |ttft_ms: u64, total_ms: u64, n: usize| {
            Ok(RequestTiming {
                ttft: Duration::from_millis(ttft_ms),
                total: Duration::from_millis(total_ms),
                gaps: vec![Duration::from_millis(10); n.saturating_sub(1)],
                output_tokens: n,
            })
        };
        let r = summarize(
            2,
            vec![ok(100, 730, 64), ok(300, 930, 64), Err("HTTP 500".into())],
            Duration::from_secs(2),
        );
        assert_eq!((r.requests, r.errors, r.output_tokens), (3, 1, 128));
        assert_eq!(r.output_tok_s, 64.0);
        assert_eq!(r.ttft_ms.p50, 200.0);
        assert!((r.tpot_ms.mean - 10.0).abs() < 1e-9);
        assert_eq!(r.itl_ms.p99, 10.0);
        assert_eq!(r.error_samples, vec!["HTTP 500".to_string()]);
    }
}
