//! The conflict index shared by the witness ([`super::witness`]) and the leader's uncommitted
//! pool ([`super::ucp`]): an interval tree over key ranges, a lease map and an exclusive
//! counter (CURP.md 2.2 "Data structures").
//!
//! Key ranges in etcd's convention ([`KeyRange`]) are normalised into half-open intervals
//! `[start, end)` over byte strings, with an unbounded end for `end == [0]`:
//! - single key `k` (empty end): `[k, k ++ [0])`, since `k ++ [0]` is the key right after `k`;
//! - `start == end == [0]`: `[[], ∞)`, all keys;
//! - `end == [0]`: `[start, ∞)`;
//! - `[start, end)` otherwise, and nothing at all when `end <= start` (an empty range
//!   conflicts with nothing).
//!
//! Two non-empty half-open intervals overlap iff each starts before the other ends.

use std::cmp::Ordering;
use std::collections::HashMap;

use bytes::Bytes;

use crate::cmd::{ConflictKeys, KeyRange};

/// The exclusive upper bound of an [`Interval`]. Bounds compare (and are equal) as the keys
/// they stand for, `Unbounded` above every key: `After(k)` equals `Key(k ++ [0])`.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// Keys strictly below this one.
    Key(Bytes),
    /// Keys up to and including this one: the bound `k ++ [0]`, the key right after `k`. A
    /// single key's interval shares the key's bytes instead of building its successor.
    After(Bytes),
    /// No upper bound.
    Unbounded,
}

impl End {
    /// The bound as a key: its bytes and whether a `0` byte follows them (`None`: unbounded).
    fn bound(&self) -> Option<(&[u8], bool)> {
        match self {
            End::Key(key) => Some((key, false)),
            End::After(key) => Some((key, true)),
            End::Unbounded => None,
        }
    }

    /// This bound against `key`.
    fn cmp_key(&self, key: &[u8]) -> Ordering {
        self.bound().map_or(Ordering::Greater, |(end, next)| {
            cmp_bound(end, next, key, false)
        })
    }

    /// Whether some key `>= key` lies below this bound, i.e. `self > key`.
    fn after(&self, key: &[u8]) -> bool {
        self.cmp_key(key) == Ordering::Greater
    }

    /// Whether `self >= key`: an interval ending here touches or overlaps one starting at `key`.
    fn reaches(&self, key: &[u8]) -> bool {
        self.cmp_key(key) != Ordering::Less
    }
}

/// Compares `a` (followed by a `0` byte when `a_next`) with `b` (likewise).
fn cmp_bound(a: &[u8], a_next: bool, b: &[u8], b_next: bool) -> Ordering {
    if a_next == b_next {
        // Appending the same byte to both keeps their order.
        return a.cmp(b);
    }
    let tail = |next: bool| if next { &[0u8][..] } else { &[] };
    a.iter()
        .chain(tail(a_next))
        .cmp(b.iter().chain(tail(b_next)))
}

impl Ord for End {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.bound(), other.bound()) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some((a, a_next)), Some((b, b_next))) => cmp_bound(a, a_next, b, b_next),
        }
    }
}

impl PartialOrd for End {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for End {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for End {}

/// A non-empty half-open key interval `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interval {
    /// First key (inclusive).
    start: Bytes,
    /// Upper bound (exclusive).
    end: End,
}

impl Interval {
    /// Normalises an etcd key range; `None` for an empty range.
    pub(crate) fn from_range(range: &KeyRange) -> Option<Self> {
        const ZERO: &[u8] = &[0];
        // The range's own keys are shared, not copied.
        let (start, end) = match (range.start.as_ref(), range.end.as_ref()) {
            (ZERO, ZERO) => (Bytes::new(), End::Unbounded),
            (_, []) => (range.start.clone(), End::After(range.start.clone())),
            (_, ZERO) => (range.start.clone(), End::Unbounded),
            (start, end) if end > start => (range.start.clone(), End::Key(range.end.clone())),
            _ => return None,
        };
        Some(Self { start, end })
    }

