//! bitsandbytes' 4-bit weights (`load_in_4bit`, NF4 or FP4), read back to their values.
//!
//! A 4-bit weight is stored as bitsandbytes' `Linear4bit` saves it: `weight` holds two codes a
//! byte (the first value in the high nibble) of the weight flattened row-major; each code
//! indexes `weight.quant_map` (16 values in [-1, 1]: the NF4 or FP4 table); each block of
//! `blocksize` values is scaled by its absmax. With double quantization the absmaxes are
//! themselves 8-bit codes into `weight.nested_quant_map`, scaled per block of
//! `nested_blocksize` absmaxes by `weight.nested_absmax`, plus `nested_offset`. The JSON in
//! `weight.quant_state.bitsandbytes__<type>` (stored as bytes) names the block sizes, the
//! offset, the weight's shape and dtype.
//!
//! The tables are read from the checkout, not built in: the values are exactly the ones
//! bitsandbytes' `dequantize_4bit` gives (f32 products, as its kernels compute them).
//! No crate reads this format; it is a few lines of arithmetic over the stored tensors.
use rayon::prelude::*;
use serde::Deserialize;

/// The JSON bitsandbytes stores beside a 4-bit weight.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct QuantState {
    pub quant_type: String,
    pub blocksize: usize,
    /// The weight's dtype before quantization (`bfloat16`, `float16`, `float32`).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Double quantization's block of absmaxes and offset (absent without it).
    pub nested_blocksize: Option<usize>,
    pub nested_offset: Option<f32>,
}

impl QuantState {
    /// The state from its stored bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let state: QuantState = serde_json::from_slice(bytes)
            .map_err(|e| format!("bitsandbytes quant_state is not its JSON: {e}"))?;
        if state.blocksize == 0 || state.nested_blocksize == Some(0) {
            return Err(format!(
                "bitsandbytes quant_state has a block size of 0: {state:?}"
            ));
        }
        Ok(state)
    }

    /// Values in the weight.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A block's absmaxes as stored: plain f32, or 8-bit codes of double quantization.
pub enum Absmax<'a> {
    Plain(&'a [f32]),
    Nested {
        codes: &'a [u8],
        /// `nested_quant_map`: the 256 values the codes index.
        map: &'a [f32],
        /// One per `nested_blocksize` codes.
        absmax: &'a [f32],
    },
}

/// The f32 values of a 4-bit weight (`packed`: `weight`'s bytes; `quant_map`: its 16 codes'
/// values), row-major in `state.shape`.
pub fn dequantize_4bit(
    packed: &[u8],
    absmax: Absmax<'_>,
    quant_map: &[f32],
    state: &QuantState,
) -> Result<Vec<f32>, String> {
    let n = state.len();
    let blocks = n.div_ceil(state.blocksize);
    if packed.len() < n.div_ceil(2) {
        return Err(format!(
            "{} bytes of 4-bit codes for a weight of {n} values",
            packed.len()
        ));
    }
    if quant_map.len() != 16 {
        return Err(format!("quant_map has {} values, not 16", quant_map.len()));
    }
    let scales = block_absmax(absmax, blocks, state)?;
    let mut values = vec![0f32; n];
    values
        .par_chunks_mut(state.blocksize)
        .zip(scales.par_iter())
        .enumerate()
        .for_each(|(b, (block, &scale))| {
            let first = b * state.blocksize;
            for (i, v) in block.iter_mut().enumerate() {
                let at = first + i;
                let byte = packed[at / 2];
                let code = if at.is_multiple_of(2) {
                    byte >> 4
                } else {
                    byte & 0xF
                };
                *v = quant_map[code as usize] * scale;
            }
        });
    Ok(values)
}

/// Each block's absmax, the nested ones dequantized as bitsandbytes' `dequantize_blockwise`
/// does (code value times its block's absmax), plus the offset.
fn block_absmax(absmax: Absmax<'_>, blocks: usize, state: &QuantState) -> Result<Vec<f32>, String> {
    match absmax {
        Absmax::Plain(values) if values.len() == blocks => Ok(values.to_vec()),
        Absmax::Plain(values) => Err(format!(
            "{} absmax values for {blocks} blocks",
            values.len()
        )),
        Absmax::Nested { codes, map, absmax } => {
            let (Some(nested), Some(offset)) = (state.nested_blocksize, state.nested_offset) else {
                return Err(
                    "nested absmax without nested_blocksize and nested_offset in quant_state"
                        .into(),
                );
            };
            if codes.len() != blocks || map.len() != 256 || absmax.len() != blocks.div_ceil(nested)
            {
                return Err(format!(
                    "{} absmax codes, a nested map of {} and {} nested absmax for {blocks} \
                     blocks of {nested}",
                    codes.len(),
                    map.len(),
                    absmax.len()
                ));
            }
            Ok(codes
                .iter()
                .enumerate()
                .map(|(i, &c)| map[c as usize] * absmax[i / nested] + offset)
                .collect())
        }
    }
}

