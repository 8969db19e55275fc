//! Tests of the single-voter driver through the public API.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use curp::{
    Command, CommandExecutor, ConflictKeys, DecodeError, ExecutorError, HardState, LogEntry,
    LogStorage, MemoryLog, ProposeError, RaftEngineLog, SoloConfig, SoloHandle, SoloNode,
    StorageError,
};
use parking_lot::Mutex;

/// A command carrying a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cmd(u64);

impl Command for Cmd {
    fn encode(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let bytes: [u8; 8] = bytes
            .try_into()
            .map_err(|_| DecodeError::new(format!("{} bytes", bytes.len())))?;
        Ok(Cmd(u64::from_be_bytes(bytes)))
    }

    fn conflict_keys(&self) -> ConflictKeys {
        ConflictKeys::default()
    }
}

/// What an executor applied: (index, command value).
type Ops = Vec<(u64, u64)>;

/// An executor whose durable state lives outside it (so it survives a "restart") and whose
/// flush can lose the last few applied commands, like a crash right before a real flush.
#[derive(Default)]
struct TestExecutor {
    /// State that survives restarts.
    durable: Arc<Mutex<Ops>>,
    /// Applied state: the durable state at start plus everything applied since.
    volatile: Mutex<Ops>,
    /// Everything applied by this instance, in order.
    applied_here: Mutex<Ops>,
    /// Size of each applied batch.
    batches: Mutex<Vec<usize>>,
    /// Number of flushes.
    flushes: AtomicUsize,
    /// Each flush leaves this many of the last applied commands non-durable.
    lose_last: usize,
    /// Applying this command value fails.
    fail_on: Option<u64>,
    /// The first apply waits until this receives (or its sender is dropped).
    gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl TestExecutor {
    /// An executor restarted from `durable`.
    fn restart(durable: &Arc<Mutex<Ops>>) -> Self {
        Self {
            durable: Arc::clone(durable),
            volatile: Mutex::new(durable.lock().clone()),
            ..Self::default()
        }
    }

    /// Adds a gate to the first apply; the returned sender opens it.
    fn gated(mut self) -> (Self, std::sync::mpsc::Sender<()>) {
        let (open, gate) = std::sync::mpsc::channel();
        self.gate = Mutex::new(Some(gate));
        (self, open)
    }
}

impl CommandExecutor<Cmd> for TestExecutor {
    type Output = (u64, u64);

    fn apply(&self, batch: &[(u64, Cmd)]) -> Result<Vec<(u64, u64)>, ExecutorError> {
        let gate = self.gate.lock().take();
        if let Some(gate) = gate {
            let _ = gate.recv();
        }
        if batch.iter().any(|(_, cmd)| Some(cmd.0) == self.fail_on) {
            return Err(ExecutorError::new("injected apply failure"));
        }
        let mut volatile = self.volatile.lock();
        for &(index, Cmd(value)) in batch {
            let expected = volatile.last().map_or(1, |&(last, _)| last + 1);
            if index != expected {
                return Err(ExecutorError::new(format!(
                    "applied index {index}, expected {expected}"
                )));
            }
            volatile.push((index, value));
            self.applied_here.lock().push((index, value));
        }
        self.batches.lock().push(batch.len());
        Ok(batch
            .iter()
            .map(|&(index, Cmd(value))| (index, value * 10))
            .collect())
    }

    fn flush(&self) -> Result<u64, ExecutorError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        let volatile = self.volatile.lock();
        let mut durable = self.durable.lock();
        let keep = volatile
            .len()
            .saturating_sub(self.lose_last)
            .max(durable.len());
        *durable = volatile[..keep].to_vec();
        Ok(durable.last().map_or(0, |&(index, _)| index))
    }

    fn applied_index(&self) -> Result<u64, ExecutorError> {
        Ok(self.durable.lock().last().map_or(0, |&(index, _)| index))
    }

