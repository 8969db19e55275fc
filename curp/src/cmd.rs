//! The seam between consensus and the replicated state machine.
//!
//! Consensus orders opaque [`Command`]s; a [`CommandExecutor`] applies them in log order.
//! [`ConflictKeys`] describe what a command touches so that the witness (later) can tell
//! whether two commands commute.

use bytes::Bytes;

use crate::error::{DecodeError, ExecutorError};

/// A state-machine command that consensus replicates.
pub trait Command: Sized + Send + Sync + 'static {
    /// Encodes the command into the bytes stored in the log.
    fn encode(&self) -> Vec<u8>;

    /// Decodes a command previously produced by [`Command::encode`].
    ///
    /// # Errors
    ///
    /// Returns [`DecodeError`] when `bytes` is not a valid encoding.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    /// What this command touches, for conflict detection (used by the witness later).
    fn conflict_keys(&self) -> ConflictKeys;
}

/// The keys, key ranges and leases a command reads or writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConflictKeys {
    /// Key ranges touched by the command.
    pub ranges: Vec<KeyRange>,
    /// Lease ids touched by the command; `0` means "no lease" and never conflicts.
    pub leases: Vec<i64>,
    /// The command conflicts with every other command (membership changes, compaction, ...).
    pub exclusive: bool,
}

impl ConflictKeys {
    /// Whether the two commands may not be reordered: either is exclusive, any of their key
    /// ranges overlap, or they share a lease id other than `0`.
    pub fn conflicts_with(&self, other: &ConflictKeys) -> bool {
        if self.exclusive || other.exclusive {
            return true;
        }
        let ranges = self
            .ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)));
        ranges
            || self
                .leases
                .iter()
                .any(|&lease| lease != 0 && other.leases.contains(&lease))
    }
}

/// A key range in etcd's convention.
///
/// - empty `end`: the single key `start`;
/// - `start == end == [0]`: all keys;
/// - `end == [0]`: every key `>= start`;
/// - otherwise the half-open interval `[start, end)`, empty when `end <= start`.
///
/// The keys are shared [`Bytes`]: a range is copied into every log entry, message, journal
/// record and conflict index that holds its command, and those copies must not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// First key of the range (inclusive).
    pub start: Bytes,
    /// End of the range (exclusive), or one of the special values described on the type.
    pub end: Bytes,
}

/// The upper bound of a [`KeyRange`].
enum Upper<'a> {
    /// Keys strictly below this one.
    Below(&'a [u8]),
    /// Keys up to and including this one.
    Through(&'a [u8]),
    /// No upper bound.
    Unbounded,
}

impl Upper<'_> {
    /// Whether `key` lies below this bound.
    fn admits(&self, key: &[u8]) -> bool {
        match self {
            Upper::Below(end) => key < *end,
            Upper::Through(last) => key <= *last,
            Upper::Unbounded => true,
        }
    }
}

impl KeyRange {
    /// Creates a range from `start` and `end` in etcd's convention (see the type docs).
    pub fn new(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        Self {
            start: start.into(),
            end: end.into(),
        }
    }

    /// The inclusive lower bound and the upper bound of this range.
    fn bounds(&self) -> (&[u8], Upper<'_>) {
        const ZERO: &[u8] = &[0];
        match (self.start.as_ref(), self.end.as_ref()) {
            (ZERO, ZERO) => (&[], Upper::Unbounded),
            (start, []) => (start, Upper::Through(start)),
            (start, ZERO) => (start, Upper::Unbounded),
            (start, end) => (start, Upper::Below(end)),
        }
    }

    /// Whether `key` lies in this range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let (low, high) = self.bounds();
        key >= low && high.admits(key)
    }

    /// Whether this range and `other` have at least one key in common.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let (a_low, a_high) = self.bounds();
        let (b_low, b_high) = other.bounds();
        // Both ranges are intervals: they share a key iff the larger lower bound lies in both.
        let low = a_low.max(b_low);
        a_high.admits(low) && b_high.admits(low)
    }
}

/// Applies committed commands to the state machine.
pub trait CommandExecutor<C: Command>: Send + Sync + 'static {
    /// The result of applying one command, handed back to its proposer.
    type Output: Send + 'static;

    /// Applies committed commands, given as (log index, command) in log order, as ONE atomic
    /// state-machine batch that also records the last index as the applied index. Need not be
    /// durable.
    ///
    /// Returns one output per command, in the same order.
    ///
    /// # Errors
    ///
    /// Any error is fatal to the node: the batch must then have had no effect, and the node
    /// stops (on restart the batch is replayed from the log).
    fn apply(&self, batch: &[(u64, C)]) -> Result<Vec<Self::Output>, ExecutorError>;

    /// Makes every applied batch durable; returns the applied index that is now durable.
    ///
    /// # Errors
    ///
    /// Any error is fatal to the node.
    fn flush(&self) -> Result<u64, ExecutorError>;

    /// The durable applied index (read at startup to decide what to replay).
    ///
    /// # Errors
    ///
    /// Any error prevents the node from starting.
    fn applied_index(&self) -> Result<u64, ExecutorError>;

    /// A consistent image of the applied state, as of the last applied batch (what
    /// [`CommandExecutor::restore`] takes back). The driver calls it between batches, after
    /// [`CommandExecutor::flush`], so that nothing is applied concurrently; consensus stores it
    /// in the snapshot it ships to lagging members and compacts the log up to it.
    ///
    /// # Errors
    ///
    /// Any error is fatal to the node.
    fn snapshot(&self) -> Result<Bytes, ExecutorError>;

    /// Replaces the whole state by `data` (an image made by [`CommandExecutor::snapshot`],
    /// possibly on another member) atomically and durably; afterwards
    /// [`CommandExecutor::applied_index`] is `index`, the log index the image covers.
    ///
    /// # Errors
    ///
    /// Any error is fatal to the node: the state must then be unchanged (the node restores
    /// again on restart).
    fn restore(&self, data: &[u8], index: u64) -> Result<(), ExecutorError>;

    /// The fast path's speculative result of `cmd` (CURP.md D3, "ER"): called on the leader,
    /// between applied batches, for a command that commutes with every command proposed but
    /// not yet applied. Return a result only if it cannot depend on the order in which `cmd`
    /// and those commands are applied (nor on anything ordering assigns, such as a revision);
    /// the state must not change. `None` (the default) means "not speculable": the client then
    /// waits for the ordered result.
    fn speculate(&self, cmd: &C) -> Option<Self::Output> {
        let _ = cmd;
        None
    }
}

