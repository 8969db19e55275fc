//! One peer link: the task that drains a peer's queue into a client-streaming `Peer/Send`
//! call, reconnecting with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::GrpcOptions;
use super::curppb::{self, peer_client::PeerClient};
use super::queue::OutQueue;
use crate::core::NodeId;

/// Counters of one link, shared with [`super::GrpcTransport::peer_stats`].
#[derive(Debug, Default)]
pub(super) struct LinkStats {
    /// Whether a stream is open.
    pub(super) connected: AtomicBool,
    /// Connections established.
    pub(super) connections: AtomicU64,
    /// Envelopes handed to a stream.
    pub(super) sent: AtomicU64,
    /// Envelopes dropped for exceeding the message limit.
    pub(super) oversize: AtomicU64,
    /// When the open stream was established (`None` while there is none).
    pub(super) since: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// SplitMix64 (Steele, Lea, Flood 2014): the seeded source of backoff jitter.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Capped exponential backoff with "equal jitter": each delay is uniform in
/// `[d / 2, d]`, where `d` doubles from `initial` up to `max`.
#[derive(Debug)]
struct Backoff {
    /// The next un-jittered delay.
    next: Duration,
    /// First delay.
    initial: Duration,
    /// Cap.
    max: Duration,
    /// Jitter source.
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            next: initial,
            initial,
            max,
            rng: SplitMix64(seed),
        }
    }

    /// The delay before the next attempt.
    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = d.saturating_mul(2).min(self.max);
        let half = d / 2;
        let span = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.next_u64() % span.saturating_add(1))
    }

    /// Back to the initial delay (after a healthy connection).
    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// A stream that lived at least this long resets the backoff (a peer that accepts
/// connections but fails every stream must not make the link spin).
const HEALTHY_SESSION: Duration = Duration::from_secs(1);

/// How a `Send` call ended: the receiver ended the stream, or the connection broke.
type CallResult = Result<tonic::Response<curppb::SendAck>, tonic::Status>;

/// An error and its sources, `: `-separated (tonic's transport errors say little at the top).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The state of one link task.
pub(super) struct Link {
    /// This member.
    self_id: NodeId,
    /// The receiver.
    peer: NodeId,
    /// The receiver's URLs, tried in turn.
    urls: Vec<String>,
    /// Transport options.
    options: Arc<GrpcOptions>,
    /// What to send.
    queue: Arc<OutQueue>,
    /// Counters.
    stats: Arc<LinkStats>,
    /// An envelope taken from the queue that did not fit the previous batch.
    carry: Option<(curppb::Envelope, usize)>,
}

impl Link {
    /// A link from `self_id` to `peer`.
    pub(super) fn new(
        self_id: NodeId,
        peer: NodeId,
        urls: Vec<String>,
        options: Arc<GrpcOptions>,
        queue: Arc<OutQueue>,
        stats: Arc<LinkStats>,
    ) -> Self {
        Self {
            self_id,
            peer,
            urls,
            options,
            queue,
            stats,
            carry: None,
        }
    }

    /// Runs until aborted: connect, stream, reconnect.
    pub(super) async fn run(mut self) {
        if self.urls.is_empty() {
            tracing::error!(
                peer = self.peer,
                "grpc transport: peer has no URL; not sending"
            );
            return;
        }
        let seed = self.options.seed ^ self.self_id.rotate_left(32) ^ self.peer;
        let mut backoff =
            Backoff::new(self.options.backoff_initial, self.options.backoff_max, seed);
        let mut attempt = 0usize;
        let mut failures: u64 = 0;
        loop {
            let url = self.urls[attempt % self.urls.len()].clone();
            match self.connect(&url).await {
                Ok(client) => {
                    failures = 0;
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    self.stats.connected.store(true, Ordering::Relaxed);
                    *self.stats.since.lock() = Some(std::time::Instant::now());
                    tracing::debug!(peer = self.peer, url, "grpc transport: connected");
                    let started = Instant::now();
                    let result = self.session(client).await;
                    self.stats.connected.store(false, Ordering::Relaxed);
                    *self.stats.since.lock() = None;
                    match result {
                        Ok(_) => {
                            tracing::info!(
                                peer = self.peer,
                                url,
                                "grpc transport: receiver ended the stream; reconnecting"
                            );
                        }
                        Err(status) => {
                            tracing::warn!(peer = self.peer, url, %status, "grpc transport: stream broke; reconnecting");
                        }
                    }
                    if started.elapsed() >= HEALTHY_SESSION {
                        backoff.reset();
                    }
                }
                Err(err) => {
                    let err = error_chain(&err);
                    // Warn once per outage; the retries are routine.
                    if failures == 0 {
                        tracing::warn!(peer = self.peer, url, %err, "grpc transport: peer unreachable; retrying");
                    } else {
                        tracing::debug!(peer = self.peer, url, %err, "grpc transport: connect failed");
                    }
                    failures = failures.saturating_add(1);
                    attempt = attempt.wrapping_add(1);
                }
            }
            tokio::time::sleep(backoff.delay()).await;
        }
    }

