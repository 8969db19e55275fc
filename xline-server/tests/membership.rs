//! Membership changes on real processes (our `xline`, or Debian's etcd with
//! `XLINE_TEST_SERVER=etcd`): a learner is added, started with `--initial-cluster-state
//! existing`, catches up and is promoted; a voter is added directly; a follower and then the
//! leader are removed; a member's peer URLs are updated and it restarts on them. Every test
//! runs a writer through the current members meanwhile and checks at the end that every
//! acknowledged put is readable on every member.

#![allow(clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ServerKind;
use common::cluster::{connect_member, fresh_port};
use etcd_client::{Client, GetOptions, MemberAddOptions};
use tempfile::TempDir;

/// How long a member may take to serve after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One member process (killed on drop).
struct Proc {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    id: u64,
}

/// A handful of members started by hand, so that members can join later.
struct Members {
    kind: ServerKind,
    dir: TempDir,
    procs: Vec<Proc>,
}

impl Members {
    /// Starts `n` founding members and waits until each serves.
    async fn start(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xline-membership-")
            .tempdir()
            .expect("tempdir");
        let mut members = Self {
            kind: common::server_kind(),
            dir,
            procs: Vec::new(),
        };
        for i in 0..n {
            members.procs.push(Proc {
                name: format!("m{i}"),
                client_port: fresh_port(),
                peer_port: fresh_port(),
                child: None,
                id: 0,
            });
        }
        let initial = members.initial_cluster(None);
        for i in 0..n {
            members.spawn(i, &initial, "new");
        }
        for i in 0..n {
            members.wait_serving(i, false).await;
            members.procs[i].id = members.own_id(i).await;
        }
        members
    }