/// LLM.int8's per-row scale: a row's values are its int8 codes times `SCB / 127`, as
/// bitsandbytes' `int8_vectorwise_dequant` multiplies them (by the f32 of 1/127).
pub fn int8_row_scales(scb: &[f32]) -> Vec<f32> {
    const INV_127: f32 = 1.0 / 127.0;
    scb.iter().map(|&s| s * INV_127).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(shape: Vec<usize>, blocksize: usize, nested: Option<(usize, f32)>) -> QuantState {
        QuantState {
            quant_type: "nf4".into(),
            blocksize,
            dtype: "float32".into(),
            shape,
            nested_blocksize: nested.map(|n| n.0),
            nested_offset: nested.map(|n| n.1),
        }
    }

    /// A table whose code k is worth k: the values name their codes.
    fn identity_map() -> Vec<f32> {
        (0..16).map(|k| k as f32).collect()
    }

    #[test]
    fn codes_are_read_high_nibble_first_and_scaled_per_block() {
        // Six values in blocks of 4: the last block is short, as bitsandbytes allows.
        let packed = [0x12, 0x34, 0x5f];
        let s = state(vec![2, 3], 4, None);
        let v = dequantize_4bit(&packed, Absmax::Plain(&[1.0, 10.0]), &identity_map(), &s);
        assert_eq!(v.unwrap(), [1.0, 2.0, 3.0, 4.0, 50.0, 150.0]);
    }

    #[test]
    fn nested_absmax_is_a_code_times_its_block_plus_the_offset() {
        let mut map = vec![0.0; 256];
        map[3] = 0.5;
        map[7] = -0.25;
        // Three blocks of 2 values; nested blocks of 2 absmaxes.
        let s = state(vec![6], 2, Some((2, 1.0)));
        let absmax = Absmax::Nested {
            codes: &[3, 7, 3],
            map: &map,
            absmax: &[4.0, 8.0],
        };
        let v = dequantize_4bit(&[0x11, 0x11, 0x11], absmax, &identity_map(), &s).unwrap();
        // Absmaxes: 0.5·4+1 = 3, -0.25·4+1 = 0, 0.5·8+1 = 5.
        assert_eq!(v, [3.0, 3.0, 0.0, 0.0, 5.0, 5.0]);
    }

    #[test]
    fn tensors_that_do_not_fit_the_state_are_errors() {
        let s = state(vec![8], 4, None);
        let map = identity_map();
        assert!(dequantize_4bit(&[0; 3], Absmax::Plain(&[1.0, 1.0]), &map, &s).is_err());
        assert!(dequantize_4bit(&[0; 4], Absmax::Plain(&[1.0]), &map, &s).is_err());
        assert!(dequantize_4bit(&[0; 4], Absmax::Plain(&[1.0, 1.0]), &map[..8], &s).is_err());
        let nested = Absmax::Nested {
            codes: &[0, 0],
            map: &[0.0; 256],
            absmax: &[1.0],
        };
        assert!(
            dequantize_4bit(&[0; 4], nested, &map, &s).is_err(),
            "nested codes without the state's nested block"
        );
        assert!(QuantState::parse(b"{\"quant_type\": \"nf4\"}").is_err());
        assert!(QuantState::parse(
            br#"{"quant_type": "nf4", "blocksize": 0, "dtype": "float16", "shape": [1]}"#
        )
        .is_err());
    }

    #[test]
    fn a_stored_state_parses() {
        let stored = br#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float16",
            "shape": [64, 64], "nested_blocksize": 256, "nested_dtype": "float32",
            "nested_offset": 0.05029630661010742}"#;
        let s = QuantState::parse(stored).unwrap();
        assert_eq!(
            (s.blocksize, s.len(), s.nested_blocksize),
            (64, 4096, Some(256))
        );
        assert_eq!(int8_row_scales(&[127.0]), [1.0]);
    }
}
