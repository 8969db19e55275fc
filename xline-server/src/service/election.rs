//! `v3electionpb.Election`, built as etcd builds it (`v3election` over
//! `concurrency.Election`): a campaigner writes `name/<lease hex>` holding its value and attached
//! to its lease; the oldest key under `name/` is the leader, and its value is what the leader
//! proclaims. Leadership ends when the key is deleted (Resign) or its lease expires.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use xline_proto::etcdserverpb::{ResponseHeader, TxnRequest};
use xline_proto::mvccpb::{KeyValue, event};
use xline_proto::v3electionpb::election_server::Election;
use xline_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

use crate::error::{ConcurrencyError, ServerError};
use crate::service::concurrency::{
    Cleanup, LocalClient, Undo, create_revision_is, delete_op, first_created, get_op, prefix_end,
    put_op, session_key, txn_range_kvs,
};

/// Leader changes an Observe stream holds for a slow client before it stops watching for more.
const OBSERVE_BUFFER: usize = 16;

/// Serves Campaign, Proclaim, Leader, Observe and Resign.
#[derive(Debug, Clone)]
pub struct ElectionService {
    client: LocalClient,
}

/// The keys of election `name` are under `name/`.
fn election_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

impl ElectionService {
    /// An Election service over an in-process client of this member.
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

    /// etcd's `Election.Campaign`: queue up with `value` (or take over this lease's earlier
    /// campaign, proclaiming `value` if it differs) and wait until every older campaigner is gone.
    async fn campaign(&self, req: CampaignRequest) -> Result<CampaignResponse, ConcurrencyError> {
        let lease = self.client.session_lease(req.lease).await?;
        let prefix = election_prefix(&req.name);
        let key = session_key(&prefix, lease);
        let txn = TxnRequest {
            compare: vec![create_revision_is(&key, 0)],
            success: vec![put_op(&key, &req.value, lease)],
            failure: vec![get_op(&key)],
        };
        let resp = self.client.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let mut rev = header.revision;
        if !resp.succeeded
            && let Some(kv) = txn_range_kvs(&resp, 0).first()
        {
            rev = kv.create_revision;
            if kv.value != req.value
                && let Err(e) = self.proclaim_at(&key, rev, lease, &req.value).await
            {
                Cleanup::new(&self.client, Undo::Resign(key, rev))
                    .run()
                    .await;
                return Err(e);
            }
        }
        // A campaign abandoned by its client resigns (etcd: on a cancelled context only; a
        // campaign that failed otherwise leaves its key).
        let cleanup = Cleanup::new(&self.client, Undo::Resign(key.clone(), rev));
        let waited = self.client.wait_deletes(&prefix, rev - 1).await;
        cleanup.disarm();
        waited?;
        Ok(CampaignResponse {
            header: Some(header),
            leader: Some(LeaderKey {
                name: req.name,
                key,
                rev,
                lease,
            }),
        })
    }

    /// etcd's `Election.Proclaim`: rewrites the leader key if it still has create revision `rev`.
    async fn proclaim_at(
        &self,
        key: &[u8],
        rev: i64,
        lease: i64,
        value: &[u8],
    ) -> Result<ResponseHeader, ConcurrencyError> {
        let txn = TxnRequest {
            compare: vec![create_revision_is(key, rev)],
            success: vec![put_op(key, value, lease)],
            failure: Vec::new(),
        };
        let resp = self.client.txn(txn).await?;
        if !resp.succeeded {
            return Err(ConcurrencyError::NotLeader);
        }
        Ok(resp.header.unwrap_or_default())
    }

    async fn proclaim(&self, req: ProclaimRequest) -> Result<ProclaimResponse, ConcurrencyError> {
        let leader = req.leader.ok_or(ConcurrencyError::MissingLeaderKey)?;
        // As etcd's service: a leader key without a lease gets a fresh session lease.
        let lease = self.client.session_lease(leader.lease).await?;
        let header = self
            .proclaim_at(&leader.key, leader.rev, lease, &req.value)
            .await?;
        Ok(ProclaimResponse {
            header: Some(header),
        })
    }

