//! Observability: Prometheus text at `/metrics` and etcd's `/health`, served over HTTP/1.1 on
//! `--listen-metrics-urls` by a small responder written here (GET and HEAD only, keep-alive).
//!
//! Metric names are etcd's where the meaning is the same (`etcd_server_*`, `etcd_mvcc_*`,
//! `etcd_disk_*`, `etcd_network_peer_round_trip_time_seconds`, go-grpc-prometheus'
//! `grpc_server_started_total` / `grpc_server_handled_total`), plus CURP's own `curp_*`. Every
//! counter on a request path is one relaxed atomic add: the gRPC counters are a table built at
//! start from the served `.proto` services (so, as in etcd, every method and code is listed
//! from the start), consensus counters live in the node ([`curp::NodeHandle::metrics`]), and
//! the backend's commit latency is measured by [`TimedBackend`]. Gauges (leadership, sizes,
//! indexes) are read when scraped.
//!
//! As etcd (whose client port cmux-es HTTP/1 and gRPC), the client port answers HTTP/1.1 too:
//! `/metrics`, `/health` and `/version` ([`client_port_handler`]); connections whose first
//! bytes are not the HTTP/2 preface are handed to it (`crate::tls::sniff_http1`), inside TLS
//! on `https://` URLs.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use curp::node::metrics::{DISK_BUCKETS, Histogram, HistogramSnapshot};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tonic::codegen::{Service, http};
use xline_proto::etcdserverpb::AlarmType;

use crate::config;
use crate::error::ServerError;
use crate::server::{CLUSTER_VERSION, ETCD_VERSION, ServerContext};
use crate::storage::backend::{Pair, WriteBatch};
use crate::storage::schema::Table;
use crate::storage::{Backend, BackendError};

/// Upper bounds (seconds) of `etcd_network_peer_round_trip_time_seconds`: etcd's
/// `ExponentialBuckets(0.0001, 2, 16)`.
const RTT_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];
/// How often each peer is pinged for the round-trip time (etcd's prober: every 4 s).
const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// How long a ping may take before the probe counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest HTTP request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long an idle HTTP connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// gRPC status codes by number, with go-grpc's names (the `grpc_code` label).
const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
/// Index of `Canceled` in [`GRPC_CODES`] (a stream dropped before its status).
const CODE_CANCELED: usize = 1;
/// Index of `Unknown` in [`GRPC_CODES`].
const CODE_UNKNOWN: usize = 2;

/// The `.proto` files whose services the client port serves (their methods are counted).
const SERVED_PROTOS: [&str; 3] = [
    include_str!("../../proto/protos/etcdserverpb/rpc.proto"),
    include_str!("../../proto/protos/v3lockpb/v3lock.proto"),
    include_str!("../../proto/protos/v3electionpb/v3election.proto"),
];
/// grpc.health.v1's service (served too, not in the files above).
const HEALTH_PROTO: &str = "package grpc.health.v1;\nservice Health {\n  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);\n  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);\n}\n";

/// One gRPC method's counters.
#[derive(Debug)]
struct MethodCounters {
    /// Fully qualified service name (`etcdserverpb.KV`).
    service: String,
    /// Method name (`Range`).
    method: String,
    /// `unary`, `client_stream`, `server_stream` or `bidi_stream`.
    kind: &'static str,
    /// RPCs started.
    started: AtomicU64,
    /// RPCs finished, by status code.
    handled: [AtomicU64; 17],
}

/// The methods of `protos`: (service, method, kind), from `package`, `service` and `rpc` lines.
fn parse_methods<'a>(
    protos: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    for text in protos {
        let mut package = "";
        let mut service = String::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("package ") {
                package = rest.trim_end_matches(';').trim();
            } else if let Some(rest) = line.strip_prefix("service ") {
                let name = rest.trim_end_matches('{').trim();
                service = format!("{package}.{name}");
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let Some((name, rest)) = rest.split_once('(') else {
                    continue;
                };
                let client_stream = rest.trim_start().starts_with("stream ");
                let server_stream = rest.split_once("returns").is_some_and(|(_, r)| {
                    r.trim_start()
                        .trim_start_matches('(')
                        .trim_start()
                        .starts_with("stream ")
                });
                let kind = match (client_stream, server_stream) {
                    (false, false) => "unary",
                    (true, false) => "client_stream",
                    (false, true) => "server_stream",
                    (true, true) => "bidi_stream",
                };
                out.push((service.clone(), name.trim().to_owned(), kind));
            }
        }
    }
    out
}

