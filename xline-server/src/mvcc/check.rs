//! Request validation done before anything is proposed, with etcd's errors: empty keys, flag
//! combinations, the txn size limit and etcd's rules against writing one key twice in a txn.

use std::collections::HashSet;

use xline_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};

use crate::error::EtcdError;

/// `KV.Range`: the key is required.
pub fn check_range(req: &RangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// `KV.Put`: the key is required; `ignore_value`/`ignore_lease` exclude a value/lease.
pub fn check_put(req: &PutRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// `KV.DeleteRange`: the key is required.
pub fn check_delete(req: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// `KV.Txn`: size limit (`--max-txn-ops`, shared with nested txns as etcd counts it), every op
/// valid, and no key written twice on any path through the txn.
pub fn check_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(req, max_txn_ops)?;
    check_writes(&req.success)?;
    check_writes(&req.failure)?;
    Ok(())
}

fn check_txn_ops(req: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => check_range(r)?,
            Some(request_op::Request::RequestPut(p)) => check_put(p)?,
            Some(request_op::Request::RequestDeleteRange(d)) => check_delete(d)?,
            Some(request_op::Request::RequestTxn(t)) => check_txn_ops(t, max_txn_ops - ops)?,
            // etcd answers an op with no request this way.
            None => return Err(EtcdError::KeyNotFound),
        }
    }
    Ok(())
}

/// A deleted range in the etcd convention (empty end: one key; `\0` end: unbounded).
#[derive(Debug, Clone)]
struct Deleted {
    start: Vec<u8>,
    end: Vec<u8>,
}

impl Deleted {
    fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            return key == self.start.as_slice();
        }
        key >= self.start.as_slice() && (self.end.as_slice() == [0] || key < self.end.as_slice())
    }
}

/// The keys put and ranges deleted by a list of ops (nested txns included); fails when a key
/// is put twice or put inside a deleted range on any one path. The two branches of a nested txn
/// exclude each other, so they may put the same key.
fn check_writes(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), EtcdError> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Deleted {
                start: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    let deleted = |dels: &[Deleted], key: &[u8]| dels.iter().any(|d| d.contains(key));
    for op in ops {
        let Some(request_op::Request::RequestTxn(txn)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_writes(&txn.success)?;
        let (puts_else, dels_else) = check_writes(&txn.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&dels, key) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        for key in &puts_else {
            if (puts.contains(key) && !puts_then.contains(key)) || deleted(&dels, key) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        puts.extend(puts_then);
        puts.extend(puts_else);
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if puts.contains(&put.key) || deleted(&dels, &put.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, dels))
}

/// True when no branch of the txn, at any depth, writes.
pub fn txn_is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => true,
            Some(request_op::Request::RequestTxn(t)) => txn_is_read_only(t),
            Some(_) => false,
        })
}

/// True when some branch of the txn, at any depth, puts a key (what etcd's quota counts, and
/// what a NOSPACE alarm refuses).
pub fn txn_has_puts(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_has_puts(t),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }
    fn del(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: key.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }
    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(txn(success, failure))),
        }
    }

    #[test]
    fn duplicate_puts_and_put_in_deleted_range() {
        assert_eq!(
            check_txn(&txn(vec![put("a"), put("a")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("b"), del("a", "c")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("z"), del("a", "\0")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("c"), del("a", "c")], vec![]), 128),
            Ok(())
        );
        // The branches of one txn never both run.
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
        // Nor do the branches of a nested txn; but a nested put clashes with an outer one.
        assert_eq!(
            check_txn(
                &txn(vec![nested(vec![put("a")], vec![put("a")])], vec![]),
                128
            ),
            Ok(())
        );
        assert_eq!(
            check_txn(
                &txn(vec![put("a"), nested(vec![put("a")], vec![])], vec![]),
                128
            ),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(
                &txn(vec![del("a", "b"), nested(vec![], vec![put("a")])], vec![]),
                128
            ),
            Err(EtcdError::DuplicateKey)
        );
        // Overlapping deletes are fine.
        assert_eq!(
            check_txn(&txn(vec![del("a", "c"), del("b", "d")], vec![]), 128),
            Ok(())
        );
    }

    #[test]
    fn limits_and_keys() {
        let ops: Vec<RequestOp> = (0..4).map(|i| put(&format!("k{i}"))).collect();
        assert_eq!(
            check_txn(&txn(ops.clone(), vec![]), 3),
            Err(EtcdError::TooManyOps)
        );
        assert_eq!(check_txn(&txn(ops, vec![]), 4), Ok(()));
        assert_eq!(
            check_txn(&txn(vec![put("")], vec![]), 4),
            Err(EtcdError::EmptyKey)
        );
        assert_eq!(
            check_txn(&txn(vec![RequestOp { request: None }], vec![]), 4),
            Err(EtcdError::KeyNotFound)
        );
        let bad = PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(check_put(&bad), Err(EtcdError::ValueProvided));
        let bad = PutRequest {
            key: b"k".to_vec(),
            lease: 1,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(check_put(&bad), Err(EtcdError::LeaseProvided));
        assert!(txn_is_read_only(&txn(vec![], vec![nested(vec![], vec![])])));
        assert!(!txn_is_read_only(&txn(
            vec![],
            vec![nested(vec![], vec![put("a")])]
        )));
    }
}
