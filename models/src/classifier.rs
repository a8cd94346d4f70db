//! A sequence classifier's head: labels scored from the last token's final hidden state (after
//! the final norm), as transformers' `*ForSequenceClassification` pools a causal model. The
//! head is the file's own (`score.weight` of a checkout, llama.cpp's `cls.output.weight` in a
//! GGUF) or rows of the language-model head picked by token (vLLM's `classifier_from_token`,
//! how Qwen3-Reranker is served as a cross-encoder: the "yes" row minus the "no" row, whose
//! sigmoid is the two-way softmax of "no" and "yes").
//!
//! An encoder's head (BERT's pooler then classifier, RoBERTa's dense then out_proj) reads the
//! first token's state (`[CLS]`, `<s>`) through a tanh layer before its rows, with biases;
//! ModernBERT's reads the first or the mean state through a GELU layer and a LayerNorm.
//!
//! A head of `labels` rows of `hidden` values is small (a few rows, and an encoder's one
//! `hidden`-square layer): it runs on the host over the pooled state the engine already
//! returns for embeddings.
use crate::error::{ModelError, Result};
use crate::loader::OpenedModel;
use crate::weights::HostWeight;

/// The canonical name of a classification head (llama.cpp's; `score.weight` in a checkout).
pub const HEAD: &str = "cls.output.weight";

#[derive(Debug, Clone)]
pub struct Classifier {
    /// `[labels, hidden]`, row-major.
    weight: Vec<f32>,
    hidden: usize,
    labels: Vec<String>,
    /// Added to the logits (an encoder's head; none for a decoder's `score`).
    bias: Vec<f32>,
    /// A `hidden`-square layer before the rows (an encoder's pooler).
    pre: Option<Dense>,
    /// Which state of an input it reads.
    reads: HeadInput,
}

/// Which of an input's final states a head reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadInput {
    /// The last token's (a decoder's head: the only state that saw the whole text).
    Last,
    /// The first token's (an encoder's `[CLS]`).
    First,
    /// The mean of every token's (ModernBERT's `classifier_pooling: mean`).
    Mean,
    /// Every token's, each scored apart (a token classifier: `*ForTokenClassification`).
    EachToken,
}

/// A layer `act(W x + b)`, `W` `[hidden, hidden]` row-major, `act` tanh (BERT's pooler), the
/// erf GELU (ModernBERT's head) or ReLU (DistilBERT's `pre_classifier`), then a LayerNorm where
/// it has one (ModernBERT's head).
#[derive(Debug, Clone)]
pub struct Dense {
    pub weight: Vec<f32>,
    /// Empty where the layer has none.
    pub bias: Vec<f32>,
    pub activation: DenseActivation,
    /// The LayerNorm's weight, bias (empty: none) and epsilon.
    pub norm: Option<(Vec<f32>, Vec<f32>, f32)>,
}

/// The activation of a head's dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseActivation {
    Tanh,
    GeluErf,
    Relu,
}

impl Dense {
    /// A dense layer `act(W x + b)` without a norm: BERT's pooler and RoBERTa's classifier
    /// dense layer (tanh), DistilBERT's `pre_classifier` (ReLU).
    pub fn new(weight: Vec<f32>, bias: Vec<f32>, activation: DenseActivation) -> Dense {
        Dense {
            weight,
            bias,
            activation,
            norm: None,
        }
    }

    fn apply(&self, x: &[f32], hidden: usize) -> Vec<f32> {
        let y: Vec<f32> = (self.weight.chunks_exact(hidden).enumerate())
            .map(|(o, row)| {
                let v = dot(row, x) + self.bias.get(o).copied().unwrap_or(0.0);
                match self.activation {
                    DenseActivation::Tanh => v.tanh(),
                    DenseActivation::GeluErf => candor_kernels::activation::gelu_erf(v),
                    DenseActivation::Relu => v.max(0.0),
                }
            })
            .collect();
        let Some((weight, bias, eps)) = &self.norm else {
            return y;
        };
        let n = y.len().max(1) as f64;
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let scale = 1.0 / (var + *eps as f64).sqrt();
        (y.iter().enumerate())
            .map(|(i, &v)| {
                let b = bias.get(i).copied().unwrap_or(0.0);
                ((v as f64 - mean) * scale) as f32 * weight[i] + b
            })
            .collect()
    }
}

