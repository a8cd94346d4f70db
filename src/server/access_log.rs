//! One log line per refused or failed request (status 4xx/5xx): the engine logs the requests
//! it ran (`request done`), this the ones that never reached it, so an operator sees why a
//! client's calls fail without turning on debug logs.
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

pub async fn log_failures(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let ms = (started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
        let id = super::request_id::current().unwrap_or_default();
        tracing::info!(%method, %path, status = status.as_u16(), duration_ms = ms, request_id = %id, "request refused");
    }
    response
}
