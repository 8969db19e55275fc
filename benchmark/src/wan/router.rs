//! The router: one reader thread stamps each packet with its release time and pushes it onto the
//! heap, one writer thread sleeps until the earliest release and writes packets back out. No
//! rate limit anywhere: throughput is bounded only by the two threads and the device.

use std::{
    io,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::{
    error::WanError,
    matrix::WanMatrix,
    packet::Verdict,
    queue::{DelayQueue, QueueFull},
};

/// Where packets come from (the TUN device, or a test double).
pub trait PacketSource: Send + 'static {
    /// Reads one packet into `buf`, returning its length; `Ok(0)` means the source is closed.
    ///
    /// # Errors
    /// Any I/O error but `Interrupted` stops the router.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Where delayed packets go.
pub trait PacketSink: Send + 'static {
    /// Writes one packet.
    ///
    /// # Errors
    /// Errors are counted in [`RouterStats::send_errors`] and the packet is lost.
    fn send(&mut self, pkt: &[u8]) -> io::Result<()>;
}

/// Tuning knobs.
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    /// The most packet bytes held at once; packets beyond it are dropped.
    pub max_queue_bytes: usize,
    /// Size of the read buffer (at least the device MTU).
    pub max_packet: usize,
    /// The most packets the writer takes from the heap per lock.
    pub batch: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_queue_bytes: 256 << 20,
            max_packet: 65_536,
            batch: 256,
        }
    }
}

/// Counters, updated as packets pass.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Packets read from the source.
    pub received: AtomicU64,
    /// Packets written to the sink.
    pub forwarded: AtomicU64,
    /// Bytes written to the sink.
    pub forwarded_bytes: AtomicU64,
    /// IPv4 packets with an end in no region (forwarded at once).
    pub unknown_region: AtomicU64,
    /// Packets dropped because they were not IPv4.
    pub dropped_not_ipv4: AtomicU64,
    /// Packets dropped because the heap was full.
    pub dropped_full: AtomicU64,
    /// Writes that failed.
    pub send_errors: AtomicU64,
}

impl RouterStats {
    /// A one-line summary.
    #[must_use]
    pub fn summary(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "received={} forwarded={} forwarded_bytes={} unknown_region={} dropped_not_ipv4={} \
             dropped_full={} send_errors={}",
            get(&self.received),
            get(&self.forwarded),
            get(&self.forwarded_bytes),
            get(&self.unknown_region),
            get(&self.dropped_not_ipv4),
            get(&self.dropped_full),
            get(&self.send_errors),
        )
    }
}

struct State {
    queue: DelayQueue,
    closed: bool,
    /// The writer is (about to be) asleep on `wake`; only then is a notification needed (a
    /// futex wake is a system call, too dear to pay per packet).
    writer_waiting: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    stats: Arc<RouterStats>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// A running router.
pub struct Router {
    stats: Arc<RouterStats>,
    reader: JoinHandle<Result<(), WanError>>,
    writer: JoinHandle<()>,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Router {
    /// Starts the reader and writer threads.
    ///
    /// # Errors
    /// If a thread cannot be spawned.
    pub fn start(
        matrix: WanMatrix,
        config: RouterConfig,
        source: impl PacketSource,
        sink: impl PacketSink,
    ) -> Result<Self, WanError> {
        let stats = Arc::new(RouterStats::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: DelayQueue::new(config.max_queue_bytes),
                closed: false,
                writer_waiting: false,
            }),
            wake: Condvar::new(),
            stats: Arc::clone(&stats),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("wan-writer".into())
                .spawn(move || write_loop(&shared, config, sink))
                .map_err(|e| WanError::io("spawning the writer thread", e))?
        };
        let reader = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("wan-reader".into())
                .spawn(move || {
                    let result = read_loop(&shared, &matrix, config, source);
                    shared.close();
                    result
                })
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                shared.close();
                let _ = writer.join();
                return Err(WanError::io("spawning the reader thread", e));
            }
        };
        Ok(Self {
            stats,
            reader,
            writer,
        })
    }

    /// The live counters.
    #[must_use]
    pub fn stats(&self) -> Arc<RouterStats> {
        Arc::clone(&self.stats)
    }

    /// Waits until the source closes and every held packet has been written.
    ///
    /// # Errors
    /// The reader's I/O error, if it stopped on one.
    pub fn join(self) -> Result<(), WanError> {
        let read = self
            .reader
            .join()
            .unwrap_or_else(|_| Err(WanError::Invalid("reader thread panicked".into())));
        let _ = self.writer.join();
        read
    }
}

