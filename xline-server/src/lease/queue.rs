//! The expiry queue: which lease is due next.
//!
//! Each lease has at most one entry. Entries are ordered by due time, then by id, so leases that
//! fall due at the same instant come out in a deterministic order.

use std::collections::{BTreeSet, HashMap};
use tokio::time::Instant;

/// Lease ids ordered by when they are due.
#[derive(Debug, Default)]
pub struct ExpiryQueue {
    /// `(due, id)` pairs, earliest first.
    by_time: BTreeSet<(Instant, i64)>,
    /// Each queued id's due time, to find and move its entry.
    by_id: HashMap<i64, Instant>,
}

impl ExpiryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `id` at `due`, replacing its previous entry if it had one.
    pub fn upsert(&mut self, id: i64, due: Instant) {
        if let Some(old) = self.by_id.insert(id, due) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((due, id));
    }

    /// Removes `id`'s entry, if any.
    pub fn remove(&mut self, id: i64) {
        if let Some(old) = self.by_id.remove(&id) {
            self.by_time.remove(&(old, id));
        }
    }

    /// The earliest entry, without removing it.
    pub fn peek(&self) -> Option<(Instant, i64)> {
        self.by_time.first().copied()
    }

    /// Removes and returns the earliest entry if it is due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, i64)> {
        let (due, id) = self.peek()?;
        if due > now {
            return None;
        }
        self.by_time.remove(&(due, id));
        self.by_id.remove(&id);
        Some((due, id))
    }

    /// When `id` is due, if it is queued.
    pub fn due(&self, id: i64) -> Option<Instant> {
        self.by_id.get(&id).copied()
    }

    /// How many leases are queued.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Empties the queue.
    pub fn clear(&mut self) {
        self.by_time.clear();
        self.by_id.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_in_due_order_and_ties_by_id() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = ExpiryQueue::new();
        q.upsert(3, t0 + 2 * s);
        q.upsert(9, t0 + s);
        q.upsert(1, t0 + 2 * s);
        assert_eq!(q.len(), 3);
        assert_eq!(q.peek(), Some((t0 + s, 9)));
        assert_eq!(q.pop_due(t0), None, "nothing is due yet");
        assert_eq!(q.pop_due(t0 + 3 * s), Some((t0 + s, 9)));
        assert_eq!(q.pop_due(t0 + 3 * s), Some((t0 + 2 * s, 1)));
        assert_eq!(q.pop_due(t0 + 3 * s), Some((t0 + 2 * s, 3)));
        assert_eq!(q.pop_due(t0 + 3 * s), None);
        assert!(q.is_empty());
    }

    #[test]
    fn upsert_moves_and_remove_drops() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut q = ExpiryQueue::new();
        q.upsert(1, t0 + s);
        q.upsert(2, t0 + 2 * s);
        q.upsert(1, t0 + 5 * s);
        assert_eq!(q.len(), 2);
        assert_eq!(q.due(1), Some(t0 + 5 * s));
        assert_eq!(q.peek(), Some((t0 + 2 * s, 2)));
        q.remove(2);
        q.remove(42);
        assert_eq!(q.peek(), Some((t0 + 5 * s, 1)));
        assert_eq!(q.pop_due(t0 + 4 * s), None);
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.peek(), None);
    }
}
