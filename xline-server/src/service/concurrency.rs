//! What the Lock and Election services are built from, as etcd builds them (its
//! `clientv3/concurrency` package run inside the server, over an in-process client): txns
//! proposed through this member, linearizable reads, and waits on the watch hub.
//!
//! ```text
//! Lock("L", lease 7f)                       key "L/7f" = create revision 12
//!   txn: if create_revision("L/7f") == 0       L/3a   (create rev  9)  <- owner
//!        then put "L/7f" (lease 7f)            L/51   (create rev 11)
//!        and  get oldest key under "L/"        L/7f   (create rev 12)  <- us
//!   owner is not us: wait until every key under "L/" created before revision 12 is deleted:
//!     newest such key is L/51 -> watch it from the read revision until a delete, read again;
//!     then L/3a -> watch, read again; none left: we own the lock.
//! ```
//!
//! Each RPC runs its requests as its caller ([`LocalClient::as_caller`]), as etcd's services
//! pass the caller's context, and with it the auth token, to the client they run over: with auth
//! enabled, reads are checked where they are served, txns and deletes when they are applied (the
//! session lease grant needs no user, as in etcd), and waits watch only what the caller may read.
//!
//! Every wait holds a [`Cleanup`]: when the wait fails, or the client goes away and the RPC's
//! future is dropped, the waiter's key is removed (etcd's `Unlock`/`Resign` on a cancelled
//! context), so an abandoned waiter never ends up owning the lock.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::metadata::MetadataMap;
use xline_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse, WatchCreateRequest, WatchRequest, compare, range_request, request_op,
    watch_request,
};
use xline_proto::mvccpb::{Event, KeyValue, event};

use crate::command::{self, Command};
use crate::error::{EtcdError, ServerError};
use crate::mvcc::store::CommandResponse;
use crate::server::ServerContext;
use crate::service::LeaseService;
use crate::watch::{WatchHub, WatchItem};

/// etcd's default session TTL (`concurrency.defaultSessionTTL`): a Lock or Campaign that names
/// no lease gets a fresh lease of this many seconds.
pub const SESSION_TTL_SECS: i64 = 60;

/// An in-process client of this member, for the Lock and Election services.
#[derive(Debug, Clone)]
pub struct LocalClient {
    ctx: Arc<ServerContext>,
    hub: Arc<WatchHub>,
    leases: LeaseService,
    /// The caller's identity (its auth token, and its certificate's user), the credentials
    /// every request is made with; empty for a client not bound to a caller.
    caller: MetadataMap,
}

/// etcd's range end for "every key with this prefix".
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or empty): every key from the prefix on.
    vec![0]
}

/// `key/` followed by the lease id in lower-case hex, as etcd's `fmt.Sprintf("%s%x", ...)`.
pub fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// A compare on a key's create revision.
pub fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

/// A txn operation writing `key`.
pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

/// A txn operation deleting `key`.
pub fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// A txn operation reading `key`.
pub fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// etcd's `WithFirstCreate`: the oldest key under `prefix`.
pub fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: range_request::SortOrder::Ascend as i32,
        sort_target: range_request::SortTarget::Create as i32,
        ..Default::default()
    }
}

/// A txn operation reading the oldest key under `prefix`.
pub fn first_created_op(prefix: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(first_created(prefix))),
    }
}

/// The key-values the `index`-th operation of a txn read.
pub fn txn_range_kvs(resp: &TxnResponse, index: usize) -> &[KeyValue] {
    use xline_proto::etcdserverpb::response_op::Response;
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(Response::ResponseRange(range)) => &range.kvs,
        _ => &[],
    }
}

impl LocalClient {
    /// A client of the member behind `ctx`; waits go through `hub`, session leases through
    /// `leases`.
    pub fn new(ctx: Arc<ServerContext>, hub: Arc<WatchHub>, leases: LeaseService) -> Self {
        Self {
            ctx,
            hub,
            leases,
            caller: MetadataMap::new(),
        }
    }

