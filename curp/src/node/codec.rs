//! The node's on-disk formats, on top of [`LogStorage`]: log entries, the snapshot record, the
//! initial membership and the witness journal, and reading all of it back as a
//! [`Restored`].
//!
//! Everything is a prost message written here (`#[derive(prost::Message)]`; the storage format
//! is independent of the peer wire format, which may evolve separately).
//!
//! | What | Where | Format |
//! |---|---|---|
//! | a log entry | [`LogEntry::data`] (index and term are the entry's own fields) | [`EntryRecord`] |
//! | the latest snapshot | meta key [`SNAPSHOT_KEY`] | [`SnapshotRecord`] |
//! | the membership before the log | meta key [`MEMBERSHIP_KEY`] | [`MembershipRecord`] |
//! | the witness journal | meta keys [`WITNESS_LIVE_KEY`] + [`WITNESS_SLOTS`] slots | see below |
//!
//! # The witness journal (CURP.md P2)
//!
//! Each round's [`WitnessOp`]s are written as **one** record, numbered by a sequence number, into
//! slot `seq % WITNESS_SLOTS` (`node/witness/op/<slot>`). Every `WITNESS_SLOTS - 1` records the
//! whole live set (every record held, with the term and cluster version it was accepted in) is
//! rewritten atomically under [`WITNESS_LIVE_KEY`] together with the sequence number it covers;
//! the slots after it are then reused. Replay reads the live set and then the records numbered
//! `base + 1, base + 2, ...` until a slot holds a record with another number (a stale one, or
//! none). `LogStorage` keeps writes in order (a crash loses a suffix, never a hole), so a
//! record is never durable without the ones before it. The driver syncs the storage once per
//! round before it sends anything that depends on the journal, so a record is durable before
//! the witness acknowledges it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message as _;

use crate::cmd::{ConflictKeys, KeyRange};
use crate::core::{
    CommandData, ConfChange, Entry, EntryKind, LogIndex, Membership, ProposeId, Restored,
    SnapshotInstall, Term, WitnessOp,
};
use crate::error::StorageError;
use crate::storage::{LogEntry, LogStorage};

/// Meta key of the latest snapshot record.
pub const SNAPSHOT_KEY: &[u8] = b"node/snapshot";
/// Meta key of the membership in effect before the first log entry (the initial one).
pub const MEMBERSHIP_KEY: &[u8] = b"node/membership";
/// Meta key of the compacted witness journal (the live records and the sequence number
/// they cover).
pub const WITNESS_LIVE_KEY: &[u8] = b"node/witness/live";
/// Number of journal slots reused between two rewrites of the live set.
pub const WITNESS_SLOTS: u64 = 64;

/// Entry kinds in [`EntryRecord::kind`].
const KIND_EMPTY: u32 = 0;
/// A client command.
const KIND_COMMAND: u32 = 1;
/// A membership change.
const KIND_CONF_CHANGE: u32 = 2;
/// A client-id lease expiry (the client id in [`EntryRecord::origin`]).
const KIND_CLIENT_EXPIRED: u32 = 3;

/// Membership change kinds in [`ConfChangeRecord::kind`].
const CHANGE_ADD_LEARNER: u32 = 0;
/// Promote a learner.
const CHANGE_PROMOTE: u32 = 1;
/// Remove a member.
const CHANGE_REMOVE: u32 = 2;
/// Add a member with peer URLs (learner or voter).
const CHANGE_ADD: u32 = 3;
/// New peer URLs of a member.
const CHANGE_UPDATE: u32 = 4;
/// The whole configuration after a change.
const CHANGE_SET: u32 = 5;

/// A log entry's payload ([`EntryKind`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryRecord {
    /// `KIND_EMPTY`, `KIND_COMMAND` or `KIND_CONF_CHANGE`.
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// The command (kind command).
    #[prost(message, optional, tag = "2")]
    pub command: Option<CommandRecord>,
    /// The command's origin member (kind command); the expired client (kind client expired).
    #[prost(uint64, tag = "3")]
    pub origin: u64,
    /// The change (kind conf change).
    #[prost(message, optional, tag = "4")]
    pub change: Option<ConfChangeRecord>,
}

