//! The single-voter driver, used until the full consensus node exists.
//!
//! With one voter every appended entry is committed at once, so the driver only orders,
//! persists and applies: proposals are batched, given consecutive indices, appended to the
//! log with one fsync per batch, applied as one executor batch, and answered. The executor is
//! flushed when the queue runs dry or every [`SoloConfig::flush_every_entries`] entries, and
//! the log is then compacted up to what the executor has made durable.
//!
//! ```text
//! propose() --mpsc--> [curp-solo thread] append+fsync -> apply -> answer -> (flush -> compact)
//! ```

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cmd::{Command, CommandExecutor};
use crate::error::ProposeError;
use crate::storage::{HardState, LogEntry, LogStorage};

/// Term of every entry the solo driver writes (unless the stored hard state has a later one).
/// The term of every entry a single voter appends (it never holds an election).
pub const SOLO_TERM: u64 = 1;

/// Tuning for [`SoloNode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoloConfig {
    /// Most proposals in one log batch (one fsync, one executor batch). At least 1.
    pub max_batch_entries: usize,
    /// A batch stops growing once its encoded commands reach this many bytes (a single larger
    /// command still forms a batch of its own).
    pub max_batch_bytes: usize,
    /// Flush the executor at least every this many applied entries, even under constant load.
    /// At least 1.
    pub flush_every_entries: u64,
    /// Capacity of the proposal queue; `propose` waits while it is full. At least 1.
    pub queue_depth: usize,
    /// How many entries the executor has already made durable to keep in the log anyway.
    pub retain_log_entries: u64,
    /// Also flush whenever the queue runs dry. Off by default: a flush costs an fsync (plus one
    /// for log compaction), which would double the cost of every write of a lone client, and
    /// the log already makes applied entries durable; replay after a crash is bounded by
    /// `flush_every_entries` either way.
    pub flush_when_idle: bool,
}

impl Default for SoloConfig {
    fn default() -> Self {
        Self {
            max_batch_entries: 256,
            max_batch_bytes: 4 << 20,
            flush_every_entries: 1024,
            queue_depth: 4096,
            retain_log_entries: 0,
            flush_when_idle: false,
        }
    }
}

impl SoloConfig {
    /// Replaces zero limits by 1.
    fn sanitized(self) -> Self {
        Self {
            max_batch_entries: self.max_batch_entries.max(1),
            flush_every_entries: self.flush_every_entries.max(1),
            queue_depth: self.queue_depth.max(1),
            ..self
        }
    }
}

/// Starts the single-voter driver; see [`SoloNode::start`].
#[derive(Debug)]
pub struct SoloNode {
    /// Not constructible.
    _private: (),
}

impl SoloNode {
    /// Recovers the state machine from the log, then starts the driver thread ("curp-solo").
    ///
    /// Recovery runs on the calling thread before this returns: every log entry after
    /// `executor.applied_index()` is decoded and applied, in batches, then the executor is
    /// flushed and the log compacted. The returned handle proposes new commands; the driver
    /// runs until [`SoloHandle::shutdown`], a fatal error, or the last handle is dropped.
    ///
    /// This blocks for as long as recovery takes: call it before serving, or from
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`ProposeError::Fatal`] if recovery fails: a storage or executor error, an entry that
    /// does not decode, a log compacted past the executor's applied index (entries are
    /// missing), an executor ahead of the log (the log was lost), or the thread cannot be
    /// spawned.
    pub fn start<C, E, S>(
        storage: S,
        executor: Arc<E>,
        config: SoloConfig,
    ) -> Result<SoloHandle<C, E::Output>, ProposeError>
    where
        C: Command,
        E: CommandExecutor<C>,
        S: LogStorage,
    {
        let config = config.sanitized();
        let driver = Driver::<C, E, S>::recover(storage, executor, config)?;
        let (tx, rx) = mpsc::channel(config.queue_depth);
        let (exited, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            applied: AtomicU64::new(driver.applied),
            closing: AtomicBool::new(false),
            fatal: Mutex::new(None),
            exited,
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("curp-solo".to_owned())
            .spawn(move || {
                // Locals drop in reverse order, also when unwinding: the storage is released
                // before the guard reports the exit.
                let guard = ExitGuard(thread_shared);
                let mut rx = rx;
                let mut driver = driver;
                driver.run(&mut rx, &guard.0);
            })
            .map_err(|err| {
                ProposeError::Fatal(format!("cannot spawn the curp-solo thread: {err}"))
            })?;
        Ok(SoloHandle { tx, shared })
    }
}

