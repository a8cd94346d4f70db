//! MXFP4 weights (OCP microscaling FP4: gpt-oss's experts): ggml's block layout, and the same
//! blocks as Q5_0, exactly, for the backends without MXFP4 products.
//!
//! An MXFP4 block is 32 FP4 (e2m1) codes and one power-of-two scale (E8M0): each value is
//! `code_value · 2^(e - 127)`, the code values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}. Doubled they are
//! the integers ±{0, 1, 2, 3, 4, 6, 8, 12}. The CPU kernels multiply ggml's blocks as they are
//! (17 bytes a block; gpt-oss-20b's experts take 10 GB). Candle (CUDA) and plugins have no
//! MXFP4 type: for them the blocks become Q5_0 (`ggml_to_q5_0`), whose five-bit quants (value
//! `d·(q - 16)`, q in 0..32) hold the doubled codes exactly as q = v + 16, with the scale
//! `d = 2^(e - 128)`, which f16 holds exactly for `e` in 104..=143 (every weight scale in
//! practice; below that the values are under 4e-7 and round to f16's subnormal steps), at 22
//! bytes a block.
//!
//! Two layouts of the codes within a block's 16 bytes: ggml's (GGUF type 39: byte j holds
//! elements j (low nibble) and j + 16 (high)) and OpenAI's checkpoints' (`*_blocks`: byte j
//! holds elements 2j (low) and 2j + 1 (high), the scales in a tensor of their own).
use crate::error::{ModelError, Result};
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::Device;
use half::f16;

/// The FP4 (e2m1) codes' values, doubled: the Q8_0 integers.
const DOUBLED: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Values per block.
pub const BLOCK: usize = 32;
/// Bytes of a ggml MXFP4 block: the scale, then 16 bytes of codes.
pub const GGML_BLOCK_BYTES: usize = 17;
/// Bytes of an MXFP4 tensor of `shape` in ggml's blocks; None when its rows are not whole
/// blocks.
pub fn tensor_bytes(shape: &[usize]) -> Option<usize> {
    shape.last().filter(|c| c.is_multiple_of(BLOCK))?;
    Some(shape.iter().product::<usize>() / BLOCK * GGML_BLOCK_BYTES)
}

/// Bytes of a Q5_0 block: an f16 scale, the 32 fifth bits (u32), 16 bytes of low nibbles.
const Q5_0_BLOCK_BYTES: usize = 22;

/// One block (scale `e`, 16 code bytes in ggml's layout: byte j holds element j in its low
/// nibble, element j + 16 in its high one) as a Q5_0 block, appended to `out`: element j's
/// quant (value + 16) has its low four bits in byte j's low nibble (j < 16) or byte j - 16's
/// high one, its fifth in bit j of `qh`, as ggml lays Q5_0 out.
fn block_to_q5_0(e: u8, codes: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if e == 0xff {
        return Err(ModelError::Config("an MXFP4 block with a NaN scale".into()));
    }
    // 2^(e - 128): exact in f16 down to 2^-24 (subnormal) and up to 2^15.
    let exp = e as i32 - 128;
    if exp > 15 {
        return Err(ModelError::Config(format!(
            "an MXFP4 scale of 2^{} is past f16's range",
            exp + 1
        )));
    }
    let (scale, shift) = match exp {
        // Under f16's smallest subnormal: scale 2^-24 and the integers scaled down (values
        // under 12 · 2^-25 ≈ 4e-7, rounded to the nearest step of 2^-24).
        e if e < -24 => (f16::from_f32(2f32.powi(-24)), -24 - e),
        e => (f16::from_f32(2f32.powi(e)), 0),
    };
    let mut q = [0i8; BLOCK];
    for (j, &byte) in codes.iter().enumerate() {
        q[j] = DOUBLED[(byte & 0x0f) as usize];
        q[j + 16] = DOUBLED[(byte >> 4) as usize];
    }
    if shift > 0 {
        let div = 2f32.powi(shift.min(30));
        q.iter_mut()
            .for_each(|v| *v = (*v as f32 / div).round() as i8);
    }
    // Five-bit quants: -12..=12 + 16 lies in 4..=28.
    let u: [u8; BLOCK] = q.map(|v| (v as i32 + 16) as u8);
    let qh = (0..BLOCK).fold(0u32, |h, j| h | (((u[j] >> 4) as u32 & 1) << j));
    out.extend_from_slice(&scale.to_le_bytes());
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend((0..16).map(|j| (u[j] & 0x0f) | ((u[j + 16] & 0x0f) << 4)));
    Ok(())
}

