//! `member *`, `endpoint status|health|hashkv`, `alarm list|disarm`, `defrag`, `move-leader`.

use std::time::Instant;

use clap::{Args, Subcommand};
use xline_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, MemberAddRequest, MemberListResponse, RangeRequest,
};

use crate::cli::Global;
use crate::error::{CtlError, ExitCode};
use crate::gofmt;
use crate::printer::{EpHashKv, EpHealth, EpStatus, Format, Out};
use crate::rpc::Rpc;

/// `member` subcommands.
#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// Adds a member into the cluster
    Add(MemberAddArgs),
    /// Removes a member from the cluster
    Remove(IdArgs),
    /// Updates a member in the cluster
    Update(MemberUpdateArgs),
    /// Lists all members in the cluster
    List,
    /// Promotes a non-voting member in the cluster
    Promote(IdArgs),
}

/// `member add <memberName> [options]`
#[derive(Debug, Args)]
pub struct MemberAddArgs {
    /// comma separated peer URLs for the new member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(long)]
    pub learner: bool,
    /// memberName
    pub args: Vec<String>,
}

/// `member update <memberID> [options]`
#[derive(Debug, Args)]
pub struct MemberUpdateArgs {
    /// comma separated peer URLs for the updated member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// memberID
    pub args: Vec<String>,
}

/// A member ID argument.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// memberID
    pub args: Vec<String>,
}

/// `endpoint` flags and subcommands.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true)]
    pub cluster: bool,
    /// The subcommand.
    #[command(subcommand)]
    pub cmd: EndpointCmd,
}

/// `endpoint` subcommands.
#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// `alarm` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlarmCmd {
    /// Disarms all alarms
    Disarm,
    /// Lists all alarms
    List,
}

/// `defrag [options]`
#[derive(Debug, Args)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long)]
    pub cluster: bool,
}

/// `move-leader <transferee-member-id>`
#[derive(Debug, Args)]
pub struct MoveLeaderArgs {
    /// transferee-member-id
    pub args: Vec<String>,
}

fn member_id(args: &[String]) -> Result<u64, CtlError> {
    if args.len() != 1 {
        return Err(CtlError::args("member ID is not provided"));
    }
    u64::from_str_radix(&args[0], 16).map_err(|_| {
        CtlError::args(format!(
            "bad member ID arg (strconv.ParseUint: parsing {}: invalid syntax), expecting ID in Hex",
            gofmt::quote(args[0].as_bytes())
        ))
    })
}

