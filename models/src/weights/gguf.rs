//! GGUF v1-v3 files: header and metadata (`gguf_header`), tensor data from a memory map: the
//! types the CPU kernels read in place (MXFP4 and IQ4 among them: `mxfp4`, `iq4`) are copied
//! once into a huge-page arena (`arena`), the rest into each weight's own storage; the map is
//! dropped when loading ends. A split model's later files are opened with its first
//! (`split`).
use super::arena::{Arena, Placement};
use super::{BlockType, HostWeight, MappedBlocks, WeightSource};
use candle_core::quantized::GgmlDType;

/// Quantized types used in place (the CPU backend's own kernels read them), from the arena.
const MAPPED_TYPES: [GgmlDType; 10] = [
    GgmlDType::Q4_0,
    GgmlDType::Q5_0,
    GgmlDType::Q8_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_1,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];
use super::gguf_header::{self, OwnInfo};
use super::split;
use crate::error::{ModelError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Device;
use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

pub struct GgufFile {
    path: String,
    map: std::sync::Arc<memmap2::Mmap>,
    content: Content,
    /// The tensors of block types candle has none for (MXFP4 and the IQ types).
    own: HashMap<String, OwnInfo>,
    /// The tokenizer's arrays (tokens, scores, types, merges), kept apart from `content` so they
    /// can be dropped once the tokenizer is built (`take_tokenizer_metadata`): for a 262k-token
    /// vocabulary they are ~25 MB of `Value`s that would otherwise stay resident while the
    /// weights load and raise the peak by as much.
    vocabulary: std::sync::Mutex<HashMap<String, Value>>,
    /// Lengths of those arrays, which the model config reads (vocabulary size).
    vocabulary_lens: HashMap<String, usize>,
    /// The in-place tensors, copied out of `map` at the first `get` (see `arena`); None inside
    /// when that copy could not be made, and those tensors are then used from `map`.
    arena: std::sync::OnceLock<Option<Arena>>,
    /// Dequantize every tensor to f32 on load (the reference path for correctness checks).
    pub dequantize: bool,
    /// The other files of a split model (`gguf-split`: `…-00002-of-00003.gguf` on), opened
    /// with the first, which holds the metadata; empty for a one-file GGUF.
    parts: Vec<GgufFile>,
}

/// The tokenizer's per-token arrays: by far the largest metadata.
const VOCABULARY_KEYS: [&str; 4] = [
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
];

impl GgufFile {
    /// Open a GGUF file; the first file of a split model opens its other parts too (a later
    /// part is refused, naming the first).
    pub fn open(path: &Path, dequantize: bool) -> Result<Self> {
        let mut file = Self::open_one(path, dequantize)?;
        file.parts = split::open_parts(path, &file, dequantize)?;
        Ok(file)
    }

    fn open_one(path: &Path, dequantize: bool) -> Result<Self> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
            path: shown.clone(),
            source,
        })?;
        // SAFETY: the map is read-only; a file truncated underneath us is the one hazard of
        // mmap, accepted here as every mmap-based loader (llama.cpp, candle) does.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ModelError::Io {
            path: shown.clone(),
            source,
        })?;
        let header = gguf_header::read(&map).map_err(|reason| ModelError::BadGguf {
            path: shown.clone(),
            reason,
        })?;
        let (mut content, own) = (header.content, header.own);
        let vocabulary: HashMap<String, Value> = VOCABULARY_KEYS
            .iter()
            .filter_map(|&k| Some((k.to_string(), content.metadata.remove(k)?)))
            .collect();
        let vocabulary_lens = vocabulary
            .iter()
            .filter_map(|(k, v)| match v {
                Value::Array(a) => Some((k.clone(), a.len())),
                _ => None,
            })
            .collect();
        Ok(GgufFile {
            path: shown,
            map: std::sync::Arc::new(map),
            content,
            own,
            vocabulary: std::sync::Mutex::new(vocabulary),
            vocabulary_lens,
            arena: std::sync::OnceLock::new(),
            dequantize,
            parts: Vec::new(),
        })
    }

    /// A split model's later part as a file of its own: its tensors (its metadata is the
    /// `split.*` keys), for the first part to serve (`split::open_parts`).
    pub(super) fn open_part(path: &Path, dequantize: bool) -> Result<Self> {
        Self::open_one(path, dequantize)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The metadata without the tokenizer's large arrays (see `take_tokenizer_metadata`).
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// All metadata, the tokenizer's arrays included, for building the tokenizer. The arrays
    /// are moved out, not copied: a second call returns the metadata without them.
    pub fn take_tokenizer_metadata(&self) -> HashMap<String, Value> {
        let mut all = self.content.metadata.clone();
        // A poisoned lock only means another thread panicked while taking: take what is left.
        let mut vocabulary = self
            .vocabulary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.extend(vocabulary.drain());
        all
    }

    pub fn tensor_names(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        let here = self.content.tensor_infos.keys().chain(self.own.keys());
        Box::new(here.chain(self.parts.iter().flat_map(|p| p.tensor_names())))
    }

    /// Elements over all tensors (the model's parameter count).
    pub fn parameter_count(&self) -> u64 {
        self.content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count() as u64)
            .chain(
                self.own
                    .values()
                    .map(|t| t.shape.iter().product::<usize>() as u64),
            )
            .sum::<u64>()
            + self.parts.iter().map(|p| p.parameter_count()).sum::<u64>()
    }

    /// The file's quantization as llama.cpp names it (`general.file_type`), e.g. `Q4_K_M`.
    pub fn file_type_name(&self) -> Option<&'static str> {
        Some(match self.get_usize("general.file_type")? {
            0 => "F32",
            1 => "F16",
            2 => "Q4_0",
            3 => "Q4_1",
            7 => "Q8_0",
            8 => "Q5_0",
            9 => "Q5_1",
            10 => "Q2_K",
            11 => "Q3_K_S",
            12 => "Q3_K_M",
            13 => "Q3_K_L",
            14 => "Q4_K_S",
            15 => "Q4_K_M",
            16 => "Q5_K_S",
            17 => "Q5_K_M",
            18 => "Q6_K",
            19 => "IQ2_XXS",
            20 => "IQ2_XS",
            21 => "Q2_K_S",
            22 => "IQ3_XS",
            23 => "IQ3_XXS",
            24 => "IQ1_S",
            25 => "IQ4_NL",
            26 => "IQ3_S",
            27 => "IQ3_M",
            28 => "IQ2_S",
            29 => "IQ2_M",
            30 => "IQ4_XS",
            31 => "IQ1_M",
            32 => "BF16",
            36 => "TQ1_0",
            37 => "TQ2_0",
            38 => "MXFP4_MOE",
            _ => return None,
        })
    }

    pub fn architecture(&self) -> Result<String> {
        self.get_str("general.architecture")
            .ok_or_else(|| self.bad("missing `general.architecture`"))
    }

    /// `ModelError::BadGguf` for this file.
    pub(super) fn bad(&self, reason: &str) -> ModelError {
        ModelError::BadGguf {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.metadata().get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// A numeric metadata value of any integer or float type.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        Some(match self.metadata().get(key)? {
            Value::U8(v) => *v as f64,
            Value::I8(v) => *v as f64,
            Value::U16(v) => *v as f64,
            Value::I16(v) => *v as f64,
            Value::U32(v) => *v as f64,
            Value::I32(v) => *v as f64,
            Value::U64(v) => *v as f64,
            Value::I64(v) => *v as f64,
            Value::F32(v) => *v as f64,
            Value::F64(v) => *v,
            _ => return None,
        })
    }

    pub fn get_usize(&self, key: &str) -> Option<usize> {
        self.get_f64(key)
            .filter(|v| *v >= 0.0 && v.fract() == 0.0)
            .map(|v| v as usize)
    }

    /// A boolean metadata value (or a number: 0 is false).
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.metadata().get(key)? {
            Value::Bool(b) => Some(*b),
            _ => self.get_f64(key).map(|v| v != 0.0),
        }
    }

    /// An array of booleans (llama.cpp's per-layer flags, e.g. `attention.recurrent_layers`).
    pub fn get_bool_array(&self, key: &str) -> Option<Vec<bool>> {
        let Some(Value::Array(a)) = self.metadata().get(key) else {
            return None;
        };
        a.iter()
            .map(|v| match v {
                Value::Bool(b) => Some(*b),
                _ => None,
            })
            .collect()
    }

    pub fn require_usize(&self, key: &str) -> Result<usize> {
        self.get_usize(key)
            .ok_or_else(|| self.bad(&format!("missing or non-integer metadata `{key}`")))
    }

    /// An array of non-negative integers (llama.cpp's per-layer values, e.g. LFM2's
    /// `attention.head_count_kv`: 0 for its layers without attention).
    pub fn get_usize_array(&self, key: &str) -> Option<Vec<usize>> {
        let Some(Value::Array(a)) = self.metadata().get(key) else {
            return None;
        };
        a.iter()
            .map(|v| {
                v.to_u64()
                    .ok()
                    .or_else(|| v.to_i64().ok().and_then(|i| u64::try_from(i).ok()))
                    .or_else(|| v.to_i32().ok().and_then(|i| u64::try_from(i).ok()))
                    .map(|u| u as usize)
            })
            .collect()
    }

    /// An array of numbers as f32 (llama.cpp's per-layer values, e.g. Apertus's xIELU).
    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        let Some(Value::Array(a)) = self.metadata().get(key) else {
            return None;
        };
        a.iter()
            .map(|v| {
                v.to_f32()
                    .ok()
                    .or_else(|| v.to_f64().ok().map(|f| f as f32))
            })
            .collect()
    }

    pub fn array_len(&self, key: &str) -> Option<usize> {
        match self.metadata().get(key) {
            Some(Value::Array(a)) => Some(a.len()),
            _ => self.vocabulary_lens.get(key).copied(),
        }
    }
}

