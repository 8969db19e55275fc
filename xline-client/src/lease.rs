//! The Lease service and a background keep-alive helper.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tonic::Streaming;
use xline_proto::etcdserverpb::lease_client::LeaseClient as RawLease;
use xline_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

use crate::conn::{Inner, Retry};
use crate::error::{Error, Result};

/// Options of [`LeaseClient::grant`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseGrantOptions {
    id: i64,
}

impl LeaseGrantOptions {
    /// The server picks the id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for lease id `id`.
    #[must_use]
    pub fn with_id(mut self, id: i64) -> Self {
        self.id = id;
        self
    }
}

/// Options of [`LeaseClient::time_to_live`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseTimeToLiveOptions {
    keys: bool,
}

impl LeaseTimeToLiveOptions {
    /// Without the attached keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also lists the keys attached to the lease.
    #[must_use]
    pub fn with_keys(mut self) -> Self {
        self.keys = true;
        self
    }
}

/// The sending half of a raw keep-alive stream ([`LeaseClient::keep_alive`]).
#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    id: i64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
}

impl LeaseKeeper {
    /// The lease kept alive.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Sends one keep-alive; its answer arrives on the [`LeaseKeepAliveStream`].
    pub async fn keep_alive(&self) -> Result<()> {
        self.tx
            .send(LeaseKeepAliveRequest { id: self.id })
            .await
            .map_err(|_| Error::Closed("lease keep-alive stream"))
    }
}

/// The receiving half of a raw keep-alive stream.
#[derive(Debug)]
pub struct LeaseKeepAliveStream {
    stream: Streaming<LeaseKeepAliveResponse>,
}

impl LeaseKeepAliveStream {
    /// The next answer; `None` when the server closed the stream.
    pub async fn message(&mut self) -> Result<Option<LeaseKeepAliveResponse>> {
        self.stream.message().await.map_err(Error::from_status)
    }
}

/// A request stream fed by a channel.
fn channel_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
}

/// A background task keeping one lease alive ([`LeaseClient::keep_alive_task`]).
///
/// It sends a keep-alive every third of the lease's TTL, over a stream it re-opens on another
/// endpoint when a member fails. It ends when stopped, dropped, or when the server reports the
/// lease gone (then [`KeepAliveHandle::wait`] returns [`Error::LeaseExpired`]).
#[derive(Debug)]
pub struct KeepAliveHandle {
    id: i64,
    ttl: watch::Receiver<i64>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<()>>>,
}

impl KeepAliveHandle {
    /// The lease kept alive.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL the server reported last (0 before the first answer, and once the lease is gone).
    pub fn ttl(&self) -> i64 {
        *self.ttl.borrow()
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops sending keep-alives (the lease then expires after its TTL unless revoked).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the task ends by itself: `Err(LeaseExpired)` when the lease is gone.
    pub async fn wait(mut self) -> Result<()> {
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|_| Error::Closed("lease keep-alive task"))?,
            None => Ok(()),
        }
    }
}

