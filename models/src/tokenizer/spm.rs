//! SentencePiece-BPE encoding from a GGUF `llama` vocabulary (pieces + scores), as llama.cpp
//! does it. Written by hand because the `tokenizers` crate's BPE needs an explicit merge list,
//! while SentencePiece-BPE merges the adjacent pair whose joined piece has the best score.
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

pub struct Spm {
    pieces: Vec<String>,
    scores: Vec<f32>,
    lookup: HashMap<String, u32>,
    /// Token id of each byte's `<0xXX>` piece.
    byte_tokens: [Option<u32>; 256],
    unk: Option<u32>,
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Highest score first; on equal scores the leftmost pair first.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

impl Spm {
    pub fn new(pieces: Vec<String>, scores: Vec<f32>, unk: Option<u32>) -> Self {
        let mut lookup = HashMap::with_capacity(pieces.len());
        let mut byte_tokens = [None; 256];
        for (i, p) in pieces.iter().enumerate() {
            lookup.entry(p.clone()).or_insert(i as u32);
            if p.len() == 6 && p.starts_with("<0x") && p.ends_with('>') {
                if let Ok(b) = u8::from_str_radix(&p[3..5], 16) {
                    byte_tokens[b as usize] = Some(i as u32);
                }
            }
        }
        Spm {
            pieces,
            scores,
            lookup,
            byte_tokens,
            unk,
        }
    }

    /// The id of a piece, spelled as stored.
    pub fn id_of(&self, piece: &str) -> Option<u32> {
        self.lookup.get(piece).copied()
    }

    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(|s| s.as_str())
    }

    /// The byte a `<0xXX>` piece stands for.
    pub fn byte_of(&self, id: u32) -> Option<u8> {
        let p = self.piece(id)?;
        (p.len() == 6 && p.starts_with("<0x") && p.ends_with('>'))
            .then(|| u8::from_str_radix(&p[3..5], 16).ok())
            .flatten()
    }

    /// The bytes a token stands for: a byte-fallback token's byte (part of a character, maybe),
    /// else its piece with `▁` as a space.
    pub fn bytes_of(&self, id: u32) -> Vec<u8> {
        match self.byte_of(id) {
            Some(b) => vec![b],
            None => (self.piece(id).unwrap_or("").replace('\u{2581}', " ")).into_bytes(),
        }
    }

    /// Encode text that has already had spaces replaced by `▁`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut syms: Vec<Symbol> = Vec::new();
        for (i, (start, ch)) in text.char_indices().enumerate() {
            syms.push(Symbol {
                start,
                len: ch.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if i > 0 {
                syms[i - 1].next = Some(i);
            }
        }
        let mut heap = BinaryHeap::new();
        let mut merged_from: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
        let try_add =
            |heap: &mut BinaryHeap<Bigram>, syms: &[Symbol], left: usize, right: usize| {
                let (l, r) = (syms[left], syms[right]);
                let s = &text[l.start..r.start + r.len];
                if let Some(&id) = self.lookup.get(s) {
                    heap.push(Bigram {
                        score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                        left,
                        right,
                        len: s.len(),
                    });
                }
            };
        for i in 1..syms.len() {
            try_add(&mut heap, &syms, i - 1, i);
        }
        while let Some(b) = heap.pop() {
            let (l, r) = (syms[b.left], syms[b.right]);
            // Skip stale entries: one side was merged away or changed since.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len || l.next != Some(b.right) {
                continue;
            }
            merged_from.insert((l.start, b.len), (l.len, r.len));
            syms[b.left].len += r.len;
            syms[b.left].next = r.next;
            syms[b.right].len = 0;
            if let Some(n) = r.next {
                syms[n].prev = Some(b.left);
            }
            if let Some(p) = syms[b.left].prev {
                try_add(&mut heap, &syms, p, b.left);
            }
            if let Some(n) = syms[b.left].next {
                try_add(&mut heap, &syms, b.left, n);
            }
        }
        let mut i = if syms.is_empty() { None } else { Some(0) };
        while let Some(k) = i {
            let s = syms[k];
            self.resegment(text, s.start, s.len, &merged_from, out);
            i = s.next;
        }
    }

    fn resegment(
        &self,
        text: &str,
        start: usize,
        len: usize,
        merged: &HashMap<(usize, usize), (usize, usize)>,
        out: &mut Vec<u32>,
    ) {
        let s = &text[start..start + len];
        if let Some(&id) = self.lookup.get(s) {
            out.push(id);
            return;
        }
        if let Some(&(ll, rl)) = merged.get(&(start, len)) {
            self.resegment(text, start, ll, merged, out);
            self.resegment(text, start + ll, rl, merged, out);
            return;
        }
        for b in s.bytes() {
            if let Some(id) = self.byte_tokens[b as usize].or(self.unk) {
                out.push(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Spm {
        let pieces = [
            "<unk>", "a", "b", "c", "ab", "abc", "bc", "<0x41>", "▁", "▁a",
        ];
        let scores = [0.0, -1.0, -1.0, -1.0, -0.5, -0.1, -0.2, 0.0, -1.0, -0.3];
        Spm::new(
            pieces.iter().map(|s| s.to_string()).collect(),
            scores.to_vec(),
            Some(0),
        )
    }

    #[test]
    fn merges_best_scores_and_falls_back_to_bytes() {
        let s = toy();
        let mut out = vec![];
        s.encode("abc", &mut out);
        assert_eq!(out, vec![5]);
        out.clear();
        s.encode("▁aA", &mut out);
        assert_eq!(out, vec![9, 7]);
        out.clear();
        s.encode("cz", &mut out);
        assert_eq!(out, vec![3, 0]);
    }
}
