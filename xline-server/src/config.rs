//! Server configuration: etcd's flag names and defaults, the same settings from `XLINE_*`
//! environment variables, and etcd's other flags accepted and logged as ignored.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::error::ServerError;
use crate::storage::BackendKind;

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default backend quota when `--quota-backend-bytes` is 0 (2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// What etcd adds to `--max-request-bytes` for the gRPC receive limit.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// `xline`'s command line. Flag names and defaults are etcd's.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "xline",
    version,
    about = "An etcd-v3-compatible key-value server"
)]
pub struct ServerConfig {
    /// Human-readable name for this member.
    #[arg(long, env = "XLINE_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `${name}.xline`).
    #[arg(long, env = "XLINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic (comma-separated).
    #[arg(
        long,
        env = "XLINE_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379",
        value_delimiter = ','
    )]
    pub listen_client_urls: Vec<String>,
    /// Client URLs of this member advertised to the cluster (comma-separated).
    #[arg(
        long,
        env = "XLINE_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379",
        value_delimiter = ','
    )]
    pub advertise_client_urls: Vec<String>,
    /// URLs to listen on for peer traffic (comma-separated).
    #[arg(
        long,
        env = "XLINE_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub listen_peer_urls: Vec<String>,
    /// Peer URLs of this member advertised to the cluster (comma-separated).
    #[arg(
        long,
        env = "XLINE_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380",
        value_delimiter = ','
    )]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration, `name=peerURL,...` (default: `${name}=` this member's
    /// advertised peer URLs).
    #[arg(long, env = "XLINE_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state (`new` or `existing`).
    #[arg(long, env = "XLINE_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, mixed into the member and cluster ids.
    #[arg(
        long,
        env = "XLINE_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Maximum client request size in bytes the server accepts.
    #[arg(long, env = "XLINE_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in one txn.
    #[arg(long, env = "XLINE_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Raise an alarm when the backend exceeds this size (0: the 2 GiB default).
    #[arg(long, env = "XLINE_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum concurrent streams each client connection may open (etcd's default: unlimited).
    #[arg(long, env = "XLINE_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Time (in milliseconds) of a heartbeat interval: the consensus tick.
    #[arg(long, env = "XLINE_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, env = "XLINE_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Applied entries between state-machine snapshots (after which the log is compacted).
    #[arg(long, env = "XLINE_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Storage engine of the state machine.
    #[arg(long, env = "XLINE_BACKEND", value_enum, default_value_t = BackendKind::Redb)]
    pub backend: BackendKind,
    /// Log level: debug, info, warn, error, panic or fatal.
    #[arg(long, env = "XLINE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format: `text` (one human-readable line per event; etcd's `console`) or `json`
    /// (one JSON object per line, with etcd's `level`, `ts`, `caller` and `msg` keys).
    #[arg(long, env = "XLINE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Where logs go (comma-separated): `default` or `stderr`, `stdout`, or file paths.
    #[arg(
        long,
        env = "XLINE_LOG_OUTPUTS",
        default_value = "default",
        value_delimiter = ','
    )]
    pub log_outputs: Vec<String>,
    /// URLs to serve Prometheus `/metrics` and `/health` on over HTTP/1.1 (comma-separated;
    /// none by default).
    #[arg(long, env = "XLINE_LISTEN_METRICS_URLS", value_delimiter = ',')]
    pub listen_metrics_urls: Vec<String>,
    /// Set of exported metrics: `basic` or `extensive` (both export the same set here).
    #[arg(long, env = "XLINE_METRICS", default_value = "basic")]
    pub metrics: String,
    /// How often idle watchers that asked for `progress_notify` get an empty response with the
    /// current revision (a Go duration such as `10m`, `5s` or `100ms`).
    #[arg(
        long,
        env = "XLINE_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        default_value = "10m",
        value_parser = parse_go_duration
    )]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Maximum watchers one Watch stream may hold; a create request past it is answered with a
    /// canceled watcher (xline's own flag: etcd has no such limit).
    #[arg(long, env = "XLINE_MAX_WATCHERS_PER_STREAM", default_value_t = 10000)]
    pub max_watchers_per_stream: usize,
    /// Auth token type and its options: `simple`, or `jwt,pub-key=PATH,priv-key=PATH,
    /// sign-method=RS256|ES256|...,ttl=5m` (etcd's `--auth-token`).
    #[arg(long, env = "XLINE_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Time-to-live in seconds of a `simple` auth token not used.
    #[arg(long, env = "XLINE_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt cost for hashing auth passwords (4..=31).
    #[arg(long, env = "XLINE_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Path to the client server TLS certificate (for `https://` client URLs).
    #[arg(long, env = "XLINE_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "XLINE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA certificate file; setting it also requires
    /// and verifies client certificates.
    #[arg(long, env = "XLINE_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Enable client certificate authentication (the certificate's CN is the auth user).
    #[arg(long, env = "XLINE_CLIENT_CERT_AUTH", num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Path to the peer server TLS certificate (for `https://` peer URLs).
    #[arg(long, env = "XLINE_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "XLINE_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer server TLS trusted CA file; setting it also requires and verifies
    /// peer certificates.
    #[arg(long, env = "XLINE_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Enable peer client certificate authentication.
    #[arg(long, env = "XLINE_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
}

