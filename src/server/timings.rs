//! llama-server's `timings` object, which its clients (its web UI, proxies that report
//! tokens/s) read from every answer: how long the prompt took and how many of its tokens were
//! computed (the rest came from the prefix cache), how long the answer has taken since its
//! first token and how many tokens it holds.
use crate::engine::scheduler::Drafts;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// When a request started and when its first token came.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
    first_token: Option<Instant>,
}

/// What the timings count: the prompt's tokens, those served from the prefix cache, the
/// tokens generated so far and the speculative drafts (all choices').
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub prompt: usize,
    pub cached: usize,
    pub predicted: usize,
    pub drafts: Drafts,
}

impl Clock {
    pub fn start() -> Self {
        Clock {
            started: Instant::now(),
            first_token: None,
        }
    }

    /// A token came (the first one ends the prompt's time).
    pub fn token(&mut self) {
        self.first_token.get_or_insert_with(Instant::now);
    }

    pub fn first_token(&self) -> Option<Instant> {
        self.first_token
    }

    /// llama-server's `prompt_progress`: `processed` of the prompt's `total` tokens computed
    /// (`cache` of them from the prefix cache), `time_ms` since the request came.
    pub fn progress(&self, processed: usize, cache: usize, total: usize) -> Value {
        let time_ms = self.started.elapsed().as_secs_f64() * 1e3;
        json!({"total": total, "cache": cache, "processed": processed, "time_ms": time_ms})
    }

    /// The timings now, in llama-server's fields.
    pub fn timings(&self, counted: Counted) -> Value {
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let prompt_ms = ms(first.duration_since(self.started));
        let predicted_ms = ms(now.duration_since(first));
        let prompt_n = counted.prompt - counted.cached.min(counted.prompt);
        let per_token = |ms: f64, n: usize| if n > 0 { ms / n as f64 } else { 0.0 };
        let per_second = |ms: f64, n: usize| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
        let mut timings = json!({
            "cache_n": counted.cached,
            "prompt_n": prompt_n,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": per_token(prompt_ms, prompt_n),
            "prompt_per_second": per_second(prompt_ms, prompt_n),
            "predicted_n": counted.predicted,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": per_token(predicted_ms, counted.predicted),
            "predicted_per_second": per_second(predicted_ms, counted.predicted),
        });
        // As llama-server: only where the answer was drafted at all.
        if counted.drafts.drafted > 0 {
            timings["draft_n"] = json!(counted.drafts.drafted);
            timings["draft_n_accepted"] = json!(counted.drafts.accepted);
        }
        timings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_counts_what_the_cache_did_not_serve() {
        let mut clock = Clock::start();
        std::thread::sleep(Duration::from_millis(5));
        clock.token();
        std::thread::sleep(Duration::from_millis(5));
        let t = clock.timings(Counted {
            prompt: 10,
            cached: 4,
            predicted: 3,
            drafts: Drafts::default(),
        });
        assert!(t.get("draft_n").is_none(), "nothing drafted: {t}");
        assert_eq!(
            (t["prompt_n"].as_u64(), t["cache_n"].as_u64()),
            (Some(6), Some(4))
        );
        let prompt_ms = t["prompt_ms"].as_f64().unwrap();
        assert!(prompt_ms >= 5.0, "{t}");
        let per_token = t["prompt_per_token_ms"].as_f64().unwrap();
        assert!((per_token - prompt_ms / 6.0).abs() < 1e-9, "{t}");
        let predicted_ms = t["predicted_ms"].as_f64().unwrap();
        let per_second = t["predicted_per_second"].as_f64().unwrap();
        assert!((per_second - 3e3 / predicted_ms).abs() < 1e-6, "{t}");
        let drafted = clock.timings(Counted {
            drafts: Drafts {
                drafted: 7,
                accepted: 3,
            },
            ..Counted::default()
        });
        assert_eq!(
            (
                drafted["draft_n"].as_u64(),
                drafted["draft_n_accepted"].as_u64()
            ),
            (Some(7), Some(3))
        );
        // Before any token: nothing predicted, no division by zero.
        let t = Clock::start().timings(Counted::default());
        assert_eq!(t["predicted_per_second"], 0.0);
        assert_eq!(t["prompt_per_token_ms"], 0.0);
    }
}
