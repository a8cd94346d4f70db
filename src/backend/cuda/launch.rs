//! Launch configurations of candor's CUDA kernels (kernels/cuda): grid and block sizes from the
//! problem shape, checked against the hardware limits so a shape the kernels cannot take is an
//! error instead of a failed or truncated launch. Pure host logic: tested without a GPU.
use super::error::CudaError;

/// Grid and block dimensions (x, y, z).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
}

const WARP: u32 = 32;
const MAX_BLOCK_THREADS: u32 = 1024;
const MAX_GRID_X: usize = i32::MAX as usize;
const MAX_GRID_Y: usize = 65_535;
/// Threads of an elementwise (grid-stride) launch, and the most blocks it uses: enough to fill
/// any current GPU; larger inputs loop.
const ELEMENTWISE_THREADS: u32 = 256;
const ELEMENTWISE_MAX_BLOCKS: usize = 65_536;

/// Threads of one paged-attention block (four warps; kernels/cuda/paged_attention.cu).
pub const ATTENTION_THREADS: u32 = 128;
/// The largest head_dim the attention kernel takes (`ATTN_MAX_HEAD_DIM` in the kernel): room
/// for DeepSeek's latent heads (576), which `supports` then reports, so multi-head latent
/// attention caches its latent on CUDA too instead of every head's keys and values.
pub const ATTENTION_MAX_HEAD_DIM: usize = 640;

fn grid_x(rows: usize, what: &str) -> Result<u32, CudaError> {
    if rows > MAX_GRID_X {
        return Err(CudaError::Launch(format!(
            "{what}: {rows} rows exceed the grid limit {MAX_GRID_X}"
        )));
    }
    Ok(rows as u32)
}

/// One block per row, its threads striding over `items` work items of the row: the items
/// rounded up to whole warps, between one warp and 1024 threads. Kernels that reduce over the
/// block (rms_norm) need whole warps. Callers skip empty launches (no rows).
pub fn per_row(rows: usize, items: usize) -> Result<Launch, CudaError> {
    let threads = (items.min(MAX_BLOCK_THREADS as usize) as u32)
        .div_ceil(WARP)
        .max(1)
        * WARP;
    Ok(Launch {
        grid: (grid_x(rows, "per-row kernel")?, 1, 1),
        block: (threads, 1, 1),
    })
}

/// One block per row with a power-of-two number of threads (a tree reduction halves it each
/// step: argmax.cu), as many as the row has items, at least a warp, at most 1024.
pub fn per_row_pow2(rows: usize, items: usize) -> Result<Launch, CudaError> {
    let threads = (items.clamp(WARP as usize, MAX_BLOCK_THREADS as usize) as u32)
        .next_power_of_two()
        .min(MAX_BLOCK_THREADS);
    Ok(Launch {
        grid: (grid_x(rows, "per-row reduction")?, 1, 1),
        block: (threads, 1, 1),
    })
}

/// A grid-stride loop over `n` elements.
pub fn elementwise(n: usize) -> Launch {
    let blocks = n
        .div_ceil(ELEMENTWISE_THREADS as usize)
        .clamp(1, ELEMENTWISE_MAX_BLOCKS);
    Launch {
        grid: (blocks as u32, 1, 1),
        block: (ELEMENTWISE_THREADS, 1, 1),
    }
}

/// Paged attention: one block per (token, query head).
pub fn attention(
    tokens: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<Launch, CudaError> {
    if head_dim == 0 || head_dim > ATTENTION_MAX_HEAD_DIM {
        return Err(CudaError::Launch(format!(
            "attention: head_dim {head_dim} outside 1..={ATTENTION_MAX_HEAD_DIM}"
        )));
    }
    if heads == 0 || heads > MAX_GRID_Y || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(CudaError::Launch(format!(
            "attention: {heads} query heads over {kv_heads} KV heads"
        )));
    }
    Ok(Launch {
        grid: (grid_x(tokens, "attention")?, heads as u32, 1),
        block: (ATTENTION_THREADS, 1, 1),
    })
}