/// The member's own counters (the node keeps the consensus ones).
#[derive(Debug)]
pub struct ServerMetrics {
    /// Per-method gRPC counters, sorted by (service, method).
    methods: Vec<MethodCounters>,
    /// Index into `methods` by request path (`/etcdserverpb.KV/Range`).
    by_path: HashMap<String, usize>,
    /// Latency of the backend's batch commits and syncs.
    backend_commit: Histogram,
    /// Round-trip times to each peer (by member id).
    peer_rtt: Mutex<BTreeMap<u64, Arc<Histogram>>>,
    /// `/health` answers that were healthy.
    health_success: AtomicU64,
    /// `/health` answers that were not.
    health_failures: AtomicU64,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// Fresh counters for the services the client port serves.
    pub fn new() -> Self {
        let mut parsed = parse_methods(SERVED_PROTOS.into_iter().chain([HEALTH_PROTO]));
        parsed.sort();
        let methods: Vec<MethodCounters> = parsed
            .into_iter()
            .map(|(service, method, kind)| MethodCounters {
                service,
                method,
                kind,
                started: AtomicU64::new(0),
                handled: Default::default(),
            })
            .collect();
        let by_path = methods
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("/{}/{}", m.service, m.method), i))
            .collect();
        Self {
            methods,
            by_path,
            backend_commit: Histogram::new(&DISK_BUCKETS),
            peer_rtt: Mutex::new(BTreeMap::new()),
            health_success: AtomicU64::new(0),
            health_failures: AtomicU64::new(0),
        }
    }

    /// `backend` with its writes and syncs timed into `etcd_disk_backend_commit_duration_seconds`.
    pub fn timed_backend(self: &Arc<Self>, backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(TimedBackend {
            inner: backend,
            metrics: Arc::clone(self),
        })
    }

    /// Counts an RPC's end with gRPC status `code`.
    fn handled(&self, method: usize, code: usize) {
        if let Some(m) = self.methods.get(method) {
            let code = if code < GRPC_CODES.len() {
                code
            } else {
                CODE_UNKNOWN
            };
            m.handled[code].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a round trip to `peer`.
    fn observe_rtt(&self, peer: u64, rtt: Duration) {
        let histogram = Arc::clone(
            self.peer_rtt
                .lock()
                .entry(peer)
                .or_insert_with(|| Arc::new(Histogram::new(&RTT_BUCKETS))),
        );
        histogram.observe(rtt);
    }
}

/// A [`Backend`] whose `write` and `sync` are timed (etcd's backend commit latency).
struct TimedBackend {
    /// The engine.
    inner: Arc<dyn Backend>,
    /// Where the latencies go.
    metrics: Arc<ServerMetrics>,
}

impl Backend for TimedBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(table, key)
    }

    fn range(
        &self,
        table: Table,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Pair>, BackendError> {
        self.inner.range(table, start, end, limit)
    }

    fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), BackendError> {
        let started = Instant::now();
        let result = self.inner.write(batch, durable);
        self.metrics.backend_commit.observe(started.elapsed());
        result
    }

    fn sync(&self) -> Result<(), BackendError> {
        let started = Instant::now();
        let result = self.inner.sync();
        self.metrics.backend_commit.observe(started.elapsed());
        result
    }

    fn size(&self) -> Result<u64, BackendError> {
        self.inner.size()
    }

    fn size_in_use(&self) -> Result<u64, BackendError> {
        self.inner.size_in_use()
    }

    fn defragment(&self) -> Result<(), BackendError> {
        self.inner.defragment()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC counters: a tower layer on the client server.

/// Counts every gRPC request the client port serves (go-grpc-prometheus' server counters).
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer(Arc<ServerMetrics>);

impl GrpcMetricsLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<ServerMetrics>) -> Self {
        Self(metrics)
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    /// The router.
    inner: S,
    /// Where the counts go.
    metrics: Arc<ServerMetrics>,
}

