//! Compiles curp's own wire protocol (`proto/curp.proto`, package `curppb`) with a pure-Rust
//! compiler (protox), so building this crate needs no system `protoc`.

use std::path::PathBuf;

const FILES: &[&str] = &["curp.proto", "client.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(FILES, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Large opaque payloads decode as zero-copy `Bytes`.
        .bytes(".curppb.CommandData.payload")
        // Keys are shared with the core's `KeyRange`: encoding a command copies no key.
        .bytes(".curppb.KeyRange")
        .bytes(".curppb.Snapshot.data")
        .compile_fds(fds)?;
    Ok(())
}
