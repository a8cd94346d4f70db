//! llama-server's `/infill` prompt, for editor plugins written against it (llama.vim,
//! llama.vscode): the code before the cursor (`input_prefix`, then `prompt`, the current
//! line), the code after it (`input_suffix`), and context chunks from other files
//! (`input_extra`). Chunks go first, as repository-level context where the vocabulary has the
//! tokens for it (Qwen2.5-Coder's `<|repo_name|>` and `<|file_sep|>`, in the layout its model
//! card gives), else as plain text blocks; then prefix, suffix and middle tokens. Code is
//! tokenized as text (marker text in a file stays text, as llama.cpp reads it). What does not
//! fit the context loses the oldest chunks first, then the prefix's start and the suffix's end
//! (three quarters of the room to the prefix).
use candor_models::tokenizer::{Fim, Tokenizer};

/// One context chunk: a file's name and some of its text.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Chunk {
    #[serde(default = "unnamed")]
    pub filename: String,
    #[serde(default)]
    pub text: String,
}

fn unnamed() -> String {
    "tmp".into()
}

/// The fill-in-the-middle tokens of a vocabulary, with the repository-level ones if it has them.
#[derive(Debug, Clone, Copy)]
pub struct FimTokens {
    pub fim: Fim,
    /// `<|repo_name|>` and `<|file_sep|>`.
    pub repo: Option<(u32, u32)>,
}

impl FimTokens {
    pub fn of(tokenizer: &Tokenizer, fim: Fim) -> Self {
        let repo = tokenizer
            .token_id("<|repo_name|>")
            .zip(tokenizer.token_id("<|file_sep|>"));
        FimTokens { fim, repo }
    }
}

/// The parts of an infill prompt, tokenized.
pub struct InfillParts {
    pub bos: Option<u32>,
    /// What opens the chunks (the repository's name) and what closes them (the current
    /// file's separator), around them while there are any.
    pub chunks_start: Vec<u32>,
    pub chunks: Vec<Vec<u32>>,
    pub chunks_end: Vec<u32>,
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
}

pub struct InfillText<'a> {
    pub prefix: &'a str,
    pub prompt: &'a str,
    pub suffix: &'a str,
    pub extra: &'a [Chunk],
}

/// Tokenize the request's parts in the vocabulary's layout.
pub fn parts(
    tokenizer: &Tokenizer,
    fim: FimTokens,
    text: &InfillText,
) -> Result<InfillParts, String> {
    let encode = |t: &str| tokenizer.encode_text(t, false).map_err(|e| e.to_string());
    let mut chunks = Vec::new();
    let mut chunks_start = Vec::new();
    let mut chunks_end = Vec::new();
    if !text.extra.is_empty() {
        match fim.repo {
            Some((repo, file_sep)) => {
                chunks_start.push(repo);
                chunks_start.extend(encode("project\n")?);
                for c in text.extra {
                    let mut ids = vec![file_sep];
                    ids.extend(encode(&format!("{}\n{}", c.filename, c.text))?);
                    chunks.push(ids);
                }
                chunks_end.push(file_sep);
                chunks_end.extend(encode("current\n")?);
            }
            None => {
                for c in text.extra {
                    chunks.push(encode(&format!("--- {} ---\n{}\n", c.filename, c.text))?);
                }
            }
        }
    }
    let mut prefix = encode(text.prefix)?;
    prefix.extend(encode(text.prompt)?);
    Ok(InfillParts {
        bos: tokenizer.added_bos(),
        chunks_start,
        chunks,
        chunks_end,
        prefix,
        suffix: encode(text.suffix)?,
    })
}

impl InfillParts {
    /// The prompt in at most `room` tokens, and whether anything was cut to fit.
    pub fn fit(mut self, fim: FimTokens, room: usize) -> (Vec<u32>, bool) {
        let fixed = fim.fim.markers() + usize::from(self.bos.is_some());
        let chunk_len = |p: &InfillParts| -> usize {
            match p.chunks.is_empty() {
                true => 0,
                false => {
                    let body: usize = p.chunks.iter().map(Vec::len).sum();
                    p.chunks_start.len() + body + p.chunks_end.len()
                }
            }
        };
        let code = self.prefix.len() + self.suffix.len();
        let mut truncated = false;
        // The oldest chunks go first.
        while fixed + code + chunk_len(&self) > room && !self.chunks.is_empty() {
            self.chunks.remove(0);
            truncated = true;
        }
        let left = room.saturating_sub(fixed + chunk_len(&self));
        if code > left {
            truncated = true;
            let keep_suffix = self.suffix.len().min(left / 4);
            let keep_prefix = self.prefix.len().min(left - keep_suffix);
            let keep_suffix = self.suffix.len().min(left - keep_prefix);
            self.prefix.drain(..self.prefix.len() - keep_prefix);
            self.suffix.truncate(keep_suffix);
        }
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        if !self.chunks.is_empty() {
            ids.extend(&self.chunks_start);
            ids.extend(self.chunks.concat());
            ids.extend(&self.chunks_end);
        }
        ids.extend(fim.fim.around(&self.prefix, &self.suffix));
        (ids, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIM: FimTokens = FimTokens {
        fim: Fim {
            prefix: 1,
            suffix: 2,
            middle: Some(3),
        },
        repo: Some((4, 5)),
    };

    /// Parts in the repository layout: the name `[4, 8]`, files `chunks`, then `[5, 9]`.
    fn parts(chunks: Vec<Vec<u32>>, prefix: Vec<u32>, suffix: Vec<u32>) -> InfillParts {
        InfillParts {
            bos: None,
            chunks_start: vec![4, 8],
            chunks,
            chunks_end: vec![5, 9],
            prefix,
            suffix,
        }
    }

    /// Mistral's order: the suffix first, no middle token (one more token of room for code).
    #[test]
    fn a_vocabulary_without_a_middle_token_takes_the_suffix_first() {
        let mistral = FimTokens {
            fim: Fim {
                prefix: 1,
                suffix: 2,
                middle: None,
            },
            repo: None,
        };
        let p = parts(vec![], (20..24).collect(), vec![30, 31]);
        let (ids, truncated) = p.fit(mistral, 2 + 6);
        assert_eq!(ids, [2, 30, 31, 1, 20, 21, 22, 23]);
        assert!(!truncated);
    }

    #[test]
    fn a_prompt_that_fits_is_whole_in_repository_layout() {
        let p = parts(vec![vec![5, 10, 11]], vec![20, 21], vec![30]);
        let (ids, truncated) = p.fit(FIM, 100);
        assert_eq!(ids, [4, 8, 5, 10, 11, 5, 9, 1, 20, 21, 2, 30, 3]);
        assert!(!truncated);
    }

    #[test]
    fn chunks_go_oldest_first_then_the_code_is_cut_three_to_one() {
        let p = parts(vec![vec![5, 10, 11], vec![5, 12]], vec![20, 21], vec![30]);
        // Room for everything but the oldest chunk.
        let (ids, truncated) = p.fit(FIM, 3 + 3 + 2 + 2 + 2);
        assert_eq!(ids, [4, 8, 5, 12, 5, 9, 1, 20, 21, 2, 30, 3]);
        assert!(truncated);
        // Room for the code only, and less: the prefix keeps its end, the suffix its start.
        let p = parts(vec![vec![5, 10]], (20..28).collect(), (30..34).collect());
        let (ids, _) = p.fit(FIM, 3 + 8);
        assert_eq!(ids, [1, 22, 23, 24, 25, 26, 27, 2, 30, 31, 3]);
    }
}
