//! The Watch service, with watches that survive member failures.
//!
//! Every watch runs in its own background task over its own gRPC stream. When the stream fails
//! (the member died, closed the stream, or answered `Unavailable`), the task re-creates the watch
//! on another endpoint from the revision after the last event it delivered (or, if none was
//! delivered yet, after the revision the watch was created at), and drops any event at an older
//! revision: events are neither duplicated nor skipped. If that revision has been compacted
//! meanwhile, the stream yields [`Error::WatchCompacted`] and ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use xline_proto::etcdserverpb::watch_client::WatchClient as RawWatch;
use xline_proto::etcdserverpb::watch_create_request::FilterType;
use xline_proto::etcdserverpb::watch_request::RequestUnion;
use xline_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};

use crate::conn::Inner;
use crate::error::{Error, Result};
use crate::kv::RangeSpec;

/// Options of [`WatchClient::watch`].
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    range: RangeSpec,
    req: WatchCreateRequest,
}

range_methods!(WatchOptions, "Watches", with_range, with_all_keys);

impl WatchOptions {
    /// Watches the key from the current revision on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts at revision `rev` (events at `rev` and later; 0: from now on).
    #[must_use]
    pub fn with_start_revision(mut self, rev: i64) -> Self {
        self.req.start_revision = rev;
        self
    }

    /// Events carry the previous key-value.
    #[must_use]
    pub fn with_prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }

    /// The server sends periodic progress notifications when idle.
    #[must_use]
    pub fn with_progress_notify(mut self) -> Self {
        self.req.progress_notify = true;
        self
    }

    /// Leaves put events out.
    #[must_use]
    pub fn with_filter_put(mut self) -> Self {
        self.req.filters.push(FilterType::Noput as i32);
        self
    }

    /// Leaves delete events out.
    #[must_use]
    pub fn with_filter_delete(mut self) -> Self {
        self.req.filters.push(FilterType::Nodelete as i32);
        self
    }

    /// Lets the server split large revisions into several responses.
    #[must_use]
    pub fn with_fragment(mut self) -> Self {
        self.req.fragment = true;
        self
    }

    /// The create request these options make for `key`.
    pub fn into_request(self, key: impl Into<Vec<u8>>) -> WatchCreateRequest {
        let (key, range_end) = self.range.resolve(key.into());
        WatchCreateRequest {
            key,
            range_end,
            ..self.req
        }
    }
}

/// What a [`Watcher`] asks of its task.
#[derive(Debug, Clone, Copy)]
enum Control {
    Cancel,
    Progress,
}

/// The control half of a watch: cancel it, ask for progress.
#[derive(Debug, Clone)]
pub struct Watcher {
    watch_id: i64,
    created_revision: i64,
    ctrl: mpsc::UnboundedSender<Control>,
}

impl Watcher {
    /// The watch id the server gave when the watch was first created (responses carry it even
    /// after the watch was re-created on another member).
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }

    /// The header revision of the creation response.
    pub fn created_revision(&self) -> i64 {
        self.created_revision
    }

    /// Cancels the watch; the stream then yields the server's cancel response and ends.
    pub fn cancel(&self) -> Result<()> {
        self.ctrl
            .send(Control::Cancel)
            .map_err(|_| Error::Closed("watch"))
    }

    /// Asks the server for a progress notification (a response without events).
    pub fn request_progress(&self) -> Result<()> {
        self.ctrl
            .send(Control::Progress)
            .map_err(|_| Error::Closed("watch"))
    }
}

/// The event half of a watch: responses with events, progress notifications, the final cancel
/// response, or an error (after which it ends). Dropping it stops the watch.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchResponse>>,
}

impl WatchStream {
    /// The next response; `None` once the watch has ended.
    pub async fn message(&mut self) -> Result<Option<WatchResponse>> {
        self.rx.recv().await.transpose()
    }
}

impl futures::Stream for WatchStream {
    type Item = Result<WatchResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// The error a creation or cancellation response stands for.
fn cancel_error(resp: &WatchResponse) -> Error {
    if resp.compact_revision > 0 {
        Error::WatchCompacted {
            compact_revision: resp.compact_revision,
        }
    } else {
        Error::WatchCanceled {
            reason: resp.cancel_reason.clone(),
        }
    }
}

/// The state of one watch's task.
struct WatchTask {
    inner: Arc<Inner>,
    create: WatchCreateRequest,
    /// The revision the next delivered event must have at least (0 until known).
    next_rev: i64,
    /// Id and creation revision reported to the user, once created.
    created: Option<(i64, i64)>,
    on_created: Option<oneshot::Sender<Result<(i64, i64)>>>,
    ctrl: mpsc::UnboundedReceiver<Control>,
    ctrl_open: bool,
    out: mpsc::Sender<Result<WatchResponse>>,
    cancel_requested: bool,
    /// [`WatchClient::watch_request`]: cancellations are delivered as the server's responses.
    raw: bool,
}

/// How one stream ended.
enum StreamEnd {
    /// The watch is over (cancelled, failed, or nobody listens).
    Done,
    /// The member failed: re-create the watch elsewhere.
    Failover,
}

impl WatchTask {
    /// Delivers a terminal error: to `watch()` if the watch was never created, else on the stream.
    async fn fail(&mut self, err: Error) {
        match self.on_created.take() {
            Some(tx) => {
                let _ = tx.send(Err(err));
            }
            None => {
                let _ = self.out.send(Err(err)).await;
            }
        }
    }

