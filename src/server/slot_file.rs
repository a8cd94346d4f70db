//! A saved prompt cache on disk (`POST /slots/{id}?action=save`): a safetensors file of the
//! prompt's token ids (`tokens`, U32) and each layer's K and V rows as the cache stores them
//! (`layers.{i}.k` / `.v`, U8 `[tokens, row_bytes]`), for a model whose sequences carry a
//! recurrent state each recurrent layer's state after the last token (`state.{i}.conv` /
//! `.recurrent`, F32; `state_layers` in the metadata), with what they belong to in the header's
//! metadata: the model (so another model's file is refused before its rows are looked at), the
//! cache's encoding and row width. safetensors rather than a format of our own: the header
//! is checked JSON with offsets, any safetensors reader can inspect a file, and the crate is
//! already the project's.
use crate::engine::saved_prompts::SavedPrompt;
use candor_models::kv_rows::KvRows;
use candor_models::sequence_state::{LayerState, SequenceState};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

const FORMAT: &str = "candor-prompt-cache";
const VERSION: &str = "1";

#[derive(Debug, Error)]
pub enum SlotFileError {
    #[error(
        "invalid filename `{0}`: use letters, digits, `.`, `_` and `-` (not first a `.`), at \
         most 200 characters; files live in the server's --slot-save-path"
    )]
    BadName(String),
    #[error("no saved prompt cache named `{0}`")]
    Missing(String),
    #[error("`{name}` is not a prompt cache this server can restore: {why}")]
    Unusable { name: String, why: String },
    #[error("cannot {doing} `{name}`: {source}")]
    Io {
        doing: &'static str,
        name: String,
        source: std::io::Error,
    },
}

/// The file `name` names in `dir`, if `name` is a plain file name (no directory, no way out
/// of `dir`).
pub fn path_in(dir: &Path, name: &str) -> Result<PathBuf, SlotFileError> {
    let plain = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    match plain {
        true => Ok(dir.join(name)),
        false => Err(SlotFileError::BadName(name.into())),
    }
}