impl Classifier {
    /// The head a model file carries, if it carries one: its rows and label names
    /// (`id2label` of config.json, `{arch}.classifier.output_labels` of a GGUF, else
    /// `LABEL_i` as transformers names them).
    pub fn from_file(opened: &OpenedModel) -> Result<Option<Classifier>> {
        if !opened.source.contains(HEAD) {
            return Ok(None);
        }
        let hidden = opened.spec.output_width();
        let weight = rows_f32(crate::weights::require(opened.source.as_ref(), HEAD)?)?;
        if weight.is_empty() || weight.len() % hidden != 0 {
            return Err(ModelError::ShapeMismatch {
                tensor: HEAD.into(),
                expected: vec![0, hidden],
                actual: vec![weight.len() / hidden.max(1), weight.len() % hidden.max(1)],
            });
        }
        let count = weight.len() / hidden;
        let named = match &opened.gguf {
            Some(g) => gguf_labels(g),
            None => hf_labels(&opened.path)?,
        };
        Ok(Some(Classifier {
            weight,
            hidden,
            labels: labels_for(count, &named),
            bias: Vec::new(),
            pre: None,
            reads: HeadInput::Last,
        }))
    }

    /// An encoder's head over the state `reads` says: `weight · pre(x) + bias` (without
    /// `pre`, `weight · x + bias`), `weight` `[labels, hidden]`; labels named by `named` where
    /// it names them.
    pub fn encoder_head(
        pre: Option<Dense>,
        weight: Vec<f32>,
        bias: Vec<f32>,
        hidden: usize,
        named: &[Option<String>],
        reads: HeadInput,
    ) -> Result<Classifier> {
        let count = weight.len() / hidden.max(1);
        let square = hidden * hidden;
        let (pre_weights, pre_biases) =
            (pre.as_ref()).map_or((square, hidden), |p| (p.weight.len(), p.bias.len()));
        let norm_fits = (pre.as_ref().and_then(|p| p.norm.as_ref()))
            .is_none_or(|(w, b, _)| w.len() == hidden && (b.is_empty() || b.len() == hidden));
        if count == 0
            || weight.len() != count * hidden
            || bias.len() != count
            || pre_weights != square
            || (pre_biases != hidden && pre_biases != 0)
            || !norm_fits
        {
            return Err(ModelError::Config(format!(
                "an encoder's classification head over {hidden} values: {} weights, {} biases, \
                 a pooler of {pre_weights} weights and {pre_biases} biases",
                weight.len(),
                bias.len(),
            )));
        }
        Ok(Classifier {
            weight,
            hidden,
            labels: labels_for(count, named),
            bias,
            pre,
            reads,
        })
    }

    /// Which state of an input the head reads.
    pub fn reads(&self) -> HeadInput {
        self.reads
    }

