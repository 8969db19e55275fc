//! Clusters of real nodes (driver threads, storage, executor) over the in-process transport.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use curp::core::{ConfChange, Membership, NodeId, Role};
use curp::transport::MemNetwork;
use curp::{
    Command, CommandExecutor, ConflictKeys, DecodeError, ExecutorError, KeyRange, LogStorage,
    MemoryLog, Node, NodeConfig, NodeHandle, ProposeError, RaftEngineLog,
};
use parking_lot::Mutex;

/// `key = value`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Put {
    key: String,
    value: u64,
}

impl Command for Put {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.value.to_be_bytes().to_vec();
        out.extend_from_slice(self.key.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 8 {
            return Err(DecodeError::new("short command"));
        }
        let (value, key) = bytes.split_at(8);
        Ok(Put {
            key: String::from_utf8(key.to_vec()).map_err(DecodeError::new)?,
            value: u64::from_be_bytes(value.try_into().map_err(DecodeError::new)?),
        })
    }

    fn conflict_keys(&self) -> ConflictKeys {
        ConflictKeys {
            ranges: vec![KeyRange::new(self.key.as_bytes().to_vec(), Vec::new())],
            leases: Vec::new(),
            exclusive: false,
        }
    }
}

/// The state: a map and the applied index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    map: BTreeMap<String, u64>,
    applied: u64,
    /// Commands executed (to detect double execution).
    executed: u64,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.applied.to_be_bytes());
        out.extend_from_slice(&self.executed.to_be_bytes());
        for (k, v) in &self.map {
            out.extend_from_slice(&(k.len() as u64).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(mut data: &[u8]) -> Option<Self> {
        let word = |data: &mut &[u8]| -> Option<u64> {
            let (w, rest) = data.split_at_checked(8)?;
            *data = rest;
            Some(u64::from_be_bytes(w.try_into().ok()?))
        };
        let applied = word(&mut data)?;
        let executed = word(&mut data)?;
        let mut map = BTreeMap::new();
        while !data.is_empty() {
            let len = usize::try_from(word(&mut data)?).ok()?;
            let (k, rest) = data.split_at_checked(len)?;
            data = rest;
            let key = String::from_utf8(k.to_vec()).ok()?;
            map.insert(key, word(&mut data)?);
        }
        Some(State {
            map,
            applied,
            executed,
        })
    }
}

/// A map executor whose durable part lives in an `Arc` (it survives a "restart").
#[derive(Debug, Default)]
struct MapExecutor {
    durable: Arc<Mutex<State>>,
    state: Mutex<State>,
}

impl MapExecutor {
    fn restarted(durable: &Arc<Mutex<State>>) -> Self {
        Self {
            durable: Arc::clone(durable),
            state: Mutex::new(durable.lock().clone()),
        }
    }

    fn get(&self, key: &str) -> Option<u64> {
        self.state.lock().map.get(key).copied()
    }

    fn snapshot_state(&self) -> State {
        self.state.lock().clone()
    }
}

impl CommandExecutor<Put> for MapExecutor {
    /// The index the command was applied at.
    type Output = u64;

    fn apply(&self, batch: &[(u64, Put)]) -> Result<Vec<u64>, ExecutorError> {
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(batch.len());
        for (index, put) in batch {
            if *index <= st.applied {
                return Err(ExecutorError::new(format!(
                    "index {index} applied twice (applied {})",
                    st.applied
                )));
            }
            st.map.insert(put.key.clone(), put.value);
            st.applied = *index;
            st.executed += 1;
            out.push(*index);
        }
        Ok(out)
    }

    fn flush(&self) -> Result<u64, ExecutorError> {
        let st = self.state.lock().clone();
        let applied = st.applied;
        *self.durable.lock() = st;
        Ok(applied)
    }

    fn applied_index(&self) -> Result<u64, ExecutorError> {
        Ok(self.durable.lock().applied)
    }

    fn snapshot(&self) -> Result<Bytes, ExecutorError> {
        Ok(Bytes::from(self.state.lock().encode()))
    }

    fn restore(&self, data: &[u8], index: u64) -> Result<(), ExecutorError> {
        let mut st = State::decode(data).ok_or_else(|| ExecutorError::new("bad image"))?;
        st.applied = index;
        *self.durable.lock() = st.clone();
        *self.state.lock() = st;
        Ok(())
    }
}

type Handle = NodeHandle<Put, u64>;

const HEARTBEAT: Duration = Duration::from_millis(20);
const ELECTION: Duration = Duration::from_millis(200);

/// Which storage the members use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disk {
    Memory,
    RaftEngine,
}

