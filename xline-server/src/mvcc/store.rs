//! The MVCC store: applies committed commands in log order, one backend batch per log batch,
//! and serves reads at any uncompacted revision.
//!
//! Concurrency: the index and revision counters live behind one `RwLock`. Applying a batch holds
//! the write lock until the batch is in the backend, so a reader (which holds the read lock while
//! it fetches values) never sees an index entry whose value is not stored yet, and a physical
//! compaction never deletes a value a reader has already looked up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use parking_lot::RwLock;
use prost::Message;
use tokio::sync::watch;
use xline_proto::etcdserverpb::{AlarmMember, AlarmResponse};
use xline_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse, request_op, response_op,
};
use xline_proto::mvccpb::{Event, KeyValue, event};

use super::index::Index;
use super::range::{Values, View};
use super::revision::Revision;
use crate::command::{Command, Request};
use crate::error::{EtcdError, ServerError};
use crate::lease::{LeaseTable, Lessor, default_min_lease_ttl};
use crate::storage::backend::{Backend, BackendError, WriteBatch};
use crate::storage::schema::{
    META_APPLIED_INDEX, META_CURRENT_REV, META_FINISHED_COMPACT_REV, META_SCHEDULED_COMPACT_REV,
    Table,
};

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandResponse {
    /// `KV.Put`.
    Put(PutResponse),
    /// `KV.DeleteRange`.
    DeleteRange(DeleteRangeResponse),
    /// `KV.Txn`.
    Txn(TxnResponse),
    /// `KV.Compact`.
    Compaction(CompactionResponse),
    /// `Lease.LeaseGrant`.
    LeaseGrant(LeaseGrantResponse),
    /// `Lease.LeaseRevoke`.
    LeaseRevoke(LeaseRevokeResponse),
    /// A member's published attributes were stored.
    MemberPublished,
    /// `Maintenance.Alarm` activate or deactivate: the alarm concerned (none when deactivating
    /// an alarm that was not raised), as etcd answers.
    Alarm(AlarmResponse),
    /// The downgrade state was set.
    DowngradeSet,
    /// An Auth service mutation or Authenticate.
    Auth(crate::auth::AuthApplied),
}

/// What applying a command gives its proposer: a response, or the etcd error it failed with.
pub type ApplyOutput = Result<CommandResponse, EtcdError>;

struct State {
    index: Index,
    current_rev: i64,
    /// The latest scheduled compaction (-1: none); reads below it fail.
    compact_rev: i64,
    applied_index: u64,
    /// Raised alarms, ordered by member then type (the `Alarm` table, in memory).
    alarms: Vec<AlarmMember>,
}

/// A physical compaction to run: the revision and the revisions at or below it to keep.
type CompactionJob = (i64, HashSet<Revision>);

/// The changes one applied batch made, published to watchers after the batch is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedEvents {
    /// Every put and delete, in revision order. Each event's `kv.mod_revision` is its revision
    /// (a delete's `kv` holds the key and that revision only). `prev_kv` is filled when the key
    /// existed before and `prev_kv_complete` is set; watchers that did not ask for it strip it.
    pub events: Vec<Event>,
    /// The store's revision after the batch.
    pub revision: i64,
    /// Whether every event of a key that existed before carries its `prev_kv`. Puts read the
    /// previous value only while someone holds a [`PrevKvInterest`] (or the request needs it),
    /// so a batch applied while none was held may lack them: a watcher that wants `prev_kv`
    /// reads such a batch from the store instead ([`KvStore::events_between`] fills them).
    pub prev_kv_complete: bool,
}

/// While held, applied batches carry every event's `prev_kv` (see
/// [`AppliedEvents::prev_kv_complete`]); watchers that asked for `prev_kv` hold one.
#[derive(Debug)]
pub struct PrevKvInterest(Arc<AtomicUsize>);

impl Drop for PrevKvInterest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How many applied batches a slow subscriber may fall behind before it must catch up from
/// the store (`broadcast` reports the lag).
const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// How many backend keys a restore scan or a physical-compaction step handles at once.
const CHUNK: usize = 1000;

