//! KV basics: put, get with options, a compare-and-swap transaction, delete.
//! Run against a server: `cargo run -p xline-client --example kv -- 127.0.0.1:2379`.

#![allow(clippy::print_stdout)]

use xline_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
};

#[tokio::main]
async fn main() -> xline_client::Result<()> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2379".to_owned());
    let client = Client::connect([endpoint], ConnectOptions::new()).await?;
    let kv = client.kv();

    kv.put("example/a", "1", None).await?;
    let prev = kv
        .put("example/a", "2", Some(PutOptions::new().with_prev_kv()))
        .await?;
    println!(
        "previous value: {:?}",
        prev.prev_kv
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    );

    let all = kv
        .get("example/", Some(GetOptions::new().with_prefix()))
        .await?;
    for item in &all.kvs {
        println!(
            "{} = {}",
            String::from_utf8_lossy(&item.key),
            String::from_utf8_lossy(&item.value)
        );
    }

    let cas = Txn::new()
        .when([Compare::value("example/a", CompareOp::Equal, "2")])
        .and_then([TxnOp::put("example/a", "3", None)])
        .or_else([TxnOp::get("example/a", None)]);
    println!(
        "compare-and-swap succeeded: {}",
        kv.txn(cas).await?.succeeded
    );

    let deleted = kv
        .delete("example/", Some(DeleteOptions::new().with_prefix()))
        .await?;
    println!("deleted {} keys", deleted.deleted);
    Ok(())
}