/// Encodes an executor's output for a remote client and decodes it there (the native client
/// and the client service share one implementation). A separate type rather than a method of
/// the output, so that a crate can write one for an output type it does not own.
pub trait OutputCodec<O>: Send + Sync + 'static {
    /// Encodes `output`.
    fn encode(output: &O) -> Vec<u8>;

    /// Decodes what [`OutputCodec::encode`] produced.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when `bytes` is not a valid encoding.
    fn decode(bytes: &[u8]) -> Result<O, DecodeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: &[u8], end: &[u8]) -> KeyRange {
        KeyRange::new(start.to_vec(), end.to_vec())
    }

    #[test]
    fn contains_follows_etcd_convention() {
        let single = r(b"b", b"");
        assert!(single.contains(b"b"));
        assert!(!single.contains(b"b\0"));
        assert!(!single.contains(b"a"));

        let half_open = r(b"b", b"d");
        assert!(half_open.contains(b"b"));
        assert!(half_open.contains(b"c\xff"));
        assert!(!half_open.contains(b"d"));
        assert!(!half_open.contains(b"a"));

        let from = r(b"b", &[0]);
        assert!(from.contains(b"b"));
        assert!(from.contains(b"\xff\xff"));
        assert!(!from.contains(b"a"));

        let all = r(&[0], &[0]);
        assert!(all.contains(b""));
        assert!(all.contains(b"\0"));
        assert!(all.contains(b"zzz"));

        let empty = r(b"d", b"b");
        assert!(!empty.contains(b"c"));
        assert!(!empty.contains(b"d"));
    }

    #[test]
    fn overlaps_is_symmetric_and_correct() {
        let cases: &[(KeyRange, KeyRange, bool)] = &[
            (r(b"a", b""), r(b"a", b""), true),
            (r(b"a", b""), r(b"b", b""), false),
            (r(b"a", b""), r(b"a", b"b"), true),
            (r(b"b", b""), r(b"a", b"b"), false),
            (r(b"a\0", b""), r(b"a", b""), false),
            (r(b"a\0", b""), r(b"a", b"a\0"), false),
            (r(b"a\0", b""), r(b"a", b"a\0\0"), true),
            (r(b"a", b"c"), r(b"b", b"d"), true),
            (r(b"a", b"c"), r(b"c", b"d"), false),
            (r(b"a", b"c"), r(b"c", &[0]), false),
            (r(b"a", b"c"), r(b"b", &[0]), true),
            (r(b"z", b""), r(b"b", &[0]), true),
            (r(b"a", b""), r(&[0], &[0]), true),
            (r(b"a", b"b"), r(&[0], &[0]), true),
            (r(&[0], &[0]), r(&[0], &[0]), true),
            (r(b"x", &[0]), r(b"y", &[0]), true),
            // Empty ranges overlap nothing.
            (r(b"d", b"b"), r(&[0], &[0]), false),
            (r(b"b", b"b"), r(b"b", b""), false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.overlaps(b), *expected, "{a:?} vs {b:?}");
            assert_eq!(b.overlaps(a), *expected, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn conflict_keys() {
        let keys = |ranges: Vec<KeyRange>, leases: Vec<i64>, exclusive| ConflictKeys {
            ranges,
            leases,
            exclusive,
        };
        let a = keys(vec![r(b"a", b"")], vec![], false);
        let b = keys(vec![r(b"b", b"")], vec![], false);
        assert!(!a.conflicts_with(&b));
        assert!(a.conflicts_with(&a));

        let lease_a = keys(vec![r(b"a", b"")], vec![7], false);
        let lease_b = keys(vec![r(b"b", b"")], vec![7], false);
        assert!(lease_a.conflicts_with(&lease_b));

        let zero_a = keys(vec![r(b"a", b"")], vec![0], false);
        let zero_b = keys(vec![r(b"b", b"")], vec![0], false);
        assert!(!zero_a.conflicts_with(&zero_b));

        let exclusive = keys(vec![], vec![], true);
        assert!(exclusive.conflicts_with(&ConflictKeys::default()));
        assert!(ConflictKeys::default().conflicts_with(&exclusive));
        assert!(!ConflictKeys::default().conflicts_with(&ConflictKeys::default()));
    }
}
