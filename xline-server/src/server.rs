//! Bringing a member up: data directory, backend, store, consensus, gRPC listeners; and down.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use curp::core::{Membership, Role};
use curp::transport::grpc::{GrpcOptions, GrpcTransport, peer_server};
use curp::{Node, NodeConfig, NodeHandle, RaftEngineLog};
use futures::StreamExt;
use xline_proto::etcdserverpb::auth_server::AuthServer;
use xline_proto::etcdserverpb::cluster_client::ClusterClient;
use xline_proto::etcdserverpb::cluster_server::ClusterServer;
use xline_proto::etcdserverpb::kv_server::KvServer;
use xline_proto::etcdserverpb::lease_server::LeaseServer;
use xline_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use xline_proto::etcdserverpb::watch_server::WatchServer;
use xline_proto::etcdserverpb::{MemberListRequest, ResponseHeader};
use xline_proto::v3electionpb::election_server::ElectionServer;
use xline_proto::v3lockpb::lock_server::LockServer;

use crate::authority::AuthorityFix;
use crate::command::Command;
use crate::config::{self, GRPC_OVERHEAD_BYTES, ServerConfig};
use crate::error::{EtcdError, ServerError};
use crate::executor::Executor;
use crate::mvcc::store::{ApplyOutput, KvStore};
use crate::service::LeaseService;
use crate::service::WatchService;
use crate::service::{AuthService, ClusterService, KvService, MaintenanceService};
use crate::service::{ElectionService, LocalClient, LockService};
use crate::storage::open_backend;
use crate::tls::{self, CertUserLayer, TlsContext};

/// The etcd version this server reports (clients such as Kubernetes gate features on it).
pub const ETCD_VERSION: &str = "3.5.17";
/// How long a stopping member waits for open client connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The etcd cluster version this server reports.
pub const CLUSTER_VERSION: &str = "3.5";

/// This member as the cluster sees it.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// Member id (derived as etcd does).
    pub id: u64,
    /// `--name`.
    pub name: String,
    /// Advertised peer URLs.
    pub peer_urls: Vec<String>,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
}

/// What every service needs: the store, the consensus handle, ids and limits.
#[derive(Debug)]
pub struct ServerContext {
    /// The MVCC store.
    pub store: Arc<KvStore>,
    /// Proposes commands through consensus.
    pub node: NodeHandle<Command, ApplyOutput>,
    /// The cluster id.
    pub cluster_id: u64,
    /// This member.
    pub member: MemberInfo,
    /// The members of `--initial-cluster` (client URLs are known for this member only).
    pub initial_members: Vec<MemberInfo>,
    /// The configuration the member started with.
    pub config: ServerConfig,
    /// The member's own metrics (the node keeps the consensus ones).
    pub metrics: Arc<crate::metrics::ServerMetrics>,
    /// TLS for the listeners and for the member's own connections.
    pub tls: TlsContext,
}

impl ServerContext {
    /// An etcd response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member.id,
            revision,
            raft_term: self.term(),
        }
    }

    /// The current consensus term.
    pub fn term(&self) -> u64 {
        self.node.role().borrow().term
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<u64> {
        self.node.role().borrow().leader
    }

    /// etcd's quota check for a request that adds `cost` bytes (a Put, a Txn with puts, a
    /// LeaseGrant): once the backend would exceed `--quota-backend-bytes`, this member's
    /// NOSPACE alarm is raised through consensus (every member then refuses such requests
    /// until it is disarmed) and the request is refused with `etcdserver: mvcc: database space
    /// exceeded`, whether or not raising the alarm worked.
    pub async fn check_quota(&self, cost: u64) -> Result<(), ServerError> {
        use xline_proto::etcdserverpb::{AlarmRequest, AlarmType, alarm_request};
        let size = self.store.backend().size()?;
        if size.saturating_add(cost) <= self.config.quota_bytes() {
            return Ok(());
        }
        let alarm = AlarmRequest {
            action: alarm_request::AlarmAction::Activate as i32,
            member_id: self.member.id,
            alarm: AlarmType::Nospace as i32,
        };
        let cmd = Command::new(crate::command::Request::Alarm(alarm));
        match self.node.propose(cmd).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not raise the NOSPACE alarm"),
            Err(e) => tracing::warn!(error = %e, "could not raise the NOSPACE alarm"),
        }
        Err(EtcdError::NoSpace.into())
    }

    /// A connection to the peer listener of member `leader`, for a request this member
    /// forwards to it on a client's behalf (with the caller's identity on it:
    /// [`tls::forward_identity`]). Requests time out after `timeout`.
    pub async fn peer_channel(
        &self,
        leader: u64,
        timeout: Duration,
    ) -> Result<tonic::transport::Channel, EtcdError> {
        let urls = self
            .node
            .status()
            .membership
            .peers
            .get(&leader)
            .cloned()
            .unwrap_or_default();
        let mut failed = false;
        for url in &urls {
            let Ok(endpoint) = self.tls.peer.endpoint(url) else {
                continue;
            };
            match endpoint
                .connect_timeout(Duration::from_secs(2))
                .timeout(timeout)
                .connect()
                .await
            {
                Ok(channel) => return Ok(channel),
                Err(_) => failed = true,
            }
        }
        Err(if failed {
            EtcdError::LeaderChanged
        } else {
            EtcdError::NoLeader
        })
    }
}

