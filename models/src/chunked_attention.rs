//! Chunked attention (Llama 4's rotated layers, `attention_chunk_size`): a query at position
//! `p` sees the keys from `p - p % chunk` up to itself, never those of an earlier chunk.
//!
//! No backend kernel changes for it: a chunk's keys are the block table's tail from the
//! chunk's first block, so each sequence's queries are split where they cross a chunk
//! boundary, and each piece attends causally over that tail with positions counted from the
//! chunk's start. Every backend's paged attention runs the pieces as it runs sequences; a
//! decode step reads one chunk's blocks instead of the whole context.
use crate::batch::SeqAttention;
use crate::error::{ModelError, Result};

/// `seqs` as pieces that each lie within one chunk of `chunk` positions (a multiple of
/// `block_size`, so that chunks start on block boundaries).
pub fn chunk_seqs(
    seqs: &[SeqAttention],
    chunk: usize,
    block_size: usize,
) -> Result<Vec<SeqAttention>> {
    if chunk == 0 || block_size == 0 || !chunk.is_multiple_of(block_size) {
        return Err(ModelError::InvalidBatch(format!(
            "attention in chunks of {chunk} positions needs KV blocks whose size divides it \
             (blocks of {block_size})"
        )));
    }
    let mut pieces = Vec::with_capacity(seqs.len());
    for s in seqs {
        let end = s.start_pos + s.q_len;
        let mut pos = s.start_pos;
        while pos < end {
            let chunk_start = pos - pos % chunk;
            let piece_end = end.min(chunk_start + chunk);
            let first_block = chunk_start / block_size;
            let block_table = s.block_table.get(first_block..).ok_or_else(|| {
                ModelError::InvalidBatch(format!(
                    "position {pos} past a block table of {} blocks",
                    s.block_table.len()
                ))
            })?;
            pieces.push(SeqAttention {
                q_start: s.q_start + (pos - s.start_pos),
                q_len: piece_end - pos,
                start_pos: pos - chunk_start,
                block_table: block_table.to_vec(),
            });
            pos = piece_end;
        }
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(q_start: usize, q_len: usize, start_pos: usize, blocks: u32) -> SeqAttention {
        SeqAttention {
            q_start,
            q_len,
            start_pos,
            block_table: (100..100 + blocks).collect(),
        }
    }

    fn shape(s: &SeqAttention) -> (usize, usize, usize, u32, usize) {
        (
            s.q_start,
            s.q_len,
            s.start_pos,
            s.block_table[0],
            s.block_table.len(),
        )
    }

    #[test]
    fn a_prompt_across_chunks_becomes_one_piece_per_chunk() {
        // Positions 0..40 in chunks of 16 over blocks of 8: pieces 0-15, 16-31, 32-39.
        let pieces = chunk_seqs(&[seq(0, 40, 0, 5)], 16, 8).unwrap();
        let shapes: Vec<_> = pieces.iter().map(shape).collect();
        assert_eq!(
            shapes,
            [(0, 16, 0, 100, 5), (16, 16, 0, 102, 3), (32, 8, 0, 104, 1)]
        );
    }

    #[test]
    fn continued_and_decoding_sequences_count_from_their_chunk() {
        // A second sequence after the first in the flattened batch: 10 queries from
        // position 28 (chunk 16-31, then 32-47), and a decode at position 40.
        let pieces = chunk_seqs(&[seq(0, 10, 28, 5), seq(10, 1, 40, 6)], 16, 8).unwrap();
        let shapes: Vec<_> = pieces.iter().map(shape).collect();
        assert_eq!(
            shapes,
            [(0, 4, 12, 102, 3), (4, 6, 0, 104, 1), (10, 1, 8, 104, 2)]
        );
        // Each piece's last query sees its chunk's keys up to itself.
        assert_eq!(pieces[0].context_len(), 16);
        assert_eq!(pieces[2].context_len(), 9);
    }

    #[test]
    fn chunks_that_do_not_start_on_blocks_are_refused() {
        assert!(chunk_seqs(&[seq(0, 4, 0, 1)], 12, 8).is_err());
        assert!(chunk_seqs(&[seq(0, 4, 0, 1)], 0, 8).is_err());
        // A table too short for its positions is an error, not a panic.
        assert!(chunk_seqs(&[seq(0, 1, 40, 2)], 16, 8).is_err());
    }
}
