//! etcd leases: the [`Lessor`] (TTLs, deadlines, attached keys), the order in which leases
//! fall due ([`queue`]), lease ids, and the task that revokes expired leases.
//!
//! Every change of lease state that other members must agree on (grant, revoke, attaching a
//! key with a put, detaching it by a put or a delete) is a replicated command applied in log
//! order by `KvStore::apply`; the lease table is persisted in the backend's `Table::Lease`
//! (id → granted TTL) in the same batch as the keys. Deadlines are not replicated: only the
//! primary (the leader; a single member always is) tracks them, and it revokes an expired
//! lease by *proposing* a `LeaseRevoke` like a client would ([`run_expiry`]). Keep-alives only
//! move the primary's deadlines. On startup or on becoming leader every lease gets a fresh
//! deadline, its TTL plus at least the election timeout from then.

mod expiry;
mod lessor;
pub mod queue;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use expiry::run_expiry;
pub use lessor::{Lease, LeaseTable, Lessor, Renewal};

/// The largest TTL etcd grants, in seconds (`lease.MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's default `--election-timeout`. The flag is accepted but not used yet, so leases use
/// the default.
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// etcd's default `--heartbeat-interval`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// How many leases the primary revokes per second at most (etcd's `leaseRevokeRate`).
pub const REVOKE_RATE_PER_SEC: usize = 1000;

/// How long after handing out an expired lease for revocation it is handed out again if it
/// still exists (etcd's `expiredLeaseRetryInterval`).
pub const EXPIRED_RETRY_INTERVAL: Duration = Duration::from_secs(3);

/// The smallest TTL etcd grants for these timings: one and a half election timeouts, rounded
/// down to whole heartbeats, then up to whole seconds (2 s with the defaults). A lease granted
/// with less gets this.
pub fn min_lease_ttl(election_timeout: Duration, heartbeat: Duration) -> i64 {
    let heartbeat_ms = heartbeat.as_millis().max(1);
    let election_ticks = election_timeout.as_millis() / heartbeat_ms;
    let min_ms = (3 * election_ticks / 2) * heartbeat_ms;
    i64::try_from(min_ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

/// The minimum TTL with etcd's default timings.
pub fn default_min_lease_ttl() -> i64 {
    min_lease_ttl(ELECTION_TIMEOUT, HEARTBEAT_INTERVAL)
}

/// Hands out lease ids for grants that do not choose one, as etcd does: the member id's low 16
/// bits, then a 48-bit counter that starts at the current time in milliseconds shifted left by
/// 8 (so ids of successive runs do not repeat), with the sign bit cleared. The id is chosen
/// before the grant is proposed, so every member applies the same one.
#[derive(Debug)]
pub struct LeaseIdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

impl LeaseIdGenerator {
    /// A generator for member `member_id`, starting from the current time.
    pub fn new(member_id: u64) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::starting_at(member_id, now_ms)
    }

    /// A generator for member `member_id` whose counter starts from `now_ms`.
    pub fn starting_at(member_id: u64, now_ms: u64) -> Self {
        Self {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new((now_ms & ((1 << 40) - 1)) << 8),
        }
    }

    /// The next id: positive and never 0.
    pub fn next_id(&self) -> i64 {
        loop {
            let suffix = self.suffix.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            let id = (self.prefix | (suffix & SUFFIX_MASK)) & (i64::MAX as u64);
            if let Ok(id) = i64::try_from(id)
                && id != 0
            {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_matches_etcd() {
        // etcd 3.4 with defaults grants 2 s for anything smaller.
        assert_eq!(default_min_lease_ttl(), 2);
        assert_eq!(
            min_lease_ttl(Duration::from_millis(5000), Duration::from_millis(500)),
            8
        );
        assert_eq!(
            min_lease_ttl(Duration::from_millis(2000), Duration::from_millis(100)),
            3
        );
    }

    #[test]
    fn ids_are_positive_unique_and_carry_the_member() {
        let ids = LeaseIdGenerator::starting_at(0x8e9e_05c5_2164_694d, 0x00ab_cdef_0123);
        let a = ids.next_id();
        let b = ids.next_id();
        assert!(a > 0 && b > 0);
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x694d);
        // The counter wraps inside its 48 bits; the sign bit is always clear.
        let top = LeaseIdGenerator::starting_at(0xffff, (1 << 40) - 1);
        for _ in 0..600 {
            assert!(top.next_id() > 0);
        }
    }
}