/// The gRPC status code in a header map, if any.
fn grpc_code(headers: &http::HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let method = self.metrics.by_path.get(req.uri().path()).copied();
        if let Some(m) = method.and_then(|i| self.metrics.methods.get(i)) {
            m.started.fetch_add(1, Ordering::Relaxed);
        }
        let metrics = Arc::clone(&self.metrics);
        let future = self.inner.call(req);
        Box::pin(async move {
            match future.await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let mut counted = CountedBody {
                        inner: body,
                        pending: method.map(|m| (metrics, m)),
                    };
                    // A trailers-only response (an error) carries its status in the headers.
                    if let Some(code) = grpc_code(&parts.headers) {
                        counted.finish(code);
                    }
                    Ok(http::Response::from_parts(parts, counted))
                }
                Err(e) => {
                    if let Some(m) = method {
                        metrics.handled(m, CODE_UNKNOWN);
                    }
                    Err(e)
                }
            }
        })
    }
}

/// A response body that counts its RPC as handled when its status goes out (in the trailers),
/// or as `Canceled` when it is dropped before (the client went away).
#[derive(Debug)]
pub struct CountedBody<B> {
    /// The body.
    inner: B,
    /// The counters and method still to count, until counted.
    pending: Option<(Arc<ServerMetrics>, usize)>,
}

impl<B> CountedBody<B> {
    /// Counts the RPC as handled with `code` (once).
    fn finish(&mut self, code: usize) {
        if let Some((metrics, method)) = self.pending.take() {
            metrics.handled(method, code);
        }
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        self.finish(CODE_CANCELED);
    }
}

impl<B> http_body::Body for CountedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.finish(grpc_code(trailers).unwrap_or(CODE_UNKNOWN));
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(CODE_UNKNOWN),
            // Ended without a status: nothing more will come.
            Poll::Ready(None) => this.finish(CODE_UNKNOWN),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text.

/// Builds the exposition text.
struct Exposition(String);