/// How a member that joins a running cluster (`--initial-cluster-state existing`) is known
/// there: what its first start learns from the cluster's members.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The id the cluster gave this member (MemberAdd).
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The members as the cluster listed them.
    pub members: Vec<MemberInfo>,
}

/// File under `member/` that keeps the member's and the cluster's ids across restarts.
const IDENTITY_FILE: &str = "identity";

/// Reads the stored `(member id, cluster id)`.
fn read_identity(member_dir: &Path) -> Result<Option<(u64, u64)>, ServerError> {
    let text = match std::fs::read_to_string(member_dir.join(IDENTITY_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut parts = text.split_whitespace().map(|p| u64::from_str_radix(p, 16));
    match (parts.next(), parts.next()) {
        (Some(Ok(member)), Some(Ok(cluster))) => Ok(Some((member, cluster))),
        _ => Err(ServerError::Config(format!(
            "corrupt {}",
            member_dir.join(IDENTITY_FILE).display()
        ))),
    }
}

/// Stores the member's and the cluster's ids durably.
fn write_identity(member_dir: &Path, member: u64, cluster: u64) -> Result<(), ServerError> {
    use std::io::Write;
    let path = member_dir.join(IDENTITY_FILE);
    let tmp = member_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{member:x} {cluster:x}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    crate::storage::sync_dir(member_dir)?;
    Ok(())
}

/// Opens the member's durable state and starts consensus; no listeners yet. A member started
/// with `--initial-cluster-state existing` and no data must join through [`run`].
pub fn open(config: ServerConfig) -> Result<Arc<ServerContext>, ServerError> {
    open_with(config, None)
}

/// [`open`], for a member that has just joined a running cluster as `joined` says.
fn open_with(
    config: ServerConfig,
    joined: Option<Joined>,
) -> Result<Arc<ServerContext>, ServerError> {
    config.validate()?;
    let tls = TlsContext::load(&config)?;
    let data_dir = config.data_dir();
    let member_dir = data_dir.join("member");
    let had_data = has_member_data(&data_dir);
    std::fs::create_dir_all(&member_dir)?;
    // The new directories' names (data dir, member/) are durable before anything in them.
    crate::storage::sync_dir(&data_dir)?;
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::storage::sync_dir(parent)?;
    }
    let stored_identity = read_identity(&member_dir)?;
    let identity = joined
        .as_ref()
        .map(|j| (j.member_id, j.cluster_id))
        .or(stored_identity);
    if identity.is_none() && !had_data && config.initial_cluster_state == "existing" {
        return Err(ServerError::Config(
            "a member joining an existing cluster must learn its id from the cluster first".into(),
        ));
    }
    let metrics = Arc::new(crate::metrics::ServerMetrics::new());
    let backend = metrics.timed_backend(open_backend(config.backend, &member_dir.join("kv"))?);
    let store = KvStore::open(backend)?;
    store.auth().configure(
        &config.auth_token,
        Duration::from_secs(config.auth_token_ttl),
        config.bcrypt_cost,
    )?;
    let log = RaftEngineLog::open(&member_dir.join("log"))
        .map_err(|e| ServerError::Consensus(e.to_string()))?;
    let executor = Arc::new(Executor::new(Arc::clone(&store)));

    let members = config.initial_members()?;
    let token = &config.initial_cluster_token;
    let (_, peer_urls) = members
        .iter()
        .find(|(n, _)| *n == config.name)
        .ok_or_else(|| ServerError::Config("local member missing from --initial-cluster".into()))?;
    let founders: Vec<MemberInfo> = members
        .iter()
        .map(|(name, urls)| MemberInfo {
            id: config::member_id(urls, token),
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: Vec::new(),
        })
        .collect();
    let (member_id, cluster_id, membership, initial_members) = match identity {
        // A member that joined a running cluster: its configuration comes from the leader
        // (log or snapshot), never from its flags.
        // A member that restarts (its flags may name new peer URLs after a MemberUpdate): its
        // configuration is the stored one.
        Some((member_id, cluster_id)) => (
            member_id,
            cluster_id,
            Membership::default(),
            joined.map_or(founders, |j| j.members),
        ),
        None => {
            let ids: Vec<u64> = founders.iter().map(|m| m.id).collect();
            let membership = Membership {
                voters: ids.iter().copied().collect(),
                learners: Default::default(),
                version: 0,
                peers: founders
                    .iter()
                    .map(|m| (m.id, m.peer_urls.clone()))
                    .collect(),
            };
            (
                config::member_id(peer_urls, token),
                config::cluster_id(&ids),
                membership,
                founders,
            )
        }
    };
    let member = MemberInfo {
        id: member_id,
        name: config.name.clone(),
        peer_urls: peer_urls.clone(),
        client_urls: config.advertise_client_urls.clone(),
    };
    let initial_members: Vec<MemberInfo> = initial_members
        .into_iter()
        .map(|m| if m.id == member.id { member.clone() } else { m })
        .collect();
    let mut node_config = NodeConfig::new(member.id, membership);
    node_config.peer_urls = initial_members
        .iter()
        .filter(|m| m.id != member.id && !m.peer_urls.is_empty())
        .map(|m| (m.id, m.peer_urls.clone()))
        .collect();
    node_config.heartbeat_interval = Duration::from_millis(config.heartbeat_interval);
    node_config.election_timeout = Duration::from_millis(config.election_timeout);
    node_config.snapshot_every_entries = config.snapshot_count;
    let transport = GrpcTransport::new(
        member.id,
        GrpcOptions {
            tls: tls.peer.dial.clone(),
            ..GrpcOptions::default()
        },
    );
    let node = Node::start(node_config, log, executor, transport)
        .map_err(|e| ServerError::Consensus(e.to_string()))?;
    // Kept once consensus has stored its initial configuration, so that a restart (maybe with
    // other peer URLs after a MemberUpdate) is still this member of this cluster.
    if stored_identity != Some((member.id, cluster_id)) {
        write_identity(&member_dir, member.id, cluster_id)?;
    }
    tracing::info!(
        data_dir = %data_dir.display(),
        backend = %config.backend,
        member_id = %format!("{:x}", member.id),
        cluster_id = %format!("{cluster_id:x}"),
        applied_index = store.applied_index(),
        revision = store.current_revision(),
        "opened member"
    );
    Ok(Arc::new(ServerContext {
        store,
        node,
        cluster_id,
        member,
        initial_members,
        config,
        tls,
        metrics,
    }))
}

/// How long a joining member keeps asking the cluster's members for its id.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A member started with `--initial-cluster-state existing` and no data learns its id and the
/// cluster's from the members of `--initial-cluster` (as etcd fetches the cluster from its
/// peers): one of them must list a member with this member's peer URLs (added by MemberAdd).
async fn join_cluster(config: &ServerConfig) -> Result<Joined, ServerError> {
    let members = config.initial_members()?;
    let mut own = members
        .iter()
        .find(|(n, _)| *n == config.name)
        .map(|(_, urls)| urls.clone())
        .ok_or_else(|| ServerError::Config("local member missing from --initial-cluster".into()))?;
    own.sort();
    let tls = TlsContext::load(config)?;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut listed = None;
    loop {
        for (_, urls) in members.iter().filter(|(n, _)| *n != config.name) {
            for url in urls {
                let Ok(endpoint) = tls.peer.endpoint(url) else {
                    continue;
                };
                let endpoint = endpoint
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(2));
                let Ok(channel) = endpoint.connect().await else {
                    continue;
                };
                let mut client = ClusterClient::new(channel);
                let Ok(resp) = client.member_list(MemberListRequest::default()).await else {
                    continue;
                };
                let resp = resp.into_inner();
                let cluster_id = resp.header.map(|h| h.cluster_id).unwrap_or_default();
                let found = resp.members.iter().find(|m| {
                    let mut theirs = m.peer_ur_ls.clone();
                    theirs.sort();
                    theirs == own
                });
                if let Some(m) = found {
                    tracing::info!(
                        member_id = %format!("{:x}", m.id),
                        cluster_id = %format!("{cluster_id:x}"),
                        peer = %url,
                        "joining the existing cluster"
                    );
                    return Ok(Joined {
                        member_id: m.id,
                        cluster_id,
                        members: resp
                            .members
                            .iter()
                            .map(|m| MemberInfo {
                                id: m.id,
                                name: m.name.clone(),
                                peer_urls: m.peer_ur_ls.clone(),
                                client_urls: m.client_ur_ls.clone(),
                            })
                            .collect(),
                    });
                }
                listed = Some(resp.members);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(ServerError::Config(match listed {
        Some(members) => format!(
            "error validating peerURLs {{Members:{:?}}}: PeerURLs: no match found for existing member ({})",
            members
                .iter()
                .map(|m| format!("{:x}={}", m.id, m.peer_ur_ls.join(",")))
                .collect::<Vec<_>>(),
            own.join(",")
        ),
        None => "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs".into(),
    }))
}

/// Serves the member until `shutdown` resolves, then stops consensus cleanly.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let joining = config.initial_cluster_state == "existing"
        && !has_member_data(&config.data_dir())
        && read_identity(&config.data_dir().join("member"))?.is_none();
    let joined = if joining {
        Some(join_cluster(&config).await?)
    } else {
        None
    };
    let ctx = open_with(config, joined)?;
    let lease_service = LeaseService::new(Arc::clone(&ctx));
    serve_peers(&ctx, lease_service.clone()).await?;
    // Like etcd's, the metrics listener serves from the start (`/health` says whether there is
    // a leader); it stops when this returns.
    let _metrics_server = crate::metrics::serve(&ctx).await?;
    // Like etcd, a member removed from the cluster stops.
    let removed = removed_from_cluster(Arc::clone(&ctx));
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = removed => {}
        }
    };
    tokio::spawn(follow_leadership(Arc::clone(&ctx)));
    tokio::pin!(shutdown);
    // Like etcd, serve clients (and say so) only once this member's attributes are published
    // through consensus, which needs a leader.
    tokio::select! {
        () = publish(&ctx) => {}
        () = &mut shutdown => {
            tracing::info!("stopping member before it was published");
            ctx.node.shutdown();
            ctx.node.closed().await;
            return Ok(());
        }
    }
    let addrs = config::listen_addrs(&ctx.config.listen_client_urls)?;
    let listeners = tls::bind_all(&addrs).await?;
    // etcdctl's :authority fix applies to the HTTP/2 bytes, so inside TLS.
    // HTTP/1 requests (`/metrics`, `/health`, `/version`) share the port with gRPC, as etcd's.
    let incoming = tls::sniff_http1(
        tls::incoming(listeners, ctx.tls.client.server.clone()),
        crate::metrics::client_port_handler(Arc::clone(&ctx)),
    )
    .map(|conn| conn.map(AuthorityFix::new));

    let max_decode = ctx
        .config
        .max_request_bytes
        .saturating_add(GRPC_OVERHEAD_BYTES);
    let watch_service = WatchService::new(Arc::clone(&ctx));
    let watch_hub = watch_service.hub();
    // Watch streams never end on their own: stop them so the graceful shutdown can finish.
    let shutdown = async move {
        shutdown.await;
        watch_hub.shutdown();
    };
    // Lock and Election run over an in-process client of this member, as etcd's do.
    let local_client =
        LocalClient::new(Arc::clone(&ctx), watch_service.hub(), lease_service.clone());
    let lease_expiry = lease_service.spawn_expiry();
    let lease_streams = lease_service.clone();
    // Keep-alive streams stay open as long as their clients run: end them on shutdown too,
    // and stop expiring leases while connections drain.
    let shutdown = async move {
        shutdown.await;
        lease_streams.shutdown();
    };
    tokio::pin!(shutdown);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let router = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(ctx.config.max_concurrent_streams)
        .layer(crate::metrics::GrpcMetricsLayer::new(Arc::clone(
            &ctx.metrics,
        )))
        .layer(crate::status::OversizeStatusLayer)
        .layer(CertUserLayer::client(ctx.config.client_cert_auth))
        .layer(crate::metrics::ClientHttpLayer::new(Arc::clone(&ctx)))
        .add_service(health_service)
        .add_service(
            KvServer::new(KvService::new(Arc::clone(&ctx))).max_decoding_message_size(max_decode),
        )
        .add_service(
            AuthServer::new(AuthService::new(Arc::clone(&ctx)))
                .max_decoding_message_size(max_decode),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService::new(Arc::clone(&ctx)))
                .max_decoding_message_size(max_decode),
        )
        .add_service(
            ClusterServer::new(ClusterService::new(Arc::clone(&ctx)))
                .max_decoding_message_size(max_decode),
        )
        .add_service(WatchServer::new(watch_service).max_decoding_message_size(max_decode))
        .add_service(LeaseServer::new(lease_service).max_decoding_message_size(max_decode))
        .add_service(
            LockServer::new(LockService::new(local_client.clone()))
                .max_decoding_message_size(max_decode),
        )
        .add_service(
            ElectionServer::new(ElectionService::new(local_client))
                .max_decoding_message_size(max_decode),
        );

    tracing::info!(
        cluster_version = CLUSTER_VERSION,
        "enabled capabilities for version"
    );
    tracing::info!(
        local_member_id = %format!("{:x}", ctx.member.id),
        local_member_attributes = %format!("{{Name:{} ClientURLs:[{}]}}", ctx.member.name, ctx.member.client_urls.join(" ")),
        cluster_id = %format!("{:x}", ctx.cluster_id),
        "published local member to cluster through raft"
    );
    tracing::info!("ready to serve client requests");
    for addr in &addrs {
        if addr.url.starts_with("https://") {
            tracing::info!("serving client traffic securely on {}", addr.addr);
        } else {
            tracing::info!(
                "serving insecure client requests on {}, this is strongly discouraged!",
                addr.addr
            );
        }
    }
    // Like etcd's GracefulStop with a deadline: on shutdown, stop accepting, give open
    // connections a moment to finish their requests, then close them.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(serve);
    let served = tokio::select! {
        served = &mut serve => served,
        () = &mut shutdown => {
            let _ = stop_tx.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut serve).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::info!("closing client connections still open after {SHUTDOWN_GRACE:?}");
                    Ok(())
                }
            }
        }
    };
    tracing::info!("stopping member");
    lease_expiry.abort();
    ctx.node.shutdown();
    if tokio::time::timeout(Duration::from_secs(10), ctx.node.closed())
        .await
        .is_err()
    {
        tracing::warn!("consensus did not stop within 10s");
    }
    served.map_err(|e| ServerError::Io(std::io::Error::other(e)))?;
    tracing::info!("stopped member");
    Ok(())
}

