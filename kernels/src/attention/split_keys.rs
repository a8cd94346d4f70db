//! Decode rows over long contexts when rows × KV heads are too few to keep every thread busy
//! (one sequence decoding, a few): each row's KV group runs as several tasks over consecutive
//! segments of its keys, each a softmax of its own kept with its maximum and sum, merged at the
//! end (flash-decoding's split, on the CPU).
//!
//! The alternative, splitting a KV group's query heads over tasks, has every task read and
//! widen (or dequantize) all of the group's K and V rows: Qwen2.5-0.5B's seven heads per KV
//! head made one decode row widen each row seven times, and at 4096 tokens of context
//! attention took over half of each step.
use super::{AttnShape, Heads, KvElement, PagedKv, Scratch, SeqQueries};
use rayon::prelude::*;

/// Keys per segment at least: shorter ones would spend more on their merge and their task
/// than a split saves.
const MIN_SEGMENT_KEYS: usize = 256;

/// One decode row's place: its sequence, position and first visible key.
pub(super) struct Row {
    index: usize,
    seq: usize,
    first: usize,
    pos: usize,
}

/// One task: a row's KV group over keys `first..=last`.
pub(super) struct Task {
    row: usize,
    kv_head: usize,
    first: usize,
    last: usize,
}

/// The decode rows of `owner` (those still marked with their sequence) split into segments,
/// or None where that would not pay: enough (row, KV head) units for the threads already, or
/// no row with keys for two segments.
pub(super) fn plan(
    owner: &[usize],
    seqs: &[SeqQueries],
    shape: &AttnShape<'_>,
    kv_heads: usize,
    threads: usize,
) -> Option<(Vec<Row>, Vec<Task>)> {
    let rows: Vec<Row> = owner
        .iter()
        .enumerate()
        .filter(|&(_, &si)| si != usize::MAX)
        .map(|(index, &seq)| {
            let s = &seqs[seq];
            let pos = s.start_pos + (index - s.q_start);
            Row {
                index,
                seq,
                first: shape.first_visible(pos),
                pos,
            }
        })
        .collect();
    let units = rows.len() * kv_heads;
    let want = 2 * threads;
    let longest = rows.iter().map(|r| r.pos + 1 - r.first).max().unwrap_or(0);
    if units == 0 || units >= want || longest < 2 * MIN_SEGMENT_KEYS {
        return None;
    }
    let most = want.div_ceil(units);
    let mut tasks = Vec::new();
    for (ri, r) in rows.iter().enumerate() {
        let keys = r.pos + 1 - r.first;
        let segments = (keys / MIN_SEGMENT_KEYS).clamp(1, most);
        let len = keys.div_ceil(segments);
        for g in 0..kv_heads {
            for start in (r.first..=r.pos).step_by(len) {
                tasks.push(Task {
                    row: ri,
                    kv_head: g,
                    first: start,
                    last: (start + len - 1).min(r.pos),
                });
            }
        }
    }
    Some((rows, tasks))
}