/// A [`CommandData`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommandRecord {
    /// `ProposeId::client_id`.
    #[prost(uint64, tag = "1")]
    pub client_id: u64,
    /// `ProposeId::seq`.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// The encoded command.
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
    /// `CommandData::first_incomplete`.
    #[prost(uint64, tag = "4")]
    pub first_incomplete: u64,
    /// Conflict key ranges.
    #[prost(message, repeated, tag = "5")]
    pub ranges: Vec<RangeRecord>,
    /// Conflict lease ids.
    #[prost(int64, repeated, tag = "6")]
    pub leases: Vec<i64>,
    /// Exclusive command.
    #[prost(bool, tag = "7")]
    pub exclusive: bool,
}

/// A [`KeyRange`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRecord {
    /// First key.
    #[prost(bytes = "bytes", tag = "1")]
    pub start: Bytes,
    /// End (etcd convention).
    #[prost(bytes = "bytes", tag = "2")]
    pub end: Bytes,
}

/// A [`ConfChange`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfChangeRecord {
    /// One of the `CHANGE_*` kinds.
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// The member concerned (all kinds but `CHANGE_SET`).
    #[prost(uint64, tag = "2")]
    pub node: u64,
    /// The member's peer URLs (`CHANGE_ADD`, `CHANGE_UPDATE`).
    #[prost(string, repeated, tag = "3")]
    pub peer_urls: Vec<String>,
    /// Whether the member joins as a learner (`CHANGE_ADD`).
    #[prost(bool, tag = "4")]
    pub learner: bool,
    /// The configuration (`CHANGE_SET`).
    #[prost(message, optional, tag = "5")]
    pub membership: Option<MembershipRecord>,
}

/// A [`Membership`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct MembershipRecord {
    /// Voters.
    #[prost(uint64, repeated, tag = "1")]
    pub voters: Vec<u64>,
    /// Learners.
    #[prost(uint64, repeated, tag = "2")]
    pub learners: Vec<u64>,
    /// Cluster version.
    #[prost(uint64, tag = "3")]
    pub version: u64,
    /// Peer URLs of members.
    #[prost(message, repeated, tag = "4")]
    pub peers: Vec<PeerRecord>,
}

/// One member's peer URLs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerRecord {
    /// The member.
    #[prost(uint64, tag = "1")]
    pub node: u64,
    /// Its peer URLs.
    #[prost(string, repeated, tag = "2")]
    pub urls: Vec<String>,
}

/// A [`SnapshotInstall`] (taken here or installed from the leader).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotRecord {
    /// Index covered.
    #[prost(uint64, tag = "1")]
    pub index: u64,
    /// Term of the entry at `index`.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// Membership as of `index`.
    #[prost(message, optional, tag = "3")]
    pub membership: Option<MembershipRecord>,
    /// The core's snapshot bytes (dedup table + state machine image).
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
}

/// A witness record held, with its stamp.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WitnessRecord {
    /// The command.
    #[prost(message, optional, tag = "1")]
    pub command: Option<CommandRecord>,
    /// Term it was accepted in.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// Cluster version it was accepted at.
    #[prost(uint64, tag = "3")]
    pub cluster_version: u64,
}

/// One journal record: a round's operations (inserts first, then removals, as they happened
/// the order is kept by `ops`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WitnessOpsRecord {
    /// Sequence number of this record.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The operations, in order.
    #[prost(message, repeated, tag = "2")]
    pub ops: Vec<WitnessOpRecord>,
}

/// One [`WitnessOp`]: an insert (with `record`) or a removal (with `removed`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WitnessOpRecord {
    /// The record inserted, if this is an insert.
    #[prost(message, optional, tag = "1")]
    pub insert: Option<WitnessRecord>,
    /// Ids removed, as (client_id, seq) pairs flattened.
    #[prost(uint64, repeated, tag = "2")]
    pub removed: Vec<u64>,
}

/// The compacted journal: every live record as of `seq`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WitnessLiveRecord {
    /// The last journal sequence number this covers.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The records held.
    #[prost(message, repeated, tag = "2")]
    pub records: Vec<WitnessRecord>,
}

/// A stored record that does not decode.
fn corrupted(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupted(what.to_string())
}

// ----- commands, entries ----------------------------------------------------------------------