/// The MVCC key-value store.
pub struct KvStore {
    backend: Arc<dyn Backend>,
    state: RwLock<State>,
    /// Jobs for the compactor thread; `None` once the store is dropping.
    compactor: parking_lot::Mutex<Option<mpsc::Sender<CompactionJob>>>,
    compactor_thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    finished_compaction: watch::Receiver<i64>,
    events: tokio::sync::broadcast::Sender<Arc<AppliedEvents>>,
    /// How many [`PrevKvInterest`]s are held.
    prev_kv_interest: Arc<AtomicUsize>,
    /// Leases; changed only by [`KvStore::apply`], except for deadlines.
    lessor: Arc<Lessor>,
    /// Users, roles, the auth switch and tokens; changed only by [`KvStore::apply`].
    auth: Arc<crate::auth::AuthStore>,
}

impl Drop for KvStore {
    /// Stops the compactor (it finishes its current job) so the backend is released on return.
    fn drop(&mut self) {
        drop(self.compactor.lock().take());
        if let Some(thread) = self.compactor_thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

fn meta_i64(backend: &dyn Backend, key: &[u8]) -> Result<Option<i64>, ServerError> {
    match backend.get(Table::Meta, key)? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| ServerError::Corrupt(format!("meta {key:?} has {} bytes", v.len())))?;
            Ok(Some(i64::from_be_bytes(bytes)))
        }
    }
}

