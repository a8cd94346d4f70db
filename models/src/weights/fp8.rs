//! FP8 checkouts: DeepSeek-V3/R1, the Qwen3 `-FP8` releases, Ministral 3, MiniMax-M2,
//! llm-compressor's `FP8` / `FP8-dynamic` (compressed-tensors), FBGEMM's fp8 (Llama 3.1 405B).
//! Their linear weights are stored as 8-bit floats (e4m3, rarely e5m2) with a scale per tensor,
//! per output row, or per block of rows × columns, beside them as `<name>_scale_inv`
//! (transformers' `fp8`, despite the name a multiplier) or `<name>_scale` (compressed-tensors,
//! FBGEMM). candor dequantizes them at load into the checkout's own dtype (bf16 in every
//! release), as transformers does without FP8 hardware: no CPU has FP8 arithmetic and candle's
//! CUDA products take none. The activation scales beside them (`input_scale`,
//! `activation_scale`) are for FP8 activations, which candor does not run: vLLM runs these
//! checkouts weight-only in the same way where the GPU has no FP8 (Marlin).
//!
//! The two formats are decoded by hand through a 256-entry table: the whole format is its
//! definition (sign, exponent, mantissa, where NaN sits), and no crate in the tree exposes it on
//! bytes read in place from a mapped file.
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// The two 8-bit float formats safetensors names (`F8_E4M3`, `F8_E5M2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fp8Format {
    /// 4 exponent bits (bias 7), 3 mantissa bits, no infinities, NaN at S.1111.111 (`e4m3fn`).
    E4M3,
    /// 5 exponent bits (bias 15), 2 mantissa bits, IEEE-like infinities and NaNs.
    E5M2,
}

impl Fp8Format {
    pub fn of(dtype: safetensors::Dtype) -> Option<Self> {
        match dtype {
            safetensors::Dtype::F8_E4M3 => Some(Fp8Format::E4M3),
            safetensors::Dtype::F8_E5M2 => Some(Fp8Format::E5M2),
            _ => None,
        }
    }

    /// The value of each of the 256 codes.
    pub fn table(self) -> [f32; 256] {
        let (exp_bits, man_bits) = match self {
            Fp8Format::E4M3 => (4, 3),
            Fp8Format::E5M2 => (5, 2),
        };
        let bias = (1 << (exp_bits - 1)) - 1;
        let exp_max = (1 << exp_bits) - 1;
        let man_max = (1 << man_bits) - 1;
        let mut table = [0.0f32; 256];
        for (code, value) in table.iter_mut().enumerate() {
            let sign = if code & 0x80 != 0 { -1.0 } else { 1.0 };
            let exp = (code >> man_bits) & exp_max;
            let man = code & man_max;
            let fraction = man as f32 / (1 << man_bits) as f32;
            let magnitude = match (self, exp) {
                (Fp8Format::E4M3, e) if e == exp_max && man == man_max => f32::NAN,
                (Fp8Format::E5M2, e) if e == exp_max && man == 0 => f32::INFINITY,
                (Fp8Format::E5M2, e) if e == exp_max => f32::NAN,
                // Subnormals: no implicit leading one, the smallest exponent.
                (_, 0) => fraction * 2f32.powi(1 - bias),
                (_, e) => (1.0 + fraction) * 2f32.powi(e as i32 - bias),
            };
            *value = sign * magnitude;
        }
        table
    }
}

/// How one scale tensor covers its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScaleLayout {
    Tensor,
    Row,
    /// One scale per `[rows, columns]` block, the last blocks of each dimension short where the
    /// weight's size is not a multiple.
    Block([usize; 2]),
}