type TensorInfo = candle_core::quantized::gguf_file::TensorInfo;

/// Bytes of a tensor's blocks in the file.
fn tensor_bytes(info: &TensorInfo) -> usize {
    info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size()
}

/// Whether the CPU kernels read this tensor in place: a `MAPPED_TYPES` type with whole blocks
/// in every row.
fn used_in_place(info: &TensorInfo) -> bool {
    let bs = info.ggml_dtype.block_size();
    MAPPED_TYPES.contains(&info.ggml_dtype)
        && info.shape.elem_count().is_multiple_of(bs)
        && info
            .shape
            .dims()
            .last()
            .is_some_and(|k| k.is_multiple_of(bs))
}

impl GgufFile {
    /// Where a tensor's blocks start in the file.
    fn file_offset(&self, info: &TensorInfo) -> usize {
        (self.content.tensor_data_offset + info.offset) as usize
    }

    /// The tensors used in place, with their file ranges.
    fn in_place_tensors(&self) -> Vec<Placement> {
        let mut out: Vec<Placement> = self
            .content
            .tensor_infos
            .iter()
            .filter(|(_, info)| used_in_place(info))
            .map(|(name, info)| Placement {
                name: name.clone(),
                file_offset: self.file_offset(info),
                len: tensor_bytes(info),
            })
            .collect();
        out.extend(self.own.iter().filter_map(|(name, info)| {
            Some(Placement {
                name: name.clone(),
                file_offset: self.own_offset(info),
                len: info.ty.tensor_bytes(&info.shape)?,
            })
        }));
        // File order: the copy reads the file front to back.
        out.sort_by_key(|p| p.file_offset);
        out
    }