/// Attention of the decode rows of `owner` by segments of keys, if `plan` finds it pays;
/// false (nothing done) otherwise.
pub(super) fn attend_decode_rows<E: KvElement>(
    q: &[f32],
    out: &mut [f32],
    kv: &PagedKv<'_, E>,
    seqs: &[SeqQueries],
    shape: &AttnShape<'_>,
    owner: &[usize],
) -> bool {
    let threads = rayon::current_num_threads();
    let Some((rows, tasks)) = plan(owner, seqs, shape, kv.kv_heads, threads) else {
        return false;
    };
    let d = kv.head_dim;
    let group = shape.heads / kv.kv_heads;
    let row_len = shape.heads * d;
    let attend = E::attend_fn();
    // Each task's normalised output for its heads, and their (max, sum).
    let mut partial = vec![0f32; tasks.len() * group * d];
    let mut stats = vec![(0f32, 0f32); tasks.len() * group];
    partial
        .par_chunks_mut(group * d)
        .zip(stats.par_chunks_mut(group))
        .zip(tasks.par_iter())
        .for_each_init(Scratch::default, |scratch, ((po, st), t)| {
            let r = &rows[t.row];
            let h0 = t.kv_head * group;
            let heads = Heads {
                q: &q[r.index * row_len + h0 * d..][..group * d],
                count: group,
                kv,
                kv_head: t.kv_head,
                table: seqs[r.seq].block_table,
                first: t.first,
                pos: t.last,
                scale: shape.scale,
                softcap: shape.softcap,
                // A sink joins the merged softmax once, not each segment's.
                sinks: None,
                alibi: shape.alibi.map(|s| (&s[h0..h0 + group], r.pos)),
            };
            attend(&heads, scratch, po);
            st.copy_from_slice(&scratch.stats);
        });
    // Merge each (row, KV head)'s segments, consecutive in `tasks`.
    let mut at = 0;
    while at < tasks.len() {
        let (row, g) = (tasks[at].row, tasks[at].kv_head);
        let n = tasks[at..]
            .iter()
            .take_while(|t| t.row == row && t.kv_head == g)
            .count();
        for c in 0..group {
            let head = g * group + c;
            let sink = shape.sinks.and_then(|s| s.get(head)).copied();
            let seg_stats = (at..at + n).map(|i| stats[i * group + c]);
            let max = seg_stats
                .clone()
                .map(|(m, _)| m)
                .fold(sink.unwrap_or(f32::NEG_INFINITY), f32::max);
            let weights: Vec<f32> = seg_stats.map(|(m, l)| l * (m - max).exp()).collect();
            let total: f32 = weights.iter().sum::<f32>() + sink.map_or(0.0, |s| (s - max).exp());
            let dst = &mut out[rows[row].index * row_len + head * d..][..d];
            dst.fill(0.0);
            for (i, w) in weights.iter().enumerate() {
                let src = &partial[((at + i) * group + c) * d..][..d];
                let w = w / total;
                dst.iter_mut().zip(src).for_each(|(o, x)| *o += w * x);
            }
        }
        at += n;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(window: Option<usize>) -> AttnShape<'static> {
        AttnShape {
            heads: 4,
            scale: 1.0,
            window,
            softcap: None,
            sinks: None,
            alibi: None,
        }
    }

    /// One long decode row splits into segments covering its visible keys once, in order,
    /// per KV head; many rows, or short contexts, do not split.
    #[test]
    fn segments_cover_the_visible_keys_once() {
        let table = [0u32];
        let seqs = [SeqQueries {
            q_start: 0,
            q_len: 1,
            start_pos: 4000,
            block_table: &table,
        }];
        for window in [None, Some(1500)] {
            let (rows, tasks) = plan(&[0], &seqs, &shape(window), 2, 4).expect("split");
            assert_eq!(rows.len(), 1);
            let first = window.map_or(0, |w| 4001 - w);
            for g in 0..2 {
                let mine: Vec<_> = tasks.iter().filter(|t| t.kv_head == g).collect();
                assert!(mine.len() > 1 && mine.len() <= 4, "{}", mine.len());
                assert_eq!(mine[0].first, first);
                assert_eq!(mine.last().unwrap().last, 4000);
                for w in mine.windows(2) {
                    assert_eq!(w[1].first, w[0].last + 1);
                }
                assert!(mine
                    .iter()
                    .all(|t| t.last + 1 - t.first >= MIN_SEGMENT_KEYS));
            }
        }
        let short = [SeqQueries {
            start_pos: 300,
            ..seqs[0]
        }];
        assert!(plan(&[0], &short, &shape(None), 2, 4).is_none(), "short");
        let many = vec![0usize; 8];
        let batch = [SeqQueries {
            q_len: 8,
            ..seqs[0]
        }];
        assert!(
            plan(&many, &batch, &shape(None), 2, 4).is_none(),
            "enough rows"
        );
        assert!(
            plan(&[usize::MAX], &seqs, &shape(None), 2, 4).is_none(),
            "no decode rows"
        );
    }
}
