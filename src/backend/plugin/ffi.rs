//! The Rust mirror of `kernels/include/candor_device.h` (ABI 1.2). Field order, types and
//! constants follow the header exactly; the `layout` test checks sizes and offsets against what
//! the C compiler makes of the header.
#![allow(non_camel_case_types)]
use candor_models::backend::WeightDtype;
use std::ffi::{c_char, c_void};

pub const ABI_MAJOR: u32 = 1;
pub const ABI_MINOR: u32 = 5;
pub const ENTRY_POINT: &str = "candor_device_get_api";
pub const MAX_RANK: usize = 4;

pub type CandorStatus = i32;
pub const OK: CandorStatus = 0;

/// Words for a status code, for error messages.
pub fn status_name(s: CandorStatus) -> &'static str {
    match s {
        0 => "ok",
        1 => "unsupported",
        2 => "invalid argument",
        3 => "out of memory",
        4 => "device error",
        _ => "unknown status",
    }
}

pub type CandorDtype = u32;
pub const DTYPE_F32: CandorDtype = 0;
pub const DTYPE_F16: CandorDtype = 1;
pub const DTYPE_BF16: CandorDtype = 2;
pub const DTYPE_U32: CandorDtype = 3;
pub const DTYPE_Q4_0: CandorDtype = 4;
pub const DTYPE_Q5_0: CandorDtype = 5;
pub const DTYPE_Q8_0: CandorDtype = 6;
pub const DTYPE_Q4_K: CandorDtype = 7;
pub const DTYPE_Q5_K: CandorDtype = 8;
pub const DTYPE_Q6_K: CandorDtype = 9;
/// (1.1) gpt-oss's experts, as stored in GGUF (type 39).
pub const DTYPE_MXFP4: CandorDtype = 10;

/// The ABI dtype a weight of storage type `d` reaches a plugin as. The GGUF types the ABI has
/// no code for (Q4_1, Q5_1, Q2_K, Q3_K) go dequantized, as F32.
pub fn dtype_code(d: WeightDtype) -> CandorDtype {
    match d {
        WeightDtype::Q4_1 | WeightDtype::Q5_1 | WeightDtype::Q2K | WeightDtype::Q3K => DTYPE_F32,
        WeightDtype::F32 => DTYPE_F32,
        WeightDtype::F16 => DTYPE_F16,
        WeightDtype::BF16 => DTYPE_BF16,
        WeightDtype::Q4_0 => DTYPE_Q4_0,
        WeightDtype::Q5_0 => DTYPE_Q5_0,
        WeightDtype::Q8_0 => DTYPE_Q8_0,
        WeightDtype::Q4K => DTYPE_Q4_K,
        WeightDtype::Q5K => DTYPE_Q5_K,
        WeightDtype::Q6K => DTYPE_Q6_K,
    }
}

/// The name of an ABI weight dtype, for listings and logs.
pub fn dtype_name(code: CandorDtype) -> Option<String> {
    if code == DTYPE_MXFP4 {
        return Some("MXFP4".into());
    }
    WEIGHT_DTYPES
        .iter()
        .find(|d| dtype_code(**d) == code)
        .map(|d| d.to_string())
}

/// Every weight dtype with its ABI code, for listings.
pub const WEIGHT_DTYPES: [WeightDtype; 9] = [
    WeightDtype::F32,
    WeightDtype::F16,
    WeightDtype::BF16,
    WeightDtype::Q4_0,
    WeightDtype::Q5_0,
    WeightDtype::Q8_0,
    WeightDtype::Q4K,
    WeightDtype::Q5K,
    WeightDtype::Q6K,
];

