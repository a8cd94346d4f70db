//! `GET /info`: what the server runs, as text-generation-inference answers it for a model that
//! generates, and as text-embeddings-inference answers it for one that embeds or classifies
//! (its `model_type`: `embedding` with its pooling, `classifier` with its labels, or
//! `reranker`, a one-score head), for their clients' checks.
use crate::server::error::ApiError;
use crate::server::state::SharedState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

pub async fn info(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let limits = &ready.limits;
    let mut info = json!({
        "model_id": state.model_name,
        "model_sha": null,
        "model_dtype": ready.facts.quantization,
        "model_device_type": ready.facts.device_kind,
        "max_concurrent_requests": ready.max_num_seqs,
        "max_client_batch_size": limits.max_choices,
        "version": env!("CARGO_PKG_VERSION"),
        "sha": crate::bench::report::git_commit(),
        "docker_label": null,
    });
    let extra = match ready.generates {
        true => json!({
            "model_pipeline_tag": "text-generation",
            "max_best_of": 1,
            "max_stop_sequences": limits.max_stop,
            "max_input_tokens": limits.context.saturating_sub(1),
            "max_total_tokens": limits.context,
            "validation_workers": 1,
        }),
        false => {
            let model_type = match (&ready.classifier, &ready.token_classifier) {
                (Some(head), _) if head.labels().len() == 1 => {
                    json!({"reranker": labels(head.labels())})
                }
                (Some(head), _) => json!({"classifier": labels(head.labels())}),
                // TEI has no token classifier: its labels as a classifier's, the pipeline tag
                // saying which.
                (None, Some(head)) => json!({"classifier": labels(head.labels())}),
                (None, None) => json!({"embedding": {"pooling": ready.pooling.as_str()}}),
            };
            let tag = ready
                .token_classifier
                .as_ref()
                .map(|_| "token-classification");
            json!({
                "model_pipeline_tag": tag,
                "model_type": model_type,
                "max_input_length": limits.context,
                "auto_truncate": ready.auto_truncate,
                "tokenization_workers": 1,
            })
        }
    };
    if let (Value::Object(all), Value::Object(more)) = (&mut info, extra) {
        all.extend(more);
    }
    Ok(axum::Json(info).into_response())
}

/// A head's labels as TEI lists them: `id2label` and `label2id`.
fn labels(names: &[String]) -> Value {
    let id2label: Map<String, Value> = (names.iter().enumerate())
        .map(|(i, n)| (i.to_string(), json!(n)))
        .collect();
    let label2id: Map<String, Value> = (names.iter().enumerate())
        .map(|(i, n)| (n.clone(), json!(i)))
        .collect();
    json!({"id2label": id2label, "label2id": label2id})
}
