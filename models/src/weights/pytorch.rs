//! Checkouts whose weights are only PyTorch checkpoints (`pytorch_model.bin`, or shards
//! `pytorch_model-0000N-of-0000M.bin` beside `pytorch_model.bin.index.json`: OPT, the first
//! GPT-J and BLOOM uploads and many fine-tunes of their time), rewritten once as safetensors
//! beside them (`model.safetensors`, or shards `model-0000N-of-0000M.safetensors` and their
//! `model.safetensors.index.json`), as TGI does at start-up: everything past the load then
//! maps safetensors, never a pickle. The checkpoints are read by candle's restricted
//! unpickler, which rebuilds tensors and runs no code; each tensor is read as it is written
//! (`LazyTensor`), so the memory a rewrite takes is one tensor's. The zip format is candle's
//! to read; the legacy one (before PyTorch 1.6) `pytorch_legacy`'s.
use super::pytorch_legacy::{self, LegacyCheckpoint};
use crate::error::{ModelError, Result};
use std::borrow::Cow;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

const SINGLE: &str = "pytorch_model.bin";
const INDEX: &str = "pytorch_model.bin.index.json";
const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";

/// The PyTorch checkpoints of a checkout directory: its index's shards, or `pytorch_model.bin`;
/// empty when it has neither.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX);
    if index.is_file() {
        let shards = super::shard_index::shard_names(&index)?;
        return Ok(shards.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join(SINGLE);
    Ok(match single.is_file() {
        true => vec![single],
        false => Vec::new(),
    })
}

/// The safetensors file a checkpoint becomes: `pytorch_model.bin` → `model.safetensors`,
/// `pytorch_model-00001-of-00002.bin` → `model-00001-of-00002.safetensors`.
fn safetensors_name(checkpoint: &str) -> String {
    let stem = checkpoint.strip_suffix(".bin").unwrap_or(checkpoint);
    let stem = stem.strip_prefix("pytorch_").unwrap_or(stem);
    format!("{stem}.safetensors")
}

/// Whether `dir` has safetensors weights of its own (written by `convert_checkout` or not).
pub fn has_safetensors(dir: &Path) -> bool {
    dir.join("model.safetensors").is_file() || dir.join(SAFETENSORS_INDEX).is_file()
}

/// Whether `file` (a name at a checkout's top) is a PyTorch checkpoint or its index.
pub fn is_checkpoint_file(file: &str) -> bool {
    file == SINGLE || file == INDEX || file.starts_with("pytorch_model-") && file.ends_with(".bin")
}

/// Rewrite `dir`'s PyTorch checkpoints as safetensors where it has no safetensors weights of
/// its own (`model.safetensors` or its index): whether it did. A shard already converted (an
/// interrupted run's) is kept; each is written to a `.partial` file renamed into place, the
/// index last, so a directory is never left looking whole while it is not.
pub fn convert_checkout(dir: &Path) -> Result<bool> {
    if has_safetensors(dir) {
        return Ok(false);
    }
    let checkpoints = checkpoint_files(dir)?;
    if checkpoints.is_empty() {
        return Ok(false);
    }
    let mut weight_map = serde_json::Map::new();
    for checkpoint in &checkpoints {
        let name = checkpoint
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(SINGLE);
        let dest = dir.join(safetensors_name(name));
        let names = match dest.is_file() {
            true => saved_names(&dest)?,
            false => {
                eprintln!(
                    "converting {} to {} (once: PyTorch checkpoints are read as safetensors)",
                    checkpoint.display(),
                    dest.display()
                );
                convert_file(checkpoint, &dest)?
            }
        };
        let file = safetensors_name(name);
        for n in names {
            weight_map.insert(n, file.clone().into());
        }
    }
    // One checkpoint became `model.safetensors`, read without an index.
    if checkpoints.len() > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        write_atomically(&dir.join(SAFETENSORS_INDEX), index.to_string().as_bytes())?;
    }
    Ok(true)
}

/// The tensor names a safetensors file holds.
/// The file is mapped, not read: only its header's pages are touched (a shard is gigabytes).
fn saved_names(path: &Path) -> Result<Vec<String>> {
    let io = |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: a read-only map of a file candor wrote and does not modify while it is read
    // (as every loader here maps model files).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&map).map_err(|e| ModelError::BadSafetensors {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(meta.tensors().into_keys().collect())
}