/// One member's pieces.
struct Member {
    handle: Handle,
    executor: Arc<MapExecutor>,
}

/// A cluster over a [`MemNetwork`].
struct Cluster {
    net: MemNetwork,
    disk: Disk,
    initial: Membership,
    snapshot_every: u64,
    members: BTreeMap<NodeId, Member>,
    /// Memory logs (kept across restarts) or raft-engine directories.
    memory: BTreeMap<NodeId, MemoryLog>,
    dirs: tempfile::TempDir,
    durable: BTreeMap<NodeId, Arc<Mutex<State>>>,
}

fn voters(n: u64) -> Membership {
    Membership {
        voters: (1..=n).collect(),
        learners: BTreeSet::new(),
        version: 0,
        peers: Default::default(),
    }
}

impl Cluster {
    fn new(n: u64, disk: Disk, snapshot_every: u64) -> Self {
        let mut cluster = Cluster {
            net: MemNetwork::new(),
            disk,
            initial: voters(n),
            snapshot_every,
            members: BTreeMap::new(),
            memory: BTreeMap::new(),
            dirs: tempfile::tempdir().expect("tempdir"),
            durable: BTreeMap::new(),
        };
        for id in 1..=n {
            cluster.start(id);
        }
        cluster
    }

    fn dir(&self, id: NodeId) -> PathBuf {
        self.dirs.path().join(id.to_string())
    }

    /// Starts (or restarts) member `id` from its storage and durable executor state.
    fn start(&mut self, id: NodeId) {
        let mut config = NodeConfig::new(id, self.initial.clone());
        config.heartbeat_interval = HEARTBEAT;
        config.election_timeout = ELECTION;
        config.snapshot_every_entries = self.snapshot_every;
        config.request_timeout = Duration::from_secs(5);
        config.seed = Some(id * 7919);
        let durable = Arc::clone(self.durable.entry(id).or_default());
        let executor = Arc::new(MapExecutor::restarted(&durable));
        let transport = self.net.transport(id);
        let handle = match self.disk {
            Disk::Memory => {
                let log = self.memory.entry(id).or_default().clone();
                start(config, log, &executor, transport)
            }
            Disk::RaftEngine => {
                let log = RaftEngineLog::open(&self.dir(id)).expect("open raft-engine");
                start(config, log, &executor, transport)
            }
        };
        self.net.register(id, handle.inbox());
        self.members.insert(id, Member { handle, executor });
    }

