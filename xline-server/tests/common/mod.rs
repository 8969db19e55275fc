//! Shared harness for the integration tests: spawns a real server process (our `xline` binary,
//! or Debian's etcd when `XLINE_TEST_SERVER=etcd`) on loopback ports with a temporary data
//! directory, and hands out `etcd-client` clients connected to it.
//!
//! The same tests run against both servers: that is how the expectations are known to be etcd's.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, ResponseHeader};
use tempfile::TempDir;

pub mod cluster;
pub mod http;
pub mod proxy;
pub mod snapshot;

/// How long a server may take to answer its first Range.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which server binary the tests drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// This workspace's `xline` binary.
    Xline,
    /// Debian's etcd at `/usr/bin/etcd` (the reference).
    Etcd,
}

/// The server chosen by the environment variable `XLINE_TEST_SERVER` (`xline` by default).
pub fn server_kind() -> ServerKind {
    match std::env::var("XLINE_TEST_SERVER").as_deref() {
        Err(_) | Ok("") | Ok("xline") => ServerKind::Xline,
        Ok("etcd") => ServerKind::Etcd,
        Ok(other) => panic!("XLINE_TEST_SERVER must be `xline` or `etcd`, not {other:?}"),
    }
}

/// True when the tests run against the real etcd.
pub fn is_etcd() -> bool {
    server_kind() == ServerKind::Etcd
}

/// Extra command-line flags for a test server.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// Flags given to every server kind (etcd's spelling).
    pub args: Vec<String>,
    /// Flags given only to xline (e.g. `--backend sled`).
    pub xline_args: Vec<String>,
}

impl ServerOpts {
    /// No extra flags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `flag value` for every server kind.
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_owned());
        self
    }

    /// Adds `flag value` only when the server is xline.
    pub fn xline_arg(mut self, flag: &str, value: &str) -> Self {
        self.xline_args.push(flag.to_owned());
        self.xline_args.push(value.to_owned());
        self
    }
}

/// A running server process with its own data directory; killed on drop.
pub struct TestServer {
    kind: ServerKind,
    opts: ServerOpts,
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: TempDir,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

/// Two distinct free loopback ports (both bound at once so they differ).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Options for every client the tests make: short timeouts, so a dead server fails fast.
fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10))
}

/// Connects an `etcd-client` to `endpoint` (the connection itself is lazy).
pub async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], Some(connect_options()))
        .await
        .expect("etcd-client connect")
}

impl TestServer {
    /// Starts a fresh server (new ports, new empty data directory) and waits until it serves.
    pub async fn start(opts: ServerOpts) -> Self {
        Self::start_kind(server_kind(), opts).await
    }

