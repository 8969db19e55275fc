//! Drives a [`Workload`]: `--clients` tasks over `--conns` connections claim request numbers
//! from one [`Schedule`] until the budget is spent, each recording into its own [`Recorder`]
//! (no shared lock on the hot path); the recorders are merged at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::JoinSet;

use crate::conn::Conn;
use crate::error::BenchError;
use crate::progress::Progress;
use crate::report::Recorder;
use crate::schedule::{Budget, Schedule};
use crate::workload::{ClientState, Workload};

/// How a run is driven.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Concurrent clients (each has at most one request outstanding).
    pub clients: usize,
    /// How many requests, or for how long.
    pub budget: Budget,
    /// Requests per second over all clients; `None` as fast as possible.
    pub rate: Option<f64>,
    /// Draw a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// A request without a response after this long counts as failed.
    pub request_timeout: Duration,
    /// Seed of the clients' key choices (client `i` uses `seed + i`).
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunOutcome {
    /// Latencies and errors of every request.
    pub recorder: Recorder,
    /// From the first request to the last response.
    pub elapsed: Duration,
}

/// A seed that differs between runs.
pub fn time_seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| {
            u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(0)
        })
}

/// Runs `workload` with `opts.clients` clients over `conns` (client `i` uses connection
/// `i % conns.len()`).
pub async fn run(
    workload: Arc<Workload>,
    conns: &[Conn],
    opts: &RunOptions,
) -> Result<RunOutcome, BenchError> {
    if conns.is_empty() || opts.clients == 0 {
        return Err(BenchError::InvalidArgs(
            "a run needs at least one connection and one client".to_owned(),
        ));
    }
    // Per-client setup (lease grants) happens before the clock starts.
    let mut states = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients {
        states.push(ClientState::new(&workload, &conns[i % conns.len()]).await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(done.clone(), opts.budget, opts.progress);
    let schedule = Arc::new(Schedule::new(opts.budget, opts.rate, Instant::now()));
    let mut tasks = JoinSet::new();
    for (i, mut state) in states.into_iter().enumerate() {
        let (workload, schedule, done) = (workload.clone(), schedule.clone(), done.clone());
        let timeout = opts.request_timeout;
        let seed = opts.seed.wrapping_add(i as u64);
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut recorder = Recorder::new();
            while let Some(ticket) = schedule.claim(Instant::now()) {
                if let Some(due) = ticket.due {
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let step = state.step(&workload, ticket.seq, &mut rng);
                match tokio::time::timeout(timeout, step).await {
                    Ok(Ok(())) => recorder.record(sent.elapsed()),
                    Ok(Err(message)) => recorder.record_error(message),
                    Err(_) => recorder.record_error(format!("no response within {timeout:?}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            let finished = Instant::now();
            state.close().await;
            (recorder, finished)
        });
    }
    let mut recorder = Recorder::new();
    let mut last = schedule.start();
    while let Some(joined) = tasks.join_next().await {
        let (client, finished) = joined.map_err(|e| BenchError::Task(e.to_string()))?;
        recorder.merge(&client);
        last = last.max(finished);
    }
    progress.finish().await;
    Ok(RunOutcome {
        recorder,
        elapsed: last - schedule.start(),
    })
}
