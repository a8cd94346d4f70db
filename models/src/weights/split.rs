//! Split GGUF models (llama.cpp's `gguf-split`, as large models are published: files
//! `NAME-00001-of-00003.gguf` …, each at most a size the hosts take). The first file holds the
//! metadata and some tensors, every file the `split.*` keys (`split.no` counting from 0,
//! `split.count`); the others hold the rest of the tensors. Opening the first opens the rest,
//! found beside it by name.
use super::gguf::GgufFile;
use crate::error::{ModelError, Result};
use std::path::{Path, PathBuf};

/// The later parts of the split model whose first file `first` (at `path`) is, opened; empty
/// when `first` is a one-file GGUF. Errors when `first` is a later part (naming the first), or
/// a part is missing or not the part its name says.
pub fn open_parts(path: &Path, first: &GgufFile, dequantize: bool) -> Result<Vec<GgufFile>> {
    let count = first.get_usize("split.count").unwrap_or(1);
    if count <= 1 {
        return Ok(Vec::new());
    }
    let no = first.get_usize("split.no").unwrap_or(0);
    let names = part_paths(path, count);
    if no != 0 {
        return Err(first.bad(&format!(
            "part {} of a split model: open its first part{}",
            no + 1,
            match &names {
                Some(names) => format!(" ({})", names[0].display()),
                None => String::new(),
            }
        )));
    }
    let Some(names) = names else {
        return Err(first.bad(&format!(
            "the first of {count} files of a split model, named other than \
             NAME-00001-of-{count:05}.gguf: its other parts cannot be found"
        )));
    };
    let mut parts = Vec::with_capacity(count - 1);
    for (i, name) in names.iter().enumerate().skip(1) {
        if !name.is_file() {
            return Err(ModelError::BadGguf {
                path: path.display().to_string(),
                reason: format!("part {} of {count} is missing ({})", i + 1, name.display()),
            });
        }
        let part = GgufFile::open_part(name, dequantize)?;
        let (got_no, got_count) = (part.get_usize("split.no"), part.get_usize("split.count"));
        if got_no != Some(i) || got_count != Some(count) {
            return Err(part.bad(&format!(
                "expected part {} of {count} (split.no {i}), found split.no {got_no:?} of \
                 split.count {got_count:?}",
                i + 1
            )));
        }
        parts.push(part);
    }
    Ok(parts)
}

/// Every file of the model at `path`: all parts of a split model named by its first file
/// (`NAME-00001-of-0000N.gguf`) where they are all beside it, else `path` alone. By name only
/// (no file is read): for sizes reported of a model, not for loading.
pub fn model_files(path: &Path) -> Vec<PathBuf> {
    let count = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".gguf")?.rsplit_once("-00001-of-"))
        .and_then(|(_, total)| total.parse::<usize>().ok());
    match count.and_then(|c| part_paths(path, c)) {
        Some(parts) if parts.iter().all(|p| p.is_file()) => parts,
        _ => vec![path.to_path_buf()],
    }
}

/// The paths of all `count` parts of the split model one of whose files is `path`
/// (`NAME-0000i-of-0000N.gguf`), or None when its name is not of that form.
fn part_paths(path: &Path, count: usize) -> Option<Vec<PathBuf>> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (prefix, _) = rest.rsplit_once('-')?;
    // gguf-split writes five digits: at most 99999 parts (a file cannot ask for more).
    (total.len() == 5 && total.parse::<usize>().ok()? == count).then(|| {
        (1..=count)
            .map(|i| path.with_file_name(format!("{prefix}-{i:05}-of-{count:05}.gguf")))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_named_as_gguf_split_names_them() {
        let got = part_paths(Path::new("/m/Big-Q8_0-00002-of-00003.gguf"), 3).unwrap();
        let want: Vec<PathBuf> = ["00001", "00002", "00003"]
            .iter()
            .map(|i| PathBuf::from(format!("/m/Big-Q8_0-{i}-of-00003.gguf")))
            .collect();
        assert_eq!(got, want);
        assert!(part_paths(Path::new("/m/Big-Q8_0-00001-of-00003.gguf"), 2).is_none());
        assert!(part_paths(Path::new("/m/big.gguf"), 2).is_none());
    }

    #[test]
    fn a_split_models_files_are_its_parts_where_all_are_there() {
        let dir = tempfile::tempdir().unwrap();
        let part = |i: usize| dir.path().join(format!("m-{i:05}-of-00002.gguf"));
        std::fs::write(part(1), b"a").unwrap();
        assert_eq!(model_files(&part(1)), [part(1)]);
        std::fs::write(part(2), b"b").unwrap();
        assert_eq!(model_files(&part(1)), [part(1), part(2)]);
        assert_eq!(model_files(&part(2)), [part(2)]);
        let one = dir.path().join("one.gguf");
        assert_eq!(model_files(&one), vec![one]);
    }
}