/// Keys a block attends to at least before a row's keys are split across blocks: below this a
/// split's partials cost more to write and combine than its walk saves.
const ATTENTION_MIN_SPLIT_KEYS: usize = 256;
/// At most this many key ranges per row (the last block of each row and head reads every
/// range's partials).
const ATTENTION_MAX_SPLITS: usize = 32;

/// How the simple attention kernel cuts each row's visible keys: `(ranges, keys per range)`,
/// `(1, _)` for one pass; `longest_context` is the most keys a row of the batch sees (its
/// context, or its window). A batch of few rows and heads (decode of one or a few sequences)
/// leaves most SMs idle while each block walks its keys alone; when the longest span covers
/// several ranges, rows are cut into enough ranges of at least `ATTENTION_MIN_SPLIT_KEYS` keys
/// (a multiple of the kernel's 64-key tile) for about two blocks per SM.
pub fn attention_key_splits(
    tokens: usize,
    heads: usize,
    longest_context: usize,
    sms: usize,
) -> (usize, usize) {
    let blocks = (tokens * heads).max(1);
    let target = 2 * sms.max(1);
    let most = longest_context
        .div_ceil(ATTENTION_MIN_SPLIT_KEYS)
        .min(ATTENTION_MAX_SPLITS);
    if blocks >= target || most < 2 {
        return (1, longest_context.max(1));
    }
    let ranges = target.div_ceil(blocks).clamp(1, most);
    let keys = longest_context.div_ceil(ranges).next_multiple_of(64);
    (longest_context.div_ceil(keys), keys)
}

/// The simple kernel over key ranges: one block per (token, query head, range).
pub fn attention_split(
    tokens: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ranges: usize,
) -> Result<Launch, CudaError> {
    let one = attention(tokens, heads, kv_heads, head_dim)?;
    if ranges == 0 || ranges > MAX_GRID_Y {
        return Err(CudaError::Launch(format!("attention: {ranges} key ranges")));
    }
    Ok(Launch {
        grid: (one.grid.0, one.grid.1, ranges as u32),
        block: one.block,
    })
}

/// Query rows per block of the tensor-core prefill kernel (paged_attention_mma.cu) for
/// `head_dim`: its `PAGED_ATTENTION_MMA` instantiations. None for head sizes it has no
/// instance for (the simple kernel takes those).
pub fn mma_attention_rows(head_dim: usize) -> Option<usize> {
    match head_dim {
        64 | 128 => Some(64),
        256 => Some(32),
        _ => None,
    }
}

/// The tensor-core prefill kernel: one block of 16 rows per warp for each (query tile, head).
pub fn attention_mma(
    tiles: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<Launch, CudaError> {
    let rows = mma_attention_rows(head_dim).ok_or_else(|| {
        CudaError::Launch(format!(
            "tensor-core attention: no kernel for head_dim {head_dim}"
        ))
    })?;
    let simple = attention(tiles, heads, kv_heads, head_dim)?;
    Ok(Launch {
        grid: simple.grid,
        block: (rows as u32 / 16 * WARP, 1, 1),
    })
}

/// Most rows of x the skinny decode product takes (matvec.cu).
pub const MATVEC_MAX_ROWS: usize = 8;
/// Most rows matvec.cu normalizes as it reads them (its RMSNorm instances); more go through
/// the RMSNorm kernel first.
pub const MATVEC_MAX_NORM_ROWS: usize = 2;
/// Warps per block of matvec.cu (`MATVEC_WARPS`).
const MATVEC_WARPS: u32 = 4;
/// The alignment of matvec.cu's vector loads.
const MATVEC_VECTOR_BYTES: usize = 16;

/// A launch of matvec.cu: the instance (`_r1`, `_r2`, `_r4` or `_r8`: the rows it computes,
/// of which the real ones are stored) and its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatvecLaunch {
    pub instance_rows: usize,
    pub launch: Launch,
}

/// Output columns each warp of matvec.cu computes (`MATVEC_COLUMNS`).
pub const MATVEC_COLUMNS_PER_WARP: usize = 2;

