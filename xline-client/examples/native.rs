//! The native CURP fast path: plain puts complete in one round trip (their revision is not final
//! yet), a txn and an ordered put carry their final revision, and the etcd API sees every write.
//! Run against an xline cluster (not etcd):
//! `cargo run -p xline-client --example native -- 127.0.0.1:2379`
//! (the client URL; the members' peer URLs are taken from the member list).

#![allow(clippy::print_stdout)]

use xline_client::native::{NativeClient, NativeOptions};
use xline_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};

#[tokio::main]
async fn main() -> xline_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".to_owned());
    let client = Client::connect([endpoint], ConnectOptions::new()).await?;
    let native = NativeClient::from_client(&client, NativeOptions::new()).await?;

    for i in 0..5 {
        let resp = native
            .put(format!("native-example/{i}"), i.to_string(), None)
            .await?;
        if resp.revision_final {
            println!("put {i}: ordered, revision {}", resp.revision());
        } else {
            println!("put {i}: fast path (revision assigned by the order)");
        }
    }

    let txn = Txn::new()
        .when([Compare::value("native-example/0", CompareOp::Equal, "0")])
        .and_then([TxnOp::put("native-example/0", "zero", None)]);
    let resp = native.txn(txn).await?;
    println!(
        "txn succeeded: {}, final revision {}",
        resp.response.succeeded,
        resp.revision()
    );

    let ordered = native
        .ordered()
        .put("native-example/last", "x", None)
        .await?;
    println!("ordered put: final revision {}", ordered.revision());

    let all = client
        .kv()
        .get("native-example/", Some(GetOptions::new().with_prefix()))
        .await?;
    for kv in &all.kvs {
        println!(
            "{} = {} (mod revision {})",
            String::from_utf8_lossy(&kv.key),
            String::from_utf8_lossy(&kv.value),
            kv.mod_revision
        );
    }
    println!("{:?}", native.stats());
    Ok(())
}
