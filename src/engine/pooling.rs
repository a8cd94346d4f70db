//! One embedding from a prompt's final hidden states (`/v1/embeddings`): the last token's
//! (decoder embedding models such as Qwen3-Embedding, and vLLM's default for a generative
//! model), the first token's (`[CLS]`, as BERT-style encoders such as BGE are trained), or the
//! mean over every token; or none, every token's state kept (llama-server's
//! `--pooling none`, for late-interaction retrieval); or a sparse vector over the vocabulary
//! (a SPLADE masked LM's, BGE-M3's lexical weights), which the encoder's runner pools itself.
//! The engine pools as prefill chunks compute the states, so a long prompt pooled never holds
//! all its rows at once.
use candor_models::sentence_transformers::{read_json, Modules};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The last prompt token's state: in a causal model the only one that saw the whole text.
    Last,
    /// The mean of every prompt token's state.
    Mean,
    /// The first prompt token's state: an encoder's `[CLS]` (`<s>`), which sees every token.
    Cls,
    /// Every prompt token's state, one after another.
    None,
    /// A sparse vector over the vocabulary, computed by the runner's sparse head
    /// (`candor_models::encoder::SparseHead`): SPLADE's (a masked LM's scores of every token,
    /// `log(1 + relu)`, pooled) or BGE-M3's lexical weights.
    Sparse,
}

impl Pooling {
    /// From a GGUF's `{arch}.pooling_type` (llama.cpp's codes: 0 none, 1 mean, 2 cls, 3 last,
    /// 4 rank); `None` for the kinds a causal model cannot pool with here.
    pub fn from_gguf_code(code: u64) -> Option<Pooling> {
        match code {
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }

    /// Whether it reads every prompt position's state (not the last alone).
    pub fn reads_every_row(self) -> bool {
        matches!(self, Pooling::Mean | Pooling::None)
    }

    /// Whether a sequence pooled so may start from cached prompt blocks: not when it reads
    /// the rows they hold (every row, or the first).
    pub fn takes_from_cache(self) -> bool {
        self == Pooling::Last
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Last => "last",
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::None => "none",
            Pooling::Sparse => "sparse",
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "none" => Ok(Pooling::None),
            "splade" | "sparse" => Ok(Pooling::Sparse),
            other => Err(format!(
                "unknown pooling `{other}` (last, mean, cls, none, splade)"
            )),
        }
    }
}

/// The pooling a sentence-transformers checkout names: its `modules.json` lists a `Pooling`
/// module whose `config.json` says the mode (`pooling_mode_cls_token`, `_mean_tokens`,
/// `_lasttoken`). None where the checkout has no such files; an error for a mode candor does
/// not pool by (max, mean over the square root of the length, weighted mean, several at once).
pub fn from_sentence_transformers(dir: &std::path::Path) -> Result<Option<Pooling>, String> {
    let Some(modules) = Modules::read(dir)? else {
        return Ok(None);
    };
    let Some(module) = modules.dir_of(".Pooling") else {
        return Ok(None);
    };
    let config_path = module.join("config.json");
    let Some(config) = read_json(&config_path)? else {
        return Ok(None);
    };
    let on = |key: &str| config.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
    let modes: Vec<&str> = [
        "cls_token",
        "mean_tokens",
        "lasttoken",
        "max_tokens",
        "mean_sqrt_len_tokens",
        "weightedmean_tokens",
    ]
    .into_iter()
    .filter(|m| on(&format!("pooling_mode_{m}")))
    .collect();
    match modes.as_slice() {
        [] => Ok(None),
        ["cls_token"] => Ok(Some(Pooling::Cls)),
        ["mean_tokens"] => Ok(Some(Pooling::Mean)),
        ["lasttoken"] => Ok(Some(Pooling::Last)),
        other => Err(format!(
            "{}: sentence-transformers pooling {} is not served (cls, mean, last)",
            config_path.display(),
            other.join(" + ")
        )),
    }
}

/// A sequence's embedding as its prefill computes it: for `Mean` the running sum, for `Last`
/// the last row; `upto` prompt positions taken in so far, so a sequence preempted and computed
/// again does not count a position twice.
#[derive(Debug, Default)]
pub struct Pool {
    acc: Vec<f32>,
    upto: usize,
}

impl Pool {
    /// Positions taken in so far.
    pub fn upto(&self) -> usize {
        self.upto
    }

