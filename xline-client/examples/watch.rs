//! Watch a prefix while writing to it; the watch would resume on another member if the one it
//! uses failed. Run: `cargo run -p xline-client --example watch -- 127.0.0.1:2379`.

#![allow(clippy::print_stdout)]

use xline_client::{Client, ConnectOptions, WatchOptions};

#[tokio::main]
async fn main() -> xline_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".to_owned());
    let client = Client::connect([endpoint], ConnectOptions::new()).await?;
    let (watcher, mut stream) = client
        .watch()
        .watch(
            "example/watch/",
            Some(WatchOptions::new().with_prefix().with_prev_kv()),
        )
        .await?;
    println!(
        "watch {} created at revision {}",
        watcher.watch_id(),
        watcher.created_revision()
    );

    let kv = client.kv();
    for i in 0..3 {
        kv.put(format!("example/watch/{i}"), i.to_string(), None)
            .await?;
    }
    let mut seen = 0;
    while let Some(resp) = stream.message().await? {
        for event in &resp.events {
            let item = event.kv.as_ref().map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                )
            });
            println!("{:?} {:?}", event.r#type(), item);
            seen += 1;
        }
        if seen >= 3 {
            watcher.cancel()?;
        }
        if resp.canceled {
            break;
        }
    }
    Ok(())
}
