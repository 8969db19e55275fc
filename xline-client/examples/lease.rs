//! Leases: grant, attach a key, keep alive in the background, then let it expire.
//! Run: `cargo run -p xline-client --example lease -- 127.0.0.1:2379`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use xline_client::{Client, ConnectOptions, PutOptions};

#[tokio::main]
async fn main() -> xline_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".to_owned());
    let client = Client::connect([endpoint], ConnectOptions::new()).await?;
    let lease = client.lease().grant(3, None).await?;
    println!("granted lease {:x} with TTL {}", lease.id, lease.ttl);
    client
        .kv()
        .put(
            "example/ephemeral",
            "here",
            Some(PutOptions::new().with_lease(lease.id)),
        )
        .await?;

    let keeper = client.lease().keep_alive_task(lease.id);
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "after 5 s the key is still there: {}",
        client.kv().get("example/ephemeral", None).await?.count == 1
    );
    keeper.stop().await;

    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "after stopping the keeper it expired: {}",
        client.kv().get("example/ephemeral", None).await?.count == 0
    );
    Ok(())
}