    /// Whether the two intervals share a key.
    #[cfg(test)]
    pub(crate) fn overlaps(&self, other: &Interval) -> bool {
        self.end.after(&other.start) && other.end.after(&self.start)
    }
}

/// What a command touches, normalised for the index: disjoint sorted intervals, sorted distinct
/// non-zero lease ids (CURP.md C3) and the exclusive flag.
///
/// Computed once when a command enters a pool and kept with it, so removal undoes exactly what
/// insertion did (CURP.md C2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// Disjoint, non-touching intervals sorted by start.
    intervals: Vec<Interval>,
    /// Distinct lease ids other than `0`, sorted.
    leases: Vec<i64>,
    /// Conflicts with everything.
    exclusive: bool,
}

impl Footprint {
    /// Normalises a command's conflict keys.
    pub(crate) fn new(keys: &ConflictKeys) -> Self {
        let mut intervals: Vec<Interval> = keys
            .ranges
            .iter()
            .filter_map(Interval::from_range)
            .collect();
        intervals.sort_by(|a, b| a.start.cmp(&b.start));
        // Merge overlapping or touching intervals (in place): the union covers the same keys,
        // and the command's own intervals never need to be told apart.
        intervals.dedup_by(|next, last| {
            if !last.end.reaches(&next.start) {
                return false;
            }
            if next.end > last.end {
                last.end = std::mem::replace(&mut next.end, End::Unbounded);
            }
            true
        });
        let mut leases: Vec<i64> = keys.leases.iter().copied().filter(|&l| l != 0).collect();
        leases.sort_unstable();
        leases.dedup();
        Self {
            intervals,
            leases,
            exclusive: keys.exclusive,
        }
    }

    /// Whether the command conflicts with every other command.
    pub(crate) fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

/// A link in the treap.
type Link = Option<Box<Node>>;

/// A treap node: one interval of one command, ordered by `(start, token)` and augmented with the
/// largest end in its subtree.
#[derive(Debug, Clone)]
struct Node {
    /// Start of the interval (the primary key).
    start: Bytes,
    /// End of the interval.
    end: End,
    /// The owning command's token (the secondary key; a command's intervals are disjoint, so
    /// `(start, token)` is unique).
    token: u64,
    /// Heap priority (max-heap), pseudo-random but deterministic.
    priority: u64,
    /// The largest `end` in this subtree.
    max_end: End,
    /// Smaller keys.
    left: Link,
    /// Larger keys.
    right: Link,
}

impl Node {
    /// Orders `(start, token)` against this node's key.
    fn cmp_key(&self, start: &[u8], token: u64) -> Ordering {
        (self.start.as_ref(), self.token).cmp(&(start, token))
    }

    /// Recomputes `max_end` from the node and its children.
    fn update(&mut self) {
        let mut max = &self.end;
        for child in [&self.left, &self.right].into_iter().flatten() {
            if child.max_end > *max {
                max = &child.max_end;
            }
        }
        self.max_end = max.clone();
    }
}

/// Splits `link` into the keys `< (start, token)` and the keys `>= (start, token)`.
fn split(link: Link, start: &[u8], token: u64) -> (Link, Link) {
    let Some(mut node) = link else {
        return (None, None);
    };
    if node.cmp_key(start, token) == Ordering::Less {
        let (low, high) = split(node.right.take(), start, token);
        node.right = low;
        node.update();
        (Some(node), high)
    } else {
        let (low, high) = split(node.left.take(), start, token);
        node.left = high;
        node.update();
        (low, Some(node))
    }
}

/// Joins two treaps where every key of `low` is smaller than every key of `high`.
fn merge(low: Link, high: Link) -> Link {
    match (low, high) {
        (None, high) => high,
        (low, None) => low,
        (Some(mut low), Some(mut high)) => {
            if low.priority >= high.priority {
                low.right = merge(low.right.take(), Some(high));
                low.update();
                Some(low)
            } else {
                high.left = merge(Some(low), high.left.take());
                high.update();
                Some(high)
            }
        }
    }
}

/// Inserts `new` (a leaf with no children) into `link`.
fn insert(link: Link, mut new: Box<Node>) -> Box<Node> {
    let Some(mut node) = link else {
        return new;
    };
    if new.priority > node.priority {
        let (low, high) = split(Some(node), &new.start, new.token);
        new.left = low;
        new.right = high;
        new.update();
        new
    } else {
        if node.cmp_key(&new.start, new.token) == Ordering::Greater {
            node.left = Some(insert(node.left.take(), new));
        } else {
            node.right = Some(insert(node.right.take(), new));
        }
        node.update();
        node
    }
}

/// Removes the node with key `(start, token)`; whether it was present.
fn remove(link: &mut Link, start: &[u8], token: u64) -> bool {
    let Some(node) = link else {
        return false;
    };
    let removed = match node.cmp_key(start, token) {
        Ordering::Greater => remove(&mut node.left, start, token),
        Ordering::Less => remove(&mut node.right, start, token),
        Ordering::Equal => {
            let low = node.left.take();
            let high = node.right.take();
            *link = merge(low, high);
            return true;
        }
    };
    if removed {
        node.update();
    }
    removed
}

/// SplitMix64's output function: a bijective mixer, used for deterministic treap priorities.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A multiset of intervals tagged by token, answering "does anything overlap this interval?"
/// in expected `O(log n)`: a treap ordered by start, augmented with the max end per subtree.
#[derive(Debug, Clone, Default)]
pub(crate) struct IntervalTree {
    /// The treap.
    root: Link,
    /// Number of intervals held.
    len: usize,
    /// Counter hashed into node priorities (deterministic, no global randomness, CURP.md D7).
    nodes_made: u64,
}

impl IntervalTree {
    /// Adds `interval` for `token`. `(start, token)` must not be present already.
    pub(crate) fn insert(&mut self, interval: &Interval, token: u64) {
        self.nodes_made = self.nodes_made.wrapping_add(1);
        let node = Box::new(Node {
            start: interval.start.clone(),
            end: interval.end.clone(),
            token,
            priority: mix(self.nodes_made),
            max_end: interval.end.clone(),
            left: None,
            right: None,
        });
        self.root = Some(insert(self.root.take(), node));
        self.len += 1;
    }

