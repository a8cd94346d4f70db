//! The perplexity of a text as a running OpenAI-compatible server computes it (candor, vLLM):
//! the text tokenized by the server's `/tokenize`, each chunk scored by `/v1/completions` with
//! `echo` and `logprobs`, llama-perplexity's chunking as in `candor perplexity`. So a remote
//! server's accuracy can be set beside a local run's on the same text.
use crate::engine::perplexity::{check_chunk_size, chunk, chunks_to_score, Perplexity};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Instant;

/// Where and what to score.
#[derive(Debug, Clone)]
pub struct RemoteScoring {
    /// Base URL (`http://host:port`).
    pub url: String,
    pub api_key: Option<String>,
    /// The `model` field of requests (None: the server's own).
    pub model: Option<String>,
    pub ctx: usize,
    pub max_chunks: Option<usize>,
    /// Chunks in flight at once.
    pub concurrency: usize,
}

/// A remote perplexity and the text's token count.
pub struct RemotePerplexity {
    pub result: Perplexity,
    pub text_tokens: usize,
}

async fn post(
    client: &reqwest::Client,
    s: &RemoteScoring,
    path: &str,
    mut body: Value,
) -> Result<Value, String> {
    if let Some(m) = &s.model {
        body["model"] = json!(m);
    }
    let mut req = client
        .post(format!("{}{path}", s.url.trim_end_matches('/')))
        .json(&body);
    if let Some(k) = &s.api_key {
        req = req.bearer_auth(k);
    }
    let failed = |e: reqwest::Error| format!("POST {path}: {}", super::request::chain(&e));
    let resp = req.send().await.map_err(failed)?;
    let status = resp.status();
    let text = resp.text().await.map_err(failed)?;
    if !status.is_success() {
        let excerpt: String = text.chars().take(300).collect();
        return Err(format!("POST {path}: HTTP {status}: {excerpt}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("POST {path}: not JSON ({e})"))
}

fn token_ids(v: &Value) -> Result<Vec<u64>, String> {
    v["tokens"]
        .as_array()
        .and_then(|a| a.iter().map(Value::as_u64).collect())
        .ok_or_else(|| "POST /tokenize: no `tokens` list of ids in the answer".to_string())
}

/// The scored positions of one chunk's echoed logprobs: the text token's logprob at positions
/// `ctx/2 + 1 .. ctx` (predicted by rows `ctx/2 .. ctx-1`, as `candor perplexity` scores), and
/// whether it was the position's most likely token (its logprob the largest of the top ones).
pub fn chunk_scores(answer: &Value, ctx: usize) -> Result<Vec<(f32, bool)>, String> {
    let lp = &answer["choices"][0]["logprobs"];
    let (Some(logprobs), Some(tops)) = (
        lp["token_logprobs"].as_array(),
        lp["top_logprobs"].as_array(),
    ) else {
        return Err(
            "the server's answer has no echoed logprobs (does it support `echo` with `logprobs`?)"
                .into(),
        );
    };
    if logprobs.len() < ctx || tops.len() < ctx {
        return Err(format!(
            "the server echoed {} prompt logprobs for a chunk of {ctx} tokens",
            logprobs.len()
        ));
    }
    (ctx / 2 + 1..ctx)
        .map(|t| {
            let logprob = logprobs[t]
                .as_f64()
                .ok_or_else(|| format!("no logprob at prompt position {t}"))?;
            let best = tops[t]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(Value::as_f64)
                        .fold(f64::MIN, f64::max)
                })
                .unwrap_or(f64::MIN);
            Ok((logprob as f32, logprob >= best))
        })
        .collect()
}

/// Score the text on the server; `on_chunk` sees the running result after each chunk.
pub async fn remote_perplexity(
    s: &RemoteScoring,
    text: &str,
    mut on_chunk: impl FnMut(&Perplexity),
) -> Result<RemotePerplexity, String> {
    // Before any request: a chunk size that scores nothing fails at once.
    check_chunk_size(s.ctx)?;
    let client = super::http_client(reqwest::Client::builder)?;
    let tokenize = |prompt: &str, special: bool| {
        let body = json!({"prompt": prompt, "add_special_tokens": special});
        let client = &client;
        async move { token_ids(&post(client, s, "/tokenize", body).await?) }
    };
    let with = tokenize(text, true).await?;
    // The token the server's tokenizer puts first, which starts every chunk (as locally):
    // asked of a short probe, so the text is sent once.
    let probe = "The";
    let adds_first = tokenize(probe, true).await?.len() > tokenize(probe, false).await?.len();
    let bos = adds_first.then(|| with.first().copied()).flatten();
    let chunks = chunks_to_score(with.len(), s.ctx, s.max_chunks)?;
    let started = Instant::now();
    let requests = (0..chunks).map(|c| {
        let chunk = chunk(&with, c, s.ctx, bos);
        // One generated token: servers that refuse `max_tokens` 0 still echo the prompt.
        let body = json!({"prompt": chunk, "max_tokens": 1, "echo": true, "logprobs": 1, "temperature": 0});
        let client = &client;
        async move {
            let answer = post(client, s, "/v1/completions", body).await?;
            chunk_scores(&answer, s.ctx)
        }
    });
    let mut answers = futures::stream::iter(requests).buffered(s.concurrency.max(1));
    let mut total = Perplexity::default();
    while let Some(scores) = answers.next().await {
        for (logprob, top1) in scores? {
            total.record(logprob, top1);
        }
        total.chunks += 1;
        total.seconds = started.elapsed().as_secs_f64();
        on_chunk(&total);
    }
    Ok(RemotePerplexity {
        result: total,
        text_tokens: with.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_come_from_the_second_half_of_the_echo() {
        // A chunk of 6: positions 4 and 5 are scored (predicted by rows 3 and 4).
        let answer = json!({"choices": [{"logprobs": {
            "token_logprobs": [null, -1.0, -2.0, -3.0, -0.5, -4.0, -0.1],
            "top_logprobs": [null, {"a": -1.0}, {"b": -1.5}, {"c": -1.0}, {"d": -0.5}, {"e": -0.2}, {"f": -0.1}]
        }}]});
        assert_eq!(
            chunk_scores(&answer, 6).unwrap(),
            vec![(-0.5, true), (-4.0, false)]
        );
        let short = json!({"choices": [{"logprobs": {"token_logprobs": [null, -1.0], "top_logprobs": [null, {}]}}]});
        assert!(chunk_scores(&short, 6).unwrap_err().contains("echoed 2"));
        assert!(chunk_scores(&json!({"choices": [{"text": "x"}]}), 6)
            .unwrap_err()
            .contains("no echoed logprobs"));
    }
}
