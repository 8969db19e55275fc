//! etcd 3.4's backend layout (the buckets of its bbolt file, hence of its snapshots) and how
//! xline's tables map to it and back.
//!
//! | etcd bucket | keys -> values | xline table |
//! |---|---|---|
//! | `key` | revision (main u64 BE, `_`, sub u64 BE, `t` for a tombstone) -> `mvccpb.KeyValue` (a tombstone's holds only the key) | `Kv` (the same without the `_`) |
//! | `meta` | `consistent_index` -> u64 BE; `scheduledCompactRev`, `finishedCompactRev` -> a revision key of the compaction's main revision | `Meta` (applied index, compaction revisions as i64 BE) |
//! | `lease` | id i64 BE -> `leasepb.Lease{ID, TTL, RemainingTTL}` | `Lease` (id -> TTL, i64 BE) |
//! | `auth` | `authEnabled` -> `[1]`/`[0]`; `authRevision` -> u64 BE | `Auth` (`enabled`, `revision`) |
//! | `authUsers`, `authRoles` | name -> `authpb.User`, `authpb.Role` | `Auth` (`user/NAME`, `role/NAME`) |
//! | `members` | member id in hex -> JSON `{"id","peerURLs","isLearner","name","clientURLs"}` | `Members` (id u64 BE -> `etcdserverpb.Member`) |
//! | `members_removed` | member id in hex -> `removed` | (none: xline keeps no removed members) |
//! | `cluster` | `clusterVersion` -> `3.5.0` | (the version xline reports) |
//! | `alarm` | `etcdserverpb.AlarmMember` -> empty | `Alarm` |
//!
//! xline's current revision is not stored by etcd: etcd derives it, as xline does on restore,
//! from the last revision in `key` and the compaction revision. xline's downgrade state is
//! not carried (etcd 3.4 has no place for it; it belongs to the old cluster anyway).
//! Reading etcd's buckets ([`tables_for_new_cluster`]) ignores buckets and meta keys it has no
//! use for (etcd 3.5 stores more there: term, confState, storage version, downgrade state).

use prost::Message as _;
use xline_proto::etcdserverpb::{AlarmMember, Member};

use super::Bucket;
use crate::error::ServerError;
use crate::mvcc::revision::Revision;
use crate::storage::schema::{
    META_APPLIED_INDEX, META_CURRENT_REV, META_FINISHED_COMPACT_REV, META_SCHEDULED_COMPACT_REV,
    Table,
};

/// etcd's bucket names.
pub const KEY_BUCKET: &[u8] = b"key";
const META_BUCKET: &[u8] = b"meta";
const LEASE_BUCKET: &[u8] = b"lease";
const AUTH_BUCKET: &[u8] = b"auth";
const AUTH_USERS_BUCKET: &[u8] = b"authUsers";
const AUTH_ROLES_BUCKET: &[u8] = b"authRoles";
const MEMBERS_BUCKET: &[u8] = b"members";
const MEMBERS_REMOVED_BUCKET: &[u8] = b"members_removed";
const CLUSTER_BUCKET: &[u8] = b"cluster";
const ALARM_BUCKET: &[u8] = b"alarm";

/// etcd's `meta` keys.
const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
/// etcd's `auth` keys.
const AUTH_ENABLED: &[u8] = b"authEnabled";
const AUTH_REVISION: &[u8] = b"authRevision";
/// etcd's `cluster` key.
const CLUSTER_VERSION: &[u8] = b"clusterVersion";

/// xline's `Table::Auth` keys (see `crate::auth`).
const XLINE_AUTH_ENABLED: &[u8] = b"enabled";
const XLINE_AUTH_REVISION: &[u8] = b"revision";
const XLINE_USER_PREFIX: &[u8] = b"user/";
const XLINE_ROLE_PREFIX: &[u8] = b"role/";

/// The length of etcd's revision key (`main`, `_`, `sub`).
const ETCD_REVISION_LEN: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

/// The pairs of each of xline's tables.
pub type Tables = Vec<(Table, Vec<(Vec<u8>, Vec<u8>)>)>;

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
struct LeaseRecord {
    /// The lease id.
    #[prost(int64, tag = "1")]
    id: i64,
    /// The granted TTL in seconds.
    #[prost(int64, tag = "2")]
    ttl: i64,
    /// The TTL left when a checkpoint was taken (0: none).
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// etcd's revision key for xline's `Kv` key.
fn etcd_revision_key(key: &[u8]) -> Result<Vec<u8>, ServerError> {
    let (rev, tombstone) =
        Revision::from_key(key).ok_or_else(|| ServerError::Corrupt(format!("kv key {key:?}")))?;
    Ok(etcd_revision(rev.main, rev.sub, tombstone))
}

fn etcd_revision(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(ETCD_REVISION_LEN + 1);
    out.extend_from_slice(&main.to_be_bytes());
    out.push(b'_');
    out.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        out.push(TOMBSTONE_MARK);
    }
    out
}