    /// Removes `interval` of `token`; whether it was present.
    pub(crate) fn remove(&mut self, interval: &Interval, token: u64) -> bool {
        let removed = remove(&mut self.root, &interval.start, token);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Whether any interval held overlaps `query`.
    ///
    /// CLRS's interval search: descend left when the left subtree has an interval ending after
    /// `query.start`. If none of those overlaps, one of them starts at or after `query.end`, so
    /// every interval to its right does too and the right subtree can be skipped.
    pub(crate) fn overlaps_any(&self, query: &Interval) -> bool {
        let mut cursor = self.root.as_deref();
        while let Some(node) = cursor {
            if !node.max_end.after(&query.start) {
                return false;
            }
            if node.end.after(&query.start) && query.end.after(&node.start) {
                return true;
            }
            cursor = match node.left.as_deref() {
                Some(left) if left.max_end.after(&query.start) => Some(left),
                _ => node.right.as_deref(),
            };
        }
        false
    }

    /// Number of intervals held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Drops every interval.
    pub(crate) fn clear(&mut self) {
        self.root = None;
        self.len = 0;
    }
}

/// The combined index of a pool: which key intervals, lease ids and exclusive commands are
/// held, each tagged with the token the pool got back from [`ConflictIndex::insert`].
///
/// It is a multiset (the uncommitted pool holds conflicting commands); the witness only ever
/// inserts commands that do not conflict with what it holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConflictIndex {
    /// Key intervals of every command held.
    ranges: IntervalTree,
    /// Lease id → number of commands held that touch it (never `0`).
    leases: HashMap<i64, usize>,
    /// Number of exclusive commands held.
    exclusive: usize,
    /// Number of commands held.
    commands: usize,
    /// The next token to hand out.
    next_token: u64,
}

impl ConflictIndex {
    /// Whether a command with footprint `fp` conflicts with any command held (the same relation
    /// as [`ConflictKeys::conflicts_with`]).
    pub(crate) fn conflicts(&self, fp: &Footprint) -> bool {
        if self.exclusive > 0 || (fp.exclusive && self.commands > 0) {
            return true;
        }
        fp.leases
            .iter()
            .any(|lease| self.leases.contains_key(lease))
            || fp
                .intervals
                .iter()
                .any(|interval| self.ranges.overlaps_any(interval))
    }

