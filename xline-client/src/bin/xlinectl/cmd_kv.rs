//! `get`, `put`, `del`, `txn`, `compaction`.

use std::io::{BufRead, Read};

use clap::{Args, Parser, Subcommand};
use xline_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, compare, request_op,
};

use crate::cli::Global;
use crate::error::{CtlError, ExitCode};
use crate::gofmt;
use crate::printer::{Format, Out, prefix_range_end};

/// `get [options] <key> [range_end]`
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long = "keys-only")]
    pub keys_only: bool,
    /// Get only the count
    #[arg(long = "count-only")]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long = "print-value-only")]
    pub print_value_only: bool,
    /// key [range_end]
    #[arg(allow_hyphen_values = false)]
    pub args: Vec<String>,
}

/// `put [options] <key> <value>`
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long = "ignore-value")]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long = "ignore-lease")]
    pub ignore_lease: bool,
    /// key [value]
    pub args: Vec<String>,
}

/// `del [options] <key> [range_end]`
#[derive(Debug, Clone, Args)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    pub from_key: bool,
    /// key [range_end]
    pub args: Vec<String>,
}

/// `txn [options]`
#[derive(Debug, Clone, Args)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short, long)]
    pub interactive: bool,
    /// (none accepted)
    pub args: Vec<String>,
}

/// `compaction [options] <revision>`
#[derive(Debug, Clone, Args)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long)]
    pub physical: bool,
    /// revision
    pub args: Vec<String>,
}

/// Builds the Range request etcdctl's `getGetOp` builds.
pub fn get_op(a: &GetArgs) -> Result<RangeRequest, CtlError> {
    if a.args.is_empty() {
        return Err(CtlError::args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut r = RangeRequest::default();
    match a.consistency.as_str() {
        "s" => r.serializable = true,
        "l" => {}
        c => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("unknown consistency flag {}", gofmt::quote(c.as_bytes())),
            ));
        }
    }
    let mut key = a.args[0].clone().into_bytes();
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        r.range_end = a.args[1].clone().into_bytes();
    }
    r.limit = a.limit;
    if a.rev > 0 {
        r.revision = a.rev;
    }
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => 1,
        "DESCEND" => 2,
        "" => 0,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort order {}", a.order),
            ));
        }
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => 2,
        "KEY" | "" => 0,
        "MODIFY" => 3,
        "VALUE" => 4,
        "VERSION" => 1,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort target {}", a.sort_by),
            ));
        }
    };
    // clientv3.WithSort: ascending by key is the server's natural order, sent as "none".
    r.sort_order = if target == 0 && order == 1 { 0 } else { order };
    r.sort_target = target;
    if a.prefix {
        if key.is_empty() {
            key = vec![0];
            r.range_end = vec![0];
        } else {
            r.range_end = prefix_range_end(&key);
        }
    }
    if a.from_key {
        if key.is_empty() {
            key = vec![0];
        }
        r.range_end = vec![0];
    }
    r.keys_only = a.keys_only;
    r.count_only = a.count_only;
    r.key = key;
    Ok(r)
}

/// Parses a hex lease ID as Go's `strconv.ParseInt(s, 16, 64)`, with etcdctl's wording.
pub fn parse_lease_hex(s: &str, what: &str) -> Result<i64, CtlError> {
    i64::from_str_radix(s, 16).map_err(|_| {
        CtlError::args(format!(
            "{what} (strconv.ParseInt: parsing {}: invalid syntax), expecting ID in Hex",
            gofmt::quote(s.as_bytes())
        ))
    })
}

