//! `lease grant|revoke|timetolive|list|keep-alive`.

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
                let resp = rpc
                    .lease_keep_alive_once(id)
                    .await
                    .map_err(|e| e.with_code(ExitCode::BadConnection))?;
                if resp.ttl <= 0 {
                    return Err(CtlError::new(
                        ExitCode::BadConnection,
                        "etcdserver: requested lease not found",
                    ));
                }
                return p.keep_alive(out, &resp);
            }
            // The first renewal goes out at once, then one every third of the TTL (as clientv3
            // does), over a stream the library re-opens elsewhere if its member fails; every
            // answer is printed. The answers end when the lease is gone.
            let (_keeper, mut answers) = rpc.lease_keep_alive(id);
            while let Some(resp) = answers.recv().await {
                p.keep_alive(out, &resp)?;
                out.flush();
            }
            if p.format == Format::Simple {
                out.line(format!("lease {id:016x} expired or revoked."));
            }
            Ok(())
        }
    }
}