/// Write `saved` to `path` (through a temporary file renamed over it, so a reader never sees
/// half a file); returns the bytes written.
pub fn write(path: &Path, saved: &SavedPrompt, model: &str) -> Result<u64, SlotFileError> {
    let name = display_name(path);
    let io = |doing| {
        let name = name.clone();
        move |source| SlotFileError::Io {
            doing,
            name,
            source,
        }
    };
    let rows = &saved.rows;
    let n = saved.tokens.len();
    let tokens: Vec<u8> = saved.tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    let mut views = vec![("tokens".to_string(), view(Dtype::U32, vec![n], &tokens)?)];
    for (i, (k, v)) in rows.layers.iter().enumerate() {
        let shape = vec![n, rows.row_bytes];
        views.push((format!("layers.{i}.k"), view(Dtype::U8, shape.clone(), k)?));
        views.push((format!("layers.{i}.v"), view(Dtype::U8, shape, v)?));
    }
    let state_bytes: Vec<[Vec<u8>; 2]> = (saved.state.iter().flat_map(|s| &s.layers))
        .map(|l| [f32_bytes(&l.conv), f32_bytes(&l.recurrent)])
        .collect();
    for (i, parts) in state_bytes.iter().enumerate() {
        for (part, bytes) in ["conv", "recurrent"].into_iter().zip(parts) {
            let shape = vec![bytes.len() / 4];
            views.push((format!("state.{i}.{part}"), view(Dtype::F32, shape, bytes)?));
        }
    }
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("version".to_string(), VERSION.to_string()),
        ("model".to_string(), model.to_string()),
        ("kv_encoding".to_string(), rows.encoding.clone()),
        ("row_bytes".to_string(), rows.row_bytes.to_string()),
        ("layers".to_string(), rows.layers.len().to_string()),
    ]);
    if saved.state.is_some() {
        metadata.insert("state_layers".into(), state_bytes.len().to_string());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create the directory of"))?;
    }
    // A name no client can give (they never start with a dot). Written straight from the
    // rows, with no second copy of them in memory.
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let written = safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| match e {
            safetensors::SafeTensorError::IoError(source) => SlotFileError::Io {
                doing: "write",
                name: name.clone(),
                source,
            },
            other => SlotFileError::Io {
                doing: "encode",
                name: name.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })
        .and_then(|()| std::fs::metadata(&tmp).map_err(io("write")));
    let bytes = match written {
        Ok(meta) => meta.len(),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, path).map_err(io("write"))?;
    Ok(bytes)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>, SlotFileError> {
    TensorView::new(dtype, shape, data).map_err(|e| SlotFileError::Io {
        doing: "encode",
        name: String::new(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The saved prompt in `path`, if it was saved for `model`; and the bytes read.
pub fn read(path: &Path, model: &str) -> Result<(SavedPrompt, u64), SlotFileError> {
    let name = display_name(path);
    let failed = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => SlotFileError::Missing(name.clone()),
        _ => SlotFileError::Io {
            doing: "read",
            name: name.clone(),
            source,
        },
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    // Mapped, not read: each layer's rows are then copied once, from the page cache into
    // their own buffer (a read into one buffer first doubled a restore's time).
    // SAFETY: the map is read-only; the server writes these files through a temporary file
    // renamed over the name, which leaves a mapped file as it was. Another process truncating
    // it under us is the one hazard, as for every mmap-based loader.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(failed)?;
    let unusable = |why: String| SlotFileError::Unusable {
        name: name.clone(),
        why,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| unusable(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| unusable(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |key: &str| meta.get(key).map(String::as_str).unwrap_or("");
    if field("format") != FORMAT || field("version") != VERSION {
        return Err(unusable(format!(
            "not a {FORMAT} file of version {VERSION}"
        )));
    }
    if field("model") != model {
        return Err(unusable(format!(
            "it was saved for {}, this server runs {model}",
            field("model")
        )));
    }
    let number = |key: &str| {
        field(key)
            .parse::<usize>()
            .map_err(|_| unusable(format!("its `{key}` is not a number")))
    };
    let (row_bytes, layers) = (number("row_bytes")?, number("layers")?);
    let tensor = |key: &str, dtype: Dtype, len: usize| {
        let t = file
            .tensor(key)
            .map_err(|_| unusable(format!("it has no `{key}`")))?;
        match t.dtype() == dtype && t.data().len() == len {
            true => Ok(t.data().to_vec()),
            false => Err(unusable(format!(
                "its `{key}` is not {len} bytes of {dtype:?}"
            ))),
        }
    };
    let token_bytes = file
        .tensor("tokens")
        .map_err(|_| unusable("it has no `tokens`".into()))?
        .data()
        .len();
    let n = token_bytes / 4;
    let tokens: Vec<u32> = tensor("tokens", Dtype::U32, n * 4)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut rows = KvRows::new(field("kv_encoding"), row_bytes, layers);
    for (i, (k, v)) in rows.layers.iter_mut().enumerate() {
        *k = tensor(&format!("layers.{i}.k"), Dtype::U8, n * row_bytes)?;
        *v = tensor(&format!("layers.{i}.v"), Dtype::U8, n * row_bytes)?;
    }
    // A recurrent state's parts are whatever length they were saved at: the engine checks
    // them against the model's layers.
    let values = |key: &str| -> Result<Vec<f32>, SlotFileError> {
        let len = file.tensor(key).map(|t| t.data().len()).unwrap_or(0);
        let bytes = tensor(key, Dtype::F32, len)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    };
    let state = match meta.contains_key("state_layers") {
        false => None,
        true => Some(SequenceState {
            pos: n,
            layers: (0..number("state_layers")?)
                .map(|i| {
                    Ok(LayerState {
                        conv: values(&format!("state.{i}.conv"))?,
                        recurrent: values(&format!("state.{i}.recurrent"))?,
                    })
                })
                .collect::<Result<_, SlotFileError>>()?,
        }),
    };
    Ok((
        SavedPrompt {
            tokens,
            rows,
            state,
        },
        bytes.len() as u64,
    ))
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> SavedPrompt {
        let rows = KvRows {
            encoding: "f16".into(),
            row_bytes: 4,
            layers: vec![((0..12).collect(), (100..112).collect()); 2],
        };
        SavedPrompt {
            tokens: vec![7, 70_000, 9],
            rows,
            state: None,
        }
    }

    #[test]
    fn a_saved_prompt_reads_back_for_its_model_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path(), "chat-1.bin").unwrap();
        let written = write(&path, &saved(), "qwen2 gguf 123").unwrap();
        let (back, read_bytes) = read(&path, "qwen2 gguf 123").unwrap();
        assert_eq!(back, saved());
        assert_eq!(read_bytes, written);
        let e = read(&path, "llama gguf 9").unwrap_err();
        assert!(e.to_string().contains("saved for qwen2 gguf 123"), "{e}");
        let missing = read(&dir.path().join("nope"), "m").unwrap_err();
        assert!(matches!(missing, SlotFileError::Missing(_)), "{missing}");
        std::fs::write(dir.path().join("junk"), b"not safetensors").unwrap();
        let junk = read(&dir.path().join("junk"), "m").unwrap_err();
        assert!(matches!(junk, SlotFileError::Unusable { .. }), "{junk}");
    }

    #[test]
    fn a_recurrent_state_is_saved_beside_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path(), "hybrid").unwrap();
        let mut with_state = saved();
        with_state.state = Some(SequenceState {
            pos: 3,
            layers: vec![
                LayerState {
                    conv: vec![0.5, -1.25],
                    recurrent: vec![3.0, 4.0, 1e-7],
                },
                LayerState {
                    conv: vec![],
                    recurrent: vec![2.0],
                },
            ],
        });
        write(&path, &with_state, "m").unwrap();
        assert_eq!(read(&path, "m").unwrap().0, with_state);
    }

    #[test]
    fn only_plain_file_names_are_taken() {
        let dir = Path::new("/srv/slots");
        assert_eq!(path_in(dir, "a_b-1.bin").unwrap(), dir.join("a_b-1.bin"));
        for bad in [
            "",
            "../etc/passwd",
            "a/b",
            ".hidden",
            "..",
            "a b",
            "é",
            &"x".repeat(201),
        ] {
            assert!(path_in(dir, bad).is_err(), "{bad:?}");
        }
    }
}
