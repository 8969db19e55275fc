//! The store's side of the Maintenance service: alarms (raised and cleared through consensus,
//! checked on every applied write, as etcd's capped and corrupt appliers), the downgrade state,
//! and the two hashes.
//!
//! # HashKV
//! etcd's definition (mvcc `hashByRev`): a CRC-32C (Castagnoli) over the bucket name `key`, then,
//! for every stored revision with main revision at most `rev` in revision order, the revision's
//! key bytes and the stored `mvccpb.KeyValue`. Revisions at or below the compaction point count
//! only when they are what a compaction at `rev` keeps (unless nothing would be kept: then every
//! stored one counts, as in etcd). The revision key is hashed in etcd's encoding
//! (`main` big-endian, `_`, `sub` big-endian, `t` for a tombstone), not ours, and the values are
//! the same protobuf bytes etcd stores, so a store with the same history hashes to etcd's number.
//! The hash is taken once physical compaction has caught up with the compaction point, so every
//! member at the same revision gives the same number whatever its compactor is doing.
//! One known difference from etcd 3.4: when nothing is visible at `rev` (every revision stored
//! then counts) and a key was deleted exactly at the compaction revision, our compaction keeps
//! that tombstone (as later etcd releases do, for watchers) where 3.4 drops it.
//!
//! # Hash
//! etcd hashes its whole bbolt file's buckets; ours cannot be byte-equal. It is a CRC-32C over
//! every table in name order: the table's name, then each key and value in key order, leaving
//! out the applied index (as etcd leaves out its consistent index), taken once physical
//! compaction has caught up. Members at the same applied index agree on it.

use std::time::{Duration, Instant};

use prost::Message as _;
use xline_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, DowngradeInfo, alarm_request,
};

use super::{CHUNK, KvStore, State, next_key};
use crate::command::{Command, Request};
use crate::error::{EtcdError, ServerError};
use crate::mvcc::check::txn_has_puts;
use crate::mvcc::revision::Revision;
use crate::storage::backend::{Backend, WriteBatch};
use crate::storage::schema::{META_APPLIED_INDEX, META_DOWNGRADE, Table};

/// How long a hash waits for physical compaction to catch up.
const COMPACTOR_WAIT: Duration = Duration::from_secs(60);

/// The result of [`KvStore::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// The hash.
    pub hash: u32,
    /// The store's revision when it was taken.
    pub current_rev: i64,
    /// The compaction point in effect (-1: never compacted).
    pub compact_rev: i64,
    /// The revision the hash covers.
    pub hash_rev: i64,
}

/// The `Alarm` table key of an alarm: the member id then the type, both big-endian.
fn alarm_key(alarm: &AlarmMember) -> Vec<u8> {
    let mut key = alarm.member_id.to_be_bytes().to_vec();
    key.extend_from_slice(&alarm.alarm.to_be_bytes());
    key
}