/// Encodes a command.
fn command_record(cmd: &CommandData) -> CommandRecord {
    CommandRecord {
        client_id: cmd.id.client_id,
        seq: cmd.id.seq,
        payload: cmd.payload.clone(),
        first_incomplete: cmd.first_incomplete,
        ranges: cmd
            .keys
            .ranges
            .iter()
            .map(|r| RangeRecord {
                start: r.start.clone(),
                end: r.end.clone(),
            })
            .collect(),
        leases: cmd.keys.leases.clone(),
        exclusive: cmd.keys.exclusive,
    }
}

/// Decodes a command.
fn command_data(rec: CommandRecord) -> CommandData {
    CommandData {
        id: ProposeId {
            client_id: rec.client_id,
            seq: rec.seq,
        },
        keys: Arc::new(ConflictKeys {
            ranges: rec
                .ranges
                .into_iter()
                .map(|r| KeyRange::new(r.start, r.end))
                .collect(),
            leases: rec.leases,
            exclusive: rec.exclusive,
        }),
        payload: rec.payload,
        first_incomplete: rec.first_incomplete,
    }
}

/// Encodes an entry's payload (the bytes of [`LogEntry::data`]).
pub fn encode_entry_kind(kind: &EntryKind) -> Bytes {
    let rec = match kind {
        EntryKind::Empty => EntryRecord {
            kind: KIND_EMPTY,
            command: None,
            origin: 0,
            change: None,
        },
        EntryKind::Command { cmd, origin } => EntryRecord {
            kind: KIND_COMMAND,
            command: Some(command_record(cmd)),
            origin: *origin,
            change: None,
        },
        EntryKind::ConfChange(change) => EntryRecord {
            kind: KIND_CONF_CHANGE,
            command: None,
            origin: 0,
            change: Some(change_record(change)),
        },
        EntryKind::ClientExpired(client_id) => EntryRecord {
            kind: KIND_CLIENT_EXPIRED,
            command: None,
            origin: *client_id,
            change: None,
        },
    };
    Bytes::from(rec.encode_to_vec())
}

/// Decodes [`encode_entry_kind`]'s output.
///
/// # Errors
///
/// [`StorageError::Corrupted`] when `data` is not such an encoding.
pub fn decode_entry_kind(data: &[u8]) -> Result<EntryKind, StorageError> {
    let rec = EntryRecord::decode(data).map_err(|e| corrupted(format!("log entry: {e}")))?;
    match rec.kind {
        KIND_EMPTY => Ok(EntryKind::Empty),
        KIND_COMMAND => {
            let cmd = rec
                .command
                .ok_or_else(|| corrupted("command entry without a command"))?;
            Ok(EntryKind::Command {
                cmd: command_data(cmd),
                origin: rec.origin,
            })
        }
        KIND_CONF_CHANGE => {
            let change = rec
                .change
                .ok_or_else(|| corrupted("membership entry without a change"))?;
            Ok(EntryKind::ConfChange(conf_change(&change)?))
        }
        KIND_CLIENT_EXPIRED => Ok(EntryKind::ClientExpired(rec.origin)),
        other => Err(corrupted(format!("unknown entry kind {other}"))),
    }
}

/// A core entry as a storage entry.
pub fn to_log_entry(entry: &Entry) -> LogEntry {
    LogEntry {
        index: entry.index,
        term: entry.term,
        data: encode_entry_kind(&entry.kind),
    }
}

/// A storage entry as a core entry.
///
/// # Errors
///
/// [`StorageError::Corrupted`] when the payload does not decode.
pub fn from_log_entry(entry: &LogEntry) -> Result<Entry, StorageError> {
    Ok(Entry {
        index: entry.index,
        term: entry.term,
        kind: decode_entry_kind(&entry.data)?,
    })
}

/// Encodes a membership change.
fn change_record(change: &ConfChange) -> ConfChangeRecord {
    let by_id = |kind, node| ConfChangeRecord {
        kind,
        node,
        ..ConfChangeRecord::default()
    };
    match change {
        ConfChange::AddLearner(id) => by_id(CHANGE_ADD_LEARNER, *id),
        ConfChange::Promote(id) => by_id(CHANGE_PROMOTE, *id),
        ConfChange::Remove(id) => by_id(CHANGE_REMOVE, *id),
        ConfChange::Add {
            id,
            peer_urls,
            learner,
        } => ConfChangeRecord {
            peer_urls: peer_urls.clone(),
            learner: *learner,
            ..by_id(CHANGE_ADD, *id)
        },
        ConfChange::Update { id, peer_urls } => ConfChangeRecord {
            peer_urls: peer_urls.clone(),
            ..by_id(CHANGE_UPDATE, *id)
        },
        ConfChange::Set(m) => ConfChangeRecord {
            membership: Some(membership_record(m)),
            ..by_id(CHANGE_SET, 0)
        },
    }
}

