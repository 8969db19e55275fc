//! Locks and elections through a session (a lease kept alive in the background).
//! Run: `cargo run -p xline-client --example lock_election -- 127.0.0.1:2379`.

#![allow(clippy::print_stdout)]

use xline_client::{Client, ConnectOptions, Session};

#[tokio::main]
async fn main() -> xline_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".to_owned());
    let client = Client::connect([endpoint], ConnectOptions::new()).await?;
    let session = Session::new(&client, 10).await?;

    let lock = session.lock("example/lock").await?;
    println!("holding lock {}", String::from_utf8_lossy(lock.key()));
    lock.unlock().await?;

    let leader = session.campaign("example/election", "candidate-1").await?;
    let current = client.election().leader("example/election").await?;
    println!(
        "leader value: {:?}",
        current
            .kv
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    );
    client.election().resign(leader).await?;

    session.close().await?;
    Ok(())
}
