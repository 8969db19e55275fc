//! The watch hub: serves `etcdserverpb.Watch` streams from the store's event broadcast.
//!
//! Each stream runs one task owning its watchers. The task subscribes to
//! [`KvStore::subscribe`](crate::mvcc::store::KvStore::subscribe) once, before reading any
//! revision, so every batch applied after that reaches it; watchers that are *synced* are fed
//! from that subscription, *unsynced* ones (a start revision in the past, or a stream that fell
//! behind) catch up from the store with `events_between`, at most [`CATCH_UP_REVISIONS`] revisions
//! at a time, before going live.
//!
//! Ordering: every watcher keeps the next revision it has to deliver (`next_rev`); events below
//! it are skipped whatever their source, so nothing is sent twice, and a watcher only goes live
//! once the store has nothing newer for it than what the subscription will still deliver, so
//! nothing is skipped. Live events go out one response per revision (a txn is never split except
//! by fragmenting); catch-up responses carry whole revisions.
//!
//! Slow clients never slow down apply: the broadcast drops what a stream does not take in time
//! (the stream is told it lagged, and all its live watchers become unsynced and catch up from the
//! store), and the task stops taking events while its own bounded output queue is full, so a
//! client that does not read only makes its stream fall behind.

#[cfg(test)]
mod tests;
mod watcher;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tonic::Status;
use xline_proto::etcdserverpb::{
    ResponseHeader, WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
    watch_request,
};
use xline_proto::mvccpb::Event;

use crate::auth::Caller;
use crate::config::GRPC_OVERHEAD_BYTES;
use crate::error::{EtcdError, ServerError};
use crate::mvcc::store::AppliedEvents;
use crate::server::ServerContext;
pub use watcher::KeyRange;
use watcher::{Watcher, event_revision, events_response, fragments};

/// How many revisions one catch-up read covers (etcd's `watchBatchMaxRevs`).
pub const CATCH_UP_REVISIONS: i64 = 1000;
/// Responses a stream queues for its client before it stops producing more.
const OUT_QUEUE_HIGH_WATER: usize = 64;
/// Responses in flight between a stream's task and gRPC.
const OUT_CHANNEL_CAPACITY: usize = 16;

/// Why a create request was refused; the text goes to the client as `cancel_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The client chose an id already in use on the stream (etcd's message).
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    /// `key >= range_end` (etcd's message).
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The stream already holds `--max-watchers-per-stream` watchers.
    #[error("etcdserver: too many watchers on this watch stream (--max-watchers-per-stream)")]
    TooManyWatchers,
    /// Auth is enabled and the stream's user may not read the range (etcd's text: the
    /// gRPC error's full string).
    #[error("rpc error: code = PermissionDenied desc = etcdserver: permission denied")]
    PermissionDenied,
}

/// Serves Watch streams; stops them all at shutdown.
#[derive(Debug)]
pub struct WatchHub {
    ctx: Arc<ServerContext>,
    stop: watch::Sender<bool>,
}

/// Items of a Watch response stream.
pub type WatchItem = Result<WatchResponse, Status>;

impl WatchHub {
    /// A hub over the member's store.
    pub fn new(ctx: Arc<ServerContext>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            stop: watch::channel(false).0,
        })
    }

    /// Ends every open stream (with etcd's "server stopped") and refuses new ones, so a graceful
    /// shutdown does not wait for watch clients to leave.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Starts serving one stream of requests; returns its responses.
    pub fn open_stream<S>(&self, requests: S) -> mpsc::Receiver<WatchItem>
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        self.open_stream_as(requests, Caller::default())
    }

    /// [`Self::open_stream`] for `caller`: with auth enabled, each create request is refused
    /// unless the caller's user may read the range.
    pub fn open_stream_as<S>(&self, requests: S, caller: Caller) -> mpsc::Receiver<WatchItem>
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(OUT_CHANNEL_CAPACITY);
        let mut stream = WatchStream::new(Arc::clone(&self.ctx));
        stream.caller = caller;
        let stop = self.stop.subscribe();
        tokio::spawn(stream.run(requests, tx, stop));
        rx
    }
}

