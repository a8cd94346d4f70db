//! Portable dot products: the reference the SIMD paths are tested against.
use super::activations::RowsView;
use super::blocks::{decode, scale, QuantType};

pub fn dots<const R: usize>(ty: QuantType, w: &[u8], x: &RowsView<'_>, rows: usize, out: &mut [f32; R]) {
    let mut q = [0i8; 32];
    for (b, block) in w.chunks_exact(ty.block_bytes()).enumerate() {
        decode(ty, block, &mut q);
        let d = scale(block);
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let xb = &x.qs[(r * x.blocks + b) * 32..(r * x.blocks + b + 1) * 32];
            let dot: i32 = q.iter().zip(xb).map(|(&a, &c)| a as i32 * c as i32).sum();
            *o += d * x.scales[r * x.blocks + b] * dot as f32;
        }
    }
}