    /// `name=peerURL,...` of the running members (and of `extra`).
    fn initial_cluster(&self, extra: Option<usize>) -> String {
        self.procs
            .iter()
            .enumerate()
            .filter(|(i, p)| p.child.is_some() || Some(*i) == extra || p.id == 0)
            .map(|(_, p)| format!("{}=http://127.0.0.1:{}", p.name, p.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.procs[i].client_port)
    }

    fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.procs[i].peer_port)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.procs[i].name))
    }

    /// Starts member `i`'s process.
    fn spawn(&mut self, i: usize, initial: &str, state: &str) {
        let program = match self.kind {
            ServerKind::Xline => PathBuf::from(env!("CARGO_BIN_EXE_xline")),
            ServerKind::Etcd => PathBuf::from("/usr/bin/etcd"),
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let client = self.endpoint(i);
        let peer = self.peer_url(i);
        let p = &self.procs[i];
        let mut cmd = Command::new(program);
        cmd.args(["--name", &p.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&p.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", initial])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log));
        self.procs[i].child = Some(cmd.spawn().expect("spawn member"));
    }

    /// Adds a process slot for a new member (not started).
    fn new_slot(&mut self) -> usize {
        let i = self.procs.len();
        self.procs.push(Proc {
            name: format!("m{i}"),
            client_port: fresh_port(),
            peer_port: fresh_port(),
            child: None,
            id: 0,
        });
        i
    }

    /// Waits until member `i` answers a Range (serializable for a learner).
    async fn wait_serving(&mut self, i: usize, serializable: bool) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.procs[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.procs[i].child = None;
                panic!("member {i} exited with {status}:\n{}", self.log(i));
            }
            let mut client = connect_member(&self.endpoint(i)).await;
            let opts = serializable.then(|| GetOptions::new().with_serializable());
            if client.get("probe", opts).await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} does not serve:\n{}",
                self.log(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Member `i`'s id (from its Status).
    async fn own_id(&self, i: usize) -> u64 {
        let mut client = connect_member(&self.endpoint(i)).await;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(status) = client.status().await {
                return status.header().expect("header").member_id();
            }
            assert!(
                Instant::now() < deadline,
                "member {i} never answered Status"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader's index among the running members, as member `via` sees it.
    async fn leader(&self, via: usize) -> usize {
        let mut client = connect_member(&self.endpoint(via)).await;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(status) = client.status().await
                && let Some(i) = self.procs.iter().position(|p| p.id == status.leader())
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader seen by member {via}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until member `i`'s process exits by itself (a removed member stops).
    async fn wait_exit(&mut self, i: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.procs[i].child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.procs[i].child = None;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        text.get(start..).unwrap_or(&text).to_owned()
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.procs.len() {
                eprintln!("----- {} -----\n{}", self.procs[i].name, self.log(i));
            }
        }
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// Puts `w/<n>` through the endpoints in `targets` (round robin) until stopped; remembers
/// which puts were acknowledged.
struct Writer {
    targets: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(targets: Vec<String>) -> Self {
        let targets = Arc::new(Mutex::new(targets));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (targets, acked, stop) = (targets.clone(), acked.clone(), stop.clone());
            async move {
                let mut clients: BTreeMap<String, Client> = BTreeMap::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let list = targets.lock().expect("lock").clone();
                    if list.is_empty() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let endpoint = list[usize::try_from(n).expect("small") % list.len()].clone();
                    n += 1;
                    if !clients.contains_key(&endpoint) {
                        clients.insert(endpoint.clone(), connect_member(&endpoint).await);
                    }
                    let client = clients.get_mut(&endpoint).expect("client");
                    let (key, value) = (format!("w/{n:06}"), format!("v{n}"));
                    let put = client.put(key.as_str(), value.as_str(), None);
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), put).await {
                        acked.lock().expect("lock").insert(key, value);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        Self {
            targets,
            acked,
            stop,
            task,
        }
    }

    fn set_targets(&self, targets: Vec<String>) {
        *self.targets.lock().expect("lock") = targets;
    }

    /// Stops and returns the acknowledged puts.
    async fn finish(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task");
        let acked = self.acked.lock().expect("lock").clone();
        assert!(
            acked.len() > 10,
            "the writer made too little progress: {}",
            acked.len()
        );
        acked
    }
}

/// Every acknowledged put is readable on member `i`.
async fn check_acked(members: &Members, i: usize, acked: &BTreeMap<String, String>) {
    let mut client = connect_member(&members.endpoint(i)).await;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let resp = client
            .get("w/", Some(GetOptions::new().with_prefix()))
            .await;
        if let Ok(resp) = resp {
            let seen: BTreeMap<String, String> = resp
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        kv.key_str().expect("utf8").to_owned(),
                        kv.value_str().expect("utf8").to_owned(),
                    )
                })
                .collect();
            let missing: Vec<_> = acked
                .iter()
                .filter(|(k, v)| seen.get(*k) != Some(*v))
                .map(|(k, _)| k.clone())
                .collect();
            assert!(
                missing.is_empty(),
                "member {i} lacks acknowledged puts: {missing:?}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} never answered: {resp:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The members member `i` lists: id -> (name, peer URLs, client URLs, learner).
async fn list(
    members: &Members,
    i: usize,
) -> BTreeMap<u64, (String, Vec<String>, Vec<String>, bool)> {
    let mut client = connect_member(&members.endpoint(i)).await;
    client
        .member_list()
        .await
        .expect("member list")
        .members()
        .iter()
        .map(|m| {
            (
                m.id(),
                (
                    m.name().to_owned(),
                    m.peer_urls().to_vec(),
                    m.client_urls().to_vec(),
                    m.is_learner(),
                ),
            )
        })
        .collect()
}

/// Runs a membership change until the cluster stops calling itself unhealthy: etcd (and
/// xline, which follows it) refuses changes until every peer link has been up for 5 s.
async fn healthy<T, F, Fut>(mut call: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call().await {
            Err(etcd_client::Error::GRpcStatus(status))
                if status.message() == "etcdserver: unhealthy cluster"
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// The error message of a failed call.
fn message<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>) -> String {
    match result.expect_err("the call must fail") {
        etcd_client::Error::GRpcStatus(status) => status.message().to_owned(),
        other => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learner_joins_catches_up_and_is_promoted() {
    let mut members = Members::start(3).await;
    let writer = Writer::start((0..3).map(|i| members.endpoint(i)).collect());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Add through a follower: it forwards to the leader and answers once applied itself.
    let leader = members.leader(0).await;
    let via = (leader + 1) % 3;
    let new = members.new_slot();
    let mut client = connect_member(&members.endpoint(via)).await;
    let url = members.peer_url(new);
    let added = healthy(|| {
        let (mut client, url) = (client.clone(), url.clone());
        async move {
            client
                .member_add([url], Some(MemberAddOptions::new().with_is_learner()))
                .await
        }
    })
    .await
    .expect("member add");
    let member = added.member().expect("added member").clone();
    assert!(member.is_learner());
    assert_eq!(member.name(), "");
    assert_eq!(member.peer_urls(), [members.peer_url(new)]);
    assert_eq!(added.member_list().len(), 4);
    members.procs[new].id = member.id();

    // Listed at once on the member called, as an unstarted learner.
    let listed = list(&members, via).await;
    let entry = listed.get(&member.id()).expect("new member listed");
    assert_eq!(
        entry,
        &(String::new(), vec![members.peer_url(new)], Vec::new(), true)
    );
    // A second learner is refused, as is a peer URL already in use.
    let another = format!("http://127.0.0.1:{}", fresh_port());
    assert_eq!(
        message(
            client
                .member_add([another], Some(MemberAddOptions::new().with_is_learner()))
                .await
        ),
        "etcdserver: too many learner members in cluster"
    );
    assert_eq!(
        message(client.member_add([members.peer_url(0)], None).await),
        "etcdserver: Peer URLs already exists"
    );
    // Promoting a voter, or an unknown member, is refused.
    assert_eq!(
        message(client.member_promote(members.procs[0].id).await),
        "etcdserver: can only promote a learner member"
    );
    assert_eq!(
        message(client.member_promote(0x1234).await),
        "etcdserver: member not found"
    );

    // Start it: it joins with state existing and learns everything from the leader.
    let initial = members.initial_cluster(Some(new));
    members.spawn(new, &initial, "existing");
    members.wait_serving(new, true).await;
    assert_eq!(members.own_id(new).await, member.id());

    // Promote once it is in sync (etcd refuses before, with its own error).
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match client.member_promote(member.id()).await {
            Ok(resp) => {
                let promoted = resp
                    .members()
                    .iter()
                    .find(|m| m.id() == member.id())
                    .expect("promoted member listed");
                assert!(!promoted.is_learner());
                break;
            }
            Err(etcd_client::Error::GRpcStatus(status))
                if status.message()
                    == "etcdserver: can only promote a learner member which is in sync with leader" =>
                {}
            Err(e) => panic!("promote: {e:?}"),
        }
        assert!(Instant::now() < deadline, "the learner never got in sync");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writer.set_targets((0..4).map(|i| members.endpoint(i)).collect());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The joined member restarts (same flags): it is still the same member and catches up.
    writer.set_targets((0..3).map(|i| members.endpoint(i)).collect());
    members.kill(new);
    tokio::time::sleep(Duration::from_millis(500)).await;
    members.spawn(new, &initial, "existing");
    members.wait_serving(new, false).await;
    assert_eq!(members.own_id(new).await, member.id());
    writer.set_targets((0..4).map(|i| members.endpoint(i)).collect());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = writer.finish().await;
    for i in 0..4 {
        let listed = list(&members, i).await;
        assert_eq!(listed.len(), 4);
        let (name, _, client_urls, learner) = &listed[&member.id()];
        assert_eq!(name, &members.procs[new].name);
        assert_eq!(client_urls, &vec![members.endpoint(new)]);
        assert!(!learner);
        check_acked(&members, i, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn voter_added_directly_joins() {
    let mut members = Members::start(3).await;
    let writer = Writer::start((0..3).map(|i| members.endpoint(i)).collect());
    let new = members.new_slot();
    let mut client = connect_member(&members.endpoint(0)).await;
    let url = members.peer_url(new);
    let added = healthy(|| {
        let (mut client, url) = (client.clone(), url.clone());
        async move { client.member_add([url], None).await }
    })
    .await
    .expect("member add");
    let member = added.member().expect("member").clone();
    assert!(!member.is_learner());
    members.procs[new].id = member.id();
    // While the fourth voter is not connected, etcd calls the cluster unhealthy.
    assert_eq!(
        message(
            client
                .member_add([format!("http://127.0.0.1:{}", fresh_port())], None)
                .await
        ),
        "etcdserver: unhealthy cluster"
    );
    let initial = members.initial_cluster(Some(new));
    members.spawn(new, &initial, "existing");
    members.wait_serving(new, false).await;
    writer.set_targets((0..4).map(|i| members.endpoint(i)).collect());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = writer.finish().await;
    for i in 0..4 {
        let listed = list(&members, i).await;
        assert_eq!(listed.len(), 4, "member {i}: {listed:?}");
        assert!(
            listed
                .values()
                .all(|(name, _, _, learner)| !name.is_empty() && !learner)
        );
        check_acked(&members, i, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_then_leader_removed() {
    let mut members = Members::start(4).await;
    let writer = Writer::start((0..4).map(|i| members.endpoint(i)).collect());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A follower, through another follower.
    let leader = members.leader(0).await;
    let follower = (leader + 1) % 4;
    let via = (leader + 2) % 4;
    let remaining: Vec<usize> = (0..4).filter(|i| *i != follower).collect();
    writer.set_targets(remaining.iter().map(|i| members.endpoint(*i)).collect());
    let mut client = connect_member(&members.endpoint(via)).await;
    let id = members.procs[follower].id;
    let resp = healthy(|| {
        let mut client = client.clone();
        async move { client.member_remove(id).await }
    })
    .await
    .expect("remove follower");
    assert_eq!(resp.members().len(), 3);
    assert!(
        members.wait_exit(follower, Duration::from_secs(20)).await,
        "a removed member stops"
    );
    assert_eq!(
        message(client.member_remove(members.procs[follower].id).await),
        "etcdserver: member not found"
    );

    // Then the leader, through a follower: leadership moves to a remaining member.
    let remaining: Vec<usize> = remaining.into_iter().filter(|i| *i != leader).collect();
    writer.set_targets(remaining.iter().map(|i| members.endpoint(*i)).collect());
    let id = members.procs[leader].id;
    let resp = healthy(|| {
        let mut client = client.clone();
        async move { client.member_remove(id).await }
    })
    .await
    .expect("remove leader");
    assert_eq!(resp.members().len(), 2);
    assert!(
        members.wait_exit(leader, Duration::from_secs(20)).await,
        "a removed leader stops"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let new_leader = members.leader(remaining[0]).await;
        if remaining.contains(&new_leader) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader among {remaining:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = writer.finish().await;
    for &i in &remaining {
        let listed = list(&members, i).await;
        let ids: Vec<u64> = listed.keys().copied().collect();
        let mut expected: Vec<u64> = remaining.iter().map(|i| members.procs[*i].id).collect();
        expected.sort_unstable();
        assert_eq!(ids, expected);
        check_acked(&members, i, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peer_urls_updated_and_member_restarted_on_them() {
    let mut members = Members::start(3).await;
    let writer = Writer::start((0..3).map(|i| members.endpoint(i)).collect());
    let moved = 2;
    writer.set_targets((0..2).map(|i| members.endpoint(i)).collect());
    let old_url = members.peer_url(moved);
    members.procs[moved].peer_port = fresh_port();
    let new_url = members.peer_url(moved);
    let mut client = connect_member(&members.endpoint(0)).await;
    let resp = client
        .member_update(members.procs[moved].id, vec![new_url.clone()])
        .await
        .expect("member update");
    let updated = resp
        .members()
        .iter()
        .find(|m| m.id() == members.procs[moved].id)
        .expect("updated member listed");
    assert_eq!(updated.peer_urls(), std::slice::from_ref(&new_url));
    assert_eq!(
        message(
            client
                .member_update(members.procs[moved].id, vec![members.peer_url(0)])
                .await
        ),
        "etcdserver: Peer URLs already exists"
    );
    assert_eq!(
        message(client.member_update(0x1234, vec![old_url]).await),
        "etcdserver: member not found"
    );
    // The other members learn the new URL from the log (the one called at once); the moved
    // member itself is no longer reached on its old URL, so it learns it after its restart.
    assert_eq!(
        list(&members, 0).await[&members.procs[moved].id].1,
        vec![new_url.clone()]
    );
    for i in 1..2 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while list(&members, i).await[&members.procs[moved].id].1 != vec![new_url.clone()] {
            assert!(Instant::now() < deadline, "member {i} keeps the old URL");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Restart it on the new peer URL; its data directory says who it is.
    members.kill(moved);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let initial = members.initial_cluster(Some(moved));
    members.spawn(moved, &initial, "new");
    members.wait_serving(moved, false).await;
    writer.set_targets((0..3).map(|i| members.endpoint(i)).collect());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = writer.finish().await;
    for i in 0..3 {
        assert_eq!(
            list(&members, i).await[&members.procs[moved].id].1,
            vec![new_url.clone()]
        );
        check_acked(&members, i, &acked).await;
    }
}
