//! `snapshot`, `lock`, `elect`, `auth`, `user`, `role`, `check perf`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{ArgAction, Args, Subcommand};
use tokio::io::AsyncWriteExt;
use xline_proto::authpb::Permission;
use xline_proto::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    PutRequest, RangeRequest,
};
use xline_proto::v3electionpb::CampaignRequest;

use crate::cli::Global;
use crate::error::{CtlError, ExitCode};
use crate::gofmt;
use crate::printer::{Format, Out, Printer, prefix_range_end};
use crate::rpc::Rpc;

/// `snapshot` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Stores an etcd node backend snapshot to a given file
    Save(FileArgs),
    /// Gets backend snapshot status of a given file
    Status(FileArgs),
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
}

/// A file argument.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// filename
    pub args: Vec<String>,
}

/// `snapshot restore <filename> [options]`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Path to the data directory
    #[arg(long = "data-dir", default_value = "")]
    pub data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long = "wal-dir", default_value = "")]
    pub wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(
        long = "initial-cluster",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(
        long = "initial-advertise-peer-urls",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check")]
    pub skip_hash_check: bool,
    /// filename
    pub args: Vec<String>,
}

/// Runs a `snapshot` subcommand.
pub async fn snapshot(g: &Global, c: SnapshotCmd, out: &mut Out) -> Result<(), CtlError> {
    match c {
        SnapshotCmd::Save(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args("snapshot save expects one argument"));
            }
            if g.endpoints.len() != 1 {
                return Err(CtlError::args(format!(
                    "snapshot must be requested to one selected node, not multiple {:?}",
                    g.endpoints
                )));
            }
            let path = &a.args[0];
            let part = format!("{path}.part");
            let io = |e: std::io::Error| CtlError::new(ExitCode::Error, e.to_string());
            let rpc = g.connect().await?;
            let mut stream = rpc.snapshot().await?;
            // etcdctl writes the snapshot readable by its owner only.
            let mut f = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&part)
                .await
                .map_err(io)?;
            let mut size = 0usize;
            while let Some(chunk) = stream.message().await? {
                size += chunk.blob.len();
                f.write_all(&chunk.blob).await.map_err(io)?;
            }
            f.sync_all().await.map_err(io)?;
            if size < 512 || !(size - 32).is_multiple_of(512) {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(CtlError::new(
                    ExitCode::Error,
                    format!("sha256 checksum not found [bytes: {size}]"),
                ));
            }
            tokio::fs::rename(&part, path).await.map_err(io)?;
            out.line(format!("Snapshot saved at {path}"));
            Ok(())
        }
        SnapshotCmd::Status(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "snapshot status requires exactly one argument",
                ));
            }
            let printer = g.printer()?;
            let path = a.args[0].clone();
            let status = tokio::task::spawn_blocking(move || xline_bolt::status(path))
                .await
                .map_err(|e| CtlError::new(ExitCode::Error, e.to_string()))?
                .map_err(|e| CtlError::new(ExitCode::Error, e.to_string()))?;
            snapshot_status(printer.format, &status, out)
        }
        SnapshotCmd::Restore(a) => snapshot_restore(&a).await,
    }
}

/// Prints a snapshot's status as etcdctl 3.4's printers do.
fn snapshot_status(format: Format, s: &xline_bolt::Status, out: &mut Out) -> Result<(), CtlError> {
    let row = vec![
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_key.to_string(),
        gofmt::humanize_bytes(s.total_size),
    ];
    match format {
        Format::Simple => out.line(row.join(", ")),
        Format::Table => out.text(gofmt::table(
            &["hash", "revision", "total keys", "total size"],
            &[row],
        )),
        Format::Json => out.line(format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            s.hash, s.revision, s.total_key, s.total_size
        )),
        Format::Fields => {
            out.line(format!("\"Hash\" : {}", s.hash));
            out.line(format!("\"Revision\" : {}", s.revision));
            out.line(format!("\"Keys\" : {}", s.total_key));
            out.line(format!("\"Size\" : {}", s.total_size));
        }
        Format::Protobuf => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                "protobuf not supported as output format",
            ));
        }
    }
    Ok(())
}