    /// Opens a channel to `url`.
    async fn connect(&self, url: &str) -> Result<PeerClient<Channel>, tonic::transport::Error> {
        let options = &self.options;
        let mut endpoint = Endpoint::from_shared(url.to_owned())?;
        if url.starts_with("https://") {
            endpoint = endpoint.tls_config(options.tls.clone().unwrap_or_default())?;
        }
        let channel = endpoint
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(options.keepalive_interval)
            .keep_alive_timeout(options.keepalive_timeout)
            .keep_alive_while_idle(true)
            .http2_adaptive_window(true)
            .connect()
            .await?;
        Ok(PeerClient::new(channel)
            .max_encoding_message_size(options.max_message_bytes)
            .max_decoding_message_size(options.max_message_bytes))
    }

    /// Streams batches over one `Send` call until it ends.
    async fn session(&mut self, mut client: PeerClient<Channel>) -> CallResult {
        let (tx, rx) = mpsc::channel(self.options.inflight_batches);
        let call = client.send(ReceiverStream::new(rx));
        tokio::pin!(call);
        loop {
            // Wait for room in the stream first, so a batch leaves the queue only when it can
            // be sent and the queue's drop-oldest policy governs everything else.
            let permit = tokio::select! {
                result = &mut call => return result,
                permit = tx.reserve() => match permit {
                    Ok(permit) => permit,
                    // Unreachable while `rx` lives inside `call`; treat as a broken stream.
                    Err(_) => return Err(tonic::Status::cancelled("stream closed")),
                },
            };
            while self.carry.is_none() && self.queue.is_empty() {
                tokio::select! {
                    result = &mut call => return result,
                    () = self.queue.notified() => {}
                }
            }
            let batch = self.next_batch();
            if batch.envelopes.is_empty() {
                continue;
            }
            let count = batch.envelopes.len() as u64;
            permit.send(batch);
            self.stats.sent.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Takes envelopes off the queue until the batch reaches the batch size (an envelope
    /// that would overflow it waits in `carry` for the next batch).
    fn next_batch(&mut self) -> curppb::EnvelopeBatch {
        let max_batch = self.options.max_batch_bytes;
        let max_message = self.options.max_message_bytes;
        let mut envelopes = Vec::new();
        let mut bytes = 0usize;
        loop {
            let (wire, len) = match self.carry.take() {
                Some(carried) => carried,
                None => match self.queue.pop() {
                    Some(envelope) => {
                        let wire = curppb::Envelope::from(&envelope);
                        let len = wire.encoded_len();
                        (wire, len)
                    }
                    None => break,
                },
            };
            // Field tag (1 byte) + length prefix + body, as it appears inside the batch.
            let framed = 1 + prost::length_delimiter_len(len) + len;
            if framed > max_message {
                self.stats.oversize.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    peer = self.peer,
                    bytes = framed,
                    limit = max_message,
                    "grpc transport: envelope exceeds the message limit; dropped"
                );
                continue;
            }
            if !envelopes.is_empty() && bytes + framed > max_batch {
                self.carry = Some((wire, len));
                break;
            }
            bytes += framed;
            envelopes.push(wire);
        }
        curppb::EnvelopeBatch { envelopes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let initial = Duration::from_millis(10);
        let max = Duration::from_millis(100);
        let mut backoff = Backoff::new(initial, max, 3);
        let mut nominal = initial;
        for _ in 0..20 {
            let d = backoff.delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            nominal = (nominal * 2).min(max);
        }
        backoff.reset();
        assert!(backoff.delay() <= initial);

        // Same seed, same delays; jitter actually varies.
        let a: Vec<_> = {
            let mut b = Backoff::new(initial, max, 9);
            (0..10).map(|_| b.delay()).collect()
        };
        let b: Vec<_> = {
            let mut b = Backoff::new(initial, max, 9);
            (0..10).map(|_| b.delay()).collect()
        };
        assert_eq!(a, b);
        assert!(a[5..].windows(2).any(|w| w[0] != w[1]));
    }
}
