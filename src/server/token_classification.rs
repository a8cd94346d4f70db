//! Token classification (NER): a `*ForTokenClassification` model's labels for every token,
//! answered as transformers' `pipeline("token-classification")` answers them (what Hugging
//! Face's inference containers serve on `POST /`): each text's tokens but its special ones, its
//! best label and that label's softmax score, the label `O` left out; by the aggregation
//! strategy `none` (transformers' default: a token each, `{"entity", "score", "index", "word",
//! "start", "end"}`) or `simple` (runs of a label, a `B-` tag starting a new one, as one
//! `{"entity_group", "score", "word", "start", "end"}`, the score their mean, the word their
//! decoded text). The word-level strategies (`first`, `average`, `max`) are refused.
use crate::engine::pooling::Pooling;
use crate::server::error::ApiError;
use crate::server::routes::embeddings::run_pooling;
use crate::server::state::Ready;
use candor_models::classifier::Classifier;
use candor_models::tokenizer::TokenSpan;
use serde_json::{json, Value};
use std::sync::Arc;

/// How a text's token labels become entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    None,
    Simple,
}

impl Aggregation {
    pub fn parse(name: Option<&str>) -> Result<Aggregation, ApiError> {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => Ok(Aggregation::None),
            Some("simple") => Ok(Aggregation::Simple),
            Some(other) => Err(ApiError::invalid(
                "aggregation_strategy",
                format!(
                    "aggregation strategy `{other}` is not served (`none`, `simple`; the \
                     word-level `first`, `average` and `max` are not)"
                ),
            )),
        }
    }
}

/// The served token classifier, or a 400 that says the model is none.
pub fn token_classifier(ready: &Ready) -> Result<Arc<Classifier>, ApiError> {
    ready.token_classifier.clone().ok_or_else(|| {
        ApiError::bad_request(
            "this model does not label tokens: serve a `*ForTokenClassification` checkout (an \
             NER model such as dslim/bert-base-NER)",
        )
    })
}

/// Every token's label logits of each input (`[input][token][label]`), from each token's final
/// state through the head, on the host off the async workers.
pub async fn token_logits(
    ready: &Ready,
    head: &Arc<Classifier>,
    inputs: &[Vec<u32>],
    priority: i64,
    model: Option<&str>,
) -> Result<Vec<Vec<Vec<f32>>>, ApiError> {
    let states = run_pooling(ready, inputs, Pooling::None, priority, model).await?;
    let (head, hidden) = (head.clone(), ready.hidden_size.max(1));
    let scored = tokio::task::spawn_blocking(move || {
        (states.iter())
            .map(|rows| {
                (rows.chunks(hidden))
                    .map(|row| head.logits(row))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    scored.map_err(|e| ApiError::internal(e.to_string()))
}

/// The softmax of one token's logits, as the pipeline computes it (even over one label).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// One token's best label.
struct Tagged<'a> {
    index: usize,
    span: &'a TokenSpan,
    label: &'a str,
    score: f32,
}

/// The entities of a text from its tokens (`spans`, as `Tokenizer::encode_spans` reads them)
/// and their `logits`, by `aggregation`, those labelled in `ignore` left out.
pub fn entities(
    ready: &Ready,
    head: &Classifier,
    spans: &[TokenSpan],
    logits: &[Vec<f32>],
    aggregation: Aggregation,
    ignore: &[String],
) -> Result<Vec<Value>, ApiError> {
    let labels = head.labels();
    let tagged: Vec<Tagged> = (spans.iter().zip(logits).enumerate())
        .filter(|(_, (span, _))| !span.special)
        .map(|(index, (span, logits))| {
            let scores = softmax(logits);
            let best = (0..scores.len())
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .unwrap_or(0);
            Tagged {
                index,
                span,
                label: labels.get(best).map_or("", String::as_str),
                score: scores.get(best).copied().unwrap_or(0.0),
            }
        })
        .collect();
    let bounds = |t: &Tagged| t.span.span.unzip();
    let kept = |label: &str| !ignore.iter().any(|i| i == label);
    match aggregation {
        Aggregation::None => Ok((tagged.iter())
            .filter(|t| kept(t.label))
            .map(|t| {
                let (start, end) = bounds(t);
                json!({"entity": t.label, "score": t.score, "index": t.index,
                       "word": t.span.piece, "start": start, "end": end})
            })
            .collect()),
        Aggregation::Simple => {
            let mut out = Vec::new();
            for group in groups(&tagged) {
                let entity = (group[0].label.split_once('-')).map_or(group[0].label, |(_, t)| t);
                if !kept(entity) {
                    continue;
                }
                let ids: Vec<u32> = group.iter().map(|t| t.span.id).collect();
                let word = (ready.tokenizer.decode(&ids, false))
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let score = group.iter().map(|t| t.score).sum::<f32>() / group.len() as f32;
                let start = bounds(group[0]).0;
                let end = group.last().and_then(|t| bounds(t).1);
                out.push(json!({"entity_group": entity, "score": score, "word": word,
                                "start": start, "end": end}));
            }
            Ok(out)
        }
    }
}

/// Runs of tokens of one tag, each started anew by a `B-` tag (transformers'
/// `group_entities`): `I-PER I-PER B-PER` is two groups, `O O` one.
fn groups<'a, 'b>(tagged: &'b [Tagged<'a>]) -> Vec<Vec<&'b Tagged<'a>>> {
    let mut out: Vec<Vec<&Tagged>> = Vec::new();
    for t in tagged {
        let (bi, tag) = tag_of(t.label);
        match out.last_mut() {
            Some(group) if bi != "B" && tag_of(group[group.len() - 1].label).1 == tag => {
                group.push(t)
            }
            _ => out.push(vec![t]),
        }
    }
    out
}

/// A label's `B`/`I` part and its tag: `B-PER` is (`B`, `PER`); a label without a prefix
/// (`O`) is `I` of itself, as transformers reads it.
fn tag_of(label: &str) -> (&str, &str) {
    match label.split_once('-') {
        Some(("B", tag)) => ("B", tag),
        Some(("I", tag)) => ("I", tag),
        _ => ("I", label),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_b_tag_starts_a_new_group_and_an_i_tag_continues_one() {
        assert_eq!(tag_of("B-PER"), ("B", "PER"));
        assert_eq!(tag_of("I-LOC"), ("I", "LOC"));
        assert_eq!(tag_of("O"), ("I", "O"));
        let span = TokenSpan {
            id: 0,
            special: false,
            piece: String::new(),
            span: None,
        };
        let tagged: Vec<Tagged> = ["B-PER", "I-PER", "B-PER", "O", "O", "I-LOC", "I-PER"]
            .iter()
            .enumerate()
            .map(|(index, label)| Tagged {
                index,
                span: &span,
                label,
                score: 1.0,
            })
            .collect();
        let sizes: Vec<usize> = groups(&tagged).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1, 2, 1, 1]);
    }

    #[test]
    fn the_softmax_of_one_label_is_one() {
        assert_eq!(softmax(&[3.0]), [1.0]);
        let p = softmax(&[0.0, 0.0]);
        assert!((p[0] - 0.5).abs() < 1e-7);
    }

    #[test]
    fn word_level_strategies_are_refused() {
        assert_eq!(Aggregation::parse(None).unwrap(), Aggregation::None);
        assert_eq!(
            Aggregation::parse(Some("SIMPLE")).unwrap(),
            Aggregation::Simple
        );
        assert!(Aggregation::parse(Some("first")).is_err());
    }
}
