//! Allocation of paged KV blocks (16 tokens each) to sequences through block tables.
use super::error::EngineError;

pub const BLOCK_SIZE: usize = 16;

/// Free-list allocator of physical KV blocks.
#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    num_blocks: usize,
    free: Vec<u32>,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize) -> Self {
        // Hand out low block ids first (pop from the end).
        let free = (0..num_blocks as u32).rev().collect();
        BlockManager {
            block_size,
            num_blocks,
            free,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }
    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Grow `table` so it covers `tokens` tokens. All or nothing.
    pub fn ensure(&mut self, table: &mut Vec<u32>, tokens: usize) -> Result<(), EngineError> {
        let needed = self.blocks_for(tokens).saturating_sub(table.len());
        if needed > self.free.len() {
            return Err(EngineError::OutOfBlocks {
                needed,
                free: self.free.len(),
            });
        }
        for _ in 0..needed {
            if let Some(b) = self.free.pop() {
                table.push(b);
            }
        }
        Ok(())
    }

    /// Return a sequence's blocks.
    pub fn release(&mut self, table: &mut Vec<u32>) {
        self.free.append(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_tables_and_recycles_blocks() {
        let mut m = BlockManager::new(4, 16);
        let mut a = Vec::new();
        m.ensure(&mut a, 17).unwrap();
        assert_eq!(a, vec![0, 1]);
        m.ensure(&mut a, 32).unwrap();
        assert_eq!(a.len(), 2);
        let mut b = Vec::new();
        assert!(matches!(
            m.ensure(&mut b, 49),
            Err(EngineError::OutOfBlocks { needed: 4, free: 2 })
        ));
        assert!(b.is_empty());
        m.release(&mut a);
        assert_eq!(m.num_free(), 4);
        m.ensure(&mut b, 64).unwrap();
        assert_eq!(b.len(), 4);
    }
}
