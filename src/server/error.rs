//! The one place errors become HTTP: OpenAI-shaped JSON `{"error": {message, type, param, code}}`.
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }
    /// 400 for a bad request field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_string()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid or missing API key (send `Authorization: Bearer KEY` or `x-api-key: KEY`)",
        )
        .with_code("invalid_api_key")
    }
    pub fn overloaded(waiting: usize) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                format!("the server is at capacity ({waiting} requests waiting); retry later"),
            )
            .with_code("queue_full")
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The same error in another endpoint's field names (`/v1/responses` runs through the chat
    /// path): the parameter, and each backquoted mention of it in the message.
    pub fn renamed(mut self, names: &[(&str, &str)]) -> Self {
        for (from, to) in names {
            if let Some(rest) = self.param.as_deref().and_then(|p| p.strip_prefix(from)) {
                if rest.is_empty() || rest.starts_with(['.', '[']) {
                    self.param = Some(format!("{to}{rest}"));
                }
            }
            self.message = self
                .message
                .replace(&format!("`{from}`"), &format!("`{to}`"));
        }
        self
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// An error in the shape of Anthropic's Messages API (`/v1/messages`):
/// `{"type": "error", "error": {"type", "message"}}`, its types named after the status.
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let e = self.0;
        let kind = match e.status.as_u16() {
            400 | 415 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            _ => "api_error",
        };
        let body =
            serde_json::json!({"type": "error", "error": {"type": kind, "message": e.message}});
        e.respond(body)
    }
}

/// An error in the shape of Ollama's API (`/api/*`): `{"error": "message"}`, the message naming
/// the field where one is at fault.
pub struct OllamaError(pub ApiError);

impl From<ApiError> for OllamaError {
    fn from(e: ApiError) -> Self {
        OllamaError(e)
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let e = self.0;
        let message = match &e.param {
            Some(param) if !e.message.contains(param.as_str()) => {
                format!("{param}: {}", e.message)
            }
            _ => e.message.clone(),
        };
        e.respond(serde_json::json!({"error": message}))
    }
}

impl ApiError {
    /// `body` with this error's status and `Retry-After`.
    fn respond(&self, body: serde_json::Value) -> Response {
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(self.body())
    }
}

impl From<crate::server::slot_file::SlotFileError> for ApiError {
    fn from(e: crate::server::slot_file::SlotFileError) -> Self {
        use crate::server::slot_file::SlotFileError;
        match e {
            SlotFileError::BadName(_) => ApiError::invalid("filename", e.to_string()),
            SlotFileError::Missing(_) => ApiError::not_found(e.to_string()),
            SlotFileError::Unusable { .. } => ApiError::bad_request(e.to_string()),
            SlotFileError::Io { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<crate::engine::scheduler::SubmitError> for ApiError {
    fn from(e: crate::engine::scheduler::SubmitError) -> Self {
        use crate::engine::scheduler::SubmitError;
        match e {
            SubmitError::QueueFull(n) => ApiError::overloaded(n),
            SubmitError::Stopped => ApiError::unavailable("the server is shutting down"),
            SubmitError::Invalid(m) => ApiError::bad_request(m),
        }
    }
}

/// The answer to a request whose handler panicked (`CatchPanicLayer`): a 500 in the OpenAI
/// error shape, naming the panic.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = crate::engine::scheduler::panic_message(payload.as_ref());
    tracing::error!(error = %message, "a request handler panicked");
    ApiError::internal(format!("internal error: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::ApiError;

    /// A panicking handler behind the server's layer answers a 500 in the error JSON.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_error_json() {
        let router = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    let words: Vec<&str> = Vec::new();
                    words[3].to_string()
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                super::panic_response,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let r = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
        assert_eq!(r.status(), 500);
        let body: serde_json::Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("index out of bounds"), "{body}");
        assert_eq!(body["error"]["type"], "server_error");
    }

    #[test]
    fn renaming_changes_the_parameter_and_its_mentions_only() {
        let e = ApiError::invalid(
            "max_completion_tokens",
            "`max_completion_tokens` must be at least 1",
        )
        .renamed(&[
            ("max_completion_tokens", "max_output_tokens"),
            ("messages", "input"),
        ]);
        assert_eq!(e.param.as_deref(), Some("max_output_tokens"));
        assert_eq!(e.message, "`max_output_tokens` must be at least 1");
        let e = ApiError::invalid("messages[2].content", "bad").renamed(&[("messages", "input")]);
        assert_eq!(e.param.as_deref(), Some("input[2].content"));
        let e = ApiError::invalid("messages_x", "keep").renamed(&[("messages", "input")]);
        assert_eq!(e.param.as_deref(), Some("messages_x"));
    }
}
