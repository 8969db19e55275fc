//! Multi-process clusters of the real `xline` binary (also runs against Debian's etcd with
//! `XLINE_TEST_SERVER=etcd`): members form a cluster, writes go through any member, a killed
//! leader is replaced and a restarted member catches up.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial: String,
}

fn program() -> PathBuf {
    match std::env::var("XLINE_TEST_SERVER").as_deref() {
        Ok("etcd") => PathBuf::from("/usr/bin/etcd"),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_xline")),
    }
}

/// Ports handed out in this test process, never handed out twice (tests run in parallel).
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

fn free_port(taken: &[TcpListener]) -> (u16, TcpListener) {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port)
            && taken.iter().all(|t| t.local_addr().unwrap().port() != port)
        {
            handed_out.push(port);
            return (port, l);
        }
    }
}

impl Cluster {
    fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Vec::new();
        let mut members = Vec::new();
        for i in 0..n {
            let (client_port, a) = free_port(&held);
            held.push(a);
            let (peer_port, b) = free_port(&held);
            held.push(b);
            members.push(Member {
                name: format!("m{i}"),
                client_port,
                peer_port,
                child: None,
            });
        }
        drop(held);
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir,
            members,
            initial,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .unwrap();
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(program())
            .args(["--name", &m.name])
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.members[i].child = Some(child);
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    async fn client(&self, i: usize) -> Client {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5));
        Client::connect([self.endpoint(i)], Some(opts))
            .await
            .unwrap()
    }

    /// The member that `i` reports as leader, once every live member agrees.
    async fn leader(&self, timeout: Duration) -> u64 {
        self.leader_other_than(0, timeout).await
    }

    /// The leader every live member agrees on, once it is not `old`.
    async fn leader_other_than(&self, old: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let mut c = self.client(i).await;
                if let Ok(s) = c.status().await {
                    seen.push(s.leader());
                } else {
                    seen.push(0);
                }
            }
            if let Some(&first) = seen.first()
                && first != 0
                && first != old
                && seen.iter().all(|&l| l == first)
            {
                return first;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn index_of(&self, id: u64) -> usize {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            let mut c = self.client(i).await;
            if c.status().await.unwrap().header().unwrap().member_id() == id {
                return i;
            }
        }
        panic!("no live member has id {id:x}");
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let path = self.dir.path().join(format!("{}.log", m.name));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: String = text
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("----- {} -----\n{tail}", m.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}

async fn wait_ready(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..cluster.members.len() {
        loop {
            let mut c = cluster.client(i).await;
            if c.get("probe", None).await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "member {i} never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn three_members_form_a_cluster_and_serve_through_every_member() {
    let cluster = Cluster::start(3);
    wait_ready(&cluster).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    assert_ne!(leader, 0);
    let mut c0 = cluster.client(0).await;
    let members = c0.member_list().await.unwrap();
    assert_eq!(members.members().len(), 3);
    // Every member published its name and client URL through consensus before serving.
    let mut listed: Vec<(String, Vec<String>)> = members
        .members()
        .iter()
        .map(|m| (m.name().to_owned(), m.client_urls().to_vec()))
        .collect();
    listed.sort();
    let expected: Vec<(String, Vec<String>)> = (0..3)
        .map(|i| (format!("m{i}"), vec![cluster.endpoint(i)]))
        .collect();
    assert_eq!(listed, expected);
    let cluster_id = members.header().unwrap().cluster_id();
    // A write through each member is visible (linearizably) through every member.
    for i in 0..3 {
        let mut c = cluster.client(i).await;
        c.put(format!("k{i}"), format!("v{i}"), None).await.unwrap();
        for j in 0..3 {
            let mut r = cluster.client(j).await;
            let got = r.get(format!("k{i}"), None).await.unwrap();
            assert_eq!(
                got.kvs()[0].value(),
                format!("v{i}").as_bytes(),
                "member {j}"
            );
            assert_eq!(got.header().unwrap().cluster_id(), cluster_id);
        }
    }
}

#[tokio::test]
async fn killed_leader_is_replaced_and_catches_up_after_restart() {
    let mut cluster = Cluster::start(3);
    wait_ready(&cluster).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let li = cluster.index_of(leader).await;
    let mut writer = cluster.client((li + 1) % 3).await;
    for n in 0..20 {
        writer
            .put(format!("before/{n:02}"), "x", None)
            .await
            .unwrap();
    }
    cluster.kill9(li);
    let started = Instant::now();
    let new_leader = cluster
        .leader_other_than(leader, Duration::from_secs(10))
        .await;
    assert_ne!(new_leader, leader);
    println!("new leader after {:?}", started.elapsed());
    for n in 0..20 {
        // Retried: the first attempts may race the election.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match writer.put(format!("after/{n:02}"), "y", None).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    println!("retrying after {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("write after failover: {e}"),
            }
        }
    }
    cluster.spawn(li);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = cluster.client(li).await;
        let got = c
            .get(
                "after/",
                Some(GetOptions::new().with_prefix().with_serializable()),
            )
            .await;
        if let Ok(got) = got
            && got.count() == 20
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted member never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = cluster.client(li).await;
    let got = c
        .get("before/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(got.count(), 20);
}

#[tokio::test]
async fn move_leader_hands_leadership_to_a_chosen_member() {
    let cluster = Cluster::start(3);
    wait_ready(&cluster).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let li = cluster.index_of(leader).await;
    let fi = (li + 1) % 3;
    let mut follower = cluster.client(fi).await;
    let target = follower
        .status()
        .await
        .unwrap()
        .header()
        .unwrap()
        .member_id();
    // Only the leader moves leadership.
    let err = follower.move_leader(target).await.unwrap_err();
    match err {
        etcd_client::Error::GRpcStatus(s) => {
            assert_eq!(s.code(), tonic::Code::FailedPrecondition);
            assert_eq!(s.message(), "etcdserver: not leader");
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut lc = cluster.client(li).await;
    // Not a member: a bad transferee.
    let err = lc.move_leader(0x1234).await.unwrap_err();
    match err {
        etcd_client::Error::GRpcStatus(s) => {
            assert_eq!(s.code(), tonic::Code::FailedPrecondition);
            assert_eq!(s.message(), "etcdserver: bad leader transferee");
        }
        other => panic!("unexpected {other:?}"),
    }
    lc.move_leader(target).await.unwrap();
    let now = cluster
        .leader_other_than(leader, Duration::from_secs(10))
        .await;
    assert_eq!(now, target);
    // The cluster still serves writes.
    let mut c = cluster.client(li).await;
    c.put("after-move", "ok", None).await.unwrap();
}

#[tokio::test]
async fn leases_kept_alive_through_a_follower_stay_alive() {
    let cluster = Cluster::start(3);
    wait_ready(&cluster).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    let li = cluster.index_of(leader).await;
    let fi = (li + 1) % 3;
    let mut c = cluster.client(fi).await;
    let lease = c.lease_grant(2, None).await.unwrap().id();
    c.put(
        "leased",
        "v",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    // Keep it alive through the follower for three TTLs: only the leader expires leases, so
    // the follower must pass the keep-alives on.
    let (mut keeper, mut answers) = c.lease_keep_alive(lease).await.unwrap();
    for _ in 0..12 {
        keeper.keep_alive().await.unwrap();
        let answer = answers.message().await.unwrap().unwrap();
        assert!(
            answer.ttl() > 0,
            "keep-alive through a follower answered {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let got = c.get("leased", None).await.unwrap();
    assert_eq!(
        got.kvs().len(),
        1,
        "the lease expired although it was kept alive"
    );
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert!(
        ttl.ttl() > 0 && ttl.ttl() <= 2,
        "time-to-live through a follower: {}",
        ttl.ttl()
    );
    // Once the keep-alives stop, the leader expires it.
    drop(keeper);
    drop(answers);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if c.get("leased", None).await.unwrap().kvs().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
