//! The release-time heap: packets ordered by the instant they may leave, ties broken by arrival.
//!
//! Packets of one flow share a (source region, destination region) pair and so a delay; their
//! release times are their arrival times plus that constant, so they never overtake each other,
//! and the arrival sequence number keeps them in order when two land on the same instant.

use std::{cmp::Ordering, collections::BinaryHeap, time::Instant};

#[derive(Debug)]
struct Held {
    release: Instant,
    seq: u64,
    pkt: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest release first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}

/// A bounded min-heap of packets keyed by release time.
#[derive(Debug)]
pub struct DelayQueue {
    heap: BinaryHeap<Held>,
    next_seq: u64,
    bytes: usize,
    max_bytes: usize,
}

/// Why [`DelayQueue::push`] refused a packet.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

impl DelayQueue {
    /// An empty queue holding at most `max_bytes` of packet data (a router's buffer: beyond it
    /// packets are dropped, as a real router would).
    #[must_use]
    pub fn new(max_bytes: usize) -> Self {
        Self {
            heap: BinaryHeap::new(),
            next_seq: 0,
            bytes: 0,
            max_bytes,
        }
    }

    /// Queues `pkt` for release at `release`. Returns whether it is now the earliest packet
    /// (the writer must be woken to shorten its sleep).
    ///
    /// # Errors
    /// [`QueueFull`] if holding it would exceed the byte limit; the packet is dropped.
    pub fn push(&mut self, release: Instant, pkt: Vec<u8>) -> Result<bool, QueueFull> {
        if self.bytes + pkt.len() > self.max_bytes {
            return Err(QueueFull);
        }
        let is_head = self.heap.peek().is_none_or(|head| release < head.release);
        self.bytes += pkt.len();
        self.heap.push(Held {
            release,
            seq: self.next_seq,
            pkt,
        });
        self.next_seq += 1;
        Ok(is_head)
    }

    /// The release time of the earliest packet.
    #[must_use]
    pub fn next_release(&self) -> Option<Instant> {
        self.heap.peek().map(|h| h.release)
    }

    /// Moves up to `max` packets whose release time is at or before `now` into `out`, earliest
    /// first. Returns how many were moved.
    pub fn pop_due(&mut self, now: Instant, max: usize, out: &mut Vec<Vec<u8>>) -> usize {
        let mut moved = 0;
        while moved < max {
            match self.heap.peek() {
                Some(head) if head.release <= now => {}
                _ => break,
            }
            if let Some(held) = self.heap.pop() {
                self.bytes -= held.pkt.len();
                out.push(held.pkt);
                moved += 1;
            }
        }
        moved
    }

    /// Number of packets held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no packet is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Bytes of packet data held.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pkt(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    #[test]
    fn releases_in_release_time_order() {
        let t0 = Instant::now();
        let mut q = DelayQueue::new(1 << 20);
        let ms = Duration::from_millis;
        // Arrivals 0..4 with delays 75, 50, 0, 25 -> releases 75, 51, 2, 28.
        assert!(q.push(t0 + ms(75), pkt(0, 10)).unwrap());
        assert!(q.push(t0 + ms(1) + ms(50), pkt(1, 10)).unwrap());
        assert!(q.push(t0 + ms(2), pkt(2, 10)).unwrap());
        assert!(!q.push(t0 + ms(3) + ms(25), pkt(3, 10)).unwrap());
        assert_eq!(q.next_release(), Some(t0 + ms(2)));

        let mut out = Vec::new();
        assert_eq!(q.pop_due(t0 + ms(1), 100, &mut out), 0);
        assert_eq!(q.pop_due(t0 + ms(51), 100, &mut out), 3);
        let tags: Vec<u8> = out.iter().map(|p| p[0]).collect();
        assert_eq!(tags, [2, 3, 1]);
        out.clear();
        assert_eq!(q.pop_due(t0 + ms(1000), 100, &mut out), 1);
        assert_eq!(out[0][0], 0);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn equal_release_times_keep_arrival_order() {
        // One flow, one delay, and a coarse clock: many packets share a release instant.
        let t0 = Instant::now();
        let mut q = DelayQueue::new(1 << 20);
        for i in 0..1000u32 {
            let release = t0 + Duration::from_millis(u64::from(i / 100));
            q.push(release, i.to_be_bytes().to_vec()).unwrap();
        }
        let mut out = Vec::new();
        let mut got = Vec::new();
        // Drain in small batches, as the writer does.
        while !q.is_empty() {
            out.clear();
            q.pop_due(t0 + Duration::from_secs(1), 7, &mut out);
            got.extend(
                out.iter()
                    .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            );
        }
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn interleaved_flows_each_stay_fifo() {
        // Two flows with different delays interleave on arrival; each comes out in its own order.
        let t0 = Instant::now();
        let mut q = DelayQueue::new(1 << 20);
        for i in 0..200u64 {
            let arrival = t0 + Duration::from_micros(i * 10);
            let (flow, delay) = if i % 3 == 0 { (0u8, 50) } else { (1u8, 25) };
            let mut p = vec![flow];
            p.extend_from_slice(&i.to_be_bytes());
            q.push(arrival + Duration::from_millis(delay), p).unwrap();
        }
        let mut out = Vec::new();
        q.pop_due(t0 + Duration::from_secs(1), usize::MAX, &mut out);
        assert_eq!(out.len(), 200);
        for flow in [0u8, 1] {
            let seqs: Vec<u64> = out
                .iter()
                .filter(|p| p[0] == flow)
                .map(|p| u64::from_be_bytes(p[1..9].try_into().unwrap()))
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "flow {flow} reordered"
            );
        }
    }

    #[test]
    fn byte_limit_drops_and_recovers() {
        let t0 = Instant::now();
        let mut q = DelayQueue::new(100);
        q.push(t0, pkt(0, 60)).unwrap();
        assert_eq!(q.push(t0, pkt(1, 41)), Err(QueueFull));
        q.push(t0, pkt(2, 40)).unwrap();
        assert_eq!(q.bytes(), 100);
        assert_eq!(q.len(), 2);
        let mut out = Vec::new();
        q.pop_due(t0, 1, &mut out);
        assert_eq!(q.bytes(), 40);
        q.push(t0, pkt(3, 60)).unwrap();
        assert_eq!(q.len(), 2);
    }
}
