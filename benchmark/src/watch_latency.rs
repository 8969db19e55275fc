//! `watch-latency`: the time from sending a put to each watcher receiving its event.
//!
//! `--streams` watch streams (spread over the connections) each carry `--watchers-per-stream`
//! watchers of one key. Puts of that key are then sent at `--rate` (100/s unless given) by the
//! usual runner; each put's value is its request number, so a watcher finds the send time of the
//! put behind every event it receives. Every (put, watcher) pair is one sample; events that do
//! not arrive within a grace period after the last put count as errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;
use xline_proto::etcdserverpb::watch_client::WatchClient;
use xline_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse, watch_request};

use crate::conn::Conn;
use crate::error::BenchError;
use crate::keys;
use crate::report::Recorder;
use crate::runner::{self, RunOptions};
use crate::schedule::Schedule;
use crate::workload::Workload;

/// Put rate when `--rate` is not given (etcd's `--put-rate` default).
pub const DEFAULT_PUT_RATE: f64 = 100.0;
/// How long watchers may lag behind the last put before missing events count as errors.
const GRACE: Duration = Duration::from_secs(10);

/// Shape of a watch-latency run.
#[derive(Debug, Clone)]
pub struct WatchLatency {
    /// The watched (and written) key.
    pub key: Vec<u8>,
    /// Size of each put's value.
    pub val_size: usize,
    /// Watch streams.
    pub streams: usize,
    /// Watchers on each stream.
    pub watchers_per_stream: usize,
}

/// Send time of every put, by request number.
#[derive(Debug)]
pub struct SendTimes(Vec<OnceLock<Instant>>);

impl SendTimes {
    /// Room for `n` puts.
    pub fn new(n: u64) -> Self {
        Self((0..n).map(|_| OnceLock::new()).collect())
    }

    /// Notes that put `seq` is being sent now.
    pub fn mark(&self, seq: u64) {
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.0.get(i)) {
            let _ = slot.set(Instant::now());
        }
    }

    /// When put `seq` was sent.
    pub fn get(&self, seq: u64) -> Option<Instant> {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.0.get(i))
            .and_then(|slot| slot.get().copied())
    }
}

/// The outcome: watch latencies, and the puts that caused them.
#[derive(Debug)]
pub struct WatchOutcome {
    /// One sample per (put, watcher).
    pub events: Recorder,
    /// The puts.
    pub puts: runner::RunOutcome,
}

/// One watch stream with its watchers created.
struct Stream {
    /// Dropping it closes the stream.
    _requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

async fn open_stream(channel: Channel, spec: &WatchLatency) -> Result<Stream, BenchError> {
    let (requests, rx) = mpsc::channel(spec.watchers_per_stream.max(1));
    // Every create request is queued before the call: a grpc-go server (etcd) sends the
    // response headers only with its first message, so awaiting the call before sending a
    // request would wait forever.
    for _ in 0..spec.watchers_per_stream {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: spec.key.clone(),
                    ..WatchCreateRequest::default()
                },
            )),
        };
        requests
            .try_send(create)
            .map_err(|_| BenchError::Task("watch request queue full during setup".to_owned()))?;
    }
    let mut responses = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
        .map_err(|s| BenchError::setup("Watch", &s))?
        .into_inner();
    let mut created = 0;
    while created < spec.watchers_per_stream {
        match responses.next().await {
            Some(Ok(r)) if r.created => created += 1,
            Some(Ok(_)) => {}
            Some(Err(s)) => return Err(BenchError::setup("Watch create", &s)),
            None => {
                return Err(BenchError::Task(
                    "watch stream closed during setup".to_owned(),
                ));
            }
        }
    }
    Ok(Stream {
        _requests: requests,
        responses,
    })
}

/// Runs watch-latency with puts driven by `opts` over `channels`.
pub async fn run(
    spec: &WatchLatency,
    channels: &[Channel],
    opts: &RunOptions,
) -> Result<WatchOutcome, BenchError> {
    if channels.is_empty() {
        return Err(BenchError::InvalidArgs("no connection".to_owned()));
    }
    let rate = opts.rate.unwrap_or(DEFAULT_PUT_RATE);
    let capacity = Schedule::max_requests(opts.budget, Some(rate)).unwrap_or(0);
    let sent = Arc::new(SendTimes::new(capacity));
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut readers = JoinSet::new();
    for s in 0..spec.streams {
        let mut stream = open_stream(channels[s % channels.len()].clone(), spec).await?;
        let (sent, received, mut stop) = (sent.clone(), received.clone(), stop_rx.clone());
        readers.spawn(async move {
            let mut recorder = Recorder::new();
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    msg = stream.responses.next() => match msg {
                        Some(Ok(resp)) => {
                            let now = Instant::now();
                            for event in resp.events {
                                let seq = event.kv.and_then(|kv| keys::parse_seq_value(&kv.value));
                                match seq.and_then(|seq| sent.get(seq)) {
                                    Some(at) => recorder.record(now - at),
                                    None => recorder.record_error("event of an unknown put"),
                                }
                                received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(Err(s)) => {
                            recorder.record_error(crate::workload::status_message(s));
                            break;
                        }
                        None => {
                            recorder.record_error("watch stream closed");
                            break;
                        }
                    },
                }
            }
            recorder
        });
    }

    let put = Arc::new(Workload::StampedPut {
        key: spec.key.clone(),
        val_size: spec.val_size,
        sent: sent.clone(),
    });
    let put_opts = RunOptions {
        rate: Some(rate),
        ..*opts
    };
    let conns: Vec<Conn> = channels.iter().cloned().map(Conn::Grpc).collect();
    let puts = runner::run(put, &conns, &put_opts).await?;

    let watchers = (spec.streams * spec.watchers_per_stream) as u64;
    let expected = puts.recorder.successes() * watchers;
    let deadline = Instant::now() + GRACE;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let mut events = Recorder::new();
    while let Some(joined) = readers.join_next().await {
        events.merge(&joined.map_err(|e| BenchError::Task(e.to_string()))?);
    }
    let missing = expected.saturating_sub(received.load(Ordering::Relaxed));
    events.record_errors(
        format!("watch event not received within {GRACE:?} of the last put"),
        missing,
    );
    Ok(WatchOutcome { events, puts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_times_remember_the_first_mark_and_ignore_out_of_range() {
        let t = SendTimes::new(2);
        assert_eq!(t.get(0), None);
        t.mark(0);
        let first = t.get(0).unwrap();
        t.mark(0);
        assert_eq!(t.get(0), Some(first));
        t.mark(5);
        assert_eq!(t.get(5), None);
    }
}