    /// This client acting as the caller of an RPC: its requests carry the identity the RPC's
    /// metadata `md` carries (token or certificate user), as etcd's services make theirs with
    /// the caller's context.
    pub fn as_caller(&self, md: &MetadataMap) -> Self {
        let mut caller = MetadataMap::new();
        crate::auth::AuthStore::copy_identity(md, &mut caller);
        Self {
            caller,
            ..self.clone()
        }
    }

    /// The auth header of a proposal made for the caller (the checks happen when it applies).
    async fn proposal_header(&self) -> Result<Option<crate::auth::AuthHeader>, ServerError> {
        Ok(self.ctx.store.auth().proposal_header(&self.caller).await?)
    }

    /// The member's context.
    pub fn ctx(&self) -> &Arc<ServerContext> {
        &self.ctx
    }

    /// The lease of a session, as etcd's `concurrency.NewSession(WithLease(lease))`: the lease
    /// itself, or for lease 0 a fresh lease of [`SESSION_TTL_SECS`]. The lease is not kept
    /// alive (etcd's services orphan the session at once).
    pub async fn session_lease(&self, lease: i64) -> Result<i64, ServerError> {
        if lease != 0 {
            return Ok(lease);
        }
        self.leases.grant_session(SESSION_TTL_SECS).await
    }

    /// A txn with writes, through consensus; the header is this member's at the txn's revision.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, ServerError> {
        let auth = self.proposal_header().await?;
        let output = self
            .ctx
            .node
            .propose(Command::with_auth(command::Request::Txn(req), auth))
            .await?;
        match output? {
            CommandResponse::Txn(mut resp) => {
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                resp.header = Some(self.ctx.header(revision));
                Ok(resp)
            }
            _ => Err(ServerError::Corrupt(
                "apply returned a response of the wrong kind for txn".into(),
            )),
        }
    }

    /// Deletes `key`; returns the header (at the revision after the delete).
    pub async fn delete(&self, key: &[u8]) -> Result<ResponseHeader, ServerError> {
        let req = DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        let auth = self.proposal_header().await?;
        let output = self
            .ctx
            .node
            .propose(Command::with_auth(command::Request::DeleteRange(req), auth))
            .await?;
        match output? {
            CommandResponse::DeleteRange(resp) => {
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                Ok(self.ctx.header(revision))
            }
            _ => Err(ServerError::Corrupt(
                "apply returned a response of the wrong kind for delete".into(),
            )),
        }
    }

    /// A linearizable read; returns the key-values and the header.
    pub async fn range(
        &self,
        req: RangeRequest,
    ) -> Result<(Vec<KeyValue>, ResponseHeader), ServerError> {
        let auth = self.ctx.store.auth();
        auth.check_read(&self.caller, &req.key, &req.range_end)
            .await?;
        self.ctx.node.linearizable_barrier().await?;
        let store = Arc::clone(&self.ctx.store);
        let resp = tokio::task::spawn_blocking(move || store.range(&req))
            .await
            .map_err(|e| ServerError::Consensus(format!("read task failed: {e}")))??;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        Ok((resp.kvs, self.ctx.header(revision)))
    }

    /// Watches `[key, range_end)` from `start_revision` on, through the watch hub.
    pub fn watch(&self, key: &[u8], range_end: &[u8], start_revision: i64) -> Watch {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: key.to_vec(),
                    range_end: range_end.to_vec(),
                    start_revision,
                    ..Default::default()
                },
            )),
        };
        // A stream whose client half-closed it keeps serving its watchers.
        let responses = self.hub.open_stream_as(
            tokio_stream::once(Ok(create)),
            crate::auth::Caller::of(&self.caller),
        );
        Watch { responses }
    }

    /// Waits until `key` is deleted, watching from `revision` (etcd's `waitDelete`).
    pub async fn wait_delete(&self, key: &[u8], revision: i64) -> Result<(), ServerError> {
        let mut watch = self.watch(key, &[], revision);
        loop {
            let (_, events) = watch.next().await?;
            if events
                .iter()
                .any(|ev| ev.r#type == event::EventType::Delete as i32)
            {
                return Ok(());
            }
        }
    }

    /// Waits until no key under `prefix` created at or before `max_create_revision` is left
    /// (etcd's `waitDeletes`): waits for the newest such key's deletion, then reads again.
    /// Returns the header of the read that found none.
    pub async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<ResponseHeader, ServerError> {
        loop {
            let req = RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                limit: 1,
                sort_order: range_request::SortOrder::Descend as i32,
                sort_target: range_request::SortTarget::Create as i32,
                max_create_revision,
                ..Default::default()
            };
            let (kvs, header) = self.range(req).await?;
            let Some(newest) = kvs.first() else {
                return Ok(header);
            };
            self.wait_delete(&newest.key, header.revision).await?;
        }
    }
}