/// Proposes this member's attributes until they are applied (retrying while there is no
/// leader or no quorum, as etcd's publish does).
async fn publish(ctx: &Arc<ServerContext>) {
    let member = xline_proto::etcdserverpb::Member {
        id: ctx.member.id,
        name: ctx.member.name.clone(),
        peer_ur_ls: ctx.member.peer_urls.clone(),
        client_ur_ls: ctx.member.client_urls.clone(),
        is_learner: false,
    };
    let mut role = ctx.node.role();
    loop {
        let _ = role.wait_for(|r| r.leader.is_some()).await;
        let cmd = Command::new(crate::command::Request::PublishMember(member.clone()));
        match ctx.node.propose(cmd).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "failed to publish local member to cluster; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Resolves once this member, having been a member, is no longer in the configuration (it
/// was removed), after a short delay that lets a removed leader hand over.
///
/// A removed member may never receive the entry that removes it (the leader stops replicating
/// to it): like etcd's peers that answer a removed member's messages with "gone", the other
/// members tell it. While it has no leader (or is a learner) it asks them for the member list
/// on their peer URLs; two answers in a row from members that list themselves but not it mean
/// it was removed.
async fn removed_from_cluster(ctx: Arc<ServerContext>) {
    let id = ctx.member.id;
    let mut was_member = false;
    let mut gone_answers = 0;
    let mut last_remote_check = tokio::time::Instant::now();
    let remote_every = Duration::from_millis(2 * ctx.config.election_timeout.max(500));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let status = ctx.node.status();
        let m = &status.membership;
        let here = m.voters.contains(&id) || m.learners.contains(&id);
        let mut removed = was_member && !here;
        was_member |= here;
        let unsure = status.leader.is_none() || m.learners.contains(&id);
        if here && unsure && last_remote_check.elapsed() >= remote_every {
            last_remote_check = tokio::time::Instant::now();
            match listed_by_peers(&ctx, m).await {
                Some(false) => gone_answers += 1,
                Some(true) => gone_answers = 0,
                None => {}
            }
            removed |= gone_answers >= 2;
        }
        if removed {
            tracing::warn!(
                local_member_id = %format!("{id:x}"),
                "the member has been permanently removed from the cluster"
            );
            tracing::warn!("the data-dir used by this member must be removed");
            tokio::time::sleep(Duration::from_millis(2 * ctx.config.election_timeout)).await;
            return;
        }
    }
}

/// Asks the other members of `m` (on their peer URLs) whether they list this member: the first
/// member that answers and lists itself decides; `None` when none does.
async fn listed_by_peers(ctx: &ServerContext, m: &Membership) -> Option<bool> {
    for (peer, urls) in m.peers.iter().filter(|(p, _)| **p != ctx.member.id) {
        for url in urls {
            let Ok(endpoint) = ctx.tls.peer.endpoint(url) else {
                continue;
            };
            let endpoint = endpoint
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(1));
            let Ok(channel) = endpoint.connect().await else {
                continue;
            };
            let Ok(resp) = ClusterClient::new(channel)
                .member_list(MemberListRequest::default())
                .await
            else {
                continue;
            };
            let resp = resp.into_inner();
            if resp.header.is_none_or(|h| h.cluster_id != ctx.cluster_id) {
                continue;
            }
            if !resp.members.iter().any(|x| x.id == *peer) {
                continue;
            }
            return Some(resp.members.iter().any(|x| x.id == ctx.member.id));
        }
    }
    None
}

