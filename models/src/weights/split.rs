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
        return Err(first.error(&format!(
            "part {} of a split model: open its first part{}",
            no + 1,
            match &names {
                Some(names) => format!(" ({})", names[0].display()),
                None => String::new(),
            }
        )));
    }
    let Some(names) = names else {
        return Err(first.error(&format!(
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
            return Err(part.error(&format!(
                "expected part {} of {count} (split.no {i}), found split.no {got_no:?} of \
                 split.count {got_count:?}",
                i + 1
            )));
        }
        parts.push(part);
    }
    Ok(parts)
}

/// The paths of all `count` parts of the split model one of whose files is `path`
/// (`NAME-0000i-of-0000N.gguf`), or None when its name is not of that form.
fn part_paths(path: &Path, count: usize) -> Option<Vec<PathBuf>> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (prefix, _) = rest.rsplit_once('-')?;
    (total.parse::<usize>().ok()? == count).then(|| {
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
}