pub type CandorOp = u32;
pub const OP_EMBEDDING: CandorOp = 0;
pub const OP_RMS_NORM: CandorOp = 1;
pub const OP_ADD_RMS_NORM: CandorOp = 2;
pub const OP_LINEAR: CandorOp = 3;
pub const OP_ROPE: CandorOp = 4;
pub const OP_KV_WRITE: CandorOp = 5;
pub const OP_PAGED_ATTENTION: CandorOp = 6;
pub const OP_GLU: CandorOp = 7;
pub const OP_ADD: CandorOp = 8;
pub const OP_MUL: CandorOp = 9;
pub const OP_SCALE: CandorOp = 10;
pub const OP_SOFTCAP: CandorOp = 11;
pub const OP_SOFTMAX: CandorOp = 12;
pub const OP_GATHER_ROWS: CandorOp = 13;
pub const OP_ARGMAX: CandorOp = 14;
pub const OP_CAST: CandorOp = 15;
/// (1.1) a product per head (`heads_linear`).
pub const OP_HEADS_LINEAR: CandorOp = 16;
/// (1.2) LayerNorm (`layer_norm`).
pub const OP_LAYER_NORM: CandorOp = 17;
/// (1.5) the elementwise clamp to ±limit (`clamp`).
pub const OP_CLAMP: CandorOp = 18;
/// (1.5) xIELU with one layer's numbers (`xielu`).
pub const OP_XIELU: CandorOp = 19;
/// (1.5) rows to signed integers of their own scale and back (`quantize_rows`).
pub const OP_QUANTIZE_ROWS: CandorOp = 20;
/// (1.5) `x · sigmoid(gate)` (`mul_sigmoid`).
pub const OP_MUL_SIGMOID: CandorOp = 21;

pub const ROPE_NEOX: u32 = 0;
pub const ROPE_INTERLEAVED: u32 = 1;
pub const ACT_SILU: u32 = 0;
pub const ACT_GELU_TANH: u32 = 1;
/// (1.1) gpt-oss's clamped SwiGLU.
pub const ACT_SWIGLU_OAI: u32 = 2;
/// (1.3) the exact GELU.
pub const ACT_GELU_ERF: u32 = 3;
/// (1.3) the squared ReLU.
pub const ACT_RELU2: u32 = 4;
/// (1.4) the ReLU.
pub const ACT_RELU: u32 = 5;
pub const ATTN_SLIDING_WINDOW: u32 = 1;
pub const ATTN_SOFTCAP: u32 = 2;
/// (1.1) a sink logit per head (`paged_attention_sinks`).
pub const ATTN_SINKS: u32 = 4;
/// (1.5) ALiBi slopes per head (`paged_attention_alibi`).
pub const ATTN_ALIBI: u32 = 8;
pub const LINEAR_BIAS: u32 = 1;

