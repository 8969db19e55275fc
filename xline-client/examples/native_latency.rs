//! Sequential put latency through the etcd API, the native fast path and the native ordered
//! path (medians and 99th percentiles), plus how many native puts completed on the fast path.
//! Run against an xline cluster (not etcd):
//! `cargo run --release -p xline-client --example native_latency -- 127.0.0.1:2379 [puts]`

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use xline_client::native::{NativeClient, NativeOptions};
use xline_client::{Client, ConnectOptions};

/// Median and 99th percentile of `samples`.
fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    (at(0.5), at(0.99))
}

#[tokio::main]
async fn main() -> xline_client::Result<()> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "127.0.0.1:2379".to_owned());
    let puts: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(500);
    let client = Client::connect([endpoint], ConnectOptions::new()).await?;
    let native = NativeClient::from_client(&client, NativeOptions::new()).await?;
    let ordered = native.ordered();

    let mut etcd_api = Vec::with_capacity(puts);
    let mut fast = Vec::with_capacity(puts);
    let mut slow = Vec::with_capacity(puts);
    let mut speculative = 0;
    for i in 0..puts {
        let start = Instant::now();
        client
            .kv()
            .put(format!("latency/etcd/{i}"), "v", None)
            .await?;
        etcd_api.push(start.elapsed());
        let start = Instant::now();
        let resp = native.put(format!("latency/fast/{i}"), "v", None).await?;
        fast.push(start.elapsed());
        if !resp.revision_final {
            speculative += 1;
        }
        let start = Instant::now();
        ordered
            .put(format!("latency/ordered/{i}"), "v", None)
            .await?;
        slow.push(start.elapsed());
    }
    for (name, samples) in [
        ("etcd API put", etcd_api),
        ("native put (fast path)", fast),
        ("native put (ordered)", slow),
    ] {
        let (p50, p99) = summary(samples);
        println!("{name:24} p50 {p50:>10.2?}  p99 {p99:>10.2?}");
    }
    println!("{speculative}/{puts} native puts completed on the fast path");
    Ok(())
}
