//! Each request's id, for tracing it across a proxy, the server's log and the answer: the
//! client's `X-Request-Id` when it sends a usable one (vLLM's reading: the answer's id is then
//! `chatcmpl-<it>`), else a random one; told back in the answer's `X-Request-Id` header.
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The most characters of a client's id kept: a longer one is not an id but a payload.
const MAX_LEN: usize = 128;

/// A client's id if it is usable in ids and log lines: 1 to 128 of letters, digits and
/// `-_.:`, nothing that could break a log line or a JSON string.
fn usable(sent: &HeaderValue) -> Option<String> {
    let text = sent.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= MAX_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    ok.then(|| text.to_string())
}

/// Run the request under its id and tell the id back.
pub async fn tag(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(usable)
        .unwrap_or_else(|| super::state::new_id("req").split_off(4));
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The running request's id (None outside a request: a test calling a handler directly).
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The id of an answer to the running request: `prefix-<request id>`, or a new random one
/// outside a request.
pub fn answer_id(prefix: &str) -> String {
    match current() {
        Some(id) => format!("{prefix}-{id}"),
        None => super::state::new_id(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_taken() {
        let take = |s: &str| usable(&HeaderValue::from_str(s).unwrap());
        assert_eq!(take("trace-42_a.b:c").as_deref(), Some("trace-42_a.b:c"));
        for bad in ["", "a b", "a\"b", "x{}", &"a".repeat(129)] {
            assert_eq!(take(bad), None, "{bad:?}");
        }
        assert_eq!(answer_id("cmpl").len(), "cmpl-".len() + 32);
    }
}