    fn snapshot(&self) -> Result<Bytes, ExecutorError> {
        let volatile = self.volatile.lock();
        let mut out = Vec::with_capacity(volatile.len() * 16);
        for &(index, value) in volatile.iter() {
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        Ok(Bytes::from(out))
    }

    /// The solo driver never restores; this executor can only represent images whose last
    /// applied command is at `index`.
    fn restore(&self, data: &[u8], index: u64) -> Result<(), ExecutorError> {
        if !data.len().is_multiple_of(16) {
            return Err(ExecutorError::new("image length is not a multiple of 16"));
        }
        let ops: Ops = data
            .chunks_exact(16)
            .map(|c| {
                let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                (word(&c[..8]), word(&c[8..]))
            })
            .collect();
        if ops.last().map_or(0, |&(last, _)| last) != index {
            return Err(ExecutorError::new("image does not end at the given index"));
        }
        *self.volatile.lock() = ops.clone();
        *self.durable.lock() = ops;
        Ok(())
    }
}

/// A storage wrapper that counts appends and can fail them.
struct CountingLog<S> {
    /// The wrapped storage.
    inner: S,
    /// Number of append calls.
    appends: Arc<AtomicUsize>,
    /// Appends after this many fail.
    fail_after: Option<usize>,
}

impl<S: LogStorage> CountingLog<S> {
    fn new(inner: S) -> (Self, Arc<AtomicUsize>) {
        let appends = Arc::new(AtomicUsize::new(0));
        let log = Self {
            inner,
            appends: Arc::clone(&appends),
            fail_after: None,
        };
        (log, appends)
    }
}

impl<S: LogStorage> LogStorage for CountingLog<S> {
    fn append(&self, entries: &[LogEntry], sync: bool) -> Result<(), StorageError> {
        let count = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_after.is_some_and(|limit| count > limit) {
            return Err(StorageError::Engine("injected append failure".to_owned()));
        }
        self.inner.append(entries, sync)
    }
    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<LogEntry>, StorageError> {
        self.inner.entries(low, high, max_bytes)
    }
    fn term(&self, index: u64) -> Result<Option<u64>, StorageError> {
        self.inner.term(index)
    }
    fn first_index(&self) -> u64 {
        self.inner.first_index()
    }
    fn last_index(&self) -> u64 {
        self.inner.last_index()
    }
    fn compact(&self, to: u64) -> Result<(), StorageError> {
        self.inner.compact(to)
    }
    fn install_snapshot(&self, index: u64, term: u64) -> Result<(), StorageError> {
        self.inner.install_snapshot(index, term)
    }
    fn hard_state(&self) -> Result<HardState, StorageError> {
        self.inner.hard_state()
    }
    fn set_hard_state(&self, hs: HardState, sync: bool) -> Result<(), StorageError> {
        self.inner.set_hard_state(hs, sync)
    }
    fn put_meta(&self, key: &[u8], value: &[u8], sync: bool) -> Result<(), StorageError> {
        self.inner.put_meta(key, value, sync)
    }
    fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get_meta(key)
    }
    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }
}

type Handle = SoloHandle<Cmd, (u64, u64)>;

fn start<S: LogStorage>(log: S, executor: &Arc<TestExecutor>, config: SoloConfig) -> Handle {
    SoloNode::start(log, Arc::clone(executor), config).expect("start")
}

/// Stops the node and waits for its thread.
async fn stop(handle: &Handle) {
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(10), handle.closed())
        .await
        .expect("the driver thread did not exit");
    assert!(handle.is_closed());
}