fn read_loop(
    shared: &Shared,
    matrix: &WanMatrix,
    config: RouterConfig,
    mut source: impl PacketSource,
) -> Result<(), WanError> {
    let stats = &shared.stats;
    let mut buf = vec![0u8; config.max_packet];
    loop {
        let n = match source.recv(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(WanError::io("reading a packet", e)),
        };
        let arrived = Instant::now();
        bump(&stats.received, 1);
        let pkt = &buf[..n];
        let delay = match matrix.classify(pkt) {
            Verdict::Delay { delay, .. } => delay,
            Verdict::Unknown => {
                bump(&stats.unknown_region, 1);
                Duration::ZERO
            }
            Verdict::NotIpv4 => {
                bump(&stats.dropped_not_ipv4, 1);
                continue;
            }
        };
        let wake = {
            let mut state = shared.lock();
            match state.queue.push(arrived + delay, pkt.to_vec()) {
                Ok(is_head) => is_head && state.writer_waiting,
                Err(QueueFull) => {
                    bump(&stats.dropped_full, 1);
                    false
                }
            }
        };
        if wake {
            shared.wake.notify_one();
        }
    }
}

fn write_loop(shared: &Shared, config: RouterConfig, mut sink: impl PacketSink) {
    let stats = &shared.stats;
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(config.batch);
    loop {
        {
            let mut state = shared.lock();
            loop {
                let now = Instant::now();
                if state.queue.pop_due(now, config.batch, &mut batch) > 0 {
                    break;
                }
                state.writer_waiting = true;
                state = match state.queue.next_release() {
                    Some(at) => {
                        shared
                            .wake
                            .wait_timeout(state, at.saturating_duration_since(now))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None if state.closed => return,
                    None => shared
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                };
                state.writer_waiting = false;
            }
        }
        for pkt in batch.drain(..) {
            match sink.send(&pkt) {
                Ok(()) => {
                    bump(&stats.forwarded, 1);
                    bump(&stats.forwarded_bytes, pkt.len() as u64);
                }
                Err(_) => bump(&stats.send_errors, 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::Ipv4Addr,
        sync::mpsc::{Receiver, Sender, channel},
    };

    use super::*;
    use crate::wan::packet::ipv4_packet;

    struct ChanSource(Receiver<(Vec<u8>, Sender<Instant>)>);

    impl PacketSource for ChanSource {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.recv() {
                Ok((pkt, ack)) => {
                    buf[..pkt.len()].copy_from_slice(&pkt);
                    // Report when the router took it, the start of its delay.
                    let _ = ack.send(Instant::now());
                    Ok(pkt.len())
                }
                Err(_) => Ok(0),
            }
        }
    }

    struct ChanSink(Sender<(Instant, Vec<u8>)>);

    impl PacketSink for ChanSink {
        fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
            let _ = self.0.send((Instant::now(), pkt.to_vec()));
            Ok(())
        }
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// A packet tagged with (flow, sequence) in its payload.
    fn tagged(src: &str, dst: &str, flow: u8, seq: u32) -> Vec<u8> {
        let mut p = ipv4_packet(ip(src), ip(dst), 5);
        p[20] = flow;
        p[21..25].copy_from_slice(&seq.to_be_bytes());
        p
    }

    fn tag(p: &[u8]) -> (u8, u32) {
        (p[20], u32::from_be_bytes([p[21], p[22], p[23], p[24]]))
    }

    const MATRIX: &str = "region a 10.1.0.0/16\nregion b 10.2.0.0/16\nregion c 10.3.0.0/16\n\
                          delay a b 200ms\ndelay a c 30ms\ndelay b c 0\n";

    #[test]
    fn holds_each_packet_for_its_pair_delay_and_keeps_flows_in_order() {
        let matrix = WanMatrix::parse(MATRIX).unwrap();
        let (in_tx, in_rx) = channel();
        let (out_tx, out_rx) = channel();
        let router = Router::start(
            matrix,
            RouterConfig::default(),
            ChanSource(in_rx),
            ChanSink(out_tx),
        )
        .unwrap();
        let (ack_tx, ack_rx) = channel();
        let flows = [
            ("10.1.0.1", "10.2.0.1", 200u64), // a -> b
            ("10.3.0.1", "10.1.0.1", 30),     // c -> a
            ("10.2.0.1", "10.3.0.1", 0),      // b -> c
        ];
        let mut sent = Vec::new();
        for seq in 0..50u32 {
            for (flow, (src, dst, _)) in flows.iter().enumerate() {
                let flow = u8::try_from(flow).unwrap();
                in_tx
                    .send((tagged(src, dst, flow, seq), ack_tx.clone()))
                    .unwrap();
                sent.push((flow, seq));
            }
        }
        drop(in_tx);
        router.join().unwrap();
        let taken: Vec<Instant> = ack_rx.try_iter().collect();
        let out: Vec<(Instant, Vec<u8>)> = out_rx.try_iter().collect();
        assert_eq!(out.len(), sent.len(), "every packet comes out");

        let mut next_seq = [0u32; 3];
        for (left, pkt) in &out {
            let (flow, seq) = tag(pkt);
            assert_eq!(seq, next_seq[usize::from(flow)], "flow {flow} out of order");
            next_seq[usize::from(flow)] += 1;
            let idx = sent.iter().position(|&s| s == (flow, seq)).unwrap();
            let held = left.duration_since(taken[idx]);
            let want = Duration::from_millis(flows[usize::from(flow)].2);
            assert!(
                held >= want,
                "flow {flow} seq {seq} held {held:?} < {want:?}"
            );
        }
        // The 200 ms flow was sent first but, held longest, leaves last.
        assert_eq!(tag(&out.last().unwrap().1).0, 0);
        assert_eq!(tag(&out[0].1).0, 2);
    }

    #[test]
    fn drops_non_ipv4_passes_unknown_and_counts() {
        let matrix = WanMatrix::parse(MATRIX).unwrap();
        let (in_tx, in_rx) = channel();
        let (out_tx, out_rx) = channel();
        let router = Router::start(
            matrix,
            RouterConfig::default(),
            ChanSource(in_rx),
            ChanSink(out_tx),
        )
        .unwrap();
        let stats = router.stats();
        let (ack_tx, _ack_rx) = channel();
        let mut v6 = tagged("10.1.0.1", "10.2.0.1", 0, 0);
        v6[0] = 0x60;
        in_tx.send((v6, ack_tx.clone())).unwrap();
        in_tx
            .send((tagged("10.1.0.1", "192.0.2.9", 1, 0), ack_tx.clone()))
            .unwrap();
        in_tx
            .send((tagged("10.1.0.1", "10.3.0.1", 2, 0), ack_tx))
            .unwrap();
        drop(in_tx);
        router.join().unwrap();
        let out: Vec<(u8, u32)> = out_rx.try_iter().map(|(_, p)| tag(&p)).collect();
        assert_eq!(out, [(1, 0), (2, 0)]);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(get(&stats.received), 3);
        assert_eq!(get(&stats.forwarded), 2);
        assert_eq!(get(&stats.dropped_not_ipv4), 1);
        assert_eq!(get(&stats.unknown_region), 1);
        assert!(stats.summary().contains("forwarded=2 "));
    }

    #[test]
    fn a_full_heap_drops_instead_of_blocking() {
        let matrix = WanMatrix::parse(MATRIX).unwrap();
        let (in_tx, in_rx) = channel();
        let (out_tx, out_rx) = channel();
        let config = RouterConfig {
            max_queue_bytes: 10 * 25,
            ..RouterConfig::default()
        };
        let router = Router::start(matrix, config, ChanSource(in_rx), ChanSink(out_tx)).unwrap();
        let stats = router.stats();
        let (ack_tx, _ack_rx) = channel();
        // 20 packets of 25 bytes on the 200 ms pair, all queued well within 200 ms: 10 fit.
        for seq in 0..20 {
            in_tx
                .send((tagged("10.1.0.1", "10.2.0.1", 0, seq), ack_tx.clone()))
                .unwrap();
        }
        drop(in_tx);
        router.join().unwrap();
        let out: Vec<u32> = out_rx.try_iter().map(|(_, p)| tag(&p).1).collect();
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        assert_eq!(stats.dropped_full.load(Ordering::Relaxed), 10);
    }
}