/// One checkpoint written as a safetensors file: its tensor names. Tensors that are one view
/// of one storage (a head tied to the embeddings, saved under both names) are written once,
/// under the name that is not the head's, as transformers saves them.
fn convert_file(checkpoint: &Path, dest: &Path) -> Result<Vec<String>> {
    let bad = |reason: String| ModelError::BadCheckpoint {
        path: checkpoint.display().to_string(),
        reason,
    };
    let pth = Checkpoint::open(checkpoint)
        .map_err(|e| bad(format!("not a PyTorch checkpoint candor can read: {e}")))?;
    let mut names: Vec<&String> = pth.tensor_infos().keys().collect();
    // Heads last, so the embeddings keep a storage they share.
    names.sort_by_key(|n| (n.contains("lm_head"), n.to_string()));
    let mut seen = std::collections::HashSet::new();
    let failure = RefCell::new(None);
    let mut tensors = Vec::new();
    for name in names {
        let info = &pth.tensor_infos()[name];
        let storage = (
            info.path.clone(),
            info.layout.start_offset(),
            info.layout.dims().to_vec(),
            info.layout.stride().to_vec(),
        );
        if !seen.insert(storage) {
            continue;
        }
        tensors.push((
            name.clone(),
            LazyTensor {
                pth: &pth,
                name: name.clone(),
                dtype: written_dtype(info.dtype),
                shape: info.layout.dims().to_vec(),
                failure: &failure,
            },
        ));
    }
    if tensors.is_empty() {
        return Err(bad("holds no tensors".into()));
    }
    let saved: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    // safetensors writes a sibling temporary file renamed into place: `dest` appears whole.
    safetensors::serialize_to_file(tensors, None, dest).map_err(|e| {
        ModelError::BadSafetensors {
            path: dest.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    if let Some(reason) = failure.into_inner() {
        // Written with zeros where a tensor could not be read: not kept.
        let _ = std::fs::remove_file(dest);
        return Err(bad(reason));
    }
    Ok(saved)
}

/// The type a tensor is written in: f64 values (kept by some old checkpoints) as f32, which
/// candor reads; the others as they are.
fn written_dtype(dtype: candle_core::DType) -> candle_core::DType {
    match dtype {
        candle_core::DType::F64 => candle_core::DType::F32,
        other => other,
    }
}

/// A checkpoint in either of PyTorch's formats.
enum Checkpoint {
    Zip(candle_core::pickle::PthTensors),
    Legacy(LegacyCheckpoint),
}

impl Checkpoint {
    fn open(path: &Path) -> candle_core::Result<Self> {
        let mut head = [0u8; 16];
        let read = std::io::Read::read(&mut std::fs::File::open(path)?, &mut head)?;
        match pytorch_legacy::is_legacy(&head[..read]) {
            true => LegacyCheckpoint::open(path).map(Checkpoint::Legacy),
            false => candle_core::pickle::PthTensors::new(path, None).map(Checkpoint::Zip),
        }
    }

    fn tensor_infos(&self) -> &std::collections::HashMap<String, candle_core::pickle::TensorInfo> {
        match self {
            Checkpoint::Zip(z) => z.tensor_infos(),
            Checkpoint::Legacy(l) => l.tensor_infos(),
        }
    }

    fn get(&self, name: &str) -> candle_core::Result<Option<candle_core::Tensor>> {
        match self {
            Checkpoint::Zip(z) => z.get(name),
            Checkpoint::Legacy(l) => l.get(name),
        }
    }
}

/// One tensor of a checkpoint, read from it only when its bytes are written: a shard is
/// rewritten holding one tensor at a time, not the whole shard (a single-file GPT-J-6B is
/// 24 GB). A tensor that cannot be read is written as zeros and its error kept in `failure`,
/// for the caller to drop the file (the writer's interface has no error to give).
struct LazyTensor<'a> {
    pth: &'a Checkpoint,
    name: String,
    dtype: candle_core::DType,
    shape: Vec<usize>,
    failure: &'a RefCell<Option<String>>,
}

impl LazyTensor<'_> {
    fn read(&self) -> std::result::Result<Vec<u8>, String> {
        let t = self
            .pth
            .get(&self.name)
            .map_err(|e| e.to_string())?
            .ok_or("listed but not read")?;
        let t = t
            .to_dtype(self.dtype)
            .and_then(|t| t.contiguous())
            .map_err(|e| e.to_string())?;
        Ok(safetensors::View::data(&&t).into_owned())
    }
}

impl safetensors::View for LazyTensor<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.into()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.read() {
            Ok(bytes) if bytes.len() == self.data_len() => Cow::Owned(bytes),
            outcome => {
                let reason = match outcome {
                    Err(e) => e,
                    Ok(bytes) => {
                        format!("{} bytes where {} were due", bytes.len(), self.data_len())
                    }
                };
                self.failure
                    .borrow_mut()
                    .get_or_insert(format!("{}: {reason}", self.name));
                Cow::Owned(vec![0; self.data_len()])
            }
        }
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_in_bytes()
    }
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| ModelError::Io {
        path: to.display().to_string(),
        source,
    })
}

fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let partial = partial_path(dest);
    std::fs::write(&partial, bytes).map_err(|source| ModelError::Io {
        path: partial.display().to_string(),
        source,
    })?;
    rename(&partial, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_named_as_transformers_names_their_safetensors() {
        assert_eq!(safetensors_name("pytorch_model.bin"), "model.safetensors");
        assert_eq!(
            safetensors_name("pytorch_model-00002-of-00003.bin"),
            "model-00002-of-00003.safetensors"
        );
    }
}
