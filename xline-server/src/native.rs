//! The native CURP client's view of this server: the output codec of the CURP client service
//! served on the peer listener ([`NativeCodec`]), and the executor's speculative results
//! ([`speculate`]).
//!
//! An output travels as [`NativeOutput`]: a `oneof` of the etcd response messages themselves
//! (the envelope mirrors [`crate::command::Command`]; both live in the `xline-native` crate), or the etcd error's message, which
//! decodes back to the same [`EtcdError`].
//!
//! Speculation (CURP.md D3): only the fast path of the native client ever asks for it; the
//! etcd gRPC front end proposes on the ordered path and never gets a speculative result. A
//! speculated response carries no revision (its header's revision is 0, which no ordered write
//! response has, so it marks the response as speculative): a revision is assigned by the
//! order. Only requests whose outcome cannot depend on that order are speculated: a `Put` or a
//! `DeleteRange` without `prev_kv`, without a lease or `ignore_*` flags, with auth disabled
//! and no alarm raised. Everything else (txns, compactions, leases...) waits for its ordered
//! result.

use curp::DecodeError;
use curp::cmd::OutputCodec;
use prost::Message;
use xline_proto::etcdserverpb::{
    AlarmType, DeleteRangeResponse, PutResponse, RangeRequest, ResponseHeader,
};

use crate::auth::AuthApplied;
use crate::command::{Command, Request};
use crate::error::EtcdError;
use crate::mvcc::store::{ApplyOutput, CommandResponse, KvStore};

pub use xline_native::{NativeOutput, NativeResult};

/// The [`OutputCodec`] of the CURP client service and of native clients of this server.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeCodec;

