//! The in-memory view of the replicated log: the entries this member holds after its snapshot
//! boundary, which of them were handed to the driver for persistence, which are durable, and
//! how far the log is committed and handed out for applying.
//!
//! ```text
//!   offset        emitted     commit        persisted    unstable_from-1   last
//!   |-- snapshot --|-- handed out --|-- committed --|-- durable --|-- in a Ready --|-- new --|
//! ```
//! (`persisted` and `commit` are independent; a follower may learn of a commit before its own
//! copy is durable, and the leader never commits past its own durable copy.)

use std::collections::BTreeSet;

use super::types::{Entry, EntryKind, LogIndex, Term};

/// The log of one member (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct RaftLog {
    /// Index of the last entry covered by the snapshot (0: none).
    offset: LogIndex,
    /// Term of the entry at `offset`.
    offset_term: Term,
    /// Entries `offset+1 ..= last_index()`.
    entries: Vec<Entry>,
    /// Highest index known committed.
    pub(crate) commit: LogIndex,
    /// Highest index handed out in `Ready::committed` (or covered by the snapshot).
    pub(crate) emitted: LogIndex,
    /// Highest index known durable on this member.
    persisted: LogIndex,
    /// First index not yet handed to the driver in `Ready::entries`.
    unstable_from: LogIndex,
    /// Highest index handed to the driver and not yet acknowledged by `advance`.
    in_flight: LogIndex,
    /// Clients whose expiry ([`EntryKind::ClientExpired`]) entered this log, applied or not.
    /// Never shrinks (not even when a suffix is truncated): refusing such a client is always
    /// safe, accepting one whose tombstone precedes the command in the log is not.
    expiring: BTreeSet<u64>,
}

impl RaftLog {
    /// A log restored from storage: the snapshot boundary and the durable entries after it.
    pub(crate) fn restore(offset: LogIndex, offset_term: Term, entries: Vec<Entry>) -> Self {
        let entries: Vec<Entry> = entries.into_iter().filter(|e| e.index > offset).collect();
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == offset + 1 + i as u64);
        debug_assert!(
            contiguous,
            "restored entries must follow the snapshot contiguously"
        );
        let entries = if contiguous { entries } else { Vec::new() };
        let last = offset + entries.len() as u64;
        let expiring = entries.iter().filter_map(expired_client).collect();
        Self {
            offset,
            offset_term,
            entries,
            commit: offset,
            emitted: offset,
            persisted: last,
            unstable_from: last + 1,
            in_flight: last,
            expiring,
        }
    }

    /// Whether an expiry of `client_id` entered this log (CURP.md DD4): a command of it
    /// appended after the tombstone would be skipped as a duplicate when applied, so after a
    /// fast-path answer it would be an acknowledged write lost.
    pub(crate) fn expiry_logged(&self, client_id: u64) -> bool {
        self.expiring.contains(&client_id)
    }

    /// The snapshot boundary (index, term).
    pub(crate) fn offset(&self) -> (LogIndex, Term) {
        (self.offset, self.offset_term)
    }

    /// First index held as an entry (`last_index()+1` when none is held).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.offset + 1
    }

    /// Last index (the snapshot boundary when no entry is held).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.offset + self.entries.len() as u64
    }

    /// Term of the last entry.
    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// Term of the entry at `index` (also answers for the snapshot boundary); `None` when
    /// compacted or beyond the end.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index`, if held.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let pos = index.checked_sub(self.offset + 1)?;
        self.entries.get(usize::try_from(pos).ok()?)
    }

    /// Entries in `[low, high]` that are held (clamped to the held range).
    pub(crate) fn slice(&self, low: LogIndex, high: LogIndex) -> &[Entry] {
        let low = low.max(self.first_index());
        let high = high.min(self.last_index());
        if low > high {
            return &[];
        }
        let start = usize::try_from(low - self.offset - 1).unwrap_or(usize::MAX);
        let end = usize::try_from(high - self.offset).unwrap_or(usize::MAX);
        self.entries.get(start..end).unwrap_or(&[])
    }

    /// Every entry held.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Highest index known durable here.
    pub(crate) fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// Whether a candidate with this last entry is at least as up to date as this log
    /// (Raft §5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Whether the entry at `index` has `term` (the Append consistency check).
    pub(crate) fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// The backtracking hint after a failed consistency check at `(prev_index, prev_term)`:
    /// the largest index below `prev_index` (or the last index, when `prev_index` is beyond
    /// it) whose term is `<= prev_term`. The leader's entries before `prev_index` have terms
    /// `<= prev_term`, so every entry of ours after the hint is missing or cannot match, and the
    /// leader may retry right after it instead of stepping back one entry at a time. The hint
    /// is always below `prev_index`, so backtracking makes progress.
    pub(crate) fn conflict_hint(&self, prev_index: LogIndex, prev_term: Term) -> LogIndex {
        let mut index = if prev_index > self.last_index() {
            self.last_index()
        } else {
            prev_index.saturating_sub(1)
        };
        while index > self.offset {
            match self.term(index) {
                Some(term) if term <= prev_term => return index,
                _ => index -= 1,
            }
        }
        self.offset
    }

    /// Appends `entry` at the end (the leader's own proposals).
    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(
            entry.index,
            self.last_index() + 1,
            "log entries are contiguous"
        );
        if let Some(client) = expired_client(&entry) {
            self.expiring.insert(client);
        }
        self.entries.push(entry);
    }

    /// Removes every entry at or after `index` (a conflicting suffix). Returns the removed
    /// entries. Committed entries are never removed: Raft guarantees a leader's log holds them.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) -> Vec<Entry> {
        debug_assert!(index > self.commit, "truncating committed entry {index}");
        if index > self.last_index() || index <= self.offset {
            return Vec::new();
        }
        let keep = usize::try_from(index - self.offset - 1).unwrap_or(usize::MAX);
        let removed = self.entries.split_off(keep.min(self.entries.len()));
        let last = self.last_index();
        self.persisted = self.persisted.min(last);
        self.in_flight = self.in_flight.min(last);
        self.unstable_from = self.unstable_from.min(index);
        removed
    }

    /// Entries to hand to the driver for persistence (everything not yet handed out).
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let out = self.slice(self.unstable_from, self.last_index()).to_vec();
        self.unstable_from = self.last_index() + 1;
        self.in_flight = self.last_index();
        out
    }

    /// The driver persisted everything handed out so far. Returns the new durable index.
    pub(crate) fn on_persisted(&mut self) -> LogIndex {
        self.persisted = self.persisted.max(self.in_flight);
        self.persisted
    }

    /// Committed entries not yet handed out for applying.
    pub(crate) fn next_committed(&self) -> &[Entry] {
        self.slice(self.emitted + 1, self.commit)
    }

    /// Drops the entries up to `index` (covered by a snapshot taken there; `index` must be
    /// held or be the boundary already).
    pub(crate) fn compact(&mut self, index: LogIndex) {
        if index <= self.offset || index > self.last_index() {
            return;
        }
        let Some(term) = self.term(index) else {
            return;
        };
        let drop = usize::try_from(index - self.offset).unwrap_or(usize::MAX);
        self.entries.drain(..drop.min(self.entries.len()));
        self.offset = index;
        self.offset_term = term;
        self.unstable_from = self.unstable_from.max(index + 1);
        self.in_flight = self.in_flight.max(index);
    }

    /// Replaces the whole log by a snapshot boundary at `(index, term)` (snapshot install):
    /// everything up to `index` is committed and, once the snapshot is installed, applied.
    pub(crate) fn reset_to_snapshot(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.commit = self.commit.max(index);
        self.emitted = self.emitted.max(index);
        self.persisted = index;
        self.unstable_from = index + 1;
        self.in_flight = index;
    }
}

