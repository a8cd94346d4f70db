//! Row-parallel loops for the pointwise kernels: rayon when a call has enough work to pay for
//! waking the pool, the calling thread otherwise (a decode step's norms are a few thousand
//! values: handing them to other threads costs more than computing them).
use rayon::prelude::*;

/// Index of the largest value (the first on ties; a NaN is passed over unless all are NaN, when
/// the last index is taken).
///
/// Two passes that vectorize: the largest value, then its first position. The one-pass scan
/// compared each value with `xs[best]`, a load that waits on the previous comparison: ~10
/// cycles a value, 0.6 ms of every decode step over a 152k-token vocabulary.
pub fn argmax(xs: &[f32]) -> u32 {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            // A NaN compares false and is passed over.
            *m = if x > *m { x } else { *m };
        }
    }
    let max = tail
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let mut chunks = xs.chunks_exact(LANES).enumerate();
    let found = chunks
        .find(|(_, chunk)| chunk.iter().fold(false, |hit, &x| hit | (x == max)))
        .and_then(|(c, chunk)| Some(c * LANES + chunk.iter().position(|&x| x == max)?))
        .or_else(|| {
            let start = xs.len() - tail.len();
            Some(start + tail.iter().position(|&x| x == max)?)
        });
    // None: every value is NaN (or there are none).
    found.unwrap_or(xs.len().saturating_sub(1)) as u32
}

/// Below this many output values a call runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// `f(row index, output row)` for every `cols`-wide row of `out`.
pub fn for_each_row(out: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if cols == 0 {
        return;
    }
    if out.len() < PARALLEL_MIN {
        out.chunks_exact_mut(cols)
            .enumerate()
            .for_each(|(i, row)| f(i, row));
    } else {
        // Several rows per task so each task is at least PARALLEL_MIN / 4 values.
        let rows = (PARALLEL_MIN / 4).div_ceil(cols).max(1);
        out.par_chunks_mut(rows * cols)
            .enumerate()
            .for_each(|(t, chunk)| {
                for (i, row) in chunk.chunks_exact_mut(cols).enumerate() {
                    f(t * rows + i, row);
                }
            });
    }
}

/// `f(offset, output chunk)` over `out` in contiguous chunks (pointwise ops with no rows).
pub fn for_each_chunk(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    const CHUNK: usize = PARALLEL_MIN / 4;
    if out.len() < PARALLEL_MIN {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(t, chunk)| f(t * CHUNK, chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_equal_values_and_passes_over_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, f32::NAN, 0.7]), 3);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NAN, f32::NAN, f32::NAN]), 2);
        assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY]), 1);
    }

    /// The one-pass scan the two passes replace, over vectors of every length around the lane
    /// count, with ties, infinities and NaNs at random places.
    #[test]
    fn argmax_matches_the_one_pass_scan() {
        fn scan(xs: &[f32]) -> u32 {
            let mut best = 0usize;
            for (i, &x) in xs.iter().enumerate() {
                if x > xs[best] || xs[best].is_nan() {
                    best = i;
                }
            }
            best as u32
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in (0..70).chain([1000, 151_936]) {
            for _ in 0..20 {
                let xs: Vec<f32> = (0..len)
                    .map(|_| match next() % 16 {
                        0 => f32::NAN,
                        1 => f32::NEG_INFINITY,
                        2 => f32::INFINITY,
                        // Few distinct values: ties are common.
                        r => (r % 5) as f32 - 2.0,
                    })
                    .collect();
                assert_eq!(argmax(&xs), scan(&xs), "{xs:?}");
            }
        }
    }

    #[test]
    fn every_row_is_visited_once_with_its_index() {
        for rows in [1usize, 3, 1000, 5000] {
            let cols = 17;
            let mut out = vec![0f32; rows * cols];
            for_each_row(&mut out, cols, |i, row| {
                row.iter_mut().for_each(|v| *v += i as f32)
            });
            for (i, row) in out.chunks_exact(cols).enumerate() {
                assert!(row.iter().all(|&v| v == i as f32), "row {i}");
            }
            let mut flat = vec![0f32; rows * cols];
            for_each_chunk(&mut flat, |at, c| {
                c.iter_mut()
                    .enumerate()
                    .for_each(|(j, v)| *v += (at + j) as f32)
            });
            assert!(flat.iter().enumerate().all(|(j, &v)| v == j as f32));
        }
    }
}
