//! API keys, compared in constant time: `Authorization: Bearer KEY`, or `x-api-key: KEY` as
//! Anthropic's clients send it. /, /health (and llama-server's /v1/health) and /metrics stay
//! open. Several keys may be served at once (`--api-key a,b`, `--api-key-file`): a key is
//! rotated by adding the new one, moving the clients, then dropping the old.
use super::error::{AnthropicError, ApiError, OllamaError};
use super::state::SharedState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::Path;
use subtle::ConstantTimeEq;

/// The keys a request may give; none asks for no key.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Vec<String>);

impl ApiKeys {
    /// `keys` (empty ones dropped) and those of the file at `file`: one a line, blank lines
    /// and lines starting with `#` skipped, spaces around a key trimmed.
    pub fn new(keys: Vec<String>, file: Option<&Path>) -> Result<Self, String> {
        let mut all: Vec<String> = keys
            .into_iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("--api-key-file {}: {e}", file.display()))?;
            let listed: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            if listed.is_empty() {
                return Err(format!(
                    "--api-key-file {} lists no key (one a line; `#` starts a comment)",
                    file.display()
                ));
            }
            all.extend(listed);
        }
        Ok(ApiKeys(all))
    }

    /// Whether any key is asked for.
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `given` is one of the keys. Every key is compared, each in constant time, so
    /// the time taken says nothing of which key came close.
    pub fn accepts(&self, given: &str) -> bool {
        self.0.iter().fold(false, |found, key| {
            found | bool::from(given.as_bytes().ct_eq(key.as_bytes()))
        })
    }
}

pub async fn require_key(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    if !state.api_keys.required() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    // Probes: load balancers and SageMaker ask these without a key.
    if matches!(
        path,
        "/" | "/health" | "/v1/health" | "/metrics" | "/ping" | "/version"
    ) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    if state.api_keys.accepts(given) {
        next.run(req).await
    } else if path.starts_with("/v1/messages") {
        AnthropicError(ApiError::unauthorized()).into_response()
    } else if path.starts_with("/api/") {
        OllamaError(ApiError::unauthorized()).into_response()
    } else {
        ApiError::unauthorized().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_key_listed_or_read_from_the_file_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# rotated monthly\n\n  sk-file-1  \nsk-file-2\n").unwrap();
        let keys =
            ApiKeys::new(vec!["sk-a".into(), " ".into(), "sk-b".into()], Some(&file)).unwrap();
        assert!(keys.required());
        for key in ["sk-a", "sk-b", "sk-file-1", "sk-file-2"] {
            assert!(keys.accepts(key), "{key}");
        }
        for key in ["", "sk-", "sk-a ", "# rotated monthly", "sk-file-1  "] {
            assert!(!keys.accepts(key), "{key:?}");
        }
        assert!(!ApiKeys::new(vec![" ".into()], None).unwrap().required());
        std::fs::write(&file, "# none yet\n").unwrap();
        let e = ApiKeys::new(Vec::new(), Some(&file)).unwrap_err();
        assert!(e.contains("lists no key"), "{e}");
        let e = ApiKeys::new(Vec::new(), Some(&dir.path().join("nowhere"))).unwrap_err();
        assert!(e.contains("nowhere"), "{e}");
    }
}