    /// etcd's `Election.Resign`: deletes the leader key if it still has its create revision
    /// (nothing to do is not an error).
    async fn resign(&self, req: ResignRequest) -> Result<ResignResponse, ConcurrencyError> {
        let leader = req.leader.ok_or(ConcurrencyError::MissingLeaderKey)?;
        self.client.session_lease(leader.lease).await?;
        let txn = TxnRequest {
            compare: vec![create_revision_is(&leader.key, leader.rev)],
            success: vec![delete_op(&leader.key)],
            failure: Vec::new(),
        };
        let resp = self.client.txn(txn).await?;
        Ok(ResignResponse {
            header: resp.header,
        })
    }

    /// etcd's `Election.Leader`: the oldest campaigner's key.
    async fn leader(&self, req: LeaderRequest) -> Result<LeaderResponse, ConcurrencyError> {
        let prefix = election_prefix(&req.name);
        let (kvs, header) = self.client.range(first_created(&prefix)).await?;
        let kv = kvs.into_iter().next().ok_or(ConcurrencyError::NoLeader)?;
        Ok(LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        })
    }
}

/// The stream of an Observe call.
type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

/// Sends one leader observation; `false` when the client is gone.
async fn send(
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
    header: ResponseHeader,
    kv: KeyValue,
) -> bool {
    let resp = LeaderResponse {
        header: Some(header),
        kv: Some(kv),
    };
    tx.send(Ok(resp)).await.is_ok()
}

/// etcd's `Election.observe`: the current leader's key, then every change of its value until it
/// is deleted, then the next leader, and so on. Intermediate leaders and values may be skipped
/// (etcd: "will always post the most recent leader value"), never reordered.
async fn observe(
    client: &LocalClient,
    prefix: &[u8],
    tx: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), ServerError> {
    loop {
        let (kvs, read) = client.range(first_created(prefix)).await?;
        let (header, kv) = match kvs.into_iter().next() {
            Some(kv) => (read, kv),
            None => {
                // No leader: wait for the first campaigner's key.
                let mut watch = client.watch(prefix, &prefix_end(prefix), read.revision);
                loop {
                    let (mut header, events) = watch.next().await?;
                    let put = events
                        .into_iter()
                        .find(|ev| ev.r#type == event::EventType::Put as i32)
                        .and_then(|ev| ev.kv);
                    if let Some(kv) = put {
                        header.revision = kv.mod_revision;
                        break (header, kv);
                    }
                }
            }
        };
        let from = header.revision + 1;
        let key = kv.key.clone();
        if !send(tx, header, kv).await {
            return Ok(());
        }
        let mut watch = client.watch(&key, &[], from);
        'leader: loop {
            let (header, events) = watch.next().await?;
            for ev in events {
                if ev.r#type == event::EventType::Delete as i32 {
                    break 'leader;
                }
                if let Some(kv) = ev.kv
                    && !send(tx, header, kv).await
                {
                    return Ok(());
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let service = self.for_caller(request.metadata());
        let resp = ElectionService::campaign(&service, request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let service = self.for_caller(request.metadata());
        let resp = ElectionService::proclaim(&service, request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let service = self.for_caller(request.metadata());
        let resp = ElectionService::leader(&service, request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let client = self.client.as_caller(request.metadata());
        let prefix = election_prefix(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(OBSERVE_BUFFER);
        tokio::spawn(async move {
            // Ends when the client goes away, or (as etcd's, with the stream closed without an
            // error) when a read or a watch fails.
            tokio::select! {
                _ = observe(&client, &prefix, &tx) => {}
                () = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let service = self.for_caller(request.metadata());
        let resp = ElectionService::resign(&service, request.into_inner()).await?;
        Ok(Response::new(resp))
    }
}