/// The `xline` binary: next to this executable, else the first one on `PATH`.
fn xline_binary() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("xline")));
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("xline"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

/// `snapshot restore`: xline restores snapshots with its own binary (`xline snapshot
/// restore`, the member stopped), run here with the same flags; its output and exit status
/// pass through.
async fn snapshot_restore(a: &RestoreArgs) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::args(
            "snapshot restore requires exactly one argument",
        ));
    }
    if !a.wal_dir.is_empty() {
        return Err(CtlError::new(
            ExitCode::BadFeature,
            "--wal-dir is not supported: xline keeps its log inside --data-dir",
        ));
    }
    let mut args = vec![
        "snapshot".to_owned(),
        "restore".to_owned(),
        a.args[0].clone(),
        format!("--name={}", a.name),
        format!("--initial-cluster={}", a.initial_cluster),
        format!("--initial-cluster-token={}", a.initial_cluster_token),
        format!(
            "--initial-advertise-peer-urls={}",
            a.initial_advertise_peer_urls
        ),
    ];
    if !a.data_dir.is_empty() {
        args.push(format!("--data-dir={}", a.data_dir));
    }
    if a.skip_hash_check {
        args.push("--skip-hash-check".to_owned());
    }
    let Some(xline) = xline_binary() else {
        return Err(CtlError::new(
            ExitCode::Error,
            format!(
                "the xline binary was not found next to xlinectl or on PATH; xline restores snapshots itself, run: xline {}",
                args.join(" ")
            ),
        ));
    };
    let status = tokio::process::Command::new(&xline)
        .args(&args)
        .status()
        .await
        .map_err(|e| CtlError::new(ExitCode::Error, format!("{}: {e}", xline.display())))?;
    if status.success() {
        Ok(())
    } else {
        // xline printed why.
        Err(CtlError::new(ExitCode::Error, "").silent())
    }
}

/// `lock <lockname> [exec-command arg1 arg2 ...]`
#[derive(Debug, Args)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value_t = 10)]
    pub ttl: i64,
    /// lockname [command ...]
    #[arg(trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// A lease kept alive in the background (etcd's concurrency session).
struct Session {
    id: i64,
    /// The keep-alive task (failing over with the library); it ends when the lease is lost.
    keeper: xline_client::KeepAliveHandle,
}

async fn session(rpc: &Rpc, ttl: i64) -> Result<Session, CtlError> {
    let id = rpc.lease_grant(ttl).await?.id;
    let keeper = rpc.lease_keep_alive_task(id);
    Ok(Session { id, keeper })
}

async fn wait_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `lock`.
pub async fn lock(g: &Global, a: LockArgs, out: &mut Out) -> Result<(), CtlError> {
    if a.args.is_empty() {
        return Err(CtlError::args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    }
    let p = g.printer()?;
    let rpc = g.connect().await?;
    let s = session(&rpc, a.ttl).await?;
    let key = tokio::select! {
        r = rpc.lock(a.args[0].clone().into_bytes(), s.id) => r?.key,
        () = wait_signal() => { let _ = rpc.lease_revoke(s.id).await; return Ok(()); }
    };
    if a.args.len() > 1 {
        let rev = rpc
            .range(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        let mod_rev = rev.kvs.first().map_or(0, |kv| kv.mod_revision);
        out.flush();
        let status = tokio::process::Command::new(&a.args[1])
            .args(&a.args[2..])
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).into_owned())
            .env("ETCD_LOCK_REV", mod_rev.to_string())
            .status()
            .await;
        let unlock = rpc.unlock(key).await;
        let _ = rpc.lease_revoke(s.id).await;
        match status {
            Ok(st) if st.success() => {}
            Ok(st) => {
                return Err(CtlError::new(
                    ExitCode::Error,
                    format!("exit status {}", st.code().unwrap_or(-1)),
                ));
            }
            Err(e) => return Err(CtlError::new(ExitCode::Error, e.to_string())),
        }
        unlock?;
        return Ok(());
    }
    let k = rpc
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await?;
    if k.kvs.is_empty() {
        return Err(CtlError::new(ExitCode::Error, "lock lost on init"));
    }
    p.get(out, &k)?;
    out.flush();
    tokio::select! {
        () = wait_signal() => {
            rpc.unlock(key).await?;
            let _ = rpc.lease_revoke(s.id).await;
            Ok(())
        }
        _ = s.keeper.wait() => Err(CtlError::new(ExitCode::Error, "session expired")),
    }
}

/// `elect <election-name> [proposal]`
#[derive(Debug, Args)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short, long)]
    pub listen: bool,
    /// election-name [proposal]
    pub args: Vec<String>,
}

