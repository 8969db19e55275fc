//! Multi-process clusters for the integration tests: `n` real members (our `xline` binary, or
//! Debian's etcd 3.4 when `XLINE_TEST_SERVER=etcd`, started with the same etcd flags) on
//! loopback ports, each with its data directory and log file in one temporary directory.
//!
//! A member can be killed with SIGKILL, restarted on the same ports and data directory, paused
//! with SIGSTOP and resumed with SIGCONT. Every member is killed when the [`Cluster`] is dropped
//! (and the tails of their logs are printed if the test is panicking).
//!
//! With [`Cluster::start_proxied`], peer traffic between members goes through a fault-injecting
//! TCP proxy ([`super::proxy::Network`]): each member's advertised peer URL (the one in
//! `--initial-cluster`) is its proxy's address, while the member listens on its own real peer
//! port; [`Cluster::net`] cuts and heals the links.
//!
//! Ports: client and peer ports are drawn at random below the kernel's ephemeral range
//! (32768-60999 on Linux) and never handed out twice in one test process, so a killed member's
//! port is not taken meanwhile by an outgoing connection or by another cluster of the same
//! process; cluster test binaries run one at a time (nextest group `clusters`).

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, ConnectOptions};
use tempfile::TempDir;

use super::proxy::Network;
use super::{ServerKind, ServerOpts, read_tail, server_kind};

/// How long a (re)started member may take to answer its first Range.
const MEMBER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Lowest port handed out (inclusive).
const PORT_LOW: u16 = 20_000;
/// Highest port handed out (exclusive): the start of Linux's default ephemeral range.
const PORT_HIGH: u16 = 32_768;

/// Ports handed out in this process; never handed out again.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port below the ephemeral range that this process never handed out before.
pub fn fresh_port() -> u16 {
    // A cheap per-call pseudo-random sequence: process id, time and a counter, mixed.
    let mut state = u64::from(std::process::id())
        ^ SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
            u64::try_from(d.as_nanos() & 0xffff_ffff_ffff).unwrap_or(0)
        });
    let mut handed = HANDED_OUT.lock().unwrap();
    let handed = handed.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let span = u64::from(PORT_HIGH - PORT_LOW);
        let port = PORT_LOW + u16::try_from(z % span).unwrap();
        if handed.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.insert(port);
            return port;
        }
    }
    panic!("no free port in {PORT_LOW}..{PORT_HIGH}");
}

/// Options for the clients the cluster hands out: short timeouts, so a dead member fails fast.
fn member_connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(5))
}

/// Connects an `etcd-client` to one endpoint with the cluster's short timeouts (lazily).
pub async fn connect_member(endpoint: &str) -> Client {
    Client::connect([endpoint], Some(member_connect_options()))
        .await
        .expect("etcd-client connect")
}

/// One member of a [`Cluster`].
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    child: Option<Child>,
    paused: bool,
    starts: u32,
    id: Option<u64>,
}

/// A cluster of real server processes; every member is killed on drop.
pub struct Cluster {
    kind: ServerKind,
    opts: ServerOpts,
    dir: TempDir,
    members: Vec<Member>,
    initial: String,
    /// The proxies between the members, when started with [`Cluster::start_proxied`].
    net: Option<Network>,
}

