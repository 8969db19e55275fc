//! `lease grant|revoke|timetolive|list|keep-alive`.

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::Global;
use crate::cmd_kv::parse_lease_hex;
use crate::error::{CtlError, ExitCode};
use crate::printer::{Format, Out};

/// `lease` subcommands.
#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Creates leases
    Grant(ArgsOnly),
    /// Revokes leases
    Revoke(ArgsOnly),
    /// Get lease information
    Timetolive(TtlArgs),
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    KeepAlive(KeepAliveArgs),
}

/// Positional arguments only.
#[derive(Debug, Args)]
pub struct ArgsOnly {
    /// arguments
    pub args: Vec<String>,
}

/// `lease timetolive <leaseID> [options]`
#[derive(Debug, Args)]
pub struct TtlArgs {
    /// Get keys attached to this lease
    #[arg(long)]
    pub keys: bool,
    /// leaseID
    pub args: Vec<String>,
}

/// `lease keep-alive [options] <leaseID>`
#[derive(Debug, Args)]
pub struct KeepAliveArgs {
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long)]
    pub once: bool,
    /// leaseID
    pub args: Vec<String>,
}

fn lease_arg(s: &str) -> Result<i64, CtlError> {
    parse_lease_hex(s, "bad lease ID arg")
}

/// Runs a `lease` subcommand.
pub async fn run(g: &Global, c: LeaseCmd, out: &mut Out) -> Result<(), CtlError> {
    let p = g.printer()?;
    match c {
        LeaseCmd::Grant(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args("lease grant command needs TTL argument"));
            }
            let ttl: i64 = a.args[0].parse().map_err(|_| {
                CtlError::args(format!(
                    "bad TTL (strconv.ParseInt: parsing {}: invalid syntax)",
                    crate::gofmt::quote(a.args[0].as_bytes())
                ))
            })?;
            let rpc = g.connect().await?;
            let resp = rpc
                .lease_grant(ttl)
                .await
                .map_err(|e| e.wrap("failed to grant lease"))?;
            p.grant(out, &resp)
        }
        LeaseCmd::Revoke(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args("lease revoke command needs 1 argument"));
            }
            let id = lease_arg(&a.args[0])?;
            let rpc = g.connect().await?;
            let resp = rpc
                .lease_revoke(id)
                .await
                .map_err(|e| e.wrap("failed to revoke lease"))?;
            p.revoke(out, id, &resp)
        }
        LeaseCmd::Timetolive(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "lease timetolive command needs lease ID as argument",
                ));
            }
            let id = lease_arg(&a.args[0])?;
            let rpc = g.connect().await?;
            let resp = rpc
                .lease_ttl(id, a.keys)
                .await
                .map_err(|e| e.with_code(ExitCode::BadConnection))?;
            p.time_to_live(out, &resp, a.keys)
        }
        LeaseCmd::List => {
            let rpc = g.connect().await?;
            let resp = rpc
                .lease_leases()
                .await
                .map_err(|e| e.with_code(ExitCode::BadConnection))?;
            p.leases(out, &resp)
        }
        LeaseCmd::KeepAlive(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "lease keep-alive command needs lease ID as argument",
                ));
            }
            let id = lease_arg(&a.args[0])?;
            let rpc = g.connect().await?;
            if a.once {
                let mut stream = rpc
                    .lease_keep_alive(id, None)
                    .await
                    .map_err(|e| e.with_code(ExitCode::BadConnection))?;
                let resp = stream
                    .message()
                    .await
                    .map_err(|e| CtlError::from(e).with_code(ExitCode::BadConnection))?
                    .ok_or_else(|| {
                        CtlError::new(ExitCode::BadConnection, "keep-alive stream closed")
                    })?;
                if resp.ttl <= 0 {
                    return Err(CtlError::new(
                        ExitCode::BadConnection,
                        "etcdserver: requested lease not found",
                    ));
                }
                return p.keep_alive(out, &resp);
            }
            // The first renewal goes out at once; then every third of the TTL, as clientv3 does.
            let mut stream = rpc
                .lease_keep_alive(id, Some(Duration::from_secs(1)))
                .await
                .map_err(|e| e.with_code(ExitCode::BadConnection))?;
            let mut last_print = None::<tokio::time::Instant>;
            while let Ok(Some(resp)) = stream.message().await {
                if resp.ttl <= 0 {
                    break;
                }
                // clientv3 renews every TTL/3; print at that pace.
                let every = Duration::from_secs((resp.ttl as u64 / 3).max(1));
                if last_print.is_none_or(|t| t.elapsed() >= every) {
                    p.keep_alive(out, &resp)?;
                    out.flush();
                    last_print = Some(tokio::time::Instant::now());
                }
            }
            if p.format == Format::Simple {
                out.line(format!("lease {id:016x} expired or revoked."));
            }
            Ok(())
        }
    }
}