impl Exposition {
    /// Writes `# HELP` and `# TYPE`.
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample without labels.
    fn sample(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// A gauge with one label set to 1 (etcd's version and id gauges).
    fn info(&mut self, name: &str, help: &str, label: &str, value: &str) {
        self.head(name, "gauge", help);
        let _ = writeln!(self.0, "{name}{{{label}=\"{value}\"}} 1");
    }

    /// A histogram's series (`labels` already formatted, without braces; may be empty).
    fn histogram_series(&mut self, name: &str, labels: &str, h: &HistogramSnapshot) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in h.bounds.iter().zip(h.cumulative()) {
            let _ = writeln!(
                self.0,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            self.0,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            h.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(self.0, "{name}_sum{} {}", braces(labels), h.sum_seconds);
        let _ = writeln!(self.0, "{name}_count{} {}", braces(labels), h.count);
    }
}

/// The Prometheus text exposition of `ctx`'s metrics (format 0.0.4).
pub async fn render(ctx: &Arc<ServerContext>) -> String {
    let sizes = {
        let backend = Arc::clone(ctx.store.backend());
        tokio::task::spawn_blocking(move || (backend.size(), backend.size_in_use()))
            .await
            .ok()
    };
    let (db_size, db_in_use) = match sizes {
        Some((Ok(size), Ok(in_use))) => (size, in_use),
        _ => (0, 0),
    };
    let status = ctx.node.status();
    let node = ctx.node.metrics();
    let m = &ctx.metrics;
    let mut out = Exposition(String::with_capacity(64 * 1024));

    out.info(
        "etcd_cluster_version",
        "Which version is running. 1 for 'cluster_version' label with current cluster version",
        "cluster_version",
        CLUSTER_VERSION,
    );
    out.sample(
        "etcd_debugging_mvcc_current_revision",
        "gauge",
        "The current revision of store.",
        ctx.store.current_revision(),
    );
    out.sample(
        "etcd_debugging_mvcc_db_total_size_in_bytes",
        "gauge",
        "Total size of the underlying database physically allocated in bytes.",
        db_size,
    );
    out.head(
        "etcd_disk_backend_commit_duration_seconds",
        "histogram",
        "The latency distributions of commit called by backend.",
    );
    out.histogram_series(
        "etcd_disk_backend_commit_duration_seconds",
        "",
        &m.backend_commit.snapshot(),
    );
    out.head(
        "etcd_disk_wal_fsync_duration_seconds",
        "histogram",
        "The latency distributions of fsync called by WAL.",
    );
    out.histogram_series("etcd_disk_wal_fsync_duration_seconds", "", &node.log_sync);
    out.sample(
        "etcd_mvcc_db_total_size_in_bytes",
        "gauge",
        "Total size of the underlying database physically allocated in bytes.",
        db_size,
    );
    out.sample(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "gauge",
        "Total size of the underlying database logically in use in bytes.",
        db_in_use,
    );
    let rtts: Vec<(u64, HistogramSnapshot)> = m
        .peer_rtt
        .lock()
        .iter()
        .map(|(peer, h)| (*peer, h.snapshot()))
        .collect();
    if !rtts.is_empty() {
        out.head(
            "etcd_network_peer_round_trip_time_seconds",
            "histogram",
            "Round-Trip-Time histogram between peers",
        );
        for (peer, h) in &rtts {
            out.histogram_series(
                "etcd_network_peer_round_trip_time_seconds",
                &format!("To=\"{peer:x}\""),
                h,
            );
        }
    }
    out.sample(
        "etcd_server_has_leader",
        "gauge",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        u8::from(status.leader.is_some()),
    );
    out.sample(
        "etcd_server_health_failures",
        "counter",
        "The total number of failed health checks",
        m.health_failures.load(Ordering::Relaxed),
    );
    out.sample(
        "etcd_server_health_success",
        "counter",
        "The total number of successful health checks",
        m.health_success.load(Ordering::Relaxed),
    );
    out.info(
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        "server_id",
        &format!("{:x}", ctx.member.id),
    );
    out.sample(
        "etcd_server_is_leader",
        "gauge",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        u8::from(status.leader == Some(ctx.member.id)),
    );
    out.sample(
        "etcd_server_is_learner",
        "gauge",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        u8::from(status.membership.learners.contains(&ctx.member.id)),
    );
    out.sample(
        "etcd_server_leader_changes_seen_total",
        "counter",
        "The number of leader changes seen.",
        node.leader_changes,
    );
    out.sample(
        "etcd_server_proposals_applied_total",
        "gauge",
        "The total number of consensus proposals applied.",
        ctx.node.applied_index(),
    );
    out.sample(
        "etcd_server_proposals_committed_total",
        "gauge",
        "The total number of consensus proposals committed.",
        status.commit,
    );
    out.sample(
        "etcd_server_proposals_failed_total",
        "counter",
        "The total number of failed proposals seen.",
        node.proposals_failed,
    );
    out.sample(
        "etcd_server_proposals_pending",
        "gauge",
        "The current number of pending proposals to commit.",
        node.proposals_pending,
    );
    out.sample(
        "etcd_server_quota_backend_bytes",
        "gauge",
        "Current backend storage quota size in bytes.",
        ctx.config.quota_bytes(),
    );
    out.info(
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        "server_version",
        ETCD_VERSION,
    );

    out.head(
        "curp_apply_duration_seconds",
        "histogram",
        "The latency distributions of the state machine's apply batches.",
    );
    out.histogram_series("curp_apply_duration_seconds", "", &node.apply);
    out.sample(
        "curp_exclusive_pending",
        "gauge",
        "Whether an exclusive command (auth, alarm, compaction) is pending in the leader's uncommitted pool, forcing writes onto the slow path. 1 if so, 0 otherwise.",
        u8::from(node.exclusive_pending),
    );
    out.sample(
        "curp_fast_path_fallback_total",
        "counter",
        "Fast proposals this member, leading, found conflicting: their clients waited for the ordered result.",
        node.fast_path_fallback,
    );
    out.sample(
        "curp_fast_path_total",
        "counter",
        "Fast proposals this member, leading, speculated without conflict.",
        node.fast_path,
    );
    out.sample(
        "curp_slow_path_total",
        "counter",
        "Proposals submitted on the ordered (slow) path at this member.",
        node.slow_path,
    );
    out.sample(
        "curp_uncommitted_pool_size",
        "gauge",
        "Commands in the leader's uncommitted pool (0 on other members).",
        node.uncommitted_pool_size,
    );
    out.sample(
        "curp_witness_pool_size",
        "gauge",
        "Records held by this member's witness (speculative pool).",
        node.witness_pool_size,
    );

    out.head(
        "grpc_server_handled_total",
        "counter",
        "Total number of RPCs completed on the server, regardless of success or failure.",
    );
    for mc in &m.methods {
        for (code, count) in GRPC_CODES.iter().zip(&mc.handled) {
            let _ = writeln!(
                out.0,
                "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"{}\",grpc_service=\"{}\",grpc_type=\"{}\"}} {}",
                mc.method,
                mc.service,
                mc.kind,
                count.load(Ordering::Relaxed)
            );
        }
    }
    out.head(
        "grpc_server_started_total",
        "counter",
        "Total number of RPCs started on the server.",
    );
    for mc in &m.methods {
        let _ = writeln!(
            out.0,
            "grpc_server_started_total{{grpc_method=\"{}\",grpc_service=\"{}\",grpc_type=\"{}\"}} {}",
            mc.method,
            mc.service,
            mc.kind,
            mc.started.load(Ordering::Relaxed)
        );
    }
    out.0
}

// ---------------------------------------------------------------------------------------------
// /health.

/// etcd's `/health` answer: (HTTP status, JSON body). Unhealthy (503) when an alarm not
/// excluded by `?exclude=NAME` is raised, when there is no leader, or when a linearizable read
/// fails (unless `?serializable=true`).
pub async fn health(ctx: &Arc<ServerContext>, query: &str) -> (u16, String) {
    let mut excluded = Vec::new();
    let mut serializable = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "exclude" => excluded.push(value.to_owned()),
            "serializable" => serializable = value == "true",
            _ => {}
        }
    }
    let reason = health_problem(ctx, &excluded, serializable).await;
    let m = &ctx.metrics;
    match reason {
        None => {
            m.health_success.fetch_add(1, Ordering::Relaxed);
            (200, r#"{"health":"true","reason":""}"#.to_owned())
        }
        Some(reason) => {
            m.health_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%reason, "serving /health false");
            let reason = reason.replace('\\', "\\\\").replace('"', "\\\"");
            // Go's http.Error adds a newline.
            (
                503,
                format!("{{\"health\":\"false\",\"reason\":\"{reason}\"}}\n"),
            )
        }
    }
}

