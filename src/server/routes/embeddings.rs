//! `POST /v1/embeddings` (and llama-server's `/embedding`, `/embeddings`): each input runs as a
//! prompt-only engine request that pools its final hidden states (`--pooling`), all of them
//! queued together.
use crate::engine::pooling::Pooling;
use crate::engine::sampler::SamplingParams;
use crate::engine::scheduler::{EngineEvent, EngineRequest};
use crate::server::embeddings::{self, EmbeddingRequest};
use crate::server::error::ApiError;
use crate::server::generation::submit;
use crate::server::json::{AnyJson, Json};
use crate::server::sparse_route::Route;
use crate::server::state::{Ready, SharedState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub async fn embeddings(
    State(state): State<SharedState>,
    Json(req): Json<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    openai_answer(&state, req).await
}

/// `POST /embedding` and `/embeddings` (llama-server's): `input` is answered as
/// `/v1/embeddings` answers it; `content`, llama-server's own field, as llama-server does,
/// `[{"index": 0, "embedding": [[...]]}]` (a pooled vector as a one-row matrix, or under
/// `--pooling none` a row per token), each vector scaled as `embd_normalize` says (Euclidean
/// by default, `normalised_by`).
pub async fn llama_embeddings(
    State(state): State<SharedState>,
    AnyJson(mut body): AnyJson<Value>,
) -> Result<Response, ApiError> {
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let norm = match fields.remove("embd_normalize") {
        // SPLADE's term weights are compared as pooled (`EmbeddingRequest::vector_norm`).
        None if state.ready()?.pooling == Pooling::Sparse => embeddings::NOT_SCALED,
        None => embeddings::EUCLIDEAN,
        Some(n) => match n.as_i64() {
            Some(n) if (-1..=64).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "embd_normalize",
                    format!(
                        "`embd_normalize` must be -1 (none), 0 (int16 range) or a p-norm's p \
                         up to 64, got {n}"
                    ),
                ))
            }
        },
    };
    let content = fields.remove("content");
    let as_request = |body: Value| {
        serde_json::from_value::<EmbeddingRequest>(body)
            .map_err(|e| ApiError::invalid("input", e.to_string()))
    };
    let Some(content) = content else {
        return openai_answer(&state, as_request(body)?).await;
    };
    body["input"] = content;
    let req = as_request(body)?;
    let ready = state.ready()?;
    if ready.pooling == Pooling::None {
        return per_token_answer(&state, &req, norm).await;
    }
    let pooled = pool(&state, &req, Vectors::PerInput).await?;
    let answers: Vec<Value> = (pooled.vectors.into_iter().enumerate())
        .map(|(index, v)| {
            let v = embeddings::normalised_by(v, pooled.dimensions, norm);
            json!({"index": index, "embedding": [v]})
        })
        .collect();
    Ok(axum::Json(answers).into_response())
}

/// llama-server's answer under `--pooling none`: each input's tokens' final states, a row per
/// token, each scaled as `norm` says.
async fn per_token_answer(
    state: &SharedState,
    req: &EmbeddingRequest,
    norm: i64,
) -> Result<Response, ApiError> {
    let width = state.ready()?.token_width();
    let states = pool(state, req, Vectors::PerToken).await?;
    let answers: Vec<Value> = (states.vectors.into_iter().enumerate())
        .map(|(index, all)| {
            let rows: Vec<Vec<f32>> = all
                .chunks(width.max(1))
                .map(|row| embeddings::normalised_by(row.to_vec(), width, norm))
                .collect();
            json!({"index": index, "embedding": rows})
        })
        .collect();
    Ok(axum::Json(answers).into_response())
}

/// The OpenAI answer to an embeddings request.
async fn openai_answer(state: &SharedState, req: EmbeddingRequest) -> Result<Response, ApiError> {
    // A model it does not serve is said before a bad encoding, as it always was.
    state.check_model(req.model.as_deref())?;
    let encoding = req.encoding()?;
    let pooled = pool(state, &req, Vectors::PerInput).await?;
    let norm = req.vector_norm(state.ready()?.pooling);
    let vectors = (pooled.vectors.into_iter())
        .map(|v| embeddings::normalised_by(v, pooled.dimensions, norm))
        .map(|v| embeddings::encoded(&v, encoding))
        .collect();
    Ok(axum::Json(embeddings::response(
        &state.answering_model(req.model.as_deref()),
        vectors,
        pooled.tokens,
    ))
    .into_response())
}

/// A request's vectors (pooled, or every token's; not normalised), the dimensions it keeps,
/// the tokens it read.
struct Pooled {
    vectors: Vec<Vec<f32>>,
    dimensions: usize,
    tokens: usize,
}

/// What a request wants of its inputs' states.
enum Vectors {
    /// One vector each (`pooled`: refused by a server that pools nothing).
    PerInput,
    /// Every token's, one after another (`--pooling none`).
    PerToken,
}

/// Check an embeddings request and pool each of its inputs (or keep each token's state).
async fn pool(
    state: &SharedState,
    req: &EmbeddingRequest,
    vectors: Vectors,
) -> Result<Pooled, ApiError> {
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    let dimensions = req.dimensions(ready)?;
    let inputs = req.token_lists(ready)?;
    let priority = crate::server::validate::priority(&ready.limits, req.priority)?;
    let model = req.model.as_deref();
    let vectors = match vectors {
        Vectors::PerInput => {
            let route = ready.route(req.prompt_name.as_deref());
            pooled(ready, &inputs, route, priority, model).await?
        }
        Vectors::PerToken => token_vectors(ready, &inputs, priority, model).await?,
    };
    Ok(Pooled {
        vectors,
        dimensions,
        tokens: inputs.iter().map(Vec::len).sum(),
    })
}