    /// Adds a command; returns the token to remove it with.
    pub(crate) fn insert(&mut self, fp: &Footprint) -> u64 {
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        for interval in &fp.intervals {
            self.ranges.insert(interval, token);
        }
        for &lease in &fp.leases {
            *self.leases.entry(lease).or_insert(0) += 1;
        }
        if fp.exclusive {
            self.exclusive += 1;
        }
        self.commands += 1;
        token
    }

    /// Removes the command inserted with `fp` under `token`.
    pub(crate) fn remove(&mut self, fp: &Footprint, token: u64) {
        for interval in &fp.intervals {
            let removed = self.ranges.remove(interval, token);
            debug_assert!(removed, "interval of token {token} missing from the index");
        }
        for lease in &fp.leases {
            if let Some(count) = self.leases.get_mut(lease) {
                *count -= 1;
                if *count == 0 {
                    self.leases.remove(lease);
                }
            }
        }
        if fp.exclusive {
            self.exclusive = self.exclusive.saturating_sub(1);
        }
        self.commands = self.commands.saturating_sub(1);
    }

    /// Number of commands held.
    pub(crate) fn len(&self) -> usize {
        self.commands
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.ranges.clear();
        self.leases.clear();
        self.exclusive = 0;
        self.commands = 0;
    }

    /// Whether every internal structure is empty (tests of insert/remove symmetry).
    #[cfg(test)]
    pub(crate) fn is_pristine(&self) -> bool {
        self.ranges.len() == 0
            && self.ranges.root.is_none()
            && self.leases.is_empty()
            && self.exclusive == 0
            && self.commands == 0
    }
}

/// Test helpers shared by the pool tests: a SplitMix64 PRNG and random conflict keys.
#[cfg(test)]
pub(crate) mod test_util {
    use bytes::Bytes;

    use crate::cmd::{ConflictKeys, KeyRange};
    use crate::core::types::{CommandData, ProposeId};

    /// SplitMix64 (Steele, Lea, Flood 2014): tiny, seeded, good enough for tests.
    pub(crate) struct SplitMix64(u64);

    impl SplitMix64 {
        /// A generator seeded with `seed`.
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed)
        }

        /// The next 64 random bits.
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform-ish in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        /// Uniform-ish index in `0..n` (`n > 0`).
        pub(crate) fn index(&mut self, n: usize) -> usize {
            usize::try_from(self.below(n as u64)).expect("fits")
        }

