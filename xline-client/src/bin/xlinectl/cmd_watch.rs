//! `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]`, and its
//! interactive form (`-i`: `watch ...` and `progress` lines on stdin).

use clap::{Args, Parser};
use tokio::io::AsyncBufReadExt;
use xline_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse, watch_request};

use crate::cli::Global;
use crate::cmd_kv::argify;
use crate::error::{CtlError, ExitCode};
use crate::gofmt;
use crate::printer::{Out, Printer, prefix_range_end};

/// `watch` flags and arguments.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short, long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// [key or prefix] [range_end]
    pub args: Vec<String>,
    /// The command to run for every event (after `--`).
    #[arg(last = true)]
    pub exec: Vec<String>,
}

/// One line of interactive watch input.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct InteractiveLine {
    #[command(flatten)]
    a: WatchArgs,
}

/// The create request for `key [range_end]` with the flags.
pub fn create_request(a: &WatchArgs, watch_args: &[String]) -> Result<WatchRequest, CtlError> {
    let Some(key) = watch_args.first() else {
        return Err(CtlError::args("bad number of arguments"));
    };
    let mut c = WatchCreateRequest {
        key: key.clone().into_bytes(),
        start_revision: a.rev,
        prev_kv: a.prev_kv,
        ..Default::default()
    };
    if watch_args.len() == 2 {
        if a.prefix {
            return Err(CtlError::args(
                "`range_end` and `--prefix` are mutually exclusive",
            ));
        }
        c.range_end = watch_args[1].clone().into_bytes();
    }
    if a.prefix {
        c.range_end = if c.key.is_empty() {
            vec![0]
        } else {
            prefix_range_end(&c.key)
        };
        if c.key.is_empty() {
            c.key = vec![0];
        }
    }
    Ok(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(c)),
    })
}

/// The watch arguments after adding `ETCDCTL_WATCH_KEY`/`ETCDCTL_WATCH_RANGE_END`.
fn with_env(args: &[String]) -> Result<Vec<String>, CtlError> {
    let key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let end = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if key.is_empty() && !end.is_empty() {
        return Err(CtlError::args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            gofmt::quote(end.as_bytes())
        )));
    }
    if key.is_empty() {
        return Ok(args.to_vec());
    }
    if !args.is_empty() {
        return Err(CtlError::args(
            "bad number of arguments (found conflicting environment key)",
        ));
    }
    let mut v = vec![key];
    if !end.is_empty() {
        v.push(end);
    }
    Ok(v)
}

async fn run_exec(exec: &[String], resp: &WatchResponse) -> Result<(), CtlError> {
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    for ev in &resp.events {
        let kv = ev.kv.clone().unwrap_or_default();
        let status = tokio::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", rev.to_string())
            .env(
                "ETCD_WATCH_EVENT_TYPE",
                gofmt::quote(if ev.r#type == 1 { b"DELETE" } else { b"PUT" }),
            )
            .env("ETCD_WATCH_KEY", gofmt::quote(&kv.key))
            .env("ETCD_WATCH_VALUE", gofmt::quote(&kv.value))
            .status()
            .await;
        let failed = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("exit status {}", s.code().unwrap_or(-1))),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            let quoted: Vec<String> = exec.iter().map(|a| gofmt::quote(a.as_bytes())).collect();
            return Err(CtlError::new(
                ExitCode::Error,
                format!("command [{}] error ({e})", quoted.join(" ")),
            ));
        }
    }
    Ok(())
}

/// Prints one response as etcdctl's `printWatchCh` does.
fn print_response(p: &Printer, out: &mut Out, resp: &WatchResponse) -> Result<(), CtlError> {
    if resp.canceled {
        let reason = if resp.cancel_reason.is_empty() {
            if resp.compact_revision != 0 {
                "etcdserver: mvcc: required revision has been compacted".to_owned()
            } else {
                "<nil>".to_owned()
            }
        } else {
            resp.cancel_reason.clone()
        };
        out.err_line(format!("watch was canceled ({reason})"));
    }
    let is_progress =
        resp.events.is_empty() && !resp.canceled && !resp.created && resp.compact_revision == 0;
    if is_progress {
        out.line(format!(
            "progress notify: {}",
            resp.header.as_ref().map_or(0, |h| h.revision)
        ));
    }
    p.watch(out, resp)
}