/// A message to the driver thread.
enum Message<C, O> {
    /// A command to order and apply, and where to send its result.
    Propose(C, oneshot::Sender<Result<O, ProposeError>>),
    /// Wakes the thread so that it notices [`Shared::closing`].
    Shutdown,
}

/// State shared by the handles and the driver thread.
#[derive(Debug)]
struct Shared {
    /// Index of the last applied entry.
    applied: AtomicU64,
    /// Set by [`SoloHandle::shutdown`].
    closing: AtomicBool,
    /// Why the driver stopped, if it failed.
    fatal: Mutex<Option<String>>,
    /// Becomes `true` when the driver thread has exited.
    exited: watch::Sender<bool>,
}

impl Shared {
    /// The error for a proposal that cannot reach, or hear back from, the driver.
    fn stopped_error(&self) -> ProposeError {
        match &*self.fatal.lock() {
            Some(message) => ProposeError::Fatal(message.clone()),
            None => ProposeError::ShuttingDown,
        }
    }
}

/// Marks the driver as exited when the thread ends, even by panicking.
struct ExitGuard(Arc<Shared>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .fatal
                .lock()
                .get_or_insert_with(|| "the curp-solo thread panicked".to_owned());
        }
        self.0.exited.send_replace(true);
    }
}

/// A cloneable handle to a running [`SoloNode`].
pub struct SoloHandle<C, O> {
    /// The proposal queue.
    tx: mpsc::Sender<Message<C, O>>,
    /// State shared with the driver.
    shared: Arc<Shared>,
}

impl<C, O> Clone for SoloHandle<C, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C, O> std::fmt::Debug for SoloHandle<C, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoloHandle")
            .field("applied_index", &self.applied_index())
            .field("closing", &self.shared.closing.load(Ordering::Relaxed))
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<C, O> SoloHandle<C, O> {
    /// Orders, persists and applies `cmd`, returning the executor's output for it.
    ///
    /// Waits while the proposal queue is full. Dropping the future does not withdraw a
    /// command that was already queued.
    ///
    /// # Errors
    ///
    /// [`ProposeError::ShuttingDown`] once [`SoloHandle::shutdown`] was called (the command
    /// was not applied); [`ProposeError::Fatal`] if the driver stopped on a storage or
    /// executor error.
    pub async fn propose(&self, cmd: C) -> Result<O, ProposeError> {
        if self.shared.closing.load(Ordering::Acquire) {
            return Err(ProposeError::ShuttingDown);
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Propose(cmd, tx)).await.is_err() {
            return Err(self.shared.stopped_error());
        }
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.shared.stopped_error()),
        }
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.shared.applied.load(Ordering::Acquire)
    }

    /// The current term: a single voter stays in [`SOLO_TERM`].
    pub fn term(&self) -> u64 {
        SOLO_TERM
    }

    /// Asks the driver to stop: new proposals are refused with
    /// [`ProposeError::ShuttingDown`], queued ones are still applied, then the executor is
    /// flushed and the thread exits. Returns at once; see [`SoloHandle::closed`].
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::Release);
        // Wake the thread if it waits for proposals. If the queue is full it is busy and sees
        // the flag after its current batch; if it is closed the thread is already stopping.
        let _ = self.tx.try_send(Message::Shutdown);
    }

    /// Waits until the driver thread has exited (after a shutdown or a fatal error) and has
    /// released the storage.
    pub async fn closed(&self) {
        let mut exited = self.shared.exited.subscribe();
        // The sender lives in `shared`, which we hold, so this only ends with `true`.
        let _ = exited.wait_for(|exited| *exited).await;
    }

    /// Whether the driver thread has exited.
    pub fn is_closed(&self) -> bool {
        *self.shared.exited.borrow()
    }

    /// Why the driver stopped, if it stopped on a fatal error.
    pub fn fatal_error(&self) -> Option<String> {
        self.shared.fatal.lock().clone()
    }
}