/// The client an entry expires, if it is an expiry.
fn expired_client(entry: &Entry) -> Option<u64> {
    match entry.kind {
        EntryKind::ClientExpired(client) => Some(client),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::EntryKind;
    use super::*;

    fn e(index: LogIndex, term: Term) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Empty,
        }
    }

    fn log(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| e(i as u64 + 1, t))
            .collect();
        RaftLog::restore(0, 0, entries)
    }

    #[test]
    fn restore_and_terms() {
        let l = log(&[1, 1, 2]);
        assert_eq!((l.first_index(), l.last_index(), l.last_term()), (1, 3, 2));
        assert_eq!(l.term(0), Some(0));
        assert_eq!(l.term(3), Some(2));
        assert_eq!(l.term(4), None);
        assert_eq!(l.persisted(), 3);
    }

    #[test]
    fn up_to_date_compares_term_then_index() {
        let l = log(&[1, 2]);
        assert!(l.is_up_to_date(2, 2));
        assert!(l.is_up_to_date(1, 3));
        assert!(!l.is_up_to_date(1, 2));
        assert!(!l.is_up_to_date(5, 1));
    }

    #[test]
    fn conflict_hint_skips_whole_terms() {
        // Figure 7 (e): follower 1 1 1 4 4 4 4.
        let l = log(&[1, 1, 1, 4, 4, 4, 4]);
        // Leader's entry 7 has term 5: the follower's earlier 4s could match, hint is 6.
        assert_eq!(l.conflict_hint(7, 5), 6);
        // Leader's entry 7 has term 3: all the 4s are wrong, jump to index 3.
        assert_eq!(l.conflict_hint(7, 3), 3);
        // Beyond the end: the last index.
        assert_eq!(l.conflict_hint(20, 9), 7);
    }

    #[test]
    fn unstable_persisted_and_truncation() {
        let mut l = log(&[1]);
        l.push(e(2, 1));
        l.push(e(3, 1));
        assert_eq!(l.take_unstable(), vec![e(2, 1), e(3, 1)]);
        assert_eq!(l.take_unstable(), vec![]);
        // Entry 3 is replaced before the driver reported persistence.
        let removed = l.truncate_from(3);
        assert_eq!(removed, vec![e(3, 1)]);
        l.push(e(3, 2));
        assert_eq!(l.on_persisted(), 2);
        assert_eq!(l.take_unstable(), vec![e(3, 2)]);
        assert_eq!(l.on_persisted(), 3);
    }

    #[test]
    fn compact_and_snapshot_reset() {
        let mut l = log(&[1, 1, 2, 2]);
        l.commit = 3;
        l.compact(2);
        assert_eq!(l.offset(), (2, 1));
        assert_eq!(l.first_index(), 3);
        assert_eq!(l.slice(1, 4), &[e(3, 2), e(4, 2)]);
        l.reset_to_snapshot(10, 3);
        assert_eq!(
            (l.last_index(), l.last_term(), l.commit, l.persisted()),
            (10, 3, 10, 10)
        );
        assert!(l.take_unstable().is_empty());
    }
}
