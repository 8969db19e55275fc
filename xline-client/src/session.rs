//! A session: a lease kept alive in the background, under which locks are held and elections
//! are campaigned (as etcd's `concurrency.Session`). When the session ends (closed, or its lease
//! lost), its locks are released and its candidacies withdrawn by the server.

use xline_proto::v3electionpb::LeaderKey;

use crate::Client;
use crate::error::{Error, Result};
use crate::lease::KeepAliveHandle;
use crate::lock::{LockClient, LockOptions};

/// A lease kept alive for as long as the session lives.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions, Session};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let session = Session::new(&client, 10).await?;
/// let lock = session.lock("jobs/lock").await?;
/// // ... critical section ...
/// lock.unlock().await?;
/// let leader = session.campaign("jobs/leader", "worker-1").await?;
/// client.election().resign(leader).await?;
/// session.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Session {
    client: Client,
    keeper: KeepAliveHandle,
}

/// A lock held by a [`Session`].
#[derive(Debug, Clone)]
pub struct SessionLock {
    key: Vec<u8>,
    lock: LockClient,
}

impl SessionLock {
    /// The owner key (the lock's name followed by the session's lease id).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Releases the lock.
    pub async fn unlock(self) -> Result<()> {
        self.lock.unlock(self.key).await.map(drop)
    }
}

impl Session {
    /// Grants a lease of `ttl` seconds and keeps it alive in the background.
    pub async fn new(client: &Client, ttl: i64) -> Result<Self> {
        let lease = client.lease().grant(ttl, None).await?;
        Ok(Self::from_lease(client, lease.id))
    }

    /// Keeps an existing lease alive as a session.
    pub fn from_lease(client: &Client, lease_id: i64) -> Self {
        Self {
            client: client.clone(),
            keeper: client.lease().keep_alive_task(lease_id),
        }
    }

    /// The session's lease.
    pub fn lease_id(&self) -> i64 {
        self.keeper.id()
    }

    /// Whether the keep-alive still runs (false once the lease was found gone).
    pub fn is_alive(&self) -> bool {
        !self.keeper.is_finished()
    }

    /// Waits for the lock `name`, held under the session's lease.
    pub async fn lock(&self, name: impl Into<Vec<u8>>) -> Result<SessionLock> {
        self.check_alive()?;
        let lock = self.client.lock();
        let resp = lock
            .lock(name, Some(LockOptions::new().with_lease(self.lease_id())))
            .await?;
        Ok(SessionLock {
            key: resp.key,
            lock,
        })
    }

    /// Campaigns in election `name` with `value` under the session's lease; returns the leader
    /// key once elected.
    pub async fn campaign(
        &self,
        name: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<LeaderKey> {
        self.check_alive()?;
        let resp = self
            .client
            .election()
            .campaign(name, value, self.lease_id())
            .await?;
        resp.leader
            .ok_or_else(|| Error::InvalidArgs("campaign response without leader key".to_owned()))
    }

    /// Ends the session: stops the keep-alive and revokes the lease (releasing its locks).
    pub async fn close(self) -> Result<()> {
        let id = self.lease_id();
        self.keeper.stop().await;
        match self.client.lease().revoke(id).await {
            Ok(_) => Ok(()),
            Err(e) if e.etcd_kind() == Some(crate::EtcdErrorKind::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn check_alive(&self) -> Result<()> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(Error::LeaseExpired(self.lease_id()))
        }
    }
}