    fn arena(&self) -> Option<&Arena> {
        self.arena
            .get_or_init(|| {
                Arena::build(&self.map, &self.in_place_tensors(), |offset, len| {
                    self.release_range(offset, len)
                })
            })
            .as_ref()
    }

    /// Drop the mapped pages of a tensor once its data was copied out, so resident memory
    /// holds each weight once (its copy), not twice (copy + mapped file pages).
    fn release_pages(&self, info: &TensorInfo) {
        self.release_range(self.file_offset(info), tensor_bytes(info));
    }

    /// Drop the mapped pages of `len` bytes at `start` (see `release_pages`).
    fn release_range(&self, start: usize, len: usize) {
        #[cfg(unix)]
        {
            let page = 4096;
            let aligned = start / page * page;
            let len = (start + len).min(self.map.len()).saturating_sub(aligned);
            // SAFETY: the map is a read-only file mapping; MADV_DONTNEED only drops pages that
            // the kernel re-reads from the file if touched again. No reference into the range
            // outlives this call (the tensor was copied).
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, aligned, len)
            };
        }
        #[cfg(not(unix))]
        let _ = (start, len);
    }
}

/// The tensor holding every expert of a layer and the expert's index, for a per-expert name
/// (`blk.L.ffn_up_exps.E.weight`, `names::expert`): llama.cpp stores a layer's experts as one
/// `[experts, rows, cols]` tensor.
/// A per-expert bias (`blk.L.ffn_up_exps.E.bias`, gpt-oss) likewise: `[experts, rows]`.
fn expert_of(name: &str) -> Option<(String, usize)> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let (whole, e) = stem.rsplit_once('.')?;
    if !whole.ends_with("_exps") || !matches!(suffix, "weight" | "bias") {
        return None;
    }
    Some((format!("{whole}.{suffix}"), e.parse().ok()?))
}