/// A proposal taken from the queue.
struct Pending<C, O> {
    /// The command.
    cmd: C,
    /// Its encoding, stored in the log.
    data: Vec<u8>,
    /// Where its result goes.
    reply: oneshot::Sender<Result<O, ProposeError>>,
}

/// The driver: owns the storage and runs on the curp-solo thread.
struct Driver<C, E: CommandExecutor<C>, S>
where
    C: Command,
{
    /// The log.
    storage: S,
    /// The state machine.
    executor: Arc<E>,
    /// Limits.
    config: SoloConfig,
    /// Term of new entries.
    term: u64,
    /// Index of the last entry in the log; in solo mode also the last applied one.
    applied: u64,
    /// Entries applied since the last flush.
    unflushed: u64,
    /// The command type.
    _cmd: PhantomData<fn() -> C>,
}

/// Runs `f`, turning its error or panic into a fatal error described by `what`.
fn guarded<T, Err: std::fmt::Display>(
    what: &str,
    f: impl FnOnce() -> Result<T, Err>,
) -> Result<T, ProposeError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(ProposeError::Fatal(format!("{what} failed: {err}"))),
        Err(panic) => Err(ProposeError::Fatal(format!(
            "{what} panicked: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// The message of a panic payload, if it has one.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
    }
}

impl<C, E, S> Driver<C, E, S>
where
    C: Command,
    E: CommandExecutor<C>,
    S: LogStorage,
{
    /// Replays the log into the executor and returns a driver ready to run.
    fn recover(storage: S, executor: Arc<E>, config: SoloConfig) -> Result<Self, ProposeError> {
        let applied = guarded("reading the applied index", || executor.applied_index())?;
        let first = storage.first_index();
        let last = storage.last_index();
        if applied > last {
            return Err(ProposeError::Fatal(format!(
                "the state machine has applied index {applied} but the log ends at {last}: \
                 the log was lost or belongs to another state machine"
            )));
        }
        if applied.saturating_add(1) < first {
            return Err(ProposeError::Fatal(format!(
                "the state machine has applied index {applied} but the log starts at {first}: \
                 entries {} to {} are missing",
                applied + 1,
                first - 1
            )));
        }

        let hard_state = guarded("reading the hard state", || storage.hard_state())?;
        if hard_state.term == 0 {
            let hard_state = HardState {
                term: SOLO_TERM,
                ..hard_state
            };
            guarded("storing the hard state", || {
                storage.set_hard_state(hard_state, true)
            })?;
        }
        let term = hard_state.term.max(SOLO_TERM);

        let mut next = applied + 1;
        while next <= last {
            let high = next
                .saturating_add(config.max_batch_entries as u64)
                .min(last + 1);
            let entries = guarded("reading log entries", || {
                storage.entries(next, high, config.max_batch_bytes as u64)
            })?;
            let mut batch = Vec::with_capacity(entries.len());
            for entry in &entries {
                let cmd = C::decode(&entry.data).map_err(|err| {
                    ProposeError::Fatal(format!("log entry {} does not decode: {err}", entry.index))
                })?;
                batch.push((entry.index, cmd));
            }
            let Some(&(batch_last, _)) = batch.last() else {
                return Err(ProposeError::Fatal(format!(
                    "the log returned no entries from index {next}"
                )));
            };
            guarded("replaying log entries", || executor.apply(&batch))?;
            next = batch_last + 1;
        }
        if last > applied {
            tracing::info!(from = applied + 1, to = last, "replayed the log");
        }

        let mut driver = Self {
            storage,
            executor,
            config,
            term,
            applied: last,
            unflushed: last - applied,
            _cmd: PhantomData,
        };
        driver.flush()?;
        Ok(driver)
    }

    /// Serves proposals until the queue is closed and drained, then flushes. On a fatal
    /// error, records it and answers everything still queued with it.
    fn run(&mut self, rx: &mut mpsc::Receiver<Message<C, E::Output>>, shared: &Shared) {
        let result = self.serve(rx, shared).and_then(|()| {
            if self.unflushed > 0 {
                self.flush()
            } else {
                Ok(())
            }
        });
        let err = match result {
            Ok(()) => ProposeError::ShuttingDown,
            Err(err) => {
                tracing::error!(%err, "the solo consensus driver stopped");
                let message = match &err {
                    ProposeError::Fatal(message) => message.clone(),
                    other => other.to_string(),
                };
                *shared.fatal.lock() = Some(message);
                err
            }
        };
        rx.close();
        while let Some(message) = rx.blocking_recv() {
            if let Message::Propose(_, reply) = message {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }

    /// The main loop; returns `Ok` once the queue is closed and drained.
    fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Message<C, E::Output>>,
        shared: &Shared,
    ) -> Result<(), ProposeError> {
        loop {
            if shared.closing.load(Ordering::Acquire) {
                // Refuse new proposals; the queued ones are still served below.
                rx.close();
            }
            let first = match rx.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Disconnected) => return Ok(()),
                Err(TryRecvError::Empty) => {
                    // The queue ran dry: make the state machine durable while idle.
                    if self.config.flush_when_idle && self.unflushed > 0 {
                        self.flush()?;
                    }
                    match rx.blocking_recv() {
                        Some(message) => message,
                        None => return Ok(()),
                    }
                }
            };
            let mut batch = Vec::new();
            let mut bytes = 0_usize;
            if let Message::Propose(cmd, reply) = first {
                bytes += Self::take(&mut batch, cmd, reply);
            }
            while batch.len() < self.config.max_batch_entries && bytes < self.config.max_batch_bytes
            {
                match rx.try_recv() {
                    Ok(Message::Propose(cmd, reply)) => {
                        bytes += Self::take(&mut batch, cmd, reply);
                    }
                    Ok(Message::Shutdown) => {}
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            self.process(batch, shared)?;
            if self.unflushed >= self.config.flush_every_entries {
                self.flush()?;
            }
        }
    }

    /// Adds a proposal to `batch`, returning its encoded size.
    fn take(
        batch: &mut Vec<Pending<C, E::Output>>,
        cmd: C,
        reply: oneshot::Sender<Result<E::Output, ProposeError>>,
    ) -> usize {
        let data = cmd.encode();
        let size = data.len();
        batch.push(Pending { cmd, data, reply });
        size
    }

    /// Appends, applies and answers one batch.
    fn process(
        &mut self,
        batch: Vec<Pending<C, E::Output>>,
        shared: &Shared,
    ) -> Result<(), ProposeError> {
        let count = batch.len() as u64;
        let mut entries = Vec::with_capacity(batch.len());
        let mut cmds = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for (index, pending) in (self.applied + 1..).zip(batch) {
            entries.push(LogEntry {
                index,
                term: self.term,
                data: Bytes::from(pending.data),
            });
            cmds.push((index, pending.cmd));
            replies.push(pending.reply);
        }
        let fail = |replies: Vec<oneshot::Sender<_>>, err: ProposeError| {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
            err
        };

        if let Err(err) = guarded("appending to the log", || {
            self.storage.append(&entries, true)
        }) {
            return Err(fail(replies, err));
        }
        let outputs = match guarded("applying commands", || self.executor.apply(&cmds)) {
            Ok(outputs) if outputs.len() == replies.len() => outputs,
            Ok(outputs) => {
                let err = ProposeError::Fatal(format!(
                    "the executor returned {} outputs for {} commands",
                    outputs.len(),
                    replies.len()
                ));
                return Err(fail(replies, err));
            }
            Err(err) => return Err(fail(replies, err)),
        };
        self.applied += count;
        self.unflushed += count;
        shared.applied.store(self.applied, Ordering::Release);
        for (reply, output) in replies.into_iter().zip(outputs) {
            // The proposer may have given up waiting; the command is applied regardless.
            let _ = reply.send(Ok(output));
        }
        Ok(())
    }

    /// Flushes the executor and compacts the log up to what it made durable.
    fn flush(&mut self) -> Result<(), ProposeError> {
        let flushed = guarded("flushing the state machine", || self.executor.flush())?;
        self.unflushed = 0;
        // An executor cannot have made more durable than was applied; do not trust it to.
        let flushed = flushed.min(self.applied);
        let to = (flushed + 1).saturating_sub(self.config.retain_log_entries);
        if to > self.storage.first_index() {
            guarded("compacting the log", || self.storage.compact(to))?;
        }
        Ok(())
    }
}