/// Decodes a membership change.
fn conf_change(rec: &ConfChangeRecord) -> Result<ConfChange, StorageError> {
    match rec.kind {
        CHANGE_ADD_LEARNER => Ok(ConfChange::AddLearner(rec.node)),
        CHANGE_PROMOTE => Ok(ConfChange::Promote(rec.node)),
        CHANGE_REMOVE => Ok(ConfChange::Remove(rec.node)),
        CHANGE_ADD => Ok(ConfChange::Add {
            id: rec.node,
            peer_urls: rec.peer_urls.clone(),
            learner: rec.learner,
        }),
        CHANGE_UPDATE => Ok(ConfChange::Update {
            id: rec.node,
            peer_urls: rec.peer_urls.clone(),
        }),
        CHANGE_SET => Ok(ConfChange::Set(membership(
            rec.membership
                .clone()
                .ok_or_else(|| corrupted("membership entry without its configuration"))?,
        ))),
        other => Err(corrupted(format!("unknown membership change kind {other}"))),
    }
}

// ----- membership, snapshot -------------------------------------------------------------------

/// Encodes a membership.
fn membership_record(m: &Membership) -> MembershipRecord {
    MembershipRecord {
        voters: m.voters.iter().copied().collect(),
        learners: m.learners.iter().copied().collect(),
        version: m.version,
        peers: m
            .peers
            .iter()
            .map(|(node, urls)| PeerRecord {
                node: *node,
                urls: urls.clone(),
            })
            .collect(),
    }
}

/// Decodes a membership.
fn membership(rec: MembershipRecord) -> Membership {
    Membership {
        voters: rec.voters.into_iter().collect::<BTreeSet<_>>(),
        learners: rec.learners.into_iter().collect::<BTreeSet<_>>(),
        version: rec.version,
        peers: rec.peers.into_iter().map(|p| (p.node, p.urls)).collect(),
    }
}

/// Encodes the membership in effect before the log (stored once, when a member first starts).
pub fn encode_membership(m: &Membership) -> Vec<u8> {
    membership_record(m).encode_to_vec()
}

/// Decodes [`encode_membership`]'s output.
///
/// # Errors
///
/// [`StorageError::Corrupted`] when `data` is not such an encoding.
pub fn decode_membership(data: &[u8]) -> Result<Membership, StorageError> {
    MembershipRecord::decode(data)
        .map(membership)
        .map_err(|e| corrupted(format!("membership record: {e}")))
}

/// Encodes a snapshot record.
pub fn encode_snapshot(snap: &SnapshotInstall) -> Vec<u8> {
    SnapshotRecord {
        index: snap.index,
        term: snap.term,
        membership: Some(membership_record(&snap.membership)),
        data: snap.data.clone(),
    }
    .encode_to_vec()
}

/// Decodes [`encode_snapshot`]'s output.
///
/// # Errors
///
/// [`StorageError::Corrupted`] when `data` is not such an encoding.
pub fn decode_snapshot(data: &[u8]) -> Result<SnapshotInstall, StorageError> {
    let rec = SnapshotRecord::decode(data).map_err(|e| corrupted(format!("snapshot: {e}")))?;
    Ok(SnapshotInstall {
        index: rec.index,
        term: rec.term,
        membership: membership(
            rec.membership
                .ok_or_else(|| corrupted("snapshot without a membership"))?,
        ),
        data: rec.data,
    })
}

// ----- witness journal ------------------------------------------------------------------------

/// A witness record with its stamp, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamped {
    /// The command.
    cmd: CommandData,
    /// Term it was accepted in.
    term: Term,
    /// Cluster version it was accepted at.
    cluster_version: u64,
}

impl Stamped {
    /// As a journal record.
    fn record(&self) -> WitnessRecord {
        WitnessRecord {
            command: Some(command_record(&self.cmd)),
            term: self.term,
            cluster_version: self.cluster_version,
        }
    }