    /// [`TestServer::start`] with the server kind given rather than chosen by the environment
    /// (for tests that compare xline with etcd directly).
    pub async fn start_kind(kind: ServerKind, opts: ServerOpts) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xline-test-")
            .tempdir()
            .expect("create tempdir");
        let (client_port, peer_port) = free_ports();
        let log_path = dir.path().join("server.log");
        let mut server = Self {
            kind,
            opts,
            name: "node1".to_owned(),
            client_port,
            peer_port,
            log_path,
            dir,
            child: None,
            starts: 0,
        };
        server.spawn_and_wait().await;
        server
    }

    /// Starts a fresh server without extra flags.
    pub async fn start_default() -> Self {
        Self::start(ServerOpts::new()).await
    }

    /// Which kind of server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL, `http://127.0.0.1:PORT` (the only member of `--initial-cluster`, named
    /// [`TestServer::name`]).
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The member name (`--name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The server's data directory (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A new client connected to this server.
    pub async fn client(&self) -> Client {
        connect(&self.endpoint()).await
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) if it runs, and starts it again on
    /// the same ports and data directory; waits until it serves.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().await;
    }

    /// SIGKILLs the server and reaps it; `restart()` brings it back.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (SIGTERM), falling back to SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// True while the child process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Everything the server printed so far (both runs and restarts).
    pub fn log(&self) -> String {
        read_tail(&self.log_path, usize::MAX)
    }

    fn command(&self) -> Command {
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let program: PathBuf = match self.kind {
            ServerKind::Xline => PathBuf::from(env!("CARGO_BIN_EXE_xline")),
            ServerKind::Etcd => PathBuf::from("/usr/bin/etcd"),
        };
        let mut cmd = Command::new(program);
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url);
        // Both servers listen for peers (on their own free port, so tests run in parallel).
        cmd.arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{}={}", self.name, peer_url));
        cmd.args(&self.opts.args);
        if self.kind == ServerKind::Xline {
            cmd.args(&self.opts.xline_args);
        }
        cmd
    }

    async fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "server already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        {
            use std::io::Write;
            let _ = writeln!(log, "===== start #{} =====", self.starts);
        }
        let stderr = log.try_clone().expect("clone log file");
        let mut cmd = self.command();
        let cmdline = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_err = String::new();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().ok().flatten() {
                self.child = None;
                panic!(
                    "server exited during startup with {status}\ncommand: {cmdline}\n----- server log -----\n{}",
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                let log = self.log();
                self.kill9();
                panic!(
                    "server not ready after {READY_TIMEOUT:?} (last error: {last_err})\ncommand: {cmdline}\n----- server log -----\n{log}"
                );
            }
            let endpoint = self.endpoint();
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
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- server log tail ({:?}, {}) -----\n{}\n----- end of server log -----",
                self.kind,
                self.log_path.display(),
                read_tail(&self.log_path, 16 * 1024)
            );
        }
        self.kill9();
    }
}

/// The last `max` bytes of a file, lossily decoded.
fn read_tail(path: &Path, max: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let max = u64::try_from(max).unwrap_or(u64::MAX);
    if len > max {
        let _ = f.seek(SeekFrom::Start(len - max));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Assertion helpers
// ---------------------------------------------------------------------------------------------

/// Asserts a response header is filled in like etcd's and carries revision `rev`.
#[track_caller]
pub fn check_header(header: Option<&ResponseHeader>, rev: i64) {
    let h = header.expect("response has a header");
    assert_ne!(h.cluster_id(), 0, "header.cluster_id must be non-zero");
    assert_ne!(h.member_id(), 0, "header.member_id must be non-zero");
    assert!(h.raft_term() >= 1, "header.raft_term must be >= 1: {h:?}");
    assert_eq!(h.revision(), rev, "header.revision");
}

/// The revision in a response header.
#[track_caller]
pub fn header_rev(header: Option<&ResponseHeader>) -> i64 {
    header.expect("response has a header").revision()
}

/// Asserts that `result` is a gRPC error with exactly this code and message.
#[track_caller]
pub fn expect_status<T: Debug>(
    result: Result<T, etcd_client::Error>,
    code: tonic::Code,
    message: &str,
) {
    match result {
        Ok(v) => panic!("expected error {code:?} {message:?}, got Ok({v:?})"),
        Err(etcd_client::Error::GRpcStatus(status)) => {
            assert_eq!(
                (status.code(), status.message()),
                (code, message),
                "unexpected gRPC status: {status:?}"
            );
        }
        Err(other) => panic!("expected gRPC status {code:?} {message:?}, got {other:?}"),
    }
}

/// Asserts that `result` is a gRPC error with this code (any message).
#[track_caller]
pub fn expect_code<T: Debug>(result: Result<T, etcd_client::Error>, code: tonic::Code) {
    match result {
        Ok(v) => panic!("expected error {code:?}, got Ok({v:?})"),
        Err(etcd_client::Error::GRpcStatus(status)) => {
            assert_eq!(status.code(), code, "unexpected gRPC status: {status:?}");
        }
        Err(other) => panic!("expected gRPC status {code:?}, got {other:?}"),
    }
}

/// A key-value as etcd reports it, for whole-value comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// Key bytes as a string.
    pub key: String,
    /// Value bytes as a string.
    pub value: String,
    /// `create_revision`.
    pub create: i64,
    /// `mod_revision`.
    pub modr: i64,
    /// `version`.
    pub version: i64,
    /// `lease`.
    pub lease: i64,
}

/// Shorthand constructor for an expected [`Kv`] without a lease.
pub fn kv(key: &str, value: &str, create: i64, modr: i64, version: i64) -> Kv {
    Kv {
        key: key.to_owned(),
        value: value.to_owned(),
        create,
        modr,
        version,
        lease: 0,
    }
}

/// Converts client key-values into [`Kv`]s.
pub fn kvs(kvs: &[etcd_client::KeyValue]) -> Vec<Kv> {
    kvs.iter().map(to_kv).collect()
}

/// Converts one client key-value into a [`Kv`].
pub fn to_kv(k: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(k.key()).into_owned(),
        value: String::from_utf8_lossy(k.value()).into_owned(),
        create: k.create_revision(),
        modr: k.mod_revision(),
        version: k.version(),
        lease: k.lease(),
    }
}

/// Just the keys, in order.
pub fn keys(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|k| String::from_utf8_lossy(k.key()).into_owned())
        .collect()
}