/// The raised alarms, as stored.
pub(super) fn load_alarms(backend: &dyn Backend) -> Result<Vec<AlarmMember>, ServerError> {
    let mut alarms = backend
        .range(Table::Alarm, &[], &[], 0)?
        .into_iter()
        .map(|(_, v)| {
            AlarmMember::decode(v.as_slice())
                .map_err(|e| ServerError::Corrupt(format!("alarm record: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    alarms.sort_by_key(|a| (a.member_id, a.alarm));
    Ok(alarms)
}

/// What a raised alarm forbids, as etcd's appliers: with CORRUPT every write fails with
/// `etcdserver: corrupt cluster`; with NOSPACE a put, a txn that puts, and a lease grant fail
/// with `etcdserver: mvcc: database space exceeded` (deletes, compactions and revocations go on,
/// so space can be freed).
pub(super) fn check_alarms(alarms: &[AlarmMember], cmd: &Command) -> Result<(), ServerError> {
    let raised = |t: AlarmType| alarms.iter().any(|a| a.alarm == t as i32);
    let writes = matches!(
        cmd.request,
        Some(
            Request::Put(_)
                | Request::DeleteRange(_)
                | Request::Txn(_)
                | Request::Compaction(_)
                | Request::LeaseGrant(_)
                | Request::LeaseRevoke(_)
        )
    );
    if writes && raised(AlarmType::Corrupt) {
        return Err(EtcdError::Corrupt.into());
    }
    let adds_data = match &cmd.request {
        Some(Request::Put(_) | Request::LeaseGrant(_)) => true,
        Some(Request::Txn(txn)) => txn_has_puts(txn),
        _ => false,
    };
    if adds_data && raised(AlarmType::Nospace) {
        return Err(EtcdError::NoSpace.into());
    }
    Ok(())
}

/// Applies an alarm activation or deactivation; answers with the alarm concerned, as etcd:
/// activating gives the (new or already raised) alarm, deactivating gives the alarm removed or
/// nothing, and activating `NONE` does nothing.
pub(super) fn apply_alarm(
    alarms: &mut Vec<AlarmMember>,
    wb: &mut WriteBatch,
    req: &AlarmRequest,
) -> Result<Vec<AlarmMember>, ServerError> {
    let alarm = AlarmMember {
        member_id: req.member_id,
        alarm: req.alarm,
    };
    let pos = alarms
        .iter()
        .position(|a| a.member_id == alarm.member_id && a.alarm == alarm.alarm);
    Ok(match (req.action(), pos) {
        (alarm_request::AlarmAction::Get, _) => filter_alarms(alarms, req.alarm()),
        (alarm_request::AlarmAction::Activate, _) if req.alarm() == AlarmType::None => Vec::new(),
        (alarm_request::AlarmAction::Activate, Some(_)) => vec![alarm],
        (alarm_request::AlarmAction::Activate, None) => {
            wb.put(Table::Alarm, alarm_key(&alarm), alarm.encode_to_vec());
            alarms.push(alarm);
            alarms.sort_by_key(|a| (a.member_id, a.alarm));
            vec![alarm]
        }
        (alarm_request::AlarmAction::Deactivate, Some(pos)) => {
            wb.delete(Table::Alarm, alarm_key(&alarm));
            vec![alarms.remove(pos)]
        }
        (alarm_request::AlarmAction::Deactivate, None) => Vec::new(),
    })
}

/// The alarms of type `filter` (`NONE`: all).
fn filter_alarms(alarms: &[AlarmMember], filter: AlarmType) -> Vec<AlarmMember> {
    alarms
        .iter()
        .filter(|a| filter == AlarmType::None || a.alarm == filter as i32)
        .copied()
        .collect()
}

/// Stores the downgrade state (cancelling clears the target version, as etcd).
pub(super) fn apply_downgrade(wb: &mut WriteBatch, info: &DowngradeInfo) {
    let info = DowngradeInfo {
        enabled: info.enabled,
        target_version: if info.enabled {
            info.target_version.clone()
        } else {
            String::new()
        },
    };
    wb.put(Table::Meta, META_DOWNGRADE, info.encode_to_vec());
}

/// etcd's backend key of a revision: `main` big-endian, `_`, `sub` big-endian, then `t` for a
/// tombstone.
fn etcd_revision_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&rev.main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&rev.sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

impl KvStore {
    /// The raised alarms of type `filter` (`NONE`: all of them), by member then type.
    pub fn alarms(&self, filter: AlarmType) -> Vec<AlarmMember> {
        filter_alarms(&self.state.read().alarms, filter)
    }

    /// The downgrade state (not enabled until a downgrade is enabled).
    pub fn downgrade_info(&self) -> Result<DowngradeInfo, ServerError> {
        match self.backend.get(Table::Meta, META_DOWNGRADE)? {
            None => Ok(DowngradeInfo::default()),
            Some(v) => DowngradeInfo::decode(v.as_slice())
                .map_err(|e| ServerError::Corrupt(format!("downgrade state: {e}"))),
        }
    }

    /// etcd's HashKV at `rev` (0: the current revision); see the module docs. Fails with
    /// `Compacted` when `rev` is at or below the compaction point and with `FutureRev` past
    /// the current revision. Applies wait while the keyspace is read.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, ServerError> {
        self.with_compaction_done(|st| {
            let (current_rev, compact_rev) = (st.current_rev, st.compact_rev);
            if rev > 0 && rev <= compact_rev {
                return Err(EtcdError::Compacted.into());
            }
            if rev > current_rev {
                return Err(EtcdError::FutureRev.into());
            }
            let hash_rev = if rev == 0 { current_rev } else { rev };
            let keep = st.index.keep(hash_rev);
            let mut hash = crc32c::crc32c(b"key");
            let end = Revision::main_key(hash_rev.saturating_add(1));
            let mut start = Vec::new();
            loop {
                let chunk = self.backend.range(Table::Kv, &start, &end, CHUNK)?;
                let Some((last, _)) = chunk.last() else { break };
                start = next_key(last);
                let done = chunk.len() < CHUNK;
                for (key, value) in chunk {
                    let (r, tombstone) = Revision::from_key(&key)
                        .ok_or_else(|| ServerError::Corrupt(format!("kv key {key:?}")))?;
                    if r.main <= compact_rev && !keep.is_empty() && !keep.contains(&r) {
                        continue;
                    }
                    hash = crc32c::crc32c_append(hash, &etcd_revision_key(r, tombstone));
                    hash = crc32c::crc32c_append(hash, &value);
                }
                if done {
                    break;
                }
            }
            Ok(KvHash {
                hash,
                current_rev,
                compact_rev,
                hash_rev,
            })
        })
    }

    /// The hash of the whole backend and the revision it was taken at; see the module docs.
    pub fn hash(&self) -> Result<(u32, i64), ServerError> {
        self.with_compaction_done(|st| {
            let mut tables = Table::ALL;
            tables.sort_by_key(|t| t.name());
            let mut hash = 0;
            for table in tables {
                hash = crc32c::crc32c_append(hash, table.name().as_bytes());
                let mut start = Vec::new();
                loop {
                    let chunk = self.backend.range(table, &start, &[], CHUNK)?;
                    let Some((last, _)) = chunk.last() else { break };
                    start = next_key(last);
                    let done = chunk.len() < CHUNK;
                    for (key, value) in chunk {
                        if table == Table::Meta && key == META_APPLIED_INDEX {
                            continue;
                        }
                        hash = crc32c::crc32c_append(hash, &key);
                        hash = crc32c::crc32c_append(hash, &value);
                    }
                    if done {
                        break;
                    }
                }
            }
            Ok((hash, st.current_rev))
        })
    }

    /// Runs `f` with applies held off, once physical compaction has finished up to the
    /// compaction point (or the compactor has stopped, which it logged).
    fn with_compaction_done<T>(
        &self,
        f: impl FnOnce(&State) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let give_up = Instant::now() + COMPACTOR_WAIT;
        loop {
            let st = self.state.read();
            let finished = *self.finished_compaction.borrow();
            if finished >= st.compact_rev || self.finished_compaction.has_changed().is_err() {
                return f(&st);
            }
            drop(st);
            if Instant::now() > give_up {
                return Err(ServerError::Corrupt(
                    "physical compaction did not finish".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
#[path = "store_maintenance_test.rs"]
mod tests;