/// Parses etcd's revision key: the revision and whether it marks a tombstone.
pub fn parse_etcd_revision(key: &[u8]) -> Option<(Revision, bool)> {
    let tombstone = match key.len() {
        ETCD_REVISION_LEN => false,
        n if n == ETCD_REVISION_LEN + 1 && key[ETCD_REVISION_LEN] == TOMBSTONE_MARK => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(key[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
    Some((Revision::new(main, sub), tombstone))
}

fn be_i64(value: &[u8], what: &str) -> Result<i64, ServerError> {
    <[u8; 8]>::try_from(value)
        .map(i64::from_be_bytes)
        .map_err(|_| ServerError::Corrupt(format!("{what}: {} bytes", value.len())))
}

/// The version etcd stores as the cluster's: the major and minor xline reports, patch 0.
fn cluster_version() -> String {
    let mut parts = crate::server::ETCD_VERSION.split('.');
    let major = parts.next().unwrap_or("3");
    let minor = parts.next().unwrap_or("5");
    format!("{major}.{minor}.0")
}

/// A string as Go's `encoding/json` writes it (it also escapes `<`, `>`, `&`, U+2028, U+2029).
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_strings(list: &[String], out: &mut String) {
    out.push('[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(s, out);
    }
    out.push(']');
}

/// etcd's JSON of a member in the `members` bucket (`membership.Member`).
fn member_json(m: &Member) -> String {
    let mut out = format!("{{\"id\":{},\"peerURLs\":", m.id);
    if m.peer_ur_ls.is_empty() {
        out.push_str("null");
    } else {
        json_strings(&m.peer_ur_ls, &mut out);
    }
    if m.is_learner {
        out.push_str(",\"isLearner\":true");
    }
    if !m.name.is_empty() {
        out.push_str(",\"name\":");
        json_string(&m.name, &mut out);
    }
    if !m.client_ur_ls.is_empty() {
        out.push_str(",\"clientURLs\":");
        json_strings(&m.client_ur_ls, &mut out);
    }
    out.push('}');
    out
}

/// etcd's buckets for xline's tables (as `KvStore::snapshot_tables` reads them), every bucket
/// etcd 3.4 creates present even when empty.
pub fn etcd_buckets(tables: &Tables) -> Result<Vec<Bucket>, ServerError> {
    let mut key = Bucket::new(KEY_BUCKET);
    let mut meta = Bucket::new(META_BUCKET);
    let mut lease = Bucket::new(LEASE_BUCKET);
    let mut auth = Bucket::new(AUTH_BUCKET);
    let mut users = Bucket::new(AUTH_USERS_BUCKET);
    let mut roles = Bucket::new(AUTH_ROLES_BUCKET);
    let mut members = Bucket::new(MEMBERS_BUCKET);
    let mut alarm = Bucket::new(ALARM_BUCKET);
    let mut applied_index = 0u64;
    let mut auth_revision = 1u64;
    for (table, pairs) in tables {
        for (k, v) in pairs {
            match table {
                Table::Kv => key.pairs.push((etcd_revision_key(k)?, v.clone())),
                Table::Meta => {
                    if k == META_APPLIED_INDEX {
                        applied_index = u64::try_from(be_i64(v, "applied index")?).unwrap_or(0);
                    } else if k == META_SCHEDULED_COMPACT_REV || k == META_FINISHED_COMPACT_REV {
                        let name = if k == META_SCHEDULED_COMPACT_REV {
                            SCHEDULED_COMPACT
                        } else {
                            FINISHED_COMPACT
                        };
                        let rev = be_i64(v, "compaction revision")?;
                        meta.pairs
                            .push((name.to_vec(), etcd_revision(rev, 0, false)));
                    }
                }
                Table::Lease => {
                    let record = LeaseRecord {
                        id: be_i64(k, "lease id")?,
                        ttl: be_i64(v, "lease ttl")?,
                        remaining_ttl: 0,
                    };
                    lease.pairs.push((k.clone(), record.encode_to_vec()));
                }
                Table::Auth => {
                    if k == XLINE_AUTH_ENABLED {
                        auth.pairs.push((AUTH_ENABLED.to_vec(), v.clone()));
                    } else if k == XLINE_AUTH_REVISION {
                        auth_revision = u64::try_from(be_i64(v, "auth revision")?).unwrap_or(1);
                    } else if let Some(name) = k.strip_prefix(XLINE_USER_PREFIX) {
                        users.pairs.push((name.to_vec(), v.clone()));
                    } else if let Some(name) = k.strip_prefix(XLINE_ROLE_PREFIX) {
                        roles.pairs.push((name.to_vec(), v.clone()));
                    }
                }
                Table::Members => {
                    let m = Member::decode(v.as_slice())
                        .map_err(|e| ServerError::Corrupt(format!("member record: {e}")))?;
                    members.pairs.push((
                        format!("{:x}", m.id).into_bytes(),
                        member_json(&m).into_bytes(),
                    ));
                }
                Table::Alarm => alarm.pairs.push((v.clone(), Vec::new())),
            }
        }
    }
    meta.pairs.push((
        CONSISTENT_INDEX.to_vec(),
        applied_index.to_be_bytes().to_vec(),
    ));
    auth.pairs
        .push((AUTH_REVISION.to_vec(), auth_revision.to_be_bytes().to_vec()));
    let mut cluster = Bucket::new(CLUSTER_BUCKET);
    cluster
        .pairs
        .push((CLUSTER_VERSION.to_vec(), cluster_version().into_bytes()));
    Ok(vec![
        key,
        meta,
        lease,
        auth,
        users,
        roles,
        members,
        Bucket::new(MEMBERS_REMOVED_BUCKET),
        cluster,
        alarm,
    ])
}

/// xline's tables for a member of a new cluster from etcd's buckets (of an etcd snapshot or of
/// ours): keys at their revisions, the compaction point, leases, users, roles, the auth switch
/// and revision, and alarms. The old cluster's members and applied index are left out (the new
/// cluster's members publish themselves; its log starts empty).
pub fn tables_for_new_cluster(buckets: &[Bucket]) -> Result<Tables, ServerError> {
    let mut kv = Vec::new();
    let mut meta = Vec::new();
    let mut lease = Vec::new();
    let mut auth = Vec::new();
    let mut alarm = Vec::new();
    let mut current_rev: Option<i64> = None;
    let mut seen_key = false;
    for bucket in buckets {
        let pairs = &bucket.pairs;
        match bucket.name.as_slice() {
            KEY_BUCKET => {
                seen_key = true;
                for (k, v) in pairs {
                    let (rev, tombstone) = parse_etcd_revision(k)
                        .ok_or_else(|| ServerError::Corrupt(format!("etcd revision key {k:?}")))?;
                    current_rev = current_rev.max(Some(rev.main));
                    kv.push((rev.to_key(tombstone), v.clone()));
                }
            }
            META_BUCKET => {
                for (k, v) in pairs {
                    let ours = match k.as_slice() {
                        SCHEDULED_COMPACT => META_SCHEDULED_COMPACT_REV,
                        FINISHED_COMPACT => META_FINISHED_COMPACT_REV,
                        _ => continue,
                    };
                    let (rev, _) = parse_etcd_revision(v).ok_or_else(|| {
                        ServerError::Corrupt(format!("etcd meta {:?}", String::from_utf8_lossy(k)))
                    })?;
                    current_rev = current_rev.max(Some(rev.main));
                    meta.push((ours.to_vec(), rev.main.to_be_bytes().to_vec()));
                }
            }
            LEASE_BUCKET => {
                for (k, v) in pairs {
                    let record = LeaseRecord::decode(v.as_slice())
                        .map_err(|e| ServerError::Corrupt(format!("etcd lease {k:?}: {e}")))?;
                    lease.push((
                        record.id.to_be_bytes().to_vec(),
                        record.ttl.to_be_bytes().to_vec(),
                    ));
                }
            }
            AUTH_BUCKET => {
                for (k, v) in pairs {
                    match k.as_slice() {
                        AUTH_ENABLED => auth.push((XLINE_AUTH_ENABLED.to_vec(), v.clone())),
                        AUTH_REVISION => {
                            be_i64(v, "etcd auth revision")?;
                            auth.push((XLINE_AUTH_REVISION.to_vec(), v.clone()));
                        }
                        _ => {}
                    }
                }
            }
            AUTH_USERS_BUCKET | AUTH_ROLES_BUCKET => {
                let prefix = if bucket.name == AUTH_USERS_BUCKET {
                    XLINE_USER_PREFIX
                } else {
                    XLINE_ROLE_PREFIX
                };
                for (k, v) in pairs {
                    auth.push(([prefix, k.as_slice()].concat(), v.clone()));
                }
            }
            ALARM_BUCKET => {
                for (k, _) in pairs {
                    let a = AlarmMember::decode(k.as_slice())
                        .map_err(|e| ServerError::Corrupt(format!("etcd alarm: {e}")))?;
                    let mut key = a.member_id.to_be_bytes().to_vec();
                    key.extend_from_slice(&a.alarm.to_be_bytes());
                    alarm.push((key, a.encode_to_vec()));
                }
            }
            other => {
                tracing::debug!(bucket = %String::from_utf8_lossy(other), "bucket not restored");
            }
        }
    }
    if !seen_key {
        return Err(ServerError::Corrupt(
            "not an etcd snapshot: no \"key\" bucket".into(),
        ));
    }
    if let Some(rev) = current_rev {
        meta.push((META_CURRENT_REV.to_vec(), rev.to_be_bytes().to_vec()));
    }
    Ok(vec![
        (Table::Kv, kv),
        (Table::Meta, meta),
        (Table::Lease, lease),
        (Table::Auth, auth),
        (Table::Alarm, alarm),
    ])
}