/// The layout of `scale_shape` over a `[out, in]` weight: scalars and one per row are told by
/// their shape; a 2-D grid needs the block from the config where it has one, else the one size
/// every FP8 release uses (128 × 128) or whole rows by column groups, whichever fits the grid.
fn scale_layout(
    scale_shape: &[usize],
    [out, inner]: [usize; 2],
    block: Option<[usize; 2]>,
) -> std::result::Result<ScaleLayout, String> {
    let count: usize = scale_shape.iter().product();
    if count == 1 {
        return Ok(ScaleLayout::Tensor);
    }
    match scale_shape {
        [n] | [n, 1] if *n == out => return Ok(ScaleLayout::Row),
        _ => {}
    }
    let &[rows, cols] = scale_shape else {
        return Err(format!(
            "scales of shape {scale_shape:?} for a [{out}, {inner}] weight"
        ));
    };
    let fits = |[br, bc]: [usize; 2]| out.div_ceil(br) == rows && inner.div_ceil(bc) == cols;
    let guesses = [[128, 128], [1, inner.div_ceil(cols.max(1))]];
    let candidates: Vec<[usize; 2]> = match block {
        Some(b) => vec![b],
        None => guesses.to_vec(),
    };
    candidates
        .into_iter()
        .find(|b| fits(*b))
        .map(ScaleLayout::Block)
        .ok_or_else(|| {
            format!(
                "a {rows} x {cols} grid of scales does not cover a [{out}, {inner}] weight in \
                 blocks of {}",
                block.map_or(
                    "128 x 128 (the config names no block)".to_string(),
                    |[r, c]| { format!("{r} x {c}") }
                )
            )
        })
}