impl Cluster {
    /// Starts `n` members with default flags and waits until every one serves.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, ServerOpts::new()).await
    }

    /// Starts `n` members with extra flags and waits until every one serves.
    pub async fn start_with(n: usize, opts: ServerOpts) -> Self {
        Self::start_inner(n, opts, false).await
    }

    /// Starts `n` members whose peer traffic goes through a fault-injecting proxy (see
    /// [`Cluster::net`]) and waits until every one serves. The proxies are tasks of the
    /// current tokio runtime: peer traffic only flows while that runtime runs them (use a
    /// multi-threaded runtime in tests that block).
    pub async fn start_proxied(n: usize, opts: ServerOpts) -> Self {
        Self::start_inner(n, opts, true).await
    }

    async fn start_inner(n: usize, opts: ServerOpts, proxied: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xline-cluster-")
            .tempdir()
            .expect("create tempdir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: fresh_port(),
                peer_port: fresh_port(),
                metrics_port: fresh_port(),
                child: None,
                paused: false,
                starts: 0,
                id: None,
            })
            .collect();
        let net = proxied.then(|| {
            let proxy_ports: Vec<u16> = (0..n).map(|_| fresh_port()).collect();
            let real_ports: Vec<u16> = members.iter().map(|m| m.peer_port).collect();
            Network::start(&proxy_ports, &real_ports)
        });
        let advertised = |i: usize| net.as_ref().map_or(members[i].peer_port, |net| net.port(i));
        let initial = (0..n)
            .map(|i| format!("{}=http://127.0.0.1:{}", members[i].name, advertised(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            kind: server_kind(),
            opts,
            dir,
            members,
            initial,
            net,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_serving(i).await;
        }
        for i in 0..n {
            let id = cluster.fetch_member_id(i).await;
            cluster.members[i].id = Some(id);
        }
        cluster
    }

    /// Which kind of server the members are.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s name (`m0`, `m1`, ...).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s advertised peer URL (its proxy's address in a proxied cluster).
    pub fn peer_url(&self, i: usize) -> String {
        let port = self
            .net
            .as_ref()
            .map_or(self.members[i].peer_port, |net| net.port(i));
        format!("http://127.0.0.1:{port}")
    }

    /// Where member `i` serves `/metrics` and `/health` (`--listen-metrics-urls`).
    pub fn metrics_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].metrics_port)
    }

    /// The peer URL member `i` listens on (the same as [`Cluster::peer_url`] unless proxied).
    pub fn listen_peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].peer_port)
    }

    /// The proxies between the members (panics unless started with [`Cluster::start_proxied`]).
    pub fn net(&self) -> &Network {
        self.net
            .as_ref()
            .expect("cluster started with Cluster::start_proxied")
    }

    /// The `--initial-cluster` every member starts with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial
    }

    /// Member `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    /// Member `i`'s log file (stdout and stderr of every run, each run headed by a marker).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// Everything member `i` printed so far.
    pub fn log(&self, i: usize) -> String {
        read_tail(&self.log_path(i), usize::MAX)
    }

    /// What member `i` printed in its current (latest) run.
    pub fn current_run_log(&self, i: usize) -> String {
        let log = self.log(i);
        let marker = format!("===== start #{} =====", self.members[i].starts);
        match log.rfind(&marker) {
            Some(at) => log[at..].to_owned(),
            None => log,
        }
    }

    /// Member `i`'s id (as reported in response headers), learnt when the cluster started.
    pub fn member_id(&self, i: usize) -> u64 {
        self.members[i].id.expect("member id known once started")
    }

    /// The index of the member with this id.
    pub fn index_of(&self, id: u64) -> usize {
        (0..self.len())
            .find(|&i| self.members[i].id == Some(id))
            .unwrap_or_else(|| panic!("no member has id {id:x}"))
    }

    /// Whether member `i`'s process is alive (paused counts as alive).
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Whether member `i` is stopped with SIGSTOP.
    pub fn is_paused(&self, i: usize) -> bool {
        self.members[i].paused
    }

    /// Whether member `i` runs and is not paused.
    pub fn is_up(&mut self, i: usize) -> bool {
        self.is_running(i) && !self.is_paused(i)
    }

    /// A new client connected to member `i` only.
    pub async fn client(&self, i: usize) -> Client {
        connect_member(&self.endpoint(i)).await
    }

    /// Starts member `i`'s process (same ports and data directory as before) without waiting.
    pub fn spawn(&mut self, i: usize) {
        assert!(
            self.members[i].child.is_none(),
            "member {i} already running"
        );
        self.members[i].starts += 1;
        self.members[i].paused = false;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open member log");
        let _ = writeln!(log, "===== start #{} =====", self.members[i].starts);
        let stderr = log.try_clone().expect("clone log file");
        let mut cmd = self.command(i);
        let cmdline = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        if let Some(net) = &self.net {
            net.set_pid(i, Some(child.id()));
        }
        self.members[i].child = Some(child);
    }

    /// Restarts member `i` (which must not be running) and waits until it serves.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_serving(i).await;
    }

    /// SIGKILLs member `i` and reaps it (a paused member too).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(net) = &self.net {
            net.set_pid(i, None);
        }
        self.members[i].paused = false;
    }

    /// Stops member `i` with SIGSTOP (it keeps its sockets but answers nothing).
    pub fn pause(&mut self, i: usize) {
        if self.signal(i, "-STOP") {
            self.members[i].paused = true;
        }
    }

    /// Resumes a member stopped with [`Cluster::pause`] (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        if self.members[i].paused && self.signal(i, "-CONT") {
            self.members[i].paused = false;
        }
    }

    /// Sends a signal with `kill(1)` (the crate forbids unsafe code); false when not running.
    fn signal(&mut self, i: usize, sig: &str) -> bool {
        let Some(child) = self.members[i].child.as_ref() else {
            return false;
        };
        Command::new("kill")
            .arg(sig)
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until member `i` answers a (linearizable) Range; panics with its log otherwise.
    pub async fn wait_serving(&mut self, i: usize) {
        let deadline = Instant::now() + MEMBER_READY_TIMEOUT;
        let mut last_err = String::new();
        loop {
            if let Some(child) = self.members[i].child.as_mut()
                && let Some(status) = child.try_wait().ok().flatten()
            {
                self.members[i].child = None;
                panic!(
                    "member {i} exited during startup with {status}\n----- log -----\n{}",
                    read_tail(&self.log_path(i), 16 * 1024)
                );
            }
            assert!(
                Instant::now() < deadline,
                "member {i} not serving after {MEMBER_READY_TIMEOUT:?} (last error: {last_err})"
            );
            let endpoint = self.endpoint(i);
            let probe = async move {
                let mut client = Client::connect(
                    [endpoint.as_str()],
                    Some(
                        ConnectOptions::new()
                            .with_connect_timeout(Duration::from_millis(500))
                            .with_timeout(Duration::from_secs(2)),
                    ),
                )
                .await?;
                client.get("ready-probe", None).await
            };
            match tokio::time::timeout(Duration::from_secs(3), probe).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => last_err = e.to_string(),
                Err(_) => last_err = "probe timed out".to_owned(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn fetch_member_id(&self, i: usize) -> u64 {
        let deadline = Instant::now() + MEMBER_READY_TIMEOUT;
        loop {
            if let Some(id) = self.status_of(i).await.map(|(id, _)| id) {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} never answered Status"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Member `i`'s (own id, leader id) from Maintenance.Status, `None` on error or after 1 s.
    pub async fn status_of(&self, i: usize) -> Option<(u64, u64)> {
        let mut c = self.client(i).await;
        match tokio::time::timeout(Duration::from_secs(1), c.status()).await {
            Ok(Ok(s)) => Some((s.header()?.member_id(), s.leader())),
            _ => None,
        }
    }

    /// The leader id every running, unpaused member agrees on (panics after `timeout`).
    pub async fn leader(&mut self, timeout: Duration) -> u64 {
        self.leader_other_than(0, timeout).await
    }

    /// The index of the member every running, unpaused member agrees is the leader.
    pub async fn leader_index(&mut self, timeout: Duration) -> usize {
        let id = self.leader(timeout).await;
        self.index_of(id)
    }

    /// The leader every running, unpaused member agrees on, once it is not `old`.
    pub async fn leader_other_than(&mut self, old: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.agreed_leader().await
                && leader != old
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader other than {old:x} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader id all running, unpaused members report right now, if they agree on one.
    pub async fn agreed_leader(&mut self) -> Option<u64> {
        let up: Vec<usize> = (0..self.len()).filter(|&i| self.is_up(i)).collect();
        let mut seen = Vec::new();
        for i in up {
            seen.push(self.status_of(i).await.map_or(0, |(_, leader)| leader));
        }
        let first = *seen.first()?;
        (first != 0 && seen.iter().all(|&l| l == first)).then_some(first)
    }

    /// The last `max` bytes of every member's log, headed by the member's name.
    pub fn log_tails(&self, max: usize) -> String {
        (0..self.len())
            .map(|i| {
                format!(
                    "----- {} ({}) -----\n{}",
                    self.members[i].name,
                    self.log_path(i).display(),
                    read_tail(&self.log_path(i), max)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn command(&self, i: usize) -> Command {
        let m = &self.members[i];
        let client = self.endpoint(i);
        let peer = self.peer_url(i);
        let listen_peer = self.listen_peer_url(i);
        let program = match self.kind {
            ServerKind::Xline => PathBuf::from(env!("CARGO_BIN_EXE_xline")),
            ServerKind::Etcd => PathBuf::from("/usr/bin/etcd"),
        };
        let mut cmd = Command::new(program);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &listen_peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &self.initial,
                "--initial-cluster-state",
                "new",
            ])
            .args(["--listen-metrics-urls", &self.metrics_url(i)]);
        cmd.args(&self.opts.args);
        if self.kind == ServerKind::Xline {
            cmd.args(&self.opts.xline_args);
        }
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{}\n----- end of member logs -----",
                self.log_tails(6 * 1024)
            );
        }
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