/// Why the member is unhealthy, if it is.
async fn health_problem(
    ctx: &Arc<ServerContext>,
    excluded: &[String],
    serializable: bool,
) -> Option<String> {
    for alarm in ctx.store.alarms(AlarmType::None) {
        let kind = AlarmType::try_from(alarm.alarm).unwrap_or(AlarmType::None);
        if excluded.iter().any(|e| e == kind.as_str_name()) {
            continue;
        }
        return Some(match kind {
            AlarmType::Nospace => "ALARM NOSPACE".to_owned(),
            AlarmType::Corrupt => "ALARM CORRUPT".to_owned(),
            AlarmType::None => "ALARM UNKNOWN".to_owned(),
        });
    }
    if !serializable && ctx.leader().is_none() {
        return Some("RAFT NO LEADER".to_owned());
    }
    if !serializable {
        // etcd's request timeout: 5 s plus two election timeouts.
        let timeout =
            Duration::from_secs(5) + Duration::from_millis(2 * ctx.config.election_timeout);
        match tokio::time::timeout(timeout, ctx.node.linearizable_barrier()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Some(format!("QGET ERROR:{}", ServerError::from(e))),
            Err(_) => return Some("QGET ERROR:etcdserver: request timed out".to_owned()),
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The HTTP/1.1 responder.

/// The metrics listeners; they stop when this is dropped.
#[derive(Debug)]
pub struct MetricsServer {
    /// Accept loops and the peer prober.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds `--listen-metrics-urls` and serves `/metrics` and `/health` there; also starts the
/// peer round-trip prober. Nothing when no URL is configured.
pub async fn serve(ctx: &Arc<ServerContext>) -> Result<MetricsServer, ServerError> {
    let mut tasks = Vec::new();
    if ctx.config.listen_metrics_urls.is_empty() {
        return Ok(MetricsServer { tasks });
    }
    let addrs = config::listen_addrs(&ctx.config.listen_metrics_urls)?;
    for addr in &addrs {
        let listener = match tokio::net::TcpListener::bind(addr.addr).await {
            Ok(l) => l,
            Err(e) if addr.addr.is_ipv6() && addrs.len() > 1 => {
                tracing::warn!(address = %addr.addr, error = %e, "cannot listen on IPv6 address; skipping");
                continue;
            }
            Err(e) => return Err(ServerError::Config(format!("listen on {}: {e}", addr.addr))),
        };
        tracing::info!("serving metrics on {}", addr.url);
        let ctx = Arc::clone(ctx);
        tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve_connection(Arc::clone(&ctx), stream, Port::Metrics));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    tasks.push(tokio::spawn(probe_peers(Arc::clone(ctx))));
    Ok(MetricsServer { tasks })
}

/// One parsed request head.
struct RequestHead {
    /// `GET`, `HEAD`, ...
    method: String,
    /// The path, without the query.
    path: String,
    /// The query string (after `?`), maybe empty.
    query: String,
    /// Whether the connection closes after the answer.
    close: bool,
    /// Body bytes to skip.
    content_length: usize,
}

/// Parses a request head (up to and without the blank line).
fn parse_head(head: &str) -> Option<RequestHead> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let version = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut close = version == "HTTP/1.0";
    let mut content_length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        }
    }
    Some(RequestHead {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        close,
        content_length,
    })
}

/// The reason phrase of `status`.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Which listener an HTTP/1 connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// `--listen-metrics-urls`: `/metrics` and `/health`, GET or HEAD.
    Metrics,
    /// A client URL, as etcd's client port answers: `/metrics` (GET or HEAD), `/health` and
    /// `/version` (GET only), with etcd's CORS headers on every answer.
    Client,
}