/// The weight `codes` (`shape`, one byte per value in `format`) times its scales, as a tensor of
/// `dtype`. `scales` holds `scale_shape`'s values (see `scale_layout`).
pub fn dequantize(
    codes: &[u8],
    shape: &[usize],
    format: Fp8Format,
    scales: &[f32],
    scale_shape: &[usize],
    block: Option<[usize; 2]>,
    dtype: DType,
) -> std::result::Result<Tensor, String> {
    let (out, inner) = match shape {
        [out, inner] => (*out, *inner),
        [n] => (1, *n),
        _ => {
            return Err(format!(
                "an FP8 tensor of shape {shape:?} (candor reads 1-D and 2-D)"
            ))
        }
    };
    if codes.len() != out * inner {
        return Err(format!("{} bytes for shape {shape:?}", codes.len()));
    }
    if scales.len() != scale_shape.iter().product::<usize>() {
        return Err(format!("{} scales for shape {scale_shape:?}", scales.len()));
    }
    let layout = scale_layout(scale_shape, [out, inner], block)?;
    let table = format.table();
    let mut values = vec![0f32; out * inner];
    if inner > 0 {
        values
            .par_chunks_mut(inner)
            .zip(codes.par_chunks(inner))
            .enumerate()
            .for_each(|(r, (row, row_codes))| {
                for (c, (v, &code)) in row.iter_mut().zip(row_codes).enumerate() {
                    let scale = match layout {
                        ScaleLayout::Tensor => scales[0],
                        ScaleLayout::Row => scales[r],
                        ScaleLayout::Block([br, bc]) => {
                            scales[(r / br) * inner.div_ceil(bc) + c / bc]
                        }
                    };
                    *v = table[code as usize] * scale;
                }
            });
    }
    let t =
        Tensor::from_vec(values, shape, &candle_core::Device::Cpu).map_err(|e| e.to_string())?;
    t.to_dtype(dtype).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes whose values the OCP FP8 specification lists: ones, the largest finite values,
    /// the smallest subnormals, zeros of both signs, NaN and (e5m2) infinity.
    #[test]
    fn tables_decode_the_specifications_codes() {
        let e4m3 = Fp8Format::E4M3.table();
        assert_eq!(e4m3[0x38], 1.0);
        assert_eq!(e4m3[0xb8], -1.0);
        assert_eq!(e4m3[0x7e], 448.0);
        assert_eq!(e4m3[0x01], 2f32.powi(-9));
        assert_eq!(e4m3[0x08], 2f32.powi(-6));
        assert_eq!(e4m3[0x3c], 1.5);
        assert_eq!(e4m3[0x80], 0.0);
        assert!(e4m3[0x7f].is_nan() && e4m3[0xff].is_nan());
        assert_eq!(e4m3.iter().filter(|v| v.is_nan()).count(), 2);
        let e5m2 = Fp8Format::E5M2.table();
        assert_eq!(e5m2[0x3c], 1.0);
        assert_eq!(e5m2[0x7b], 57344.0);
        assert_eq!(e5m2[0x01], 2f32.powi(-16));
        assert_eq!(e5m2[0x7c], f32::INFINITY);
        assert_eq!(e5m2[0xfc], f32::NEG_INFINITY);
        assert!(e5m2[0x7d].is_nan());
    }

    fn dequant(
        shape: &[usize],
        scales: &[f32],
        scale_shape: &[usize],
        block: Option<[usize; 2]>,
    ) -> Vec<f32> {
        // Every code 0x38 (1.0): the output is each value's scale.
        let n = shape.iter().product();
        let t = dequantize(
            &vec![0x38; n],
            shape,
            Fp8Format::E4M3,
            scales,
            scale_shape,
            block,
            DType::F32,
        )
        .unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn scales_apply_per_tensor_per_row_and_per_block() {
        assert_eq!(dequant(&[2, 2], &[0.5], &[], None), [0.5; 4]);
        assert_eq!(dequant(&[2, 2], &[0.5], &[1], None), [0.5; 4]);
        assert_eq!(
            dequant(&[2, 3], &[1.0, 2.0], &[2, 1], None),
            [1., 1., 1., 2., 2., 2.]
        );
        assert_eq!(
            dequant(&[2, 3], &[1.0, 2.0], &[2], None),
            [1., 1., 1., 2., 2., 2.]
        );
        // A 3 x 5 weight in 2 x 2 blocks: a 2 x 3 grid, the last row and column short.
        let grid = [1., 2., 3., 4., 5., 6.];
        let got = dequant(&[3, 5], &grid, &[2, 3], Some([2, 2]));
        #[rustfmt::skip]
        assert_eq!(got, [
            1., 1., 2., 2., 3.,
            1., 1., 2., 2., 3.,
            4., 4., 5., 5., 6.,
        ]);
        // No block in the config: whole rows by column groups where 128 x 128 does not fit.
        assert_eq!(
            dequant(&[2, 4], &[1., 2., 3., 4.], &[2, 2], None),
            [1., 1., 2., 2., 3., 3., 4., 4.]
        );
        // 128 x 128 where it fits: a 130 x 2 weight has two row blocks.
        let got = dequant(&[130, 2], &[1., 2.], &[2, 1], None);
        assert_eq!((got[0], got[255], got[256]), (1., 1., 2.));
    }

    #[test]
    fn scales_that_do_not_cover_the_weight_are_refused() {
        let refuse = |shape: &[usize], scale_shape: &[usize], block| {
            let n: usize = scale_shape.iter().product();
            dequantize(
                &vec![0; shape.iter().product()],
                shape,
                Fp8Format::E4M3,
                &vec![1.0; n],
                scale_shape,
                block,
                DType::F32,
            )
            .unwrap_err()
        };
        assert!(refuse(&[4, 4], &[3, 3], Some([2, 2])).contains("does not cover"));
        assert!(refuse(&[4, 4], &[3], None).contains("scales of shape"));
        assert!(refuse(&[2, 2, 2], &[1], None).contains("1-D and 2-D"));
        assert!(dequantize(
            &[0; 3],
            &[2, 2],
            Fp8Format::E4M3,
            &[1.0],
            &[1],
            None,
            DType::F32
        )
        .is_err());
    }

    #[test]
    fn dequantized_weights_take_the_checkouts_dtype() {
        let t = dequantize(
            &[0x38, 0x40],
            &[1, 2],
            Fp8Format::E4M3,
            &[0.25],
            &[1],
            None,
            DType::BF16,
        )
        .unwrap();
        assert_eq!(t.dtype(), DType::BF16);
        let v: Vec<f32> = t
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(v, [0.25, 0.5]);
    }
}
