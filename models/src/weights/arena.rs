//! The quantized weights the CPU kernels read in place, copied once from the GGUF map into one
//! anonymous mapping advised for transparent huge pages.
//!
//! Decode streams every weight from memory once per token. From 4 KiB file pages that stream
//! pays a TLB miss per page and the hardware prefetchers stop at every page boundary; from 2 MiB
//! pages a single thread streamed an LM-head-sized Q8_0 product ~25% faster (`qbench` with
//! `HUGE=1`, Xeon with AVX-512). Resident memory is unchanged: each file range is dropped from
//! this process once copied, so every weight is held once, as it was with the file mapping.
use memmap2::{Mmap, MmapMut};
use std::collections::HashMap;
use std::sync::Arc;

/// Offsets inside the arena start on cache-line boundaries.
const ALIGN: usize = 64;
/// Bytes copied between releases of the file's pages.
const COPY_PIECE: usize = 4 << 20;

/// One tensor to place: its name, where its bytes start in the file, and how many there are.
pub struct Placement {
    pub name: String,
    pub file_offset: usize,
    pub len: usize,
}

pub struct Arena {
    pub map: Arc<Mmap>,
    offsets: HashMap<String, usize>,
}

impl Arena {
    /// Copy every placed range of `file` into a new arena; `release(offset, len)` is called
    /// for each file range once copied. None when the ranges are out of the file or the
    /// anonymous mapping cannot be made (the caller then reads from the file map).
    pub fn build(
        file: &[u8],
        tensors: &[Placement],
        release: impl Fn(usize, usize),
    ) -> Option<Arena> {
        let mut offsets = HashMap::with_capacity(tensors.len());
        let mut total = 0usize;
        for t in tensors {
            if t.file_offset.checked_add(t.len)? > file.len() {
                return None;
            }
            offsets.insert(t.name.clone(), total);
            total = total.checked_add(t.len.next_multiple_of(ALIGN))?;
        }
        let mut map = MmapMut::map_anon(total.max(1)).ok()?;
        // Advice only: where the kernel has no transparent huge pages this changes nothing.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        for t in tensors {
            let at = offsets[&t.name];
            // Piece by piece, so at most one piece of the file is resident beside the arena
            // (an LM head is most of a small model: copying it whole would double the peak).
            let mut done = 0;
            while done < t.len {
                let n = (t.len - done).min(COPY_PIECE);
                let from = t.file_offset + done;
                map[at + done..at + done + n].copy_from_slice(&file[from..from + n]);
                release(from, n);
                done += n;
            }
        }
        Some(Arena {
            map: Arc::new(map.make_read_only().ok()?),
            offsets,
        })
    }

    /// Where tensor `name` starts in `map`.
    pub fn offset(&self, name: &str) -> Option<usize> {
        self.offsets.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn copies_each_range_aligned_and_releases_it() {
        let file: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let released = RefCell::new(Vec::new());
        let placed = [
            Placement {
                name: "a".into(),
                file_offset: 10,
                len: 100,
            },
            Placement {
                name: "b".into(),
                file_offset: 500,
                len: 7,
            },
        ];
        let arena =
            Arena::build(&file, &placed, |o, l| released.borrow_mut().push((o, l))).unwrap();
        for p in &placed {
            let at = arena.offset(&p.name).unwrap();
            assert_eq!(at % ALIGN, 0);
            assert_eq!(
                &arena.map[at..at + p.len],
                &file[p.file_offset..p.file_offset + p.len]
            );
        }
        assert_eq!(*released.borrow(), vec![(10, 100), (500, 7)]);
    }

    #[test]
    fn large_ranges_are_released_piece_by_piece() {
        let len = 2 * COPY_PIECE + 5;
        let file = vec![7u8; len + 3];
        let released = RefCell::new(Vec::new());
        let placed = [Placement {
            name: "big".into(),
            file_offset: 3,
            len,
        }];
        let arena =
            Arena::build(&file, &placed, |o, l| released.borrow_mut().push((o, l))).unwrap();
        assert!(arena.map[..len].iter().all(|&b| b == 7));
        assert_eq!(
            *released.borrow(),
            vec![
                (3, COPY_PIECE),
                (3 + COPY_PIECE, COPY_PIECE),
                (3 + 2 * COPY_PIECE, 5)
            ]
        );
        assert!(arena.offset("c").is_none());
    }

    #[test]
    fn a_range_past_the_file_is_refused() {
        let placed = [Placement {
            name: "a".into(),
            file_offset: 90,
            len: 20,
        }];
        assert!(Arena::build(&[0u8; 100], &placed, |_, _| {}).is_none());
    }
}