/// etcd's CORS headers on every HTTP answer of its client port.
const CORS_HEADERS: &str = "Access-Control-Allow-Headers: accept, content-type, authorization\r\nAccess-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\nAccess-Control-Allow-Origin: *\r\n";

/// etcd's `/version` body.
fn version_body() -> String {
    format!(
        "{{\"etcdserver\":\"{}\",\"etcdcluster\":\"{}.0\"}}",
        ETCD_VERSION, CLUSTER_VERSION
    )
}

/// The handler of HTTP/1 connections on the client port (`crate::tls::sniff_http1`).
pub fn client_port_handler(ctx: Arc<ServerContext>) -> crate::tls::Http1Handler {
    Arc::new(move |conn| {
        let ctx = Arc::clone(&ctx);
        Box::pin(serve_connection(ctx, conn, Port::Client))
    })
}

/// Serves HTTP/1.1 requests on one connection until it closes or idles.
async fn serve_connection<S>(ctx: Arc<ServerContext>, mut stream: S, port: Port)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            if buf.len() > MAX_HEAD {
                let _ = respond(&mut stream, 400, "text/plain; charset=utf-8", "", b"", true).await;
                return;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let Some(req) = parse_head(&head) else {
            let _ = respond(&mut stream, 400, "text/plain; charset=utf-8", "", b"", true).await;
            return;
        };
        // Skip a body (GET requests have none, but be tolerant).
        let mut to_skip = req.content_length;
        let buffered = to_skip.min(buf.len());
        buf.drain(..buffered);
        to_skip -= buffered;
        while to_skip > 0 {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => to_skip = to_skip.saturating_sub(n),
                _ => return,
            }
        }
        let head_only = req.method == "HEAD";
        let (status, content_type, extra, body) =
            answer(&ctx, port, &req.method, &req.path, &req.query).await;
        let body: &[u8] = if head_only { b"" } else { body.as_bytes() };
        let extra = match port {
            Port::Metrics => extra.to_owned(),
            Port::Client => format!("{CORS_HEADERS}{extra}"),
        };
        if respond(&mut stream, status, content_type, &extra, body, req.close)
            .await
            .is_err()
            || req.close
        {
            return;
        }
    }
}