/// Each input's pooled final hidden state (not normalised), through the checkout's
/// sentence-transformers Dense modules where it has them, in order; `priority` as the engine
/// reads it (lower first); with the LoRA adapter `model` names, if it names one. By the
/// static `route` of an inference-free SPLADE model, each input's weights from its table
/// instead (`server::sparse_route`). A server that pools nothing has no such vector: a 400
/// that says where its rows are.
pub async fn pooled(
    ready: &Ready,
    inputs: &[Vec<u32>],
    route: Route,
    priority: i64,
    model: Option<&str>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    if let Some(vectors) = ready.static_vectors(route, inputs) {
        return Ok(vectors);
    }
    if ready.pooling == Pooling::None {
        return Err(ApiError::bad_request(
            "this server pools nothing (`--pooling none`): each token's vector comes from \
             /embedding with `content`; serve with `--pooling last` or `mean` for one vector \
             per input",
        ));
    }
    let vectors = run_pooling(ready, inputs, ready.pooling, priority, model).await?;
    Ok(match &ready.dense {
        Some(dense) => vectors.into_iter().map(|v| dense.apply(v)).collect(),
        None => vectors,
    })
}

/// `pooled` of `inputs` whose first `queries` take the first of `routes` and the rest the
/// second (a query against documents on an inference-free SPLADE model): one engine submission
/// where the two are one route.
pub async fn pooled_routed(
    ready: &Ready,
    inputs: &[Vec<u32>],
    queries: usize,
    routes: (Route, Route),
    model: Option<&str>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let (query_route, route) = routes;
    if query_route == route {
        return pooled(ready, inputs, route, 0, model).await;
    }
    let (asked, rest) = inputs.split_at(queries.min(inputs.len()));
    let mut vectors = pooled(ready, asked, query_route, 0, model).await?;
    vectors.extend(pooled(ready, rest, route, 0, model).await?);
    Ok(vectors)
}

/// Each input's token vectors, `Ready::token_width` values each, one after another (not
/// normalised): every token's final state, or, for a model with a ColBERT head (BGE-M3),
/// that head's vectors of its tokens after the first (`[CLS]`, whose state is the dense
/// embedding), as FlagEmbedding's `colbert_vecs`.
pub async fn token_vectors(
    ready: &Ready,
    inputs: &[Vec<u32>],
    priority: i64,
    model: Option<&str>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let Some(head) = ready.colbert.clone() else {
        return run_pooling(ready, inputs, Pooling::None, priority, model).await;
    };
    through_token_states(ready, inputs, priority, model, move |_, rows| {
        head.vectors(rows).map(|v| v.concat())
    })
    .await
}

/// Each input's final token states (row-major, the hidden width each) through `head` with its
/// token ids, on the host off the async workers (a product over every token).
pub async fn through_token_states<T, E>(
    ready: &Ready,
    inputs: &[Vec<u32>],
    priority: i64,
    model: Option<&str>,
    head: impl Fn(&[u32], &[f32]) -> Result<T, E> + Send + 'static,
) -> Result<Vec<T>, ApiError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let states = run_pooling(ready, inputs, Pooling::None, priority, model).await?;
    let inputs = inputs.to_vec();
    let done = tokio::task::spawn_blocking(move || {
        (inputs.iter().zip(&states))
            .map(|(ids, rows)| head(ids, rows))
            .collect::<Result<Vec<_>, E>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    done.map_err(|e| ApiError::internal(e.to_string()))
}

/// Each input's states as `pooling` keeps them (not normalised).
pub async fn run_pooling(
    ready: &Ready,
    inputs: &[Vec<u32>],
    pooling: Pooling,
    priority: i64,
    model: Option<&str>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let id = crate::server::request_id::answer_id("embd");
    let mut receivers = Vec::with_capacity(inputs.len());
    let mut requests = Vec::with_capacity(inputs.len());
    let lora = ready.lora_of(model, None)?;
    for (i, ids) in inputs.iter().enumerate() {
        let (events, rx) = mpsc::unbounded_channel();
        receivers.push(rx);
        requests.push(EngineRequest {
            id: match inputs.len() {
                1 => id.clone(),
                _ => format!("{id}/{i}"),
            },
            prompt_ids: ids.clone(),
            max_tokens: 0,
            sampling: SamplingParams::default(),
            eos_ids: Vec::new(),
            ignore_eos: true,
            logprobs: None,
            logprobs_after_sampling: false,
            prompt_logprobs: None,
            constraint: None,
            thought: None,
            pooling: Some(pooling),
            prediction: Default::default(),
            priority,
            lora: lora.clone(),
            cache_prompt: true,
            cache_salt: None,
            events,
        });
    }
    submit(ready, requests)?;
    // A client that goes away drops this future and the receivers: the engine lets go.
    let mut vectors = Vec::with_capacity(receivers.len());
    for mut rx in receivers {
        let mut pooled = None;
        loop {
            match rx.recv().await {
                Some(EngineEvent::Embedding(v)) => pooled = Some(v),
                Some(EngineEvent::Finished { .. }) => break,
                Some(EngineEvent::Error(message)) => return Err(ApiError::internal(message)),
                Some(_) => {}
                None => return Err(ApiError::internal("the engine stopped")),
            }
        }
        vectors.push(pooled.ok_or_else(|| ApiError::internal("the engine pooled nothing"))?);
    }
    Ok(vectors)
}
