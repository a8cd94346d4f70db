//! Portable dot products of weight rows with quantized activation rows: the reference the
//! SIMD kernels are tested against, and the path on CPUs without them. Every block is decoded
//! to integers with `formats::decode_block`, multiplied with the activation quants exactly in
//! integers per 16 elements, then scaled in f32 — the same arithmetic the SIMD kernels do, up
//! to the order of float additions.
use super::activations::RowsView;
use super::formats::{decode_block, ActFormat, IntBlock, QuantType};

/// out[c][r] = (weight row c) · (activation row r) for r < x.rows.
pub fn tile<const C: usize, const R: usize>(
    ty: QuantType,
    w: [&[u8]; C],
    x: &RowsView<'_>,
    out: &mut [[f32; R]; C],
) {
    let mut block = IntBlock::default();
    let elems = ty.block_elems();
    let rows = x.rows.min(R);
    for (wc, oc) in w.iter().zip(out.iter_mut()) {
        oc.fill(0.0);
        for (b, bytes) in wc.chunks_exact(ty.block_bytes()).enumerate() {
            decode_block(ty, bytes, &mut block);
            for (r, o) in oc.iter_mut().enumerate().take(rows) {
                *o += block_dot(ty, &block, x, r, b * elems);
            }
        }
    }
}

/// One decoded weight block against activation row `r` at element `at`.
fn block_dot(ty: QuantType, block: &IntBlock, x: &RowsView<'_>, r: usize, at: usize) -> f32 {
    let elems = ty.block_elems();
    let xq = &x.qs[r * x.k + at..r * x.k + at + elems];
    let group = |g: usize| -> i32 {
        (16 * g..16 * g + 16)
            .map(|i| block.q[i] * xq[i] as i32)
            .sum()
    };
    match (ty.act_format(), x.fs16.is_empty()) {
        // K-quants against the Panel format: a scale entry per 32 (repeated from the
        // per-256 quantization), and the mins multiply scale × quant sums per 16.
        (ActFormat::B256, false) => (0..elems / 32)
            .map(|c| {
                let dx = x.d[(r * x.k + at) / 32 + c];
                let fs = &x.fs16[(r * x.k + at) / 16 + 2 * c..][..2];
                (0..2)
                    .map(|h| {
                        let g = 2 * c + h;
                        dx * block.scale[g] * group(g) as f32 - block.min[g] * fs[h]
                    })
                    .sum::<f32>()
            })
            .sum(),
        (ActFormat::B32 | ActFormat::Panel { .. }, _) => {
            // One activation scale per 32: both 16-groups share it (and the weight scale).
            // Q4_1 / Q5_1 add their minimum (−min) times the block's activation sum.
            let dx = x.d[(r * x.k + at) / 32];
            let sum = x.sums[(r * x.k + at) / 32] as f32;
            dx * (block.scale[0] * group(0) as f32 + block.scale[1] * group(1) as f32
                - block.min[0] * sum)
        }
        (ActFormat::B256, true) => {
            let dx = x.d[(r * x.k + at) / 256];
            let sums = &x.sums[(r * x.k + at) / 16..][..16];
            let total: f32 = (0..16)
                .map(|g| block.scale[g] * group(g) as f32 - block.min[g] * sums[g] as f32)
                .sum();
            dx * total
        }
    }
}

/// y[M×N] = x · Wᵀ as the AMX kernels compute it: weights dequantized and activations rounded
/// to bf16 (nearest even), their products (exact in f32) added in order of K into an f32.
pub fn bf16_products(
    ty: QuantType,
    w: &[u8],
    row_bytes: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) {
    let bf16 = |v: f32| half::bf16::from_f32(v).to_f32();
    let xb: Vec<f32> = x[..m * k].iter().map(|&v| bf16(v)).collect();
    let n = w.len() / row_bytes;
    let mut wf = vec![0f32; k];
    for (c, row) in w.chunks_exact(row_bytes).enumerate() {
        super::formats::dequantize(ty, row, &mut wf);
        wf.iter_mut().for_each(|v| *v = bf16(*v));
        for r in 0..m {
            let xr = &xb[r * k..(r + 1) * k];
            y[r * n + c] = xr.iter().zip(&wf).fold(0f32, |acc, (a, b)| acc + a * b);
        }
    }
}
