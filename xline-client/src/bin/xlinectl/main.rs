//! `xlinectl`: etcdctl v3's verbs, flags and output formats, for Xline and any etcd v3 server.
//!
//! The command line, the printed output (in every `-w` format) and the exit codes follow
//! Debian's etcdctl 3.4 byte for byte; `scripts/xlinectl-golden.sh` diffs the two.

mod cli;
mod cmd_cluster;
mod cmd_kv;
mod cmd_lease;
mod cmd_misc;
mod cmd_watch;
mod error;
mod gofmt;
mod json;
mod mirror;
mod printer;
mod rpc;

use std::io::Write;

use clap::Parser;

use crate::error::CtlError;
use crate::printer::Out;

/// Writes what a command printed and exits with its code.
fn finish(mut out: Out, result: Result<(), CtlError>) -> ! {
    out.flush();
    let mut stderr = std::io::stderr().lock();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            if !e.msg.is_empty() {
                let _ = writeln!(stderr, "Error: {}", e.msg);
            }
            std::process::exit(e.code as i32)
        }
    }
}

fn main() {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => finish(
            Out::default(),
            Err(CtlError::new(error::ExitCode::Error, e.to_string())),
        ),
    };
    let mut out = Out::default();
    let result = rt.block_on(cli::run(cli, &mut out));
    finish(out, result)
}