/// Serves the consensus peer protocol on `--listen-peer-urls`, feeding the node's inbox, and
/// the requests other members forward to this one as the leader (Lease keep-alive and
/// time-to-live, membership changes) on their clients' behalf ([`CertUserLayer::peer`]).
async fn serve_peers(ctx: &Arc<ServerContext>, leases: LeaseService) -> Result<(), ServerError> {
    let addrs = config::listen_addrs(&ctx.config.listen_peer_urls)?;
    let listeners = tls::bind_all(&addrs).await?;
    let inbox = ctx.node.inbox();
    let sink: curp::transport::grpc::Sink = Arc::new(move |env| inbox.deliver(env));
    let max = ctx.config.max_request_bytes.saturating_mul(4).max(64 << 20);
    let incoming = tls::incoming(listeners, ctx.tls.peer.server.clone());
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_adaptive_window(Some(true))
        .layer(CertUserLayer::peer())
        .add_service(peer_server(sink, max))
        // The native CURP client (fast path); FetchCluster reports the members' peer URLs.
        .add_service(curp::transport::client_service::client_server(
            curp::transport::client_service::ClientService::<
                Command,
                ApplyOutput,
                crate::native::NativeCodec,
            >::new(ctx.node.clone(), Default::default())
            .with_admission({
                let store = Arc::clone(&ctx.store);
                let (bytes, ops) = (ctx.config.max_request_bytes, ctx.config.max_txn_ops);
                Arc::new(move |cmd: Command| crate::native::admit(&store, bytes, ops, cmd))
            }),
            max,
        ))
        // etcd's peers serve the member list too: a joining member fetches it from them; and
        // membership changes forwarded by other members.
        .add_service(ClusterServer::new(ClusterService::new(Arc::clone(ctx))))
        .add_service(LeaseServer::new(leases));
    tokio::spawn(async move {
        if let Err(e) = server.serve_with_incoming(incoming).await {
            tracing::error!(error = %e, "peer listener stopped");
        }
    });
    for addr in &addrs {
        tracing::info!("serving peer traffic on {}", addr.addr);
    }
    Ok(())
}

/// Only the leader expires leases (CURP.md section 7): on winning an election every lease gets
/// a fresh deadline at least an election timeout away (LS1); on losing leadership none expire.
async fn follow_leadership(ctx: Arc<ServerContext>) {
    let mut role = ctx.node.role();
    let extension =
        Duration::from_millis(ctx.config.election_timeout).max(crate::lease::ELECTION_TIMEOUT);
    let mut leading = false;
    loop {
        let now_leading = role.borrow_and_update().role == Role::Leader;
        if now_leading != leading {
            leading = now_leading;
            if leading {
                tracing::info!(
                    term = role.borrow().term,
                    "became leader; leases now expire here"
                );
                ctx.store.lessor().promote(extension);
            } else {
                ctx.store.lessor().demote();
            }
        }
        if role.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("received interrupt signal, shutting down"),
            _ = term.recv() => tracing::info!("received terminated signal, shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Whether `path` holds a member's data (for logs and tests).
pub fn has_member_data(path: &Path) -> bool {
    path.join("member").is_dir()
}
