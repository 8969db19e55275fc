//! A peer's bounded outbound queue: drop-oldest, with a wake-up for the link task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::convert::estimated_size;
use crate::core::Envelope;

/// Envelopes waiting for one peer, bounded by count and by estimated bytes. Pushing never
/// blocks; when a bound would be exceeded the oldest envelopes are dropped.
#[derive(Debug)]
pub(super) struct OutQueue {
    /// The envelopes with their estimated sizes, oldest first.
    inner: Mutex<Inner>,
    /// Wakes the link task after a push (a permit is stored if it is not waiting).
    notify: Notify,
    /// Most envelopes held.
    capacity: usize,
    /// Most estimated bytes held (an empty queue always admits one envelope).
    max_bytes: usize,
    /// Envelopes dropped to make room.
    dropped: AtomicU64,
}

/// The guarded part of an [`OutQueue`].
#[derive(Debug, Default)]
struct Inner {
    /// Envelopes and their estimated sizes.
    items: VecDeque<(Envelope, usize)>,
    /// Sum of the estimated sizes.
    bytes: usize,
}

impl OutQueue {
    /// An empty queue with the given bounds.
    pub(super) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            max_bytes,
            dropped: AtomicU64::new(0),
        }
    }

    /// Appends `envelope`, dropping the oldest envelopes while a bound would be exceeded.
    pub(super) fn push(&self, envelope: Envelope) {
        let size = estimated_size(&envelope);
        let mut dropped = 0;
        {
            let mut inner = self.inner.lock();
            while !inner.items.is_empty()
                && (inner.items.len() >= self.capacity
                    || inner.bytes.saturating_add(size) > self.max_bytes)
            {
                if let Some((_, old)) = inner.items.pop_front() {
                    inner.bytes -= old;
                    dropped += 1;
                }
            }
            inner.items.push_back((envelope, size));
            inner.bytes += size;
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::trace!(dropped, "grpc transport: peer queue full; dropped oldest");
        }
        self.notify.notify_one();
    }

    /// Takes the oldest envelope.
    pub(super) fn pop(&self) -> Option<Envelope> {
        let mut inner = self.inner.lock();
        let (envelope, size) = inner.items.pop_front()?;
        inner.bytes -= size;
        Some(envelope)
    }

    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.inner.lock().items.is_empty()
    }

    /// Number of queued envelopes and their estimated bytes.
    pub(super) fn len_and_bytes(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.items.len(), inner.bytes)
    }

    /// Envelopes dropped to make room so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Resolves after a push that happened since the last time it resolved (or now, if a
    /// push left a stored wake-up).
    pub(super) async fn notified(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Message;

    fn env(id: u64) -> Envelope {
        Envelope {
            from: 1,
            to: 2,
            msg: Message::ReadIndex { term: 1, id },
        }
    }

    fn ids(queue: &OutQueue) -> Vec<u64> {
        std::iter::from_fn(|| queue.pop())
            .map(|e| match e.msg {
                Message::ReadIndex { id, .. } => id,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn drops_oldest_beyond_capacity() {
        let queue = OutQueue::new(3, usize::MAX);
        for id in 0..10 {
            queue.push(env(id));
        }
        assert_eq!(queue.dropped(), 7);
        assert_eq!(ids(&queue), vec![7, 8, 9]);
        assert!(queue.is_empty());
        assert_eq!(queue.len_and_bytes(), (0, 0));
    }

    #[test]
    fn drops_oldest_beyond_bytes_but_admits_one() {
        let one = estimated_size(&env(0));
        let queue = OutQueue::new(100, 2 * one);
        for id in 0..5 {
            queue.push(env(id));
        }
        assert_eq!(queue.len_and_bytes(), (2, 2 * one));
        assert_eq!(ids(&queue), vec![3, 4]);

        let tiny = OutQueue::new(100, 1);
        tiny.push(env(0));
        tiny.push(env(1));
        assert_eq!(ids(&tiny), vec![1]);
    }
}