/// Proposes `values` from concurrent tasks, returning each result.
async fn propose_concurrently(
    handle: &Handle,
    values: impl Iterator<Item = u64>,
) -> Vec<(u64, Result<(u64, u64), ProposeError>)> {
    let tasks: Vec<_> = values
        .map(|value| {
            let handle = handle.clone();
            tokio::spawn(async move { (value, handle.propose(Cmd(value)).await) })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_in_order_and_returns_outputs() {
    let log = MemoryLog::new();
    let executor = Arc::new(TestExecutor::default());
    let handle = start(log.clone(), &executor, SoloConfig::default());
    assert_eq!(handle.applied_index(), 0);
    for value in 1..=50 {
        let output = handle.propose(Cmd(value + 1000)).await.expect("propose");
        assert_eq!(output, (value, (value + 1000) * 10));
        assert_eq!(handle.applied_index(), value);
    }
    // Concurrent proposals: every one gets its own index and output.
    let results = propose_concurrently(&handle, 2000..2100).await;
    let mut indices: Vec<u64> = results
        .iter()
        .map(|(value, result)| {
            let (index, output) = result.clone().expect("propose");
            assert_eq!(output, value * 10);
            index
        })
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (51..=150).collect::<Vec<_>>());
    assert_eq!(handle.applied_index(), 150);
    stop(&handle).await;

    // The executor saw indices 1..=150 in order, and the log held the same commands.
    let applied = executor.applied_here.lock().clone();
    assert_eq!(
        applied.iter().map(|&(index, _)| index).collect::<Vec<_>>(),
        (1..=150).collect::<Vec<_>>()
    );
    for (index, value) in results
        .iter()
        .map(|(value, result)| (result.clone().expect("propose").0, *value))
    {
        assert_eq!(applied[(index - 1) as usize], (index, value));
    }
    // Everything was flushed at shutdown, so the log was compacted entirely; the hard state
    // records term 1.
    assert_eq!(executor.durable.lock().len(), 150);
    assert_eq!(log.first_index(), 151);
    assert_eq!(log.last_index(), 150);
    assert_eq!(log.term(150).expect("term"), Some(1));
    assert_eq!(log.hard_state().expect("hard state").term, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_are_batched() {
    let (log, appends) = CountingLog::new(MemoryLog::new());
    let (executor, open_gate) = TestExecutor::default().gated();
    let executor = Arc::new(executor);
    let handle = start(log, &executor, SoloConfig::default());
    // The first batch blocks in apply while the rest queue up.
    let proposals = tokio::spawn({
        let handle = handle.clone();
        async move { propose_concurrently(&handle, 1..=300).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    open_gate.send(()).expect("open gate");
    let results = proposals.await.expect("proposals");
    assert!(results.iter().all(|(_, result)| result.is_ok()));
    stop(&handle).await;

    let appends = appends.load(Ordering::SeqCst);
    let batches = executor.batches.lock().clone();
    assert_eq!(batches.iter().sum::<usize>(), 300);
    assert_eq!(batches.len(), appends);
    // One gated batch, then 299 queued proposals in batches of at most 256.
    assert!(
        appends <= 4,
        "{appends} appends for 300 proposals: {batches:?}"
    );
    assert!(batches.iter().all(|&size| size <= 256));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_respect_their_limits() {
    for (config, limit) in [
        (
            SoloConfig {
                max_batch_entries: 16,
                ..SoloConfig::default()
            },
            16,
        ),
        (
            // Commands encode to 8 bytes: a batch stops growing at 40 bytes.
            SoloConfig {
                max_batch_bytes: 40,
                ..SoloConfig::default()
            },
            5,
        ),
    ] {
        let (executor, open_gate) = TestExecutor::default().gated();
        let executor = Arc::new(executor);
        let handle = start(MemoryLog::new(), &executor, config);
        let proposals = tokio::spawn({
            let handle = handle.clone();
            async move { propose_concurrently(&handle, 1..=100).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        open_gate.send(()).expect("open gate");
        let results = proposals.await.expect("proposals");
        assert!(results.iter().all(|(_, result)| result.is_ok()));
        stop(&handle).await;
        let batches = executor.batches.lock().clone();
        assert_eq!(batches.iter().sum::<usize>(), 100);
        assert!(batches.iter().all(|&size| size <= limit), "{batches:?}");
        assert!(batches.contains(&limit), "{batches:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_periodically_under_load() {
    let (executor, open_gate) = TestExecutor::default().gated();
    let executor = Arc::new(executor);
    let config = SoloConfig {
        max_batch_entries: 4,
        flush_every_entries: 8,
        ..SoloConfig::default()
    };
    let handle = start(MemoryLog::new(), &executor, config);
    let flushes_at_start = executor.flushes.load(Ordering::SeqCst);
    let proposals = tokio::spawn({
        let handle = handle.clone();
        async move { propose_concurrently(&handle, 1..=101).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    open_gate.send(()).expect("open gate");
    proposals.await.expect("proposals");
    stop(&handle).await;
    // 100 queued entries in batches of 4, a flush at least every 8 entries.
    let flushes = executor.flushes.load(Ordering::SeqCst) - flushes_at_start;
    assert!(flushes >= 12, "only {flushes} flushes");
    assert_eq!(executor.durable.lock().len(), 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_replays_exactly_the_lost_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let durable = Arc::new(Mutex::new(Ops::new()));

    // First run: every flush leaves the last 3 applied commands non-durable.
    let executor = Arc::new(TestExecutor {
        lose_last: 3,
        ..TestExecutor::restart(&durable)
    });
    let log = RaftEngineLog::open(dir.path()).expect("open");
    let handle = start(log, &executor, SoloConfig::default());
    for value in 1..=50 {
        let (index, _) = handle.propose(Cmd(value * 7)).await.expect("propose");
        assert_eq!(index, value);
    }
    stop(&handle).await;
    assert_eq!(durable.lock().len(), 47);

    // The log kept exactly what the executor had not made durable.
    {
        let log = RaftEngineLog::open(dir.path()).expect("reopen");
        assert_eq!(log.first_index(), 48);
        assert_eq!(log.last_index(), 50);
    }

    // Second run: the lost commands are replayed, in order, once, before start returns.
    let executor = Arc::new(TestExecutor::restart(&durable));
    let log = RaftEngineLog::open(dir.path()).expect("reopen");
    let handle = start(log, &executor, SoloConfig::default());
    assert_eq!(handle.applied_index(), 50);
    assert_eq!(
        *executor.applied_here.lock(),
        vec![(48, 48 * 7), (49, 49 * 7), (50, 50 * 7)]
    );
    assert_eq!(durable.lock().len(), 50);
    // New proposals continue the log.
    assert_eq!(handle.propose(Cmd(1)).await.expect("propose"), (51, 10));
    stop(&handle).await;

    let expected: Ops = (1..=50)
        .map(|index| (index, index * 7))
        .chain([(51, 1)])
        .collect();
    assert_eq!(*durable.lock(), expected);
    let log = RaftEngineLog::open(dir.path()).expect("reopen");
    assert_eq!(log.first_index(), 52);
    assert_eq!(log.last_index(), 51);
    assert_eq!(log.hard_state().expect("hard state").term, 1);

    // Third run: nothing to replay.
    let executor = Arc::new(TestExecutor::restart(&durable));
    let handle = start(log, &executor, SoloConfig::default());
    assert_eq!(handle.applied_index(), 51);
    assert!(executor.applied_here.lock().is_empty());
    stop(&handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retains_log_entries_when_asked() {
    let log = MemoryLog::new();
    let executor = Arc::new(TestExecutor::default());
    let config = SoloConfig {
        retain_log_entries: 10,
        ..SoloConfig::default()
    };
    let handle = start(log.clone(), &executor, config);
    for value in 1..=30 {
        handle.propose(Cmd(value)).await.expect("propose");
    }
    stop(&handle).await;
    assert_eq!(log.first_index(), 21);
    assert_eq!(log.last_index(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_failure_is_fatal() {
    let executor = Arc::new(TestExecutor {
        fail_on: Some(13),
        ..TestExecutor::default()
    });
    let log = MemoryLog::new();
    let handle = start(log.clone(), &executor, SoloConfig::default());
    for value in 1..=12 {
        handle.propose(Cmd(value)).await.expect("propose");
    }
    let err = handle.propose(Cmd(13)).await.expect_err("must fail");
    assert!(
        matches!(&err, ProposeError::Fatal(message) if message.contains("injected apply failure")),
        "{err:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), handle.closed())
        .await
        .expect("the driver thread did not exit");
    assert!(matches!(
        handle.propose(Cmd(14)).await,
        Err(ProposeError::Fatal(_))
    ));
    assert!(handle.fatal_error().is_some());
    assert_eq!(handle.applied_index(), 12);
    // The failed command reached the log: it is replayed on the next start, where it fails
    // again.
    assert_eq!(log.last_index(), 13);
    let again = SoloNode::start(log, Arc::clone(&executor), SoloConfig::default());
    assert!(matches!(again, Err(ProposeError::Fatal(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_is_fatal_for_everything_pending() {
    let (mut log, _appends) = CountingLog::new(MemoryLog::new());
    log.fail_after = Some(1);
    let (executor, open_gate) = TestExecutor::default().gated();
    let executor = Arc::new(executor);
    let config = SoloConfig {
        max_batch_entries: 10,
        ..SoloConfig::default()
    };
    let handle = start(log, &executor, config);
    let proposals = tokio::spawn({
        let handle = handle.clone();
        async move { propose_concurrently(&handle, 1..=100).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    open_gate.send(()).expect("open gate");
    let results = proposals.await.expect("proposals");
    // The first (gated) batch succeeded; the next append failed, and every other proposal
    // was answered with the fatal error.
    let ok = results.iter().filter(|(_, result)| result.is_ok()).count();
    assert!(ok >= 1);
    for (_, result) in &results {
        match result {
            Ok(_) => {}
            Err(ProposeError::Fatal(message)) => {
                assert!(message.contains("injected append failure"), "{message}");
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(ok <= 10, "{ok} proposals succeeded");
    tokio::time::timeout(Duration::from_secs(10), handle.closed())
        .await
        .expect("the driver thread did not exit");
    assert_eq!(handle.applied_index(), ok as u64);
}

/// An executor that panics while applying.
struct PanickingExecutor;

impl CommandExecutor<Cmd> for PanickingExecutor {
    type Output = ();

    fn apply(&self, _batch: &[(u64, Cmd)]) -> Result<Vec<()>, ExecutorError> {
        panic!("executor bug");
    }

    fn flush(&self) -> Result<u64, ExecutorError> {
        Ok(0)
    }

    fn applied_index(&self) -> Result<u64, ExecutorError> {
        Ok(0)
    }

    fn snapshot(&self) -> Result<Bytes, ExecutorError> {
        Ok(Bytes::new())
    }

    fn restore(&self, _data: &[u8], _index: u64) -> Result<(), ExecutorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_panic_is_fatal() {
    let handle = SoloNode::start(
        MemoryLog::new(),
        Arc::new(PanickingExecutor),
        SoloConfig::default(),
    )
    .expect("start");
    let err = handle.propose(Cmd(1)).await.expect_err("must fail");
    assert!(
        matches!(&err, ProposeError::Fatal(message) if message.contains("executor bug")),
        "{err:?}"
    );
    handle.closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_queued_proposals_and_refuses_new_ones() {
    let (executor, open_gate) = TestExecutor::default().gated();
    let executor = Arc::new(executor);
    let handle = start(MemoryLog::new(), &executor, SoloConfig::default());
    let proposals = tokio::spawn({
        let handle = handle.clone();
        async move { propose_concurrently(&handle, 1..=100).await }
    });
    // Everything is queued behind the gated first batch when shutdown is requested.
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.shutdown();
    assert_eq!(
        handle.propose(Cmd(1000)).await,
        Err(ProposeError::ShuttingDown)
    );
    open_gate.send(()).expect("open gate");
    let results = proposals.await.expect("proposals");
    assert!(results.iter().all(|(_, result)| result.is_ok()));
    tokio::time::timeout(Duration::from_secs(10), handle.closed())
        .await
        .expect("the driver thread did not exit");
    assert_eq!(handle.applied_index(), 100);
    assert_eq!(executor.durable.lock().len(), 100);
    assert_eq!(
        handle.propose(Cmd(1001)).await,
        Err(ProposeError::ShuttingDown)
    );
    assert_eq!(handle.fatal_error(), None);
    // Shutting down twice is harmless.
    stop(&handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_stops_the_driver() {
    let log = MemoryLog::new();
    let executor = Arc::new(TestExecutor::default());
    let handle = start(log.clone(), &executor, SoloConfig::default());
    handle.propose(Cmd(1)).await.expect("propose");
    drop(handle);
    // The thread flushes and exits; afterwards the storage can be used by a new node.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&executor) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "driver kept running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let handle = start(log, &executor, SoloConfig::default());
    assert_eq!(handle.applied_index(), 1);
    stop(&handle).await;
}

#[test]
fn recovery_refuses_inconsistent_state() {
    // The executor is ahead of the log (the log was lost).
    let durable = Arc::new(Mutex::new(vec![(1, 1), (2, 2)]));
    let executor = Arc::new(TestExecutor::restart(&durable));
    let result = SoloNode::start::<Cmd, _, _>(MemoryLog::new(), executor, SoloConfig::default());
    assert!(
        matches!(&result, Err(ProposeError::Fatal(message)) if message.contains("ahead") || message.contains("lost")),
        "{result:?}"
    );

    // The log was compacted past the executor's applied index.
    let log = MemoryLog::new();
    let entries: Vec<LogEntry> = (1..=5)
        .map(|index| LogEntry {
            index,
            term: 1,
            data: Bytes::from(Cmd(index).encode()),
        })
        .collect();
    log.append(&entries, true).expect("append");
    log.compact(4).expect("compact");
    let executor = Arc::new(TestExecutor::restart(&Arc::new(Mutex::new(vec![(1, 1)]))));
    let result = SoloNode::start::<Cmd, _, _>(log, executor, SoloConfig::default());
    assert!(
        matches!(&result, Err(ProposeError::Fatal(message)) if message.contains("missing")),
        "{result:?}"
    );

    // An entry that does not decode.
    let log = MemoryLog::new();
    log.append(
        &[LogEntry {
            index: 1,
            term: 1,
            data: Bytes::from_static(b"bad"),
        }],
        true,
    )
    .expect("append");
    let executor = Arc::new(TestExecutor::default());
    let result = SoloNode::start::<Cmd, _, _>(log, executor, SoloConfig::default());
    assert!(
        matches!(&result, Err(ProposeError::Fatal(message)) if message.contains("decode")),
        "{result:?}"
    );
}

#[test]
fn recovery_replays_in_batches() {
    let log = MemoryLog::new();
    let entries: Vec<LogEntry> = (1..=100)
        .map(|index| LogEntry {
            index,
            term: 1,
            data: Bytes::from(Cmd(index).encode()),
        })
        .collect();
    log.append(&entries, true).expect("append");
    let executor = Arc::new(TestExecutor::default());
    let config = SoloConfig {
        max_batch_entries: 30,
        ..SoloConfig::default()
    };
    let handle = SoloNode::start(log.clone(), Arc::clone(&executor), config).expect("start");
    assert_eq!(handle.applied_index(), 100);
    assert_eq!(*executor.batches.lock(), vec![30, 30, 30, 10]);
    assert_eq!(
        *executor.applied_here.lock(),
        (1..=100).map(|index| (index, index)).collect::<Ops>()
    );
    // Replayed entries were flushed, then compacted away.
    assert_eq!(log.first_index(), 101);
    handle.shutdown();
}

/// The futures a server awaits in its request handlers must be `Send`.
#[allow(dead_code)]
fn handle_futures_are_send(handle: &Handle) {
    fn assert_send<T: Send>(_: T) {}
    assert_send(handle.propose(Cmd(1)));
    assert_send(handle.closed());
    assert_send(handle.clone());
}