/// One watcher on the watch hub; dropping it ends the watch.
#[derive(Debug)]
pub struct Watch {
    responses: mpsc::Receiver<WatchItem>,
}

impl Watch {
    /// The next response that carries events: its header and events, in revision order.
    /// Fails with `Compacted` when the start revision was compacted, and with etcd's "server
    /// stopped" when the hub stops.
    pub async fn next(&mut self) -> Result<(ResponseHeader, Vec<Event>), ServerError> {
        loop {
            let Some(Ok(resp)) = self.responses.recv().await else {
                return Err(EtcdError::Stopped.into());
            };
            if resp.compact_revision != 0 {
                return Err(EtcdError::Compacted.into());
            }
            if resp.canceled {
                // The caller may not read what it waits on (its permission was revoked since
                // it read the range).
                if resp
                    .cancel_reason
                    .ends_with(&EtcdError::PermissionDenied.to_string())
                {
                    return Err(EtcdError::PermissionDenied.into());
                }
                return Err(EtcdError::Stopped.into());
            }
            if !resp.events.is_empty() {
                return Ok((resp.header.unwrap_or_default(), resp.events));
            }
        }
    }
}

/// What undoes a waiter's key when its wait does not complete.
#[derive(Debug, Clone)]
pub enum Undo {
    /// Delete the key (etcd's `Mutex.Unlock`).
    Delete(Vec<u8>),
    /// Delete the key if it still has this create revision (etcd's `Election.Resign`).
    Resign(Vec<u8>, i64),
}

impl Undo {
    async fn run(self, client: &LocalClient) -> Result<(), ServerError> {
        match self {
            Undo::Delete(key) => client.delete(&key).await.map(|_| ()),
            Undo::Resign(key, rev) => {
                let txn = TxnRequest {
                    compare: vec![create_revision_is(&key, rev)],
                    success: vec![delete_op(&key)],
                    failure: Vec::new(),
                };
                client.txn(txn).await.map(|_| ())
            }
        }
    }
}

/// Undoes a waiter's key unless disarmed: explicitly with [`Cleanup::run`] when the wait failed,
/// or from a background task when the RPC's future is dropped (the client went away).
#[derive(Debug)]
pub struct Cleanup {
    client: LocalClient,
    undo: Option<Undo>,
}

impl Cleanup {
    /// Armed with `undo`.
    pub fn new(client: &LocalClient, undo: Undo) -> Self {
        Self {
            client: client.clone(),
            undo: Some(undo),
        }
    }

    /// The wait completed: nothing to undo.
    pub fn disarm(mut self) {
        self.undo = None;
    }

    /// Undoes now (the wait failed); a failure to undo is logged, the wait's error is what the
    /// client gets.
    pub async fn run(mut self) {
        if let Some(undo) = self.undo.take()
            && let Err(e) = undo.clone().run(&self.client).await
        {
            tracing::warn!(error = %e, ?undo, "could not remove an abandoned waiter's key");
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(undo) = self.undo.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        runtime.spawn(async move {
            if let Err(e) = undo.clone().run(&client).await {
                tracing::warn!(error = %e, ?undo, "could not remove an abandoned waiter's key");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_like_etcd() {
        assert_eq!(prefix_end(b"lock/"), b"lock0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn session_keys_are_lower_hex_without_padding() {
        assert_eq!(
            session_key(b"L/", 0x694d_0000_00ab),
            b"L/694d000000ab".to_vec()
        );
        assert_eq!(session_key(b"L/", 0xa), b"L/a".to_vec());
    }
}
