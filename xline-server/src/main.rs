//! `xline`: an etcd-v3-compatible key-value server. Accepts etcd's flags; with none, serves one
//! member on localhost:2379 with its data in `./default.xline`. `xline snapshot restore FILE
//! ...` builds a data directory from a snapshot instead (see `xline_server::restore`).

#![allow(
    clippy::print_stderr,
    reason = "errors before logging is set up go to stderr"
)]

use clap::Parser;
use xline_server::config::{ServerConfig, preprocess_args};
use xline_server::server;

/// jemalloc instead of glibc's malloc: the request path allocates and frees many buffers across
/// threads (gRPC frames, protobuf messages, log batches). With etcd's benchmark tool (3 members,
/// 100 clients, puts) glibc cost ~13% more server CPU per put; mimalloc was as cheap as jemalloc
/// preloaded, but linked in it returned freed pages to the system so eagerly that zeroing
/// refaulted pages took ~12% of the server's CPU (5% more per put than jemalloc).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("snapshot") {
        // `xline snapshot restore FILE ...`, etcdctl's restore for xline's snapshots.
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        return xline_server::restore::main(args);
    }
    let (args, ignored) = preprocess_args(args);
    let config = ServerConfig::parse_from(args);
    if let Err(e) =
        xline_server::logging::init(&config.log_level, &config.log_format, &config.log_outputs)
    {
        eprintln!("xline: {e}");
        return std::process::ExitCode::FAILURE;
    }
    for flag in ignored {
        tracing::warn!(flag = %flag, "etcd flag accepted but ignored by xline");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("xline")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(config, server::shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "xline stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
