//! A JSON body extractor whose every failure is an OpenAI error: wrong content type (415),
//! body too large (413), invalid UTF-8, malformed or too deeply nested JSON, wrong field types
//! (400, naming the field where serde can).
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json"
            && !(mime.starts_with("application/") && mime.ends_with("+json"))
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                format!("expected `Content-Type: application/json`, got `{ct}`"),
            ));
        }
        parse(&body(req, state).await?).map(Json)
    }
}

/// A JSON body whatever its `Content-Type` says: Ollama's clients and its documented `curl -d`
/// examples send none, or curl's form type, and llama-server reads any (its own endpoints
/// take this one too). Every other failure is as `Json`'s.
pub struct AnyJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AnyJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        parse(&body(req, state).await?).map(AnyJson)
    }
}

async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "request body too large",
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// A body already read as JSON read again as `T` (an endpoint that tells requests apart by
/// their fields), its errors named as `parse` names them.
pub fn reread<T: DeserializeOwned>(body: &serde_json::Value) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::internal(e.to_string()))?;
    parse(&bytes)
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::bad_request("the request body is not valid UTF-8"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("malformed JSON: {inner}")
            }
            _ => format!("invalid request: {inner}"),
        };
        if path.is_empty() || path == "." {
            ApiError::bad_request(msg)
        } else {
            ApiError::invalid(&path, msg)
        }
    })
}