/// The answer to an HTTP request on `port`: status, content type, extra header lines (each
/// ending in CRLF) and body.
async fn answer(
    ctx: &Arc<ServerContext>,
    port: Port,
    method: &str,
    path: &str,
    query: &str,
) -> (u16, &'static str, &'static str, String) {
    let head_only = method == "HEAD";
    let get = method == "GET" || head_only;
    // etcd's client port answers HEAD on /metrics only.
    let get_only = method == "GET" || (head_only && port == Port::Metrics);
    match path {
        "/version" if port == Port::Client && method == "GET" => {
            (200, "application/json", "", version_body())
        }
        "/version" if port == Port::Client => (
            405,
            "text/plain; charset=utf-8",
            "Allow: GET\r\nX-Content-Type-Options: nosniff\r\n",
            "Method Not Allowed\n".to_owned(),
        ),
        "/metrics" if get => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            "",
            render(ctx).await,
        ),
        "/health" if get_only => {
            let (status, body) = health(ctx, query).await;
            (status, "text/plain; charset=utf-8", "", body)
        }
        "/health" | "/metrics" => (
            405,
            "text/plain; charset=utf-8",
            "Allow: GET\r\n",
            "Method Not Allowed\n".to_owned(),
        ),
        _ => (
            404,
            "text/plain; charset=utf-8",
            "",
            "404 page not found\n".to_owned(),
        ),
    }
}

/// Answers the requests on the client port that are not gRPC but come over HTTP/2 (an
/// `https://` client such as curl negotiates HTTP/2 through ALPN): `/metrics`, `/health` and
/// `/version` as [`client_port_handler`] answers them over HTTP/1, as etcd's HTTP handler
/// does next to gRPC on a TLS port (it routes on the content type too).
#[derive(Debug, Clone)]
pub struct ClientHttpLayer {
    ctx: Arc<ServerContext>,
}

impl ClientHttpLayer {
    /// The layer for the member of `ctx`.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self { ctx }
    }
}

impl<S> tower_layer::Layer<S> for ClientHttpLayer {
    type Service = ClientHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientHttp {
            inner,
            ctx: Arc::clone(&self.ctx),
        }
    }
}

/// The service [`ClientHttpLayer`] makes.
#[derive(Debug, Clone)]
pub struct ClientHttp<S> {
    inner: S,
    ctx: Arc<ServerContext>,
}

/// A body of one chunk.
struct OneChunk(Option<bytes::Bytes>);

