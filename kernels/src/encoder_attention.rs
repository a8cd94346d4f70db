//! An encoder's bidirectional attention on the CPU, straight from the rows of its fused
//! q|k|v projection: per input, per block of queries, per head, the scores `q · kᵀ`, their
//! softmax and `p · v` written into the head's columns of the output rows. The products run
//! on `gemm` with the rows' strides as they are, so no head is split out, transposed or
//! copied, and a block's scores are the only intermediate (on candle's batched products the
//! `[heads, len, len]` scores of a 512-token input were 12 MB allocated, zeroed, written and
//! read per layer, beside the copies splitting the heads and joining them back). Blocks of
//! queries of every input run in parallel, each product on its own thread.
use crate::activation::softmax_band_row;
use rayon::prelude::*;

/// The most queries one block holds: enough rows for the score product to run at the
/// GEMM's speed, few enough that a 128-token input still spreads over two threads.
const QUERY_BLOCK: usize = 64;

/// Attention over `qkv`'s rows (`[tokens, 3 · heads · head_dim]`: each token's queries, then
/// keys, then values, head after head, the queries already scaled), each input (`spans`:
/// `(first row, rows)`, in order and apart) attending over its own rows only, within `window`
/// positions each side where one is given (ModernBERT's local layers). `out` gets
/// `[tokens, heads · head_dim]`; rows outside every span are left as they are.
pub fn encoder_attention(
    qkv: &[f32],
    spans: &[(usize, usize)],
    heads: usize,
    head_dim: usize,
    window: Option<usize>,
    out: &mut [f32],
) -> Result<(), String> {
    let width = heads * head_dim;
    let tokens = out.len() / width.max(1);
    if width == 0 || out.len() != tokens * width || qkv.len() != tokens * 3 * width {
        return Err(format!(
            "{} q|k|v values and {} outputs for rows of {heads} heads of {head_dim}",
            qkv.len(),
            out.len()
        ));
    }
    let blocks = query_blocks(spans, tokens, width, window, out)?;
    blocks.into_par_iter().for_each(|mut block| {
        let mut scores = vec![0f32; block.rows * block.keys];
        for head in 0..heads {
            attend_head(qkv, &mut block, head, head_dim, width, window, &mut scores);
        }
    });
    Ok(())
}

/// The queries and keys of `qkv`'s rows (as `encoder_attention` takes them) turned in place
/// by their positions from each input's first row (`spans`), the two halves of a head rotated
/// together (GPT-NeoX's layout, transformers' `rotate_half`): NomicBERT's, GTE's and
/// ModernBERT's rotary positions. `cos` and `sin` hold `head_dim / 2` angles a position, as
/// many positions as the longest input. Values are computed as candle's `rope` computes them.
pub fn rotate_queries_and_keys(
    qkv: &mut [f32],
    spans: &[(usize, usize)],
    heads: usize,
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
) -> Result<(), String> {
    let (width, half) = (heads * head_dim, head_dim / 2);
    let longest = spans.iter().map(|&(_, len)| len).max().unwrap_or(0);
    if width == 0
        || !head_dim.is_multiple_of(2)
        || cos.len() != sin.len()
        || cos.len() < longest * half
    {
        return Err(format!(
            "{} angles for inputs of up to {longest} positions of heads of {head_dim}",
            cos.len()
        ));
    }
    check_spans(spans, qkv.len() / (3 * width))?;
    for &(start, len) in spans {
        let rows = &mut qkv[start * 3 * width..(start + len) * 3 * width];
        rows.par_chunks_mut(3 * width)
            .enumerate()
            .for_each(|(position, row)| {
                let cos = &cos[position * half..][..half];
                let sin = &sin[position * half..][..half];
                // The queries' and the keys' heads, side by side at the row's start.
                for head in row[..2 * width].chunks_mut(head_dim) {
                    let (first, second) = head.split_at_mut(half);
                    for (((a, b), &c), &s) in first.iter_mut().zip(second).zip(cos).zip(sin) {
                        let (x1, x2) = (*a, *b);
                        *a = x1 * c - x2 * s;
                        *b = x1 * s + x2 * c;
                    }
                }
            });
    }
    Ok(())
}

/// Whether `spans` are in order, apart, and within `tokens` rows.
fn check_spans(spans: &[(usize, usize)], tokens: usize) -> Result<(), String> {
    let mut row = 0;
    for &(start, len) in spans {
        if start < row || start + len > tokens {
            return Err(format!(
                "input rows {start}..{} are out of order or past the {tokens} rows",
                start + len
            ));
        }
        row = start + len;
    }
    Ok(())
}

/// One block's work: queries `first_query..first_query + rows` of the input whose first row
/// is `start`, against its keys `first_key..first_key + keys`, into `out` (its rows).
struct QueryBlock<'a> {
    start: usize,
    first_query: usize,
    rows: usize,
    first_key: usize,
    keys: usize,
    out: &'a mut [f32],
}