/// `watch`.
pub async fn watch(g: &Global, a: WatchArgs, out: &mut Out) -> Result<(), CtlError> {
    if a.interactive {
        return interactive(g, out).await;
    }
    let p = g.printer()?;
    let args = with_env(&a.args)?;
    if args.is_empty() {
        return Err(CtlError::args("bad number of arguments"));
    }
    let req = create_request(&a, &args)?;
    let rpc = g.connect().await?;
    let (_watcher, mut stream) = rpc.watch(req).await?;
    while let Some(resp) = stream.message().await? {
        if resp.created && resp.events.is_empty() && !resp.canceled {
            continue;
        }
        print_response(&p, out, &resp)?;
        out.flush();
        if !a.exec.is_empty() {
            run_exec(&a.exec, &resp).await?;
        }
        if resp.canceled {
            break;
        }
    }
    Err(CtlError::new(
        ExitCode::Interrupted,
        "watch is canceled by the server",
    ))
}

async fn interactive(g: &Global, out: &mut Out) -> Result<(), CtlError> {
    let p = g.printer()?;
    let rpc = g.connect().await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut watchers = Vec::new();
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|e| {
                CtlError::new(
                    ExitCode::InvalidInput,
                    format!("Error reading watch request line: {e}"),
                )
            })?
            .ok_or_else(|| {
                CtlError::new(
                    ExitCode::InvalidInput,
                    "Error reading watch request line: EOF",
                )
            })?;
        let args = argify(&line)?;
        if args.is_empty() {
            out.err_line(format!(
                "Invalid command: {line} (watch and progress supported)"
            ));
            out.flush();
            continue;
        }
        match args[0].as_str() {
            "watch" => {
                if args.len() < 2
                    && std::env::var("ETCDCTL_WATCH_KEY")
                        .unwrap_or_default()
                        .is_empty()
                {
                    out.err_line(format!(
                        "Invalid command {line} (command type or key is not provided)"
                    ));
                    out.flush();
                    continue;
                }
                let parsed = InteractiveLine::try_parse_from(&args[1..]).map_err(|e| {
                    CtlError::args(e.to_string().lines().next().unwrap_or_default().to_owned())
                })?;
                let wa = parsed.a;
                let watch_args = with_env(&wa.args)?;
                let req = match create_request(&wa, &watch_args) {
                    Ok(r) => r,
                    Err(e) => {
                        out.err_line(format!("Invalid command {line} ({})", e.msg));
                        out.flush();
                        continue;
                    }
                };
                let (watcher, stream) = rpc.watch(req).await?;
                watchers.push(watcher);
                spawn_printer(p.clone(), stream, wa.exec);
            }
            "progress" => {
                for watcher in &watchers {
                    // A watch that has ended takes no more requests; nothing to report.
                    let _ = watcher.request_progress();
                }
            }
            _ => {
                out.err_line(format!("Invalid command {line} (only support watch)"));
                out.flush();
            }
        }
    }
}

fn spawn_printer(p: Printer, mut stream: xline_client::WatchStream, exec: Vec<String>) {
    tokio::spawn(async move {
        while let Ok(Some(resp)) = stream.message().await {
            if resp.created && resp.events.is_empty() && !resp.canceled {
                continue;
            }
            let mut out = Out::default();
            let r = print_response(&p, &mut out, &resp);
            out.flush();
            if r.is_err() {
                return;
            }
            if !exec.is_empty() && run_exec(&exec, &resp).await.is_err() {
                std::process::exit(1);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> WatchArgs {
        InteractiveLine::try_parse_from(args).expect("parse").a
    }

    #[test]
    fn watch_args_and_exec_split_at_separator() {
        let a = parse(&["foo", "--prev-kv", "--rev", "5", "--", "echo", "hi"]);
        assert_eq!(a.args, ["foo"]);
        assert_eq!(a.exec, ["echo", "hi"]);
        let Some(watch_request::RequestUnion::CreateRequest(c)) =
            create_request(&a, &a.args).expect("req").request_union
        else {
            panic!("create request expected")
        };
        assert_eq!(
            (c.key.as_slice(), c.start_revision, c.prev_kv),
            (&b"foo"[..], 5, true)
        );
    }

    #[test]
    fn watch_prefix_and_range_conflict() {
        let a = parse(&["a", "b", "--prefix"]);
        assert_eq!(
            create_request(&a, &a.args).expect_err("conflict").msg,
            "`range_end` and `--prefix` are mutually exclusive"
        );
        let a = parse(&["ab", "--prefix"]);
        let Some(watch_request::RequestUnion::CreateRequest(c)) =
            create_request(&a, &a.args).expect("req").request_union
        else {
            panic!("create request expected")
        };
        assert_eq!(c.range_end, b"ac");
    }
}