/// Builds the Put request etcdctl's `getPutOp` builds; `stdin` supplies a missing value.
pub fn put_op(a: &PutArgs, stdin: Option<&mut dyn Read>) -> Result<PutRequest, CtlError> {
    const NEED: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    if a.args.is_empty() {
        return Err(CtlError::args(NEED));
    }
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        if let Some(v) = a.args.get(1) {
            value = v.clone().into_bytes();
        } else {
            let Some(stdin) = stdin else {
                return Err(CtlError::args(NEED));
            };
            if stdin.read_to_end(&mut value).is_err() || value.is_empty() {
                return Err(CtlError::args(NEED));
            }
        }
    }
    let lease = parse_lease_hex(&a.lease, "bad lease ID")?;
    Ok(PutRequest {
        key: a.args[0].clone().into_bytes(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// Builds the DeleteRange request etcdctl's `getDelOp` builds.
pub fn del_op(a: &DelArgs) -> Result<DeleteRangeRequest, CtlError> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut r = DeleteRangeRequest {
        key: a.args[0].clone().into_bytes(),
        ..Default::default()
    };
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        r.range_end = a.args[1].clone().into_bytes();
    }
    if a.prefix {
        if r.key.is_empty() {
            r.key = vec![0];
            r.range_end = vec![0];
        } else {
            r.range_end = prefix_range_end(&r.key);
        }
    }
    r.prev_kv = a.prev_kv;
    if a.from_key {
        if r.key.is_empty() {
            r.key = vec![0];
        }
        r.range_end = vec![0];
    }
    Ok(r)
}

/// `get`.
pub async fn get(g: &Global, a: GetArgs, out: &mut Out) -> Result<(), CtlError> {
    let req = get_op(&a)?;
    let mut p = g.printer()?;
    let rpc = g.connect().await?;
    let resp = rpc.range(req).await?;
    if a.print_value_only {
        if p.format != Format::Simple {
            return Err(CtlError::args(
                "print-value-only is only for `--write-out=simple`",
            ));
        }
        p.value_only = true;
    }
    if a.count_only && p.format == Format::Simple {
        out.line(resp.count.to_string());
        return Ok(());
    }
    p.get(out, &resp)
}

/// `put`.
pub async fn put(g: &Global, a: PutArgs, out: &mut Out) -> Result<(), CtlError> {
    let mut stdin = std::io::stdin();
    let req = put_op(&a, Some(&mut stdin))?;
    let p = g.printer()?;
    let resp = g.connect().await?.put(req).await?;
    p.put(out, &resp)
}

/// `del`.
pub async fn del(g: &Global, a: DelArgs, out: &mut Out) -> Result<(), CtlError> {
    let req = del_op(&a)?;
    let p = g.printer()?;
    let resp = g.connect().await?.delete(req).await?;
    p.del(out, &resp)
}

/// `compaction`.
pub async fn compaction(g: &Global, a: CompactionArgs, out: &mut Out) -> Result<(), CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::args("compaction command needs 1 argument"));
    }
    let rev: i64 = a.args[0].parse().map_err(|_| {
        CtlError::new(
            ExitCode::Error,
            format!(
                "strconv.ParseInt: parsing {}: invalid syntax",
                gofmt::quote(a.args[0].as_bytes())
            ),
        )
    })?;
    let rpc = g.connect().await?;
    rpc.compact(CompactionRequest {
        revision: rev,
        physical: a.physical,
    })
    .await?;
    out.line(format!("compacted revision {rev}"));
    Ok(())
}

/// etcdctl's `argify`: splits a line into words; double-quoted words are Go-unquoted, and
/// single-quoted ones are trimmed exactly as etcdctl 3.4 trims them (by the word count, a quirk
/// kept for fidelity).
pub fn argify(s: &str) -> Result<Vec<String>, CtlError> {
    let b = s.as_bytes();
    let mut words: Vec<(char, String)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' {
            let mut j = i + 1;
            let mut closed = false;
            while j < b.len() {
                if b[j] == b'\\' {
                    j += 2;
                    continue;
                }
                if b[j] == b'"' {
                    closed = true;
                    break;
                }
                j += 1;
            }
            if closed {
                words.push(('"', s[i..=j].to_owned()));
                i = j + 1;
                continue;
            }
            i += 1;
            continue;
        }
        if c == b'\'' {
            if let Some(off) = s[i + 1..].find('\'') {
                let j = i + 1 + off;
                words.push(('\'', s[i..=j].to_owned()));
                i = j + 1;
                continue;
            }
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && !b[j].is_ascii_whitespace() {
            j += 1;
        }
        words.push((' ', s[i..j].to_owned()));
        i = j;
    }
    let n = words.len();
    words
        .into_iter()
        .map(|(kind, w)| match kind {
            '"' => go_unquote(&w)
                .ok_or_else(|| CtlError::new(ExitCode::InvalidInput, "invalid syntax")),
            '\'' => w
                .get(1..n.saturating_sub(1).max(1))
                .map(str::to_owned)
                .ok_or_else(|| CtlError::new(ExitCode::InvalidInput, "slice bounds out of range")),
            _ => Ok(w),
        })
        .collect()
}