impl Drop for KeepAliveHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The keep-alive loop of [`KeepAliveHandle`].
async fn keep_alive_loop(
    inner: Arc<Inner>,
    id: i64,
    ttl_tx: watch::Sender<i64>,
    mut stop: oneshot::Receiver<()>,
    responses: Option<mpsc::Sender<LeaseKeepAliveResponse>>,
) -> Result<()> {
    let mut failures = 0usize;
    loop {
        // Open a stream on some endpoint.
        let opened = async {
            let (svc, i) = inner.service().await?;
            let (tx, rx) = mpsc::channel(4);
            // The first keep-alive goes with the stream: etcd answers the stream's headers only
            // with its first message.
            tx.send(LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| Error::Closed("lease keep-alive stream"))?;
            let stream = RawLease::new(svc)
                .lease_keep_alive(channel_stream(rx))
                .await
                .map_err(|s| (i, s));
            Ok::<_, Error>((tx, stream, i))
        };
        let (tx, mut stream, i) = tokio::select! {
            _ = &mut stop => return Ok(()),
            opened = opened => match opened {
                Ok((tx, Ok(stream), i)) => (tx, stream.into_inner(), i),
                Ok((_, Err((i, status)), _)) => {
                    if !Inner::should_failover(&status) && !inner.can_refresh(&status) {
                        return Err(Error::from_status(status));
                    }
                    if inner.can_refresh(&status) {
                        inner.refresh_token().await?;
                    } else {
                        inner.mark_down(i).await;
                    }
                    failures += 1;
                    tokio::time::sleep(Inner::backoff(failures)).await;
                    continue;
                }
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(Inner::backoff(failures)).await;
                    continue;
                }
            },
        };
        // Keep alive over this stream until it fails.
        let mut first = true;
        loop {
            if !first && tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                break;
            }
            first = false;
            let answer = tokio::select! {
                _ = &mut stop => return Ok(()),
                answer = tokio::time::timeout(Duration::from_secs(5), stream.message()) => answer,
            };
            match answer {
                Ok(Ok(Some(resp))) => {
                    failures = 0;
                    let _ = ttl_tx.send(resp.ttl.max(0));
                    if resp.ttl <= 0 {
                        return Err(Error::LeaseExpired(id));
                    }
                    if let Some(out) = &responses {
                        // Nobody reads the answers any more: stop, as when dropped.
                        if out.send(resp).await.is_err() {
                            return Ok(());
                        }
                    }
                    let every = Duration::from_millis(
                        u64::try_from(resp.ttl).unwrap_or(1).saturating_mul(1000) / 3,
                    )
                    .max(Duration::from_millis(100));
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        () = tokio::time::sleep(every) => {}
                    }
                }
                Ok(Ok(None)) | Err(_) => {
                    inner.mark_down(i).await;
                    break;
                }
                Ok(Err(status)) => {
                    if status.message() == crate::EtcdErrorKind::LeaseNotFound.message() {
                        let _ = ttl_tx.send(0);
                        return Err(Error::LeaseExpired(id));
                    }
                    if inner.can_refresh(&status) {
                        inner.refresh_token().await?;
                    } else if Inner::should_failover(&status) {
                        inner.mark_down(i).await;
                    } else {
                        return Err(Error::from_status(status));
                    }
                    break;
                }
            }
        }
        failures += 1;
        tokio::time::sleep(Inner::backoff(failures)).await;
    }
}

/// The Lease service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions, PutOptions};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let lease = client.lease().grant(10, None).await?;
/// client.kv().put("session", "alive", Some(PutOptions::new().with_lease(lease.id))).await?;
/// // Keep the lease alive in the background until stopped.
/// let keeper = client.lease().keep_alive_task(lease.id);
/// // ...
/// keeper.stop().await;
/// client.lease().revoke(lease.id).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LeaseClient {
    inner: Arc<Inner>,
}