/// The name early Mixtral GGUFs gave expert E's tensor (`blk.L.ffn_up.E.weight`) for a
/// per-expert name (`blk.L.ffn_up_exps.E.weight`).
fn legacy_expert(name: &str) -> Option<String> {
    let (whole, e) = expert_of(name)?;
    let stem = whole.strip_suffix("_exps.weight")?;
    Some(format!("{stem}.{e}.weight"))
}

/// Where one expert's tensor lies in a tensor of every expert of a layer.
struct ExpertAt<'a> {
    info: &'a TensorInfo,
    /// The whole tensor's name.
    whole: String,
    /// Where the expert's part starts, in bytes from the whole tensor's start, and its bytes.
    offset: usize,
    bytes: usize,
    /// The part's shape.
    dims: Vec<usize>,
}

impl GgufFile {
    /// Where the per-expert tensor `name` lies in the whole-experts tensor behind it; None
    /// when `name` is not one or is out of range. A gate or up projection with no tensor of
    /// its own is read from llama.cpp's joined `ffn_gate_up_exps` (its converter's
    /// `--fuse-gate-up-exps`; Granite's swash MoE converter always): each expert's gate rows,
    /// then its up rows.
    fn expert_info(&self, name: &str) -> Option<ExpertAt<'_>> {
        let (whole, e) = expert_of(name)?;
        let Some(info) = self.content.tensor_infos.get(&whole) else {
            return self.joined_gate_up_expert(&whole, e);
        };
        let dims = info.shape.dims();
        let per_expert: usize = dims.iter().skip(1).product();
        let whole_blocks = per_expert.is_multiple_of(info.ggml_dtype.block_size());
        // Weights `[experts, rows, cols]`, biases `[experts, rows]`.
        let rank = if whole.ends_with(".bias") { 2 } else { 3 };
        let bytes = tensor_bytes(info) / dims.first().copied().unwrap_or(1).max(1);
        (dims.len() == rank && e < dims[0] && whole_blocks).then(|| ExpertAt {
            info,
            whole,
            offset: e * bytes,
            bytes,
            dims: dims[1..].to_vec(),
        })
    }

    /// Expert `e`'s gate or up projection (`whole`: `blk.L.ffn_gate_exps.weight` or
    /// `ffn_up_exps`) in the layer's `ffn_gate_up_exps` (`[experts, 2 · ffn, cols]`).
    fn joined_gate_up_expert(&self, whole: &str, e: usize) -> Option<ExpertAt<'_>> {
        let (layer, half) = match whole.strip_suffix(".ffn_gate_exps.weight") {
            Some(layer) => (layer, 0),
            None => (whole.strip_suffix(".ffn_up_exps.weight")?, 1),
        };
        let joined = format!("{layer}.ffn_gate_up_exps.weight");
        let info = self.content.tensor_infos.get(&joined)?;
        let dims = info.shape.dims();
        let &[experts, rows, cols] = dims else {
            return None;
        };
        // Gate's rows, then up's: an even count, each half whole blocks.
        let part = (rows / 2) * cols;
        let halves = rows.is_multiple_of(2) && part.is_multiple_of(info.ggml_dtype.block_size());
        if e >= experts || !halves {
            return None;
        }
        let per_expert = tensor_bytes(info) / experts;
        Some(ExpertAt {
            info,
            whole: joined,
            offset: e * per_expert + half * per_expert / 2,
            bytes: per_expert / 2,
            dims: vec![rows / 2, cols],
        })
    }

    /// Expert `e` of a whole-experts tensor, `[rows, cols]`: its blocks in place where the
    /// kernels read them so, a copy of its blocks otherwise (never the whole tensor per
    /// expert).
    fn expert_slice(&self, name: &str) -> Result<Option<HostWeight>> {
        let Some(at) = self.expert_info(name) else {
            return Ok(None);
        };
        let (info, whole) = (at.info, &at.whole);
        let in_place = !self.dequantize && used_in_place(info);
        let (map, start) = match in_place {
            true => self.in_place_start(whole, self.file_offset(info)),
            false => (self.map.clone(), self.file_offset(info)),
        };
        let dtype = BlockType::Ggml(info.ggml_dtype);
        let blocks = MappedBlocks::new(map, start + at.offset, at.bytes, dtype, at.dims)
            .ok_or_else(|| {
                self.bad(&format!(
                    "tensor `{whole}` extends past the end of the file"
                ))
            })?;
        if in_place {
            return Ok(Some(HostWeight::Mapped(blocks)));
        }
        self.loaded(whole, blocks.to_qtensor()?).map(Some)
    }

    /// Where the blocks of tensor `name` (at `file_offset` in the file), read in place, start:
    /// in the huge-page arena, or in the mapped file where the arena could not be made.
    fn in_place_start(
        &self,
        name: &str,
        file_offset: usize,
    ) -> (std::sync::Arc<memmap2::Mmap>, usize) {
        match self.arena().and_then(|a| Some((a, a.offset(name)?))) {
            Some((arena, at)) => (arena.map.clone(), at),
            None => (self.map.clone(), file_offset),
        }
    }

    /// A tensor read out of the file as `q` (`HostWeight::from_blocks`).
    fn loaded(&self, name: &str, q: candle_core::quantized::QTensor) -> Result<HostWeight> {
        HostWeight::from_blocks(name, q, self.dequantize)
    }
}

