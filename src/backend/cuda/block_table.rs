//! Packing a batch's attention metadata (`SeqAttention`: query rows, positions, block tables)
//! into the three flat `u32` arrays the paged-attention kernel reads
//! (kernels/cuda/paged_attention.cu):
//!
//! - `row_seq[t]`: the sequence of token row t, `NO_SEQ` for a row no sequence covers;
//! - `seq_meta[3s..3s + 3]`: q_start, start_pos, offset of the block table in `tables`;
//! - `tables`: every sequence's block table, concatenated;
//! - `tiles`: for the tensor-core prefill kernel (paged_attention_mma.cu) only, one
//!   (sequence, first row, rows) triple per block: runs of consecutive query rows of one
//!   sequence; empty when the batch runs on the simple kernel.
//!
//! Everything the kernel will index is validated here, on the host, so a bad batch is an error
//! and never an out-of-bounds read on the device. Pure host logic: tested without a GPU.
use super::error::CudaError;
use candor_models::batch::SeqAttention;

/// `row_seq` value of a row outside every sequence (the kernel writes zeros there).
pub const NO_SEQ: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedBatch {
    pub row_seq: Vec<u32>,
    pub seq_meta: Vec<u32>,
    pub tables: Vec<u32>,
    pub tiles: Vec<u32>,
}

fn u32_of(v: usize, what: &str) -> Result<u32, CudaError> {
    u32::try_from(v).map_err(|_| CudaError::Batch(format!("{what} = {v} exceeds u32")))
}

/// Pack `seqs` over `tokens` query rows for a cache of `num_blocks` blocks of `block_size`.
pub fn pack(
    seqs: &[SeqAttention],
    tokens: usize,
    block_size: usize,
    num_blocks: usize,
) -> Result<PackedBatch, CudaError> {
    if block_size == 0 {
        return Err(CudaError::Batch("block size 0".into()));
    }
    let mut row_seq = vec![NO_SEQ; tokens];
    let mut seq_meta = Vec::with_capacity(3 * seqs.len());
    let mut tables = Vec::new();
    for (si, s) in seqs.iter().enumerate() {
        let end = s
            .q_start
            .checked_add(s.q_len)
            .filter(|&e| e <= tokens)
            .ok_or_else(|| {
                CudaError::Batch(format!(
                    "sequence {si}: rows {}..+{} outside the {tokens} rows",
                    s.q_start, s.q_len
                ))
            })?;
        let needed = s.context_len().div_ceil(block_size);
        if s.block_table.len() < needed {
            return Err(CudaError::Batch(format!(
                "sequence {si}: {} tokens need {needed} blocks, its table has {}",
                s.context_len(),
                s.block_table.len()
            )));
        }
        if let Some(b) = s.block_table.iter().find(|&&b| b as usize >= num_blocks) {
            return Err(CudaError::Batch(format!(
                "sequence {si}: block {b} outside the cache's {num_blocks}"
            )));
        }
        // Keys are addressed as `block * block_size + offset` in u32 slots by the kernel's
        // callers (kv_write); the largest slot must fit.
        u32_of(num_blocks.saturating_mul(block_size), "cache slots")?;
        u32_of(s.context_len(), "context length")?;
        for (r, owner) in row_seq[s.q_start..end].iter_mut().enumerate() {
            if *owner != NO_SEQ {
                return Err(CudaError::Batch(format!(
                    "row {} belongs to sequences {owner} and {si}",
                    s.q_start + r
                )));
            }
            *owner = u32_of(si, "sequence index")?;
        }
        seq_meta.extend([
            u32_of(s.q_start, "q_start")?,
            u32_of(s.start_pos, "start_pos")?,
            u32_of(tables.len(), "block table offset")?,
        ]);
        tables.extend_from_slice(&s.block_table[..needed]);
    }
    Ok(PackedBatch {
        row_seq,
        seq_meta,
        tables,
        tiles: Vec::new(),
    })
}

/// The query rows of `seqs` cut into tiles of at most `rows_per_tile` consecutive rows of one
/// sequence, as (sequence, first row, rows) triples. Call on sequences `pack` accepted.
pub fn query_tiles(seqs: &[SeqAttention], rows_per_tile: usize) -> Result<Vec<u32>, CudaError> {
    if rows_per_tile == 0 {
        return Err(CudaError::Batch("query tiles of 0 rows".into()));
    }
    let mut tiles = Vec::new();
    for (si, s) in seqs.iter().enumerate() {
        let end = s.q_start + s.q_len;
        for first in (s.q_start..end).step_by(rows_per_tile) {
            tiles.extend([
                u32_of(si, "sequence index")?,
                u32_of(first, "tile row")?,
                u32_of(rows_per_tile.min(end - first), "tile rows")?,
            ]);
        }
    }
    Ok(tiles)
}

