//! A fault-injecting TCP proxy between the members of a test [`Cluster`](super::cluster::Cluster).
//!
//! Every member `d` gets one proxy listener; the address of that listener is `d`'s advertised
//! peer URL (the one in `--initial-cluster`), while `d` itself listens on its real peer port. So
//! every peer connection a member opens goes through the proxy of its destination. The proxy
//! learns which member opened a connection by finding the owner of the connecting socket in
//! `/proc` (the connection's ports in `/proc/net/tcp*` give the socket's inode; the member
//! processes' `/proc/<pid>/fd` give its owner), so every accepted connection belongs to one
//! directed pair of members.
//!
//! The state of each directed link `a -> b` is one of:
//!
//! - [`Link::Pass`]: bytes flow;
//! - [`Link::Refuse`]: `a` cannot talk to `b`: connections `a` opened to `b` are closed and new
//!   ones are accepted and closed at once (connections `b` opened to `a` are untouched);
//! - [`Link::Blackhole`]: bytes from `a` to `b` are held, on every connection between them in
//!   either direction (requests of `a` to `b` and answers of `a` to `b`'s requests), as in a
//!   one-way network partition; they are delivered when the link heals, as TCP would
//!   retransmit them. The other direction keeps flowing.
//!
//! Both ways is two one-way cuts. Changes apply to live connections at once.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The state of one directed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow.
    Pass,
    /// Connections from the source to the destination are dropped and refused.
    Refuse,
    /// Bytes from the source to the destination are held until the link heals.
    Blackhole,
}

/// The states of all directed links, `links[from][to]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rules {
    links: Vec<Vec<Link>>,
}

impl Rules {
    fn get(&self, from: usize, to: usize) -> Link {
        self.links[from][to]
    }
}

/// Counters of what the proxy carried.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyStats {
    /// Connections accepted and attributed to a member.
    pub connections: u64,
    /// Connections closed because their link was (or became) refused.
    pub refused: u64,
    /// Connections closed because their source could not be identified (a dead process).
    pub unidentified: u64,
    /// Bytes forwarded.
    pub bytes: u64,
}

struct Shared {
    /// The process id of each member's current run (None while it is down).
    pids: Mutex<Vec<Option<u32>>>,
    rules: watch::Sender<Rules>,
    stats: Mutex<ProxyStats>,
}

/// The proxies of one cluster: one listener per member.
pub struct Network {
    shared: Arc<Shared>,
    /// The proxy port of each member (its advertised peer port).
    ports: Vec<u16>,
    tasks: Vec<JoinHandle<()>>,
}

impl Network {
    /// Starts proxies for `n` members: member `d`'s proxy listens on `proxy_ports[d]` and
    /// forwards to `127.0.0.1:real_ports[d]`. Must be called inside a tokio runtime.
    pub fn start(proxy_ports: &[u16], real_ports: &[u16]) -> Self {
        let n = proxy_ports.len();
        assert_eq!(n, real_ports.len());
        let (rules, _) = watch::channel(Rules {
            links: vec![vec![Link::Pass; n]; n],
        });
        let shared = Arc::new(Shared {
            pids: Mutex::new(vec![None; n]),
            rules,
            stats: Mutex::new(ProxyStats::default()),
        });
        let tasks = (0..n)
            .map(|dst| {
                let std_listener = std::net::TcpListener::bind(("127.0.0.1", proxy_ports[dst]))
                    .expect("bind proxy port");
                std_listener.set_nonblocking(true).unwrap();
                let listener = TcpListener::from_std(std_listener).unwrap();
                let upstream = SocketAddr::from(([127, 0, 0, 1], real_ports[dst]));
                tokio::spawn(accept_loop(shared.clone(), listener, dst, upstream))
            })
            .collect();
        Self {
            shared,
            ports: proxy_ports.to_vec(),
            tasks,
        }
    }

    /// Member `i`'s proxy port.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Records member `i`'s current process id (None when it is down).
    pub fn set_pid(&self, i: usize, pid: Option<u32>) {
        self.shared.pids.lock()[i] = pid;
    }