    async fn run(mut self) {
        let mut failures = 0usize;
        loop {
            let end = self.run_stream().await;
            match end {
                Ok(StreamEnd::Done) => return,
                Ok(StreamEnd::Failover) => {}
                Err(e) => {
                    // Nothing reachable: the first creation reports it, later ones keep trying.
                    if self.created.is_none() {
                        self.fail(e).await;
                        return;
                    }
                    tracing::debug!(error = %e, "watch cannot reconnect yet");
                }
            }
            if self.out.is_closed() {
                return;
            }
            failures += 1;
            tokio::time::sleep(Inner::backoff(failures.min(20))).await;
        }
    }

    /// Handles a failed stream or creation status.
    async fn on_status(&mut self, status: Status, endpoint: usize) -> StreamEnd {
        if self.inner.can_refresh(&status) {
            if let Err(e) = self.inner.refresh_token().await {
                self.fail(e).await;
                return StreamEnd::Done;
            }
            return StreamEnd::Failover;
        }
        if Inner::should_failover(&status) {
            self.inner.mark_down(endpoint).await;
            return StreamEnd::Failover;
        }
        self.fail(Error::from_status(status)).await;
        StreamEnd::Done
    }

    /// Runs one gRPC stream until it ends.
    async fn run_stream(&mut self) -> Result<StreamEnd> {
        let (svc, endpoint) = self.inner.service().await?;
        let (req_tx, req_rx) = mpsc::channel::<WatchRequest>(8);
        let mut create = self.create.clone();
        if self.next_rev > 0 {
            create.start_revision = self.next_rev;
        }
        let first = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        };
        if req_tx.send(first).await.is_err() {
            return Ok(StreamEnd::Failover);
        }
        let requests =
            futures::stream::unfold(
                req_rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let mut raw = RawWatch::new(svc);
        let open = raw.watch(requests);
        let opened = match self.inner.opts.timeout {
            Some(t) if self.created.is_none() => match tokio::time::timeout(t, open).await {
                Ok(r) => r,
                Err(_) => {
                    self.fail(Error::Timeout).await;
                    return Ok(StreamEnd::Done);
                }
            },
            _ => open.await,
        };
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(status) => return Ok(self.on_status(status, endpoint).await),
        };
        let mut server_id: Option<i64> = None;
        loop {
            tokio::select! {
                ctrl = self.ctrl.recv(), if self.ctrl_open => match ctrl {
                    None => self.ctrl_open = false,
                    Some(Control::Cancel) => {
                        self.cancel_requested = true;
                        if let Some(watch_id) = server_id {
                            let cancel = WatchRequest {
                                request_union: Some(RequestUnion::CancelRequest(
                                    WatchCancelRequest { watch_id },
                                )),
                            };
                            let _ = req_tx.send(cancel).await;
                        }
                    }
                    Some(Control::Progress) => {
                        let progress = WatchRequest {
                            request_union: Some(RequestUnion::ProgressRequest(
                                WatchProgressRequest {},
                            )),
                        };
                        let _ = req_tx.send(progress).await;
                    }
                },
                () = self.out.closed() => return Ok(StreamEnd::Done),
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        if let Some(end) = self.on_response(resp, &mut server_id, &req_tx).await {
                            return Ok(end);
                        }
                    }
                    Ok(None) => {
                        self.inner.mark_down(endpoint).await;
                        return Ok(StreamEnd::Failover);
                    }
                    Err(status) => return Ok(self.on_status(status, endpoint).await),
                },
            }
        }
    }

    /// Handles one response; `Some` when the stream is over.
    async fn on_response(
        &mut self,
        mut resp: WatchResponse,
        server_id: &mut Option<i64>,
        req_tx: &mpsc::Sender<WatchRequest>,
    ) -> Option<StreamEnd> {
        let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if resp.created {
            if resp.canceled {
                if self.raw {
                    // The creation was refused: the watch "exists" only to say so.
                    if let Some(tx) = self.on_created.take() {
                        let _ = tx.send(Ok((resp.watch_id, header_rev)));
                    }
                    let _ = self.out.send(Ok(resp)).await;
                } else {
                    self.fail(cancel_error(&resp)).await;
                }
                return Some(StreamEnd::Done);
            }
            *server_id = Some(resp.watch_id);
            if self.next_rev == 0 {
                // "From now on" means the events after the creation revision.
                self.next_rev = if self.create.start_revision > 0 {
                    self.create.start_revision
                } else {
                    header_rev + 1
                };
            }
            if self.created.is_none() {
                self.created = Some((resp.watch_id, header_rev));
                if let Some(tx) = self.on_created.take() {
                    let _ = tx.send(Ok((resp.watch_id, header_rev)));
                }
            }
            if self.cancel_requested {
                let cancel = WatchRequest {
                    request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                        watch_id: resp.watch_id,
                    })),
                };
                let _ = req_tx.send(cancel).await;
            }
            return None;
        }
        let user_id = self.created.map_or(resp.watch_id, |(id, _)| id);
        if self.raw && *server_id != Some(resp.watch_id) {
            // Not this watch's own (a stream-wide progress notification, id -1): as sent.
            return self.deliver(resp).await;
        }
        if resp.canceled {
            if self.raw || (self.cancel_requested && resp.compact_revision == 0) {
                resp.watch_id = user_id;
                let _ = self.out.send(Ok(resp)).await;
            } else {
                self.fail(cancel_error(&resp)).await;
            }
            return Some(StreamEnd::Done);
        }
        resp.watch_id = user_id;
        if resp.events.is_empty() {
            // A progress notification: passed on; the resume point is left alone.
            return self.deliver(resp).await;
        }
        let floor = self.next_rev;
        resp.events
            .retain(|ev| ev.kv.as_ref().is_some_and(|kv| kv.mod_revision >= floor));
        if resp.events.is_empty() {
            return None;
        }
        if !resp.fragment
            && let Some(last) = resp.events.last().and_then(|ev| ev.kv.as_ref())
        {
            self.next_rev = last.mod_revision + 1;
        }
        self.deliver(resp).await
    }

    async fn deliver(&mut self, resp: WatchResponse) -> Option<StreamEnd> {
        if self.out.send(Ok(resp)).await.is_err() {
            return Some(StreamEnd::Done);
        }
        None
    }
}

