//! The replicated request: what an etcd write turns into before it is proposed to consensus.
//!
//! A [`Command`] is encoded with protobuf (an envelope message with a `oneof` of the etcd request
//! messages themselves), so what the log holds is the client's request exactly as validated.

use curp::{ConflictKeys, DecodeError, KeyRange};
use prost::Message;
use xline_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RequestOp, TxnRequest, request_op,
};

/// A mutating etcd request, as appended to the consensus log.
#[derive(Clone, PartialEq, Message)]
pub struct Command {
    /// The request.
    #[prost(oneof = "Request", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub request: Option<Request>,
}

/// The etcd requests that go through consensus.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Request {
    /// `KV.Put`.
    #[prost(message, tag = "1")]
    Put(PutRequest),
    /// `KV.DeleteRange`.
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    /// `KV.Txn` (with at least one write somewhere; read-only txns are served as reads).
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
    /// `KV.Compact`.
    #[prost(message, tag = "4")]
    Compaction(CompactionRequest),
    /// `Lease.LeaseGrant`, with the id already chosen (the proposer picks one when the client
    /// did not, so that every member applies the same).
    #[prost(message, tag = "5")]
    LeaseGrant(LeaseGrantRequest),
    /// `Lease.LeaseRevoke`, from a client or from the primary's expiry task. The keys it
    /// deletes are the lease's attached keys when it is applied.
    #[prost(message, tag = "6")]
    LeaseRevoke(LeaseRevokeRequest),
    /// A member publishes its name and client URLs to the cluster (etcd's "published local
    /// member to cluster through raft"), so every member can list them.
    #[prost(message, tag = "7")]
    PublishMember(xline_proto::etcdserverpb::Member),
}

impl Command {
    /// Wraps a request.
    pub fn new(request: Request) -> Self {
        Self {
            request: Some(request),
        }
    }
}

impl curp::Command for Command {
    fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let cmd = <Self as Message>::decode(bytes).map_err(DecodeError::new)?;
        if cmd.request.is_none() {
            return Err(DecodeError::new("command without a request"));
        }
        Ok(cmd)
    }

    fn conflict_keys(&self) -> ConflictKeys {
        let mut keys = ConflictKeys::default();
        match &self.request {
            Some(Request::Put(put)) => {
                keys.ranges.push(KeyRange::new(put.key.clone(), Vec::new()));
                if put.lease != 0 {
                    keys.leases.push(put.lease);
                }
            }
            Some(Request::DeleteRange(del)) => {
                keys.ranges
                    .push(KeyRange::new(del.key.clone(), del.range_end.clone()));
            }
            Some(Request::Txn(txn)) => txn_keys(txn, &mut keys),
            Some(Request::LeaseGrant(grant)) => keys.leases.push(grant.id),
            // The attached keys are only known when it is applied; every put attaching a key
            // to this lease names it, so the lease id covers those.
            Some(Request::LeaseRevoke(revoke)) => keys.leases.push(revoke.id),
            // Touches no key or lease: commutes with everything.
            Some(Request::PublishMember(_)) => {}
            Some(Request::Compaction(_)) | None => keys.exclusive = true,
        }
        keys
    }
}

/// Every range a txn compares or touches, in both branches, recursively.
fn txn_keys(txn: &TxnRequest, keys: &mut ConflictKeys) {
    for cmp in &txn.compare {
        keys.ranges
            .push(KeyRange::new(cmp.key.clone(), cmp.range_end.clone()));
    }
    for op in txn.success.iter().chain(&txn.failure) {
        op_keys(op, keys);
    }
}

fn op_keys(op: &RequestOp, keys: &mut ConflictKeys) {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => {
            keys.ranges
                .push(KeyRange::new(r.key.clone(), r.range_end.clone()));
        }
        Some(request_op::Request::RequestPut(p)) => {
            keys.ranges.push(KeyRange::new(p.key.clone(), Vec::new()));
            if p.lease != 0 {
                keys.leases.push(p.lease);
            }
        }
        Some(request_op::Request::RequestDeleteRange(d)) => {
            keys.ranges
                .push(KeyRange::new(d.key.clone(), d.range_end.clone()));
        }
        Some(request_op::Request::RequestTxn(t)) => txn_keys(t, keys),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use curp::Command as _;
    use xline_proto::etcdserverpb::{Compare, RangeRequest};

    use super::*;

    #[test]
    fn round_trip_and_keys() {
        let txn = TxnRequest {
            compare: vec![Compare {
                key: b"c".to_vec(),
                range_end: b"d".to_vec(),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"p".to_vec(),
                    lease: 7,
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: b"r".to_vec(),
                    ..Default::default()
                })),
            }],
        };
        let cmd = Command::new(Request::Txn(txn));
        let back = <Command as curp::Command>::decode(&curp::Command::encode(&cmd)).unwrap();
        assert_eq!(back, cmd);
        let keys = cmd.conflict_keys();
        assert_eq!(keys.ranges.len(), 3);
        assert_eq!(keys.leases, vec![7]);
        assert!(!keys.exclusive);
        let compact = Command::new(Request::Compaction(CompactionRequest::default()));
        assert!(compact.conflict_keys().exclusive);
        assert!(<Command as curp::Command>::decode(&[]).is_err());
    }

    #[test]
    fn lease_commands_round_trip_and_name_their_lease() {
        let grant = Command::new(Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 42 }));
        let revoke = Command::new(Request::LeaseRevoke(LeaseRevokeRequest { id: 42 }));
        for cmd in [&grant, &revoke] {
            let back = <Command as curp::Command>::decode(&curp::Command::encode(cmd)).unwrap();
            assert_eq!(&back, cmd);
            let keys = cmd.conflict_keys();
            assert_eq!(keys.leases, vec![42]);
            assert!(keys.ranges.is_empty() && !keys.exclusive);
        }
        let put = Command::new(Request::Put(PutRequest {
            key: b"k".to_vec(),
            lease: 42,
            ..Default::default()
        }));
        assert!(revoke.conflict_keys().conflicts_with(&put.conflict_keys()));
        assert!(
            grant
                .conflict_keys()
                .conflicts_with(&revoke.conflict_keys())
        );
    }
}
