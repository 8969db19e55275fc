//! The lessor: every lease's TTL, expiry and attached keys.
//!
//! [`LeaseTable`] is the bookkeeping, with time passed in (`now`) so that it is deterministic
//! and testable. [`Lessor`] shares one table between the applier (which grants, revokes,
//! attaches and detaches in log order, under the store's write lock), the Lease service
//! (keep-alives, time-to-live) and the expiry task.
//!
//! Expiry is local state, never replicated: only the primary (the member that leads) gives
//! leases a deadline; elsewhere a lease never expires. Becoming primary
//! ([`LeaseTable::promote`]) gives every lease a fresh deadline.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::queue::ExpiryQueue;
use super::{EXPIRED_RETRY_INTERVAL, MAX_LEASE_TTL, REVOKE_RATE_PER_SEC};
use crate::error::EtcdError;

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    id: i64,
    /// The TTL it was granted with, in seconds (the requested TTL raised to the minimum).
    ttl: i64,
    /// When it expires; `None` while this member is not the primary (it never expires here).
    expiry: Option<Instant>,
    /// The keys attached to it.
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The granted TTL in seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// When the lease expires (`None`: not on this member, which is not the primary).
    pub fn expiry(&self) -> Option<Instant> {
        self.expiry
    }

    /// The attached keys, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys.iter().map(Vec::as_slice)
    }

    /// How many keys are attached.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Whole seconds until it expires, truncated as etcd reports them and never negative; the
    /// granted TTL when it does not expire on this member.
    pub fn remaining_secs(&self, now: Instant) -> i64 {
        match self.expiry {
            None => self.ttl,
            Some(expiry) => {
                i64::try_from(expiry.saturating_duration_since(now).as_secs()).unwrap_or(i64::MAX)
            }
        }
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|expiry| expiry <= now)
    }
}

/// The outcome of a keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The lease now expires its TTL from now; the TTL in seconds.
    Renewed(i64),
    /// There is no such lease.
    NotFound,
    /// The lease has expired and its revocation is on its way; it can no longer be renewed.
    Expired,
    /// This member is not the primary: keep-alives belong to the leader.
    NotPrimary,
}

/// Every lease, its expiry order and whether this member is the primary.
#[derive(Debug)]
pub struct LeaseTable {
    leases: HashMap<i64, Lease>,
    /// The lease each attached key is attached to (etcd's item map): a put learns the lease
    /// it replaces without reading the key's previous value.
    key_lease: HashMap<Vec<u8>, i64>,
    /// Due times of the leases that may expire (only while primary).
    queue: ExpiryQueue,
    primary: bool,
    /// The smallest TTL a lease is granted with, in seconds.
    min_ttl: i64,
}

impl LeaseTable {
    /// An empty table, not primary, granting at least `min_ttl` seconds.
    pub fn new(min_ttl: i64) -> Self {
        Self {
            leases: HashMap::new(),
            key_lease: HashMap::new(),
            queue: ExpiryQueue::new(),
            primary: false,
            min_ttl,
        }
    }

    /// The smallest TTL a lease is granted with.
    pub fn min_ttl(&self) -> i64 {
        self.min_ttl
    }

    /// Whether this member tracks expiry.
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// How many leases exist.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease exists.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// The lease `id`.
    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Whether lease `id` exists.
    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Adds a lease read back from storage, with no keys yet (see [`LeaseTable::attach`]).
    pub fn restore(&mut self, id: i64, ttl: i64, now: Instant) {
        self.insert(id, ttl, now);
    }