/// The skinny decode product `y [rows, n] = x [rows, k] · W [n, k]ᵀ` of elements of
/// `elem_bytes`: the smallest instance that holds the rows, four warps per block, each warp
/// `MATVEC_COLUMNS_PER_WARP` output columns. None where the kernel does not apply: no rows or
/// more than `MATVEC_MAX_ROWS`, no columns, a row of W that is not a whole number of 16-byte
/// vectors, or any of `offsets` (element counts: where each input starts, the row strides) not
/// on a 16-byte boundary; cuBLAS takes those.
pub fn matvec(
    rows: usize,
    n: usize,
    k: usize,
    elem_bytes: usize,
    offsets: &[usize],
) -> Option<MatvecLaunch> {
    let aligned = |elems: usize| (elems * elem_bytes).is_multiple_of(MATVEC_VECTOR_BYTES);
    if !(1..=MATVEC_MAX_ROWS).contains(&rows)
        || n == 0
        || k == 0
        || !aligned(k)
        || !offsets.iter().all(|&o| aligned(o))
        || i32::try_from(n).is_err()
        || i32::try_from(k).is_err()
    {
        return None;
    }
    let instance_rows = rows.next_power_of_two();
    let warps = n.div_ceil(MATVEC_COLUMNS_PER_WARP);
    let blocks = warps.div_ceil(MATVEC_WARPS as usize);
    Some(MatvecLaunch {
        instance_rows,
        launch: Launch {
            grid: (grid_x(blocks, "matvec").ok()?, 1, 1),
            block: (MATVEC_WARPS * WARP, 1, 1),
        },
    })
}

