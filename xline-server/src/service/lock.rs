//! `v3lockpb.Lock`, built as etcd builds it (`v3lock` over `concurrency.Mutex`): the lock `name`
//! is held by the oldest key under `name/`; a locker writes `name/<lease hex>` attached to its
//! lease and waits until every older key is gone (unlocked, or its lease expired). Every request
//! is made as the caller (auth).

use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::TxnRequest;
use xline_proto::v3lockpb::lock_server::Lock;
use xline_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use crate::error::ConcurrencyError;
use crate::service::concurrency::{
    Cleanup, LocalClient, Undo, create_revision_is, first_created_op, get_op, put_op, session_key,
    txn_range_kvs,
};

/// Serves Lock and Unlock.
#[derive(Debug, Clone)]
pub struct LockService {
    client: LocalClient,
}

impl LockService {
    /// A Lock service over an in-process client of this member.
    pub fn new(client: LocalClient) -> Self {
        Self { client }
    }

    /// This service acting for the caller whose request metadata is `md` (see
    /// [`LocalClient::as_caller`]).
    fn for_caller(&self, md: &tonic::metadata::MetadataMap) -> Self {
        Self {
            client: self.client.as_caller(md),
        }
    }

    /// etcd's `Mutex.Lock`, with etcd 3.5's final check that the key is still there.
    async fn lock(&self, req: LockRequest) -> Result<LockResponse, ConcurrencyError> {
        let lease = self.client.session_lease(req.lease).await?;
        let mut prefix = req.name;
        prefix.push(b'/');
        let key = session_key(&prefix, lease);
        // Queue up (or find this lease's key from an earlier Lock) and read the owner at once.
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![put_op(&key, b"", lease), first_created_op(&prefix)],
            failure: vec![get_op(&key), first_created_op(&prefix)],
        };
        let resp = self.client.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let my_rev = if resp.succeeded {
            header.revision
        } else {
            txn_range_kvs(&resp, 0)
                .first()
                .map_or(header.revision, |kv| kv.create_revision)
        };
        let owner = txn_range_kvs(&resp, 1).first();
        if owner.is_none_or(|kv| kv.create_revision == my_rev) {
            return Ok(LockResponse {
                header: Some(header),
                key,
            });
        }
        let cleanup = Cleanup::new(&self.client, Undo::Delete(key.clone()));
        if let Err(e) = self.client.wait_deletes(&prefix, my_rev - 1).await {
            cleanup.run().await;
            return Err(e.into());
        }
        // Make sure the key outlived the wait (its lease may have expired meanwhile).
        let (kvs, header) = match self.client.range(key_only(&key)).await {
            Ok(read) => read,
            Err(e) => {
                cleanup.run().await;
                return Err(e.into());
            }
        };
        cleanup.disarm();
        if kvs.is_empty() {
            return Err(ConcurrencyError::SessionExpired);
        }
        Ok(LockResponse {
            header: Some(header),
            key,
        })
    }
}

/// A read of exactly `key`.
fn key_only(key: &[u8]) -> xline_proto::etcdserverpb::RangeRequest {
    xline_proto::etcdserverpb::RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let service = self.for_caller(request.metadata());
        let resp = LockService::lock(&service, request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    /// etcd's `Mutex.Unlock`: a plain delete of the key (not an error when it is gone).
    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let client = self.client.as_caller(request.metadata());
        let key = request.into_inner().key;
        let header = client.delete(&key).await.map_err(ConcurrencyError::from)?;
        Ok(Response::new(UnlockResponse {
            header: Some(header),
        }))
    }
}