    /// Stops member `id` (its volatile state is gone; storage and flushed state remain).
    async fn kill(&mut self, id: NodeId) {
        let member = self.members.remove(&id).expect("member");
        self.net.unregister(id);
        member.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(10), member.handle.closed())
            .await
            .expect("driver exits");
    }

    fn handle(&self, id: NodeId) -> &Handle {
        &self.members[&id].handle
    }

    fn executor(&self, id: NodeId) -> &MapExecutor {
        &self.members[&id].executor
    }

    /// Waits until the running members agree on one leader; returns it.
    async fn leader(&self) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let views: Vec<(Role, Option<NodeId>, u64)> = self
                .members
                .values()
                .map(|m| {
                    let s = m.handle.status();
                    (s.role, s.leader, s.term)
                })
                .collect();
            let leaders: BTreeSet<NodeId> = self
                .members
                .iter()
                .filter(|(_, m)| m.handle.status().role == Role::Leader)
                .map(|(id, _)| *id)
                .collect();
            if let Some(&leader) = leaders.iter().next()
                && leaders.len() == 1
                && views.iter().all(|(_, l, _)| *l == Some(leader))
            {
                return leader;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {views:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until member `id` has applied `key = value`.
    async fn wait_value(&self, id: NodeId, key: &str, value: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.executor(id).get(key) != Some(value) {
            assert!(
                Instant::now() < deadline,
                "member {id} never applied {key}={value}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn start<S: LogStorage>(
    config: NodeConfig,
    log: S,
    executor: &Arc<MapExecutor>,
    transport: curp::transport::MemTransport,
) -> Handle {
    Node::start(config, log, Arc::clone(executor), transport).expect("start node")
}

fn put(key: &str, value: u64) -> Put {
    Put {
        key: key.to_owned(),
        value,
    }
}

/// Proposes through every member, then checks linearizable reads everywhere.
async fn write_everywhere_and_read(cluster: &Cluster, round: u64) {
    let ids: Vec<NodeId> = cluster.members.keys().copied().collect();
    for &id in &ids {
        let key = format!("k{id}-{round}");
        let index = cluster
            .handle(id)
            .propose(put(&key, round))
            .await
            .unwrap_or_else(|e| panic!("propose at {id}: {e}"));
        // Origin commit: the origin answered from its own apply.
        assert_eq!(cluster.executor(id).get(&key), Some(round));
        assert!(cluster.handle(id).applied_index() >= index);
        for &reader in &ids {
            let handle = cluster.handle(reader);
            let read = handle
                .linearizable_barrier()
                .await
                .unwrap_or_else(|e| panic!("read index at {reader}: {e}"));
            assert!(
                read >= index,
                "read index {read} below the write at {index}"
            );
            assert_eq!(
                cluster.executor(reader).get(&key),
                Some(round),
                "{reader} reads {key} after the write"
            );
        }
    }
}

async fn elect_write_read(n: u64, disk: Disk) {
    let cluster = Cluster::new(n, disk, 0);
    let leader = cluster.leader().await;
    assert!(cluster.handle(leader).status().membership.voters.len() == n as usize);
    write_everywhere_and_read(&cluster, 1).await;
    // Concurrent proposals through every member.
    let mut tasks = Vec::new();
    for (id, m) in &cluster.members {
        for i in 0..20 {
            let handle = m.handle.clone();
            let key = format!("c{id}-{i}");
            tasks.push(tokio::spawn(async move {
                handle.propose(put(&key, i)).await.map(|_| (key, i))
            }));
        }
    }
    for task in tasks {
        let (key, value) = task.await.expect("task").expect("propose");
        for id in cluster.members.keys() {
            cluster.wait_value(*id, &key, value).await;
        }
    }
    for m in cluster.members.values() {
        assert!(m.handle.fatal_error().is_none());
        // Nothing executed twice.
        assert_eq!(
            m.executor.snapshot_state().executed,
            n * 21,
            "every command executed exactly once on member {}",
            m.handle.id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_node_memory() {
    elect_write_read(1, Disk::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_memory() {
    elect_write_read(3, Disk::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_raft_engine() {
    elect_write_read(3, Disk::RaftEngine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_memory() {
    elect_write_read(5, Disk::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_raft_engine() {
    elect_write_read(5, Disk::RaftEngine).await;
}

/// Kills the leader of `n` members: a new one is elected within the election timeout bounds
/// and writes continue through every survivor.
async fn leader_failover(n: u64, disk: Disk) {
    let mut cluster = Cluster::new(n, disk, 0);
    let old = cluster.leader().await;
    write_everywhere_and_read(&cluster, 1).await;
    let killed_at = Instant::now();
    cluster.kill(old).await;
    let new = cluster.leader().await;
    let took = killed_at.elapsed();
    assert_ne!(new, old);
    // Followers campaign after [1, 2) election timeouts, plus a pre-vote and a vote round.
    assert!(
        took < 2 * ELECTION + Duration::from_millis(400),
        "the new leader took {took:?}"
    );
    write_everywhere_and_read(&cluster, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_three_memory() {
    leader_failover(3, Disk::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_five_raft_engine() {
    leader_failover(5, Disk::RaftEngine).await;
}

/// A member restarted from its raft-engine directory (with a fresh, empty state machine)
/// catches up from its own log and from the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_from_disk_catches_up() {
    let mut cluster = Cluster::new(3, Disk::RaftEngine, 0);
    let leader = cluster.leader().await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    write_everywhere_and_read(&cluster, 1).await;
    cluster.kill(victim).await;
    // Forget the state machine: the log must rebuild it.
    cluster.durable.insert(victim, Arc::default());
    for i in 0..30 {
        cluster
            .handle(leader)
            .propose(put("while-down", i))
            .await
            .expect("propose while a member is down");
    }
    cluster.start(victim);
    cluster.wait_value(victim, "while-down", 29).await;
    for id in 1..=3 {
        cluster.wait_value(victim, &format!("k{id}-1"), 1).await;
    }
    write_everywhere_and_read(&cluster, 2).await;
    // The restarted member applied each command exactly once.
    let leader_state = cluster.executor(leader).snapshot_state();
    let victim_state = cluster.executor(victim).snapshot_state();
    assert_eq!(victim_state.map, leader_state.map);
    assert_eq!(victim_state.executed, leader_state.executed);
}

/// A member that was down while the others compacted their logs is caught up by a snapshot;
/// then it restarts again from its own snapshot record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_catch_up() {
    let mut cluster = Cluster::new(3, Disk::RaftEngine, 20);
    let leader = cluster.leader().await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    write_everywhere_and_read(&cluster, 1).await;
    cluster.kill(victim).await;
    cluster.durable.insert(victim, Arc::default());
    for i in 0..100 {
        cluster
            .handle(leader)
            .propose(put(&format!("bulk{}", i % 10), i))
            .await
            .expect("propose");
    }
    let dir = cluster.dir(leader);
    let status = cluster.handle(leader).status();
    assert!(status.applied >= 100);
    cluster.start(victim);
    cluster.wait_value(victim, "bulk9", 99).await;
    let leader_map = cluster.executor(leader).snapshot_state().map;
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.executor(victim).snapshot_state().map != leader_map {
        assert!(Instant::now() < deadline, "the victim never converged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(dir.exists());
    // Restart again with an empty state machine: restored from its own stored snapshot.
    write_everywhere_and_read(&cluster, 2).await;
    cluster.kill(victim).await;
    {
        let log = RaftEngineLog::open(&cluster.dir(victim)).expect("open");
        assert!(
            log.get_meta(curp::node::codec::SNAPSHOT_KEY)
                .expect("meta")
                .is_some(),
            "the victim stored a snapshot record"
        );
        assert!(
            log.first_index() > 20,
            "the victim's log starts after a snapshot"
        );
    }
    cluster.durable.insert(victim, Arc::default());
    cluster.start(victim);
    cluster.wait_value(victim, "bulk9", 99).await;
    cluster.wait_value(victim, &format!("k{victim}-2"), 2).await;
    write_everywhere_and_read(&cluster, 3).await;
}

/// Adds a learner, promotes it, removes an old voter; writes work throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_add_promote_remove() {
    let mut cluster = Cluster::new(3, Disk::Memory, 0);
    let leader = cluster.leader().await;
    write_everywhere_and_read(&cluster, 1).await;

    // Node 4 starts knowing the initial membership, so it is a learner, and asks for nothing.
    cluster.start(4);
    assert_eq!(cluster.handle(4).status().role, Role::Learner);
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    assert_eq!(
        cluster
            .handle(follower)
            .change_membership(ConfChange::AddLearner(4))
            .await,
        Err(ProposeError::NotLeader {
            leader: Some(leader)
        })
    );
    cluster
        .handle(leader)
        .change_membership(ConfChange::AddLearner(4))
        .await
        .expect("add learner");
    assert_eq!(
        cluster
            .handle(leader)
            .change_membership(ConfChange::AddLearner(4))
            .await,
        Err(ProposeError::InvalidChange)
    );
    for id in 1..=3 {
        cluster.wait_value(4, &format!("k{id}-1"), 1).await;
    }
    // A learner proposes and reads too.
    write_everywhere_and_read(&cluster, 2).await;

    cluster
        .handle(leader)
        .change_membership(ConfChange::Promote(4))
        .await
        .expect("promote");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.handle(4).status().role != Role::Follower {
        assert!(Instant::now() < deadline, "4 never became a voter");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_everywhere_and_read(&cluster, 3).await;

    let removed = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster
        .handle(leader)
        .change_membership(ConfChange::Remove(removed))
        .await
        .expect("remove");
    let m = cluster.handle(leader).status().membership;
    assert_eq!(m.voters.len(), 3);
    assert!(m.voters.contains(&4) && !m.voters.contains(&removed));
    cluster.kill(removed).await;
    write_everywhere_and_read(&cluster, 4).await;

    // The leader hands over to the new member.
    cluster
        .handle(leader)
        .transfer_leader(4)
        .await
        .expect("transfer");
    assert_eq!(cluster.leader().await, 4);
    write_everywhere_and_read(&cluster, 5).await;
}

/// Shutdown answers and refuses; a stopped node reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_refuses_requests() {
    let mut cluster = Cluster::new(1, Disk::Memory, 0);
    cluster.leader().await;
    let handle = cluster.handle(1).clone();
    handle.propose(put("a", 1)).await.expect("propose");
    cluster.kill(1).await;
    assert!(handle.is_closed());
    assert_eq!(
        handle.propose(put("b", 2)).await,
        Err(ProposeError::ShuttingDown)
    );
    assert_eq!(handle.read_index().await, Err(ProposeError::ShuttingDown));
}

/// A member cut off from the others cannot complete a proposal and times out; after healing
/// the same id completes (or is reported as executed) exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_member_times_out_then_recovers() {
    let cluster = Cluster::new(3, Disk::Memory, 0);
    let leader = cluster.leader().await;
    let lonely = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.net.isolate(lonely);
    let handle = cluster.handle(lonely).with_new_client_id();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), handle.propose(put("cut", 1)))
        .await
        .expect("answered");
    assert_eq!(result, Err(ProposeError::Timeout));
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(15), handle.read_index())
            .await
            .expect("answered"),
        Err(ProposeError::Timeout)
    );
    cluster.net.heal();
    cluster.leader().await;
    write_everywhere_and_read(&cluster, 1).await;
    assert_eq!(cluster.executor(lonely).get("cut"), None);
}

/// Records the peers the node hands its transport (and routes through the in-memory one).
struct RecordingTransport {
    inner: curp::transport::MemTransport,
    peers: Arc<Mutex<BTreeMap<NodeId, Vec<String>>>>,
}

impl curp::transport::Transport for RecordingTransport {
    fn send(&self, messages: Vec<curp::core::Envelope>) {
        self.inner.send(messages);
    }

    fn set_peers(&self, peers: &BTreeMap<NodeId, Vec<String>>) {
        self.inner.set_peers(peers);
        *self.peers.lock() = peers.clone();
    }
}

/// A member that starts with an empty configuration (etcd's `--initial-cluster-state
/// existing`) joins through `ConfChange::Add`: it learns the whole configuration from the
/// leader (from the log, or from a snapshot when the log is compacted), including peer URLs,
/// which it hands to its transport as they change.
async fn join_with_empty_configuration(snapshot_every: u64) {
    let mut cluster = Cluster::new(3, Disk::Memory, snapshot_every);
    let leader = cluster.leader().await;
    for round in 1..=4 {
        write_everywhere_and_read(&cluster, round).await;
    }

    let mut config = NodeConfig::new(4, Membership::default());
    config.heartbeat_interval = HEARTBEAT;
    config.election_timeout = ELECTION;
    config.snapshot_every_entries = snapshot_every;
    config.request_timeout = Duration::from_secs(5);
    config.seed = Some(4 * 7919);
    let executor = Arc::new(MapExecutor::restarted(&Arc::default()));
    let peers = Arc::new(Mutex::new(BTreeMap::new()));
    let transport = RecordingTransport {
        inner: cluster.net.transport(4),
        peers: Arc::clone(&peers),
    };
    let handle: Handle = Node::start(
        config,
        MemoryLog::default(),
        Arc::clone(&executor),
        transport,
    )
    .expect("start node 4");
    cluster.net.register(4, handle.inbox());
    assert_eq!(handle.status().role, Role::Learner);
    cluster.members.insert(4, Member { handle, executor });

    let add = ConfChange::Add {
        id: 4,
        peer_urls: vec!["mem://4".to_owned()],
        learner: true,
    };
    cluster
        .handle(leader)
        .change_membership(add.clone())
        .await
        .expect("add member 4");
    // Its peer URLs are taken: nobody else may use them.
    let clash = ConfChange::Add {
        id: 5,
        peer_urls: vec!["mem://4".to_owned()],
        learner: true,
    };
    assert_eq!(
        cluster.handle(leader).change_membership(clash).await,
        Err(ProposeError::InvalidChange)
    );
    let expected = cluster.handle(leader).status().membership;
    assert!(expected.learners.contains(&4));
    assert_eq!(expected.peers[&4], vec!["mem://4".to_owned()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.handle(4).status().membership != expected {
        assert!(
            Instant::now() < deadline,
            "4 never learned the configuration: {:?}",
            cluster.handle(4).status().membership
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in 1..=3 {
        cluster.wait_value(4, &format!("k{id}-4"), 4).await;
    }

    // New peer URLs of the leader reach member 4's transport.
    let update = ConfChange::Update {
        id: leader,
        peer_urls: vec![format!("mem://{leader}-moved")],
    };
    cluster
        .handle(leader)
        .change_membership(update)
        .await
        .expect("update");
    let deadline = Instant::now() + Duration::from_secs(10);
    while peers.lock().get(&leader) != Some(&vec![format!("mem://{leader}-moved")]) {
        assert!(Instant::now() < deadline, "peers: {:?}", peers.lock());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !peers.lock().contains_key(&4),
        "a member is not its own peer"
    );

    // Promoted once in sync; then a voter like the others.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cluster
            .handle(leader)
            .change_membership(ConfChange::Promote(4))
            .await
        {
            Ok(()) => break,
            Err(ProposeError::LearnerNotReady) => {}
            Err(e) => panic!("promote: {e}"),
        }
        assert!(Instant::now() < deadline, "4 never got in sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while cluster.handle(4).status().role != Role::Follower {
        assert!(Instant::now() < deadline, "4 never became a voter");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_everywhere_and_read(&cluster, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_joins_with_empty_configuration_from_the_log() {
    join_with_empty_configuration(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_joins_with_empty_configuration_from_a_snapshot() {
    join_with_empty_configuration(5).await;
}

/// A [`MemoryLog`] that counts syncs and checks that a term or vote is never written without
/// a sync (a vote or a message in a new term must survive a crash).
#[derive(Clone, Default)]
struct AuditLog {
    inner: MemoryLog,
    /// Calls that synced.
    syncs: Arc<std::sync::atomic::AtomicU64>,
    /// Term and vote of the last synced hard state.
    durable_vote: Arc<Mutex<(u64, u64)>>,
}

impl AuditLog {
    fn synced(&self, sync: bool, hs: Option<curp::HardState>) {
        if let Some(hs) = hs {
            let mut vote = self.durable_vote.lock();
            if sync {
                *vote = (hs.term, hs.vote);
            } else {
                assert_eq!(
                    (hs.term, hs.vote),
                    *vote,
                    "a term or vote change was written without a sync"
                );
            }
        }
        if sync {
            self.syncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl LogStorage for AuditLog {
    fn append(&self, entries: &[curp::LogEntry], sync: bool) -> Result<(), curp::StorageError> {
        self.inner.append(entries, sync)?;
        self.synced(sync, None);
        Ok(())
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_bytes: u64,
    ) -> Result<Vec<curp::LogEntry>, curp::StorageError> {
        self.inner.entries(low, high, max_bytes)
    }
    fn term(&self, index: u64) -> Result<Option<u64>, curp::StorageError> {
        self.inner.term(index)
    }
    fn first_index(&self) -> u64 {
        self.inner.first_index()
    }
    fn last_index(&self) -> u64 {
        self.inner.last_index()
    }
    fn compact(&self, to: u64) -> Result<(), curp::StorageError> {
        self.inner.compact(to)
    }
    fn install_snapshot(&self, index: u64, term: u64) -> Result<(), curp::StorageError> {
        self.inner.install_snapshot(index, term)
    }
    fn hard_state(&self) -> Result<curp::HardState, curp::StorageError> {
        self.inner.hard_state()
    }
    fn set_hard_state(&self, hs: curp::HardState, sync: bool) -> Result<(), curp::StorageError> {
        self.inner.set_hard_state(hs, sync)?;
        self.synced(sync, Some(hs));
        Ok(())
    }
    fn put_meta(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), curp::StorageError> {
        self.inner.put_meta(key, value, sync)?;
        self.synced(sync, None);
        Ok(())
    }
    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, curp::StorageError> {
        self.inner.get_meta(key)
    }
    fn sync(&self) -> Result<(), curp::StorageError> {
        self.inner.sync()?;
        self.synced(true, None);
        Ok(())
    }
    fn write_round(
        &self,
        entries: &[curp::LogEntry],
        hard_state: Option<curp::HardState>,
        sync: bool,
    ) -> Result<(), curp::StorageError> {
        self.inner.write_round(entries, hard_state, sync)?;
        self.synced(sync, hard_state);
        Ok(())
    }
}

/// One sync per proposal on the leader: the round that only advances the commit index (the
/// followers' acknowledgements) is not synced, as etcd's raft does; terms and votes always are
/// (checked by [`AuditLog`] through the election).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_only_rounds_do_not_sync() {
    let net = MemNetwork::new();
    let mut members = BTreeMap::new();
    for id in 1..=3 {
        let mut config = NodeConfig::new(id, voters(3));
        config.heartbeat_interval = HEARTBEAT;
        config.election_timeout = ELECTION;
        config.request_timeout = Duration::from_secs(5);
        config.seed = Some(id * 7919);
        let log = AuditLog::default();
        let executor = Arc::new(MapExecutor::restarted(&Arc::default()));
        let handle = start(config, log.clone(), &executor, net.transport(id));
        net.register(id, handle.inbox());
        members.insert(id, (handle, log));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some((id, _)) = members
            .iter()
            .find(|(_, (h, _))| h.status().role == Role::Leader)
        {
            break *id;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (handle, log) = &members[&leader];
    // Let the election's rounds settle before counting.
    handle.propose(put("warm-up", 0)).await.expect("propose");
    let before = log.syncs();
    const PROPOSALS: u64 = 50;
    for i in 1..=PROPOSALS {
        handle.propose(put("k", i)).await.expect("propose");
    }
    let syncs = log.syncs() - before;
    // One per proposal (its entry); a synced commit-only round would make it about two.
    assert!(
        (PROPOSALS..PROPOSALS + PROPOSALS / 2).contains(&syncs),
        "{syncs} syncs for {PROPOSALS} sequential proposals"
    );
    for (h, _) in members.values() {
        h.shutdown();
    }
}