impl http_body::Body for OneChunk {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(
            self.get_mut()
                .0
                .take()
                .map(|b| Ok(http_body::Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl<S, B> Service<http::Request<B>> for ClientHttp<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
        if grpc {
            return Box::pin(self.inner.call(req));
        }
        let ctx = Arc::clone(&self.ctx);
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        Box::pin(async move {
            let (status, content_type, extra, body) =
                answer(&ctx, Port::Client, &method, &path, &query).await;
            let body = if method == "HEAD" {
                String::new()
            } else {
                body
            };
            let mut resp = http::Response::new(tonic::body::Body::new(OneChunk(Some(
                bytes::Bytes::from(body),
            ))));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            let headers = resp.headers_mut();
            for line in CORS_HEADERS.split("\r\n").chain(extra.split("\r\n")) {
                if let Some((name, value)) = line.split_once(": ")
                    && let (Ok(name), Ok(value)) = (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        http::HeaderValue::from_str(value),
                    )
                {
                    headers.append(name, value);
                }
            }
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            Ok(resp)
        })
    }
}

/// Writes one response.
async fn respond<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {}\r\n{extra_headers}Content-Type: {content_type}\r\nContent-Length: {}\r\n{connection}\r\n",
        reason_phrase(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

// ---------------------------------------------------------------------------------------------
// Peer round-trip times.

/// Pings every other member's peer service every [`PROBE_INTERVAL`] and records the round
/// trips (etcd's `etcd_network_peer_round_trip_time_seconds`, labelled with the peer's id).
async fn probe_peers(ctx: Arc<ServerContext>) {
    use curp::transport::grpc::curppb::PingRequest;
    use curp::transport::grpc::curppb::peer_client::PeerClient;
    let mut channels: HashMap<String, tonic::transport::Channel> = HashMap::new();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut nonce = 0u64;
    loop {
        tick.tick().await;
        let peers = ctx.node.status().membership.peers;
        channels.retain(|url, _| peers.values().any(|urls| urls.contains(url)));
        for (peer, urls) in peers.iter().filter(|(p, _)| **p != ctx.member.id) {
            let Some(url) = urls.first() else { continue };
            let channel = match channels.get(url) {
                Some(c) => c.clone(),
                None => {
                    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.clone()) else {
                        continue;
                    };
                    let channel = endpoint
                        .connect_timeout(PROBE_TIMEOUT)
                        .tcp_nodelay(true)
                        .connect_lazy();
                    channels.insert(url.clone(), channel.clone());
                    channel
                }
            };
            nonce = nonce.wrapping_add(1);
            let started = Instant::now();
            let mut client = PeerClient::new(channel);
            let ping = client.ping(PingRequest { nonce });
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, ping).await {
                ctx.metrics.observe_rtt(*peer, started.elapsed());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_protos() {
        let m = ServerMetrics::new();
        let kind = |path: &str| m.methods[m.by_path[path]].kind;
        assert_eq!(kind("/etcdserverpb.KV/Range"), "unary");
        assert_eq!(kind("/etcdserverpb.Watch/Watch"), "bidi_stream");
        assert_eq!(kind("/etcdserverpb.Lease/LeaseKeepAlive"), "bidi_stream");
        assert_eq!(kind("/etcdserverpb.Maintenance/Snapshot"), "server_stream");
        assert_eq!(kind("/v3lockpb.Lock/Lock"), "unary");
        assert_eq!(kind("/v3electionpb.Election/Observe"), "server_stream");
        assert_eq!(kind("/grpc.health.v1.Health/Watch"), "server_stream");
        // etcd's services: KV 5, Watch 1, Lease 5, Cluster 5, Maintenance 8, Auth 17 methods.
        let count = |svc: &str| m.methods.iter().filter(|x| x.service == svc).count();
        assert_eq!(count("etcdserverpb.KV"), 5);
        assert_eq!(count("etcdserverpb.Auth"), 17);
        assert_eq!(count("etcdserverpb.Maintenance"), 8);
    }

    #[test]
    fn request_heads() {
        let h = parse_head("GET /health?exclude=NOSPACE HTTP/1.1\r\nHost: x\r\nConnection: close")
            .unwrap();
        assert_eq!(
            (
                h.method.as_str(),
                h.path.as_str(),
                h.query.as_str(),
                h.close
            ),
            ("GET", "/health", "exclude=NOSPACE", true)
        );
        let h = parse_head("GET /metrics HTTP/1.0\r\nContent-Length: 3").unwrap();
        assert!(h.close);
        assert_eq!(h.content_length, 3);
        assert!(parse_head("GARBAGE").is_none());
    }

    #[test]
    fn handled_counts_each_code_once() {
        let m = Arc::new(ServerMetrics::new());
        let range = m.by_path["/etcdserverpb.KV/Range"];
        let mut body = CountedBody {
            inner: (),
            pending: Some((Arc::clone(&m), range)),
        };
        body.finish(5);
        body.finish(0);
        drop(body);
        let handled: Vec<u64> = m.methods[range]
            .handled
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(handled[5], 1);
        assert_eq!(handled.iter().sum::<u64>(), 1);
        // Dropped before any status: Canceled.
        drop(CountedBody {
            inner: (),
            pending: Some((Arc::clone(&m), range)),
        });
        assert_eq!(
            m.methods[range].handled[CODE_CANCELED].load(Ordering::Relaxed),
            1
        );
    }
}