impl LeaseClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Grants a lease of `ttl` seconds.
    pub async fn grant(
        &self,
        ttl: i64,
        opts: Option<LeaseGrantOptions>,
    ) -> Result<LeaseGrantResponse> {
        let req = LeaseGrantRequest {
            ttl,
            id: opts.unwrap_or_default().id,
        };
        self.inner
            .call(Retry::NonRepeatable, |svc| async move {
                RawLease::new(svc).lease_grant(req).await
            })
            .await
    }

    /// Revokes a lease, deleting its keys.
    pub async fn revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        self.inner
            .call(Retry::Repeatable, |svc| async move {
                RawLease::new(svc)
                    .lease_revoke(LeaseRevokeRequest { id })
                    .await
            })
            .await
    }

    /// A lease's remaining and granted TTL (and keys).
    pub async fn time_to_live(
        &self,
        id: i64,
        opts: Option<LeaseTimeToLiveOptions>,
    ) -> Result<LeaseTimeToLiveResponse> {
        let keys = opts.unwrap_or_default().keys;
        self.inner
            .call(Retry::Repeatable, |svc| async move {
                RawLease::new(svc)
                    .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                    .await
            })
            .await
    }

    /// Every lease.
    pub async fn leases(&self) -> Result<LeaseLeasesResponse> {
        self.inner
            .call(Retry::Repeatable, |svc| async move {
                RawLease::new(svc).lease_leases(LeaseLeasesRequest {}).await
            })
            .await
    }

    /// Opens a raw keep-alive stream and sends the first keep-alive (its answer is the stream's
    /// first message); send more with the [`LeaseKeeper`], read answers from the
    /// [`LeaseKeepAliveStream`]. It is not re-opened when the member fails; use
    /// [`LeaseClient::keep_alive_task`] for that.
    pub async fn keep_alive(&self, id: i64) -> Result<(LeaseKeeper, LeaseKeepAliveStream)> {
        let (svc, i) = self.inner.service().await?;
        let (tx, rx) = mpsc::channel(16);
        // etcd sends the stream's headers with its first message: the first keep-alive must go
        // out before the stream can be opened.
        tx.send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| Error::Closed("lease keep-alive stream"))?;
        let mut raw = RawLease::new(svc);
        let open = raw.lease_keep_alive(channel_stream(rx));
        let stream = match self.inner.opts.timeout {
            Some(t) => tokio::time::timeout(t, open)
                .await
                .map_err(|_| Error::Timeout)?,
            None => open.await,
        };
        match stream {
            Ok(stream) => Ok((
                LeaseKeeper { id, tx },
                LeaseKeepAliveStream {
                    stream: stream.into_inner(),
                },
            )),
            Err(status) => {
                if Inner::should_failover(&status) {
                    self.inner.mark_down(i).await;
                }
                Err(Error::from_status(status))
            }
        }
    }

    /// Sends one keep-alive and returns its answer (TTL 0: the lease is gone).
    pub async fn keep_alive_once(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let (_keeper, mut stream) = self.keep_alive(id).await?;
        stream
            .message()
            .await?
            .ok_or(Error::Closed("lease keep-alive stream"))
    }

    /// Starts a background task keeping lease `id` alive until stopped or dropped, failing over
    /// to other endpoints. Must be called inside a tokio runtime.
    pub fn keep_alive_task(&self, id: i64) -> KeepAliveHandle {
        let (ttl_tx, ttl) = watch::channel(0);
        let (stop_tx, stop) = oneshot::channel();
        let task = tokio::spawn(keep_alive_loop(self.inner.clone(), id, ttl_tx, stop, None));
        KeepAliveHandle {
            id,
            ttl,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Like [`LeaseClient::keep_alive_task`], and also hands over every answer with a positive
    /// TTL (one per renewal, every third of the TTL, as etcd's clientv3 `KeepAlive` channel).
    /// The answers end when the task ends ([`KeepAliveHandle::wait`] tells why); dropping the
    /// receiver stops the task. Must be called inside a tokio runtime.
    pub fn keep_alive_responses(
        &self,
        id: i64,
    ) -> (KeepAliveHandle, mpsc::Receiver<LeaseKeepAliveResponse>) {
        let (ttl_tx, ttl) = watch::channel(0);
        let (stop_tx, stop) = oneshot::channel();
        let (resp_tx, resp_rx) = mpsc::channel(16);
        let task = tokio::spawn(keep_alive_loop(
            self.inner.clone(),
            id,
            ttl_tx,
            stop,
            Some(resp_tx),
        ));
        let handle = KeepAliveHandle {
            id,
            ttl,
            stop: Some(stop_tx),
            task: Some(task),
        };
        (handle, resp_rx)
    }
}

/// Raw requests: etcd's request messages as they are, with the pool's balancing, failover,
/// retry rules and auth token (see the crate docs, "Raw requests").
impl LeaseClient {
    /// Lease.LeaseGrant (not repeatable).
    pub async fn lease_grant_request(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        unary!(self, Retry::NonRepeatable, RawLease, lease_grant, req)
    }

    /// Lease.LeaseRevoke (repeatable: revoking twice is harmless).
    pub async fn lease_revoke_request(
        &self,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse> {
        unary!(self, Retry::Repeatable, RawLease, lease_revoke, req)
    }

    /// Lease.LeaseTimeToLive (repeatable).
    pub async fn lease_time_to_live_request(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        unary!(self, Retry::Repeatable, RawLease, lease_time_to_live, req)
    }

    /// Lease.LeaseLeases (repeatable).
    pub async fn lease_leases_request(
        &self,
        req: LeaseLeasesRequest,
    ) -> Result<LeaseLeasesResponse> {
        unary!(self, Retry::Repeatable, RawLease, lease_leases, req)
    }
}
