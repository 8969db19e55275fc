//! Remote clients (the native CURP client, through a client service): fast proposals at the
//! leader with the executor's speculative result (CURP.md F1-F3, D3), witness records answered
//! once journaled (W1, W2, P2), ordered results by proposal id, and a bounded cache of encoded
//! results, so that a retry with the same id after its command was applied (on this member,
//! whoever proposed it) still gets the result (D5, E3 step 6).
//!
//! The cache is filled from the first remote request on (before, no encoder is known): every
//! applied command's output is encoded and kept, at most [`CACHE_ENTRIES`] entries and about
//! [`CACHE_BYTES`] bytes (oldest first out); a client's entries below the `first_incomplete`
//! watermark its later commands carry are dropped as they apply.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::Driver;
use crate::cmd::{Command, CommandExecutor};
use crate::core::{CommandData, Event, Input, ProposeId, Rejection, Role};
use crate::error::ProposeError;
use crate::node::handle::{Encoder, FastReply, KeepAliveReply, RecordReply, Request};
use crate::storage::LogStorage;

/// A client-id lease lives this many election timeouts (etcd's default 1 s gives 10 s; Xline
/// uses 8 s): long enough to ride out a leader change, short enough to purge a crashed
/// client's orphan witness records soon (CURP.md P3).
const LEASE_ELECTION_TIMEOUTS: u32 = 10;
/// Most expired client ids remembered (to tell their clients).
const EXPIRED_REMEMBERED: usize = 65_536;

/// Most cached results.
const CACHE_ENTRIES: usize = 65_536;
/// About the most cached result bytes.
const CACHE_BYTES: usize = 64 << 20;

/// Sender of a fast proposal's answer.
type ProposedTx = oneshot::Sender<Result<FastReply, ProposeError>>;
/// Sender of an ordered result.
type SyncedTx = oneshot::Sender<Result<Bytes, ProposeError>>;
/// Sender of a witness answer.
type RecordTx = oneshot::Sender<Result<RecordReply, ProposeError>>;

/// A remote client's command this member waits to apply.
struct PendingClient<O> {
    /// The command (proposed again, ordered, with the same id).
    data: CommandData,
    /// Encodes its output.
    encode: Encoder<O>,
    /// The fast proposal's waiter, until the leader answers.
    proposed: Option<ProposedTx>,
    /// Waiters for the ordered result.
    synced: Vec<SyncedTx>,
    /// Waiters get `Timeout` after this (and the entry goes).
    deadline: Instant,
    /// Proposed again (ordered path) at this time if still waiting.
    retry_at: Instant,
    /// Times it was handed to the core. A refusal because its client expired proves that it
    /// never executes only when it was proposed once (an earlier copy may be in the log).
    proposals: u32,
}

/// Encoded results by proposal id, bounded.
#[derive(Default)]
struct ResultCache {
    /// The results.
    map: BTreeMap<ProposeId, Bytes>,
    /// Insertion order (ids may already be gone from `map`).
    order: VecDeque<ProposeId>,
    /// Bytes held in `map`.
    bytes: usize,
}

impl ResultCache {
    /// Keeps `output` for `id`, evicting the oldest results beyond the bounds.
    fn insert(&mut self, id: ProposeId, output: Bytes) {
        self.bytes += output.len();
        if let Some(old) = self.map.insert(id, output) {
            self.bytes -= old.len();
        } else {
            self.order.push_back(id);
        }
        while self.map.len() > CACHE_ENTRIES || (self.bytes > CACHE_BYTES && self.map.len() > 1) {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.map.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
        if self.order.len() > 2 * CACHE_ENTRIES {
            let map = &self.map;
            self.order.retain(|id| map.contains_key(id));
        }
    }

    /// The result of `id`, if cached.
    fn get(&self, id: &ProposeId) -> Option<Bytes> {
        self.map.get(id).cloned()
    }

    /// Drops the results of `client` below sequence number `first_incomplete` (the client has
    /// consumed them).
    fn forget_below(&mut self, client: u64, first_incomplete: u64) {
        let from = ProposeId {
            client_id: client,
            seq: 0,
        };
        let to = ProposeId {
            client_id: client,
            seq: first_incomplete,
        };
        if from >= to {
            return;
        }
        let gone: Vec<ProposeId> = self.map.range(from..to).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(old) = self.map.remove(&id) {
                self.bytes -= old.len();
            }
        }
    }
}

