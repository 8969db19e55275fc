//! The command line: etcdctl 3.4's global flags (each also read from `ETCDCTL_<FLAG>`), its
//! verbs and their flags. Boolean global flags take pflag's `--flag=false` form.

use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::error::{CtlError, ExitCode};
use crate::gofmt;
use crate::printer::{Format, Out, Printer};
use crate::rpc::{ConnCfg, Rpc, TlsFlags, tls_options};
use crate::{cmd_cluster, cmd_kv, cmd_lease, cmd_misc, cmd_watch, mirror};

/// A simple command line client for etcd3 (and Xline).
#[derive(Debug, Parser)]
#[command(
    name = "xlinectl",
    version,
    infer_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    /// Global flags.
    #[command(flatten)]
    pub global: Global,
    /// The verb.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// etcdctl's global flags.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// enable client-side debug logging
    #[arg(long, global = true, env = "ETCDCTL_DEBUG", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub debug: bool,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        env = "ETCDCTL_WRITE_OUT",
        default_value = "simple"
    )]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, env = "ETCDCTL_HEX", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub hex: bool,
    /// dial timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", default_value = "2s", value_parser = gofmt::parse_duration)]
    pub dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", default_value = "5s", value_parser = gofmt::parse_duration)]
    pub command_timeout: Duration,
    /// keepalive time for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIME", default_value = "2s", value_parser = gofmt::parse_duration)]
    pub keepalive_time: Duration,
    /// keepalive timeout for client connections
    #[arg(long, global = true, env = "ETCDCTL_KEEPALIVE_TIMEOUT", default_value = "6s", value_parser = gofmt::parse_duration)]
    pub keepalive_timeout: Duration,
    /// disable transport security for client connections
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_TRANSPORT", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub insecure_transport: bool,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_DISCOVERY", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub insecure_discovery: bool,
    /// skip server certificate verification
    #[arg(long, global = true, env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub insecure_skip_tls_verify: bool,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    pub cert: Option<String>,
    /// identify secure client using this TLS key file
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    pub key: Option<String>,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    pub cacert: Option<String>,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, env = "ETCDCTL_USER", default_value = "")]
    pub user: String,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, env = "ETCDCTL_PASSWORD", default_value = "")]
    pub password: String,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(
        short = 'd',
        long,
        global = true,
        env = "ETCDCTL_DISCOVERY_SRV",
        default_value = ""
    )]
    pub discovery_srv: String,
    /// service name to query when using DNS discovery
    #[arg(
        long,
        global = true,
        env = "ETCDCTL_DISCOVERY_SRV_NAME",
        default_value = ""
    )]
    pub discovery_srv_name: String,
}

impl Global {
    /// The printer `-w`/`--hex` select.
    pub fn printer(&self) -> Result<Printer, CtlError> {
        let format = Format::parse(&self.write_out)
            .ok_or_else(|| CtlError::new(ExitCode::BadFeature, "unsupported output format"))?;
        Ok(Printer::new(format, self.hex))
    }

