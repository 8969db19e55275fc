//! Test harness: spawns real server processes (this workspace's `xline` binary, or Debian's
//! etcd when `XLINE_TEST_SERVER=etcd`) on loopback ports, each with a temporary data directory,
//! and connects `xline-client` clients to them. The same tests run against both servers.
//!
//! The `xline` binary is taken from the target directory of the running test
//! (`target/<profile>/xline`); when it has not been built, the tests print a `SKIP` line and pass
//! without checking anything (build it with `cargo build -p xline-server`).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

pub mod certs;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use xline_client::{Client, ConnectOptions};

/// How long a (re)started member may take to answer its first Range.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server the tests drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// This workspace's `xline`.
    Xline,
    /// Debian's etcd.
    Etcd,
}

/// The server chosen by `XLINE_TEST_SERVER` (`xline` by default).
pub fn server_kind() -> ServerKind {
    match std::env::var("XLINE_TEST_SERVER").as_deref() {
        Err(_) | Ok("") | Ok("xline") => ServerKind::Xline,
        Ok("etcd") => ServerKind::Etcd,
        Ok(other) => panic!("XLINE_TEST_SERVER must be `xline` or `etcd`, not {other:?}"),
    }
}

/// True when the tests run against etcd.
pub fn is_etcd() -> bool {
    server_kind() == ServerKind::Etcd
}

/// The server binary, or `None` (with a SKIP line printed) when it is absent.
pub fn server_binary(kind: ServerKind) -> Option<PathBuf> {
    let path = match kind {
        ServerKind::Etcd => PathBuf::from("/usr/bin/etcd"),
        ServerKind::Xline => {
            // target/<profile>/deps/<test> -> target/<profile>/xline
            let exe = std::env::current_exe().ok()?;
            exe.parent()?.parent()?.join("xline")
        }
    };
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: server binary {} not found (build it: cargo build -p xline-server)",
            path.display()
        );
        None
    }
}

const PORT_LOW: u16 = 20_000;
const PORT_HIGH: u16 = 32_768;
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port below the ephemeral range, never handed out twice in this process.
pub fn fresh_port() -> u16 {
    let mut state = u64::from(std::process::id())
        ^ SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
            u64::try_from(d.as_nanos() & 0xffff_ffff_ffff).unwrap_or(0)
        });
    let mut handed = HANDED_OUT.lock().unwrap();
    let handed = handed.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let port = PORT_LOW + u16::try_from(z % u64::from(PORT_HIGH - PORT_LOW)).unwrap();
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

/// Options for the clients the harness hands out: short timeouts, so a dead member fails fast.
pub fn test_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_dial_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(10))
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    starts: u32,
}

/// A cluster of real server processes (one member for the single-server tests); killed on drop.
pub struct Cluster {
    kind: ServerKind,
    binary: PathBuf,
    args: Vec<String>,
    dir: TempDir,
    members: Vec<Member>,
    initial: String,
}

impl Cluster {
    /// Starts `n` members and waits until each serves; `None` when the binary is absent.
    pub async fn start(n: usize) -> Option<Self> {
        Self::start_with(n, &[], &[]).await
    }

    /// As [`Cluster::start`], with extra flags for every server and for xline only.
    pub async fn start_with(n: usize, args: &[&str], xline_args: &[&str]) -> Option<Self> {
        let kind = server_kind();
        let binary = server_binary(kind)?;
        let dir = tempfile::Builder::new()
            .prefix("xline-client-test-")
            .tempdir()
            .unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: fresh_port(),
                peer_port: fresh_port(),
                child: None,
                starts: 0,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        if kind == ServerKind::Xline {
            args.extend(xline_args.iter().map(|s| (*s).to_owned()));
        }
        let mut cluster = Self {
            kind,
            binary,
            args,
            dir,
            members,
            initial,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_serving(i).await;
        }
        Some(cluster)
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// A client over every member (the first call goes to member 0).
    pub async fn client(&self) -> Client {
        Client::connect(self.endpoints(), test_options())
            .await
            .unwrap()
    }

    /// A client over the given members only.
    pub async fn client_of(&self, members: &[usize]) -> Client {
        let eps: Vec<String> = members.iter().map(|&i| self.endpoint(i)).collect();
        Client::connect(eps, test_options()).await.unwrap()
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    fn spawn(&mut self, i: usize) {
        self.members[i].starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let _ = writeln!(log, "===== start #{} =====", self.members[i].starts);
        let stderr = log.try_clone().unwrap();
        let m = &self.members[i];
        let client = self.endpoint(i);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &self.initial,
                "--initial-cluster-state",
                "new",
            ])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        self.members[i].child = Some(child);
    }

    /// SIGKILLs member `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed member and waits until it serves.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_serving(i).await;
    }

    async fn wait_serving(&mut self, i: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_err = String::new();
        loop {
            if let Some(child) = self.members[i].child.as_mut()
                && let Some(status) = child.try_wait().ok().flatten()
            {
                self.members[i].child = None;
                panic!(
                    "member {i} exited during startup with {status}\n{}",
                    read_tail(&self.log_path(i), 8 * 1024)
                );
            }
            assert!(
                Instant::now() < deadline,
                "member {i} not serving after {READY_TIMEOUT:?}: {last_err}\n{}",
                read_tail(&self.log_path(i), 8 * 1024)
            );
            let opts = ConnectOptions::new()
                .with_dial_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(2))
                .with_max_retries(1);
            match Client::connect([self.endpoint(i)], opts).await {
                Ok(c) => match c.kv().get("ready-probe", None).await {
                    Ok(_) => return,
                    Err(e) => last_err = e.to_string(),
                },
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the member every live member reports as leader.
    pub async fn leader_index(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            let mut ids = Vec::new();
            for i in 0..self.members.len() {
                if self.members[i].child.is_none() {
                    continue;
                }
                let c = self.client_of(&[i]).await;
                if let Ok(s) = c.maintenance().status().await {
                    seen.push(s.leader);
                    ids.push((s.header.map_or(0, |h| h.member_id), i));
                }
            }
            if let Some(&first) = seen.first()
                && first != 0
                && seen.iter().all(|&l| l == first)
                && let Some(&(_, i)) = ids.iter().find(|(id, _)| *id == first)
            {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.members.len() {
                eprintln!(
                    "----- {} log tail -----\n{}",
                    self.members[i].name,
                    read_tail(&self.log_path(i), 6 * 1024)
                );
            }
        }
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}

fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max {
        let _ = f.seek(SeekFrom::Start(len - max));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Starts a single-member server, or returns from the test (SKIP) when the binary is absent.
#[macro_export]
macro_rules! single_or_skip {
    () => {
        match common::Cluster::start(1).await {
            Some(c) => c,
            None => return,
        }
    };
    ($args:expr, $xline_args:expr) => {
        match common::Cluster::start_with(1, $args, $xline_args).await {
            Some(c) => c,
            None => return,
        }
    };
}