    /// From a journal record.
    fn from_record(rec: WitnessRecord) -> Result<Self, StorageError> {
        let cmd = rec
            .command
            .ok_or_else(|| corrupted("witness record without a command"))?;
        Ok(Self {
            cmd: command_data(cmd),
            term: rec.term,
            cluster_version: rec.cluster_version,
        })
    }
}

/// The meta key of journal slot `seq % WITNESS_SLOTS`.
fn slot_key(seq: u64) -> Vec<u8> {
    format!("node/witness/op/{}", seq % WITNESS_SLOTS).into_bytes()
}

/// Encodes one operation.
fn op_record(op: &WitnessOp) -> WitnessOpRecord {
    match op {
        WitnessOp::Insert {
            cmd,
            term,
            cluster_version,
        } => WitnessOpRecord {
            insert: Some(
                Stamped {
                    cmd: cmd.clone(),
                    term: *term,
                    cluster_version: *cluster_version,
                }
                .record(),
            ),
            removed: Vec::new(),
        },
        WitnessOp::Remove(ids) => WitnessOpRecord {
            insert: None,
            removed: ids.iter().flat_map(|id| [id.client_id, id.seq]).collect(),
        },
    }
}

/// The driver's copy of the witness journal: the live records (mirroring the core's witness)
/// and where the next record goes. See the module docs for the format.
#[derive(Debug, Default)]
pub struct WitnessJournal {
    /// Live records by id.
    live: BTreeMap<ProposeId, Stamped>,
    /// Sequence number of the last record written.
    seq: u64,
    /// Sequence number the stored live set covers.
    base: u64,
}

impl WitnessJournal {
    /// Reads the journal back.
    ///
    /// # Errors
    ///
    /// Storage failures and undecodable records.
    pub fn load<S: LogStorage>(storage: &S) -> Result<Self, StorageError> {
        let mut journal = Self::default();
        if let Some(bytes) = storage.get_meta(WITNESS_LIVE_KEY)? {
            let rec = WitnessLiveRecord::decode(bytes.as_slice())
                .map_err(|e| corrupted(format!("witness journal: {e}")))?;
            journal.seq = rec.seq;
            journal.base = rec.seq;
            for r in rec.records {
                let stamped = Stamped::from_record(r)?;
                journal.live.insert(stamped.cmd.id, stamped);
            }
        }
        loop {
            let next = journal.seq + 1;
            let Some(bytes) = storage.get_meta(&slot_key(next))? else {
                break;
            };
            let rec = WitnessOpsRecord::decode(bytes.as_slice())
                .map_err(|e| corrupted(format!("witness journal record: {e}")))?;
            if rec.seq != next {
                break;
            }
            for op in rec.ops {
                journal.replay(op)?;
            }
            journal.seq = next;
        }
        Ok(journal)
    }

    /// Applies one stored operation to the live set.
    fn replay(&mut self, op: WitnessOpRecord) -> Result<(), StorageError> {
        if let Some(rec) = op.insert {
            let stamped = Stamped::from_record(rec)?;
            self.live.insert(stamped.cmd.id, stamped);
        }
        if !op.removed.len().is_multiple_of(2) {
            return Err(corrupted("witness removal with an odd id list"));
        }
        for pair in op.removed.chunks_exact(2) {
            self.live.remove(&ProposeId {
                client_id: pair[0],
                seq: pair[1],
            });
        }
        Ok(())
    }

    /// The journal as the core restores it: one insert per live record.
    pub fn restored_ops(&self) -> Vec<WitnessOp> {
        self.live
            .values()
            .map(|s| WitnessOp::Insert {
                cmd: s.cmd.clone(),
                term: s.term,
                cluster_version: s.cluster_version,
            })
            .collect()
    }