    /// A head from the language-model head's rows of `tokens` (label, id): one token scores
    /// its logit; two (`no`, `yes`) score `yes - no`, labelled as the second (the sigmoid of
    /// that is the second's probability between the two); more, one label per token (their
    /// softmax is the model's distribution over those tokens alone). Logits a model divides
    /// (Granite) are divided here too; a final softcap (Gemma 2) cannot be folded into rows.
    pub fn from_tokens(opened: &OpenedModel, tokens: &[(String, u32)]) -> Result<Classifier> {
        let spec = &opened.spec;
        if spec.final_softcap.is_some() {
            return Err(ModelError::Config(
                "a classifier from tokens cannot run on a model whose logits pass a softcap \
                 (Gemma 2): the rows of its head are not its logits"
                    .into(),
            ));
        }
        if tokens.is_empty() {
            return Err(ModelError::Config(
                "a classifier needs at least one token".into(),
            ));
        }
        for (label, id) in tokens {
            if *id as usize >= spec.vocab_size {
                return Err(ModelError::Config(format!(
                    "classifier token `{label}` (id {id}) is out of the vocabulary ({})",
                    spec.vocab_size
                )));
            }
        }
        let source = opened.source.as_ref();
        let head = match source.get("output.weight")? {
            Some(w) => w,
            None => crate::weights::require(source, "token_embd.weight")?,
        };
        let picked: Vec<Option<usize>> = tokens.iter().map(|(_, id)| Some(*id as usize)).collect();
        let mut rows = rows_f32(head.pick_rows(&picked)?)?;
        let hidden = spec.output_width();
        if rows.len() != tokens.len() * hidden {
            return Err(ModelError::ShapeMismatch {
                tensor: "output.weight".into(),
                expected: vec![tokens.len(), hidden],
                actual: vec![rows.len() / hidden.max(1)],
            });
        }
        if let Some(d) = spec.logit_divisor {
            rows.iter_mut().for_each(|v| *v /= d);
        }
        let (weight, labels) = match tokens {
            [_, (yes, _)] => {
                let (no_row, yes_row) = rows.split_at(hidden);
                let diff = yes_row.iter().zip(no_row).map(|(y, n)| y - n).collect();
                (diff, vec![yes.clone()])
            }
            _ => (rows, tokens.iter().map(|(l, _)| l.clone()).collect()),
        };
        Ok(Classifier {
            weight,
            hidden,
            labels,
            bias: Vec::new(),
            pre: None,
            reads: HeadInput::Last,
        })
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The head's logits over one pooled hidden state (`hidden` values).
    pub fn logits(&self, state: &[f32]) -> Result<Vec<f32>> {
        if state.len() != self.hidden {
            return Err(ModelError::InvalidBatch(format!(
                "a classifier over {} values got a state of {}",
                self.hidden,
                state.len()
            )));
        }
        let pooled;
        let state = match &self.pre {
            Some(pre) => {
                pooled = pre.apply(state, self.hidden);
                &pooled[..]
            }
            None => state,
        };
        let mut logits: Vec<f32> = (self.weight.chunks_exact(self.hidden))
            .map(|row| dot(row, state))
            .collect();
        for (l, b) in logits.iter_mut().zip(&self.bias) {
            *l += b;
        }
        Ok(logits)
    }
}

/// The labels' probabilities from their logits, as vLLM's classify answers them: the sigmoid
/// of a single score, the softmax of several.
pub fn probabilities(logits: &[f32]) -> Vec<f32> {
    if let [one] = logits {
        return vec![sigmoid(*one)];
    }
    softmax(logits)
}

/// The softmax of `logits` (over one, 1: transformers' token-classification pipeline takes it
/// even there).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `count` label names: those `named` gives, else `LABEL_i` as transformers names them.
fn labels_for(count: usize, named: &[Option<String>]) -> Vec<String> {
    (0..count)
        .map(|i| {
            named
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| format!("LABEL_{i}"))
        })
        .collect()
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn rows_f32(w: HostWeight) -> Result<Vec<f32>> {
    Ok(w.to_f32()?.flatten_all()?.to_vec1::<f32>()?)
}

/// `id2label` of config.json: `{"0": "negative", ...}`, by index.
pub fn hf_labels(dir: &std::path::Path) -> Result<Vec<Option<String>>> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let config: serde_json::Value = crate::config_json::parse(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
    let Some(map) = config.get("id2label").and_then(|m| m.as_object()) else {
        return Ok(Vec::new());
    };
    let mut labels = Vec::new();
    for (index, name) in map {
        let (Ok(i), Some(name)) = (index.parse::<usize>(), name.as_str()) else {
            return Err(ModelError::Config(format!(
                "config.json: `id2label` maps indices to names, got {index:?}: {name}"
            )));
        };
        if i >= 4096 {
            return Err(ModelError::Config(format!(
                "config.json: `id2label` index {i} is past any head"
            )));
        }
        if labels.len() <= i {
            labels.resize(i + 1, None);
        }
        labels[i] = Some(name.to_string());
    }
    Ok(labels)
}

/// `{arch}.classifier.output_labels` of a GGUF (llama.cpp's converter writes `id2label` there).
pub(crate) fn gguf_labels(g: &crate::weights::gguf::GgufFile) -> Vec<Option<String>> {
    use candle_core::quantized::gguf_file::Value;
    let Ok(arch) = g.architecture() else {
        return Vec::new();
    };
    match g
        .metadata()
        .get(&format!("{arch}.classifier.output_labels"))
    {
        Some(Value::Array(names)) => names
            .iter()
            .map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_score_is_a_sigmoid_and_several_a_softmax() {
        assert!((probabilities(&[0.0])[0] - 0.5).abs() < 1e-6);
        let p = probabilities(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
        // The yes-minus-no score's sigmoid is the two-way softmax's second value.
        let (no, yes) = (0.3f32, 1.7f32);
        assert!((sigmoid(yes - no) - probabilities(&[no, yes])[1]).abs() < 1e-6);
        // Large logits do not overflow.
        assert!(probabilities(&[1000.0, 0.0])[0] > 0.999);
    }

    #[test]
    fn logits_are_the_rows_dot_the_state() {
        let c = Classifier {
            weight: vec![1.0, 0.0, 0.5, 2.0],
            hidden: 2,
            labels: vec!["a".into(), "b".into()],
            bias: Vec::new(),
            pre: None,
            reads: HeadInput::Last,
        };
        assert_eq!(c.logits(&[2.0, 3.0]).unwrap(), [2.0, 7.0]);
        assert!(c.logits(&[1.0]).is_err());
    }

    #[test]
    fn an_encoder_head_runs_its_tanh_layer_then_its_rows_and_biases() {
        // tanh(I·x + [0, 0]) then [1, 1]·h + 0.5.
        let pre = Dense::new(
            vec![1.0, 0.0, 0.0, 1.0],
            vec![0.0, 0.0],
            DenseActivation::Tanh,
        );
        let first = HeadInput::First;
        let c =
            Classifier::encoder_head(Some(pre.clone()), vec![1.0, 1.0], vec![0.5], 2, &[], first);
        let c = c.unwrap();
        let got = c.logits(&[0.5, -1.0]).unwrap();
        let want = 0.5f32.tanh() + (-1.0f32).tanh() + 0.5;
        assert!((got[0] - want).abs() < 1e-6, "{got:?}");
        assert_eq!(c.labels(), ["LABEL_0"]);
        assert_eq!(c.reads(), HeadInput::First);
        let named = [None, Some("yes".to_string())];
        let two = Classifier::encoder_head(
            None,
            vec![1.0, 0.0, 0.0, 1.0],
            vec![0.0; 2],
            2,
            &named,
            first,
        );
        let two = two.unwrap();
        assert_eq!(two.labels(), ["LABEL_0", "yes"]);
        assert_eq!(
            two.logits(&[0.5, -1.0]).unwrap(),
            [0.5, -1.0],
            "no tanh layer"
        );
        assert!(
            Classifier::encoder_head(Some(pre), vec![1.0; 4], vec![0.5], 2, &[], first).is_err()
        );
        // ModernBERT's: GELU without a bias, then a LayerNorm without one: of [a, b] the
        // norm is [-1, 1] where a < b.
        let modern = Dense {
            weight: vec![1.0, 0.0, 0.0, 1.0],
            bias: Vec::new(),
            activation: DenseActivation::GeluErf,
            norm: Some((vec![1.0, 1.0], Vec::new(), 0.0)),
        };
        let c = Classifier::encoder_head(
            Some(modern),
            vec![2.0, 0.0],
            vec![0.0],
            2,
            &[],
            HeadInput::Mean,
        );
        let got = c.unwrap().logits(&[0.5, 1.5]).unwrap();
        assert!((got[0] + 2.0).abs() < 1e-5, "{got:?}");
    }
}