impl KvStore {
    /// Opens the store over `backend`, rebuilding the key index from the stored revisions and
    /// resuming an unfinished physical compaction.
    pub fn open(backend: Arc<dyn Backend>) -> Result<Arc<Self>, ServerError> {
        let applied_index = match backend.get(Table::Meta, META_APPLIED_INDEX)? {
            None => 0,
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| ServerError::Corrupt("applied index".into()))?,
            ),
        };
        // etcd's store starts at revision 1: the first write creates revision 2.
        let mut current_rev = meta_i64(&*backend, META_CURRENT_REV)?.unwrap_or(1);
        let scheduled = meta_i64(&*backend, META_SCHEDULED_COMPACT_REV)?.unwrap_or(-1);
        let finished = meta_i64(&*backend, META_FINISHED_COMPACT_REV)?.unwrap_or(-1);

        let mut index = Index::new();
        // The lease of each live key that has one, as of the latest revision scanned.
        let mut key_leases: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut start = Vec::new();
        loop {
            let chunk = backend.range(Table::Kv, &start, &[], CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            start = next_key(last);
            let done = chunk.len() < CHUNK;
            for (key, value) in chunk {
                let (rev, tombstone) = Revision::from_key(&key)
                    .ok_or_else(|| ServerError::Corrupt(format!("kv key {key:?}")))?;
                let kv = KeyValue::decode(value.as_slice())
                    .map_err(|e| ServerError::Corrupt(format!("kv at {rev:?}: {e}")))?;
                if tombstone {
                    index.restore_tombstone(&kv.key, rev);
                    key_leases.remove(&kv.key);
                } else {
                    index.restore_put(&kv.key, rev, kv.create_revision, kv.version);
                    if kv.lease == 0 {
                        key_leases.remove(&kv.key);
                    } else {
                        key_leases.insert(kv.key.clone(), kv.lease);
                    }
                }
                current_rev = current_rev.max(rev.main);
            }
            if done {
                break;
            }
        }
        let lessor = Arc::new(Lessor::new(restore_leases(&*backend, key_leases)?));
        let auth = Arc::new(crate::auth::AuthStore::open(&*backend, applied_index)?);
        let alarms = maintenance::load_alarms(&*backend)?;
        let mut resume = None;
        if scheduled >= 0 {
            let keep = index.compact(scheduled);
            if finished < scheduled {
                resume = Some((scheduled, keep));
            }
        }

        let (done_tx, done_rx) = watch::channel(finished);
        let (tx, rx) = mpsc::channel::<CompactionJob>();
        let worker_backend = Arc::clone(&backend);
        let thread = std::thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || {
                while let Ok((rev, keep)) = rx.recv() {
                    match physical_compaction(&*worker_backend, rev, &keep) {
                        Ok(()) => {
                            let _ = done_tx.send(rev);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, rev, "physical compaction failed");
                            return;
                        }
                    }
                }
            })
            .map_err(ServerError::Io)?;
        if let Some(job) = resume {
            tracing::info!(revision = job.0, "resuming unfinished compaction");
            let _ = tx.send(job);
        }
        Ok(Arc::new(Self {
            backend,
            state: RwLock::new(State {
                index,
                current_rev,
                compact_rev: scheduled,
                applied_index,
                alarms,
            }),
            compactor: parking_lot::Mutex::new(Some(tx)),
            compactor_thread: parking_lot::Mutex::new(Some(thread)),
            finished_compaction: done_rx,
            events: tokio::sync::broadcast::channel(EVENT_CHANNEL_CAPACITY).0,
            prev_kv_interest: Arc::new(AtomicUsize::new(0)),
            lessor,
            auth,
        }))
    }

    /// Users, roles and tokens.
    pub fn auth(&self) -> &Arc<crate::auth::AuthStore> {
        &self.auth
    }

    /// The leases.
    pub fn lessor(&self) -> &Arc<Lessor> {
        &self.lessor
    }

    /// The backend this store writes to.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The newest revision.
    pub fn current_revision(&self) -> i64 {
        self.state.read().current_rev
    }

    /// The latest compaction revision (-1: never compacted).
    pub fn compact_revision(&self) -> i64 {
        self.state.read().compact_rev
    }

    /// The index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.state.read().applied_index
    }

    /// Serves a Range on the latest applied state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, ServerError> {
        let st = self.state.read();
        self.view(&st, None, st.current_rev).range(req)
    }

    /// Serves a txn that writes nothing (see `check::txn_is_read_only`) without consensus.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse, ServerError> {
        let st = self.state.read();
        let view = self.view(&st, None, st.current_rev);
        let mut path = Vec::new();
        txn_path(&view, req, st.current_rev, &mut path)?;
        check_ranges(&view, req, &mut path.iter().copied())?;
        let mut path = path.into_iter();
        let resp = read_txn(&view, req, &mut path)?;
        Ok(resp)
    }

    /// Waits until physical compaction at `rev` or later has finished.
    pub async fn wait_compacted(&self, rev: i64) {
        let mut rx = self.finished_compaction.clone();
        // An error means the compactor stopped (it logged why); nothing more will finish.
        let _ = rx.wait_for(|done| *done >= rev).await;
    }

    /// Applies committed commands, given with their log indexes in log order, as one backend
    /// batch (not yet durable). Each command gets its response or etcd error; a backend failure
    /// is returned as the outer error and leaves the store unusable.
    pub fn apply(&self, batch: &[(u64, Command)]) -> Result<Vec<ApplyOutput>, ServerError> {
        let Some(&(last_index, _)) = batch.last() else {
            return Ok(Vec::new());
        };
        let mut st = self.state.write();
        let mut leases = self.lessor.lock();
        let mut wb = WriteBatch::new();
        let mut pending = HashMap::new();
        let mut compactions = Vec::new();
        let mut events = Vec::new();
        // Read once per batch: the batch is complete or says it is not (see AppliedEvents).
        let with_prev = self.prev_kv_interest.load(Ordering::Acquire) > 0;
        let mut prev_kv_complete = true;
        let mut outputs = Vec::with_capacity(batch.len());
        for (index, cmd) in batch {
            if let Some(request) = &cmd.request {
                // etcd's auth applier: the user's permissions as of this entry.
                let keys_of = |id: i64| {
                    leases
                        .get(id)
                        .map(|l| l.keys().map(<[u8]>::to_vec).collect())
                        .unwrap_or_default()
                };
                if let Err(e) = self.auth.check_apply(request, cmd.auth.as_ref(), keys_of) {
                    outputs.push(Err(e));
                    continue;
                }
                if request.is_auth() {
                    let applied = self.auth.apply(request, cmd.auth.as_ref(), *index, &mut wb);
                    outputs.push(applied.map(CommandResponse::Auth));
                    continue;
                }
            }
            let mut applier = Applier {
                backend: &*self.backend,
                main: st.current_rev + 1,
                sub: 0,
                st: &mut st,
                leases: &mut leases,
                wb: &mut wb,
                pending: &mut pending,
                compactions: &mut compactions,
                events: &mut events,
                with_prev,
                prev_kv_complete: &mut prev_kv_complete,
            };
            let result = applier.apply(cmd);
            if applier.sub > 0 {
                let main = applier.main;
                st.current_rev = main;
            }
            match result {
                Ok(resp) => outputs.push(Ok(resp)),
                Err(ServerError::Etcd(e)) => outputs.push(Err(e)),
                Err(fatal) => return Err(fatal),
            }
        }
        st.applied_index = last_index;
        wb.put(Table::Meta, META_APPLIED_INDEX, last_index.to_be_bytes());
        wb.put(Table::Meta, META_CURRENT_REV, st.current_rev.to_be_bytes());
        self.backend.write(wb, false)?;
        let revision = st.current_rev;
        drop(leases);
        drop(st);
        if outputs
            .iter()
            .any(|o| matches!(o, Ok(CommandResponse::LeaseGrant(_))))
        {
            self.lessor.granted();
        }
        if outputs
            .iter()
            .any(|o| matches!(o, Ok(CommandResponse::LeaseRevoke(_))))
        {
            self.lessor.revoked();
        }
        if !events.is_empty() {
            // No subscriber is fine: nobody watches.
            let _ = self.events.send(Arc::new(AppliedEvents {
                events,
                revision,
                prev_kv_complete,
            }));
        }
        let compactor = self.compactor.lock();
        for job in compactions {
            if compactor.as_ref().is_none_or(|tx| tx.send(job).is_err()) {
                return Err(ServerError::Corrupt("the compactor stopped".into()));
            }
        }
        self.auth.set_applied(last_index);
        Ok(outputs)
    }

    /// Subscribes to the events of every batch applied from now on. A receiver that falls more
    /// than a thousand batches behind gets `RecvError::Lagged` and must catch up with
    /// [`KvStore::events_between`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<AppliedEvents>> {
        self.events.subscribe()
    }

    /// Asks for `prev_kv` in the events of the batches applied while the returned value is
    /// held (a batch already being applied may still lack them; it says so).
    pub fn prev_kv_interest(&self) -> PrevKvInterest {
        self.prev_kv_interest.fetch_add(1, Ordering::AcqRel);
        PrevKvInterest(Arc::clone(&self.prev_kv_interest))
    }

    /// The stored events with main revision in `from_rev..=to_rev`, in revision order, at most
    /// about `limit` of them (whole revisions are never split; `limit` 0: no limit), read from
    /// the backend. Fails with `Compacted` when `from_rev` is below the compaction point, and with
    /// `FutureRev` past the current revision. Each event carries `prev_kv` when the key existed.
    pub fn events_between(
        &self,
        from_rev: i64,
        to_rev: i64,
        limit: usize,
    ) -> Result<Vec<Event>, ServerError> {
        let st = self.state.read();
        if from_rev < st.compact_rev {
            return Err(EtcdError::Compacted.into());
        }
        let to_rev = to_rev.min(st.current_rev);
        if from_rev > to_rev {
            return Ok(Vec::new());
        }
        let values = Values {
            backend: &*self.backend,
            pending: None,
        };
        let start = Revision::main_key(from_rev);
        let end = Revision::main_key(to_rev.saturating_add(1));
        let mut events = Vec::new();
        let mut last_main = None;
        for (key, value) in self.backend.range(Table::Kv, &start, &end, 0)? {
            let (rev, tombstone) = Revision::from_key(&key)
                .ok_or_else(|| ServerError::Corrupt(format!("kv key {key:?}")))?;
            if limit > 0 && events.len() >= limit && last_main != Some(rev.main) {
                break;
            }
            last_main = Some(rev.main);
            let mut kv = KeyValue::decode(value.as_slice())
                .map_err(|e| ServerError::Corrupt(format!("kv at {rev:?}: {e}")))?;
            // The value the key had just before this write, if any.
            let prev_kv = match st.index.get(&kv.key, rev.main - 1) {
                Some(prev) if rev.main > st.compact_rev => Some(values.get(prev.modified)?),
                _ => None,
            };
            let kind = if tombstone {
                kv.mod_revision = rev.main;
                event::EventType::Delete
            } else {
                event::EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv,
            });
        }
        Ok(events)
    }

    /// The attributes members published (name, client URLs), by member id.
    pub fn published_members(&self) -> Result<Vec<xline_proto::etcdserverpb::Member>, ServerError> {
        self.backend
            .range(Table::Members, &[], &[], 0)?
            .into_iter()
            .map(|(_, v)| {
                xline_proto::etcdserverpb::Member::decode(v.as_slice())
                    .map_err(|e| ServerError::Corrupt(format!("member record: {e}")))
            })
            .collect()
    }

    /// Makes every applied batch durable; returns the applied index that now is.
    pub fn flush(&self) -> Result<u64, BackendError> {
        let applied = self.applied_index();
        self.backend.sync()?;
        Ok(applied)
    }

    fn view<'a>(
        &'a self,
        st: &'a State,
        pending: Option<&'a HashMap<Revision, KeyValue>>,
        current_rev: i64,
    ) -> View<'a> {
        View {
            index: &st.index,
            values: Values {
                backend: &*self.backend,
                pending,
            },
            current_rev,
            compact_rev: st.compact_rev,
        }
    }
}