/// The Watch service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions, WatchOptions};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let (watcher, mut stream) = client
///     .watch()
///     .watch("app/", Some(WatchOptions::new().with_prefix().with_prev_kv()))
///     .await?;
/// client.kv().put("app/x", "1", None).await?;
/// while let Some(resp) = stream.message().await? {
///     for event in &resp.events {
///         let kv = event.kv.as_ref().expect("events carry a key-value");
///         println!("{:?} {:?} @{}", event.r#type(), kv.key, kv.mod_revision);
///     }
///     watcher.cancel()?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WatchClient {
    inner: Arc<Inner>,
}

impl WatchClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Creates a watch and returns once the server confirmed it. Must be called inside a tokio
    /// runtime (the watch runs in a background task).
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<WatchOptions>,
    ) -> Result<(Watcher, WatchStream)> {
        let create = opts.unwrap_or_default().into_request(key);
        self.spawn(create, false).await
    }

    /// Watch, from etcd's create request as it is (raw request; see the crate docs): the
    /// watch resumes after member failures like [`WatchClient::watch`], but the server's
    /// cancel responses (a compacted start revision, a refused creation, a server-side cancel)
    /// are delivered on the stream as the server sent them, the stream then ending, instead of
    /// as [`Error::WatchCompacted`] / [`Error::WatchCanceled`]; responses that are not this
    /// watch's (progress notifications for the whole stream, id -1) keep their watch id.
    pub async fn watch_request(&self, req: WatchCreateRequest) -> Result<(Watcher, WatchStream)> {
        self.spawn(req, true).await
    }

    async fn spawn(&self, create: WatchCreateRequest, raw: bool) -> Result<(Watcher, WatchStream)> {
        let (created_tx, created_rx) = oneshot::channel();
        let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::channel(128);
        let task = WatchTask {
            inner: self.inner.clone(),
            create,
            next_rev: 0,
            created: None,
            on_created: Some(created_tx),
            ctrl: ctrl_rx,
            ctrl_open: true,
            out: out_tx,
            cancel_requested: false,
            raw,
        };
        tokio::spawn(task.run());
        let (watch_id, created_revision) = created_rx
            .await
            .map_err(|_| Error::Closed("watch task"))??;
        Ok((
            Watcher {
                watch_id,
                created_revision,
                ctrl: ctrl_tx,
            },
            WatchStream { rx: out_rx },
        ))
    }
}
