//! PyTorch's legacy checkpoint format (`torch.save` before 1.6, or with
//! `_use_new_zipfile_serialization=False`: many 2019-2020 uploads), which candle's reader,
//! made for the zip format, does not open. The file is five pickles one after another (a magic
//! number, the protocol version, the saving system's sizes, the state dict, the list of its
//! storages' keys), then each storage in that order: its element count (8 bytes, little
//! endian) and its elements. The pickles are read by candle's restricted unpickler (no code
//! runs); the storages are read in place from a map of the file.
use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The first pickle of a legacy file: protocol 2, the magic number 0x1950a86a20f9469cfc6c as a
/// 10-byte LONG1, STOP. Matched as bytes (it overflows the unpickler's 64-bit integers).
const MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];
/// The protocol version legacy files carry.
const PROTOCOL_VERSION: i64 = 1001;
/// The directory candle's tensor infos name storages under (`DIR/key`).
const DIR: &str = "legacy";

/// Whether `bytes` begin a legacy checkpoint.
pub fn is_legacy(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// A legacy checkpoint's tensors, read lazily from its map.
pub struct LegacyCheckpoint {
    map: memmap2::Mmap,
    infos: HashMap<String, TensorInfo>,
    /// Each storage key's bytes in the file: (start, length).
    storages: HashMap<String, (usize, usize)>,
}

fn fail(reason: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("legacy PyTorch checkpoint: {reason}"))
}

/// The next pickle of `bytes` from `at`, and where it ends.
fn next_pickle(bytes: &[u8], at: usize) -> candle_core::Result<(Object, usize)> {
    let mut reader = bytes.get(at..).ok_or_else(|| fail("cut short"))?;
    let len = reader.len();
    let mut stack = Stack::empty();
    stack.read_loop(&mut reader)?;
    let object = stack.finalize()?;
    Ok((object, at + len - reader.len()))
}

impl LegacyCheckpoint {
    pub fn open(path: &Path) -> candle_core::Result<Self> {
        let file = std::fs::File::open(path)?;
        // SAFETY: a read-only map of a checkpoint the caller does not modify while it is read.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        if !is_legacy(&map) {
            return Err(fail("no legacy magic number"));
        }
        let (version, at) = next_pickle(&map, MAGIC.len())?;
        if version.int_or_long().ok() != Some(PROTOCOL_VERSION) {
            return Err(fail("not protocol version 1001"));
        }
        let (_system, at) = next_pickle(&map, at)?;
        let (state, at) = next_pickle(&map, at)?;
        let (keys, mut at) = next_pickle(&map, at)?;
        let Object::Dict(entries) = state else {
            return Err(fail("the saved object is not a state dict"));
        };
        let mut infos = HashMap::new();
        for (name, value) in entries {
            if let Some(info) = value.into_tensor_info(name, Path::new(DIR))? {
                infos.insert(info.name.clone(), info);
            }
        }
        let key_of = |info: &TensorInfo| {
            info.path
                .trim_start_matches(DIR)
                .trim_start_matches('/')
                .to_string()
        };
        let dtypes: HashMap<String, DType> = infos.values().map(|i| (key_of(i), i.dtype)).collect();
        let keys = match keys {
            Object::List(keys) | Object::Tuple(keys) => keys,
            _ => return Err(fail("no list of storage keys")),
        };
        let mut storages = HashMap::new();
        for key in keys {
            let key = key
                .unicode()
                .map_err(|_| fail("a storage key is not text"))?;
            let dtype = dtypes
                .get(&key)
                .ok_or_else(|| fail(format!("storage {key} is of a type candor cannot read")))?;
            let count = map
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| fail(format!("storage {key} cut short")))?;
            // Checked: the count is the file's word, not to be trusted.
            let len = usize::try_from(count)
                .ok()
                .and_then(|c| c.checked_mul(dtype.size_in_bytes()))
                .filter(|&len| {
                    (at + 8)
                        .checked_add(len)
                        .is_some_and(|end| end <= map.len())
                })
                .ok_or_else(|| fail(format!("storage {key} runs past the file's end")))?;
            storages.insert(key, (at + 8, len));
            at += 8 + len;
        }
        Ok(LegacyCheckpoint {
            map,
            infos,
            storages,
        })
    }

    pub fn tensor_infos(&self) -> &HashMap<String, TensorInfo> {
        &self.infos
    }

    /// Tensor `name` as saved (contiguous, or stored transposed), None where the file has no
    /// such tensor.
    pub fn get(&self, name: &str) -> candle_core::Result<Option<Tensor>> {
        let Some(info) = self.infos.get(name) else {
            return Ok(None);
        };
        let key = info.path.trim_start_matches(DIR).trim_start_matches('/');
        let &(start, len) = self
            .storages
            .get(key)
            .ok_or_else(|| fail(format!("{name}: storage {key} not in the file")))?;
        let layout = &info.layout;
        let fortran = layout.is_fortran_contiguous() && !layout.is_contiguous();
        if !layout.is_contiguous() && !fortran {
            return Err(fail(format!("{name}: strided views are not read")));
        }
        let from = layout.start_offset();
        let bytes = layout
            .shape()
            .elem_count()
            .checked_mul(info.dtype.size_in_bytes())
            .filter(|&b| from.checked_add(b).is_some_and(|end| end <= len))
            .ok_or_else(|| fail(format!("{name}: past its storage's end")))?;
        let data = &self.map[start + from..start + from + bytes];
        let dims = layout.dims();
        if !fortran {
            return Tensor::from_raw_buffer(data, info.dtype, dims, &candle_core::Device::Cpu)
                .map(Some);
        }
        // Stored transposed (a `.t()` view saved as it lies): read reversed, then permuted.
        let reversed: Vec<usize> = dims.iter().rev().copied().collect();
        let t = Tensor::from_raw_buffer(data, info.dtype, &reversed, &candle_core::Device::Cpu)?;
        let order: Vec<usize> = (0..dims.len()).rev().collect();
        t.permute(order).map(Some)
    }
}