/// `elect`.
pub async fn elect(g: &Global, a: ElectArgs, out: &mut Out) -> Result<(), CtlError> {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::args(
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    let p = g.printer()?;
    let rpc = g.connect().await?;
    let name = a.args[0].clone().into_bytes();
    if a.listen {
        let mut stream = rpc.observe(name);
        loop {
            tokio::select! {
                m = stream.message() => match m? {
                    Some(r) => {
                        let resp = xline_proto::etcdserverpb::RangeResponse { header: r.header, kvs: r.kv.into_iter().collect(), ..Default::default() };
                        p.get(out, &resp)?;
                        out.flush();
                    }
                    None => return Err(CtlError::new(ExitCode::Error, "observing failed")),
                },
                () = wait_signal() => return Ok(()),
            }
        }
    }
    let Some(proposal) = a.args.get(1) else {
        return Err(CtlError::args("no proposal argument but -l not set"));
    };
    let s = session(&rpc, 60).await?;
    let req = CampaignRequest {
        name,
        lease: s.id,
        value: proposal.clone().into_bytes(),
    };
    let leader = tokio::select! {
        r = rpc.campaign(req) => r?.leader.unwrap_or_default(),
        () = wait_signal() => { let _ = rpc.lease_revoke(s.id).await; return Ok(()); }
    };
    let k = rpc
        .range(RangeRequest {
            key: leader.key.clone(),
            ..Default::default()
        })
        .await?;
    p.get(out, &k)?;
    out.flush();
    tokio::select! {
        () = wait_signal() => {
            rpc.resign(leader).await?;
            let _ = rpc.lease_revoke(s.id).await;
            Ok(())
        }
        _ = s.keeper.wait() => Err(CtlError::new(ExitCode::Error, "elect: session expired")),
    }
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Enables authentication
    Enable,
    /// Disables authentication
    Disable,
    /// Returns authentication status
    Status,
}

/// Runs an `auth` subcommand.
pub async fn auth(g: &Global, c: AuthCmd, out: &mut Out) -> Result<(), CtlError> {
    let rpc = g.connect().await?;
    match c {
        AuthCmd::Enable => {
            loop {
                match rpc.auth_enable().await {
                    Ok(_) => break,
                    Err(e) if e.msg == "etcdserver: root user does not have root role" => {
                        if let Err(e) = rpc.role_add("root".into()).await
                            && e.msg != "etcdserver: role name already exists"
                        {
                            return Err(e);
                        }
                        rpc.user_grant_role("root".into(), "root".into()).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            out.line("Authentication Enabled");
        }
        AuthCmd::Disable => {
            rpc.auth_disable().await?;
            out.line("Authentication Disabled");
        }
        AuthCmd::Status => {
            let r = rpc.auth_status().await?;
            out.line(format!("Authentication Status: {}", r.enabled));
            out.line(format!("AuthRevision: {}", r.auth_revision));
        }
    }
    Ok(())
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Adds a new user
    Add(UserAddArgs),
    /// Deletes a user
    Delete(FileArgs),
    /// Gets detailed information of a user
    Get(FileArgs),
    /// Lists all users
    List,
    /// Changes password of user
    Passwd(PasswdArgs),
    /// Grants a role to a user
    GrantRole(FileArgs),
    /// Revokes a role from a user
    RevokeRole(FileArgs),
}

/// `user add <user name or user:password> [options]`
#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// Read password from stdin instead of interactive terminal
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub interactive: bool,
    /// Supply password from the command line flag
    #[arg(long = "new-user-password", default_value = "")]
    pub new_user_password: String,
    /// Create a user without password (CN based auth only)
    #[arg(long = "no-password")]
    pub no_password: bool,
    /// user
    pub args: Vec<String>,
}

/// `user passwd <user name> [options]`
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// If true, read password from stdin instead of interactive terminal
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub interactive: bool,
    /// user
    pub args: Vec<String>,
}

/// Reads a password: one word from stdin (`--interactive=false`) or a line (the terminal prompt).
fn read_password() -> Result<String, CtlError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CtlError::args(format!("failed to ask password: {e}")))?;
    Ok(line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Runs a `user` subcommand.
pub async fn user(g: &Global, c: UserCmd, out: &mut Out) -> Result<(), CtlError> {
    let p = g.printer()?;
    match c {
        UserCmd::Add(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "user add command requires user name as its argument",
                ));
            }
            let (name, password) = if a.no_password {
                (a.args[0].clone(), String::new())
            } else if !a.new_user_password.is_empty() {
                (a.args[0].clone(), a.new_user_password.clone())
            } else if let Some((u, pw)) = a.args[0].split_once(':') {
                if u.is_empty() {
                    return Err(CtlError::args("empty user name is not allowed"));
                }
                (u.to_owned(), pw.to_owned())
            } else {
                (a.args[0].clone(), read_password()?)
            };
            let req = AuthUserAddRequest {
                name: name.clone(),
                password,
                options: Some(xline_proto::authpb::UserAddOptions {
                    no_password: a.no_password,
                }),
                hashed_password: String::new(),
            };
            let r = g.connect().await?.user_add(req).await?;
            p.header_only(out, &format!("User {name} created"), r.header.as_ref(), &r)
        }
        UserCmd::Delete(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "user delete command requires user name as its argument",
                ));
            }
            let r = g.connect().await?.user_delete(a.args[0].clone()).await?;
            p.header_only(
                out,
                &format!("User {} deleted", a.args[0]),
                r.header.as_ref(),
                &r,
            )
        }
        UserCmd::Get(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "user get command requires user name as its argument",
                ));
            }
            let r = g.connect().await?.user_get(a.args[0].clone()).await?;
            p.user_get(out, &a.args[0], &r)
        }
        UserCmd::List => {
            let r = g.connect().await?.user_list().await?;
            p.user_list(out, &r)
        }
        UserCmd::Passwd(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "user passwd command requires user name as its argument",
                ));
            }
            let password = read_password()?;
            let r = g
                .connect()
                .await?
                .user_passwd(a.args[0].clone(), password)
                .await?;
            p.header_only(out, "Password updated", r.header.as_ref(), &r)
        }
        UserCmd::GrantRole(a) => {
            if a.args.len() != 2 {
                return Err(CtlError::args(
                    "user grant command requires user name and role name as its argument",
                ));
            }
            let r = g
                .connect()
                .await?
                .user_grant_role(a.args[0].clone(), a.args[1].clone())
                .await?;
            p.header_only(
                out,
                &format!("Role {} is granted to user {}", a.args[1], a.args[0]),
                r.header.as_ref(),
                &r,
            )
        }
        UserCmd::RevokeRole(a) => {
            if a.args.len() != 2 {
                return Err(CtlError::args(
                    "user revoke-role requires user name and role name as its argument",
                ));
            }
            let r = g
                .connect()
                .await?
                .user_revoke_role(a.args[0].clone(), a.args[1].clone())
                .await?;
            p.header_only(
                out,
                &format!("Role {} is revoked from user {}", a.args[1], a.args[0]),
                r.header.as_ref(),
                &r,
            )
        }
    }
}