        /// True with probability `num / den`.
        pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
            self.below(den) < num
        }

        /// Shuffles `items` (Fisher-Yates).
        pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                let j = self.index(i + 1);
                items.swap(i, j);
            }
        }
    }

    /// A random key of 1..=3 bytes over a small alphabet that includes `0x00` and `0xff`.
    pub(crate) fn key(rng: &mut SplitMix64) -> Vec<u8> {
        const ALPHABET: [u8; 6] = [0x00, 0x01, b'a', b'b', b'c', 0xff];
        let len = 1 + rng.index(3);
        (0..len)
            .map(|_| ALPHABET[rng.index(ALPHABET.len())])
            .collect()
    }

    /// A random key range in etcd's convention, every special case included.
    pub(crate) fn range(rng: &mut SplitMix64) -> KeyRange {
        match rng.below(100) {
            0..=54 => KeyRange::new(key(rng), Vec::new()),
            55..=79 => KeyRange::new(key(rng), key(rng)),
            80..=86 => KeyRange::new(key(rng), vec![0]),
            87..=88 => KeyRange::new(vec![0], vec![0]),
            89..=93 => {
                // A range ending exactly where a single key starts, or starting at one's end.
                let k = key(rng);
                let mut next = k.clone();
                next.push(0);
                if rng.chance(1, 2) {
                    KeyRange::new(next, key(rng))
                } else {
                    KeyRange::new(key(rng), k)
                }
            }
            _ => {
                // A prefix range.
                let start = key(rng);
                let mut end = start.clone();
                match end.last_mut() {
                    Some(last) if *last < 0xff => *last += 1,
                    _ => end = vec![0],
                }
                KeyRange::new(start, end)
            }
        }
    }

    /// Random conflict keys: 0..=3 ranges, 0..=2 leases in `0..=5` (lease `0` included), and
    /// rarely exclusive (1 in `exclusive_den`).
    pub(crate) fn conflict_keys(rng: &mut SplitMix64, exclusive_den: u64) -> ConflictKeys {
        let ranges = (0..rng.below(4)).map(|_| range(rng)).collect();
        let leases = (0..rng.below(3))
            .map(|_| i64::try_from(rng.below(6)).expect("small"))
            .collect();
        ConflictKeys {
            ranges,
            leases,
            exclusive: rng.chance(1, exclusive_den),
        }
    }

    /// A command with the given id and keys.
    pub(crate) fn command(client_id: u64, seq: u64, keys: ConflictKeys) -> CommandData {
        CommandData {
            id: ProposeId { client_id, seq },
            keys: std::sync::Arc::new(keys),
            payload: Bytes::new(),
            first_incomplete: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{SplitMix64, conflict_keys, range};
    use super::*;

    fn r(start: &[u8], end: &[u8]) -> KeyRange {
        KeyRange::new(start.to_vec(), end.to_vec())
    }

    fn iv(start: &[u8], end: &[u8]) -> Interval {
        Interval::from_range(&r(start, end)).expect("non-empty")
    }

    /// `After(k)` orders, and is equal, exactly like `Key(k ++ [0])`, against bounds and keys.
    #[test]
    fn successor_bounds_order_as_their_keys() {
        // The key a bound stands for (`None`: unbounded, above every key).
        fn as_key(end: &End) -> Option<Vec<u8>> {
            end.bound().map(|(key, next)| {
                let mut key = key.to_vec();
                if next {
                    key.push(0);
                }
                key
            })
        }
        let keys: Vec<Vec<u8>> = [
            &b""[..],
            b"\0",
            b"\0\0",
            b"a",
            b"a\0",
            b"a\0\0",
            b"a\x01",
            b"ab",
            b"b",
        ]
        .iter()
        .map(|k| k.to_vec())
        .collect();
        let mut ends = vec![End::Unbounded];
        for k in &keys {
            ends.push(End::Key(Bytes::from(k.clone())));
            ends.push(End::After(Bytes::from(k.clone())));
        }
        let mut checked = 0;
        for a in &ends {
            for b in &ends {
                let expected = match (as_key(a), as_key(b)) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (Some(x), Some(y)) => x.cmp(&y),
                };
                assert_eq!(a.cmp(b), expected, "{a:?} vs {b:?}");
                assert_eq!(a == b, expected == Ordering::Equal, "{a:?} vs {b:?}");
                checked += 1;
            }
            for k in &keys {
                let expected = as_key(a).is_none_or(|x| x.as_slice() > k.as_slice());
                assert_eq!(a.after(k), expected, "{a:?} after {k:?}");
                let reaches = as_key(a).is_none_or(|x| x.as_slice() >= k.as_slice());
                assert_eq!(a.reaches(k), reaches, "{a:?} reaches {k:?}");
            }
        }
        assert_eq!(checked, ends.len() * ends.len());
    }

    #[test]
    fn normalisation_follows_etcd_convention() {
        assert_eq!(
            iv(b"a", b""),
            Interval {
                start: Bytes::from_static(b"a"),
                end: End::Key(Bytes::from_static(b"a\0")),
            }
        );
        assert_eq!(
            iv(&[0], &[0]),
            Interval {
                start: Bytes::new(),
                end: End::Unbounded,
            }
        );
        assert_eq!(iv(b"b", &[0]).end, End::Unbounded);
        assert_eq!(iv(b"b", b"d").end, End::Key(Bytes::from_static(b"d")));
        assert_eq!(Interval::from_range(&r(b"d", b"b")), None);
        assert_eq!(Interval::from_range(&r(b"b", b"b")), None);
        // The single key "\0" is not "all keys".
        assert_eq!(iv(&[0], b"").end, End::Key(Bytes::from_static(&[0, 0])));
    }

    #[test]
    fn edge_overlaps() {
        // Touching half-open ranges do not overlap.
        assert!(!iv(b"a", b"b").overlaps(&iv(b"b", b"c")));
        // A single key inside a range does.
        assert!(iv(b"a", b"c").overlaps(&iv(b"b", b"")));
        // A single key at the (exclusive) end does not.
        assert!(!iv(b"a", b"c").overlaps(&iv(b"c", b"")));
        // A single key and its successor do not.
        assert!(!iv(b"a", b"").overlaps(&iv(b"a\0", b"")));
        // Unbounded ranges and all keys.
        assert!(iv(b"x", &[0]).overlaps(&iv(b"zz", b"")));
        assert!(!iv(b"x", &[0]).overlaps(&iv(b"a", b"x")));
        assert!(iv(&[0], &[0]).overlaps(&iv(b"", b"")));
        assert!(iv(&[0], &[0]).overlaps(&iv(b"\xff\xff", &[0])));
    }

    #[test]
    fn interval_overlap_matches_key_range_overlap() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..20_000 {
            let (a, b) = (range(&mut rng), range(&mut rng));
            let ours = match (Interval::from_range(&a), Interval::from_range(&b)) {
                (Some(x), Some(y)) => x.overlaps(&y),
                _ => false,
            };
            assert_eq!(ours, a.overlaps(&b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn footprint_merges_and_drops_lease_zero() {
        let keys = ConflictKeys {
            ranges: vec![
                r(b"c", b"e"),
                r(b"a", b"c"),
                r(b"d", b""),
                r(b"x", b"w"),
                r(b"g", &[0]),
                r(b"h", b""),
            ],
            leases: vec![0, 3, 3, 1, 0],
            exclusive: false,
        };
        let fp = Footprint::new(&keys);
        assert_eq!(fp.intervals, vec![iv(b"a", b"e"), iv(b"g", &[0])]);
        assert_eq!(fp.leases, vec![1, 3]);
        assert!(!fp.is_exclusive());
    }

    #[test]
    fn footprint_conflicts_match_conflict_keys() {
        let mut rng = SplitMix64::new(11);
        for _ in 0..10_000 {
            let (a, b) = (conflict_keys(&mut rng, 20), conflict_keys(&mut rng, 20));
            let mut index = ConflictIndex::default();
            index.insert(&Footprint::new(&a));
            assert_eq!(
                index.conflicts(&Footprint::new(&b)),
                a.conflicts_with(&b),
                "{a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn tree_matches_brute_force() {
        for seed in 0..20 {
            let mut rng = SplitMix64::new(seed);
            let mut tree = IntervalTree::default();
            let mut model: Vec<(Interval, u64)> = Vec::new();
            for token in 0..2_000u64 {
                let op = rng.below(10);
                if op < 5 {
                    if let Some(interval) = Interval::from_range(&range(&mut rng)) {
                        tree.insert(&interval, token);
                        model.push((interval, token));
                    }
                } else if op < 8 && !model.is_empty() {
                    let (interval, token) = model.swap_remove(rng.index(model.len()));
                    assert!(tree.remove(&interval, token));
                    assert!(!tree.remove(&interval, token));
                } else if let Some(query) = Interval::from_range(&range(&mut rng)) {
                    let expected = model.iter().any(|(held, _)| held.overlaps(&query));
                    assert_eq!(tree.overlaps_any(&query), expected, "{query:?}");
                }
                assert_eq!(tree.len(), model.len());
            }
            for (interval, token) in model.drain(..) {
                assert!(tree.remove(&interval, token));
            }
            assert!(tree.root.is_none());
            assert_eq!(tree.len(), 0);
        }
    }

    #[test]
    fn tree_stays_shallow() {
        fn depth(link: &Link) -> usize {
            link.as_ref()
                .map_or(0, |n| 1 + depth(&n.left).max(depth(&n.right)))
        }
        let mut tree = IntervalTree::default();
        // Sorted insertion is the worst case for an unbalanced tree.
        for i in 0..10_000u32 {
            let key = i.to_be_bytes();
            tree.insert(&iv(&key, b""), u64::from(i));
        }
        let d = depth(&tree.root);
        assert!(d < 60, "depth {d}");
        // Max-end augmentation is right everywhere.
        fn check(link: &Link) -> Option<End> {
            let n = link.as_ref()?;
            let mut max = n.end.clone();
            for child in [check(&n.left), check(&n.right)].into_iter().flatten() {
                max = max.max(child);
            }
            assert_eq!(n.max_end, max);
            Some(max)
        }
        check(&tree.root);
        assert!(tree.overlaps_any(&iv(&5000u32.to_be_bytes(), b"")));
        assert!(!tree.overlaps_any(&iv(&10_000u32.to_be_bytes(), &[0])));
    }
}
