//! The Lock service (served by the server, as etcd's `v3lock`).

use std::sync::Arc;

use xline_proto::v3lockpb::lock_client::LockClient as RawLock;
use xline_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use crate::conn::{Inner, Retry};
use crate::error::Result;

/// Options of [`LockClient::lock`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    lease: i64,
}

impl LockOptions {
    /// No lease: the server requires one, so set it with [`LockOptions::with_lease`] (or use a
    /// [`crate::Session`], which does).
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds the lock under lease `id`: the lock is released when the lease ends.
    #[must_use]
    pub fn with_lease(mut self, id: i64) -> Self {
        self.lease = id;
        self
    }
}

/// The Lock service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions, LockOptions};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let lease = client.lease().grant(30, None).await?;
/// let held = client.lock().lock("my-lock", Some(LockOptions::new().with_lease(lease.id))).await?;
/// // ... critical section ...
/// client.lock().unlock(held.key).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LockClient {
    inner: Arc<Inner>,
}

impl LockClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Waits until the lock `name` is acquired; the response's `key` is the owner key that
    /// [`LockClient::unlock`] takes. Not bounded by the per-call timeout's retries: it waits as
    /// long as the lock is held by others (within the per-call timeout, if any).
    pub async fn lock(
        &self,
        name: impl Into<Vec<u8>>,
        opts: Option<LockOptions>,
    ) -> Result<LockResponse> {
        let req = LockRequest {
            name: name.into(),
            lease: opts.unwrap_or_default().lease,
        };
        unary!(self, Retry::NonRepeatable, RawLock, lock, req)
    }

    /// Releases the lock whose owner key is `key`.
    pub async fn unlock(&self, key: impl Into<Vec<u8>>) -> Result<UnlockResponse> {
        let req = UnlockRequest { key: key.into() };
        unary!(self, Retry::NonRepeatable, RawLock, unlock, req)
    }
}

/// Raw requests: etcd's request messages as they are, with the pool's balancing, failover,
/// retry rules and auth token (see the crate docs, "Raw requests").
impl LockClient {
    /// Lock.Lock (not repeatable; waits while others hold the lock).
    pub async fn lock_request(&self, req: LockRequest) -> Result<LockResponse> {
        unary!(self, Retry::NonRepeatable, RawLock, lock, req)
    }

    /// Lock.Unlock (not repeatable).
    pub async fn unlock_request(&self, req: UnlockRequest) -> Result<UnlockResponse> {
        unary!(self, Retry::NonRepeatable, RawLock, unlock, req)
    }
}
