//! The Election service (served by the server, as etcd's `v3election`).

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Streaming;
use xline_proto::v3electionpb::election_client::ElectionClient as RawElection;
use xline_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

use crate::conn::{Inner, Retry};
use crate::error::{Error, Result};

/// The stream of [`ElectionClient::observe`]: one answer per leader (or leader value) change.
/// Dropping it ends the observation.
#[derive(Debug)]
pub struct ObserveStream {
    rx: mpsc::Receiver<Result<LeaderResponse>>,
}

impl ObserveStream {
    /// The next leader; `None` when the server closed the stream.
    pub async fn message(&mut self) -> Result<Option<LeaderResponse>> {
        self.rx.recv().await.transpose()
    }
}

/// Forwards an Observe stream into `tx` until either side ends.
async fn observe_task(
    inner: Arc<Inner>,
    req: LeaderRequest,
    tx: mpsc::Sender<Result<LeaderResponse>>,
) {
    // etcd answers the stream's headers only with the first leader, which may take long: this
    // runs without the per-call timeout.
    let opened = async {
        let (svc, i) = inner.service().await?;
        match RawElection::new(svc).observe(req).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => {
                if Inner::should_failover(&status) {
                    inner.mark_down(i).await;
                }
                Err(Error::from_status(status))
            }
        }
    };
    let mut stream: Streaming<LeaderResponse> = tokio::select! {
        () = tx.closed() => return,
        opened = opened => match opened {
            Ok(stream) => stream,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        },
    };
    loop {
        let msg = tokio::select! {
            () = tx.closed() => return,
            msg = stream.message() => msg,
        };
        match msg {
            Ok(Some(resp)) => {
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(status) => {
                let _ = tx.send(Err(Error::from_status(status))).await;
                return;
            }
        }
    }
}

/// The Election service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let lease = client.lease().grant(30, None).await?;
/// let election = client.election();
/// let won = election.campaign("my-election", "me", lease.id).await?;
/// let leader = won.leader.expect("campaign names the leader key");
/// election.proclaim(leader.clone(), "me, updated").await?;
/// let current = election.leader("my-election").await?;
/// assert_eq!(current.kv.unwrap().value, b"me, updated");
/// election.resign(leader).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ElectionClient {
    inner: Arc<Inner>,
}

impl ElectionClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Waits until this candidate (value `value`, under lease `lease`) leads election `name`.
    pub async fn campaign(
        &self,
        name: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        lease: i64,
    ) -> Result<CampaignResponse> {
        let req = CampaignRequest {
            name: name.into(),
            lease,
            value: value.into(),
        };
        unary!(self, Retry::NonRepeatable, RawElection, campaign, req)
    }

    /// Replaces the leader's value (fails with `election: not leader` if `leader` is not).
    pub async fn proclaim(
        &self,
        leader: LeaderKey,
        value: impl Into<Vec<u8>>,
    ) -> Result<ProclaimResponse> {
        let req = ProclaimRequest {
            leader: Some(leader),
            value: value.into(),
        };
        unary!(self, Retry::NonRepeatable, RawElection, proclaim, req)
    }

    /// The current leader's key-value (`election: no leader` when nobody campaigns).
    pub async fn leader(&self, name: impl Into<Vec<u8>>) -> Result<LeaderResponse> {
        let req = LeaderRequest { name: name.into() };
        unary!(self, Retry::Repeatable, RawElection, leader, req)
    }

    /// Gives up leadership.
    pub async fn resign(&self, leader: LeaderKey) -> Result<ResignResponse> {
        let req = ResignRequest {
            leader: Some(leader),
        };
        unary!(self, Retry::NonRepeatable, RawElection, resign, req)
    }

    /// Streams the election's leaders, starting with the current one (the first message waits
    /// until somebody leads). Must be called inside a tokio runtime.
    pub fn observe(&self, name: impl Into<Vec<u8>>) -> ObserveStream {
        let req = LeaderRequest { name: name.into() };
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(observe_task(self.inner.clone(), req, tx));
        ObserveStream { rx }
    }
}

/// Raw requests: etcd's request messages as they are, with the pool's balancing, failover,
/// retry rules and auth token (see the crate docs, "Raw requests").
impl ElectionClient {
    /// Election.Campaign (not repeatable; waits until elected).
    pub async fn campaign_request(&self, req: CampaignRequest) -> Result<CampaignResponse> {
        unary!(self, Retry::NonRepeatable, RawElection, campaign, req)
    }

    /// Election.Proclaim (not repeatable).
    pub async fn proclaim_request(&self, req: ProclaimRequest) -> Result<ProclaimResponse> {
        unary!(self, Retry::NonRepeatable, RawElection, proclaim, req)
    }

    /// Election.Leader (repeatable).
    pub async fn leader_request(&self, req: LeaderRequest) -> Result<LeaderResponse> {
        unary!(self, Retry::Repeatable, RawElection, leader, req)
    }

    /// Election.Resign (not repeatable).
    pub async fn resign_request(&self, req: ResignRequest) -> Result<ResignResponse> {
        unary!(self, Retry::NonRepeatable, RawElection, resign, req)
    }

    /// Election.Observe: like [`ElectionClient::observe`] (not bounded by a per-call
    /// timeout). Must be called inside a tokio runtime.
    pub fn observe_request(&self, req: LeaderRequest) -> ObserveStream {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(observe_task(self.inner.clone(), req, tx));
        ObserveStream { rx }
    }
}