    /// Grants lease `id` for `ttl` seconds (raised to the minimum TTL), as etcd's applier does;
    /// returns the granted TTL.
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) -> Result<i64, EtcdError> {
        if id == 0 {
            return Err(EtcdError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        let ttl = ttl.max(self.min_ttl);
        self.insert(id, ttl, now);
        Ok(ttl)
    }

    fn insert(&mut self, id: i64, ttl: i64, now: Instant) {
        let expiry = self.primary.then(|| deadline(now, ttl, Duration::ZERO));
        if let Some(expiry) = expiry {
            self.queue.upsert(id, expiry);
        }
        self.leases.insert(
            id,
            Lease {
                id,
                ttl,
                expiry,
                keys: BTreeSet::new(),
            },
        );
    }

    /// Removes lease `id` and returns it (with its keys, which the caller deletes).
    pub fn revoke(&mut self, id: i64) -> Option<Lease> {
        self.queue.remove(id);
        let lease = self.leases.remove(&id)?;
        for key in &lease.keys {
            if self.key_lease.get(key) == Some(&id) {
                self.key_lease.remove(key);
            }
        }
        Some(lease)
    }

    /// The lease `key` is attached to (0: none).
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.key_lease.get(key).copied().unwrap_or(0)
    }

    /// Attaches `key` to lease `id`; false when there is no such lease.
    pub fn attach(&mut self, id: i64, key: &[u8]) -> bool {
        match self.leases.get_mut(&id) {
            Some(lease) => {
                lease.keys.insert(key.to_vec());
                if let Some(old) = self.key_lease.insert(key.to_vec(), id)
                    && old != id
                    && let Some(other) = self.leases.get_mut(&old)
                {
                    // A key has one lease: attaching it elsewhere detaches it here.
                    other.keys.remove(key);
                }
                true
            }
            None => false,
        }
    }

    /// Detaches `key` from lease `id`; false when the lease or the attachment did not exist.
    pub fn detach(&mut self, id: i64, key: &[u8]) -> bool {
        if self.key_lease.get(key) == Some(&id) {
            self.key_lease.remove(key);
        }
        self.leases
            .get_mut(&id)
            .is_some_and(|lease| lease.keys.remove(key))
    }

    /// A keep-alive: the lease expires its TTL from `now`, unless it has already expired.
    pub fn renew(&mut self, id: i64, now: Instant) -> Renewal {
        if !self.primary {
            return Renewal::NotPrimary;
        }
        let Some(lease) = self.leases.get_mut(&id) else {
            return Renewal::NotFound;
        };
        if lease.is_expired(now) {
            return Renewal::Expired;
        }
        let expiry = deadline(now, lease.ttl, Duration::ZERO);
        lease.expiry = Some(expiry);
        self.queue.upsert(id, expiry);
        Renewal::Renewed(lease.ttl)
    }

    /// Every lease id, soonest to expire first (ties and non-expiring leases by id).
    pub fn ids_by_expiry(&self) -> Vec<i64> {
        let mut leases: Vec<&Lease> = self.leases.values().collect();
        leases.sort_by_key(|l| (l.expiry.is_none(), l.expiry, l.id));
        leases.into_iter().map(|l| l.id).collect()
    }

    /// Becomes the primary: every lease expires `extend` plus its TTL from `now`, so that no
    /// lease expires because of the time it took to elect this member (`extend` must be at
    /// least the election timeout). With many leases the deadlines are spread so that no more
    /// than three quarters of the revoke rate fall into any one second, as etcd does.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        self.queue.clear();
        for lease in self.leases.values_mut() {
            lease.expiry = Some(deadline(now, lease.ttl, extend));
        }
        if self.leases.len() >= REVOKE_RATE_PER_SEC {
            self.spread_expiries();
        }
        for lease in self.leases.values() {
            if let Some(expiry) = lease.expiry {
                self.queue.upsert(lease.id, expiry);
            }
        }
    }

    /// Pushes deadlines later so that at most `3/4 * REVOKE_RATE_PER_SEC` leases share a
    /// one-second window. Only ever extends a lease.
    fn spread_expiries(&mut self) {
        let per_window = (3 * REVOKE_RATE_PER_SEC / 4).max(1);
        let window = Duration::from_secs(1);
        let mut order: Vec<(Instant, i64)> = self
            .leases
            .values()
            .filter_map(|l| l.expiry.map(|e| (e, l.id)))
            .collect();
        order.sort();
        let mut start: Option<Instant> = None;
        let mut count = 0;
        for (expiry, id) in order {
            let mut window_start = match start {
                Some(s) if expiry < s + window => s,
                _ => {
                    count = 0;
                    expiry
                }
            };
            if count == per_window {
                window_start += window;
                count = 0;
            }
            start = Some(window_start);
            count += 1;
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.expiry = Some(expiry.max(window_start));
            }
        }
    }

    /// Stops being the primary: no lease expires on this member any more.
    pub fn demote(&mut self) {
        self.primary = false;
        self.queue.clear();
        for lease in self.leases.values_mut() {
            lease.expiry = None;
        }
    }

    /// When the next lease falls due (or a revocation should be retried).
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|(due, _)| due)
    }

    /// Up to `limit` leases that have expired at `now`, soonest first. Each stays queued to be
    /// handed out again [`EXPIRED_RETRY_INTERVAL`] later, in case its revocation fails; a
    /// lease that was renewed meanwhile is not returned.
    pub fn pop_expired(&mut self, now: Instant, limit: usize) -> Vec<i64> {
        let mut expired = Vec::new();
        if !self.primary {
            return expired;
        }
        while expired.len() < limit {
            let Some((_, id)) = self.queue.pop_due(now) else {
                break;
            };
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            match lease.expiry {
                Some(expiry) if expiry <= now => {
                    expired.push(id);
                    self.queue.upsert(id, now + EXPIRED_RETRY_INTERVAL);
                }
                Some(expiry) => self.queue.upsert(id, expiry),
                None => {}
            }
        }
        expired
    }
}