/// `out` cut into the blocks of every span's queries; under a `window`, blocks of twice the
/// window, each with only the keys its queries' windows reach.
fn query_blocks<'a>(
    spans: &[(usize, usize)],
    tokens: usize,
    width: usize,
    window: Option<usize>,
    mut out: &'a mut [f32],
) -> Result<Vec<QueryBlock<'a>>, String> {
    check_spans(spans, tokens)?;
    let mut blocks = Vec::new();
    let mut row = 0;
    for &(start, len) in spans {
        let rest = std::mem::take(&mut out);
        let (_, rest) = rest.split_at_mut((start - row) * width);
        let (mut input, rest) = rest.split_at_mut(len * width);
        out = rest;
        row = start + len;
        let size = match window {
            Some(w) if len > w + 1 => (2 * w).max(1),
            _ => QUERY_BLOCK,
        };
        for first_query in (0..len).step_by(size) {
            let rows = size.min(len - first_query);
            let (first_key, end) = match window {
                Some(w) => (
                    first_query.saturating_sub(w),
                    (first_query + rows + w).min(len),
                ),
                None => (0, len),
            };
            let (block_out, next) = std::mem::take(&mut input).split_at_mut(rows * width);
            input = next;
            blocks.push(QueryBlock {
                start,
                first_query,
                rows,
                first_key,
                keys: end - first_key,
                out: block_out,
            });
        }
    }
    Ok(blocks)
}

/// One head of one block: scores, softmax, and the weighted values into the head's columns.
fn attend_head(
    qkv: &[f32],
    block: &mut QueryBlock,
    head: usize,
    head_dim: usize,
    width: usize,
    window: Option<usize>,
    scores: &mut [f32],
) {
    let stride = 3 * width;
    let (rows, keys) = (block.rows, block.keys);
    let column = head * head_dim;
    let queries = &qkv[(block.start + block.first_query) * stride + column..];
    let first_key_row = (block.start + block.first_key) * stride;
    let key_rows = &qkv[first_key_row + width + column..];
    let value_rows = &qkv[first_key_row + 2 * width + column..];
    // The last value each product reads: row `n - 1` at `stride`, `head_dim` wide.
    let reach = |n: usize| (n - 1) * stride + head_dim;
    assert!(
        queries.len() >= reach(rows)
            && value_rows.len() >= reach(keys)
            && scores.len() == rows * keys
            && block.out.len() == rows * width,
        "attention block out of its rows"
    );
    // SAFETY (both products): the assert above keeps every element they read or write
    // inside its slice: the queries' `rows` rows and the keys' and values' `keys` rows, each
    // `head_dim` wide at `stride`; the scores `rows × keys`; the output `rows` rows of
    // `width` from `column` (`column + head_dim ≤ width`). `scores` and `block.out` are this
    // task's alone; nothing else writes `qkv`.
    unsafe {
        // scores = q · kᵀ: the keys' rows read as the columns of the right-hand side.
        let keys_t = Operand::columns(key_rows.as_ptr(), stride);
        product(
            rows,
            keys,
            head_dim,
            scores.as_mut_ptr(),
            keys,
            queries.as_ptr(),
            stride,
            keys_t,
        );
    }
    for (r, row) in scores.chunks_mut(keys).enumerate() {
        softmax_band_row(row, block.first_query + r, block.first_key, window);
    }
    // SAFETY: as above.
    unsafe {
        // out[:, column..column + head_dim] = softmax · v.
        let dst = block.out.as_mut_ptr().add(column);
        let values = Operand::rows(value_rows.as_ptr(), stride);
        product(
            rows,
            head_dim,
            keys,
            dst,
            width,
            scores.as_ptr(),
            keys,
            values,
        );
    }
}

/// A right-hand side of `product`: `k × n` values from `at`, `row_step` apart down a column
/// and `column_step` apart along a row.
struct Operand {
    at: *const f32,
    row_step: isize,
    column_step: isize,
}

impl Operand {
    /// Rows `stride` apart, each row's values side by side.
    fn rows(at: *const f32, stride: usize) -> Operand {
        Operand {
            at,
            row_step: stride as isize,
            column_step: 1,
        }
    }

    /// The transpose of `rows`: each column's values side by side, columns `stride` apart.
    fn columns(at: *const f32, stride: usize) -> Operand {
        Operand {
            at,
            row_step: 1,
            column_step: stride as isize,
        }
    }
}