impl GgufFile {
    /// Where an own-type tensor's blocks start in the file.
    fn own_offset(&self, info: &OwnInfo) -> usize {
        (self.content.tensor_data_offset + info.offset) as usize
    }

    /// The blocks `skip` bytes into own-type tensor `name` (`info`), of `shape`: read in place
    /// (from the arena, or the mapped file where it could not be made), or in f32 when the
    /// file is opened dequantized (their mapped pages then dropped once read).
    fn own_weight(
        &self,
        name: &str,
        info: &OwnInfo,
        skip: usize,
        shape: Vec<usize>,
    ) -> Result<HostWeight> {
        let Some(len) = info.ty.tensor_bytes(&shape) else {
            return Err(self.bad(&format!(
                "{:?} tensor `{name}` of shape {shape:?}: rows are not whole blocks",
                info.ty
            )));
        };
        let (map, start) = match self.dequantize {
            false => self.in_place_start(name, self.own_offset(info)),
            true => (self.map.clone(), self.own_offset(info)),
        };
        let blocks =
            MappedBlocks::new(map, start + skip, len, info.ty, shape).ok_or_else(|| {
                self.bad(&format!("tensor `{name}` extends past the end of the file"))
            })?;
        if !self.dequantize {
            return Ok(HostWeight::Mapped(blocks));
        }
        let bad = |e: ModelError| self.bad(&format!("tensor `{name}`: {e}"));
        let weight = match info.ty {
            // MXFP4 dequantized as the Q5_0 blocks it is exactly.
            BlockType::Mxfp4 => self.loaded(name, blocks.to_qtensor().map_err(bad)?)?,
            _ => HostWeight::Dense {
                tensor: blocks.to_f32().map_err(bad)?,
                source: crate::backend::WeightDtype::Q8_0,
            },
        };
        self.release_range(start + skip, len);
        Ok(weight)
    }

