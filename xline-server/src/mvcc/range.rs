//! Reads: etcd's Range semantics (limit, sort, filters, count) and Txn compares, over the key
//! index plus a source of values by revision.

use std::cmp::Ordering;
use std::collections::HashMap;

use prost::Message;
use xline_proto::etcdserverpb::{
    Compare, RangeRequest, RangeResponse, ResponseHeader, compare, range_request,
};
use xline_proto::mvccpb::KeyValue;

use super::index::Index;
use super::revision::Revision;
use crate::error::{EtcdError, ServerError};
use crate::storage::backend::Backend;
use crate::storage::schema::Table;

/// Values by revision: the writes of the batch being applied first, then the backend.
pub(crate) struct Values<'a> {
    pub(crate) backend: &'a dyn Backend,
    pub(crate) pending: Option<&'a HashMap<Revision, KeyValue>>,
}

impl Values<'_> {
    /// The value written at `rev` (never a tombstone: the index only points at live values).
    pub(crate) fn get(&self, rev: Revision) -> Result<KeyValue, ServerError> {
        if let Some(kv) = self.pending.and_then(|p| p.get(&rev)) {
            return Ok(kv.clone());
        }
        let raw = self
            .backend
            .get(Table::Kv, &rev.to_key(false))?
            .ok_or_else(|| {
                ServerError::Corrupt(format!("revision {rev:?} is indexed but not stored"))
            })?;
        KeyValue::decode(raw.as_slice())
            .map_err(|e| ServerError::Corrupt(format!("value at revision {rev:?}: {e}")))
    }
}

/// The read view of the store at one moment: index, revisions and values.
pub(crate) struct View<'a> {
    pub(crate) index: &'a Index,
    pub(crate) values: Values<'a>,
    /// The newest revision visible in this view (the txn's own writes included).
    pub(crate) current_rev: i64,
    /// Reads below this revision are rejected as compacted (-1: never compacted).
    pub(crate) compact_rev: i64,
}

impl View<'_> {
    /// The revision a request asking for `revision` reads at, or etcd's error for it.
    pub(crate) fn resolve_rev(&self, revision: i64) -> Result<i64, EtcdError> {
        if revision > self.current_rev {
            return Err(EtcdError::FutureRev);
        }
        let rev = if revision <= 0 {
            self.current_rev
        } else {
            revision
        };
        if rev < self.compact_rev {
            return Err(EtcdError::Compacted);
        }
        Ok(rev)
    }

    /// Every live key-value in the etcd range `[key, end)` at `rev`, ascending by key.
    pub(crate) fn kvs(
        &self,
        key: &[u8],
        end: &[u8],
        rev: i64,
        limit: usize,
    ) -> Result<Vec<KeyValue>, ServerError> {
        self.index
            .range(key, end, rev, limit)
            .into_iter()
            .map(|(_, r)| self.values.get(r))
            .collect()
    }

    /// Serves a RangeRequest exactly as etcd does. The header carries only the revision.
    pub(crate) fn range(&self, req: &RangeRequest) -> Result<RangeResponse, ServerError> {
        let rev = self.resolve_rev(req.revision)?;
        let header = Some(ResponseHeader {
            revision: self.current_rev,
            ..Default::default()
        });
        let count = self.index.count(&req.key, &req.range_end, rev);
        if req.count_only {
            return Ok(RangeResponse {
                header,
                kvs: Vec::new(),
                more: false,
                count: count as i64,
            });
        }
        let sort_order = req.sort_order();
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        // Sorting and filtering need every key; otherwise fetch one extra to learn `more`.
        let fetch = if sort_order != range_request::SortOrder::None || filtered || req.limit <= 0 {
            0
        } else {
            usize::try_from(req.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        };
        let mut kvs = self.kvs(&req.key, &req.range_end, rev, fetch)?;
        if filtered {
            kvs.retain(|kv| {
                (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
            });
        }
        sort(&mut kvs, sort_order, req.sort_target());
        let mut more = false;
        if req.limit > 0 {
            let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
            if kvs.len() > limit {
                kvs.truncate(limit);
                more = true;
            }
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            header,
            kvs,
            more,
            count: count as i64,
        })
    }

    /// Evaluates one Txn compare at revision `rev`, as etcd does: over a range every key must
    /// satisfy it; a VALUE compare on no key fails; other targets on no key compare against zero.
    pub(crate) fn compare(&self, cmp: &Compare, rev: i64) -> Result<bool, ServerError> {
        let kvs = self.kvs(&cmp.key, &cmp.range_end, rev, 0)?;
        if kvs.is_empty() {
            if cmp.target() == compare::CompareTarget::Value {
                return Ok(false);
            }
            return Ok(compare_kv(cmp, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(cmp, kv)))
    }
}

fn compare_kv(cmp: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareTarget, TargetUnion};
    let ordering = match (cmp.target(), &cmp.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => {
            kv.value.as_slice().cmp(v.as_slice())
        }
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[]),
        (CompareTarget::Version, u) => kv.version.cmp(&match u {
            Some(TargetUnion::Version(v)) => *v,
            _ => 0,
        }),
        (CompareTarget::Create, u) => kv.create_revision.cmp(&match u {
            Some(TargetUnion::CreateRevision(v)) => *v,
            _ => 0,
        }),
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&match u {
            Some(TargetUnion::ModRevision(v)) => *v,
            _ => 0,
        }),
        (CompareTarget::Lease, u) => kv.lease.cmp(&match u {
            Some(TargetUnion::Lease(v)) => *v,
            _ => 0,
        }),
    };
    match cmp.result() {
        compare::CompareResult::Equal => ordering == Ordering::Equal,
        compare::CompareResult::NotEqual => ordering != Ordering::Equal,
        compare::CompareResult::Greater => ordering == Ordering::Greater,
        compare::CompareResult::Less => ordering == Ordering::Less,
    }
}

/// etcd's sort: a target other than KEY with order NONE sorts ascending; KEY ascending is the
/// index order already.
fn sort(kvs: &mut [KeyValue], order: range_request::SortOrder, target: range_request::SortTarget) {
    use range_request::{SortOrder, SortTarget};
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    if order == SortOrder::Ascend && target == SortTarget::Key {
        return;
    }
    let key_of = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    if order == SortOrder::Descend {
        kvs.sort_by(|a, b| key_of(b, a));
    } else {
        kvs.sort_by(key_of);
    }
}
