//! Portable dot products: the reference the SIMD paths are tested against. Same arithmetic:
//! integer sums per half sub-block, scaled in f32.
use super::activations::RowsView;
use super::blocks::{decode, QuantType, SubBlock};

pub fn dots<const C: usize, const R: usize>(
    ty: QuantType,
    w: [&[u8]; C],
    x: &RowsView<'_>,
    rows: usize,
    out: &mut [[f32; R]; C],
) {
    for (wc, oc) in w.iter().zip(out.iter_mut()) {
        row_dots(ty, wc, x, rows, oc);
    }
}

fn row_dots<const R: usize>(
    ty: QuantType,
    w: &[u8],
    x: &RowsView<'_>,
    rows: usize,
    out: &mut [f32; R],
) {
    let mut sub = SubBlock::default();
    let subs = ty.subs();
    for (b, block) in w.chunks_exact(ty.block_bytes()).enumerate() {
        for j in 0..subs {
            decode(ty, block, j, &mut sub);
            let xb = b * subs + j;
            for (r, o) in out.iter_mut().enumerate().take(rows) {
                let idx = r * x.blocks + xb;
                let xq = &x.qs[idx * 32..(idx + 1) * 32];
                let half = |h: usize| -> i32 {
                    (16 * h..16 * h + 16)
                        .map(|i| sub.q[i] as i32 * xq[i] as i32)
                        .sum()
                };
                let dot = sub.scale[0] * half(0) as f32 + sub.scale[1] * half(1) as f32;
                *o += x.scales[idx] * (dot - sub.min * x.sums[idx] as f32);
            }
        }
    }
}