/// `role` subcommands.
#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    /// Adds a new role
    Add(FileArgs),
    /// Deletes a role
    Delete(FileArgs),
    /// Gets detailed information of a role
    Get(FileArgs),
    /// Lists all roles
    List,
    /// Grants a key to a role
    GrantPermission(PermArgs),
    /// Revokes a key from a role
    RevokePermission(PermArgs),
}

/// `role grant-permission|revoke-permission` flags.
#[derive(Debug, Args)]
pub struct PermArgs {
    /// a prefix permission
    #[arg(long)]
    pub prefix: bool,
    /// a permission of keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    pub from_key: bool,
    /// arguments
    pub args: Vec<String>,
}

/// etcdctl's `permRange`: the key and range end of a permission.
pub fn perm_range(a: &PermArgs, args: &[String]) -> Result<(Vec<u8>, Vec<u8>), CtlError> {
    let key = args[0].clone().into_bytes();
    if key.is_empty() {
        if a.prefix && a.from_key {
            return Err(CtlError::args(
                "--from-key and --prefix flags are mutually exclusive",
            ));
        }
        let end = if a.prefix || a.from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    if args.len() == 1 {
        return match (a.prefix, a.from_key) {
            (true, true) => Err(CtlError::args(
                "--from-key and --prefix flags are mutually exclusive",
            )),
            (true, false) => Ok((key.clone(), prefix_range_end(&key))),
            (false, true) => Ok((key, vec![0])),
            (false, false) => Ok((key, Vec::new())),
        };
    }
    if a.prefix {
        return Err(CtlError::args(
            "unexpected endkey argument with --prefix flag",
        ));
    }
    if a.from_key {
        return Err(CtlError::args(
            "unexpected endkey argument with --from-key flag",
        ));
    }
    Ok((key, args[1].clone().into_bytes()))
}

/// Runs a `role` subcommand.
pub async fn role(g: &Global, c: RoleCmd, out: &mut Out) -> Result<(), CtlError> {
    let p: Printer = g.printer()?;
    match c {
        RoleCmd::Add(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "role add command requires role name as its argument",
                ));
            }
            let r = g.connect().await?.role_add(a.args[0].clone()).await?;
            p.header_only(
                out,
                &format!("Role {} created", a.args[0]),
                r.header.as_ref(),
                &r,
            )
        }
        RoleCmd::Delete(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "role delete command requires role name as its argument",
                ));
            }
            let r = g.connect().await?.role_delete(a.args[0].clone()).await?;
            p.header_only(
                out,
                &format!("Role {} deleted", a.args[0]),
                r.header.as_ref(),
                &r,
            )
        }
        RoleCmd::Get(a) => {
            if a.args.len() != 1 {
                return Err(CtlError::args(
                    "role get command requires role name as its argument",
                ));
            }
            let r = g.connect().await?.role_get(a.args[0].clone()).await?;
            p.role_get(out, &a.args[0], &r)
        }
        RoleCmd::List => {
            let r = g.connect().await?.role_list().await?;
            p.role_list(out, &r)
        }
        RoleCmd::GrantPermission(a) => {
            if a.args.len() < 3 {
                return Err(CtlError::args(
                    "role grant command requires role name, permission type, and key [endkey] as its argument",
                ));
            }
            let perm_type = match a.args[1].to_uppercase().as_str() {
                "READ" => 0,
                "WRITE" => 1,
                "READWRITE" => 2,
                _ => {
                    return Err(CtlError::args(format!(
                        "invalid permission type: {}",
                        a.args[1]
                    )));
                }
            };
            let (key, range_end) = perm_range(&a, &a.args[2..])?;
            let req = AuthRoleGrantPermissionRequest {
                name: a.args[0].clone(),
                perm: Some(Permission {
                    perm_type,
                    key,
                    range_end,
                }),
            };
            let r = g.connect().await?.role_grant(req).await?;
            p.header_only(
                out,
                &format!("Role {} updated", a.args[0]),
                r.header.as_ref(),
                &r,
            )
        }
        RoleCmd::RevokePermission(a) => {
            if a.args.len() < 2 {
                return Err(CtlError::args(
                    "role revoke-permission command requires role name and key [endkey] as its argument",
                ));
            }
            let (key, range_end) = perm_range(&a, &a.args[1..])?;
            let req = AuthRoleRevokePermissionRequest {
                role: a.args[0].clone(),
                key,
                range_end: range_end.clone(),
            };
            let r = g.connect().await?.role_revoke(req).await?;
            let role = &a.args[0];
            let k = &a.args[1];
            let msg = if range_end.is_empty() {
                format!("Permission of key {k} is revoked from role {role}")
            } else if range_end == [0] {
                format!("Permission of range [{k}, <open ended> is revoked from role {role}")
            } else {
                format!(
                    "Permission of range [{k}, {}) is revoked from role {role}",
                    String::from_utf8_lossy(&range_end)
                )
            };
            p.header_only(out, &msg, r.header.as_ref(), &r)
        }
    }
}