/// ggml MXFP4 blocks (GGUF type 39, `GGML_BLOCK_BYTES` each) as Q5_0 blocks.
pub fn ggml_to_q5_0(blocks: &[u8]) -> Result<Vec<u8>> {
    if !blocks.len().is_multiple_of(GGML_BLOCK_BYTES) {
        return Err(ModelError::Config(format!(
            "{} bytes are not whole MXFP4 blocks",
            blocks.len()
        )));
    }
    let mut out = Vec::with_capacity(blocks.len() / GGML_BLOCK_BYTES * Q5_0_BLOCK_BYTES);
    for b in blocks.chunks_exact(GGML_BLOCK_BYTES) {
        block_to_q5_0(b[0], &b[1..], &mut out)?;
    }
    Ok(out)
}

/// OpenAI's MXFP4 (`codes`: 16 bytes a block, `scales`: one byte a block, in the same order)
/// as ggml's blocks: the scale first, the codes re-paired (the inverse of `ggml_to_openai`).
pub fn openai_to_ggml(codes: &[u8], scales: &[u8]) -> Result<Vec<u8>> {
    if codes.len() != scales.len() * 16 {
        return Err(ModelError::Config(format!(
            "{} MXFP4 code bytes for {} scales",
            codes.len(),
            scales.len()
        )));
    }
    let mut out = Vec::with_capacity(scales.len() * GGML_BLOCK_BYTES);
    for (c, &e) in codes.chunks_exact(16).zip(scales) {
        // Element i is byte i/2's low (even i) or high (odd i) nibble.
        let nib = |i: usize| (c[i / 2] >> (4 * (i % 2))) & 0x0f;
        out.push(e);
        out.extend((0..16).map(|j| nib(j) | (nib(j + 16) << 4)));
    }
    Ok(out)
}

/// ggml MXFP4 blocks as the CUDA kernels keep them (kernels/cuda/mxfp4.cu): every block's 16
/// code bytes first, in order, then every scale byte, so that a block's codes are one aligned
/// 16-byte load.
pub fn codes_then_scales(blocks: &[u8]) -> Result<Vec<u8>> {
    if !blocks.len().is_multiple_of(GGML_BLOCK_BYTES) {
        return Err(ModelError::Config(format!(
            "{} bytes are not whole MXFP4 blocks",
            blocks.len()
        )));
    }
    let count = blocks.len() / GGML_BLOCK_BYTES;
    let mut out = vec![0u8; blocks.len()];
    let (codes, scales) = out.split_at_mut(count * (GGML_BLOCK_BYTES - 1));
    for ((b, code), scale) in blocks
        .chunks_exact(GGML_BLOCK_BYTES)
        .zip(codes.chunks_exact_mut(GGML_BLOCK_BYTES - 1))
        .zip(scales.iter_mut())
    {
        *scale = b[0];
        code.copy_from_slice(&b[1..]);
    }
    Ok(out)
}

/// Q5_0 block bytes (as `ggml_to_q5_0` makes them) as a tensor of `shape`.
pub fn q5_0_tensor(q5: &[u8], shape: Vec<usize>) -> Result<QTensor> {
    let elems: usize = shape.iter().product();
    if q5.len() != elems / BLOCK * Q5_0_BLOCK_BYTES || !elems.is_multiple_of(BLOCK) {
        return Err(ModelError::Config(format!(
            "{} bytes of Q5_0 blocks for a tensor of shape {shape:?}",
            q5.len()
        )));
    }
    Ok(qtensor_from_ggml(GgmlDType::Q5_0, q5, shape, &Device::Cpu)?)
}

/// The values of ggml MXFP4 blocks, for tests and references: `code · 2^(e - 127)`.
pub fn dequantize_ggml(blocks: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() / GGML_BLOCK_BYTES * BLOCK);
    for b in blocks.chunks_exact(GGML_BLOCK_BYTES) {
        let scale = 2f32.powi(b[0] as i32 - 128);
        let mut v = [0f32; BLOCK];
        for (j, &byte) in b[1..].iter().enumerate() {
            v[j] = DOUBLED[(byte & 0x0f) as usize] as f32 * scale;
            v[j + 16] = DOUBLED[(byte >> 4) as usize] as f32 * scale;
        }
        out.extend_from_slice(&v);
    }
    out
}

/// ggml MXFP4 blocks in OpenAI's layout: the codes re-paired per byte (elements 2j, 2j + 1)
/// and the scales apart. For writing test checkouts.
pub fn ggml_to_openai(blocks: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut codes, mut scales) = (Vec::new(), Vec::new());
    for b in blocks.chunks_exact(GGML_BLOCK_BYTES) {
        scales.push(b[0]);
        let nib = |i: usize| match i < 16 {
            true => b[1 + i] & 0x0f,
            false => b[1 + i - 16] >> 4,
        };
        codes.extend((0..16).map(|j| nib(2 * j) | (nib(2 * j + 1) << 4)));
    }
    (codes, scales)
}

