//! AWQ and GPTQ checkouts (the `-AWQ` / `-GPTQ-Int4` / `-Int8` releases of Qwen and others,
//! most quantized models on the Hub): integers packed into int32 words (`qweight`), a scale and
//! a zero point per group of inputs and output (`scales`, `qzeros`), GPTQ's group of each input
//! (`g_idx`); compressed-tensors' `pack-quantized` (llm-compressor's W4A16 / W8A16: values
//! packed densely along each row, `weight_packed`, scales `[out, groups]`, zero points only
//! where asymmetric). Where a weight's groups hold whole runs of 32 inputs (every checkout without
//! GPTQ's act-order), its values are exactly ggml blocks: 4 bits with zero 8 (symmetric GPTQ)
//! are Q4_0 (`(q - 8) · d`), 4 bits with zero points Q4_1 (`d · q + m`, m = -s · z, rounded to
//! f16 as Q4_1 keeps it), symmetric 8 bits Q8_0 (`(q - 128) · d`): the CPU's and CUDA's
//! quantized products then run them at their own size. Other weights (act-order, 2 bits,
//! asymmetric 8 bits) are dequantized into the checkout's dtype.
//!
//! The packings are read by hand: they are defined by the packers (AutoAWQ's
//! `WQLinear_GEMM.from_linear`, AutoGPTQ's `QuantLinear.pack`, compressed-tensors'
//! `pack_to_int32`), and no crate reads them.
use super::quantization::{PackedCheckout, PackedLayout};
use candle_core::quantized::GgmlDType;
use half::f16;
use rayon::prelude::*;

/// AutoAWQ's order of 8 outputs in a word: output j of a word sits in nibble `AWQ_NIBBLE[j]`.
const AWQ_NIBBLE: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// One weight's tensors as stored: the words (little-endian int32) and their shapes, the
/// zero points' words (None: symmetric, zero 2^(bits-1)), the scales as f32, the group of each
/// input where the checkout names it (GPTQ's `g_idx`, compressed-tensors' `weight_g_idx`).
pub struct PackedWeight<'a> {
    pub qweight: &'a [u8],
    pub qweight_shape: &'a [usize],
    pub qzeros: Option<(&'a [u8], &'a [usize])>,
    pub scales: &'a [f32],
    pub scales_shape: &'a [usize],
    pub g_idx: Option<&'a [u8]>,
}

/// A weight's integers unpacked: `q` `[out, inner]`, `zeros` and `scales` `[groups, out]`, and
/// each input's group.
#[derive(Debug)]
pub struct Unpacked {
    pub out: usize,
    pub inner: usize,
    bits: u32,
    q: Vec<u8>,
    zeros: Vec<u8>,
    scales: Vec<f32>,
    group_of: Vec<u32>,
}