    /// Take in the hidden states of prompt positions `first..first + rows.len()`.
    pub fn take_in<'a>(
        &mut self,
        pooling: Pooling,
        first: usize,
        rows: impl IntoIterator<Item = &'a [f32]>,
    ) {
        for (pos, row) in (first..).zip(rows) {
            if pos < self.upto || row.is_empty() {
                continue;
            }
            match pooling {
                Pooling::Last => self.acc = row.to_vec(),
                Pooling::Cls | Pooling::Sparse if pos == 0 => self.acc = row.to_vec(),
                Pooling::Cls | Pooling::Sparse => {}
                Pooling::Mean if self.acc.is_empty() => self.acc = row.to_vec(),
                Pooling::Mean => {
                    for (a, x) in self.acc.iter_mut().zip(row) {
                        *a += x;
                    }
                }
                Pooling::None => self.acc.extend_from_slice(row),
            }
            self.upto = pos + 1;
        }
    }

    /// The embedding of the `prompt_len` positions taken in (not yet normalised); without
    /// pooling, each position's in turn.
    pub fn embedding(&self, pooling: Pooling, prompt_len: usize) -> Vec<f32> {
        match pooling {
            Pooling::Last | Pooling::Cls | Pooling::None | Pooling::Sparse => self.acc.clone(),
            Pooling::Mean => {
                let n = prompt_len.max(1) as f32;
                self.acc.iter().map(|x| x / n).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_counts_each_position_once_across_chunks_and_recomputation() {
        let mut pool = Pool::default();
        let rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        pool.take_in(Pooling::Mean, 0, rows[..2].iter().map(|r| &r[..]));
        // Preempted and computed again from 0: positions 0 and 1 are not counted twice.
        pool.take_in(Pooling::Mean, 0, rows.iter().map(|r| &r[..]));
        assert_eq!(pool.upto(), 3);
        assert_eq!(pool.embedding(Pooling::Mean, 3), [3.0, 4.0]);
    }

    #[test]
    fn none_keeps_every_position_once() {
        let mut pool = Pool::default();
        let rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        pool.take_in(Pooling::None, 0, rows[..2].iter().map(|r| &r[..]));
        pool.take_in(Pooling::None, 0, rows.iter().map(|r| &r[..]));
        assert_eq!(
            pool.embedding(Pooling::None, 3),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!("none".parse::<Pooling>(), Ok(Pooling::None));
    }

    #[test]
    fn last_keeps_the_last_position() {
        let mut pool = Pool::default();
        pool.take_in(Pooling::Last, 4, [&[7.0, 8.0][..]]);
        assert_eq!(pool.upto(), 5);
        assert_eq!(pool.embedding(Pooling::Last, 5), [7.0, 8.0]);
    }

    #[test]
    fn cls_keeps_the_first_position_only() {
        let mut pool = Pool::default();
        pool.take_in(Pooling::Cls, 0, [&[1.0, 2.0][..], &[3.0, 4.0][..]]);
        pool.take_in(Pooling::Cls, 2, [&[5.0, 6.0][..]]);
        assert_eq!(pool.embedding(Pooling::Cls, 3), [1.0, 2.0]);
    }

    #[test]
    fn sentence_transformers_files_name_the_pooling() {
        let dir = std::env::temp_dir().join(format!("candor-st-pooling-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        assert_eq!(from_sentence_transformers(&dir), Ok(None));
        let modules = r#"[{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;
        std::fs::write(dir.join("modules.json"), modules).unwrap();
        let config =
            |modes: &str| std::fs::write(dir.join("1_Pooling/config.json"), modes).unwrap();
        config(r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#);
        assert_eq!(from_sentence_transformers(&dir), Ok(Some(Pooling::Cls)));
        config(r#"{"pooling_mode_mean_tokens": true}"#);
        assert_eq!(from_sentence_transformers(&dir), Ok(Some(Pooling::Mean)));
        config(r#"{"pooling_mode_lasttoken": true}"#);
        assert_eq!(from_sentence_transformers(&dir), Ok(Some(Pooling::Last)));
        config(r#"{"pooling_mode_max_tokens": true}"#);
        let e = from_sentence_transformers(&dir).unwrap_err();
        assert!(e.contains("max_tokens"), "{e}");
        config("{not json");
        assert!(from_sentence_transformers(&dir).is_err());
        let router = r#"[{"idx": 0, "path": "", "type": "sentence_transformers.models.Router"}]"#;
        std::fs::write(dir.join("modules.json"), router).unwrap();
        // A Router's modules are its routes' (`Modules`): without its config, it is refused.
        let e = from_sentence_transformers(&dir).unwrap_err();
        assert!(e.contains("router_config.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gguf_codes_and_names() {
        assert_eq!(Pooling::from_gguf_code(1), Some(Pooling::Mean));
        assert_eq!(Pooling::from_gguf_code(3), Some(Pooling::Last));
        assert_eq!(Pooling::from_gguf_code(2), Some(Pooling::Cls));
        assert_eq!(Pooling::from_gguf_code(4), None);
        assert_eq!("mean".parse::<Pooling>(), Ok(Pooling::Mean));
        assert_eq!("cls".parse::<Pooling>(), Ok(Pooling::Cls));
        assert!("first".parse::<Pooling>().is_err());
    }
}