/// The smallest key greater than `key`.
fn next_key(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// Deletes every stored revision at or below `rev` that `keep` does not list, in chunks, then
/// records the compaction as finished.
fn physical_compaction(
    backend: &dyn Backend,
    rev: i64,
    keep: &HashSet<Revision>,
) -> Result<(), ServerError> {
    let end = Revision::main_key(rev.saturating_add(1));
    let mut start = Vec::new();
    loop {
        let chunk = backend.range(Table::Kv, &start, &end, CHUNK)?;
        let Some((last, _)) = chunk.last() else { break };
        start = next_key(last);
        let mut wb = WriteBatch::new();
        for (key, _) in &chunk {
            match Revision::from_key(key) {
                Some((r, _)) if keep.contains(&r) => {}
                _ => wb.delete(Table::Kv, key.clone()),
            }
        }
        if !wb.is_empty() {
            backend.write(wb, false)?;
        }
        if chunk.len() < CHUNK {
            break;
        }
    }
    let mut wb = WriteBatch::new();
    wb.put(Table::Meta, META_FINISHED_COMPACT_REV, rev.to_be_bytes());
    backend.write(wb, false)?;
    Ok(())
}

/// Applies one command: the writes of one request share main revision `main`.
struct Applier<'a> {
    backend: &'a dyn Backend,
    st: &'a mut State,
    leases: &'a mut LeaseTable,
    wb: &'a mut WriteBatch,
    pending: &'a mut HashMap<Revision, KeyValue>,
    compactions: &'a mut Vec<CompactionJob>,
    events: &'a mut Vec<Event>,
    /// Fill every event's `prev_kv` (someone holds a [`PrevKvInterest`]).
    with_prev: bool,
    /// Cleared when an event of a key that existed lacks its `prev_kv`.
    prev_kv_complete: &'a mut bool,
    main: i64,
    /// Writes done so far by this request.
    sub: i64,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

impl Applier<'_> {
    fn apply(&mut self, cmd: &Command) -> Result<CommandResponse, ServerError> {
        maintenance::check_alarms(&self.st.alarms, cmd)?;
        match &cmd.request {
            Some(Request::Put(req)) => {
                self.check_lease(req.lease)?;
                self.put(req).map(CommandResponse::Put)
            }
            Some(Request::DeleteRange(req)) => {
                self.delete_range(req).map(CommandResponse::DeleteRange)
            }
            Some(Request::Txn(req)) => self.txn(req).map(CommandResponse::Txn),
            Some(Request::Compaction(req)) => self.compact(req).map(CommandResponse::Compaction),
            Some(Request::LeaseGrant(req)) => {
                self.lease_grant(req).map(CommandResponse::LeaseGrant)
            }
            Some(Request::LeaseRevoke(req)) => {
                self.lease_revoke(req).map(CommandResponse::LeaseRevoke)
            }
            Some(Request::PublishMember(member)) => {
                self.wb.put(
                    Table::Members,
                    member.id.to_be_bytes(),
                    member.encode_to_vec(),
                );
                Ok(CommandResponse::MemberPublished)
            }
            Some(Request::Alarm(req)) => {
                maintenance::apply_alarm(&mut self.st.alarms, self.wb, req).map(|alarms| {
                    CommandResponse::Alarm(AlarmResponse {
                        header: header(self.st.current_rev),
                        alarms,
                    })
                })
            }
            Some(Request::Downgrade(info)) => {
                maintenance::apply_downgrade(self.wb, info);
                Ok(CommandResponse::DowngradeSet)
            }
            Some(
                Request::AuthEnable(_)
                | Request::AuthDisable(_)
                | Request::Authenticate(_)
                | Request::UserAdd(_)
                | Request::UserDelete(_)
                | Request::UserChangePassword(_)
                | Request::UserGrantRole(_)
                | Request::UserRevokeRole(_)
                | Request::RoleAdd(_)
                | Request::RoleDelete(_)
                | Request::RoleGrantPermission(_)
                | Request::RoleRevokePermission(_),
            ) => Err(ServerError::Corrupt(
                "auth commands are applied by the auth store".into(),
            )),
            None => Err(ServerError::Corrupt("command without a request".into())),
        }
    }

    /// The revision reads inside this request see: its own writes once it has made some.
    fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.st.current_rev
        }
    }

    fn view(&self) -> View<'_> {
        View {
            index: &self.st.index,
            values: Values {
                backend: self.backend,
                pending: Some(self.pending),
            },
            current_rev: self.read_rev(),
            compact_rev: self.st.compact_rev,
        }
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, ServerError> {
        let rev_now = self.read_rev();
        // One index search per put: the key's history is looked up once, read, then extended
        // (created empty unless the put may fail for want of a previous value).
        let needs_prev = req.ignore_value || req.ignore_lease;
        let history = if needs_prev {
            self.st.index.key_mut(&req.key)
        } else {
            Some(self.st.index.entry(&req.key))
        };
        let state = history.as_ref().and_then(|ki| ki.get(rev_now));
        let Some(history) = history.filter(|_| state.is_some() || !needs_prev) else {
            return Err(EtcdError::KeyNotFound.into());
        };
        // The index knows the key's creation and version and the lease table its lease, so the
        // previous value is read only when someone needs it (etcd reads it for the same cases).
        let prev = match state {
            Some(s) if req.prev_kv || req.ignore_value || self.with_prev => {
                let values = Values {
                    backend: self.backend,
                    pending: Some(&*self.pending),
                };
                Some(values.get(s.modified)?)
            }
            Some(_) => {
                *self.prev_kv_complete = false;
                None
            }
            None => None,
        };
        let old_lease = match &prev {
            Some(p) => p.lease,
            None if state.is_some() => self.leases.lease_of(&req.key),
            None => 0,
        };
        if let (Some(p), Some(s)) = (&prev, state) {
            debug_assert_eq!(
                (p.create_revision, p.version),
                (s.created.main, s.version),
                "the index agrees with the stored value"
            );
            // (A key restored with a lease that no longer exists is attached to none.)
            debug_assert!(
                p.lease == self.leases.lease_of(&req.key) || !self.leases.contains(p.lease),
                "the lease table agrees with the stored value"
            );
        }
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = if req.ignore_lease {
            old_lease
        } else {
            req.lease
        };
        let rev = Revision::new(self.main, self.sub);
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: state.map_or(self.main, |s| s.created.main),
            mod_revision: self.main,
            version: state.map_or(1, |s| s.version + 1),
            value,
            lease,
        };
        self.wb
            .put(Table::Kv, rev.to_key(false), kv.encode_to_vec());
        Index::record_put(history, &req.key, rev);
        if old_lease != 0 && old_lease != lease {
            self.leases.detach(old_lease, &req.key);
        }
        if lease != 0 && !self.leases.attach(lease, &req.key) {
            // A new lease was checked before anything was written, and a key's lease outlives
            // the key; only a key restored with a missing lease (logged at startup) gets here.
            tracing::warn!(key = ?String::from_utf8_lossy(&req.key), lease = %format!("{lease:x}"),
                "kept the lease of a key, but the lease does not exist");
        }
        self.events.push(Event {
            r#type: event::EventType::Put as i32,
            kv: Some(kv.clone()),
            prev_kv: prev.clone(),
        });
        self.pending.insert(rev, kv);
        self.sub += 1;
        Ok(PutResponse {
            header: header(self.main),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ServerError> {
        let rev_now = self.read_rev();
        let keys = self.st.index.range(&req.key, &req.range_end, rev_now, 0);
        // Watchers may want the deleted values too, so they are read whether or not the request
        // asked for them.
        let mut prev_kvs = Vec::with_capacity(keys.len());
        {
            let view = self.view();
            for (_, r) in &keys {
                prev_kvs.push(view.values.get(*r)?);
            }
        }
        for ((key, _), prev) in keys.iter().zip(&prev_kvs) {
            let rev = Revision::new(self.main, self.sub);
            if !self.st.index.tombstone(key, rev) {
                return Err(ServerError::Corrupt(format!(
                    "deleting {key:?}, which the index listed"
                )));
            }
            if prev.lease != 0 {
                self.leases.detach(prev.lease, key);
            }
            let tomb = KeyValue {
                key: key.clone(),
                ..Default::default()
            };
            self.wb
                .put(Table::Kv, rev.to_key(true), tomb.encode_to_vec());
            self.events.push(Event {
                r#type: event::EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: key.clone(),
                    mod_revision: self.main,
                    ..Default::default()
                }),
                prev_kv: Some(prev.clone()),
            });
            self.sub += 1;
        }
        Ok(DeleteRangeResponse {
            header: header(self.read_rev()),
            deleted: keys.len() as i64,
            prev_kvs: if req.prev_kv { prev_kvs } else { Vec::new() },
        })
    }

    fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, ServerError> {
        // Every compare on the chosen path sees the state before the txn, as in etcd; then the
        // chosen ops are checked against it before anything is written.
        let begin = self.st.current_rev;
        let mut path = Vec::new();
        {
            let view = self.view();
            txn_path(&view, req, begin, &mut path)?;
            check_ranges(&view, req, &mut path.iter().copied())?;
        }
        self.check_puts(req, &mut path.iter().copied())?;
        let mut path = path.into_iter();
        let mut resp = self.exec_txn(req, &mut path)?;
        resp.header = header(self.read_rev());
        Ok(resp)
    }

    fn check_puts(
        &self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<(), ServerError> {
        for op in branch(req, path.next().unwrap_or(false)) {
            match &op.request {
                Some(request_op::Request::RequestPut(put)) => {
                    if (put.ignore_value || put.ignore_lease)
                        && self.st.index.get(&put.key, self.st.current_rev).is_none()
                    {
                        return Err(EtcdError::KeyNotFound.into());
                    }
                    self.check_lease(put.lease)?;
                }
                Some(request_op::Request::RequestTxn(inner)) => self.check_puts(inner, path)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn exec_txn(
        &mut self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse, ServerError> {
        let succeeded = path.next().unwrap_or(false);
        let mut responses = Vec::new();
        for op in branch(req, succeeded) {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    response_op::Response::ResponseRange(self.view().range(r)?)
                }
                Some(request_op::Request::RequestPut(p)) => {
                    response_op::Response::ResponsePut(self.put(p)?)
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    response_op::Response::ResponseDeleteRange(self.delete_range(d)?)
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    let mut inner = self.exec_txn(t, path)?;
                    inner.header = header(self.read_rev());
                    response_op::Response::ResponseTxn(inner)
                }
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    /// A put may only name a lease that exists (0: none).
    fn check_lease(&self, lease: i64) -> Result<(), ServerError> {
        if lease != 0 && !self.leases.contains(lease) {
            return Err(EtcdError::LeaseNotFound.into());
        }
        Ok(())
    }

    fn lease_grant(&mut self, req: &LeaseGrantRequest) -> Result<LeaseGrantResponse, ServerError> {
        let ttl = self
            .leases
            .grant(req.id, req.ttl, tokio::time::Instant::now())?;
        self.wb
            .put(Table::Lease, lease_key(req.id), ttl.to_be_bytes());
        Ok(LeaseGrantResponse {
            header: header(self.st.current_rev),
            id: req.id,
            ttl,
            error: String::new(),
        })
    }

    /// Deletes every key attached to the lease, in key order and in one revision (none when it
    /// has no keys), with the events of a DeleteRange, then the lease itself.
    fn lease_revoke(
        &mut self,
        req: &LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, ServerError> {
        let Some(lease) = self.leases.get(req.id) else {
            return Err(EtcdError::LeaseNotFound.into());
        };
        let keys: Vec<Vec<u8>> = lease.keys().map(<[u8]>::to_vec).collect();
        for key in keys {
            let deleted = self.delete_range(&DeleteRangeRequest {
                key,
                ..Default::default()
            })?;
            if deleted.deleted != 1 {
                return Err(ServerError::Corrupt(format!(
                    "lease {:x} lists a key that does not exist",
                    req.id
                )));
            }
        }
        self.leases.revoke(req.id);
        self.wb.delete(Table::Lease, lease_key(req.id));
        Ok(LeaseRevokeResponse {
            header: header(self.read_rev()),
        })
    }

    fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, ServerError> {
        let rev = req.revision;
        if rev <= self.st.compact_rev {
            return Err(EtcdError::Compacted.into());
        }
        if rev > self.st.current_rev {
            return Err(EtcdError::FutureRev.into());
        }
        let keep = self.st.index.compact(rev);
        self.st.compact_rev = rev;
        self.wb
            .put(Table::Meta, META_SCHEDULED_COMPACT_REV, rev.to_be_bytes());
        self.compactions.push((rev, keep));
        Ok(CompactionResponse {
            header: header(self.st.current_rev),
        })
    }
}

/// Reads the lease table back and attaches each live key to the lease its latest revision names.
fn restore_leases(
    backend: &dyn Backend,
    key_leases: HashMap<Vec<u8>, i64>,
) -> Result<LeaseTable, ServerError> {
    let now = tokio::time::Instant::now();
    let mut table = LeaseTable::new(default_min_lease_ttl());
    for (key, value) in backend.range(Table::Lease, &[], &[], 0)? {
        let (Ok(id), Ok(ttl)) = (
            <[u8; 8]>::try_from(key.as_slice()),
            <[u8; 8]>::try_from(value.as_slice()),
        ) else {
            return Err(ServerError::Corrupt(format!(
                "lease entry {key:?} -> {value:?}"
            )));
        };
        table.restore(i64::from_be_bytes(id), i64::from_be_bytes(ttl), now);
    }
    for (key, lease) in key_leases {
        if !table.attach(lease, &key) {
            // Revoking a lease deletes its keys in the same batch, so this means damage.
            tracing::warn!(key = ?String::from_utf8_lossy(&key), lease = %format!("{lease:x}"),
                "a key names a lease that does not exist; it will not expire");
        }
    }
    Ok(table)
}

/// The backend key of lease `id` in `Table::Lease`.
fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Records, depth first in execution order, which branch each txn on the taken path takes.
fn txn_path(
    view: &View<'_>,
    req: &TxnRequest,
    rev: i64,
    path: &mut Vec<bool>,
) -> Result<(), ServerError> {
    let mut ok = true;
    for cmp in &req.compare {
        if !view.compare(cmp, rev)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in branch(req, ok) {
        if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
            txn_path(view, inner, rev, path)?;
        }
    }
    Ok(())
}

/// Rejects the txn up front if a range on its path names a compacted or future revision.
fn check_ranges(
    view: &View<'_>,
    req: &TxnRequest,
    path: &mut impl Iterator<Item = bool>,
) -> Result<(), ServerError> {
    for op in branch(req, path.next().unwrap_or(false)) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) if r.revision != 0 => {
                view.resolve_rev(r.revision)?;
            }
            Some(request_op::Request::RequestTxn(inner)) => check_ranges(view, inner, path)?,
            _ => {}
        }
    }
    Ok(())
}

fn read_txn(
    view: &View<'_>,
    req: &TxnRequest,
    path: &mut impl Iterator<Item = bool>,
) -> Result<TxnResponse, ServerError> {
    let succeeded = path.next().unwrap_or(false);
    let mut responses = Vec::new();
    for op in branch(req, succeeded) {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                response_op::Response::ResponseRange(view.range(r)?)
            }
            Some(request_op::Request::RequestTxn(t)) => {
                let mut inner = read_txn(view, t, path)?;
                inner.header = header(view.current_rev);
                response_op::Response::ResponseTxn(inner)
            }
            Some(_) => return Err(ServerError::Corrupt("a write in a read-only txn".into())),
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: header(view.current_rev),
        succeeded,
        responses,
    })
}

/// Alarms, the downgrade state and hashes of the store (the Maintenance service's side).
#[path = "store_maintenance.rs"]
pub mod maintenance;

/// Whole-store images for consensus snapshots (`KvStore::snapshot`, `KvStore::restore`).
#[path = "store_snapshot.rs"]
mod snapshot;

#[cfg(test)]
#[path = "store_test.rs"]
mod tests;

#[cfg(test)]
#[path = "store_lease_test.rs"]
mod lease_tests;