/// `dst = lhs · rhs` on the calling thread: `dst` `m × n` and `lhs` `m × k`, each row-major
/// with rows `dst_stride` and `lhs_stride` apart, `rhs` `k × n`.
///
/// # Safety
/// Every element those shapes and steps address lies inside its allocation, and nothing else
/// reads or writes `dst`'s while this runs.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_stride: usize,
    lhs: *const f32,
    lhs_stride: usize,
    rhs: Operand,
) {
    // SAFETY: the caller's promise covers the addresses gemm derives from these strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_stride as isize,
            false,
            lhs,
            1,
            lhs_stride as isize,
            rhs.at,
            rhs.column_step,
            rhs.row_step,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attention of `qkv`'s rows computed one value at a time in f64.
    fn reference(
        qkv: &[f32],
        spans: &[(usize, usize)],
        heads: usize,
        head_dim: usize,
        window: Option<usize>,
    ) -> Vec<f32> {
        let width = heads * head_dim;
        let mut out = vec![0f32; qkv.len() / 3];
        let at = |row: usize, part: usize, head: usize, d: usize| {
            qkv[row * 3 * width + part * width + head * head_dim + d] as f64
        };
        for &(start, len) in spans {
            for head in 0..heads {
                for i in 0..len {
                    let seen: Vec<usize> = (0..len)
                        .filter(|&j| window.is_none_or(|w| i.abs_diff(j) <= w))
                        .collect();
                    let scores: Vec<f64> = (seen.iter())
                        .map(|&j| {
                            (0..head_dim)
                                .map(|d| at(start + i, 0, head, d) * at(start + j, 1, head, d))
                                .sum()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::MIN, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..head_dim {
                        let value: f64 = (seen.iter().zip(&weights))
                            .map(|(&j, w)| w * at(start + j, 2, head, d))
                            .sum();
                        out[(start + i) * width + head * head_dim + d] = (value / total) as f32;
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 7919) % 211) as f32 / 211.0 * 2.0 - 1.0)
            .collect()
    }

    fn check(
        spans: &[(usize, usize)],
        tokens: usize,
        heads: usize,
        head_dim: usize,
        window: Option<usize>,
    ) {
        let width = heads * head_dim;
        let qkv = values(tokens * 3 * width, heads + head_dim);
        let want = reference(&qkv, spans, heads, head_dim, window);
        let mut got = vec![0f32; tokens * width];
        encoder_attention(&qkv, spans, heads, head_dim, window, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 2e-5,
                "{spans:?} window {window:?}: value {i} (row {}) is {g}, want {w}",
                i / width
            );
        }
    }

    #[test]
    fn each_input_attends_over_its_own_rows_in_blocks_of_queries() {
        // Inputs shorter than a block, of one block and a half, and with a gap before one:
        // rows outside every input stay 0.
        check(&[(0, 5), (5, 100), (110, 1)], 111, 3, 8, None);
    }

    #[test]
    fn a_window_keeps_each_query_to_its_neighbours() {
        check(&[(0, 40), (40, 3), (43, 9)], 52, 2, 16, Some(4));
        // A window no shorter than the input sees every key.
        check(&[(0, 9)], 9, 2, 4, Some(8));
    }

    #[test]
    fn queries_and_keys_turn_by_their_position_in_their_input() {
        let (heads, head_dim, half) = (2, 4, 2);
        let width = heads * head_dim;
        let angles = |p: usize, j: usize| p as f32 / 10f32.powi(j as i32);
        let cos: Vec<f32> = (0..3 * half)
            .map(|i| angles(i / half, i % half).cos())
            .collect();
        let sin: Vec<f32> = (0..3 * half)
            .map(|i| angles(i / half, i % half).sin())
            .collect();
        let original = values(5 * 3 * width, 1);
        let mut qkv = original.clone();
        rotate_queries_and_keys(&mut qkv, &[(0, 2), (2, 3)], heads, head_dim, &cos, &sin).unwrap();
        for (row, position) in [0, 1, 0, 1, 2].into_iter().enumerate() {
            let (was, now) = (&original[row * 3 * width..], &qkv[row * 3 * width..]);
            // Values are not turned.
            assert_eq!(was[2 * width..3 * width], now[2 * width..3 * width]);
            for head in 0..2 * heads {
                for j in 0..half {
                    let (a, b) = (was[head * head_dim + j], was[head * head_dim + j + half]);
                    let (c, s) = (angles(position, j).cos(), angles(position, j).sin());
                    assert!((now[head * head_dim + j] - (a * c - b * s)).abs() < 1e-6);
                    assert!((now[head * head_dim + j + half] - (a * s + b * c)).abs() < 1e-6);
                }
            }
        }
        // Too few angles for the longest input; inputs out of order; heads of no width.
        let turn = |qkv: &mut [f32], spans: &[(usize, usize)], heads| {
            rotate_queries_and_keys(qkv, spans, heads, head_dim, &cos, &sin)
        };
        assert!(turn(&mut qkv, &[(0, 4)], heads).is_err());
        assert!(turn(&mut qkv, &[(2, 3), (0, 2)], heads).is_err());
        assert!(turn(&mut qkv, &[(0, 2)], 0).is_err());
    }

    #[test]
    fn inputs_out_of_order_or_past_the_rows_are_refused() {
        let mut out = vec![0f32; 4 * 8];
        let qkv = vec![0f32; 4 * 24];
        assert!(encoder_attention(&qkv, &[(2, 2), (0, 2)], 2, 4, None, &mut out).is_err());
        assert!(encoder_attention(&qkv, &[(3, 2)], 2, 4, None, &mut out).is_err());
        assert!(encoder_attention(&qkv[1..], &[(0, 2)], 2, 4, None, &mut out).is_err());
    }
}