/// The driver's remote-client state.
pub(super) struct ClientState<O> {
    /// Remote commands waiting to be applied here.
    pending: HashMap<ProposeId, PendingClient<O>>,
    /// Witness records waiting for their (journaled) answer.
    records: HashMap<ProposeId, Vec<RecordTx>>,
    /// Speculative results of this round, until its `Proposed` events are answered.
    speculated: HashMap<ProposeId, Option<Bytes>>,
    /// Encoded results of applied commands.
    cache: ResultCache,
    /// Set by the first remote request: from then on every output is cached.
    encoder: Option<Encoder<O>>,
    /// Leader: client-id lease deadlines.
    leases: HashMap<u64, Instant>,
    /// Client ids this member expired while leading.
    expired: HashSet<u64>,
}

impl<O> Default for ClientState<O> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            records: HashMap::new(),
            speculated: HashMap::new(),
            cache: ResultCache::default(),
            encoder: None,
            leases: HashMap::new(),
            expired: HashSet::new(),
        }
    }
}

impl<C, E, S> Driver<C, E, S>
where
    C: Command,
    E: CommandExecutor<C>,
    S: LogStorage,
{
    /// The client-id lease's time to live.
    fn lease_ttl(&self) -> Duration {
        self.config.election_timeout * LEASE_ELECTION_TIMEOUTS
    }

    /// Leader: `client_id` was heard from; its lease runs from now.
    fn touch_client(&mut self, client_id: u64, now: Instant) {
        if self.role.role == Role::Leader && !self.client.expired.contains(&client_id) {
            let deadline = now + self.lease_ttl();
            self.client.leases.insert(client_id, deadline);
        }
    }

    /// Takes a remote client's request.
    pub(super) fn client_request(&mut self, req: Request<E::Output>, now: Instant) {
        let deadline = now + self.config.request_timeout;
        match req {
            Request::ClientKeepAlive { client_id, reply } => {
                let answer = if self.role.role != Role::Leader {
                    KeepAliveReply::Rejected(Rejection::NotLeader {
                        leader: self.role.leader,
                        term: self.role.term,
                    })
                } else if self.client.expired.contains(&client_id) {
                    KeepAliveReply::Expired
                } else {
                    self.touch_client(client_id, now);
                    KeepAliveReply::Lease {
                        ttl: self.lease_ttl(),
                    }
                };
                let _ = reply.send(Ok(answer));
            }
            Request::ClientPropose {
                data,
                cluster_version,
                encode,
                reply,
            } => {
                self.client.encoder.get_or_insert(encode);
                if let Some(output) = self.client.cache.get(&data.id) {
                    let _ = reply.send(Ok(FastReply::Applied(output)));
                    return;
                }
                if self.role.role != Role::Leader {
                    let reason = Rejection::NotLeader {
                        leader: self.role.leader,
                        term: self.role.term,
                    };
                    let _ = reply.send(Ok(FastReply::Rejected(reason)));
                    return;
                }
                let version = self.shared.status.lock().membership.version;
                if cluster_version != version {
                    let reason = Rejection::WrongClusterVersion { version };
                    let _ = reply.send(Ok(FastReply::Rejected(reason)));
                    return;
                }
                self.touch_client(data.id.client_id, now);
                let id = data.id;
                let retry_at = now + self.resend_interval();
                let entry = self
                    .client
                    .pending
                    .entry(id)
                    .or_insert_with(|| PendingClient {
                        data: data.clone(),
                        encode,
                        proposed: None,
                        synced: Vec::new(),
                        deadline,
                        retry_at,
                        proposals: 0,
                    });
                entry.deadline = entry.deadline.max(deadline);
                entry.proposals += 1;
                if let Some(previous) = entry.proposed.replace(reply) {
                    // A retry overtook the first attempt: the newer one gets the answer.
                    let _ = previous.send(Err(ProposeError::Timeout));
                }
                self.core.step(Input::Propose {
                    cmd: data,
                    fast: true,
                });
            }
            Request::ClientRecord {
                data,
                term,
                cluster_version,
                encode,
                reply,
            } => {
                // A witness may lead later: results it applies from now on are cached.
                self.client.encoder.get_or_insert(encode);
                self.client.records.entry(data.id).or_default().push(reply);
                self.core.step(Input::Record {
                    cmd: data,
                    term,
                    cluster_version,
                });
            }
            Request::ClientWaitSynced {
                data,
                encode,
                reply,
            } => {
                self.client.encoder.get_or_insert(encode);
                if let Some(output) = self.client.cache.get(&data.id) {
                    let _ = reply.send(Ok(output));
                    return;
                }
                self.touch_client(data.id.client_id, now);
                if let Some(p) = self.client.pending.get_mut(&data.id) {
                    p.deadline = p.deadline.max(deadline);
                    p.synced.push(reply);
                    return;
                }
                let id = data.id;
                self.core.step(Input::Propose {
                    cmd: data.clone(),
                    fast: false,
                });
                self.client.pending.insert(
                    id,
                    PendingClient {
                        data,
                        encode,
                        proposed: None,
                        synced: vec![reply],
                        deadline,
                        retry_at: now + self.resend_interval(),
                        proposals: 1,
                    },
                );
            }
            other => {
                tracing::error!(
                    id = self.config.id,
                    "client_request called with a local request"
                );
                drop(other);
            }
        }
    }

    /// Step 6 of the driver contract for the leader's speculations: the executor's
    /// order-independent results, on the state as applied so far (CURP.md L2 step 4).
    pub(super) fn client_speculate(&mut self, speculate: Vec<CommandData>) {
        for cmd in speculate {
            let encode = self.client.pending.get(&cmd.id).map(|p| p.encode);
            let output = encode.and_then(|encode| {
                let decoded = C::decode(&cmd.payload).ok()?;
                let output = self.executor.speculate(&decoded)?;
                Some(Bytes::from(encode(&output)))
            });
            self.client.speculated.insert(cmd.id, output);
        }
    }

    /// Answers remote clients from `event`; gives it back when it concerns a local request.
    pub(super) fn client_event(&mut self, event: Event) -> Option<Event> {
        match event {
            Event::Proposed { id, conflict, term } => {
                let speculated = self.client.speculated.remove(&id).flatten();
                let output = if conflict { None } else { speculated };
                // F3: without a speculative result (a conflict, or the executor would not
                // speculate) the client needs the ordered one: the answer waits for it
                // (`client_outputs` sends it as `FastReply::Applied`), which saves the client
                // a `WaitSynced` round trip to this leader.
                if output.is_some()
                    && let Some(reply) = self
                        .client
                        .pending
                        .get_mut(&id)
                        .and_then(|p| p.proposed.take())
                {
                    let _ = reply.send(Ok(FastReply::Speculated { term, output }));
                }
                None
            }
            Event::Recorded { id, accepted, term } => {
                for reply in self.client.records.remove(&id).unwrap_or_default() {
                    let _ = reply.send(Ok(RecordReply { accepted, term }));
                }
                None
            }
            Event::Rejected {
                id,
                reason: Rejection::ClientExpired,
            } if self.client.pending.contains_key(&id) || self.client.records.contains_key(&id) => {
                self.client_expired(id);
                None
            }
            Event::Rejected { id, reason } if self.client.pending.contains_key(&id) => {
                let retry_at = Instant::now() + self.retry_delay();
                let p = self.client.pending.get_mut(&id)?;
                if let Some(reply) = p.proposed.take() {
                    let _ = reply.send(Ok(FastReply::Rejected(reason)));
                    if p.synced.is_empty() {
                        self.client.pending.remove(&id);
                    }
                } else {
                    p.retry_at = p.retry_at.min(retry_at);
                }
                None
            }
            other => Some(other),
        }
    }

    /// The core refused `id` because its client expired (CURP.md DD4). Its record waiters are
    /// told so. Its command's waiters too when it was proposed only once (that refused
    /// proposal was its only copy, so it never executes and the client may retry it under a
    /// fresh id); otherwise an earlier copy may have executed, and they get an unknown
    /// outcome. The command is not proposed again: every later copy would be skipped.
    fn client_expired(&mut self, id: ProposeId) {
        for reply in self.client.records.remove(&id).unwrap_or_default() {
            let _ = reply.send(Err(ProposeError::ClientExpired));
        }
        let Some(p) = self.client.pending.remove(&id) else {
            return;
        };
        let certain = p.proposals <= 1;
        tracing::debug!(
            id = self.config.id,
            ?id,
            certain,
            "client expired: proposal refused"
        );
        if let Some(reply) = p.proposed {
            let answer = if certain {
                Ok(FastReply::Rejected(Rejection::ClientExpired))
            } else {
                Err(ProposeError::Timeout)
            };
            let _ = reply.send(answer);
        }
        for reply in p.synced {
            let err = if certain {
                ProposeError::ClientExpired
            } else {
                ProposeError::Timeout
            };
            let _ = reply.send(Err(err));
        }
    }

    /// Drops the round's speculative results that no event claimed.
    pub(super) fn client_round_done(&mut self) {
        self.client.speculated.clear();
    }

    /// A command is being applied (or skipped as a duplicate): its client has consumed the
    /// results below its watermark.
    pub(super) fn client_watermark(&mut self, cmd: &CommandData) {
        if self.client.encoder.is_some() && cmd.first_incomplete > 0 {
            self.client
                .cache
                .forget_below(cmd.id.client_id, cmd.first_incomplete);
        }
    }

    /// Outputs of an executed batch: cached, and sent to remote waiters.
    pub(super) fn client_outputs(&mut self, ids: &[ProposeId], outputs: &[E::Output]) {
        let Some(encoder) = self.client.encoder else {
            return;
        };
        for (id, output) in ids.iter().zip(outputs) {
            let pending = self.client.pending.remove(id);
            let encode = pending.as_ref().map_or(encoder, |p| p.encode);
            let bytes = Bytes::from(encode(output));
            if let Some(p) = pending {
                if let Some(reply) = p.proposed {
                    // A retry whose first copy applies before the leader answered it.
                    let _ = reply.send(Ok(FastReply::Applied(bytes.clone())));
                }
                for reply in p.synced {
                    let _ = reply.send(Ok(bytes.clone()));
                }
            }
            self.client.cache.insert(*id, bytes);
        }
    }

    /// A copy of an executed command was skipped: its waiters get the first execution's
    /// result if it is cached, else [`ProposeError::Duplicate`].
    pub(super) fn client_duplicate(&mut self, id: ProposeId) {
        let Some(p) = self.client.pending.remove(&id) else {
            return;
        };
        let cached = self.client.cache.get(&id);
        for reply in p.synced {
            let _ = reply.send(cached.clone().ok_or(ProposeError::Duplicate));
        }
    }

    /// Deadlines and retries of remote commands; the leader expires lapsed client ids.
    pub(super) fn client_tick(&mut self, now: Instant) {
        if self.role.role == Role::Leader {
            let lapsed: Vec<u64> = self
                .client
                .leases
                .iter()
                .filter(|&(_, &deadline)| now >= deadline)
                .map(|(&id, _)| id)
                .collect();
            for client_id in lapsed {
                tracing::info!(id = self.config.id, client_id, "client id lease expired");
                self.client.leases.remove(&client_id);
                if self.client.expired.len() >= EXPIRED_REMEMBERED {
                    self.client.expired.clear();
                }
                self.client.expired.insert(client_id);
                self.core.step(Input::ExpireClient { client_id });
            }
        } else {
            // Only the leader tracks leases; a new leader starts them afresh.
            self.client.leases.clear();
        }
        let resend = self.resend_interval();
        let mut again = Vec::new();
        self.client.pending.retain(|_, p| {
            if now >= p.deadline {
                if let Some(reply) = p.proposed.take() {
                    let _ = reply.send(Err(ProposeError::Timeout));
                }
                for reply in p.synced.drain(..) {
                    let _ = reply.send(Err(ProposeError::Timeout));
                }
                return false;
            }
            if now >= p.retry_at {
                p.retry_at = now + resend;
                p.proposals += 1;
                again.push(p.data.clone());
            }
            true
        });
        for cmd in again {
            self.core.step(Input::Propose { cmd, fast: false });
        }
    }

    /// A new leader: remote commands are proposed again (same ids) at the next tick; if this
    /// member now leads, every lease it knows restarts (clients keep alive well within it).
    pub(super) fn client_leader_changed(&mut self, now: Instant) {
        let ttl = self.lease_ttl();
        for deadline in self.client.leases.values_mut() {
            *deadline = now + ttl;
        }
        if self.role.role == Role::Leader {
            // Clients whose records or commands this leader inherited get a lease too, so one
            // that crashed before the election still expires (CURP.md P3).
            for client_id in self.core.leader_clients() {
                if !self.client.expired.contains(&client_id) {
                    self.client.leases.entry(client_id).or_insert(now + ttl);
                }
            }
        }
        for p in self.client.pending.values_mut() {
            p.retry_at = now;
        }
    }

    /// The driver stops: every remote waiter gets `err`.
    pub(super) fn client_finish(&mut self, err: &ProposeError) {
        for (_, p) in self.client.pending.drain() {
            if let Some(reply) = p.proposed {
                let _ = reply.send(Err(err.clone()));
            }
            for reply in p.synced {
                let _ = reply.send(Err(err.clone()));
            }
        }
        for (_, replies) in self.client.records.drain() {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client_id: u64, seq: u64) -> ProposeId {
        ProposeId { client_id, seq }
    }

    #[test]
    fn cache_forgets_below_the_watermark_only_for_that_client() {
        let mut cache = ResultCache::default();
        for seq in 1..=4 {
            cache.insert(id(7, seq), Bytes::from(vec![seq as u8]));
            cache.insert(id(8, seq), Bytes::from(vec![seq as u8]));
        }
        cache.forget_below(7, 3);
        assert_eq!(cache.get(&id(7, 2)), None);
        assert_eq!(cache.get(&id(7, 3)), Some(Bytes::from(vec![3])));
        assert_eq!(cache.get(&id(8, 1)), Some(Bytes::from(vec![1])));
        assert_eq!(cache.bytes, 6);
    }

    #[test]
    fn cache_is_bounded_oldest_first() {
        let mut cache = ResultCache::default();
        let total = CACHE_ENTRIES as u64 + 10;
        for seq in 0..total {
            cache.insert(id(1, seq), Bytes::from_static(b"x"));
        }
        assert_eq!(cache.map.len(), CACHE_ENTRIES);
        assert_eq!(cache.get(&id(1, 9)), None);
        assert!(cache.get(&id(1, 10)).is_some());
        assert!(cache.get(&id(1, total - 1)).is_some());
        assert_eq!(cache.bytes, CACHE_ENTRIES);
    }
}
