//! `hf:ORG/REPO:TAG`: the repository's one GGUF of a quantization, named as llama.cpp's `-hf`
//! and Ollama's `hf.co/…:TAG` name it (`Q4_K_M`, `IQ4_XS`, any case), so a user picks a
//! quantization from a repository of many without spelling out its file name.
use std::path::Path;

/// Whether the part after the repository is a tag rather than a file: letters, digits and
/// underscores only (a file name has its extension's dot).
pub fn is_tag(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the file name (its last path component) holds `tag` as a whole word: not preceded by
/// a letter or digit (`Q4_0` is not in `IQ4_0`) nor followed by one or by an underscore
/// (`Q4_K` is not in `Q4_K_M`).
fn tagged(file: &str, tag: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file).to_ascii_lowercase();
    let tag = tag.to_ascii_lowercase();
    name.match_indices(&tag).any(|(at, _)| {
        let before = name[..at].chars().next_back();
        let after = name[at + tag.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The part number and count of a split model's file (`…-00001-of-00003.gguf`, as
/// llama.cpp's `gguf-split` names them), and the name before them.
fn split_part(file: &str) -> Option<(usize, usize, &str)> {
    let stem = file.strip_suffix(".gguf")?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (prefix, part) = rest.rsplit_once('-')?;
    let number = |s: &str| {
        (s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(part)?, number(total)?, prefix))
}

/// The other parts of a split model whose first file is `file` (same directory), in order;
/// empty for any other file.
pub fn split_rest(file: &str) -> Vec<String> {
    match split_part(file) {
        Some((1, count, prefix)) => (2..=count)
            .map(|i| format!("{prefix}-{i:05}-of-{count:05}.gguf"))
            .collect(),
        _ => Vec::new(),
    }
}

/// The one `.gguf` among `files` (paths in `repo`) tagged `tag`, or what to tell the user.
pub fn pick(repo: &str, tag: &str, files: &[String]) -> Result<String, String> {
    let ggufs: Vec<&String> = files
        .iter()
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    let matching: Vec<&String> = ggufs.iter().copied().filter(|f| tagged(f, tag)).collect();
    // A split model's parts: its first (which brings the rest, `split_rest`).
    let firsts: Vec<&String> = matching
        .iter()
        .copied()
        .filter(|f| split_part(f).is_none_or(|(part, _, _)| part == 1))
        .collect();
    match firsts.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "{repo} has no .gguf file tagged {tag} ({})",
            match ggufs.is_empty() {
                true => "it has no .gguf file".to_string(),
                false => format!("its .gguf files: {}", join(&ggufs)),
            }
        )),
        many => Err(format!(
            "{repo} has {} .gguf files tagged {tag} ({}); name one as hf:{repo}:FILE",
            many.len(),
            join(many)
        )),
    }
}

fn join(files: &[&String]) -> String {
    files
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The files under `dir`, as paths relative to it with `/` between components (what a pull
/// left there); empty when it does not exist.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{prefix}{name}");
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&entry.path(), &format!("{rel}/"), out),
                Ok(_) => out.push(rel),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_tag_picks_the_one_gguf_of_that_quantization() {
        let repo = files(&[
            "README.md",
            "Qwen2.5-7B-Instruct-Q4_K_M.gguf",
            "Qwen2.5-7B-Instruct-Q4_K_S.gguf",
            "Qwen2.5-7B-Instruct-IQ4_XS.gguf",
            "Qwen2.5-7B-Instruct-Q4_0.gguf",
            "Qwen2.5-7B-Instruct-IQ4_NL.gguf",
            "Q8_0/Qwen2.5-7B-Instruct-Q8_0-00001-of-00002.gguf",
            "Q8_0/Qwen2.5-7B-Instruct-Q8_0-00002-of-00002.gguf",
            "bf16/a-BF16.gguf",
            "bf16/b-BF16.gguf",
        ]);
        let pick = |tag: &str| pick("Org/Q", tag, &repo);
        assert_eq!(pick("Q4_K_M").unwrap(), "Qwen2.5-7B-Instruct-Q4_K_M.gguf");
        assert_eq!(pick("q4_k_m").unwrap(), "Qwen2.5-7B-Instruct-Q4_K_M.gguf");
        assert_eq!(pick("iq4_xs").unwrap(), "Qwen2.5-7B-Instruct-IQ4_XS.gguf");
        // Whole words only: Q4_0 is not IQ4_0-anything, Q4_K is none of Q4_K_M / Q4_K_S.
        assert_eq!(pick("Q4_0").unwrap(), "Qwen2.5-7B-Instruct-Q4_0.gguf");
        let err = pick("Q4_K").unwrap_err();
        assert!(
            err.starts_with("Org/Q has no .gguf file tagged Q4_K (its .gguf files: "),
            "{err}"
        );
        // A split model: its first part, which brings the others.
        let first = pick("Q8_0").unwrap();
        assert_eq!(first, "Q8_0/Qwen2.5-7B-Instruct-Q8_0-00001-of-00002.gguf");
        assert_eq!(
            split_rest(&first),
            ["Q8_0/Qwen2.5-7B-Instruct-Q8_0-00002-of-00002.gguf"]
        );
        let err = pick("BF16").unwrap_err();
        assert!(err.contains("2 .gguf files tagged BF16 (bf16/a-BF16.gguf, bf16/b-BF16.gguf)"));
        let err = super::pick("Org/E", "Q4_K_M", &files(&["README.md"])).unwrap_err();
        assert_eq!(
            err,
            "Org/E has no .gguf file tagged Q4_K_M (it has no .gguf file)"
        );
    }

    #[test]
    fn tags_are_words_and_file_names_are_not() {
        assert!(is_tag("Q4_K_M") && is_tag("iq4_xs") && is_tag("F16"));
        assert!(!is_tag("") && !is_tag("model.gguf") && !is_tag("dir/Q4_K_M"));
        assert_eq!(
            split_part("x-Q8_0-00001-of-00002.gguf"),
            Some((1, 2, "x-Q8_0"))
        );
        assert!(split_part("x-Q8_0.gguf").is_none() && split_part("x-1-of-2.gguf").is_none());
        assert!(split_rest("x-Q8_0-00002-of-00002.gguf").is_empty());
    }
}