impl OutputCodec<ApplyOutput> for NativeCodec {
    fn encode(output: &ApplyOutput) -> Vec<u8> {
        let result = match output {
            Ok(CommandResponse::Put(r)) => NativeResult::Put(r.clone()),
            Ok(CommandResponse::DeleteRange(r)) => NativeResult::DeleteRange(r.clone()),
            Ok(CommandResponse::Txn(r)) => NativeResult::Txn(r.clone()),
            Ok(CommandResponse::Compaction(r)) => NativeResult::Compaction(*r),
            Ok(CommandResponse::LeaseGrant(r)) => NativeResult::LeaseGrant(r.clone()),
            Ok(CommandResponse::LeaseRevoke(r)) => NativeResult::LeaseRevoke(*r),
            Ok(CommandResponse::MemberPublished) => NativeResult::MemberPublished(true),
            Ok(CommandResponse::Alarm(r)) => NativeResult::Alarm(r.clone()),
            Ok(CommandResponse::DowngradeSet) => NativeResult::DowngradeSet(true),
            Ok(CommandResponse::Auth(AuthApplied::Done)) => NativeResult::AuthDone(true),
            Ok(CommandResponse::Auth(AuthApplied::Token(t))) => NativeResult::AuthToken(t.clone()),
            Err(e) => NativeResult::Error(e.to_string()),
        };
        NativeOutput {
            result: Some(result),
        }
        .encode_to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<ApplyOutput, DecodeError> {
        let wire = NativeOutput::decode(bytes).map_err(DecodeError::new)?;
        let response = match wire.result {
            None => return Err(DecodeError::new("an output without a result")),
            Some(NativeResult::Error(message)) => {
                return EtcdError::ALL
                    .iter()
                    .find(|e| e.to_string() == message)
                    .map(|e| Err(*e))
                    .ok_or_else(|| DecodeError::new(format!("unknown etcd error {message:?}")));
            }
            Some(NativeResult::Put(r)) => CommandResponse::Put(r),
            Some(NativeResult::DeleteRange(r)) => CommandResponse::DeleteRange(r),
            Some(NativeResult::Txn(r)) => CommandResponse::Txn(r),
            Some(NativeResult::Compaction(r)) => CommandResponse::Compaction(r),
            Some(NativeResult::LeaseGrant(r)) => CommandResponse::LeaseGrant(r),
            Some(NativeResult::LeaseRevoke(r)) => CommandResponse::LeaseRevoke(r),
            Some(NativeResult::MemberPublished(_)) => CommandResponse::MemberPublished,
            Some(NativeResult::Alarm(r)) => CommandResponse::Alarm(r),
            Some(NativeResult::DowngradeSet(_)) => CommandResponse::DowngradeSet,
            Some(NativeResult::AuthDone(_)) => CommandResponse::Auth(AuthApplied::Done),
            Some(NativeResult::AuthToken(t)) => CommandResponse::Auth(AuthApplied::Token(t)),
        };
        Ok(Ok(response))
    }
}

/// Whether a response came from speculation (its header's revision is 0, see the module
/// docs) rather than from applying the command in log order.
pub fn is_speculative(response: &CommandResponse) -> bool {
    let header = match response {
        CommandResponse::Put(r) => r.header.as_ref(),
        CommandResponse::DeleteRange(r) => r.header.as_ref(),
        _ => return false,
    };
    header.is_none_or(|h| h.revision == 0)
}

/// The admission policy of the CURP client service: which commands a native client may
/// propose on the peer listener (the etcd front end proposes through the node directly and is
/// not subject to it). A refusal is answered with the etcd error, as if the command had been
/// applied and failed.
///
/// - Only KV and lease requests (`Put`, `DeleteRange`, `Txn`, `Compaction`, `LeaseGrant`,
///   `LeaseRevoke`): member, alarm, downgrade and auth commands are the members' own
///   (`etcdserver: permission denied`).
/// - No identity: a client cannot assert one (a command carrying an auth header is refused
///   with `etcdserver: permission denied`), and the native path carries no credentials: an
///   admitted command is stamped with the anonymous header (empty user name), which the apply
///   refuses with `etcdserver: user name is empty` whenever auth is enabled by then (a command
///   without any header is applied as the member's own, so it must never reach the log from a
///   client); while auth is enabled, commands are refused here already.
/// - The etcd front end's request checks: the same validation (`mvcc::check`), the size
///   limit (`--max-request-bytes`) and the txn op limit (`--max-txn-ops`).
///
/// The peer listener is the trust boundary for everything else on it (raft messages): with
/// `--peer-client-cert-auth`, only holders of a peer certificate reach this service at all.
pub fn admit(
    store: &KvStore,
    max_request_bytes: usize,
    max_txn_ops: usize,
    mut cmd: Command,
) -> Result<Command, ApplyOutput> {
    use crate::mvcc::check;
    if cmd.auth.is_some() {
        return Err(Err(EtcdError::PermissionDenied));
    }
    if store.auth().is_enabled() {
        return Err(Err(EtcdError::UserEmpty));
    }
    let size = match cmd.request.as_ref() {
        Some(Request::Put(put)) => {
            check::check_put(put).map_err(Err)?;
            put.encoded_len()
        }
        Some(Request::DeleteRange(del)) => {
            check::check_delete(del).map_err(Err)?;
            del.encoded_len()
        }
        Some(Request::Txn(txn)) => {
            check::check_txn(txn, max_txn_ops).map_err(Err)?;
            txn.encoded_len()
        }
        Some(Request::Compaction(req)) => req.encoded_len(),
        Some(Request::LeaseGrant(req)) => req.encoded_len(),
        Some(Request::LeaseRevoke(req)) => req.encoded_len(),
        _ => return Err(Err(EtcdError::PermissionDenied)),
    };
    if size > max_request_bytes {
        return Err(Err(EtcdError::RequestTooLarge));
    }
    cmd.auth = Some(crate::auth::AuthHeader::default());
    Ok(cmd)
}

/// Whether `cmd` carries a user's identity (the anonymous header of native clients does not).
fn has_user(cmd: &Command) -> bool {
    cmd.auth.as_ref().is_some_and(|a| !a.username.is_empty())
}

/// A header without a revision: the mark of a speculated response.
fn speculative_header() -> Option<ResponseHeader> {
    Some(ResponseHeader::default())
}

/// The executor's speculative result of `cmd` on `store`'s applied state (see the module
/// docs), or `None` when it may depend on the order.
pub fn speculate(store: &KvStore, cmd: &Command) -> Option<ApplyOutput> {
    if has_user(cmd) || store.auth().is_enabled() {
        return None;
    }
    if !store.alarms(AlarmType::None).is_empty() {
        return None;
    }
    match cmd.request.as_ref()? {
        Request::Put(put) => {
            let plain = !put.key.is_empty()
                && put.lease == 0
                && !put.prev_kv
                && !put.ignore_value
                && !put.ignore_lease;
            plain.then(|| {
                Ok(CommandResponse::Put(PutResponse {
                    header: speculative_header(),
                    prev_kv: None,
                }))
            })
        }
        Request::DeleteRange(del) => {
            if del.key.is_empty() || del.prev_kv {
                return None;
            }
            // Every command not applied yet commutes with this one (it touches none of these
            // keys), so the applied state's count is the count in log order.
            let count = store
                .range(&RangeRequest {
                    key: del.key.clone(),
                    range_end: del.range_end.clone(),
                    count_only: true,
                    ..Default::default()
                })
                .ok()?
                .count;
            Some(Ok(CommandResponse::DeleteRange(DeleteRangeResponse {
                header: speculative_header(),
                deleted: count,
                prev_kvs: Vec::new(),
            })))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::MemoryBackend;
    use xline_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, TxnResponse};
    use xline_proto::mvccpb::KeyValue;

    #[test]
    fn outputs_round_trip() {
        let outputs: Vec<ApplyOutput> = vec![
            Ok(CommandResponse::Put(PutResponse {
                header: Some(ResponseHeader {
                    revision: 7,
                    ..Default::default()
                }),
                prev_kv: Some(KeyValue {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    create_revision: 2,
                    mod_revision: 6,
                    version: 3,
                    lease: 0,
                }),
            })),
            Ok(CommandResponse::DeleteRange(DeleteRangeResponse {
                header: speculative_header(),
                deleted: 3,
                prev_kvs: Vec::new(),
            })),
            Ok(CommandResponse::Txn(TxnResponse::default())),
            Ok(CommandResponse::MemberPublished),
            Ok(CommandResponse::DowngradeSet),
            Ok(CommandResponse::Auth(AuthApplied::Done)),
            Ok(CommandResponse::Auth(AuthApplied::Token("t.1".into()))),
        ];
        for output in outputs
            .into_iter()
            .chain(EtcdError::ALL.iter().map(|e| Err(*e)))
        {
            let bytes = NativeCodec::encode(&output);
            assert_eq!(NativeCodec::decode(&bytes), Ok(output));
        }
        assert!(NativeCodec::decode(&NativeOutput { result: None }.encode_to_vec()).is_err());
        let unknown = NativeOutput {
            result: Some(NativeResult::Error("etcdserver: no such thing".into())),
        };
        assert!(NativeCodec::decode(&unknown.encode_to_vec()).is_err());
        assert!(NativeCodec::decode(b"\xff\xff").is_err());
    }

    #[test]
    fn speculation_marks() {
        let spec = CommandResponse::Put(PutResponse {
            header: speculative_header(),
            prev_kv: None,
        });
        assert!(is_speculative(&spec));
        let ordered = CommandResponse::Put(PutResponse {
            header: Some(ResponseHeader {
                revision: 2,
                ..Default::default()
            }),
            prev_kv: None,
        });
        assert!(!is_speculative(&ordered));
    }

    fn put(key: &str, f: impl FnOnce(&mut PutRequest)) -> Command {
        let mut req = PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        f(&mut req);
        Command::new(Request::Put(req))
    }

    #[test]
    fn only_order_independent_writes_speculate() {
        let store = KvStore::open(Arc::new(MemoryBackend::new())).expect("open");
        store
            .apply(&[(1, put("a", |_| {})), (2, put("b", |_| {}))])
            .expect("apply");
        let plain = speculate(&store, &put("a", |_| {})).expect("a plain put speculates");
        assert_eq!(
            plain,
            Ok(CommandResponse::Put(PutResponse {
                header: speculative_header(),
                prev_kv: None,
            }))
        );
        assert!(is_speculative(&plain.expect("ok")));
        for refused in [
            put("a", |r| r.prev_kv = true),
            put("a", |r| r.lease = 5),
            put("a", |r| r.ignore_value = true),
            put("a", |r| r.ignore_lease = true),
            put("", |_| {}),
            Command::new(Request::Txn(Default::default())),
            Command::new(Request::Compaction(Default::default())),
        ] {
            assert_eq!(speculate(&store, &refused), None, "{refused:?}");
        }
        let del = |key: &str, end: &str, prev_kv: bool| {
            Command::new(Request::DeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                prev_kv,
            }))
        };
        let deleted = |out: Option<ApplyOutput>| match out {
            Some(Ok(CommandResponse::DeleteRange(r))) => {
                assert_eq!(r.header, speculative_header());
                Some(r.deleted)
            }
            _ => None,
        };
        assert_eq!(deleted(speculate(&store, &del("a", "c", false))), Some(2));
        assert_eq!(deleted(speculate(&store, &del("x", "", false))), Some(0));
        assert_eq!(speculate(&store, &del("a", "c", true)), None);
        // Speculation changes nothing.
        assert_eq!(store.current_revision(), 3);
        // The ordered result agrees on what speculation reports.
        let ordered = store.apply(&[(3, del("a", "c", false))]).expect("apply");
        assert!(matches!(
            &ordered[0],
            Ok(CommandResponse::DeleteRange(r)) if r.deleted == 2 && !is_speculative(&ordered[0].clone().expect("ok"))
        ));
    }
}