/// Parses a Go duration (`time.ParseDuration`): a sequence of decimal numbers, each with a unit
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), such as `10m`, `1.5s` or `1h30m`; `0` alone is allowed.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err(format!("negative duration {text:?}"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration {text:?}")),
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * nanos_per_unit;
        rest = tail;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// etcd server flags with no meaning here yet: accepted and logged as ignored. `true` marks a
/// boolean flag (it takes no separate value).
const IGNORED_ETCD_FLAGS: &[(&str, bool)] = &[
    ("wal-dir", false),
    ("initial-election-tick-advance", true),
    ("max-snapshots", false),
    ("max-wals", false),
    ("backend-batch-interval", false),
    ("backend-batch-limit", false),
    ("backend-bbolt-freelist-type", false),
    ("grpc-keepalive-min-time", false),
    ("grpc-keepalive-interval", false),
    ("grpc-keepalive-timeout", false),
    ("socket-reuse-port", true),
    ("socket-reuse-address", true),
    ("discovery", false),
    ("discovery-fallback", false),
    ("discovery-proxy", false),
    ("discovery-srv", false),
    ("discovery-srv-name", false),
    ("strict-reconfig-check", true),
    ("pre-vote", true),
    ("auto-compaction-retention", false),
    ("auto-compaction-mode", false),
    ("enable-v2", true),
    ("v2-deprecation", false),
    ("client-crl-file", false),
    ("client-cert-allowed-hostname", false),
    ("auto-tls", true),
    ("peer-cert-allowed-cn", false),
    ("peer-cert-allowed-hostname", false),
    ("peer-auto-tls", true),
    ("self-signed-cert-validity", false),
    ("peer-crl-file", false),
    ("cipher-suites", false),
    ("tls-min-version", false),
    ("tls-max-version", false),
    ("cors", false),
    ("host-whitelist", false),
    ("enable-pprof", true),
    ("listen-client-http-urls", false),
    ("logger", false),
    ("enable-log-rotation", true),
    ("log-rotation-config-json", false),
    ("log-package-levels", false),
    ("debug", true),
    ("proxy", false),
    ("proxy-failure-wait", false),
    ("proxy-refresh-interval", false),
    ("proxy-dial-timeout", false),
    ("proxy-write-timeout", false),
    ("proxy-read-timeout", false),
    ("force-new-cluster", true),
    ("unsafe-no-fsync", true),
    ("enable-grpc-gateway", true),
    ("experimental-initial-corrupt-check", true),
    ("experimental-corrupt-check-time", false),
    ("experimental-compact-hash-check-enabled", true),
    ("experimental-compact-hash-check-time", false),
    ("experimental-enable-v2v3", false),
    ("experimental-backend-bbolt-freelist-type", false),
    ("experimental-enable-lease-checkpoint", true),
    ("experimental-enable-lease-checkpoint-persist", true),
    ("experimental-compaction-batch-limit", false),
    ("experimental-compaction-sleep-interval", false),
    ("experimental-peer-skip-client-san-verification", true),
    ("experimental-warning-apply-duration", false),
    ("experimental-warning-unary-request-duration", false),
    ("experimental-memory-mlock", true),
    ("experimental-txn-mode-write-with-shared-buffer", true),
    ("experimental-bootstrap-defrag-threshold-megabytes", false),
    ("experimental-max-learners", false),
    ("experimental-snapshot-catchup-entries", false),
    ("experimental-downgrade-check-time", false),
    ("experimental-wait-cluster-ready-timeout", false),
    ("experimental-stop-grpc-service-on-defrag", true),
    ("experimental-enable-distributed-tracing", true),
    ("experimental-distributed-tracing-address", false),
    ("experimental-distributed-tracing-service-name", false),
    ("experimental-distributed-tracing-instance-id", false),
    ("experimental-distributed-tracing-sampling-rate", false),
];

/// Flags this binary parses itself (for single-dash spelling, which Go's flag package allows).
const OWN_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "max-request-bytes",
    "max-txn-ops",
    "heartbeat-interval",
    "election-timeout",
    "snapshot-count",
    "max-concurrent-streams",
    "quota-backend-bytes",
    "backend",
    "log-level",
    "log-format",
    "log-outputs",
    "listen-metrics-urls",
    "metrics",
    "experimental-watch-progress-notify-interval",
    "max-watchers-per-stream",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "client-cert-auth",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "peer-client-cert-auth",
    "help",
    "version",
];

/// Splits etcd's ignored flags out of `args` (program name first) and rewrites Go-style
/// single-dash flags (`-name x`) to `--name x`. Returns the remaining arguments and the ignored
/// flags as they were given, to be logged once logging is up.
pub fn preprocess_args(args: impl IntoIterator<Item = String>) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut ignored = Vec::new();
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        kept.push(program);
    }
    while let Some(arg) = iter.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            kept.push(arg);
            continue;
        };
        let (name, has_inline_value) = match body.split_once('=') {
            Some((n, _)) => (n, true),
            None => (body, false),
        };
        if let Some((_, is_bool)) = IGNORED_ETCD_FLAGS.iter().find(|(f, _)| *f == name) {
            let mut given = arg.clone();
            if !is_bool
                && !has_inline_value
                && let Some(value) = iter.next()
            {
                given = format!("{arg} {value}");
            }
            ignored.push(given);
        } else if OWN_FLAGS.contains(&name) && !arg.starts_with("--") {
            kept.push(format!("-{arg}"));
        } else {
            kept.push(arg);
        }
    }
    (kept, ignored)
}