/// Go's `strconv.Unquote` of a double-quoted literal (the `%q` verb of `Sscanf`).
pub fn go_unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            return None;
        }
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            '\'' => Some(b'\''),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let take = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
                    n: usize,
                    radix: u32|
         -> Option<u32> {
            let mut v = 0;
            for _ in 0..n {
                v = v * radix + chars.next()?.to_digit(radix)?;
            }
            Some(v)
        };
        match e {
            'x' => out.push(u8::try_from(take(&mut chars, 2, 16)?).ok()?),
            'u' | 'U' => {
                let v = take(&mut chars, if e == 'u' { 4 } else { 8 }, 16)?;
                let c = char::from_u32(v)?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let rest = take(&mut chars, 2, 8)?;
                out.push(u8::try_from(e.to_digit(8)? * 64 + rest).ok()?);
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Reads one quoted Go string from the front of `s` (for `Sscanf("%q")`), returning it and the rest.
fn scan_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('`') {
        let end = rest.find('`')?;
        return Some((rest[..end].to_owned(), &rest[end + 1..]));
    }
    if !s.starts_with('"') {
        return None;
    }
    let b = s.as_bytes();
    let mut j = 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some((go_unquote(&s[..=j])?, &s[j + 1..])),
            _ => j += 1,
        }
    }
    None
}

/// etcdctl's `parseCompare`: `<target>("<key>") <op> "<value>"`.
pub fn parse_compare(line: &str) -> Result<Compare, CtlError> {
    let bad = |msg: String| CtlError::new(ExitCode::InvalidInput, msg);
    let Some((target, rest)) = line.split_once('(') else {
        return Err(bad(format!("malformed comparison: {line}")));
    };
    let scanned = (|| {
        let (key, rest) = scan_quoted(rest)?;
        let rest = rest.strip_prefix(')')?.trim_start();
        let op_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let op = rest[..op_end].to_owned();
        let (val, _) = scan_quoted(&rest[op_end..])?;
        Some((key, op, val))
    })();
    let Some((key, op, val)) = scanned else {
        return Err(bad(format!("malformed comparison: {line}")));
    };
    let result = match op.as_str() {
        "=" => compare::CompareResult::Equal,
        "!=" => compare::CompareResult::NotEqual,
        "<" => compare::CompareResult::Less,
        ">" => compare::CompareResult::Greater,
        _ => return Err(bad(format!("Unknown result op: {op}"))),
    };
    let int = || {
        val.parse::<i64>()
            .map_err(|_| bad(format!("invalid txn compare request: {line}")))
    };
    let (t, union) = match target {
        "ver" | "version" => (
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(int()?),
        ),
        "c" | "create" => (
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(int()?),
        ),
        "m" | "mod" => (
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(int()?),
        ),
        "val" | "value" => (
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(val.clone().into_bytes()),
        ),
        "lease" => (
            compare::CompareTarget::Lease,
            compare::TargetUnion::Lease(int()?),
        ),
        _ => {
            return Err(bad(format!(
                "malformed comparison: {line} (unknown target {target})"
            )));
        }
    };
    let key = if t == compare::CompareTarget::Lease {
        Vec::new()
    } else {
        key.into_bytes()
    };
    Ok(Compare {
        result: result as i32,
        target: t as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// The operations a txn line may hold, parsed with the verbs' own flags.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct TxnOpLine {
    #[command(subcommand)]
    op: TxnOpCmd,
}

#[derive(Debug, Subcommand)]
enum TxnOpCmd {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// etcdctl's `parseRequestUnion`: one `get`/`put`/`del` line of a txn.
pub fn parse_request_op(line: &str) -> Result<RequestOp, CtlError> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(CtlError::new(
            ExitCode::InvalidInput,
            format!("invalid txn compare request: {line}"),
        ));
    }
    let parsed = TxnOpLine::try_parse_from(&args).map_err(|_| {
        CtlError::new(
            ExitCode::InvalidInput,
            format!("invalid txn request: {line}"),
        )
    })?;
    let req = match parsed.op {
        TxnOpCmd::Put(a) => request_op::Request::RequestPut(put_op(&a, None)?),
        TxnOpCmd::Get(a) => request_op::Request::RequestRange(get_op(&a)?),
        TxnOpCmd::Del(a) => request_op::Request::RequestDeleteRange(del_op(&a)?),
    };
    Ok(RequestOp { request: Some(req) })
}

fn read_line(r: &mut dyn BufRead) -> Result<String, CtlError> {
    let mut line = String::new();
    let n = r
        .read_line(&mut line)
        .map_err(|e| CtlError::new(ExitCode::InvalidInput, e.to_string()))?;
    if n == 0 || !line.ends_with('\n') {
        return Err(CtlError::new(ExitCode::InvalidInput, "EOF"));
    }
    Ok(line.trim().to_owned())
}

/// Reads a whole txn as etcdctl does: compares, a blank line, success ops, a blank line,
/// failure ops, a blank line. `prompt` receives the interactive prompts.
pub fn read_txn(r: &mut dyn BufRead, mut prompt: impl FnMut(&str)) -> Result<TxnRequest, CtlError> {
    let mut txn = TxnRequest::default();
    prompt("compares:");
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        txn.compare.push(parse_compare(&line)?);
    }
    for (i, title) in [
        "success requests (get, put, del):",
        "failure requests (get, put, del):",
    ]
    .iter()
    .enumerate()
    {
        prompt(title);
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            let op = parse_request_op(&line)?;
            if i == 0 {
                txn.success.push(op);
            } else {
                txn.failure.push(op);
            }
        }
    }
    Ok(txn)
}