    /// Number of live records.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no record is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Writes one round's operations (unsynced: the caller syncs the storage before anything
    /// depending on them is sent).
    ///
    /// # Errors
    ///
    /// Storage failures.
    pub fn write<S: LogStorage>(
        &mut self,
        storage: &S,
        ops: &[WitnessOp],
    ) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        for op in ops {
            match op {
                WitnessOp::Insert {
                    cmd,
                    term,
                    cluster_version,
                } => {
                    self.live.insert(
                        cmd.id,
                        Stamped {
                            cmd: cmd.clone(),
                            term: *term,
                            cluster_version: *cluster_version,
                        },
                    );
                }
                WitnessOp::Remove(ids) => {
                    for id in ids {
                        self.live.remove(id);
                    }
                }
            }
        }
        self.seq += 1;
        if self.seq - self.base >= WITNESS_SLOTS - 1 {
            // Compact: the live set now covers every record so far, and the slots are free.
            let rec = WitnessLiveRecord {
                seq: self.seq,
                records: self.live.values().map(Stamped::record).collect(),
            };
            storage.put_meta(WITNESS_LIVE_KEY, &rec.encode_to_vec(), false)?;
            self.base = self.seq;
        } else {
            let rec = WitnessOpsRecord {
                seq: self.seq,
                ops: ops.iter().map(op_record).collect(),
            };
            storage.put_meta(&slot_key(self.seq), &rec.encode_to_vec(), false)?;
        }
        Ok(())
    }
}

// ----- everything -----------------------------------------------------------------------------

/// What [`load`] read, besides the [`Restored`] itself.
#[derive(Debug)]
pub struct Loaded {
    /// The state the core starts from (`applied` is left at 0: the driver sets it from the
    /// state machine).
    pub restored: Restored,
    /// The witness journal, to continue writing.
    pub journal: WitnessJournal,
    /// Whether a membership record was found (a member's first start stores it).
    pub has_membership: bool,
}