/// One address to listen on, with the URL it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// The socket address.
    pub addr: SocketAddr,
    /// The URL as configured.
    pub url: String,
}

/// Resolves client URLs to socket addresses: `localhost` means both 127.0.0.1 and ::1.
pub fn listen_addrs(urls: &[String]) -> Result<Vec<ListenAddr>, ServerError> {
    let mut out = Vec::new();
    for url in urls {
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            return Err(ServerError::Config(format!(
                "{url}: URL scheme must be http or https"
            )));
        };
        let hostport = rest.trim_end_matches('/');
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| ServerError::Config(format!("{url}: missing port in address")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| ServerError::Config(format!("{url}: invalid port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ips: Vec<std::net::IpAddr> = if host == "localhost" {
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()]
        } else {
            vec![host.parse().map_err(|_| {
                ServerError::Config(format!("{url}: host must be an IP address or localhost"))
            })?]
        };
        out.extend(ips.into_iter().map(|ip| ListenAddr {
            addr: SocketAddr::new(ip, port),
            url: url.clone(),
        }));
    }
    Ok(out)
}

impl ServerConfig {
    /// The data directory: `--data-dir`, or `${name}.xline` like etcd's `${name}.etcd`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.xline", self.name)))
    }

    /// The backend quota in bytes (etcd's default when 0).
    pub fn quota_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            DEFAULT_QUOTA_BACKEND_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// `--initial-cluster` parsed into (name, peer URLs), members in the given order.
    pub fn initial_members(&self) -> Result<Vec<(String, Vec<String>)>, ServerError> {
        let spec = self.initial_cluster.clone().unwrap_or_else(|| {
            self.initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={u}", self.name))
                .collect::<Vec<_>>()
                .join(",")
        });
        let mut members: Vec<(String, Vec<String>)> = Vec::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, url) = part.split_once('=').ok_or_else(|| {
                ServerError::Config(format!("--initial-cluster entry {part:?} is not name=URL"))
            })?;
            match members.iter_mut().find(|(n, _)| n == name) {
                Some((_, urls)) => urls.push(url.to_owned()),
                None => members.push((name.to_owned(), vec![url.to_owned()])),
            }
        }
        Ok(members)
    }

    /// Checks the settings that can be wrong.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.max_txn_ops == 0 {
            return Err(ServerError::Config(
                "--max-txn-ops must be at least 1".into(),
            ));
        }
        if self.heartbeat_interval == 0 {
            return Err(ServerError::Config(
                "--heartbeat-interval must be at least 1ms".into(),
            ));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            // etcd's rule: the election timeout must be at least 5 heartbeats.
            return Err(ServerError::Config(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            )));
        }
        if self.max_request_bytes == 0 {
            return Err(ServerError::Config(
                "--max-request-bytes must be at least 1".into(),
            ));
        }
        if self.initial_cluster_state != "new" && self.initial_cluster_state != "existing" {
            return Err(ServerError::Config(format!(
                "unexpected --initial-cluster-state {:?} (new or existing)",
                self.initial_cluster_state
            )));
        }
        if !["debug", "info", "warn", "error", "panic", "fatal"].contains(&self.log_level.as_str())
        {
            return Err(ServerError::Config(format!(
                "unknown --log-level {:?}",
                self.log_level
            )));
        }
        if !["text", "console", "json"].contains(&self.log_format.as_str()) {
            return Err(ServerError::Config(format!(
                "unknown --log-format {:?} (text or json)",
                self.log_format
            )));
        }
        if !["basic", "extensive"].contains(&self.metrics.as_str()) {
            return Err(ServerError::Config(format!(
                "unknown --metrics {:?} (basic or extensive)",
                self.metrics
            )));
        }
        listen_addrs(&self.listen_metrics_urls)?;
        let members = self.initial_members()?;
        if !members.iter().any(|(n, _)| *n == self.name) {
            return Err(ServerError::Config(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            )));
        }
        if self.experimental_watch_progress_notify_interval.is_zero() {
            return Err(ServerError::Config(
                "--experimental-watch-progress-notify-interval must be >0".into(),
            ));
        }
        if self.max_watchers_per_stream == 0 {
            return Err(ServerError::Config(
                "--max-watchers-per-stream must be at least 1".into(),
            ));
        }
        listen_addrs(&self.listen_client_urls)?;
        Ok(())
    }
}