/// `txn`.
pub async fn txn(g: &Global, a: TxnArgs, out: &mut Out) -> Result<(), CtlError> {
    if !a.args.is_empty() {
        return Err(CtlError::args("txn command does not accept argument"));
    }
    let p = g.printer()?;
    let rpc = g.connect().await?;
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let req = read_txn(&mut lock, |s| {
        if a.interactive {
            out.line(s);
            out.flush();
        }
    })?;
    let resp = rpc.txn_unbounded(req).await?;
    p.txn(out, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_args(args: &[&str]) -> GetArgs {
        #[derive(Parser)]
        #[command(no_binary_name = true)]
        struct P {
            #[command(flatten)]
            a: GetArgs,
        }
        P::try_parse_from(args).expect("parse").a
    }

    #[test]
    fn get_prefix_and_from_key_ranges() {
        let r = get_op(&get_args(&["foo", "--prefix"])).expect("op");
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"foo"[..], &b"fop"[..])
        );
        let r = get_op(&get_args(&["", "--prefix"])).expect("op");
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&[0u8][..], &[0u8][..])
        );
        let r = get_op(&get_args(&[
            "a",
            "--from-key",
            "--limit",
            "2",
            "--rev=3",
            "--consistency=s",
        ]))
        .expect("op");
        assert_eq!(
            (r.range_end.as_slice(), r.limit, r.revision, r.serializable),
            (&[0u8][..], 2, 3, true)
        );
        let r = get_op(&get_args(&[
            "a",
            "z",
            "--sort-by=MODIFY",
            "--order=descend",
            "--keys-only",
        ]))
        .expect("op");
        assert_eq!(
            (
                r.range_end.as_slice(),
                r.sort_target,
                r.sort_order,
                r.keys_only
            ),
            (&b"z"[..], 3, 2, true)
        );
        let r = get_op(&get_args(&["a", "--order=ASCEND"])).expect("op");
        assert_eq!(r.sort_order, 0, "ascending by key is sent as no sort");
    }

    #[test]
    fn get_argument_errors_match_etcdctl() {
        let e = get_op(&get_args(&[])).expect_err("no key");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                ExitCode::BadArgs,
                "get command needs one argument as key and an optional argument as range_end"
            )
        );
        let e = get_op(&get_args(&["a", "--prefix", "--from-key"])).expect_err("both");
        assert_eq!(
            e.msg,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one"
        );
        let e = get_op(&get_args(&["a", "--consistency=x"])).expect_err("consistency");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (ExitCode::BadFeature, "unknown consistency flag \"x\"")
        );
        let e = get_op(&get_args(&["a", "--sort-by=x"])).expect_err("sort");
        assert_eq!(e.msg, "bad sort target x");
    }

    #[test]
    fn put_reads_value_from_stdin_and_parses_hex_lease() {
        let a = PutArgs {
            lease: "1a".into(),
            prev_kv: true,
            ignore_value: false,
            ignore_lease: false,
            args: vec!["k".into()],
        };
        let mut stdin: &[u8] = b"from stdin\n";
        let r = put_op(&a, Some(&mut stdin)).expect("op");
        assert_eq!(
            (r.value.as_slice(), r.lease, r.prev_kv),
            (&b"from stdin\n"[..], 26, true)
        );
        let bad = PutArgs {
            lease: "zz".into(),
            ..a.clone()
        };
        let e = put_op(
            &PutArgs {
                args: vec!["k".into(), "v".into()],
                ..bad
            },
            None,
        )
        .expect_err("lease");
        assert_eq!(
            e.msg,
            "bad lease ID (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex"
        );
    }

    #[test]
    fn argify_splits_like_etcdctl() {
        assert_eq!(
            argify(r#"put "a b" c\d  e"#).expect("argify"),
            ["put", "a b", "c\\d", "e"]
        );
        assert_eq!(
            argify(r#"put k "v\n\x41""#).expect("argify"),
            ["put", "k", "v\nA"]
        );
        // etcdctl trims single-quoted words by the number of words: 'abcd' among 3 words is [1:2].
        assert_eq!(argify("put k 'abcd'").expect("argify"), ["put", "k", "a"]);
    }

    #[test]
    fn compares_parse_like_etcdctl() {
        let c = parse_compare(r#"value("foo") = "bar""#).expect("cmp");
        assert_eq!((c.key.as_slice(), c.target, c.result), (&b"foo"[..], 3, 0));
        assert_eq!(
            c.target_union,
            Some(compare::TargetUnion::Value(b"bar".to_vec()))
        );
        let c = parse_compare(r#"mod("k") > "3""#).expect("cmp");
        assert_eq!(
            (c.target, c.result, c.target_union),
            (2, 1, Some(compare::TargetUnion::ModRevision(3)))
        );
        let c = parse_compare(r#"ver("k") != "0""#).expect("cmp");
        assert_eq!((c.target, c.result), (0, 3));
        assert_eq!(
            parse_compare("nonsense").expect_err("bad").msg,
            "malformed comparison: nonsense"
        );
        assert_eq!(
            parse_compare(r#"foo("k") = "1""#).expect_err("bad").msg,
            r#"malformed comparison: foo("k") = "1" (unknown target foo)"#
        );
        assert_eq!(
            parse_compare(r#"c("k") = "x""#).expect_err("bad").msg,
            r#"invalid txn compare request: c("k") = "x""#
        );
    }

    #[test]
    fn txn_reads_three_sections() {
        let input = "value(\"foo\") = \"x\"\nmod(\"a\") < \"9\"\n\nput a b --prev-kv\nget foo --prefix\n\ndel a\n\n";
        let mut prompts = Vec::new();
        let t = read_txn(&mut input.as_bytes(), |p| prompts.push(p.to_owned())).expect("txn");
        assert_eq!(
            (t.compare.len(), t.success.len(), t.failure.len()),
            (2, 2, 1)
        );
        assert_eq!(prompts.len(), 3);
        let Some(request_op::Request::RequestPut(p)) = &t.success[0].request else {
            panic!("put expected")
        };
        assert!(p.prev_kv);
        let e = read_txn(&mut "\nbogus x\n".as_bytes(), |_| {}).expect_err("bad op");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (ExitCode::InvalidInput, "invalid txn request: bogus x")
        );
        let e = read_txn(&mut "\n".as_bytes(), |_| {}).expect_err("eof");
        assert_eq!(e.msg, "EOF");
    }
}