fn word(bytes: &[u8], index: usize) -> u32 {
    let b = &bytes[4 * index..4 * index + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Where a layout keeps one value: the word's index and the value's slot in it.
type Locate = fn(row: usize, col: usize, rows: usize, per: usize) -> (usize, usize);

/// How each layout lays out its words and scales for a weight of `out` × `inner`.
struct Shapes {
    out: usize,
    inner: usize,
    groups: usize,
    /// Value (output, input) of `qweight`.
    q_at: Locate,
    /// Zero (group, output) of `qzeros`.
    zero_at: Locate,
    /// The scales are stored `[out, groups]` (compressed-tensors), not `[groups, out]`.
    scales_by_output: bool,
}

fn shapes(w: &PackedWeight<'_>, layout: PackedLayout, per: usize) -> Result<Shapes, String> {
    let (&[s0, s1], &[q0, q1]) = (w.scales_shape, w.qweight_shape) else {
        return Err(format!(
            "qweight {:?} and scales {:?} are not 2-D",
            w.qweight_shape, w.scales_shape
        ));
    };
    let zeros_shape = w.qzeros.map(|(_, s)| s.to_vec());
    let (s, zeros_expected) = match layout {
        // qweight [in, out / 8], zeros [groups, out / 8], scales [groups, out].
        PackedLayout::Awq => (
            Shapes {
                out: s1,
                inner: q0,
                groups: s0,
                q_at: |o, i, out, _| (i * (out / 8) + o / 8, AWQ_NIBBLE[o % 8]),
                zero_at: |g, o, out, _| (g * (out / 8) + o / 8, AWQ_NIBBLE[o % 8]),
                scales_by_output: false,
            },
            q1 * per == s1,
        ),
        // qweight [in / per, out], zeros [groups, out / per], scales [groups, out].
        PackedLayout::Gptq { .. } => (
            Shapes {
                out: s1,
                inner: q0 * per,
                groups: s0,
                q_at: |o, i, out, per| ((i / per) * out + o, i % per),
                zero_at: |g, o, out, per| (g * (out / per) + o / per, o % per),
                scales_by_output: false,
            },
            q1 == s1,
        ),
        // weight_packed [out, in / per], zero points [out / per, groups], scales [out, groups].
        PackedLayout::CompressedTensors => (
            Shapes {
                out: s0,
                inner: q1 * per,
                groups: s1,
                q_at: |o, i, words_per_row, per| (o * words_per_row + i / per, i % per),
                zero_at: |g, o, groups, per| ((o / per) * groups + g, o % per),
                scales_by_output: true,
            },
            q0 == s0,
        ),
    };
    let zeros_ok = match (&zeros_shape, layout) {
        (None, PackedLayout::CompressedTensors) => true,
        (None, _) => false,
        (Some(z), PackedLayout::CompressedTensors) => *z == [s.out / per, s.groups],
        (Some(z), _) => *z == [s.groups, s.out / per],
    };
    if !zeros_expected || !zeros_ok || s.groups == 0 || !s.out.is_multiple_of(per) {
        return Err(format!(
            "qweight {:?}, zero points {zeros_shape:?} and scales {:?} do not fit one weight",
            w.qweight_shape, w.scales_shape
        ));
    }
    Ok(s)
}

/// Unpack `w` as `c` packs it; an error names what does not fit.
pub fn unpack(w: &PackedWeight<'_>, c: &PackedCheckout) -> Result<Unpacked, String> {
    let bits = c.bits;
    let per = (32 / bits) as usize;
    let mask = (1u32 << bits) - 1;
    let s = shapes(w, c.layout, per)?;
    let (out, inner, groups) = (s.out, s.inner, s.groups);
    let words = |b: &[u8], shape: &[usize]| b.len() == 4 * shape.iter().product::<usize>();
    if !words(w.qweight, w.qweight_shape)
        || w.qzeros.is_some_and(|(b, shape)| !words(b, shape))
        || w.scales.len() != groups * out
    {
        return Err("tensor sizes do not match their shapes".into());
    }
    let group_of = groups_of(inner, groups, c.group_size, w.g_idx)?;
    // The row length `q_at` takes: compressed-tensors' words per output row, else the outputs.
    let q_rows = match c.layout {
        PackedLayout::CompressedTensors => inner / per,
        _ => out,
    };
    let mut q = vec![0u8; out * inner];
    q.par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(o, row)| {
            for (i, v) in row.iter_mut().enumerate() {
                let (index, slot) = (s.q_at)(o, i, q_rows, per);
                *v = ((word(w.qweight, index) >> (bits as usize * slot)) & mask) as u8;
            }
        });
    let zero_offset = match c.layout {
        PackedLayout::Gptq { zero_offset } => zero_offset as u32,
        _ => 0,
    };
    let zero_rows = match c.layout {
        PackedLayout::CompressedTensors => groups,
        _ => out,
    };
    let zeros: Vec<u8> = (0..groups * out)
        .map(|k| {
            let (g, o) = (k / out, k % out);
            let Some((zw, _)) = w.qzeros else {
                // Symmetric: the values were stored plus 2^(bits-1).
                return 1u8 << (bits - 1);
            };
            let (index, slot) = (s.zero_at)(g, o, zero_rows, per);
            // AutoGPTQ stores zero - 1 and reads back stored + 1, as its, exllama's and vLLM's
            // kernels do (a stored 15 is 16).
            (((word(zw, index) >> (bits as usize * slot)) & mask) + zero_offset) as u8
        })
        .collect();
    let scales = match s.scales_by_output {
        false => w.scales.to_vec(),
        true => (0..groups * out)
            .map(|k| w.scales[(k % out) * groups + k / out])
            .collect(),
    };
    Ok(Unpacked {
        out,
        inner,
        bits,
        q,
        zeros,
        scales,
        group_of,
    })
}

/// Each input's group: as `g_idx` names them (int32 words), else in runs of `group_size`.
fn groups_of(
    inner: usize,
    groups: usize,
    group_size: Option<usize>,
    g_idx: Option<&[u8]>,
) -> Result<Vec<u32>, String> {
    match (g_idx, group_size) {
        (Some(g), _) => {
            if g.len() != 4 * inner {
                return Err(format!("g_idx of {} bytes for {inner} inputs", g.len()));
            }
            let ids: Vec<u32> = (0..inner).map(|i| word(g, i)).collect();
            match ids.iter().find(|&&g| g as usize >= groups) {
                Some(bad) => Err(format!("g_idx names group {bad} of {groups}")),
                None => Ok(ids),
            }
        }
        (None, Some(size)) if inner.div_ceil(size) == groups => {
            Ok((0..inner).map(|i| (i / size) as u32).collect())
        }
        (None, _) if groups == 1 => Ok(vec![0; inner]),
        (None, size) => Err(format!(
            "{groups} groups of scales for {inner} inputs in groups of {size:?}"
        )),
    }
}

/// compressed-tensors' `int-quantized` weights: int8 values `[out, inner]` as they are, scales
/// `[out, groups]`, int8 zero points beside them where asymmetric.
pub fn from_int8(
    values: &[u8],
    shape: &[usize],
    scales: &[f32],
    scales_shape: &[usize],
    zero_points: Option<&[u8]>,
    group_size: Option<usize>,
) -> Result<Unpacked, String> {
    let (&[out, inner], &[scale_rows, groups]) = (shape, scales_shape) else {
        return Err(format!(
            "int8 values {shape:?} with scales {scales_shape:?}"
        ));
    };
    if values.len() != out * inner
        || scale_rows != out
        || scales.len() != out * groups
        || zero_points.is_some_and(|z| z.len() != out * groups)
    {
        return Err(format!(
            "int8 values {shape:?}, scales {scales_shape:?} and zero points do not fit"
        ));
    }
    let group_of = groups_of(inner, groups, group_size, None)?;
    // Signed values and zero points, offset by 128 as the unsigned packings store them.
    let unsigned = |v: u8| (v as i8 as i16 + 128) as u8;
    let zeros = (0..groups * out)
        .map(|k| {
            let (g, o) = (k / out, k % out);
            zero_points.map_or(128, |z| unsigned(z[o * groups + g]))
        })
        .collect();
    Ok(Unpacked {
        out,
        inner,
        bits: 8,
        q: values.iter().map(|&v| unsigned(v)).collect(),
        zeros,
        scales: (0..groups * out)
            .map(|k| scales[(k % out) * groups + k / out])
            .collect(),
        group_of,
    })
}

impl Unpacked {
    /// `(q - z) · s` of every value, `[out, inner]`.
    pub fn dense(&self) -> Vec<f32> {
        let mut values = vec![0f32; self.out * self.inner];
        values
            .par_chunks_mut(self.inner.max(1))
            .enumerate()
            .for_each(|(o, row)| {
                for (i, v) in row.iter_mut().enumerate() {
                    let at = self.group_of[i] as usize * self.out + o;
                    let q = self.q[o * self.inner + i] as f32;
                    *v = (q - self.zeros[at] as f32) * self.scales[at];
                }
            });
        values
    }

    /// The ggml blocks that hold these values (see the module's note), row by row; None where
    /// none does.
    pub fn ggml_blocks(&self) -> Option<(GgmlDType, Vec<u8>)> {
        const QK: usize = 32;
        let runs_of_32 = self.inner.is_multiple_of(QK)
            && self
                .group_of
                .chunks(QK)
                .all(|run| run.iter().all(|&g| g == run[0]));
        if !runs_of_32 || self.out == 0 {
            return None;
        }
        let all_zeros = |z: u8| self.zeros.iter().all(|&v| v == z);
        let ty = match self.bits {
            4 if all_zeros(8) => GgmlDType::Q4_0,
            4 => GgmlDType::Q4_1,
            8 if all_zeros(128) => GgmlDType::Q8_0,
            _ => return None,
        };
        let block_bytes = ty.type_size();
        let row_bytes = self.inner / QK * block_bytes;
        let mut bytes = vec![0u8; self.out * row_bytes];
        bytes
            .par_chunks_mut(row_bytes)
            .enumerate()
            .for_each(|(o, row)| {
                for (b, block) in row.chunks_mut(block_bytes).enumerate() {
                    let at = self.group_of[b * QK] as usize * self.out + o;
                    let (s, z) = (self.scales[at], self.zeros[at]);
                    let q = &self.q[o * self.inner + b * QK..o * self.inner + (b + 1) * QK];
                    block[..2].copy_from_slice(&f16::from_f32(s).to_le_bytes());
                    match ty {
                        GgmlDType::Q8_0 => {
                            for (dst, &v) in block[2..].iter_mut().zip(q) {
                                *dst = (v as i16 - 128) as i8 as u8;
                            }
                        }
                        _ => {
                            let nibbles = match ty {
                                GgmlDType::Q4_1 => {
                                    let m = f16::from_f32(-s * z as f32);
                                    block[2..4].copy_from_slice(&m.to_le_bytes());
                                    &mut block[4..]
                                }
                                _ => &mut block[2..],
                            };
                            for (j, dst) in nibbles.iter_mut().enumerate() {
                                *dst = q[j] | (q[j + QK / 2] << 4);
                            }
                        }
                    }
                }
            });
        Some((ty, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn checkout(layout: PackedLayout, bits: u32, group: Option<usize>) -> PackedCheckout {
        PackedCheckout {
            layout,
            bits,
            group_size: group,
            dtype: DType::F32,
        }
    }

    fn le(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// AutoAWQ packs outputs 0-7 of an input into nibbles 0, 4, 1, 5, 2, 6, 3, 7 (its order
    /// 0, 2, 4, 6, 1, 3, 5, 7 read the other way): a word whose nibble k is k reads back as
    /// those nibbles' values, less the zero, times the scale.
    #[test]
    fn awq_words_hold_outputs_in_its_order() {
        let nibbles_0_to_7 = 0x7654_3210u32;
        let zeros = 0x1111_1111u32; // every zero 1
        let w = PackedWeight {
            qweight: &le(&[nibbles_0_to_7]),
            qweight_shape: &[1, 1],
            qzeros: Some((&le(&[zeros]), &[1, 1])),
            scales: &[2.0; 8],
            scales_shape: &[1, 8],
            g_idx: None,
        };
        let u = unpack(&w, &checkout(PackedLayout::Awq, 4, Some(128))).unwrap();
        // Output j is in nibble AWQ_NIBBLE[j], whose value is that index.
        let want: Vec<f32> = AWQ_NIBBLE.iter().map(|&n| (n as f32 - 1.0) * 2.0).collect();
        assert_eq!(u.dense(), want);
    }

    /// GPTQ: consecutive inputs in a word; AutoGPTQ's zeros stored minus one (7 means 8, 15
    /// means 16, as its kernels read them); gptq_v2 stores them as they are.
    #[test]
    fn gptq_words_hold_inputs_and_zeros_minus_one() {
        // Input k of output 0 is k; eight outputs of eight inputs each: output o's word is
        // `inputs` shifted by o.
        let inputs = 0x7654_3210u32;
        let qweight: Vec<u32> = (0..8).map(|o| inputs.rotate_left(4 * o)).collect();
        let run = |zeros: u32, zero_offset: bool| {
            let (qw, qz) = (le(&qweight), le(&[zeros]));
            let packed = PackedWeight {
                qweight: &qw,
                qweight_shape: &[1, 8],
                qzeros: Some((&qz, &[1, 1])),
                scales: &[0.5; 8],
                scales_shape: &[1, 8],
                g_idx: None,
            };
            let c = checkout(PackedLayout::Gptq { zero_offset }, 4, None);
            unpack(&packed, &c).unwrap()
        };
        let u = run(0x7777_7777, true);
        let dense = u.dense();
        // Output 0, input i: q = i, zero 8.
        assert_eq!(
            &dense[..8],
            &[-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5]
        );
        assert_eq!(u.ggml_blocks(), None, "8 inputs are no run of 32");
        let v2 = run(0x8888_8888, false).dense();
        assert_eq!(dense, v2);
        let wrapped = run(0xFFFF_FFFF, true).dense();
        assert_eq!(&wrapped[..3], &[-8.0, -7.5, -7.0]);
    }

    /// Runs of 32 inputs in one group become ggml blocks whose values are the dequantized
    /// ones: symmetric 4 bits Q4_0, with zero points Q4_1, symmetric 8 bits Q8_0; act-order
    /// groups none.
    #[test]
    fn blocks_hold_the_dequantized_values() {
        let (out, inner) = (8, 64);
        let q4: Vec<u32> = (0..inner / 8 * out)
            .map(|k| (k as u32).wrapping_mul(0x9E37_79B9))
            .collect();
        let scales: Vec<f32> = (0..2 * out).map(|k| 0.25 + k as f32 / 64.0).collect();
        let check = |bits: u32, qweight: &[u32], zeros: &[u32], g_idx: Option<Vec<u32>>, ty| {
            let per = 32 / bits as usize;
            let (qw, qz) = (le(qweight), le(zeros));
            let g = g_idx.map(|g| le(&g));
            let packed = PackedWeight {
                qweight: &qw,
                qweight_shape: &[inner / per, out],
                qzeros: Some((&qz, &[2, out / per])),
                scales: &scales,
                scales_shape: &[2, out],
                g_idx: g.as_deref(),
            };
            let c = checkout(PackedLayout::Gptq { zero_offset: false }, bits, Some(32));
            let u = unpack(&packed, &c).unwrap();
            let dense = u.dense();
            match u.ggml_blocks() {
                Some((got, bytes)) => {
                    assert_eq!(Some(got), ty);
                    let blocks = crate::weights::MappedBlocks::owned(
                        &bytes,
                        crate::weights::BlockType::Ggml(got),
                        vec![out, inner],
                    )
                    .unwrap();
                    let back: Vec<f32> = blocks
                        .to_qtensor()
                        .unwrap()
                        .dequantize(&Device::Cpu)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    for (a, b) in back.iter().zip(&dense) {
                        assert!((a - b).abs() <= 2e-3 * b.abs().max(1.0), "{a} vs {b}");
                    }
                }
                None => assert_eq!(ty, None),
            }
        };
        check(4, &q4, &[0x8888_8888; 2], None, Some(GgmlDType::Q4_0));
        check(4, &q4, &[0x3a5c_7e91; 2], None, Some(GgmlDType::Q4_1));
        let q8: Vec<u32> = (0..inner / 4 * out)
            .map(|k| (k as u32).wrapping_mul(0x85EB_CA6B))
            .collect();
        check(8, &q8, &[0x8080_8080; 4], None, Some(GgmlDType::Q8_0));
        check(8, &q8, &[0x7f80_8080; 4], None, None);
        // Act-order: inputs of both groups within each run of 32.
        let mixed: Vec<u32> = (0..inner as u32).map(|i| i % 2).collect();
        check(4, &q4, &[0x8888_8888; 2], Some(mixed), None);
        let sorted: Vec<u32> = (0..inner as u32).map(|i| i / 32).collect();
        check(
            4,
            &q4,
            &[0x8888_8888; 2],
            Some(sorted),
            Some(GgmlDType::Q4_0),
        );
    }

    #[test]
    fn tensors_that_do_not_fit_are_refused() {
        let c = checkout(PackedLayout::Gptq { zero_offset: true }, 4, Some(128));
        let (qw, qz) = (le(&[0; 8]), le(&[0; 1]));
        let mut w = PackedWeight {
            qweight: &qw,
            qweight_shape: &[1, 8],
            qzeros: Some((&qz, &[1, 1])),
            scales: &[1.0; 8],
            scales_shape: &[1, 8],
            g_idx: None,
        };
        assert!(unpack(&w, &c).is_ok());
        w.qweight_shape = &[2, 8];
        assert!(unpack(&w, &c).unwrap_err().contains("sizes"));
        w.qweight_shape = &[1, 4];
        assert!(unpack(&w, &c).unwrap_err().contains("do not fit"));
        w.qweight_shape = &[1, 8];
        let bad_g = le(&[0, 0, 0, 0, 0, 0, 0, 5]);
        w.g_idx = Some(&bad_g);
        assert!(unpack(&w, &c).unwrap_err().contains("group 5"));
    }
}