/// `now + extend + ttl` seconds, saturating far in the future for huge TTLs.
fn deadline(now: Instant, ttl: i64, extend: Duration) -> Instant {
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    now.checked_add(extend.saturating_add(ttl))
        // About 30 years: later than any lease can matter to this process.
        .or_else(|| now.checked_add(Duration::from_secs(1 << 30)))
        .unwrap_or(now)
}

/// The lease table shared by the applier, the Lease service and the expiry task.
#[derive(Debug)]
pub struct Lessor {
    table: Mutex<LeaseTable>,
    /// Wakes the expiry task when a deadline may have moved earlier (a grant, a promotion).
    wake: Notify,
    /// Counts applied batches that revoked leases; keep-alives of expired leases wait on it.
    revoked: watch::Sender<u64>,
}

impl Lessor {
    /// A lessor over `table`.
    pub fn new(table: LeaseTable) -> Self {
        Self {
            table: Mutex::new(table),
            wake: Notify::new(),
            revoked: watch::channel(0).0,
        }
    }

    /// Locks the table. Lock order: the store's state before the lessor; nothing else is held
    /// while this is.
    pub fn lock(&self) -> MutexGuard<'_, LeaseTable> {
        self.table.lock()
    }

    /// Whether lease `id` exists.
    pub fn contains(&self, id: i64) -> bool {
        self.table.lock().contains(id)
    }

    /// Called after a batch that granted leases is applied: the expiry task rechecks its
    /// deadline.
    pub fn granted(&self) {
        self.wake.notify_one();
    }

    /// Called after a batch that revoked leases is applied (and stored).
    pub fn revoked(&self) {
        self.revoked.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// See [`LeaseTable::promote`]; wakes the expiry task.
    pub fn promote(&self, extend: Duration) {
        self.table.lock().promote(Instant::now(), extend);
        self.wake.notify_one();
    }

    /// See [`LeaseTable::demote`].
    pub fn demote(&self) {
        self.table.lock().demote();
        self.wake.notify_one();
    }

    /// Resolves when a grant or a promotion may have moved the next deadline earlier.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// A keep-alive. A lease that has expired cannot be renewed: like etcd, this waits (at
    /// most `wait`) for its revocation and then reports it as not found.
    pub async fn renew(&self, id: i64, wait: Duration) -> Renewal {
        let mut revoked = self.revoked.subscribe();
        let give_up = Instant::now() + wait;
        loop {
            let outcome = self.table.lock().renew(id, Instant::now());
            if outcome != Renewal::Expired {
                return outcome;
            }
            match tokio::time::timeout_at(give_up, revoked.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`; a timeout leaves the lease expired.
                Ok(Err(_)) | Err(_) => return Renewal::Expired,
            }
        }
    }
}

#[cfg(test)]
#[path = "lessor_test.rs"]
mod tests;
