//! Entries kept in memory under a byte budget, the first in their order dropped first once a
//! new or grown entry would pass it: the responses store (oldest first) and the conversations
//! store (least recently used first, by `touch`) both keep theirs this way.
use std::collections::{HashMap, VecDeque};

pub struct Budgeted<V> {
    order: VecDeque<String>,
    entries: HashMap<String, (V, usize)>,
    bytes: usize,
}

impl<V> Default for Budgeted<V> {
    fn default() -> Self {
        Budgeted {
            order: VecDeque::new(),
            entries: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<V> Budgeted<V> {
    pub fn get(&self, id: &str) -> Option<&V> {
        self.entries.get(id).map(|(v, _)| v)
    }

    /// The entry to change in place, its size as counted when it was kept.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut V> {
        self.entries.get_mut(id).map(|(v, _)| v)
    }

    pub fn remove(&mut self, id: &str) -> Option<V> {
        let (v, bytes) = self.entries.remove(id)?;
        self.bytes -= bytes;
        self.order.retain(|k| k != id);
        Some(v)
    }

    /// Move `id` last in the order (a use, where the least recently used go first).
    pub fn touch(&mut self, id: &str) {
        if self.entries.contains_key(id) {
            self.order.retain(|k| k != id);
            self.order.push_back(id.to_string());
        }
    }

    /// Keep `value`, `bytes` long, under `id` (in place of the one there), last in the order,
    /// after dropping the first others until it fits `budget`. The caller refuses a value
    /// larger than the whole budget.
    pub fn insert(&mut self, id: &str, value: V, bytes: usize, budget: usize) {
        self.remove(id);
        while self.bytes + bytes > budget {
            let Some(first) = self.order.front().cloned() else {
                break;
            };
            self.remove(&first);
        }
        self.bytes += bytes;
        self.order.push_back(id.to_string());
        self.entries.insert(id.to_string(), (value, bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_in_order_go_first_and_a_touch_moves_one_last() {
        let mut m = Budgeted::default();
        m.insert("a", 1, 4, 10);
        m.insert("b", 2, 4, 10);
        m.touch("a");
        m.insert("c", 3, 4, 10);
        assert!(m.get("b").is_none(), "b was used least recently");
        assert_eq!((m.get("a"), m.get("c")), (Some(&1), Some(&3)));
        m.insert("a", 5, 8, 10);
        assert_eq!(m.get("a"), Some(&5));
        assert!(m.get("c").is_none(), "replacing a grew it past the budget");
        assert_eq!(m.remove("a"), Some(5));
        m.insert("d", 6, 10, 10);
        assert_eq!(m.get("d"), Some(&6));
    }
}