/// Runs a `member` subcommand.
pub async fn member(g: &Global, c: MemberCmd, out: &mut Out) -> Result<(), CtlError> {
    let p = g.printer()?;
    match c {
        MemberCmd::Add(a) => {
            if a.args.is_empty() {
                return Err(CtlError::args("member name not provided"));
            }
            if a.args.len() > 1 {
                let mut ev = String::from("too many arguments");
                for s in &a.args {
                    if s.to_lowercase().starts_with("http") {
                        ev.push_str(&format!(", did you mean --peer-urls={s}"));
                    }
                }
                return Err(CtlError::args(ev));
            }
            let name = a.args[0].clone();
            if a.peer_urls.is_empty() {
                return Err(CtlError::args("member peer urls not provided"));
            }
            let urls: Vec<String> = a.peer_urls.split(',').map(str::to_owned).collect();
            let rpc = g.connect().await?;
            let resp = rpc
                .member_add(MemberAddRequest {
                    peer_ur_ls: urls,
                    is_learner: a.learner,
                })
                .await?;
            p.member_add(out, &resp)?;
            if p.format == Format::Simple {
                let new_id = resp.member.as_ref().map_or(0, |m| m.id);
                let mut conf = Vec::new();
                for m in &resp.members {
                    for u in &m.peer_ur_ls {
                        let n = if m.id == new_id {
                            name.as_str()
                        } else {
                            m.name.as_str()
                        };
                        conf.push(format!("{n}={u}"));
                    }
                }
                out.line("");
                out.line(format!("ETCD_NAME={}", gofmt::quote(name.as_bytes())));
                out.line(format!(
                    "ETCD_INITIAL_CLUSTER={}",
                    gofmt::quote(conf.join(",").as_bytes())
                ));
                out.line(format!(
                    "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
                    gofmt::quote(a.peer_urls.as_bytes())
                ));
                out.line("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Ok(())
        }
        MemberCmd::Remove(a) => {
            let id = member_id(&a.args)?;
            let r = g.connect().await?.member_remove(id).await?;
            p.member_change(
                out,
                "removed from",
                id,
                &MemberListResponse {
                    header: r.header,
                    members: r.members,
                },
            )
        }
        MemberCmd::Update(a) => {
            let id = member_id(&a.args)?;
            if a.peer_urls.is_empty() {
                return Err(CtlError::args("member peer urls not provided"));
            }
            let urls = a.peer_urls.split(',').map(str::to_owned).collect();
            let r = g.connect().await?.member_update(id, urls).await?;
            p.member_change(
                out,
                "updated in",
                id,
                &MemberListResponse {
                    header: r.header,
                    members: r.members,
                },
            )
        }
        MemberCmd::Promote(a) => {
            let id = member_id(&a.args)?;
            let r = g.connect().await?.member_promote(id).await?;
            p.member_change(
                out,
                "promoted in",
                id,
                &MemberListResponse {
                    header: r.header,
                    members: r.members,
                },
            )
        }
        MemberCmd::List => {
            let r = g.connect().await?.member_list().await?;
            p.member_list(out, &r)
        }
    }
}

/// The endpoints to visit: `--endpoints`, or every member's client URLs with `--cluster`.
async fn endpoints(g: &Global, cluster: bool) -> Result<Vec<String>, CtlError> {
    if !cluster {
        return Ok(g.endpoints.clone());
    }
    let mut cfg = g.conn_cfg(g.endpoints.clone())?;
    cfg.user = None;
    let rpc = Rpc::connect(&cfg)
        .await
        .map_err(|e| e.with_code(ExitCode::Error))?;
    let resp = rpc.member_list().await.map_err(|e| {
        CtlError::new(
            ExitCode::Error,
            format!(
                "failed to fetch endpoints from etcd cluster member list: {}",
                e.msg
            ),
        )
    })?;
    Ok(resp
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

/// A connection to exactly one endpoint.
async fn connect_one(g: &Global, ep: &str) -> Result<Rpc, CtlError> {
    Rpc::connect(&g.conn_cfg(vec![ep.to_owned()])?).await
}

/// Runs an `endpoint` subcommand.
pub async fn endpoint(g: &Global, a: EndpointArgs, out: &mut Out) -> Result<(), CtlError> {
    let p = g.printer()?;
    let eps = endpoints(g, a.cluster).await?;
    match a.cmd {
        EndpointCmd::Health => {
            // Listed in the order the checks finish, as etcdctl collects them from a channel.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for ep in eps {
                let g = g.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let health = async move {
                        let rpc = match connect_one(&g, &ep).await {
                            Ok(r) => r,
                            Err(e) => {
                                return EpHealth {
                                    ep,
                                    health: false,
                                    took: String::new(),
                                    error: e.msg,
                                };
                            }
                        };
                        let start = Instant::now();
                        let r = rpc
                            .range(RangeRequest {
                                key: b"health".to_vec(),
                                ..Default::default()
                            })
                            .await;
                        let took = gofmt::duration(start.elapsed());
                        match r {
                            Ok(_) => EpHealth {
                                ep,
                                health: true,
                                took,
                                error: String::new(),
                            },
                            Err(e) if e.msg == "etcdserver: permission denied" => EpHealth {
                                ep,
                                health: true,
                                took,
                                error: String::new(),
                            },
                            Err(e) => EpHealth {
                                ep,
                                health: false,
                                took,
                                error: e.msg,
                            },
                        }
                    };
                    let _ = tx.send(health.await);
                });
            }
            drop(tx);
            let mut list = Vec::new();
            while let Some(h) = rx.recv().await {
                list.push(h);
            }
            p.endpoint_health(out, &list)?;
            if list.iter().any(|h| !h.error.is_empty()) {
                return Err(CtlError::new(ExitCode::Error, "unhealthy cluster"));
            }
            Ok(())
        }
        EndpointCmd::Status => {
            let mut list = Vec::new();
            let mut failed = false;
            for ep in eps {
                match async { connect_one(g, &ep).await?.status().await }.await {
                    Ok(resp) => list.push(EpStatus { ep, resp }),
                    Err(e) => {
                        failed = true;
                        out.err_line(format!(
                            "Failed to get the status of endpoint {ep} ({})",
                            e.msg
                        ));
                    }
                }
            }
            p.endpoint_status(out, &list)?;
            if failed {
                return Err(CtlError::new(ExitCode::Error, String::new()).silent());
            }
            Ok(())
        }
        EndpointCmd::Hashkv { rev } => {
            let mut list = Vec::new();
            let mut last_err = None;
            for ep in eps {
                match async { connect_one(g, &ep).await?.hash_kv(rev).await }.await {
                    Ok(resp) => list.push(EpHashKv { ep, resp }),
                    Err(e) => {
                        out.err_line(format!(
                            "Failed to get the hash of endpoint {ep} ({})",
                            e.msg
                        ));
                        last_err = Some(e);
                    }
                }
            }
            p.endpoint_hashkv(out, &list)?;
            match last_err {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
    }
}

/// Runs an `alarm` subcommand.
pub async fn alarm(g: &Global, c: AlarmCmd, out: &mut Out) -> Result<(), CtlError> {
    let p = g.printer()?;
    let rpc = g.connect().await?;
    let list = rpc
        .alarm(AlarmRequest {
            action: 0,
            member_id: 0,
            alarm: 0,
        })
        .await?;
    let resp = match c {
        AlarmCmd::List => list,
        AlarmCmd::Disarm => {
            // clientv3's AlarmDisarm with no member: deactivate every listed alarm.
            let mut ret = AlarmResponse::default();
            for a in list.alarms {
                let d = rpc
                    .alarm(AlarmRequest {
                        action: 2,
                        member_id: a.member_id,
                        alarm: a.alarm,
                    })
                    .await?;
                ret.alarms.extend(d.alarms);
            }
            ret
        }
    };
    p.alarm(out, &resp)
}

/// `defrag`.
pub async fn defrag(g: &Global, a: DefragArgs, out: &mut Out) -> Result<(), CtlError> {
    let mut failures = 0;
    for ep in endpoints(g, a.cluster).await? {
        match async { connect_one(g, &ep).await?.defragment().await }.await {
            Ok(_) => out.line(format!("Finished defragmenting etcd member[{ep}]")),
            Err(e) => {
                failures += 1;
                out.err_line(format!(
                    "Failed to defragment etcd member[{ep}] ({})",
                    e.msg
                ));
            }
        }
    }
    if failures != 0 {
        return Err(CtlError::new(ExitCode::Error, String::new()).silent());
    }
    Ok(())
}

/// `move-leader`.
pub async fn move_leader(g: &Global, a: MoveLeaderArgs, out: &mut Out) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::args("move-leader command needs 1 argument"));
    }
    let target = u64::from_str_radix(&a.args[0], 16).map_err(|_| {
        CtlError::args(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            gofmt::quote(a.args[0].as_bytes())
        ))
    })?;
    let p = g.printer()?;
    for ep in &g.endpoints {
        let rpc = connect_one(g, ep).await?;
        let st = rpc.status().await?;
        let me = st.header.as_ref().map_or(0, |h| h.member_id);
        if me == st.leader {
            let resp = rpc.move_leader(target).await?;
            return p.move_leader(out, st.leader, target, resp.header.as_ref());
        }
    }
    Err(CtlError::args(format!(
        "no leader endpoint given at [{}]",
        g.endpoints.join(" ")
    )))
}
