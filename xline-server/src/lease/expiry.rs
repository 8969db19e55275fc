//! The primary's expiry task: finds expired leases and has them revoked through consensus.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Lessor, REVOKE_RATE_PER_SEC};

/// The longest the task sleeps without looking at the queue (etcd checks every 500 ms).
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// Revokes expired leases until the task is dropped or aborted: for each one, `revoke(id)` is
/// spawned (it should propose a `LeaseRevoke` and log a failure). At most
/// [`REVOKE_RATE_PER_SEC`] leases are handed out per second, with bursts of half that, like
/// etcd's revoke limit. A lease whose revocation fails is handed out again later (see
/// [`super::LeaseTable::pop_expired`]); one renewed before its turn is not revoked.
pub async fn run_expiry<F, Fut>(lessor: Arc<Lessor>, revoke: F)
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let rate = REVOKE_RATE_PER_SEC as f64;
    let burst = rate / 2.0;
    let mut tokens = burst;
    let mut last = Instant::now();
    loop {
        let now = Instant::now();
        tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
        last = now;
        // Truncation is the point: only whole tokens pay for a revocation.
        let allowed = tokens.max(0.0) as usize;
        let (expired, next_due) = {
            let mut table = lessor.lock();
            let expired = table.pop_expired(now, allowed);
            (expired, table.next_due())
        };
        tokens -= expired.len() as f64;
        for id in expired {
            tracing::debug!(lease = %format!("{id:x}"), "lease expired; revoking");
            tokio::spawn(revoke(id));
        }
        let mut wake_at = next_due.map_or(now + MAX_SLEEP, |due| due.min(now + MAX_SLEEP));
        if tokens < 1.0 {
            // Out of budget: come back when the next revocation is paid for.
            wake_at = wake_at.max(now + Duration::from_secs_f64((1.0 - tokens) / rate));
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake_at) => {}
            () = lessor.woken() => {}
        }
    }
}