/// `values` (a whole number of 32-value blocks) as ggml MXFP4 blocks: each block's scale the
/// power of two that puts its largest magnitude at or under 6, each value the nearest code.
/// What llama.cpp's quantizer does, for writing test files.
pub fn quantize_ggml(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / BLOCK * GGML_BLOCK_BYTES);
    for block in values.chunks_exact(BLOCK) {
        let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        // Smallest e with max / 2^(e-127) <= 6.
        let e = if max == 0.0 {
            0u8
        } else {
            ((max / 6.0).log2().ceil() as i32 + 127).clamp(1, 254) as u8
        };
        let scale = 2f32.powi(e as i32 - 128);
        let code = |v: f32| -> u8 {
            let target = v / scale;
            (0..16u8)
                .min_by(|&a, &b| {
                    let da = (DOUBLED[a as usize] as f32 - target).abs();
                    let db = (DOUBLED[b as usize] as f32 - target).abs();
                    da.total_cmp(&db)
                })
                .unwrap_or(0)
        };
        out.push(e);
        for j in 0..16 {
            out.push(code(block[j]) | (code(block[j + 16]) << 4));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q5_values(q5: &[u8], n: usize) -> Vec<f32> {
        let q = q5_0_tensor(q5, vec![n]).unwrap();
        q.dequantize(&Device::Cpu).unwrap().to_vec1().unwrap()
    }

    /// Every code at scales across f16's range: the Q5_0 block holds the same values, bit for
    /// bit (candle's Q5_0 dequantization reads them).
    #[test]
    fn blocks_become_the_same_values_in_q5_0() {
        let mut blocks = Vec::new();
        for e in [104u8, 110, 120, 127, 128, 135, 143] {
            blocks.push(e);
            // Codes 0..16 in the low nibbles, 15..=0 in the high ones.
            blocks.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        }
        let want = dequantize_ggml(&blocks);
        let q5 = ggml_to_q5_0(&blocks).unwrap();
        assert_eq!(q5_values(&q5, want.len()), want);
        // Value j < 16 of block 0: code j; value j + 16: code 15 - j; times 2^(104 - 128).
        assert_eq!(want[3], 3.0 * 2f32.powi(-24));
        assert_eq!(want[16], -12.0 * 2f32.powi(-24));
    }

    #[test]
    fn openai_pairs_and_ggml_halves_agree() {
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let ggml = quantize_ggml(&values);
        // The same blocks in OpenAI's layout: codes re-paired, scales apart.
        let (codes, scales) = ggml_to_openai(&ggml);
        assert_eq!(openai_to_ggml(&codes, &scales).unwrap(), ggml);
        let a = q5_values(&ggml_to_q5_0(&ggml).unwrap(), 64);
        // Within the quantization's step of the input.
        for (x, y) in values.iter().zip(&a) {
            assert!((x - y).abs() <= 0.5 * x.abs().max(0.5), "{x} → {y}");
        }
    }

    /// Block i's 16 code bytes at 16·i, its scale after all the codes.
    #[test]
    fn codes_come_first_and_scales_after() {
        let values: Vec<f32> = (0..96).map(|i| (i as f32 - 40.0) / 7.0).collect();
        let file = quantize_ggml(&values);
        let dev = codes_then_scales(&file).unwrap();
        assert_eq!(dev.len(), file.len());
        for (i, block) in file.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
            assert_eq!(&dev[16 * i..16 * (i + 1)], &block[1..]);
            assert_eq!(dev[3 * 16 + i], block[0]);
        }
        assert!(codes_then_scales(&file[1..]).is_err());
    }

    #[test]
    fn bad_blocks_are_errors() {
        assert!(ggml_to_q5_0(&[0u8; 16]).is_err());
        let mut nan = vec![0xffu8];
        nan.extend([0u8; 16]);
        assert!(ggml_to_q5_0(&nan).is_err());
        let mut huge = vec![200u8];
        huge.extend([0u8; 16]);
        assert!(ggml_to_q5_0(&huge).is_err());
        assert!(openai_to_ggml(&[0u8; 16], &[1, 2]).is_err());
        // A scale under f16's range still loads (as f16 subnormal steps).
        let mut tiny = vec![90u8];
        tiny.extend([0x77u8; 16]);
        assert!(ggml_to_q5_0(&tiny).is_ok());
    }
}