    /// The user and password from `--user`/`--password` as etcdctl splits them.
    pub fn auth(&self) -> Result<Option<(String, String)>, CtlError> {
        if self.user.is_empty() {
            return Ok(None);
        }
        if !self.password.is_empty() {
            return Ok(Some((self.user.clone(), self.password.clone())));
        }
        match self.user.split_once(':') {
            Some((u, p)) => Ok(Some((u.to_owned(), p.to_owned()))),
            None => {
                // etcdctl prompts on the terminal; read one line from stdin instead.
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| CtlError::new(ExitCode::Error, e.to_string()))?;
                Ok(Some((
                    self.user.clone(),
                    line.trim_end_matches(['\r', '\n']).to_owned(),
                )))
            }
        }
    }

    /// The connection settings, checking the TLS flags first.
    pub fn conn_cfg(&self, endpoints: Vec<String>) -> Result<ConnCfg, CtlError> {
        for (name, v) in [
            ("cert", &self.cert),
            ("key", &self.key),
            ("cacert", &self.cacert),
        ] {
            if v.as_deref() == Some("") {
                return Err(CtlError::args(format!(
                    "empty string is passed to --{name} option"
                )));
            }
        }
        let tls = tls_options(&TlsFlags {
            cert: self.cert.as_deref(),
            key: self.key.as_deref(),
            cacert: self.cacert.as_deref(),
            insecure_transport: self.insecure_transport,
            insecure_skip_verify: self.insecure_skip_tls_verify,
        })?;
        Ok(ConnCfg {
            endpoints,
            dial_timeout: self.dial_timeout,
            command_timeout: self.command_timeout,
            user: self.auth()?,
            tls,
        })
    }

    /// Connects to `--endpoints`.
    pub async fn connect(&self) -> Result<Rpc, CtlError> {
        Rpc::connect(&self.conn_cfg(self.endpoints.clone())?).await
    }
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Gets the key or a range of keys
    Get(cmd_kv::GetArgs),
    /// Puts the given key into the store
    Put(cmd_kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(cmd_kv::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(cmd_kv::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(cmd_kv::CompactionArgs),
    /// Alarm related commands
    #[command(subcommand)]
    Alarm(cmd_cluster::AlarmCmd),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(cmd_cluster::DefragArgs),
    /// Endpoint related commands
    Endpoint(cmd_cluster::EndpointArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader(cmd_cluster::MoveLeaderArgs),
    /// Watches events stream on keys or prefixes
    Watch(cmd_watch::WatchArgs),
    /// Prints the version of etcdctl
    Version,
    /// Lease related commands
    #[command(subcommand)]
    Lease(cmd_lease::LeaseCmd),
    /// Membership related commands
    #[command(subcommand)]
    Member(cmd_cluster::MemberCmd),
    /// Manages etcd node snapshots
    #[command(subcommand)]
    Snapshot(cmd_misc::SnapshotCmd),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(mirror::MirrorArgs),
    /// Acquires a named lock
    Lock(cmd_misc::LockArgs),
    /// Observes and participates in leader election
    Elect(cmd_misc::ElectArgs),
    /// Enable or disable authentication
    #[command(subcommand)]
    Auth(cmd_misc::AuthCmd),
    /// User related commands
    #[command(subcommand)]
    User(cmd_misc::UserCmd),
    /// Role related commands
    #[command(subcommand)]
    Role(cmd_misc::RoleCmd),
    /// commands for checking properties of the etcd cluster
    #[command(subcommand)]
    Check(cmd_misc::CheckCmd),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli, out: &mut Out) -> Result<(), CtlError> {
    let g = &cli.global;
    match cli.cmd {
        Cmd::Version => {
            out.line(format!("xlinectl version: {}", env!("CARGO_PKG_VERSION")));
            out.line("API version: 3.4");
            Ok(())
        }
        Cmd::Get(a) => cmd_kv::get(g, a, out).await,
        Cmd::Put(a) => cmd_kv::put(g, a, out).await,
        Cmd::Del(a) => cmd_kv::del(g, a, out).await,
        Cmd::Txn(a) => cmd_kv::txn(g, a, out).await,
        Cmd::Compaction(a) => cmd_kv::compaction(g, a, out).await,
        Cmd::Watch(a) => cmd_watch::watch(g, a, out).await,
        Cmd::Lease(c) => cmd_lease::run(g, c, out).await,
        Cmd::Member(c) => cmd_cluster::member(g, c, out).await,
        Cmd::Endpoint(a) => cmd_cluster::endpoint(g, a, out).await,
        Cmd::Alarm(c) => cmd_cluster::alarm(g, c, out).await,
        Cmd::Defrag(a) => cmd_cluster::defrag(g, a, out).await,
        Cmd::MoveLeader(a) => cmd_cluster::move_leader(g, a, out).await,
        Cmd::Snapshot(c) => cmd_misc::snapshot(g, c, out).await,
        Cmd::MakeMirror(a) => mirror::make_mirror(g, a, out).await,
        Cmd::Lock(a) => cmd_misc::lock(g, a, out).await,
        Cmd::Elect(a) => cmd_misc::elect(g, a, out).await,
        Cmd::Auth(c) => cmd_misc::auth(g, c, out).await,
        Cmd::User(c) => cmd_misc::user(g, c, out).await,
        Cmd::Role(c) => cmd_misc::role(g, c, out).await,
        Cmd::Check(c) => cmd_misc::check(g, c, out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("xlinectl").chain(args.iter().copied())).expect("parse")
    }

    #[test]
    fn global_flags_parse_like_etcdctl() {
        let cli = parse(&[
            "--endpoints=127.0.0.1:1,127.0.0.1:2",
            "-w",
            "json",
            "--hex",
            "--dial-timeout=3s",
            "--command-timeout",
            "1m",
            "--insecure-transport=false",
            "get",
            "foo",
        ]);
        assert_eq!(cli.global.endpoints, ["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(cli.global.write_out, "json");
        assert!(cli.global.hex);
        assert!(!cli.global.insecure_transport);
        assert_eq!(cli.global.dial_timeout, Duration::from_secs(3));
        assert_eq!(cli.global.command_timeout, Duration::from_secs(60));
        assert!(matches!(cli.cmd, Cmd::Get(_)));
    }

    #[test]
    fn flags_after_the_verb_and_prefix_matching() {
        let cli = parse(&["mem", "list", "-w", "table"]);
        assert!(matches!(cli.cmd, Cmd::Member(cmd_cluster::MemberCmd::List)));
        assert_eq!(cli.global.printer().expect("printer").format, Format::Table);
    }

    #[test]
    fn user_splits_like_etcdctl() {
        let mut cli = parse(&["--user", "root:pw:x", "get", "a"]);
        assert_eq!(
            cli.global.auth().expect("auth"),
            Some(("root".into(), "pw:x".into()))
        );
        cli.global.password = "p2".into();
        assert_eq!(
            cli.global.auth().expect("auth"),
            Some(("root:pw:x".into(), "p2".into()))
        );
    }

    #[test]
    fn bad_output_format_is_bad_feature() {
        let cli = parse(&["-w", "yaml", "get", "a"]);
        let err = cli.global.printer().expect_err("bad format");
        assert_eq!(err.code, ExitCode::BadFeature);
        assert_eq!(err.msg, "unsupported output format");
    }

    #[test]
    fn tls_flags_pick_the_transport_like_etcdctl() {
        // No TLS flag: plaintext.
        let cli = parse(&["get", "a"]);
        assert!(cli.global.conn_cfg(vec![]).expect("cfg").tls.is_none());
        // `--insecure-transport=false` alone: TLS against the system's roots.
        let cli = parse(&["--insecure-transport=false", "get", "a"]);
        assert!(cli.global.conn_cfg(vec![]).expect("cfg").tls.is_some());
        // A certificate without its key is refused before dialling, as etcdctl does.
        let cli = parse(&["--cert", "/c.pem", "get", "a"]);
        let err = cli.global.conn_cfg(vec![]).expect_err("cert without key");
        assert_eq!(err.code, ExitCode::BadArgs);
        assert_eq!(
            err.msg,
            "KeyFile and CertFile must both be present[key: , cert: /c.pem]"
        );
        let cli = parse(&["--cacert", "", "get", "a"]);
        assert_eq!(
            cli.global.conn_cfg(vec![]).expect_err("empty").msg,
            "empty string is passed to --cacert option"
        );
        // An unreadable CA bundle is a bad argument.
        let cli = parse(&["--cacert", "/nonexistent/ca.pem", "get", "a"]);
        assert_eq!(
            cli.global.conn_cfg(vec![]).expect_err("missing ca").code,
            ExitCode::BadArgs
        );
    }
}
