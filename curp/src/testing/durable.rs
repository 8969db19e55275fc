//! What a simulated member has made durable: exactly what its `Ready`s told it to persist. A
//! restart sees nothing else.

use crate::core::{Entry, LogIndex, Membership, Restored, SnapshotInstall, WitnessOp};
use crate::storage::HardState;

/// What a member's `Ready`s told it to make durable.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    /// The hard state.
    pub hard_state: HardState,
    /// The log after the snapshot (contiguous, ascending).
    pub entries: Vec<Entry>,
    /// The witness journal, in order.
    pub witness: Vec<WitnessOp>,
    /// The latest snapshot record.
    pub snapshot: Option<SnapshotInstall>,
}

impl Durable {
    /// The snapshot's index (0: none).
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |s| s.index)
    }

    /// The last durable log index.
    pub fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or_else(|| self.snapshot_index(), |e| e.index)
    }

    /// Appends `entries`, truncating any durable tail from `entries[0].index` on.
    ///
    /// # Errors
    ///
    /// A description when the entries are not contiguous or would leave a gap.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let base = self.snapshot_index();
        if first.index <= base || first.index > self.last_index() + 1 {
            return Err(format!(
                "Ready.entries start at {} but the durable log covers {}..={} after snapshot {}",
                first.index,
                base + 1,
                self.last_index(),
                base
            ));
        }
        if entries.windows(2).any(|w| w[1].index != w[0].index + 1) {
            return Err("Ready.entries are not contiguous".to_owned());
        }
        let keep = usize::try_from(first.index - base - 1).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Records a snapshot taken locally: the log up to it is compacted.
    pub fn snapshot_taken(&mut self, snap: SnapshotInstall) {
        self.entries.retain(|e| e.index > snap.index);
        self.snapshot = Some(snap);
    }

    /// Records a snapshot installed from the leader: it replaces the whole log (as the core
    /// does).
    pub fn install(&mut self, snap: SnapshotInstall) {
        self.entries.clear();
        self.snapshot = Some(snap);
    }

    /// What a restart restores.
    pub fn restored(&self, membership: &Membership) -> Restored {
        Restored {
            hard_state: self.hard_state,
            entries: self.entries.clone(),
            snapshot: self.snapshot.clone(),
            membership: membership.clone(),
            witness: self.witness.clone(),
            applied: self.snapshot_index(),
        }
    }
}