/// One stream's watchers and pending output.
struct WatchStream {
    ctx: Arc<ServerContext>,
    watchers: BTreeMap<i64, Watcher>,
    /// Ids of watchers ended by compaction: as in etcd they stay taken until canceled.
    compacted: BTreeSet<i64>,
    /// The next server-chosen id candidate.
    next_id: i64,
    /// The newest batch revision taken from the broadcast (or the revision when subscribing).
    seen: i64,
    /// Some watcher may be unsynced (kept instead of scanning every watcher on each step; a
    /// stale `true` only costs one catch-up step that finds nothing to do).
    unsynced: bool,
    /// A progress request waiting for every watcher to have sent everything up to this revision.
    progress_wanted: Option<i64>,
    out: VecDeque<WatchResponse>,
    /// The client's credentials (`crate::auth`).
    caller: Caller,
}

impl WatchStream {
    fn new(ctx: Arc<ServerContext>) -> Self {
        Self {
            ctx,
            watchers: BTreeMap::new(),
            compacted: BTreeSet::new(),
            next_id: 0,
            seen: 0,
            unsynced: false,
            progress_wanted: None,
            out: VecDeque::new(),
            caller: Caller::default(),
        }
    }

    fn has_room(&self) -> bool {
        self.out.len() < OUT_QUEUE_HIGH_WATER
    }

    fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    /// The stream's main loop: client requests, live batches, catch-up, progress, output.
    async fn run<S>(
        mut self,
        mut requests: S,
        tx: mpsc::Sender<WatchItem>,
        mut stop: watch::Receiver<bool>,
    ) where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let mut events = self.ctx.store.subscribe();
        // Read after subscribing: every batch above this revision reaches `events`.
        self.seen = self.ctx.store.current_revision();
        let interval = self
            .ctx
            .config
            .experimental_watch_progress_notify_interval
            .max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut requests_open = true;
        if *stop.borrow_and_update() {
            let _ = tx.try_send(Err(ServerError::from(EtcdError::Stopped).into()));
            return;
        }
        loop {
            if self.has_room()
                && self.has_unsynced()
                && let Err(e) = self.catch_up().await
            {
                tracing::warn!(error = %e, "watch stream failed to read history");
                let _ = tx.send(Err(e.into())).await;
                return;
            }
            self.answer_progress();
            let room = self.has_room();
            let more_catch_up = room && self.has_unsynced();
            tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow_and_update() {
                        let _ = tx.try_send(Err(ServerError::from(EtcdError::Stopped).into()));
                        return;
                    }
                }
                permit = tx.reserve(), if !self.out.is_empty() => {
                    let Ok(permit) = permit else { return };
                    if let Some(resp) = self.out.pop_front() {
                        permit.send(Ok(resp));
                    }
                }
                () = tx.closed() => return,
                req = requests.next(), if room && requests_open => match req {
                    Some(Ok(req)) => self.on_request(req),
                    Some(Err(status)) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    // etcd keeps serving a stream whose client half-closed it.
                    None => requests_open = false,
                },
                batch = events.recv(), if room => match batch {
                    Ok(batch) => self.on_batch(&batch),
                    Err(RecvError::Lagged(missed)) => self.on_lag(missed),
                    Err(RecvError::Closed) => {
                        let _ = tx.try_send(Err(ServerError::from(EtcdError::Stopped).into()));
                        return;
                    }
                },
                _ = ticker.tick() => self.on_tick(),
                () = std::future::ready(()), if more_catch_up => {}
            }
        }
    }

    /// etcd fragments responses from `--max-request-bytes` plus its gRPC allowance.
    fn fragment_bytes(&self) -> usize {
        self.ctx
            .config
            .max_request_bytes
            .saturating_add(GRPC_OVERHEAD_BYTES)
    }

    fn header(&self, revision: i64) -> ResponseHeader {
        self.ctx.header(revision)
    }

    fn on_request(&mut self, req: WatchRequest) {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => self.on_create(&create),
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => self.on_cancel(&cancel),
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                let current = self.ctx.store.current_revision();
                self.progress_wanted =
                    Some(self.progress_wanted.map_or(current, |p| p.max(current)));
            }
            // etcd ignores requests it does not understand.
            None => {}
        }
    }

    fn id_taken(&self, id: i64) -> bool {
        self.watchers.contains_key(&id) || self.compacted.contains(&id)
    }

    fn on_create(&mut self, req: &WatchCreateRequest) {
        let current = self.ctx.store.current_revision();
        let created = self.create(req, current);
        let (watch_id, reason) = match created {
            Ok(id) => (id, None),
            Err(e) => (-1, Some(e.to_string())),
        };
        self.out.push_back(WatchResponse {
            header: Some(self.header(current)),
            watch_id,
            created: true,
            canceled: reason.is_some(),
            cancel_reason: reason.unwrap_or_default(),
            ..Default::default()
        });
    }

    fn create(&mut self, req: &WatchCreateRequest, current: i64) -> Result<i64, WatchError> {
        let auth = self.ctx.store.auth();
        if !auth.permits_read(&self.caller, &req.key, &req.range_end) {
            return Err(WatchError::PermissionDenied);
        }
        let range = KeyRange::new(&req.key, &req.range_end)?;
        let limit = self.ctx.config.max_watchers_per_stream;
        // Live watchers only: a compacted watcher's id costs a few bytes until canceled.
        if self.watchers.len() >= limit {
            return Err(WatchError::TooManyWatchers);
        }
        // etcd: id 0 asks the server to choose, counting up from 0 past ids in use.
        let id = if req.watch_id == 0 {
            while self.id_taken(self.next_id) {
                self.next_id += 1;
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        } else if self.id_taken(req.watch_id) {
            return Err(WatchError::DuplicateId);
        } else {
            req.watch_id
        };
        let mut watcher = Watcher::new(id, req, range, current);
        if req.prev_kv {
            watcher.prev_interest = Some(self.ctx.store.prev_kv_interest());
        }
        self.unsynced |= !watcher.synced;
        self.watchers.insert(id, watcher);
        Ok(id)
    }

    fn on_cancel(&mut self, req: &WatchCancelRequest) {
        let id = req.watch_id;
        let known = self.watchers.remove(&id).is_some() | self.compacted.remove(&id);
        // etcd answers only for a watcher it knew.
        if known {
            let current = self.ctx.store.current_revision();
            self.out.push_back(WatchResponse {
                header: Some(self.header(current)),
                watch_id: id,
                canceled: true,
                ..Default::default()
            });
        }
    }

    /// Queues `events` for `w` (fragmented if it asked for that), marking it not idle.
    fn send_events(
        out: &mut VecDeque<WatchResponse>,
        max_bytes: usize,
        header: ResponseHeader,
        w: &mut Watcher,
        events: Vec<Event>,
    ) {
        if events.is_empty() {
            return;
        }
        w.idle = false;
        let resp = events_response(header, w.id, events);
        if w.fragment {
            out.extend(fragments(resp, max_bytes));
        } else {
            out.push_back(resp);
        }
    }

    /// A live batch: each synced watcher gets its events, one response per revision.
    fn on_batch(&mut self, batch: &AppliedEvents) {
        self.seen = self.seen.max(batch.revision);
        if !batch.prev_kv_complete {
            // Applied before this stream's interest in prev_kv counted: such watchers read the
            // batch from the store, which has the previous values.
            for w in self.watchers.values_mut() {
                if w.synced && w.wants_prev_kv() && w.next_rev <= batch.revision {
                    w.synced = false;
                    self.unsynced = true;
                }
            }
        }
        let max_bytes = self.fragment_bytes();
        let mut rest = batch.events.as_slice();
        while let Some(first) = rest.first() {
            let rev = event_revision(first);
            let len = rest
                .iter()
                .position(|ev| event_revision(ev) != rev)
                .unwrap_or(rest.len());
            let (same_rev, tail) = rest.split_at(len);
            rest = tail;
            let header = self.ctx.header(rev);
            for w in self.watchers.values_mut() {
                if !w.synced || w.next_rev > rev {
                    continue;
                }
                let events = w.select(same_rev);
                Self::send_events(&mut self.out, max_bytes, header, w, events);
            }
        }
        for w in self.watchers.values_mut().filter(|w| w.synced) {
            w.next_rev = w.next_rev.max(batch.revision.saturating_add(1));
            w.served = w.served.max(batch.revision);
        }
    }

    /// The broadcast dropped batches this stream did not take in time: every live watcher
    /// catches up from the store, from the revision it had reached.
    fn on_lag(&mut self, missed: u64) {
        tracing::debug!(
            missed,
            "watch stream fell behind; catching up from the store"
        );
        for w in self.watchers.values_mut() {
            w.synced = false;
        }
        self.unsynced = !self.watchers.is_empty();
    }

    /// One catch-up step for the unsynced watchers: cancels those whose next revision was
    /// compacted, then reads up to [`CATCH_UP_REVISIONS`] revisions from the lowest one needed.
    async fn catch_up(&mut self) -> Result<(), ServerError> {
        let compact = self.ctx.store.compact_revision();
        let lost: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| !w.synced && w.next_rev < compact)
            .map(|w| w.id)
            .collect();
        for id in lost {
            self.watchers.remove(&id);
            self.compacted.insert(id);
            // etcd's compaction notice carries no revision in its header.
            self.out.push_back(WatchResponse {
                header: Some(self.header(0)),
                watch_id: id,
                compact_revision: compact,
                canceled: true,
                ..Default::default()
            });
        }
        let Some(from) = self
            .watchers
            .values()
            .filter(|w| !w.synced)
            .map(|w| w.next_rev)
            .min()
        else {
            self.unsynced = false;
            return Ok(());
        };
        let current = self.ctx.store.current_revision();
        let to = if from > current {
            current
        } else {
            current.min(from.saturating_add(CATCH_UP_REVISIONS - 1))
        };
        let events = if from > current {
            Vec::new()
        } else {
            let store = Arc::clone(&self.ctx.store);
            // Revision 1 is the empty store: nothing below it.
            let first = from.max(1);
            let read = tokio::task::spawn_blocking(move || store.events_between(first, to, 0))
                .await
                .map_err(|e| ServerError::Consensus(format!("watch history read failed: {e}")))?;
            match read {
                Ok(events) => events,
                // Compacted meanwhile: the next step cancels the watchers concerned.
                Err(ServerError::Etcd(EtcdError::Compacted)) => return Ok(()),
                Err(e) => return Err(e),
            }
        };
        let max_bytes = self.fragment_bytes();
        let header = self.ctx.header(current);
        for w in self.watchers.values_mut().filter(|w| !w.synced) {
            if w.next_rev <= to {
                let selected = w.select(&events);
                Self::send_events(&mut self.out, max_bytes, header, w, selected);
                w.next_rev = to.saturating_add(1);
            }
            if to == current {
                w.synced = true;
                w.served = current;
            }
        }
        self.unsynced = to < current;
        Ok(())
    }

    /// Answers a pending progress request once every watcher is live and has sent everything up
    /// to the revision that was current when it was asked (etcd 3.5's deferred progress; the
    /// response has watch id -1 and is meant for every watcher of the stream).
    fn answer_progress(&mut self) {
        let Some(wanted) = self.progress_wanted else {
            return;
        };
        if self.has_unsynced() {
            return;
        }
        let served = self
            .watchers
            .values()
            .map(|w| w.served)
            .min()
            .unwrap_or(self.seen);
        if served < wanted {
            return;
        }
        self.progress_wanted = None;
        self.out.push_back(WatchResponse {
            header: Some(self.header(served)),
            watch_id: -1,
            ..Default::default()
        });
    }

    /// The progress ticker: like etcd, each live watcher that asked for progress notifications
    /// and sent nothing since the previous tick gets an empty response with its revision.
    fn on_tick(&mut self) {
        let mut notices = Vec::new();
        for w in self.watchers.values_mut().filter(|w| w.progress_notify) {
            if w.idle && w.synced {
                notices.push((w.id, w.served));
            }
            w.idle = true;
        }
        for (id, served) in notices {
            self.out.push_back(WatchResponse {
                header: Some(self.header(served)),
                watch_id: id,
                ..Default::default()
            });
        }
    }
}