impl PackedBatch {
    /// The host mirror of the kernel's addressing: position of query row `row`, and the cache
    /// slot of its key `key` (None outside the keys the row may see, window aside).
    pub fn slot(&self, row: usize, key: usize, block_size: usize) -> Option<(usize, usize)> {
        let s = *self.row_seq.get(row)? as usize;
        if s == NO_SEQ as usize {
            return None;
        }
        let meta = self.seq_meta.get(3 * s..3 * s + 3)?;
        let (q_start, start_pos, offset) = (meta[0] as usize, meta[1] as usize, meta[2] as usize);
        let pos = start_pos + (row - q_start);
        if key > pos {
            return None;
        }
        let block = *self.tables.get(offset + key / block_size)? as usize;
        Some((pos, block * block_size + key % block_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_models::{Batch, FlatBatch, LogitsWanted, SeqInput};

    fn seq(q_start: usize, q_len: usize, start_pos: usize, table: Vec<u32>) -> SeqAttention {
        SeqAttention {
            q_start,
            q_len,
            start_pos,
            block_table: table,
        }
    }

    #[test]
    fn packs_mixed_prefill_and_decode() {
        // A 3-token prefill and a decode token at position 17 (block size 16).
        let seqs = [seq(0, 3, 0, vec![3]), seq(3, 1, 17, vec![0, 2, 9])];
        let p = pack(&seqs, 4, 16, 10).unwrap();
        assert_eq!(p.row_seq, vec![0, 0, 0, 1]);
        assert_eq!(p.seq_meta, vec![0, 0, 0, 3, 17, 1]);
        // Only the blocks the context needs are copied (18 tokens: 2 blocks).
        assert_eq!(p.tables, vec![3, 0, 2]);
        assert_eq!(p.slot(2, 1, 16), Some((2, 3 * 16 + 1)));
        assert_eq!(p.slot(2, 3, 16), None, "key after the query");
        assert_eq!(p.slot(3, 17, 16), Some((17, 2 * 16 + 1)));
    }

    #[test]
    fn query_tiles_cut_each_sequence_into_runs_of_rows() {
        let seqs = [seq(0, 150, 0, vec![0; 10]), seq(150, 1, 300, vec![0; 19])];
        assert_eq!(
            query_tiles(&seqs, 64).unwrap(),
            vec![0, 0, 64, 0, 64, 64, 0, 128, 22, 1, 150, 1]
        );
        // A sequence with no new rows has no tile; a tile never spans two sequences.
        let seqs = [
            seq(0, 0, 5, vec![0]),
            seq(0, 3, 0, vec![1]),
            seq(3, 2, 0, vec![2]),
        ];
        assert_eq!(query_tiles(&seqs, 64).unwrap(), vec![1, 0, 3, 2, 3, 2]);
        assert!(query_tiles(&seqs, 0).is_err());
    }

    #[test]
    fn agrees_with_the_slots_the_engine_writes() {
        // The slots FlatBatch assigns to new tokens are the slots the kernel reads them from.
        let batch = Batch {
            seqs: vec![
                SeqInput {
                    state_slot: 0,
                    tokens: vec![1; 20],
                    start_pos: 0,
                    block_table: vec![5, 1],
                    logits: LogitsWanted::Last,
                    lora: candor_models::lora::LoraMix::BASE,
                },
                SeqInput {
                    state_slot: 0,
                    tokens: vec![2, 3],
                    start_pos: 30,
                    block_table: vec![0, 4],
                    logits: LogitsWanted::All,
                    lora: candor_models::lora::LoraMix::BASE,
                },
            ],
        };
        let flat = FlatBatch::new(&batch, 16, 6, 10).unwrap();
        let p = pack(&flat.seqs, flat.num_tokens(), 16, 6).unwrap();
        for row in 0..flat.num_tokens() {
            let pos = flat.positions[row] as usize;
            assert_eq!(p.slot(row, pos, 16), Some((pos, flat.slots[row] as usize)));
        }
    }

    #[test]
    fn leaves_uncovered_rows_and_rejects_bad_metadata() {
        let p = pack(&[seq(1, 1, 0, vec![0])], 3, 16, 1).unwrap();
        assert_eq!(p.row_seq, vec![NO_SEQ, 0, NO_SEQ]);
        assert_eq!(p.slot(0, 0, 16), None);
        assert!(
            pack(&[seq(2, 2, 0, vec![0])], 3, 16, 1).is_err(),
            "rows past the batch"
        );
        assert!(
            pack(&[seq(0, 1, 16, vec![0])], 1, 16, 1).is_err(),
            "short table"
        );
        assert!(
            pack(&[seq(0, 1, 0, vec![1])], 1, 16, 1).is_err(),
            "block past the cache"
        );
        let overlap = [seq(0, 2, 0, vec![0]), seq(1, 1, 0, vec![1])];
        assert!(pack(&overlap, 2, 16, 2).is_err(), "a row in two sequences");
        assert!(
            pack(&[seq(0, 1, 0, vec![0])], 1, 0, 1).is_err(),
            "block size 0"
        );
        assert!(pack(&[seq(0, usize::MAX, 0, vec![0])], 1, 16, 1).is_err());
    }
}