/// `check` subcommands.
#[derive(Debug, Subcommand)]
pub enum CheckCmd {
    /// Check the performance of the etcd cluster
    Perf(PerfArgs),
}

/// `check perf [options]`
#[derive(Debug, Args)]
pub struct PerfArgs {
    /// Theload to check the performance against. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// If true, will remove all the keys with the prefix given by --prefix after the check
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub auto_compact: bool,
    /// Duration of the check in seconds (xlinectl's simplification of etcd's fixed 60 s)
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
}

/// `check perf`: puts 256-byte values under `--prefix` from concurrent writers for the test
/// duration at etcd's target rate for the load, then reports etcd's four checks (throughput,
/// slowest request, standard deviation, overall) with etcd's limits and wording.
pub async fn check(g: &Global, c: CheckCmd, out: &mut Out) -> Result<(), CtlError> {
    let CheckCmd::Perf(a) = c;
    // etcd's loads: (limit writes/s, clients) and the pass thresholds come from check.go.
    let (limit, clients) = match a.load.as_str() {
        "s" => (150u64, 50usize),
        "m" => (1000, 200),
        "l" => (8000, 500),
        "xl" => (15000, 1000),
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("unknown load option {}", a.load),
            ));
        }
    };
    let rpc = g.connect().await?;
    let pre = rpc
        .range(RangeRequest {
            key: a.prefix.clone().into_bytes(),
            range_end: prefix_range_end(a.prefix.as_bytes()),
            count_only: true,
            ..Default::default()
        })
        .await?;
    if pre.count > 0 {
        return Err(CtlError::new(
            ExitCode::InvalidInput,
            format!(
                "prefix {:?} has keys. Delete with etcdctl del --prefix {} first",
                a.prefix, a.prefix
            ),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let interval = Duration::from_secs_f64(clients as f64 / limit as f64);
    let mut tasks = Vec::new();
    for w in 0..clients {
        let rpc = rpc.clone();
        let prefix = a.prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut lats = Vec::new();
            let mut errs = 0u64;
            let mut n = 0u64;
            let mut tick = tokio::time::interval(interval);
            while Instant::now() < deadline {
                tick.tick().await;
                let key = format!("{prefix}{w:04}-{n:08}").into_bytes();
                n += 1;
                let start = Instant::now();
                match rpc
                    .put(PutRequest {
                        key,
                        value: vec![b'x'; 256],
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => lats.push(start.elapsed().as_secs_f64()),
                    Err(_) => errs += 1,
                }
            }
            (lats, errs)
        }));
    }
    let mut lats = Vec::new();
    let mut errs = 0;
    for t in tasks {
        let (l, e) = t
            .await
            .map_err(|e| CtlError::new(ExitCode::Error, e.to_string()))?;
        lats.extend(l);
        errs += e;
    }
    if a.auto_compact {
        let _ = rpc
            .delete(xline_proto::etcdserverpb::DeleteRangeRequest {
                key: a.prefix.clone().into_bytes(),
                range_end: prefix_range_end(a.prefix.as_bytes()),
                prev_kv: false,
            })
            .await;
    }
    let total = lats.len() as f64;
    let rps = total / a.duration as f64;
    let slowest = lats.iter().copied().fold(0.0, f64::max);
    let mean = if lats.is_empty() {
        0.0
    } else {
        lats.iter().sum::<f64>() / total
    };
    let stddev = if lats.is_empty() {
        0.0
    } else {
        (lats.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / total).sqrt()
    };
    let mut ok = true;
    if rps < 0.9 * limit as f64 {
        out.line(format!("FAIL: Throughput too low: {} writes/s", rps as u64));
        ok = false;
    } else {
        out.line(format!("PASS: Throughput is {} writes/s", rps as u64));
    }
    if slowest > 0.5 {
        out.line(format!("Slowest request took too long: {slowest:.6}s"));
        ok = false;
    } else {
        out.line(format!("PASS: Slowest request took {slowest:.6}s"));
    }
    if stddev > 0.1 {
        out.line(format!("FAIL: Stddev too high: {stddev:.6}s"));
        ok = false;
    } else {
        out.line(format!("PASS: Stddev is {stddev:.6}s"));
    }
    if errs > 0 {
        out.line(format!("FAIL: {errs} requests failed"));
        ok = false;
    }
    if ok {
        out.line("PASS");
        Ok(())
    } else {
        out.line("FAIL");
        Err(CtlError::new(ExitCode::Error, String::new()).silent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm_range_matches_etcdctl() {
        let a = PermArgs {
            prefix: true,
            from_key: false,
            args: vec![],
        };
        assert_eq!(
            perm_range(&a, &["foo".into()]).expect("range"),
            (b"foo".to_vec(), b"fop".to_vec())
        );
        let a = PermArgs {
            prefix: false,
            from_key: true,
            args: vec![],
        };
        assert_eq!(
            perm_range(&a, &["foo".into()]).expect("range"),
            (b"foo".to_vec(), vec![0])
        );
        let a = PermArgs {
            prefix: false,
            from_key: false,
            args: vec![],
        };
        assert_eq!(
            perm_range(&a, &["a".into(), "b".into()]).expect("range"),
            (b"a".to_vec(), b"b".to_vec())
        );
        assert_eq!(
            perm_range(&a, &["".into()]).expect("range"),
            (vec![0], vec![])
        );
        let a = PermArgs {
            prefix: true,
            from_key: false,
            args: vec![],
        };
        assert_eq!(
            perm_range(&a, &["a".into(), "b".into()])
                .expect_err("endkey")
                .msg,
            "unexpected endkey argument with --prefix flag"
        );
    }
}