    /// The own-type tensor `name`, or expert E of a stacked one (`[experts, rows, cols]`, for
    /// a per-expert name); None when neither is in the file.
    fn own_get(&self, name: &str) -> Result<Option<HostWeight>> {
        if let Some(info) = self.own.get(name) {
            return self.own_weight(name, info, 0, info.shape.clone()).map(Some);
        }
        let Some((whole, e, info)) = self.own_expert(name) else {
            return Ok(None);
        };
        let per = info.shape[1..].to_vec();
        let skip = e * info.ty.tensor_bytes(&per).unwrap_or(0);
        self.own_weight(&whole, info, skip, per).map(Some)
    }

    /// The stacked own-type tensor behind a per-expert name and the expert's index.
    fn own_expert(&self, name: &str) -> Option<(String, usize, &OwnInfo)> {
        let (whole, e) = expert_of(name)?;
        let info = self.own.get(&whole)?;
        (info.shape.len() == 3 && e < info.shape[0]).then_some((whole, e, info))
    }

    /// The file's name for a canonical tensor name, where an architecture's converter chose
    /// another: gpt-oss's norm before the FFN (`ffn_norm`) is `post_attention_norm`, HF's name
    /// for it carried over.
    fn file_name<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        let renamed = match name.strip_prefix("blk.") {
            Some(rest) if rest.ends_with(".ffn_norm.weight") => {
                match self.get_str("general.architecture").as_deref() {
                    Some("gpt-oss") => Some(name.replace(".ffn_norm.", ".post_attention_norm.")),
                    // Falcon-H1's converter maps the whole HF name (`pre_ff_layernorm.weight`)
                    // to a tensor name without its suffix.
                    Some("falcon-h1") if !self.holds(name) => {
                        name.strip_suffix(".weight").map(str::to_string)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        renamed.map_or(std::borrow::Cow::Borrowed(name), std::borrow::Cow::Owned)
    }
}

impl WeightSource for GgufFile {
    fn get(&self, name: &str) -> Result<Option<HostWeight>> {
        let name = &*self.file_name(name);
        match self.parts.iter().find(|p| p.holds(name)) {
            Some(part) if !self.holds(name) => part.get_named(name),
            _ => self.get_named(name),
        }
    }

    fn contains(&self, name: &str) -> bool {
        let name = &*self.file_name(name);
        self.holds(name) || self.parts.iter().any(|p| p.holds(name))
    }
}

impl GgufFile {
    /// The tensor with this name in this file (the file's own spelling of it).
    fn get_named(&self, name: &str) -> Result<Option<HostWeight>> {
        if let Some(w) = self.own_get(name)? {
            return Ok(Some(w));
        }
        let Some(info) = self.content.tensor_infos.get(name) else {
            if let Some(legacy) = legacy_expert(name).filter(|l| self.holds(l)) {
                // Early Mixtral GGUFs: one tensor per expert.
                return self.get_named(&legacy);
            }
            return self.expert_slice(name);
        };
        // Block types the CPU kernels read in place are served from the huge-page arena (or
        // the mapped file where the arena could not be made).
        if !self.dequantize && used_in_place(info) {
            let (map, offset) = self.in_place_start(name, self.file_offset(info));
            let dims = info.shape.dims().to_vec();
            let dtype = BlockType::Ggml(info.ggml_dtype);
            let blocks = MappedBlocks::new(map, offset, tensor_bytes(info), dtype, dims)
                .ok_or_else(|| {
                    self.bad(&format!("tensor `{name}` extends past the end of the file"))
                })?;
            return Ok(Some(HostWeight::Mapped(blocks)));
        }
        let q = info
            .read(
                &mut Cursor::new(&self.map[..]),
                self.content.tensor_data_offset,
                &Device::Cpu,
            )
            .map_err(|e| {
                self.bad(&format!(
                    "tensor `{name}`: {}",
                    crate::error::candle_message(&e)
                ))
            })?;
        self.release_pages(info);
        self.loaded(name, q).map(Some)
    }

    /// Whether this file (not its other parts) holds the tensor of this name.
    fn holds(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
            || self.own.contains_key(name)
            || self.own_expert(name).is_some()
            || self.expert_info(name).is_some()
            || legacy_expert(name).is_some_and(|l| self.content.tensor_infos.contains_key(&l))
    }
}

/// A GGUF of metadata alone, read back (the file is gone once read: the map is kept), for the
/// tests of what a file's metadata says.
#[cfg(test)]
pub(crate) fn metadata_only(name: &str, meta: &[(&str, Value)]) -> GgufFile {
    let path = std::env::temp_dir().join(format!("candor-{}-{name}.gguf", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    let meta: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    candle_core::quantized::gguf_file::write(&mut file, &meta, &[]).unwrap();
    drop(file);
    let gguf = GgufFile::open(&path, false).unwrap();
    let _ = std::fs::remove_file(&path);
    gguf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_with_vocabulary(path: &Path) {
        let tokens = Value::Array(vec![Value::String("a".into()), Value::String("b".into())]);
        let arch = Value::String("llama".into());
        let mut f = std::fs::File::create(path).unwrap();
        candle_core::quantized::gguf_file::write(
            &mut f,
            &[
                ("general.architecture", &arch),
                ("tokenizer.ggml.tokens", &tokens),
            ],
            &[],
        )
        .unwrap();
    }

    #[test]
    fn the_vocabulary_is_kept_apart_and_taken_once() {
        let path = std::env::temp_dir().join(format!("candor-vocab-{}.gguf", std::process::id()));
        write_with_vocabulary(&path);
        let g = GgufFile::open(&path, false).unwrap();
        let _ = std::fs::remove_file(&path);
        // Out of the resident metadata, but its length is still known (vocabulary size).
        assert!(!g.metadata().contains_key("tokenizer.ggml.tokens"));
        assert_eq!(g.array_len("tokenizer.ggml.tokens"), Some(2));
        assert_eq!(g.architecture().unwrap(), "llama");
        let all = g.take_tokenizer_metadata();
        assert!(matches!(all.get("tokenizer.ggml.tokens"), Some(Value::Array(a)) if a.len() == 2));
        assert!(all.contains_key("general.architecture"));
        // Taken: a second call has only the rest.
        assert!(!g
            .take_tokenizer_metadata()
            .contains_key("tokenizer.ggml.tokens"));
        assert_eq!(g.array_len("tokenizer.ggml.tokens"), Some(2));
    }
}
