//! `logit_bias` in every form clients send it: OpenAI's object of token ids (`{"15043": -5}`),
//! and llama-server's besides: a list of pairs (`[[15043, -5], ["Hello", 2]]`), a text in
//! place of an id (each of its tokens biased), `false` in place of a bias (the token banned).
//! Text is tokenized once the plan meets the tokenizer (`generation::start`).
use super::error::ApiError;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// What a bias names: a token id, or a text whose tokens are all biased.
#[derive(Debug, Clone, PartialEq)]
pub enum BiasKey {
    Id(i64),
    Text(String),
}

/// The request's biases as sent, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogitBias(pub Vec<(BiasKey, f32)>);

/// OpenAI's bounds on a bias; `false` bans a token outright (-inf).
const LIMIT: f32 = 100.0;

impl<'de> Deserialize<'de> for LogitBias {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries: Vec<(BiasKey, Value)> = match Value::deserialize(d)? {
            // A key that is a number is a token id; any other, a text.
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| match k.parse::<i64>() {
                    Ok(id) => (BiasKey::Id(id), v),
                    Err(_) => (BiasKey::Text(k), v),
                })
                .collect(),
            Value::Array(pairs) => pairs
                .into_iter()
                .map(|pair| match pair {
                    Value::Array(mut two) if two.len() == 2 => {
                        let bias = two.pop().unwrap_or_default();
                        Ok((key_of(two.pop().unwrap_or_default())?, bias))
                    }
                    other => Err(de::Error::custom(format!(
                        "a logit_bias list holds [token or text, bias] pairs, got {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(de::Error::custom(format!(
                    "logit_bias is an object of token ids or a list of pairs, got {other}"
                )))
            }
        };
        entries
            .into_iter()
            .map(|(key, bias)| Ok((key, bias_of(bias)?)))
            .collect::<Result<_, _>>()
            .map(LogitBias)
    }
}

/// A pair's first item: a token id, or a text (always a text, digits too: `"7"` is the text
/// 7, as llama-server reads a pair).
fn key_of<E: de::Error>(key: Value) -> Result<BiasKey, E> {
    match key {
        Value::Number(n) => n
            .as_i64()
            .map(BiasKey::Id)
            .ok_or_else(|| E::custom(format!("logit_bias token `{n}` is not a token id"))),
        Value::String(s) => Ok(BiasKey::Text(s)),
        other => Err(E::custom(format!(
            "logit_bias names a token id or a text, got {other}"
        ))),
    }
}

/// A bias: a number, or `false` for a ban.
fn bias_of<E: de::Error>(bias: Value) -> Result<f32, E> {
    match bias {
        Value::Bool(false) => Ok(f32::NEG_INFINITY),
        Value::Number(n) => match n.as_f64() {
            Some(b) if b.is_finite() && b.abs() <= LIMIT as f64 => Ok(b as f32),
            _ => Err(E::custom(format!(
                "logit_bias values must be in [-100, 100] (or false: banned), got {n}"
            ))),
        },
        other => Err(E::custom(format!(
            "logit_bias values must be in [-100, 100] (or false: banned), got {other}"
        ))),
    }
}

/// The biases by token id, and those named by a text (tokenized later).
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    pub by_id: Vec<(u32, f32)>,
    pub by_text: Vec<(String, f32)>,
}

impl LogitBias {
    /// The biases by token id, checked against a vocabulary of `vocab`, and by text.
    pub fn split(&self, vocab: usize) -> Result<Split, ApiError> {
        let (mut ids, mut texts) = (Vec::new(), Vec::new());
        for (key, bias) in &self.0 {
            match key {
                BiasKey::Id(id) if *id >= 0 && (*id as u64) < vocab as u64 => {
                    ids.push((*id as u32, *bias))
                }
                BiasKey::Id(id) => {
                    return Err(ApiError::invalid(
                        "logit_bias",
                        format!("logit_bias token {id} is out of the vocabulary ({vocab})"),
                    ))
                }
                BiasKey::Text(text) if text.is_empty() => {
                    return Err(ApiError::invalid(
                        "logit_bias",
                        "logit_bias names an empty text",
                    ))
                }
                BiasKey::Text(text) => texts.push((text.clone(), *bias)),
            }
        }
        Ok(Split {
            by_id: ids,
            by_text: texts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Result<LogitBias, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn every_form_reads_alike() {
        let openai = read(json!({"15": 2.5, "7": false})).unwrap();
        let mut got = openai.0.clone();
        got.sort_by_key(|(k, _)| format!("{k:?}"));
        assert_eq!(
            got,
            vec![(BiasKey::Id(15), 2.5), (BiasKey::Id(7), f32::NEG_INFINITY)]
        );
        let pairs = read(json!([[15, 2.5], ["Hello", -1], [7, false]])).unwrap();
        assert_eq!(
            pairs.0,
            vec![
                (BiasKey::Id(15), 2.5),
                (BiasKey::Text("Hello".into()), -1.0),
                (BiasKey::Id(7), f32::NEG_INFINITY)
            ]
        );
        let text_key = read(json!({"Hello": 3, " 7": 1})).unwrap();
        assert!(text_key.0.contains(&(BiasKey::Text("Hello".into()), 3.0)));
        assert!(text_key.0.contains(&(BiasKey::Text(" 7".into()), 1.0)));
        // In a pair, a text of digits is a text.
        let digits = read(json!([["7", 2]])).unwrap();
        assert_eq!(digits.0, vec![(BiasKey::Text("7".into()), 2.0)]);
    }

    #[test]
    fn bad_biases_are_refused() {
        for bad in [
            json!({"1": 101}),
            json!({"1": true}),
            json!([[1]]),
            json!([[1, 2, 3]]),
            json!("x"),
            json!([[null, 1]]),
            json!([[1.5, 1]]),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
        let split = read(json!([[3, 1], ["a", 2]])).unwrap().split(10).unwrap();
        assert_eq!(split.by_id, vec![(3, 1.0)]);
        assert_eq!(split.by_text, vec![("a".to_string(), 2.0)]);
        assert!(read(json!({"10": 1})).unwrap().split(10).is_err());
        assert!(read(json!({"-1": 1})).unwrap().split(10).is_err());
        assert!(read(json!([["", 1]])).unwrap().split(10).is_err());
    }
}