/// A member id as etcd derives it: the first 8 bytes (big-endian) of SHA-1 over the sorted peer
/// URLs concatenated, followed by the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut hasher = sha1_smol::Sha1::new();
    hasher.update(urls.concat().as_bytes());
    hasher.update(token.as_bytes());
    first_u64(&hasher.digest().bytes())
}

/// The id of a member added at run time (etcd's MemberAdd): SHA-1 over the sorted peer URLs
/// concatenated and the decimal Unix time in seconds (etcd passes no cluster name there), first
/// 8 bytes big-endian.
pub fn new_member_id(peer_urls: &[String], unix_secs: u64) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut hasher = sha1_smol::Sha1::new();
    hasher.update(urls.concat().as_bytes());
    hasher.update(unix_secs.to_string().as_bytes());
    first_u64(&hasher.digest().bytes())
}

/// A cluster id as etcd derives it: SHA-1 over the sorted member ids (8 bytes big-endian each).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = sha1_smol::Sha1::new();
    for id in ids {
        hasher.update(&id.to_be_bytes());
    }
    first_u64(&hasher.digest().bytes())
}

fn first_u64(digest: &[u8; 20]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> (ServerConfig, Vec<String>) {
        let (kept, ignored) = preprocess_args(args.iter().map(|s| (*s).to_owned()));
        (ServerConfig::try_parse_from(kept).unwrap(), ignored)
    }

    #[test]
    fn defaults_are_etcds() {
        let (cfg, ignored) = parse(&["xline"]);
        assert!(ignored.is_empty());
        assert_eq!(cfg.name, "default");
        assert_eq!(cfg.data_dir(), PathBuf::from("default.xline"));
        assert_eq!(cfg.max_request_bytes, 1_572_864);
        assert_eq!(cfg.max_txn_ops, 128);
        assert_eq!(cfg.quota_bytes(), 2 * 1024 * 1024 * 1024);
        assert_eq!(cfg.backend, BackendKind::Redb);
        assert_eq!(cfg.max_concurrent_streams, u32::MAX);
        assert_eq!(
            cfg.experimental_watch_progress_notify_interval,
            Duration::from_secs(600)
        );
        assert_eq!(cfg.max_watchers_per_stream, 10000);
        cfg.validate().unwrap();
        let addrs = listen_addrs(&cfg.listen_client_urls).unwrap();
        let ips: Vec<String> = addrs.iter().map(|a| a.addr.to_string()).collect();
        assert_eq!(ips, vec!["127.0.0.1:2379", "[::1]:2379"]);
    }

    #[test]
    fn ids_match_etcd_defaults() {
        // A fresh `etcd` with no flags reports these ids.
        let cfg = parse(&["xline"]).0;
        let members = cfg.initial_members().unwrap();
        let id = member_id(&members[0].1, &cfg.initial_cluster_token);
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }

    #[test]
    fn etcd_flags_accepted() {
        let (cfg, ignored) = parse(&[
            "xline",
            "-name",
            "n1",
            "--snapshot-count",
            "5",
            "--enable-v2",
            "--heartbeat-interval=50",
            "--data-dir",
            "/tmp/x",
            "-max-txn-ops=7",
            "--backend",
            "sled",
            "--logger",
            "zap",
        ]);
        assert_eq!(cfg.name, "n1");
        assert_eq!(cfg.max_txn_ops, 7);
        assert_eq!(cfg.backend, BackendKind::Sled);
        assert_eq!(cfg.data_dir(), PathBuf::from("/tmp/x"));
        assert_eq!(ignored, vec!["--enable-v2", "--logger zap"]);
        assert_eq!((cfg.snapshot_count, cfg.heartbeat_interval), (5, 50));
        let (kept, _) = preprocess_args(["xline", "--no-such-flag"].map(String::from));
        assert!(ServerConfig::try_parse_from(kept).is_err());
    }

    #[test]
    fn observability_flags() {
        let (cfg, ignored) = parse(&["xline"]);
        assert!(ignored.is_empty());
        assert!(cfg.listen_metrics_urls.is_empty());
        assert_eq!(
            (cfg.log_format.as_str(), cfg.metrics.as_str()),
            ("text", "basic")
        );
        assert_eq!(cfg.log_outputs, vec!["default"]);
        let (cfg, ignored) = parse(&[
            "xline",
            "-listen-metrics-urls",
            "http://127.0.0.1:2381,http://[::1]:2381",
            "--metrics=extensive",
            "--log-format",
            "json",
            "--log-outputs",
            "stderr,/tmp/x.log",
            "--logger",
            "zap",
        ]);
        assert_eq!(ignored, vec!["--logger zap"]);
        assert_eq!(cfg.listen_metrics_urls.len(), 2);
        assert_eq!(cfg.log_outputs, vec!["stderr", "/tmp/x.log"]);
        cfg.validate().unwrap();
        for bad in [
            &["xline", "--log-format", "yaml"][..],
            &["xline", "--metrics", "all"][..],
            &["xline", "--listen-metrics-urls", "http://127.0.0.1"][..],
        ] {
            assert!(parse(bad).0.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("10m", Duration::from_secs(600)),
            ("5s", Duration::from_secs(5)),
            ("100ms", Duration::from_millis(100)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("300us", Duration::from_micros(300)),
            ("2\u{b5}s", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
        ];
        for (text, want) in ok {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "10", "-1s", "1x", "s", ".s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        let (cfg, ignored) = parse(&[
            "xline",
            "--experimental-watch-progress-notify-interval=250ms",
            "-max-watchers-per-stream",
            "3",
        ]);
        assert!(ignored.is_empty());
        assert_eq!(
            cfg.experimental_watch_progress_notify_interval,
            Duration::from_millis(250)
        );
        assert_eq!(cfg.max_watchers_per_stream, 3);
    }

    #[test]
    fn tls_flags() {
        let (cfg, ignored) = parse(&["xline"]);
        assert!(ignored.is_empty());
        assert!(!cfg.client_cert_auth && !cfg.peer_client_cert_auth);
        assert_eq!(cfg.cert_file, None);
        let (cfg, ignored) = parse(&[
            "xline",
            "--cert-file",
            "/c.pem",
            "-key-file=/k.pem",
            "--trusted-ca-file=/ca.pem",
            "--client-cert-auth",
            "--peer-cert-file=/pc.pem",
            "--peer-key-file",
            "/pk.pem",
            "-peer-trusted-ca-file",
            "/pca.pem",
            "--peer-client-cert-auth=true",
            "--auto-tls",
        ]);
        assert_eq!(ignored, vec!["--auto-tls"]);
        assert_eq!(cfg.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(cfg.key_file, Some(PathBuf::from("/k.pem")));
        assert_eq!(cfg.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(cfg.peer_cert_file, Some(PathBuf::from("/pc.pem")));
        assert_eq!(cfg.peer_key_file, Some(PathBuf::from("/pk.pem")));
        assert_eq!(cfg.peer_trusted_ca_file, Some(PathBuf::from("/pca.pem")));
        assert!(cfg.client_cert_auth && cfg.peer_client_cert_auth);
        let (cfg, _) = parse(&["xline", "--client-cert-auth=false"]);
        assert!(!cfg.client_cert_auth);
    }

    #[test]
    fn bad_urls_rejected() {
        assert!(listen_addrs(&["unixs://127.0.0.1:2379".into()]).is_err());
        assert_eq!(
            listen_addrs(&["https://127.0.0.1:2379".into()])
                .unwrap()
                .len(),
            1
        );
        assert!(listen_addrs(&["http://127.0.0.1".into()]).is_err());
        assert!(listen_addrs(&["http://example.com:1".into()]).is_err());
        let a = listen_addrs(&["http://[::1]:3000".into(), "http://0.0.0.0:1".into()]).unwrap();
        assert_eq!(a.len(), 2);
    }
}
