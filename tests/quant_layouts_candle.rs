//! candor-kernels' block layouts, checked against an independent implementation: candle's GGML
//! dequantization of the same bytes (MXFP4, which candle lacks: candor-models' own reading of
//! ggml's MXFP4 blocks). (Here rather than in the kernels crate, which then needs
//! no candle to build its tests, e.g. cross-built for aarch64 and run under emulation.)
use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::Device;
use candor_kernels::quant::{dequantize, QuantType};
use candor_models::weights::mxfp4;

/// The values of `bytes` (blocks of `ty`) as the independent implementation reads them; None
/// for the IQ types, which candle lacks (gguf-py's values check them:
/// `quant::tests::dequantization_matches_gguf_py`).
fn independent(ty: QuantType, bytes: &[u8], shape: Vec<usize>) -> Option<Vec<f32>> {
    let ggml = match ty {
        QuantType::Q4_0 => GgmlDType::Q4_0,
        QuantType::Q5_0 => GgmlDType::Q5_0,
        QuantType::Q8_0 => GgmlDType::Q8_0,
        QuantType::Q4K => GgmlDType::Q4K,
        QuantType::Q5K => GgmlDType::Q5K,
        QuantType::Q6K => GgmlDType::Q6K,
        QuantType::Q4_1 => GgmlDType::Q4_1,
        QuantType::Q5_1 => GgmlDType::Q5_1,
        QuantType::Q2K => GgmlDType::Q2K,
        QuantType::Q3K => GgmlDType::Q3K,
        QuantType::Mxfp4 => return Some(mxfp4::dequantize_ggml(bytes)),
        // The IQ types: candle has no blocks of them.
        _ => return None,
    };
    let values = qtensor_from_ggml(ggml, bytes, shape, &Device::Cpu)
        .and_then(|q| q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1())
        .expect("candle reads and dequantizes the blocks");
    Some(values)
}

#[test]
fn dequantization_matches_candle() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for ty in QuantType::ALL {
        let (rows, k) = (3, 2 * ty.block_elems());
        let blocks = rows * k / ty.block_elems();
        let mut bytes: Vec<u8> = (0..blocks * ty.block_bytes())
            .map(|_| next() as u8)
            .collect();
        let scales: &[usize] = match ty {
            QuantType::Q6K => &[208],
            QuantType::Q4K | QuantType::Q5K | QuantType::Q4_1 | QuantType::Q5_1 => &[0, 2],
            QuantType::Q2K => &[80, 82],
            QuantType::Q3K => &[108],
            // MXFP4's exponent byte: every value but 255 (NaN) is a scale, subnormal ones too.
            QuantType::Mxfp4 => &[],
            _ => &[0],
        };
        for b in bytes.chunks_exact_mut(ty.block_bytes()) {
            for &at in scales {
                let d = half::f16::from_f32((next() % 1000) as f32 / 1e5 - 0.005);
                b[at..at + 2].copy_from_slice(&d.to_bits().to_le_bytes());
            }
            if ty == QuantType::Mxfp4 {
                b[0] = (next() % 255) as u8;
            }
        }
        let Some(want) = independent(ty, &bytes, vec![rows, k]) else {
            continue;
        };
        let mut got = vec![0f32; rows * k];
        dequantize(ty, &bytes, &mut got);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                "{ty:?} element {i}: {a} vs candle {b}"
            );
        }
    }
}
