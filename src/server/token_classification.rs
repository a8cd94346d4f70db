//! Token classification (NER): a `*ForTokenClassification` model's labels for every token,
//! answered as transformers' `pipeline("token-classification")` answers them (what Hugging
//! Face's inference containers serve on `POST /`): each text's tokens but its special ones, its
//! best label and that label's softmax score, the label `O` left out; by the aggregation
//! strategy `none` (transformers' default: a token each, `{"entity", "score", "index", "word",
//! "start", "end"}`) or `simple` (runs of a label, a `B-` tag starting a new one, as one
//! `{"entity_group", "score", "word", "start", "end"}`, the score their mean, the word their
//! decoded text), or by a word-level one (`first`, `average`, `max`: each word labelled by its
//! first token's scores, its strongest token's, or their mean, then grouped as `simple`), the
//! words told apart as transformers tells them. Spans count characters, as the pipeline's.
use crate::server::error::ApiError;
use crate::server::routes::embeddings::through_token_states;
use crate::server::state::Ready;
use candor_models::classifier::{softmax, Classifier};
use candor_models::tokenizer::TokenSpan;
use serde_json::{json, Value};
use std::sync::Arc;

/// How a text's token labels become entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    None,
    Simple,
    First,
    Average,
    Max,
}

impl Aggregation {
    pub fn parse(name: Option<&str>) -> Result<Aggregation, ApiError> {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => Ok(Aggregation::None),
            Some("simple") => Ok(Aggregation::Simple),
            Some("first") => Ok(Aggregation::First),
            Some("average") => Ok(Aggregation::Average),
            Some("max") => Ok(Aggregation::Max),
            Some(other) => Err(ApiError::invalid(
                "aggregation_strategy",
                format!(
                    "aggregation strategy `{other}` is not one of `none`, `simple`, `first`, \
                     `average`, `max`"
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
             NER model such as dslim/bert-base-NER), or BGE-M3 for its lexical weights",
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
    let (head, hidden) = (head.clone(), ready.hidden_size.max(1));
    through_token_states(ready, inputs, priority, model, move |_, rows| {
        (rows.chunks(hidden))
            .map(|row| head.logits(row))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
}

/// One token as the pipeline reads it before aggregating: its label scores, its text, its
/// span in characters, and whether it continues a word.
struct Token {
    index: usize,
    scores: Vec<f32>,
    /// Its piece (`##y`), or the text it stands for where it is the unknown token.
    word: String,
    start: Option<usize>,
    end: Option<usize>,
    continues_word: bool,
}

/// A token or a word with its best label: what the strategies answer and group.
struct Tagged<'a> {
    index: usize,
    tokens: Vec<&'a Token>,
    word: String,
    label: &'a str,
    score: f32,
}

/// The label with the best of `scores`, and that score.
fn best<'a>(labels: &'a [String], scores: &[f32]) -> (&'a str, f32) {
    let i = (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap_or(0);
    let label = labels.get(i).map_or("", String::as_str);
    (label, scores.get(i).copied().unwrap_or(0.0))
}

/// The entities of `text` from its tokens (`spans`, as `Tokenizer::encode_spans` reads them)
/// and their `logits`, by `aggregation`, those labelled in `ignore` left out. Spans are
/// answered in characters, as the pipeline's Python strings count them.
pub fn entities(
    ready: &Ready,
    head: &Classifier,
    text: &str,
    spans: &[TokenSpan],
    logits: &[Vec<f32>],
    aggregation: Aggregation,
    ignore: &[String],
) -> Result<Vec<Value>, ApiError> {
    let labels = head.labels();
    let tokens = pre_entities(ready, text, spans, logits);
    // The pipeline joins its words with `convert_tokens_to_string`, words of words too.
    let joined = |words: Vec<String>| -> Result<String, ApiError> {
        (ready.tokenizer.decode_pieces(words)).map_err(|e| ApiError::internal(e.to_string()))
    };
    let tagged: Vec<Tagged> = match aggregation {
        Aggregation::None | Aggregation::Simple => (tokens.iter())
            .map(|t| {
                let (label, score) = best(labels, &t.scores);
                Tagged {
                    index: t.index,
                    tokens: vec![t],
                    word: t.word.clone(),
                    label,
                    score,
                }
            })
            .collect(),
        word_level => words(&tokens)
            .into_iter()
            .map(|word| {
                let (label, score) = word_label(labels, &word, word_level);
                Ok(Tagged {
                    index: word[0].index,
                    word: joined(word.iter().map(|t| t.word.clone()).collect())?,
                    tokens: word,
                    label,
                    score,
                })
            })
            .collect::<Result<_, ApiError>>()?,
    };
    let kept = |label: &str| !ignore.iter().any(|i| i == label);
    if aggregation == Aggregation::None {
        return Ok((tagged.iter())
            .filter(|t| kept(t.label))
            .map(|t| {
                let token = t.tokens[0];
                json!({"entity": t.label, "score": t.score, "index": t.index, "word": t.word,
                       "start": token.start, "end": token.end})
            })
            .collect());
    }
    let mut out = Vec::new();
    for group in groups(&tagged) {
        let entity = (group[0].label.split_once('-')).map_or(group[0].label, |(_, t)| t);
        if !kept(entity) {
            continue;
        }
        let tokens: Vec<&Token> = group
            .iter()
            .flat_map(|t| t.tokens.iter().copied())
            .collect();
        let score = group.iter().map(|t| t.score).sum::<f32>() / group.len() as f32;
        let (start, end) = (tokens[0].start, tokens.last().and_then(|t| t.end));
        let word = joined(group.iter().map(|t| t.word.clone()).collect())?;
        out.push(json!({"entity_group": entity, "score": score, "word": word,
                        "start": start, "end": end}));
    }
    Ok(out)
}

/// The text's tokens but its special ones, as transformers' `gather_pre_entities` reads them:
/// a token continues a word where its piece is longer than its text (a tokenizer that marks
/// continuing pieces, WordPiece's `##`), else where no space is on either side of its start;
/// the unknown token stands for its text and starts a word.
fn pre_entities(ready: &Ready, text: &str, spans: &[TokenSpan], logits: &[Vec<f32>]) -> Vec<Token> {
    // Character positions of every byte boundary of the text.
    let mut chars = vec![0; text.len() + 1];
    let mut n = 0;
    for (i, c) in text.char_indices() {
        chars[i] = n;
        n += 1;
        for b in 1..c.len_utf8() {
            chars[i + b] = n;
        }
    }
    chars[text.len()] = n;
    let letters: Vec<char> = text.chars().collect();
    let marks_pieces = ready.tokenizer.continuing_subword_prefix().is_some();
    let unknown = ready.tokenizer.unknown_id();
    (spans.iter().zip(logits).enumerate())
        .filter(|(_, (span, _))| !span.special)
        .map(|(index, (span, logits))| {
            let bytes = span.span.filter(|&(a, b)| a <= b && b <= text.len());
            let word_ref = bytes.map_or("", |(a, b)| text.get(a..b).unwrap_or(""));
            let (start, end) = bytes.map(|(a, b)| (chars[a], chars[b])).unzip();
            let continues_word = match start {
                _ if Some(span.id) == unknown => false,
                _ if marks_pieces => span.piece.chars().count() != word_ref.chars().count(),
                Some(s) if s > 0 => !letters[s - 1..(s + 1).min(letters.len())].contains(&' '),
                _ => false,
            };
            Token {
                index,
                scores: softmax(logits),
                word: match Some(span.id) == unknown {
                    true => word_ref.to_string(),
                    false => span.piece.clone(),
                },
                start,
                end,
                continues_word,
            }
        })
        .collect()
}

/// The tokens as words: each starts a word unless it continues the one before.
fn words(tokens: &[Token]) -> Vec<Vec<&Token>> {
    runs(tokens, |_, t| t.continues_word)
}

/// `items` in runs of neighbours: each joins the run before where `joins(last of the run,
/// item)`, else starts one.
fn runs<T>(items: &[T], joins: impl Fn(&T, &T) -> bool) -> Vec<Vec<&T>> {
    let mut out: Vec<Vec<&T>> = Vec::new();
    for item in items {
        match out.last_mut() {
            Some(run) if joins(run[run.len() - 1], item) => run.push(item),
            _ => out.push(vec![item]),
        }
    }
    out
}

/// A word's label by a word-level strategy: its first token's best, the best of the token
/// that scores highest, or the best of the tokens' mean scores.
fn word_label<'a>(labels: &'a [String], word: &[&Token], strategy: Aggregation) -> (&'a str, f32) {
    match strategy {
        Aggregation::Max => {
            let top = |t: &&&Token| t.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let strongest = word.iter().max_by(|a, b| top(a).total_cmp(&top(b)));
            best(labels, strongest.map_or(&[][..], |t| &t.scores[..]))
        }
        Aggregation::Average => {
            let width = word[0].scores.len();
            let mean: Vec<f32> = (0..width)
                .map(|l| word.iter().map(|t| t.scores[l]).sum::<f32>() / word.len() as f32)
                .collect();
            best(labels, &mean)
        }
        _ => best(labels, &word[0].scores),
    }
}

/// Runs of tokens (or words) of one tag, each started anew by a `B-` tag (transformers'
/// `group_entities`): `I-PER I-PER B-PER` is two groups, `O O` one.
fn groups<'a, 'b>(tagged: &'b [Tagged<'a>]) -> Vec<Vec<&'b Tagged<'a>>> {
    runs(tagged, |last, t| {
        let (bi, tag) = tag_of(t.label);
        bi != "B" && tag_of(last.label).1 == tag
    })
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
        let tagged: Vec<Tagged> = ["B-PER", "I-PER", "B-PER", "O", "O", "I-LOC", "I-PER"]
            .iter()
            .enumerate()
            .map(|(index, label)| Tagged {
                index,
                tokens: Vec::new(),
                word: String::new(),
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
    fn the_strategies_are_named_as_transformers_names_them() {
        assert_eq!(Aggregation::parse(None).unwrap(), Aggregation::None);
        assert_eq!(
            Aggregation::parse(Some("SIMPLE")).unwrap(),
            Aggregation::Simple
        );
        assert_eq!(Aggregation::parse(Some("max")).unwrap(), Aggregation::Max);
        assert!(Aggregation::parse(Some("longest")).is_err());
    }

    #[test]
    fn a_word_is_labelled_by_its_first_token_its_strongest_or_their_mean() {
        let labels = ["O".to_string(), "B-PER".to_string()];
        let token = |scores: Vec<f32>| Token {
            index: 0,
            scores,
            word: String::new(),
            start: None,
            end: None,
            continues_word: true,
        };
        let (a, b) = (token(vec![0.6, 0.4]), token(vec![0.1, 0.9]));
        let word = [&a, &b];
        assert_eq!(word_label(&labels, &word, Aggregation::First), ("O", 0.6));
        assert_eq!(word_label(&labels, &word, Aggregation::Max), ("B-PER", 0.9));
        let (label, score) = word_label(&labels, &word, Aggregation::Average);
        assert_eq!(label, "B-PER");
        assert!((score - 0.65).abs() < 1e-6);
    }
}