/// `struct CandorBufferImpl *`: opaque to candor.
pub type CandorBuffer = *mut c_void;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CandorTensor {
    pub buffer: CandorBuffer,
    pub offset: u64,
    pub dtype: CandorDtype,
    pub rank: u32,
    pub shape: [i64; MAX_RANK],
    pub strides: [i64; MAX_RANK],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CandorOpDesc {
    pub op: CandorOp,
    pub dtype: CandorDtype,
    pub dtype_out: CandorDtype,
    pub variant: u32,
    pub flags: u32,
    pub reserved: u32,
    pub dims: [i64; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CandorSeq {
    pub q_start: u32,
    pub q_len: u32,
    pub start_pos: u32,
    pub num_blocks: u32,
    pub block_table: *const u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CandorAttention {
    pub num_heads: u32,
    pub num_kv_heads: u32,
    pub head_dim: u32,
    pub block_size: u32,
    pub scale: f32,
    pub softcap: f32,
    pub sliding_window: u32,
    pub reserved: u32,
}

type T = *const CandorTensor;
type S = CandorStatus;

/// `paged_attention`: q, k cache, v cache, sequences, their count, parameters, out.
pub type PagedAttentionFn =
    unsafe extern "C" fn(T, T, T, *const CandorSeq, u64, *const CandorAttention, T) -> S;
/// `paged_attention_sinks` (1.1): `PagedAttentionFn` with the sinks (host, one per head).
pub type PagedAttentionSinksFn = unsafe extern "C" fn(
    T,
    T,
    T,
    *const CandorSeq,
    u64,
    *const CandorAttention,
    *const f32,
    T,
) -> S;

/// `paged_attention_alibi` (1.5): `PagedAttentionFn` with the sinks (host, one per head, or
/// null) and the ALiBi slopes (host, one per head).
pub type PagedAttentionAlibiFn = unsafe extern "C" fn(
    T,
    T,
    T,
    *const CandorSeq,
    u64,
    *const CandorAttention,
    *const f32,
    *const f32,
    T,
) -> S;

/// The function table. Every pointer is an `Option` so that a table zero-filled past the
/// plugin's `struct_size` reads as "not provided".
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CandorDeviceApi {
    pub struct_size: u32,
    pub abi_major: u32,
    pub abi_minor: u32,
    pub reserved0: u32,
    pub name: *const c_char,
    pub vendor: *const c_char,
    pub dtype_mask: u64,
    pub memory_info: Option<unsafe extern "C" fn(*mut u64, *mut u64) -> S>,
    pub last_error: Option<unsafe extern "C" fn() -> *const c_char>,
    pub supports_op: Option<unsafe extern "C" fn(*const CandorOpDesc) -> i32>,
    pub buffer_alloc: Option<unsafe extern "C" fn(u64, *mut CandorBuffer) -> S>,
    pub buffer_free: Option<unsafe extern "C" fn(CandorBuffer) -> S>,
    pub upload: Option<unsafe extern "C" fn(CandorBuffer, u64, *const c_void, u64) -> S>,
    pub download: Option<unsafe extern "C" fn(CandorBuffer, u64, *mut c_void, u64) -> S>,
    pub synchronize: Option<unsafe extern "C" fn() -> S>,
    pub embedding: Option<unsafe extern "C" fn(T, *const u32, u64, T) -> S>,
    pub rms_norm: Option<unsafe extern "C" fn(T, T, f32, T) -> S>,
    pub add_rms_norm: Option<unsafe extern "C" fn(T, T, T, f32, T, T) -> S>,
    pub linear: Option<unsafe extern "C" fn(T, T, T, T) -> S>,
    pub rope: Option<unsafe extern "C" fn(T, *const u32, *const f32, u32, u32, f32, T) -> S>,
    pub kv_write: Option<unsafe extern "C" fn(T, T, T, T, *const u32, u64) -> S>,
    pub paged_attention: Option<PagedAttentionFn>,
    pub glu: Option<unsafe extern "C" fn(T, T, u32, T) -> S>,
    pub add: Option<unsafe extern "C" fn(T, T, T) -> S>,
    pub mul: Option<unsafe extern "C" fn(T, T, T) -> S>,
    pub scale: Option<unsafe extern "C" fn(T, f32, T) -> S>,
    pub softcap: Option<unsafe extern "C" fn(T, f32, T) -> S>,
    pub softmax: Option<unsafe extern "C" fn(T, T) -> S>,
    pub gather_rows: Option<unsafe extern "C" fn(T, *const u32, u64, T) -> S>,
    pub argmax: Option<unsafe extern "C" fn(T, *mut u32) -> S>,
    pub cast: Option<unsafe extern "C" fn(T, T) -> S>,
    // Appended in 1.1.
    pub paged_attention_sinks: Option<PagedAttentionSinksFn>,
    pub heads_linear: Option<unsafe extern "C" fn(T, T, T) -> S>,
    // Appended in 1.2.
    pub layer_norm: Option<unsafe extern "C" fn(T, T, T, f32, T) -> S>,
    // Appended in 1.5.
    pub paged_attention_alibi: Option<PagedAttentionAlibiFn>,
    pub clamp: Option<unsafe extern "C" fn(T, f32, T) -> S>,
    pub xielu: Option<unsafe extern "C" fn(T, f32, f32, f32, f32, T) -> S>,
    pub quantize_rows: Option<unsafe extern "C" fn(T, u32, T) -> S>,
    pub mul_sigmoid: Option<unsafe extern "C" fn(T, T, T) -> S>,
}

/// `candor_device_get_api`.
pub type GetApiFn = unsafe extern "C" fn(u32, u32) -> *const CandorDeviceApi;

/// Bytes of the table up to and including `synchronize`: what a plugin must provide at least
/// (facts, errors, `supports_op` and memory); ops past its `struct_size` are unsupported.
pub const MIN_STRUCT_SIZE: usize =
    std::mem::offset_of!(CandorDeviceApi, synchronize) + std::mem::size_of::<usize>();

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The numbers `candor_layout_probe` reports, in its order, as Rust lays the mirror out.
    fn rust_layout() -> Vec<u64> {
        [
            size_of::<CandorTensor>(),
            offset_of!(CandorTensor, offset),
            offset_of!(CandorTensor, dtype),
            offset_of!(CandorTensor, rank),
            offset_of!(CandorTensor, shape),
            offset_of!(CandorTensor, strides),
            size_of::<CandorOpDesc>(),
            offset_of!(CandorOpDesc, flags),
            offset_of!(CandorOpDesc, dims),
            size_of::<CandorSeq>(),
            offset_of!(CandorSeq, num_blocks),
            offset_of!(CandorSeq, block_table),
            size_of::<CandorAttention>(),
            offset_of!(CandorAttention, scale),
            offset_of!(CandorAttention, sliding_window),
            size_of::<CandorDeviceApi>(),
            offset_of!(CandorDeviceApi, name),
            offset_of!(CandorDeviceApi, dtype_mask),
            offset_of!(CandorDeviceApi, supports_op),
            offset_of!(CandorDeviceApi, buffer_alloc),
            offset_of!(CandorDeviceApi, synchronize),
            offset_of!(CandorDeviceApi, embedding),
            offset_of!(CandorDeviceApi, paged_attention),
            offset_of!(CandorDeviceApi, cast),
            offset_of!(CandorDeviceApi, paged_attention_sinks),
            offset_of!(CandorDeviceApi, heads_linear),
            offset_of!(CandorDeviceApi, layer_norm),
            offset_of!(CandorDeviceApi, paged_attention_alibi),
            offset_of!(CandorDeviceApi, clamp),
            offset_of!(CandorDeviceApi, xielu),
            offset_of!(CandorDeviceApi, quantize_rows),
            offset_of!(CandorDeviceApi, mul_sigmoid),
        ]
        .iter()
        .map(|&n| n as u64)
        .collect()
    }

    #[cfg(unix)]
    #[test]
    fn layout_matches_the_c_compiler() {
        let path = std::path::Path::new(env!("CANDOR_TEST_PLUGIN_DIR")).join(format!(
            "{}candor_layout_probe{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        // SAFETY: the probe is our own C file with no initialisers; the symbol has the
        // signature declared here.
        unsafe {
            let lib = libloading::Library::new(&path).expect("load the layout probe");
            let probe = lib
                .get::<unsafe extern "C" fn(*mut u64, u64) -> u64>(b"candor_layout_probe\0")
                .expect("probe symbol");
            let mut c = vec![0u64; 64];
            let n = probe(c.as_mut_ptr(), c.len() as u64) as usize;
            c.truncate(n);
            assert_eq!(c, rust_layout(), "Rust mirror and C header disagree");
        }
    }

    #[test]
    fn the_minimum_table_ends_after_synchronize() {
        assert_eq!(
            MIN_STRUCT_SIZE,
            offset_of!(CandorDeviceApi, embedding),
            "the ops follow the memory functions"
        );
    }
}