    /// Sets the directed link `from -> to`.
    pub fn set(&self, from: usize, to: usize, link: Link) {
        assert_ne!(from, to, "a member has no link to itself");
        self.shared.rules.send_modify(|r| r.links[from][to] = link);
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_both(&self, a: usize, b: usize, link: Link) {
        self.shared.rules.send_modify(|r| {
            r.links[a][b] = link;
            r.links[b][a] = link;
        });
    }

    /// Cuts member `i` off from every other member, both ways.
    pub fn isolate(&self, i: usize, link: Link) {
        self.shared.rules.send_modify(|r| {
            for j in 0..r.links.len() {
                if j != i {
                    r.links[i][j] = link;
                    r.links[j][i] = link;
                }
            }
        });
    }

    /// The state of the directed link `from -> to`.
    pub fn get(&self, from: usize, to: usize) -> Link {
        self.shared.rules.borrow().get(from, to)
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        self.shared.rules.send_modify(|r| {
            for row in &mut r.links {
                row.fill(Link::Pass);
            }
        });
    }

    /// What the proxies carried so far.
    pub fn stats(&self) -> ProxyStats {
        *self.shared.stats.lock()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, dst: usize, upstream: SocketAddr) {
    let listen_port = listener.local_addr().unwrap().port();
    // The connection tasks are aborted with the listener (when the network is dropped).
    let mut live = ConnSet::default();
    loop {
        let Ok((inbound, peer)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        live.push(tokio::spawn(async move {
            let Some(src) = identify(&shared, peer.port(), listen_port).await else {
                shared.stats.lock().unidentified += 1;
                return;
            };
            if src == dst {
                // A member talking to itself through its own advertised URL: no link to cut.
                if let Ok(outbound) = TcpStream::connect(upstream).await {
                    shared.stats.lock().connections += 1;
                    run_connection(shared, inbound, outbound, src, dst).await;
                }
                return;
            }
            if shared.rules.borrow().get(src, dst) == Link::Refuse {
                shared.stats.lock().refused += 1;
                return;
            }
            let Ok(outbound) = TcpStream::connect(upstream).await else {
                // The destination is down: the caller sees the connection closed.
                return;
            };
            shared.stats.lock().connections += 1;
            run_connection(shared, inbound, outbound, src, dst).await;
        }));
    }
}

/// Connection tasks of one listener, aborted when the listener task ends (is aborted).
#[derive(Default)]
struct ConnSet(Vec<JoinHandle<()>>);

impl ConnSet {
    fn push(&mut self, handle: JoinHandle<()>) {
        self.0.retain(|h| !h.is_finished());
        self.0.push(handle);
    }
}

impl Drop for ConnSet {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Forwards one connection `src -> dst` until either side closes or the link is refused.
async fn run_connection(
    shared: Arc<Shared>,
    inbound: TcpStream,
    outbound: TcpStream,
    src: usize,
    dst: usize,
) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let up = pump(shared.clone(), in_read, out_write, src, dst);
    let down = pump(shared.clone(), out_read, in_write, dst, src);
    let mut rules = shared.rules.subscribe();
    let refused = async move {
        loop {
            if rules.borrow_and_update().get(src, dst) == Link::Refuse {
                return;
            }
            if rules.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let both = async { tokio::join!(up, down) };
    tokio::select! {
        _ = both => {}
        () = refused => {
            shared.stats.lock().refused += 1;
        }
    }
    // Dropping the halves closes both sockets.
}

/// Copies bytes written by member `from` to member `to`, holding them while that directed link
/// is blackholed.
async fn pump(
    shared: Arc<Shared>,
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    from: usize,
    to: usize,
) {
    let mut rules = shared.rules.subscribe();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Hold while blackholed (the bytes stay in the kernel's buffers meanwhile).
        wait_not_blackholed(&mut rules, from, to).await;
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = writer.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            // Re-check the link state: a cut while waiting for bytes must hold the next ones.
            changed = rules.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        // The link may have been cut while these bytes were read: hold them too.
        wait_not_blackholed(&mut rules, from, to).await;
        if writer.write_all(&buf[..n]).await.is_err() {
            return;
        }
        shared.stats.lock().bytes += u64::try_from(n).unwrap();
    }
}

async fn wait_not_blackholed(rules: &mut watch::Receiver<Rules>, from: usize, to: usize) {
    loop {
        if from == to || rules.borrow_and_update().get(from, to) != Link::Blackhole {
            return;
        }
        if rules.changed().await.is_err() {
            return;
        }
    }
}

/// Which member opened the connection from `127.0.0.1:src_port` to `127.0.0.1:dst_port`.
/// Retries briefly: a member that just started may not be registered yet.
async fn identify(shared: &Arc<Shared>, src_port: u16, dst_port: u16) -> Option<usize> {
    for _ in 0..20 {
        let pids = shared.pids.lock().clone();
        let found = tokio::task::spawn_blocking(move || owner_of(&pids, src_port, dst_port))
            .await
            .ok()
            .flatten();
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The index in `pids` of the process holding the TCP socket `src_port -> dst_port`.
fn owner_of(pids: &[Option<u32>], src_port: u16, dst_port: u16) -> Option<usize> {
    let inodes = socket_inodes(src_port, dst_port);
    if inodes.is_empty() {
        return None;
    }
    pids.iter().enumerate().find_map(|(i, pid)| {
        let pid = (*pid)?;
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .filter_map(|target| {
                let t = target.to_str()?;
                t.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
            .any(|inode| inodes.contains(&inode))
            .then_some(i)
    })
}

/// Inodes of the sockets whose local port is `local` and remote port `remote`
/// (`/proc/net/tcp` and `tcp6`).
fn socket_inodes(local: u16, remote: u16) -> HashSet<u64> {
    let mut out = HashSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            if port(cols[1]) == Some(local)
                && port(cols[2]) == Some(remote)
                && let Ok(inode) = cols[9].parse::<u64>()
                && inode != 0
            {
                out.insert(inode);
            }
        }
    }
    out
}