/// Reads back everything a member persisted. `initial` is the membership to use when none was
/// stored (a member's first start).
///
/// # Errors
///
/// Storage failures and undecodable records.
pub fn load<S: LogStorage>(storage: &S, initial: &Membership) -> Result<Loaded, StorageError> {
    let hard_state = storage.hard_state()?;
    let snapshot = storage
        .get_meta(SNAPSHOT_KEY)?
        .map(|b| decode_snapshot(&b))
        .transpose()?;
    let stored_membership = storage
        .get_meta(MEMBERSHIP_KEY)?
        .map(|b| decode_membership(&b))
        .transpose()?;
    let has_membership = stored_membership.is_some();
    let membership = stored_membership.unwrap_or_else(|| initial.clone());
    let snap_index: LogIndex = snapshot.as_ref().map_or(0, |s| s.index);
    // Entries up to the snapshot are superseded by it (a crash may have kept them if it
    // happened between storing the snapshot record and compacting the log).
    let low = storage.first_index().max(snap_index + 1);
    let high = storage.last_index() + 1;
    let entries = if low < high {
        storage
            .entries(low, high, u64::MAX)?
            .iter()
            .map(from_log_entry)
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let journal = WitnessJournal::load(storage)?;
    Ok(Loaded {
        restored: Restored {
            hard_state,
            entries,
            snapshot,
            membership,
            witness: journal.restored_ops(),
            applied: 0,
        },
        journal,
        has_membership,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryLog;

    fn cmd(client_id: u64, seq: u64) -> CommandData {
        CommandData {
            id: ProposeId { client_id, seq },
            keys: Arc::new(ConflictKeys {
                ranges: vec![KeyRange::new(format!("k{seq}"), Vec::new())],
                leases: vec![0, 7],
                exclusive: seq.is_multiple_of(2),
            }),
            payload: Bytes::from(format!("payload {client_id}/{seq}")),
            first_incomplete: seq / 2,
        }
    }

    #[test]
    fn entries_round_trip() {
        let kinds = [
            EntryKind::Empty,
            EntryKind::Command {
                cmd: cmd(3, 4),
                origin: 2,
            },
            EntryKind::ConfChange(ConfChange::AddLearner(4)),
            EntryKind::ConfChange(ConfChange::Promote(5)),
            EntryKind::ClientExpired(42),
            EntryKind::ConfChange(ConfChange::Remove(6)),
            EntryKind::ConfChange(ConfChange::Add {
                id: 7,
                peer_urls: vec!["http://a:1".into(), "http://b:2".into()],
                learner: true,
            }),
            EntryKind::ConfChange(ConfChange::Add {
                id: 8,
                peer_urls: Vec::new(),
                learner: false,
            }),
            EntryKind::ConfChange(ConfChange::Update {
                id: 7,
                peer_urls: vec!["http://c:3".into()],
            }),
            EntryKind::ConfChange(ConfChange::Set(Membership {
                voters: [1, 2].into_iter().collect(),
                learners: [7].into_iter().collect(),
                version: 4,
                peers: [(7, vec!["http://c:3".to_owned()])].into_iter().collect(),
            })),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            let entry = Entry {
                index: i as u64 + 1,
                term: 9,
                kind,
            };
            let stored = to_log_entry(&entry);
            assert_eq!(from_log_entry(&stored).unwrap(), entry);
        }
        assert!(decode_entry_kind(b"\xff\xff").is_err());
        let bad = EntryRecord {
            kind: KIND_COMMAND,
            command: None,
            origin: 1,
            change: None,
        };
        assert!(decode_entry_kind(&bad.encode_to_vec()).is_err());
    }

    #[test]
    fn snapshot_and_membership_round_trip() {
        let m = Membership {
            voters: [1, 2, 3].into_iter().collect(),
            learners: [9].into_iter().collect(),
            version: 4,
            peers: [
                (1, vec!["http://x:1".to_owned()]),
                (9, vec!["http://y:2".to_owned()]),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(decode_membership(&encode_membership(&m)).unwrap(), m);
        let snap = SnapshotInstall {
            index: 40,
            term: 3,
            membership: m,
            data: Bytes::from_static(b"image"),
        };
        assert_eq!(decode_snapshot(&encode_snapshot(&snap)).unwrap(), snap);
    }

    #[test]
    fn witness_journal_replays_across_compactions() {
        let log = MemoryLog::new();
        let mut journal = WitnessJournal::default();
        let mut expected: BTreeMap<ProposeId, CommandData> = BTreeMap::new();
        // Enough rounds to wrap the slots several times.
        for round in 1..=(3 * WITNESS_SLOTS + 5) {
            let mut ops = vec![WitnessOp::Insert {
                cmd: cmd(1, round),
                term: round,
                cluster_version: 2,
            }];
            expected.insert(cmd(1, round).id, cmd(1, round));
            if round % 3 == 0 {
                let gone = vec![cmd(1, round - 1).id, cmd(1, round - 2).id];
                for id in &gone {
                    expected.remove(id);
                }
                ops.push(WitnessOp::Remove(gone));
            }
            journal.write(&log, &ops).unwrap();
            let reread = WitnessJournal::load(&log).unwrap();
            let ids: Vec<ProposeId> = reread.live.keys().copied().collect();
            assert_eq!(
                ids,
                expected.keys().copied().collect::<Vec<_>>(),
                "round {round}"
            );
            assert_eq!(reread.seq, round);
        }
        let restored = WitnessJournal::load(&log).unwrap().restored_ops();
        assert_eq!(restored.len(), expected.len());
        for op in restored {
            let WitnessOp::Insert { cmd: c, term, .. } = op else {
                panic!("restored ops are inserts");
            };
            assert_eq!(term, c.id.seq);
            assert_eq!(expected.get(&c.id), Some(&c));
        }
    }

    #[test]
    fn load_reads_everything_back() {
        let log = MemoryLog::new();
        let initial = Membership {
            voters: [1, 2, 3].into_iter().collect(),
            ..Membership::default()
        };
        let loaded = load(&log, &initial).unwrap();
        assert!(!loaded.has_membership);
        assert_eq!(loaded.restored.membership, initial);
        assert!(loaded.restored.entries.is_empty());

        log.put_meta(MEMBERSHIP_KEY, &encode_membership(&initial), false)
            .unwrap();
        let entries: Vec<Entry> = (1..=6)
            .map(|index| Entry {
                index,
                term: 2,
                kind: EntryKind::Command {
                    cmd: cmd(5, index),
                    origin: 1,
                },
            })
            .collect();
        let stored: Vec<LogEntry> = entries.iter().map(to_log_entry).collect();
        log.append(&stored, false).unwrap();
        let snap = SnapshotInstall {
            index: 3,
            term: 2,
            membership: initial.clone(),
            data: Bytes::from_static(b"sm"),
        };
        // Crash between the snapshot record and the compaction: older entries are ignored.
        log.put_meta(SNAPSHOT_KEY, &encode_snapshot(&snap), false)
            .unwrap();
        let loaded = load(&log, &Membership::default()).unwrap();
        assert!(loaded.has_membership);
        assert_eq!(loaded.restored.membership, initial);
        assert_eq!(loaded.restored.snapshot, Some(snap));
        assert_eq!(loaded.restored.entries, entries[3..].to_vec());
    }
}
