//! `make-mirror [options] <destination>`: copies a prefix from the `--endpoints` cluster (any
//! etcd v3 server) to the destination continuously. First the keys as of one revision, read in
//! pages, then a watch from the next revision; events of one revision are applied in one txn on
//! the destination. Every 30 s it prints how many keys it has copied, as etcdctl does.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use clap::{ArgAction, Args};
use xline_proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
    WatchRequest, request_op, watch_request,
};

use crate::cli::Global;
use crate::error::{CtlError, ExitCode};
use crate::printer::{Out, prefix_range_end};
use crate::rpc::{ConnCfg, Rpc, TlsFlags, tls_options};

/// Keys read per page during the initial sync (clientv3's mirror uses 1000).
const BATCH: i64 = 1000;

/// `make-mirror` flags.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long = "dest-prefix", default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long = "no-dest-prefix")]
    pub no_dest_prefix: bool,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long = "dest-cert")]
    pub dest_cert: Option<String>,
    /// Identify secure client using this TLS key file
    #[arg(long = "dest-key")]
    pub dest_key: Option<String>,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long = "dest-cacert")]
    pub dest_cacert: Option<String>,
    /// Disable transport security for client connections
    #[arg(long = "dest-insecure-transport", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub dest_insecure_transport: bool,
    /// destination
    pub args: Vec<String>,
}

/// Rewrites a source key for the destination (`strings.Replace(key, prefix, dest, 1)`).
pub fn modify_prefix(key: &[u8], prefix: &[u8], dest: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return [dest, key].concat();
    }
    match key.windows(prefix.len()).position(|w| w == prefix) {
        Some(i) => [&key[..i], dest, &key[i + prefix.len()..]].concat(),
        None => key.to_vec(),
    }
}

/// `make-mirror`.
pub async fn make_mirror(g: &Global, a: MirrorArgs, out: &mut Out) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::args("make-mirror takes one destination argument"));
    }
    // The destination: its own TLS flags (no skip-verify, no auth), as etcdctl's make-mirror.
    let tls = tls_options(&TlsFlags {
        cert: a.dest_cert.as_deref(),
        key: a.dest_key.as_deref(),
        cacert: a.dest_cacert.as_deref(),
        insecure_transport: a.dest_insecure_transport,
        insecure_skip_verify: false,
    })?;
    let dst_cfg = ConnCfg {
        endpoints: vec![a.args[0].clone()],
        dial_timeout: g.dial_timeout,
        command_timeout: g.command_timeout,
        user: None,
        tls,
    };
    let dst = Rpc::connect(&dst_cfg).await?;
    let src = g.connect().await?;
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix = if !a.no_dest_prefix && a.dest_prefix.is_empty() {
        a.prefix.clone()
    } else {
        a.dest_prefix.clone()
    };
    let total = Arc::new(AtomicI64::new(0));
    let reporter = {
        let total = total.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let mut o = Out::default();
                o.line(total.load(Ordering::Relaxed).to_string());
                o.flush();
            }
        })
    };
    let r = mirror(
        &src,
        &dst,
        a.prefix.as_bytes(),
        dest_prefix.as_bytes(),
        &total,
    )
    .await;
    reporter.abort();
    out.flush();
    Err(match r {
        Ok(()) => CtlError::new(ExitCode::Error, "<nil>"),
        Err(e) => e.with_code(ExitCode::Error),
    })
}

/// The copy itself: initial sync at one revision, then the updates after it (until the
/// source's watch ends or fails).
pub async fn mirror(
    src: &Rpc,
    dst: &Rpc,
    prefix: &[u8],
    dest: &[u8],
    total: &AtomicI64,
) -> Result<(), CtlError> {
    let (key, end) = if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.to_vec(), prefix_range_end(prefix))
    };
    // The revision to copy at: the store's revision now.
    let rev = src
        .range(RangeRequest {
            key: b"foo".to_vec(),
            ..Default::default()
        })
        .await?
        .header
        .map_or(0, |h| h.revision);
    let mut from = key.clone();
    loop {
        let page = src
            .range_unbounded(RangeRequest {
                key: from.clone(),
                range_end: end.clone(),
                limit: BATCH,
                revision: rev,
                ..Default::default()
            })
            .await?;
        for kv in &page.kvs {
            let put = PutRequest {
                key: modify_prefix(&kv.key, prefix, dest),
                value: kv.value.clone(),
                ..Default::default()
            };
            dst.put(put).await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                from = last.key.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    let create = WatchCreateRequest {
        key,
        range_end: end,
        start_revision: rev + 1,
        ..Default::default()
    };
    let (_tx, mut stream) = src
        .watch(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        })
        .await?;
    while let Some(wr) = stream.message().await? {
        if wr.compact_revision != 0 {
            return Err(CtlError::new(
                ExitCode::Error,
                "etcdserver: mvcc: required revision has been compacted",
            ));
        }
        if wr.canceled {
            return Err(CtlError::new(
                ExitCode::Error,
                format!("watch canceled: {}", wr.cancel_reason),
            ));
        }
        let mut ops: Vec<RequestOp> = Vec::new();
        let mut last_rev = 0;
        for ev in &wr.events {
            let kv = ev.kv.clone().unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                dst.txn(TxnRequest {
                    success: std::mem::take(&mut ops),
                    ..Default::default()
                })
                .await?;
            }
            last_rev = kv.mod_revision;
            let k = modify_prefix(&kv.key, prefix, dest);
            let req = if ev.r#type == 1 {
                request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: k,
                    ..Default::default()
                })
            } else {
                request_op::Request::RequestPut(PutRequest {
                    key: k,
                    value: kv.value,
                    ..Default::default()
                })
            };
            ops.push(RequestOp { request: Some(req) });
            total.fetch_add(1, Ordering::Relaxed);
        }
        if !ops.is_empty() {
            dst.txn(TxnRequest {
                success: ops,
                ..Default::default()
            })
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_rewritten_once() {
        assert_eq!(modify_prefix(b"/a/x/a/", b"/a/", b"/b/"), b"/b/x/a/");
        assert_eq!(modify_prefix(b"/a/x", b"/a/", b""), b"x");
        assert_eq!(modify_prefix(b"k", b"", b"/m/"), b"/m/k");
    }
}