/// A host size as the `int` the kernels take.
pub fn as_i32(v: usize, what: &str) -> Result<i32, CudaError> {
    i32::try_from(v).map_err(|_| CudaError::Launch(format!("{what} = {v} exceeds i32")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_row_uses_whole_warps_and_caps_at_1024() {
        assert_eq!(per_row(7, 1).unwrap().block.0, 32);
        assert_eq!(per_row(7, 33).unwrap().block.0, 64);
        assert_eq!(per_row(7, 4096).unwrap().block.0, 1024);
        assert_eq!(per_row(7, 4096).unwrap().grid, (7, 1, 1));
        for items in [1, 31, 32, 100, 896, 1000, 5000] {
            let b = per_row(1, items).unwrap().block.0;
            assert_eq!(b % 32, 0);
            assert!((32..=1024).contains(&b));
            assert!(b as usize >= items.min(1024));
        }
        assert!(per_row(usize::MAX, 8).is_err());
    }

    #[test]
    fn per_row_pow2_is_a_power_of_two_warp_multiple() {
        assert_eq!(per_row_pow2(3, 1).unwrap().block.0, 32);
        assert_eq!(per_row_pow2(3, 33).unwrap().block.0, 64);
        assert_eq!(per_row_pow2(3, 600).unwrap().block.0, 1024);
        assert_eq!(per_row_pow2(3, 151_936).unwrap().block.0, 1024);
        assert_eq!(per_row_pow2(3, 151_936).unwrap().grid, (3, 1, 1));
        assert!(per_row_pow2(usize::MAX, 8).is_err());
    }

    #[test]
    fn key_splits_fill_an_idle_gpu_on_long_contexts_only() {
        // One sequence of Llama-8B (32 heads) on 132 SMs.
        assert_eq!(
            attention_key_splits(1, 32, 200, 132),
            (1, 200),
            "short: one pass"
        );
        let (ranges, keys) = attention_key_splits(1, 32, 8192, 132);
        assert!(ranges > 1 && keys % 64 == 0 && keys >= ATTENTION_MIN_SPLIT_KEYS);
        assert!(
            ranges * keys >= 8192 && (ranges - 1) * keys < 8192,
            "{ranges} x {keys}"
        );
        assert!(32 * ranges >= 2 * 132 && ranges <= ATTENTION_MAX_SPLITS);
        // A very long context is capped in ranges; each range grows.
        let (ranges, keys) = attention_key_splits(1, 8, 1 << 20, 132);
        assert_eq!(ranges, ATTENTION_MAX_SPLITS);
        assert!(ranges * keys >= 1 << 20);
        // 32 sequences already fill the GPU: one pass.
        assert_eq!(attention_key_splits(32, 32, 8192, 132).0, 1);
        // 600 keys: at most 3 ranges of at least 256 keys, the last one short.
        assert_eq!(attention_key_splits(1, 32, 600, 132), (3, 256));
        let l = attention_split(1, 32, 8, 128, 4).unwrap();
        assert_eq!((l.grid, l.block.0), ((1, 32, 4), ATTENTION_THREADS));
        assert!(attention_split(1, 32, 8, 128, 0).is_err());
    }

    #[test]
    fn matvec_covers_every_column_and_declines_what_it_cannot_load() {
        // Llama-8B's joined q/k/v at batch 1 (bf16): 6144 columns, two per warp, four warps.
        let l = matvec(1, 6144, 4096, 2, &[0, 0, 4096]).unwrap();
        assert_eq!(l.instance_rows, 1);
        assert_eq!((l.launch.grid, l.launch.block), ((768, 1, 1), (128, 1, 1)));
        // Three rows on the four-row instance; 37 columns: 19 warps, a partial last block.
        let l = matvec(3, 37, 264, 2, &[]).unwrap();
        assert_eq!((l.instance_rows, l.launch.grid.0), (4, 5));
        for rows in 1..=MATVEC_MAX_ROWS {
            let l = matvec(rows, 1001, 64, 2, &[]).unwrap();
            assert!(l.instance_rows >= rows && l.instance_rows < 2 * rows);
            assert!([1, 2, 4, 8].contains(&l.instance_rows));
            let per_block = 4 * MATVEC_COLUMNS_PER_WARP;
            let covered = l.launch.grid.0 as usize * per_block;
            assert!(covered >= 1001 && covered - 1001 < per_block);
        }
        assert!(matvec(0, 8, 64, 2, &[]).is_none(), "no rows");
        assert!(matvec(9, 8, 64, 2, &[]).is_none(), "prefill rows: cuBLAS");
        assert!(matvec(1, 0, 64, 2, &[]).is_none());
        assert!(matvec(1, 8, 60, 2, &[]).is_none(), "k of 120 bytes");
        assert!(matvec(1, 8, 64, 2, &[4]).is_none(), "an offset of 8 bytes");
        assert!(matvec(1, 8, 64, 2, &[8, 16]).is_some());
    }

    #[test]
    fn elementwise_covers_small_and_caps_large_inputs() {
        assert_eq!(elementwise(0).grid.0, 1);
        assert_eq!(elementwise(256).grid.0, 1);
        assert_eq!(elementwise(257).grid.0, 2);
        // 8B parameters: the grid is capped, the kernel's loop covers the rest.
        let l = elementwise(8_000_000_000);
        assert_eq!(l.grid.0 as usize, ELEMENTWISE_MAX_BLOCKS);
    }

    #[test]
    fn attention_checks_heads_and_head_dim() {
        let l = attention(512, 32, 8, 128).unwrap();
        assert_eq!(l.grid, (512, 32, 1));
        assert_eq!(l.block, (ATTENTION_THREADS, 1, 1));
        assert!(attention(1, 32, 8, 1024).is_err());
        assert!(attention(1, 128, 1, 576).is_ok(), "DeepSeek's latent heads");
        assert!(attention(1, 32, 0, 128).is_err());
        assert!(
            attention(1, 30, 8, 128).is_err(),
            "heads must be a multiple of KV heads"
        );
        assert!(attention(1, 70_000, 70_000, 64).is_err());
        assert!(as_i32(1 << 31, "x").is_err());
        // Tensor-core tiles: 16 rows per warp; no kernel for odd head sizes.
        let l = attention_mma(9, 32, 8, 128).unwrap();
        assert_eq!((l.grid, l.block), ((9, 32, 1), (128, 1, 1)));
        assert_eq!(attention_mma(3, 4, 1, 256).unwrap().block, (64, 1, 1));
        assert!(attention_mma(3, 4, 1, 96).is_err());
        assert!(attention_mma(3, 30, 8, 128).is_err());
        assert_eq!(as_i32(5, "x").unwrap(), 5);
    }
}
