//! One streaming completion request against an OpenAI-compatible server, timed chunk by chunk.
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Timings of one request.
#[derive(Debug, Clone)]
pub struct RequestTiming {
    pub ttft: Duration,
    pub total: Duration,
    /// Arrival gaps between consecutive content chunks.
    pub gaps: Vec<Duration>,
    /// Output tokens: from `usage` when the server reports it, else the content chunks.
    pub output_tokens: usize,
}

#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub url: String,
    pub model: Option<String>,
    pub prompt: String,
    pub max_tokens: usize,
    pub api_key: Option<String>,
    /// Each request's prompt starts with a tag of its own (`tagged_prompt`).
    pub unique_prompts: bool,
}

impl RequestSpec {
    /// The prompt of request `tag` names (with `unique_prompts`): the tag first (its own
    /// number leading), so the prompt differs from every other within its first tokens and a
    /// prefix cache serves a token or two of it at most; the spec's prompt as it is otherwise.
    pub fn tagged_prompt(&self, tag: &str) -> String {
        match self.unique_prompts {
            true => format!("{tag}: {}", self.prompt),
            false => self.prompt.clone(),
        }
    }
}

/// Send one streaming `/v1/completions` request of `prompt` and time its chunks.
pub async fn timed_completion(
    client: &reqwest::Client,
    spec: &RequestSpec,
    prompt: &str,
) -> Result<RequestTiming, String> {
    let mut body = json!({
        "prompt": prompt,
        "max_tokens": spec.max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(m) = &spec.model {
        body["model"] = json!(m);
    }
    let url = format!("{}/v1/completions", spec.url.trim_end_matches('/'));
    let send = || {
        let mut req = client.post(&url).json(&body);
        if let Some(k) = &spec.api_key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    let mut start = Instant::now();
    // A kept-alive connection the server closed meanwhile fails before anything is sent
    // (llama-server closes idle ones): retry once on a fresh connection, timing from there.
    let resp = match send().await {
        Ok(r) => r,
        Err(e) if e.is_request() || e.is_connect() => {
            start = Instant::now();
            send()
                .await
                .map_err(|e| format!("request failed: {}", chain(&e)))?
        }
        Err(e) => return Err(format!("request failed: {}", chain(&e))),
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut gaps = Vec::new();
    let mut chunks = 0usize;
    let mut usage_tokens = None;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| format!("stream broke: {}", chain(&e)))?;
        let now = Instant::now();
        buf.extend_from_slice(&piece);
        // SSE events end with a blank line; handle every complete one.
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end).collect();
            for line in String::from_utf8_lossy(&event).lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(data)
                    .map_err(|e| format!("bad SSE data `{data}`: {e}"))?;
                if let Some(err) = v.get("error") {
                    return Err(format!("error in stream: {err}"));
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    usage_tokens = Some(n as usize);
                }
                let has_text = v["choices"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["text"].as_str().is_some_and(|t| !t.is_empty()))
                });
                if has_text {
                    chunks += 1;
                    if first.is_none() {
                        first = Some(now);
                    }
                    if let Some(prev) = last {
                        gaps.push(now - prev);
                    }
                    last = Some(now);
                }
            }
        }
    }
    let end = Instant::now();
    let first = first.ok_or("the stream carried no text")?;
    Ok(RequestTiming {
        ttft: first - start,
        total: end - start,
        gaps,
        output_tokens: usage_tokens.unwrap_or(chunks),
    })
}

/// An error with its causes, `a: b: c`: reqwest's own text says only that sending failed,
/// its causes say why (refused, a certificate not trusted...).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Index just past the first blank line (`\n\n` or `\r\n\r\n`) in `buf`.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::find_event_end;

    #[test]
    fn sse_events_split_on_blank_lines() {
        assert_eq!(find_event_end(b"data: 1\n\ndata: 2"), Some(9));
        assert_eq!(find_event_end(b"data: 1\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: 1\n"), None);
    }
}
