//! `etcdserverpb.KV`.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::kv_server::Kv;
use xline_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse, request_op,
};

use crate::command::{self, Command};
use crate::error::{EtcdError, ServerError};
use crate::mvcc::check;
use crate::mvcc::store::CommandResponse;
use crate::server::ServerContext;

/// Serves Range, Put, DeleteRange, Txn and Compact.
#[derive(Debug, Clone)]
pub struct KvService {
    ctx: Arc<ServerContext>,
}

impl KvService {
    /// A KV service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self { ctx }
    }

    /// Rejects a write larger than `--max-request-bytes`, as etcd does.
    fn check_size(&self, req: &impl Message) -> Result<(), EtcdError> {
        if req.encoded_len() > self.ctx.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        Ok(())
    }

    /// Rejects a write that adds data once the backend is over its quota (etcd's quota check:
    /// [`ServerContext::check_quota`]).
    async fn check_quota(&self, req: &impl Message) -> Result<(), ServerError> {
        self.ctx.check_quota(req.encoded_len() as u64).await
    }

    async fn propose(
        &self,
        request: command::Request,
        auth: Option<crate::auth::AuthHeader>,
    ) -> Result<CommandResponse, ServerError> {
        let output = self
            .ctx
            .node
            .propose(Command::with_auth(request, auth))
            .await?;
        Ok(output?)
    }

    /// Runs a blocking read of the store off the async workers.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::mvcc::store::KvStore) -> Result<T, ServerError> + Send + 'static,
    ) -> Result<T, ServerError> {
        let store = Arc::clone(&self.ctx.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ServerError::Consensus(format!("read task failed: {e}")))?
    }

    fn fill(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = Some(self.ctx.header(revision));
    }
}

fn unexpected(what: &str) -> ServerError {
    ServerError::Corrupt(format!(
        "apply returned a response of the wrong kind for {what}"
    ))
}

fn has_puts(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => has_puts(t),
            _ => false,
        })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let (md, _, req) = request.into_parts();
        check::check_range(&req).map_err(ServerError::from)?;
        let auth = self.ctx.store.auth();
        auth.check_read(&md, &req.key, &req.range_end)
            .await
            .map_err(ServerError::from)?;
        if !req.serializable {
            // Linearizable: a read index confirmed by the leader, applied here (CURP.md D8).
            self.ctx
                .node
                .linearizable_barrier()
                .await
                .map_err(ServerError::from)?;
        }
        // A single key is one index lookup and one read of the shared redb read view: cheaper
        // inline than the hop to a blocking thread and back. Ranges may scan many keys, so they
        // stay off the async workers.
        let mut resp = if req.range_end.is_empty() {
            self.ctx.store.range(&req)?
        } else {
            self.read(move |store| store.range(&req)).await?
        };
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let (md, _, req) = request.into_parts();
        check::check_put(&req).map_err(ServerError::from)?;
        let auth = self
            .ctx
            .store
            .auth()
            .proposal_header(&md)
            .await
            .map_err(ServerError::from)?;
        self.check_size(&req).map_err(ServerError::from)?;
        self.check_quota(&req).await?;
        match self.propose(command::Request::Put(req), auth).await? {
            CommandResponse::Put(mut resp) => {
                self.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("put").into()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let (md, _, req) = request.into_parts();
        check::check_delete(&req).map_err(ServerError::from)?;
        let auth = self
            .ctx
            .store
            .auth()
            .proposal_header(&md)
            .await
            .map_err(ServerError::from)?;
        self.check_size(&req).map_err(ServerError::from)?;
        match self
            .propose(command::Request::DeleteRange(req), auth)
            .await?
        {
            CommandResponse::DeleteRange(mut resp) => {
                self.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("delete").into()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let (md, _, req) = request.into_parts();
        check::check_txn(&req, self.ctx.config.max_txn_ops).map_err(ServerError::from)?;
        let auth = self
            .ctx
            .store
            .auth()
            .proposal_header(&md)
            .await
            .map_err(ServerError::from)?;
        let mut resp = if check::txn_is_read_only(&req) {
            self.ctx
                .store
                .auth()
                .check_txn(&md, &req)
                .await
                .map_err(ServerError::from)?;
            // etcd serves read-only txns as linearizable reads.
            self.ctx
                .node
                .linearizable_barrier()
                .await
                .map_err(ServerError::from)?;
            self.read(move |store| store.read_only_txn(&req)).await?
        } else {
            self.check_size(&req).map_err(ServerError::from)?;
            if has_puts(&req) {
                self.check_quota(&req).await?;
            }
            match self.propose(command::Request::Txn(req), auth).await? {
                CommandResponse::Txn(resp) => resp,
                _ => return Err(unexpected("txn").into()),
            }
        };
        self.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let (md, _, req) = request.into_parts();
        let auth = self
            .ctx
            .store
            .auth()
            .proposal_header(&md)
            .await
            .map_err(ServerError::from)?;
        let physical = req.physical;
        let revision = req.revision;
        match self
            .propose(command::Request::Compaction(req), auth)
            .await?
        {
            CommandResponse::Compaction(mut resp) => {
                if physical {
                    self.ctx.store.wait_compacted(revision).await;
                }
                self.fill(&mut resp.header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected("compaction").into()),
        }
    }
}
