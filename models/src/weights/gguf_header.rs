//! The GGUF header: metadata and tensor infos, read from the mapped file.
//!
//! Written here rather than taken from candle's `gguf_file::Content::read` because that reader
//! refuses a whole file at the first tensor type candle has no block type for, and gpt-oss's
//! GGUFs hold their experts in MXFP4 (ggml type 39), and llama.cpp's IQ files (IQ1_S ..
//! IQ4_XS) their matrices in types 16-23 and 29, which candor reads itself (`weights::mxfp4`,
//! `weights::iq`). The result is candle's `Content` for every tensor candle can type, and
//! those tensors apart. Lengths are checked against the bytes left, so a corrupt header
//! fails with a message instead of a huge allocation.
use super::BlockType;
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;
use std::collections::HashMap;

/// ggml's type id of MXFP4 blocks (`GGML_TYPE_MXFP4`).
pub const GGML_TYPE_MXFP4: u32 = 39;
/// ggml's type ids of IQ4_NL and IQ4_XS blocks.
pub const GGML_TYPE_IQ4_NL: u32 = 20;
pub const GGML_TYPE_IQ4_XS: u32 = 23;

/// The block type candor reads itself for a ggml type id candle has no type for.
fn own_type(id: u32) -> Option<BlockType> {
    use candor_kernels::quant::QuantType;
    match id {
        GGML_TYPE_MXFP4 => Some(BlockType::Mxfp4),
        GGML_TYPE_IQ4_NL => Some(BlockType::Iq4Nl),
        GGML_TYPE_IQ4_XS => Some(BlockType::Iq4Xs),
        16 => Some(BlockType::Grid(QuantType::Iq2Xxs)),
        17 => Some(BlockType::Grid(QuantType::Iq2Xs)),
        18 => Some(BlockType::Grid(QuantType::Iq3Xxs)),
        19 => Some(BlockType::Grid(QuantType::Iq1S)),
        21 => Some(BlockType::Grid(QuantType::Iq3S)),
        22 => Some(BlockType::Grid(QuantType::Iq2S)),
        29 => Some(BlockType::Grid(QuantType::Iq1M)),
        34 => Some(BlockType::Grid(QuantType::Tq1_0)),
        35 => Some(BlockType::Grid(QuantType::Tq2_0)),
        _ => None,
    }
}

/// Alignment of the tensor data when `general.alignment` does not say (GGUF's default).
const DEFAULT_ALIGNMENT: u64 = 32;

/// The most dimensions a GGUF tensor has (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// Array nesting a metadata value may have (llama.cpp writes one level).
const MAX_NESTING: usize = 4;

/// A tensor of a block type candle has no type for: the type, its shape (row-major, as
/// candle's infos give it) and where its blocks are (from the start of the tensor data).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnInfo {
    pub ty: BlockType,
    pub shape: Vec<usize>,
    pub offset: u64,
}

pub struct Header {
    pub content: Content,
    pub own: HashMap<String, OwnInfo>,
}

/// The file's ggml type id for a tensor candle cannot type, by name, for error messages.
fn type_name(id: u32) -> &'static str {
    match id {
        4 => "Q4_2 (removed)",
        5 => "Q4_3 (removed)",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        _ => "unknown",
    }
}

/// candle's block type for a ggml type id (the ids of ggml.h).
fn ggml_dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// A little-endian reader over the header's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// v1 files count lengths in 32 bits, later ones in 64.
    wide_lengths: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{n} bytes wanted at offset {}, past the end of the file",
                    self.at
                )
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count or length, checked against the bytes left at `min_each` bytes per element.
    fn length(&mut self, min_each: usize) -> Result<usize, String> {
        let n = match self.wide_lengths {
            true => self.u64()?,
            false => self.u32()? as u64,
        };
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_each.max(1) as u64) > left {
            return Err(format!(
                "a length of {n} at offset {} does not fit in the file",
                self.at
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.length(1)?;
        let b = self.take(n)?;
        // llama.cpp writes UTF-8; a stray byte is replaced rather than failing the file.
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, String> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err("metadata arrays nested too deep".into());
                }
                let elem = self.u32()?;
                let n = self.length(1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}

/// The header of the GGUF file `bytes` (the whole mapped file).
pub fn read(bytes: &[u8]) -> Result<Header, String> {
    let mut r = Reader {
        bytes,
        at: 0,
        wide_lengths: true,
    };
    if r.take(4)? != b"GGUF" {
        return Err("wrong magic (expected `GGUF`); not a GGUF file".into());
    }
    let magic = match r.u32()? {
        1 => VersionedMagic::GgufV1,
        2 => VersionedMagic::GgufV2,
        3 => VersionedMagic::GgufV3,
        v => return Err(format!("unsupported GGUF version {v}")),
    };
    r.wide_lengths = magic != VersionedMagic::GgufV1;
    // A tensor info takes at least a length, a dimension count, a type and an offset; a
    // metadata entry a length, a type and a byte.
    let tensor_count = r.length(8 + 4 + 4 + 8)?;
    let kv_count = r.length(8 + 4 + 1)?;
    let mut metadata = HashMap::with_capacity(kv_count);
    for _ in 0..kv_count {
        let key = r.string()?;
        let ty = r.u32()?;
        let value = r
            .value(ty, 0)
            .map_err(|e| format!("metadata `{key}`: {e}"))?;
        metadata.insert(key, value);
    }
    let mut tensor_infos = HashMap::with_capacity(tensor_count);
    let mut own = HashMap::new();
    for _ in 0..tensor_count {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > MAX_DIMS {
            return Err(format!("tensor `{name}` has {n_dims} dimensions"));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = match r.wide_lengths {
                true => r.u64()?,
                false => r.u32()? as u64,
            };
            dims.push(usize::try_from(d).map_err(|_| format!("tensor `{name}`: dimension {d}"))?);
        }
        // GGUF lists the innermost dimension first.
        dims.reverse();
        let ty = r.u32()?;
        let offset = r.u64()?;
        if let Some(ty) = own_type(ty) {
            let info = OwnInfo {
                ty,
                shape: dims,
                offset,
            };
            own.insert(name, info);
            continue;
        }
        let Some(ggml_dtype) = ggml_dtype(ty) else {
            return Err(format!(
                "unsupported tensor type {} (ggml type {ty}) for `{name}`: candor reads F32, \
                 F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ1_S, \
                 IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 \
                 and MXFP4 \
                 (llama.cpp's llama-quantize makes any of them)",
                type_name(ty)
            ));
        };
        tensor_infos.insert(
            name,
            TensorInfo {
                ggml_dtype,
                shape: candle_core::Shape::from(dims),
                offset,
            },
        );
    }
    let alignment = match metadata.get("general.alignment") {
        Some(Value::U8(v)) => *v as u64,
        Some(Value::U16(v)) => *v as u64,
        Some(Value::U32(v)) => *v as u64,
        Some(Value::U64(v)) => *v,
        _ => DEFAULT_ALIGNMENT,
    };
    if alignment == 0 {
        return Err("general.alignment is 0".into());
    }
    let tensor_data_offset = (r.at as u64).div_ceil(alignment) * alignment;
    Ok(Header {
        content: Content {
            magic,
            metadata,
            tensor_infos,
            tensor_data_offset,
        },
        own,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, QTensor};
    use candle_core::{Device, Tensor};

    /// A file candle writes reads back the same through this reader.
    #[test]
    fn reads_what_candle_writes() {
        let t = Tensor::arange(0f32, 64.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 32))
            .unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let f = QTensor::quantize(&t, GgmlDType::F32).unwrap();
        let md = [
            ("general.architecture", Value::String("llama".into())),
            ("llama.block_count", Value::U32(3)),
            (
                "tokenizer.ggml.tokens",
                Value::Array(vec![Value::String("a".into()), Value::String("é".into())]),
            ),
            ("x.f", Value::F64(0.25)),
        ];
        let mut bytes = std::io::Cursor::new(Vec::new());
        let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut bytes, &md_refs, &[("q", &q), ("f", &f)]).unwrap();
        let bytes = bytes.into_inner();
        let ours = read(&bytes).unwrap();
        let theirs = Content::read(&mut std::io::Cursor::new(&bytes)).unwrap();
        assert_eq!(ours.content.tensor_data_offset, theirs.tensor_data_offset);
        assert_eq!(ours.content.metadata.len(), theirs.metadata.len());
        for (k, v) in &theirs.metadata {
            assert_eq!(
                format!("{v:?}"),
                format!("{:?}", ours.content.metadata[k]),
                "{k}"
            );
        }
        for (name, info) in &theirs.tensor_infos {
            let mine = &ours.content.tensor_infos[name];
            assert_eq!(
                (mine.ggml_dtype, mine.shape.dims(), mine.offset),
                (info.ggml_dtype, info.shape.dims(), info.offset)
            );
        }
        assert!(ours.own.is_empty());
        // Truncated anywhere in the header: an error, not a panic.
        for cut in [3, 9, 30, 100, ours.content.tensor_data_offset as usize - 40] {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
