//! etcdctl 3.4's five printers (`-w simple|json|fields|table|protobuf`), one method per
//! response kind. Every method writes into an [`Out`] so tests can check the exact bytes.

use std::fmt::Write as _;

use prost::Message;
use xline_proto::etcdserverpb::{
    AlarmResponse, AuthRoleGetResponse, AuthRoleListResponse, AuthUserGetResponse,
    AuthUserListResponse, DeleteRangeResponse, HashKvResponse, LeaseGrantResponse,
    LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse,
    MemberAddResponse, MemberListResponse, PutResponse, RangeResponse, ResponseHeader,
    StatusResponse, TxnResponse, WatchResponse, response_op,
};
use xline_proto::mvccpb::KeyValue;

use crate::error::{CtlError, ExitCode};
use crate::gofmt;
use crate::json::{self, J, Obj};

/// Output format (`-w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines.
    Simple,
    /// Go `encoding/json` of the response.
    Json,
    /// `"Field" : value` lines.
    Fields,
    /// ASCII tables (only for the cluster/maintenance views).
    Table,
    /// The raw protobuf encoding of the response message.
    Protobuf,
}

impl Format {
    /// Parses a `-w` value; `None` for an unknown format.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "simple" => Self::Simple,
            "json" => Self::Json,
            "fields" => Self::Fields,
            "table" => Self::Table,
            "protobuf" => Self::Protobuf,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Json => "json",
            Self::Fields => "fields",
            Self::Table => "table",
            Self::Protobuf => "protobuf",
        }
    }
}

/// What a command prints: bytes for stdout and for stderr.
#[derive(Debug, Default)]
pub struct Out {
    /// Bytes for stdout.
    pub stdout: Vec<u8>,
    /// Bytes for stderr.
    pub stderr: Vec<u8>,
}

impl Out {
    /// Appends a line to stdout.
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.stdout.extend_from_slice(s.as_ref().as_bytes());
        self.stdout.push(b'\n');
    }
    /// Appends text to stdout.
    pub fn text(&mut self, s: impl AsRef<str>) {
        self.stdout.extend_from_slice(s.as_ref().as_bytes());
    }
    /// Appends a line to stderr.
    pub fn err_line(&mut self, s: impl AsRef<str>) {
        self.stderr.extend_from_slice(s.as_ref().as_bytes());
        self.stderr.push(b'\n');
    }
    /// Writes what was printed so far to the process's stdout/stderr (streaming commands).
    pub fn flush(&mut self) {
        use std::io::Write;
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(&self.stdout);
        let _ = so.flush();
        let mut se = std::io::stderr().lock();
        let _ = se.write_all(&self.stderr);
        self.stdout.clear();
        self.stderr.clear();
    }

    /// The stdout text (lossy), for tests.
    #[cfg(test)]
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// One `endpoint health` result.
#[derive(Debug, Clone)]
pub struct EpHealth {
    /// The endpoint as given.
    pub ep: String,
    /// Whether a read succeeded.
    pub health: bool,
    /// Go duration string of the read.
    pub took: String,
    /// The error, empty when healthy.
    pub error: String,
}

/// One `endpoint status` result.
#[derive(Debug, Clone)]
pub struct EpStatus {
    /// The endpoint.
    pub ep: String,
    /// Its Status response.
    pub resp: StatusResponse,
}

/// One `endpoint hashkv` result.
#[derive(Debug, Clone)]
pub struct EpHashKv {
    /// The endpoint.
    pub ep: String,
    /// Its HashKV response.
    pub resp: HashKvResponse,
}

/// The printer etcdctl builds from `-w` and `--hex`.
#[derive(Debug, Clone)]
pub struct Printer {
    /// The format.
    pub format: Format,
    /// `--hex`: print keys and values as `\xNN` escapes (simple format).
    pub hex: bool,
    /// `--print-value-only` (simple format).
    pub value_only: bool,
}

type R = Result<(), CtlError>;

fn unsupported(f: Format) -> CtlError {
    CtlError::new(
        ExitCode::BadFeature,
        format!("{} not supported as output format", f.name()),
    )
}

fn hdr_or_default(h: Option<&ResponseHeader>) -> ResponseHeader {
    h.cloned().unwrap_or_default()
}

/// JSON of a RangeResponse.
pub fn range_json(r: &RangeResponse) -> J {
    json::header_field(Obj::new(), r.header.as_ref())
        .arr_oe("kvs", json::kvs(&r.kvs))
        .b_oe("more", r.more)
        .i_oe("count", r.count)
        .done()
}

/// JSON of a PutResponse.
pub fn put_json(r: &PutResponse) -> J {
    json::header_field(Obj::new(), r.header.as_ref())
        .opt("prev_kv", r.prev_kv.as_ref().map(json::kv))
        .done()
}

/// JSON of a DeleteRangeResponse.
pub fn del_json(r: &DeleteRangeResponse) -> J {
    json::header_field(Obj::new(), r.header.as_ref())
        .i_oe("deleted", r.deleted)
        .arr_oe("prev_kvs", json::kvs(&r.prev_kvs))
        .done()
}

/// JSON of a TxnResponse.
pub fn txn_json(r: &TxnResponse) -> J {
    json::header_field(Obj::new(), r.header.as_ref())
        .b_oe("succeeded", r.succeeded)
        .arr_oe(
            "responses",
            r.responses.iter().map(json::response_op).collect(),
        )
        .done()
}

fn hex_escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 4);
    for byte in b {
        let _ = write!(s, "\\x{byte:02x}");
    }
    s
}

/// Go's `%v` of a string slice: `[a b c]`.
fn go_slice(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(" "))
}

/// etcd's `GetPrefixRangeEnd`.
pub fn prefix_range_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

/// Human name of an alarm type.
pub fn alarm_name(a: i32) -> &'static str {
    match a {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

fn perm_type_name(p: i32) -> &'static str {
    match p {
        0 => "READ",
        1 => "WRITE",
        _ => "READWRITE",
    }
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: Format, hex: bool) -> Self {
        Self {
            format,
            hex,
            value_only: false,
        }
    }

    fn json(&self, o: &mut Out, j: &J) {
        o.line(j.encode());
    }

    fn pb(&self, o: &mut Out, m: &impl Message) {
        o.stdout.extend_from_slice(&m.encode_to_vec());
    }

    fn print_kv(&self, o: &mut Out, kv: &KeyValue) {
        let (k, v) = if self.hex {
            (hex_escape(&kv.key), hex_escape(&kv.value))
        } else {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        };
        let mut bytes_k = kv.key.clone();
        let mut bytes_v = kv.value.clone();
        if self.hex {
            bytes_k = k.into_bytes();
            bytes_v = v.into_bytes();
        }
        if !self.value_only {
            o.stdout.extend_from_slice(&bytes_k);
            o.stdout.push(b'\n');
        }
        o.stdout.extend_from_slice(&bytes_v);
        o.stdout.push(b'\n');
    }

    fn f_hdr(o: &mut Out, h: Option<&ResponseHeader>) {
        let h = hdr_or_default(h);
        o.line(format!("\"ClusterID\" : {}", h.cluster_id));
        o.line(format!("\"MemberID\" : {}", h.member_id));
        o.line(format!("\"Revision\" : {}", h.revision));
        o.line(format!("\"RaftTerm\" : {}", h.raft_term));
    }

    fn f_kv(o: &mut Out, pfx: &str, kv: &KeyValue) {
        o.line(format!("\"{pfx}Key\" : {}", gofmt::quote(&kv.key)));
        o.line(format!("\"{pfx}CreateRevision\" : {}", kv.create_revision));
        o.line(format!("\"{pfx}ModRevision\" : {}", kv.mod_revision));
        o.line(format!("\"{pfx}Version\" : {}", kv.version));
        o.line(format!("\"{pfx}Value\" : {}", gofmt::quote(&kv.value)));
        o.line(format!("\"{pfx}Lease\" : {}", kv.lease));
    }

    /// `del`.
    pub fn del(&self, o: &mut Out, r: &DeleteRangeResponse) -> R {
        match self.format {
            Format::Simple => {
                o.line(r.deleted.to_string());
                for kv in &r.prev_kvs {
                    self.print_kv(o, kv);
                }
            }
            Format::Json => self.json(o, &del_json(r)),
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                o.line(format!("\"Deleted\" : {}", r.deleted));
                for kv in &r.prev_kvs {
                    Self::f_kv(o, "Prev", kv);
                }
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `get`.
    pub fn get(&self, o: &mut Out, r: &RangeResponse) -> R {
        match self.format {
            Format::Simple => {
                for kv in &r.kvs {
                    self.print_kv(o, kv);
                }
            }
            Format::Json => self.json(o, &range_json(r)),
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                for kv in &r.kvs {
                    Self::f_kv(o, "", kv);
                }
                o.line(format!("\"More\" : {}", r.more));
                o.line(format!("\"Count\" : {}", r.count));
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `put`.
    pub fn put(&self, o: &mut Out, r: &PutResponse) -> R {
        match self.format {
            Format::Simple => {
                o.line("OK");
                if let Some(kv) = &r.prev_kv {
                    self.print_kv(o, kv);
                }
            }
            Format::Json => self.json(o, &put_json(r)),
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                if let Some(kv) = &r.prev_kv {
                    Self::f_kv(o, "Prev", kv);
                }
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `txn`.
    pub fn txn(&self, o: &mut Out, r: &TxnResponse) -> R {
        match self.format {
            Format::Simple => {
                o.line(if r.succeeded { "SUCCESS" } else { "FAILURE" });
                for op in &r.responses {
                    o.line("");
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(d)) => self.del(o, d)?,
                        Some(response_op::Response::ResponsePut(p)) => self.put(o, p)?,
                        Some(response_op::Response::ResponseRange(g)) => self.get(o, g)?,
                        _ => o.line(format!("unexpected response {op:?}")),
                    }
                }
            }
            Format::Json => self.json(o, &txn_json(r)),
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                o.line(format!("\"Succeeded\" : {}", r.succeeded));
                for op in &r.responses {
                    match &op.response {
                        Some(response_op::Response::ResponseDeleteRange(d)) => self.del(o, d)?,
                        Some(response_op::Response::ResponsePut(p)) => self.put(o, p)?,
                        Some(response_op::Response::ResponseRange(g)) => self.get(o, g)?,
                        _ => o.line(format!(
                            "\"Unknown\" : {}",
                            gofmt::quote(format!("{op:?}").as_bytes())
                        )),
                    }
                }
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// One watch response (a batch of events).
    pub fn watch(&self, o: &mut Out, r: &WatchResponse) -> R {
        let event_name = |t: i32| if t == 1 { "DELETE" } else { "PUT" };
        match self.format {
            Format::Simple => {
                for e in &r.events {
                    o.line(event_name(e.r#type));
                    if let Some(kv) = &e.prev_kv {
                        self.print_kv(o, kv);
                    }
                    self.print_kv(o, e.kv.as_ref().unwrap_or(&KeyValue::default()));
                }
            }
            Format::Json => {
                // clientv3.WatchResponse: Go field names, zero values printed. clientv3 makes
                // the events slice for every response it dispatches, so none is `null`.
                let j = Obj::new()
                    .put("Header", json::header(&hdr_or_default(r.header.as_ref())))
                    .put("Events", J::Arr(r.events.iter().map(json::event).collect()))
                    .put("CompactRevision", J::I(r.compact_revision))
                    .put("Canceled", J::Bool(r.canceled))
                    .put("Created", J::Bool(r.created))
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                for e in &r.events {
                    o.line(format!("\"Type\" : {}", event_name(e.r#type)));
                    if let Some(kv) = &e.prev_kv {
                        Self::f_kv(o, "Prev", kv);
                    }
                    Self::f_kv(o, "", e.kv.as_ref().unwrap_or(&KeyValue::default()));
                }
            }
            Format::Protobuf => {
                let wr = WatchResponse {
                    header: Some(hdr_or_default(r.header.as_ref())),
                    events: r.events.clone(),
                    compact_revision: r.compact_revision,
                    canceled: r.canceled,
                    created: r.created,
                    ..WatchResponse::default()
                };
                self.pb(o, &wr);
            }
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `lease grant`.
    pub fn grant(&self, o: &mut Out, r: &LeaseGrantResponse) -> R {
        match self.format {
            Format::Simple => o.line(format!("lease {:016x} granted with TTL({}s)", r.id, r.ttl)),
            Format::Json => {
                let j = Obj::new()
                    .embed_header(r.header.as_ref())
                    .put("ID", J::I(r.id))
                    .put("TTL", J::I(r.ttl))
                    .put("Error", J::Str(r.error.clone()))
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                o.line(format!("\"ID\" : {}", r.id));
                o.line(format!("\"TTL\" : {}", r.ttl));
            }
            // The clientv3 struct embeds *pb.ResponseHeader, whose Marshal is promoted.
            Format::Protobuf => self.pb(o, &hdr_or_default(r.header.as_ref())),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `lease revoke`.
    pub fn revoke(&self, o: &mut Out, id: i64, r: &LeaseRevokeResponse) -> R {
        match self.format {
            Format::Simple => o.line(format!("lease {id:016x} revoked")),
            Format::Json => self.json(o, &json::header_field(Obj::new(), r.header.as_ref()).done()),
            Format::Fields => Self::f_hdr(o, r.header.as_ref()),
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `lease keep-alive` (one response).
    pub fn keep_alive(&self, o: &mut Out, r: &LeaseKeepAliveResponse) -> R {
        match self.format {
            Format::Simple => o.line(format!(
                "lease {:016x} keepalived with TTL({})",
                r.id, r.ttl
            )),
            Format::Json => {
                let j = Obj::new()
                    .embed_header(r.header.as_ref())
                    .put("ID", J::I(r.id))
                    .put("TTL", J::I(r.ttl))
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                o.line(format!("\"ID\" : {}", r.id));
                o.line(format!("\"TTL\" : {}", r.ttl));
            }
            // The clientv3 struct embeds *pb.ResponseHeader, whose Marshal is promoted.
            Format::Protobuf => self.pb(o, &hdr_or_default(r.header.as_ref())),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `lease timetolive`.
    pub fn time_to_live(&self, o: &mut Out, r: &LeaseTimeToLiveResponse, keys: bool) -> R {
        match self.format {
            Format::Simple => {
                if r.granted_ttl == 0 && r.ttl == -1 {
                    o.line(format!("lease {:016x} already expired", r.id));
                    return Ok(());
                }
                let mut txt = format!(
                    "lease {:016x} granted with TTL({}s), remaining({}s)",
                    r.id, r.granted_ttl, r.ttl
                );
                if keys {
                    let ks = r
                        .keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned());
                    let _ = write!(txt, ", attached keys({})", go_slice(ks));
                }
                o.line(txt);
            }
            Format::Json => {
                let keys = if r.keys.is_empty() {
                    J::Null
                } else {
                    J::Arr(r.keys.iter().map(|k| J::Str(gofmt::base64(k))).collect())
                };
                let j = Obj::new()
                    .embed_header(r.header.as_ref())
                    .put("id", J::I(r.id))
                    .put("ttl", J::I(r.ttl))
                    .put("granted-ttl", J::I(r.granted_ttl))
                    .put("keys", keys)
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                o.line(format!("\"ID\" : {}", r.id));
                o.line(format!("\"TTL\" : {}", r.ttl));
                o.line(format!("\"GrantedTTL\" : {}", r.granted_ttl));
                for k in &r.keys {
                    o.line(format!("\"Key\" : {}", gofmt::quote(k)));
                }
            }
            // The clientv3 struct embeds *pb.ResponseHeader, whose Marshal is promoted.
            Format::Protobuf => self.pb(o, &hdr_or_default(r.header.as_ref())),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `lease list`.
    pub fn leases(&self, o: &mut Out, r: &LeaseLeasesResponse) -> R {
        match self.format {
            Format::Simple => {
                o.line(format!("found {} leases", r.leases.len()));
                for l in &r.leases {
                    o.line(format!("{:016x}", l.id));
                }
            }
            Format::Json => {
                let j = Obj::new()
                    .embed_header(r.header.as_ref())
                    .put(
                        "leases",
                        J::Arr(
                            r.leases
                                .iter()
                                .map(|l| Obj::new().put("id", J::I(l.id)).done())
                                .collect(),
                        ),
                    )
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                for l in &r.leases {
                    o.line(format!("\"ID\" : {}", l.id));
                }
            }
            // The clientv3 struct embeds *pb.ResponseHeader, whose Marshal is promoted.
            Format::Protobuf => self.pb(o, &hdr_or_default(r.header.as_ref())),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `alarm list` / `alarm disarm`.
    pub fn alarm(&self, o: &mut Out, r: &AlarmResponse) -> R {
        match self.format {
            Format::Simple => {
                for a in &r.alarms {
                    o.line(format!(
                        "memberID:{} alarm:{} ",
                        a.member_id,
                        alarm_name(a.alarm)
                    ));
                }
            }
            Format::Json => {
                let j = json::header_field(Obj::new(), r.header.as_ref())
                    .arr_oe("alarms", r.alarms.iter().map(json::alarm_member).collect())
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                for a in &r.alarms {
                    o.line(format!("\"MemberID\" : {}", a.member_id));
                    o.line(format!("\"AlarmType\" : {}", alarm_name(a.alarm)));
                    o.line("");
                }
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    fn member_rows(r: &MemberListResponse) -> Vec<Vec<String>> {
        r.members
            .iter()
            .map(|m| {
                vec![
                    format!("{:x}", m.id),
                    if m.name.is_empty() {
                        "unstarted"
                    } else {
                        "started"
                    }
                    .to_owned(),
                    m.name.clone(),
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner.to_string(),
                ]
            })
            .collect()
    }

    /// `member add`.
    pub fn member_add(&self, o: &mut Out, r: &MemberAddResponse) -> R {
        match self.format {
            Format::Simple => {
                let id = r.member.as_ref().map_or(0, |m| m.id);
                let cid = hdr_or_default(r.header.as_ref()).cluster_id;
                o.line(format!("Member {id:16x} added to cluster {cid:16x}"));
            }
            Format::Json => {
                let j = json::header_field(Obj::new(), r.header.as_ref())
                    .opt("member", r.member.as_ref().map(json::member))
                    .arr_oe("members", r.members.iter().map(json::member).collect())
                    .done();
                self.json(o, &j);
            }
            Format::Protobuf => self.pb(o, r),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `member remove`/`update`/`promote`: `verb` is "removed from", "updated in" or
    /// "promoted in"; the response has a header and the member list.
    pub fn member_change(&self, o: &mut Out, verb: &str, id: u64, r: &MemberListResponse) -> R {
        match self.format {
            Format::Simple => {
                let cid = hdr_or_default(r.header.as_ref()).cluster_id;
                o.line(format!("Member {id:16x} {verb} cluster {cid:16x}"));
            }
            Format::Json => {
                let j = json::header_field(Obj::new(), r.header.as_ref())
                    .arr_oe("members", r.members.iter().map(json::member).collect())
                    .done();
                self.json(o, &j);
            }
            Format::Protobuf => self.pb(o, r),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `member list`.
    pub fn member_list(&self, o: &mut Out, r: &MemberListResponse) -> R {
        match self.format {
            Format::Simple => {
                for row in Self::member_rows(r) {
                    o.line(row.join(", "));
                }
            }
            Format::Json => {
                let j = json::header_field(Obj::new(), r.header.as_ref())
                    .arr_oe("members", r.members.iter().map(json::member).collect())
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                for m in &r.members {
                    o.line(format!("\"ID\" : {}", m.id));
                    o.line(format!("\"Name\" : {}", gofmt::quote(m.name.as_bytes())));
                    for u in &m.peer_ur_ls {
                        o.line(format!("\"PeerURL\" : {}", gofmt::quote(u.as_bytes())));
                    }
                    for u in &m.client_ur_ls {
                        o.line(format!("\"ClientURL\" : {}", gofmt::quote(u.as_bytes())));
                    }
                    o.line(format!("\"IsLearner\" : {}", m.is_learner));
                    o.line("");
                }
            }
            Format::Table => o.text(gofmt::table(
                &[
                    "ID",
                    "Status",
                    "Name",
                    "Peer Addrs",
                    "Client Addrs",
                    "Is Learner",
                ],
                &Self::member_rows(r),
            )),
            Format::Protobuf => self.pb(o, r),
        }
        Ok(())
    }

    /// `endpoint health`.
    pub fn endpoint_health(&self, o: &mut Out, hs: &[EpHealth]) -> R {
        match self.format {
            Format::Simple => {
                for h in hs {
                    if h.error.is_empty() {
                        o.err_line(format!(
                            "{} is healthy: successfully committed proposal: took = {}",
                            h.ep, h.took
                        ));
                    } else {
                        o.err_line(format!(
                            "{} is unhealthy: failed to commit proposal: {}",
                            h.ep, h.error
                        ));
                    }
                }
            }
            Format::Json => {
                let j = J::Arr(
                    hs.iter()
                        .map(|h| {
                            Obj::new()
                                .put("endpoint", J::Str(h.ep.clone()))
                                .put("health", J::Bool(h.health))
                                .put("took", J::Str(h.took.clone()))
                                .s_oe("error", &h.error)
                                .done()
                        })
                        .collect(),
                );
                self.json(o, &j);
            }
            Format::Fields => {
                for h in hs {
                    o.line(format!("\"Endpoint\" : {}", gofmt::quote(h.ep.as_bytes())));
                    o.line(format!("\"Health\" : {}", h.health));
                    o.line(format!("\"Took\" : {}", h.took));
                    o.line(format!("\"Error\" : {}", h.error));
                    o.line("");
                }
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = hs
                    .iter()
                    .map(|h| {
                        vec![
                            h.ep.clone(),
                            h.health.to_string(),
                            h.took.clone(),
                            h.error.clone(),
                        ]
                    })
                    .collect();
                o.text(gofmt::table(
                    &["endpoint", "health", "took", "error"],
                    &rows,
                ));
            }
            Format::Protobuf => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    fn status_rows(list: &[EpStatus]) -> Vec<Vec<String>> {
        list.iter()
            .map(|s| {
                let h = hdr_or_default(s.resp.header.as_ref());
                vec![
                    s.ep.clone(),
                    format!("{:x}", h.member_id),
                    s.resp.version.clone(),
                    gofmt::humanize_bytes(s.resp.db_size as u64),
                    (s.resp.leader == h.member_id).to_string(),
                    s.resp.is_learner.to_string(),
                    s.resp.raft_term.to_string(),
                    s.resp.raft_index.to_string(),
                    s.resp.raft_applied_index.to_string(),
                    s.resp.errors.join(", "),
                ]
            })
            .collect()
    }

    /// `endpoint status`.
    pub fn endpoint_status(&self, o: &mut Out, list: &[EpStatus]) -> R {
        match self.format {
            Format::Simple => {
                for row in Self::status_rows(list) {
                    o.line(row.join(", "));
                }
            }
            Format::Json => {
                let j = J::Arr(
                    list.iter()
                        .map(|s| {
                            Obj::new()
                                .put("Endpoint", J::Str(s.ep.clone()))
                                .put("Status", json::status(&s.resp))
                                .done()
                        })
                        .collect(),
                );
                self.json(o, &j);
            }
            Format::Fields => {
                for s in list {
                    Self::f_hdr(o, s.resp.header.as_ref());
                    o.line(format!(
                        "\"Version\" : {}",
                        gofmt::quote(s.resp.version.as_bytes())
                    ));
                    o.line(format!("\"DBSize\" : {}", s.resp.db_size));
                    o.line(format!("\"Leader\" : {}", s.resp.leader));
                    o.line(format!("\"IsLearner\" : {}", s.resp.is_learner));
                    o.line(format!("\"RaftIndex\" : {}", s.resp.raft_index));
                    o.line(format!("\"RaftTerm\" : {}", s.resp.raft_term));
                    o.line(format!(
                        "\"RaftAppliedIndex\" : {}",
                        s.resp.raft_applied_index
                    ));
                    o.line(format!(
                        "\"Errors\" : {}",
                        go_slice(s.resp.errors.iter().cloned())
                    ));
                    o.line(format!("\"Endpoint\" : {}", gofmt::quote(s.ep.as_bytes())));
                    o.line("");
                }
            }
            Format::Table => o.text(gofmt::table(
                &[
                    "endpoint",
                    "ID",
                    "version",
                    "db size",
                    "is leader",
                    "is learner",
                    "raft term",
                    "raft index",
                    "raft applied index",
                    "errors",
                ],
                &Self::status_rows(list),
            )),
            Format::Protobuf => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `endpoint hashkv`.
    pub fn endpoint_hashkv(&self, o: &mut Out, list: &[EpHashKv]) -> R {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|h| vec![h.ep.clone(), h.resp.hash.to_string()])
            .collect();
        match self.format {
            Format::Simple => {
                for row in rows {
                    o.line(row.join(", "));
                }
            }
            Format::Json => {
                let j = J::Arr(
                    list.iter()
                        .map(|h| {
                            Obj::new()
                                .put("Endpoint", J::Str(h.ep.clone()))
                                .put("HashKV", json::hash_kv(&h.resp))
                                .done()
                        })
                        .collect(),
                );
                self.json(o, &j);
            }
            Format::Fields => {
                for h in list {
                    Self::f_hdr(o, h.resp.header.as_ref());
                    o.line(format!("\"Endpoint\" : {}", gofmt::quote(h.ep.as_bytes())));
                    o.line(format!("\"Hash\" : {}", h.resp.hash));
                    o.line("");
                }
            }
            Format::Table => o.text(gofmt::table(&["endpoint", "hash"], &rows)),
            Format::Protobuf => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `move-leader`.
    pub fn move_leader(
        &self,
        o: &mut Out,
        leader: u64,
        target: u64,
        h: Option<&ResponseHeader>,
    ) -> R {
        match self.format {
            Format::Simple => o.line(format!(
                "Leadership transferred from {leader:x} to {target:x}"
            )),
            Format::Json => self.json(o, &json::header_field(Obj::new(), h).done()),
            Format::Protobuf => {
                let r = xline_proto::etcdserverpb::MoveLeaderResponse { header: h.cloned() };
                self.pb(o, &r);
            }
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// A response that is only a header, for commands whose simple output is `simple`
    /// (user/role add/delete/grant/revoke/passwd, auth enable/disable); `pb` is the message.
    pub fn header_only(
        &self,
        o: &mut Out,
        simple: &str,
        h: Option<&ResponseHeader>,
        pb: &impl Message,
    ) -> R {
        match self.format {
            Format::Simple => o.line(simple),
            Format::Json => self.json(o, &json::header_field(Obj::new(), h).done()),
            Format::Fields => Self::f_hdr(o, h),
            Format::Protobuf => self.pb(o, pb),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `role get`.
    pub fn role_get(&self, o: &mut Out, role: &str, r: &AuthRoleGetResponse) -> R {
        match self.format {
            Format::Simple => {
                o.line(format!("Role {role}"));
                let range = |o: &mut Out, key: &[u8], end: &[u8]| {
                    let k = String::from_utf8_lossy(key);
                    let e = String::from_utf8_lossy(end);
                    let mut s = if end == [0] {
                        format!("\t[{k}, <open ended>")
                    } else {
                        format!("\t[{k}, {e})")
                    };
                    if prefix_range_end(key) == end {
                        let _ = write!(s, " (prefix {k})");
                    }
                    o.line(s);
                };
                for (title, types) in [("KV Read:", [0, 2]), ("KV Write:", [1, 2])] {
                    o.line(title);
                    for p in r.perm.iter().filter(|p| types.contains(&p.perm_type)) {
                        if p.range_end.is_empty() {
                            o.line(format!("\t{}", String::from_utf8_lossy(&p.key)));
                        } else {
                            range(o, &p.key, &p.range_end);
                        }
                    }
                }
            }
            Format::Json => {
                let j = json::header_field(Obj::new(), r.header.as_ref())
                    .arr_oe("perm", r.perm.iter().map(json::permission).collect())
                    .done();
                self.json(o, &j);
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                for p in &r.perm {
                    o.line(format!("\"PermType\" :  {}", perm_type_name(p.perm_type)));
                    o.line(format!("\"Key\" : {}", gofmt::quote(&p.key)));
                    o.line(format!("\"RangeEnd\" : {}", gofmt::quote(&p.range_end)));
                }
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `role list`.
    pub fn role_list(&self, o: &mut Out, r: &AuthRoleListResponse) -> R {
        match self.format {
            Format::Simple => {
                for role in &r.roles {
                    o.line(role);
                }
            }
            Format::Json => {
                self.json(
                    o,
                    &json::header_field(Obj::new(), r.header.as_ref())
                        .strs_oe("roles", &r.roles)
                        .done(),
                );
            }
            Format::Fields => {
                Self::f_hdr(o, r.header.as_ref());
                let mut s = String::from("\"Roles\" :");
                for role in &r.roles {
                    let _ = write!(s, " {}", gofmt::quote(role.as_bytes()));
                }
                o.line(s);
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `user get`.
    pub fn user_get(&self, o: &mut Out, user: &str, r: &AuthUserGetResponse) -> R {
        match self.format {
            Format::Simple => {
                o.line(format!("User: {user}"));
                let mut s = String::from("Roles:");
                for role in &r.roles {
                    let _ = write!(s, " {role}");
                }
                o.line(s);
            }
            Format::Json => {
                self.json(
                    o,
                    &json::header_field(Obj::new(), r.header.as_ref())
                        .strs_oe("roles", &r.roles)
                        .done(),
                );
            }
            Format::Fields => {
                // etcdctl 3.4's fields printer has no UserGet and falls back to "fields not supported".
                return Err(unsupported(self.format));
            }
            Format::Protobuf => self.pb(o, r),
            Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }

    /// `user list`.
    pub fn user_list(&self, o: &mut Out, r: &AuthUserListResponse) -> R {
        match self.format {
            Format::Simple => {
                for u in &r.users {
                    o.line(u);
                }
            }
            Format::Json => {
                self.json(
                    o,
                    &json::header_field(Obj::new(), r.header.as_ref())
                        .strs_oe("users", &r.users)
                        .done(),
                );
            }
            Format::Protobuf => self.pb(o, r),
            Format::Fields | Format::Table => return Err(unsupported(self.format)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use xline_proto::etcdserverpb::{LeaseStatus, Member, ResponseOp};

    use super::*;

    fn hdr() -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: 15118495548433857066,
            member_id: 13668033151171901709,
            revision: 3,
            raft_term: 2,
        })
    }

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: v.into(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 0,
        }
    }

    fn print(format: Format, f: impl FnOnce(&Printer, &mut Out) -> R) -> String {
        let mut o = Out::default();
        f(&Printer::new(format, false), &mut o).expect("print");
        o.stdout_str()
    }

    #[test]
    fn get_json_matches_etcdctl() {
        let r = RangeResponse {
            header: hdr(),
            kvs: vec![kv("foo", "baz")],
            more: false,
            count: 1,
        };
        assert_eq!(
            print(Format::Json, |p, o| p.get(o, &r)),
            "{\"header\":{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":3,\"raft_term\":2},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":3,\"version\":2,\"value\":\"YmF6\"}],\"count\":1}\n"
        );
    }

    #[test]
    fn get_simple_and_hex() {
        let r = RangeResponse {
            header: hdr(),
            kvs: vec![kv("foo", "baz")],
            more: false,
            count: 1,
        };
        assert_eq!(print(Format::Simple, |p, o| p.get(o, &r)), "foo\nbaz\n");
        let mut o = Out::default();
        Printer::new(Format::Simple, true)
            .get(&mut o, &r)
            .expect("print");
        assert_eq!(o.stdout_str(), "\\x66\\x6f\\x6f\n\\x62\\x61\\x7a\n");
        let mut o = Out::default();
        Printer {
            format: Format::Simple,
            hex: false,
            value_only: true,
        }
        .get(&mut o, &r)
        .expect("print");
        assert_eq!(o.stdout_str(), "baz\n");
    }

    #[test]
    fn get_fields_and_table() {
        let r = RangeResponse {
            header: hdr(),
            kvs: vec![kv("foo", "b\"z")],
            more: false,
            count: 1,
        };
        assert_eq!(
            print(Format::Fields, |p, o| p.get(o, &r)),
            "\"ClusterID\" : 15118495548433857066\n\"MemberID\" : 13668033151171901709\n\"Revision\" : 3\n\"RaftTerm\" : 2\n\
             \"Key\" : \"foo\"\n\"CreateRevision\" : 2\n\"ModRevision\" : 3\n\"Version\" : 2\n\"Value\" : \"b\\\"z\"\n\"Lease\" : 0\n\
             \"More\" : false\n\"Count\" : 1\n"
        );
        let err = Printer::new(Format::Table, false)
            .get(&mut Out::default(), &r)
            .expect_err("table");
        assert_eq!(err.to_string(), "table not supported as output format");
        assert_eq!(err.code, ExitCode::BadFeature);
    }

    #[test]
    fn txn_json_uses_go_oneof_names() {
        let r = TxnResponse {
            header: hdr(),
            succeeded: false,
            responses: vec![ResponseOp {
                response: Some(response_op::Response::ResponseRange(RangeResponse {
                    header: Some(ResponseHeader {
                        revision: 4,
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            }],
        };
        assert_eq!(
            print(Format::Json, |p, o| p.txn(o, &r)),
            "{\"header\":{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":3,\"raft_term\":2},\"responses\":[{\"Response\":{\"ResponseRange\":{\"header\":{\"revision\":4}}}}]}\n"
        );
        assert_eq!(print(Format::Simple, |p, o| p.txn(o, &r)), "FAILURE\n\n");
    }

    #[test]
    fn lease_printers_match_etcdctl() {
        let g = LeaseGrantResponse {
            header: hdr(),
            id: 4111120161146776072,
            ttl: 100,
            error: String::new(),
        };
        assert_eq!(
            print(Format::Json, |p, o| p.grant(o, &g)),
            "{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":3,\"raft_term\":2,\"ID\":4111120161146776072,\"TTL\":100,\"Error\":\"\"}\n"
        );
        assert_eq!(
            print(Format::Simple, |p, o| p.grant(o, &g)),
            "lease 390da2014219aa08 granted with TTL(100s)\n"
        );
        let t = LeaseTimeToLiveResponse {
            header: hdr(),
            id: 0x1234,
            ttl: -1,
            granted_ttl: 0,
            keys: vec![],
        };
        assert_eq!(
            print(Format::Simple, |p, o| p.time_to_live(o, &t, false)),
            "lease 0000000000001234 already expired\n"
        );
        assert_eq!(
            print(Format::Json, |p, o| p.time_to_live(o, &t, false)),
            "{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":3,\"raft_term\":2,\"id\":4660,\"ttl\":-1,\"granted-ttl\":0,\"keys\":null}\n"
        );
        let t = LeaseTimeToLiveResponse {
            header: hdr(),
            id: 1,
            ttl: 40,
            granted_ttl: 50,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        };
        assert_eq!(
            print(Format::Simple, |p, o| p.time_to_live(o, &t, true)),
            "lease 0000000000000001 granted with TTL(50s), remaining(40s), attached keys([a b])\n"
        );
        let l = LeaseLeasesResponse {
            header: hdr(),
            leases: vec![LeaseStatus { id: 10 }],
        };
        assert_eq!(
            print(Format::Simple, |p, o| p.leases(o, &l)),
            "found 1 leases\n000000000000000a\n"
        );
        let mut o = Out::default();
        Printer::new(Format::Protobuf, false)
            .grant(&mut o, &g)
            .expect("pb");
        assert_eq!(
            o.stdout,
            hdr().expect("header").encode_to_vec(),
            "only the embedded header is marshalled"
        );
    }

    #[test]
    fn member_list_in_every_format() {
        let r = MemberListResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 13668033151171901709,
                revision: 0,
                raft_term: 2,
            }),
            members: vec![Member {
                id: 13668033151171901709,
                name: "e1".into(),
                peer_ur_ls: vec!["http://127.0.0.1:23801".into()],
                client_ur_ls: vec!["http://127.0.0.1:23791".into()],
                is_learner: false,
            }],
        };
        assert_eq!(
            print(Format::Simple, |p, o| p.member_list(o, &r)),
            "bdae9bbc11dd390d, started, e1, http://127.0.0.1:23801, http://127.0.0.1:23791, false\n"
        );
        assert_eq!(
            print(Format::Json, |p, o| p.member_list(o, &r)),
            "{\"header\":{\"cluster_id\":1,\"member_id\":13668033151171901709,\"raft_term\":2},\"members\":[{\"ID\":13668033151171901709,\"name\":\"e1\",\"peerURLs\":[\"http://127.0.0.1:23801\"],\"clientURLs\":[\"http://127.0.0.1:23791\"]}]}\n"
        );
        assert_eq!(
            print(Format::Table, |p, o| p.member_list(o, &r)),
            "+------------------+---------+------+------------------------+------------------------+------------+\n\
             |        ID        | STATUS  | NAME |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |\n\
             +------------------+---------+------+------------------------+------------------------+------------+\n\
             | bdae9bbc11dd390d | started |   e1 | http://127.0.0.1:23801 | http://127.0.0.1:23791 |      false |\n\
             +------------------+---------+------+------------------------+------------------------+------------+\n"
        );
        let mut o = Out::default();
        Printer::new(Format::Protobuf, false)
            .member_list(&mut o, &r)
            .expect("pb");
        assert_eq!(
            MemberListResponse::decode(o.stdout.as_slice()).expect("decode"),
            r
        );
    }

    #[test]
    fn watch_json_uses_client_struct_names() {
        let r = WatchResponse {
            header: hdr(),
            events: vec![xline_proto::mvccpb::Event {
                r#type: 0,
                kv: Some(kv("foo", "<a&b>")),
                prev_kv: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            print(Format::Json, |p, o| p.watch(o, &r)),
            "{\"Header\":{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":3,\"raft_term\":2},\"Events\":[{\"kv\":{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":3,\"version\":2,\"value\":\"PGEmYj4=\"}}],\"CompactRevision\":0,\"Canceled\":false,\"Created\":false}\n"
        );
        assert_eq!(
            print(Format::Simple, |p, o| p.watch(o, &r)),
            "PUT\nfoo\n<a&b>\n"
        );
        // clientv3 hands over a made slice even without events (progress, cancel): `[]`.
        let progress = WatchResponse {
            header: hdr(),
            ..Default::default()
        };
        assert!(
            print(Format::Json, |p, o| p.watch(o, &progress)).contains("\"Events\":[],"),
            "{}",
            print(Format::Json, |p, o| p.watch(o, &progress))
        );
    }

    #[test]
    fn role_get_simple_shows_ranges() {
        use xline_proto::authpb::Permission;
        let r = AuthRoleGetResponse {
            header: hdr(),
            perm: vec![
                Permission {
                    perm_type: 2,
                    key: b"foo".to_vec(),
                    range_end: b"fop".to_vec(),
                },
                Permission {
                    perm_type: 0,
                    key: b"k".to_vec(),
                    range_end: vec![],
                },
                Permission {
                    perm_type: 1,
                    key: b"a".to_vec(),
                    range_end: vec![0],
                },
            ],
        };
        assert_eq!(
            print(Format::Simple, |p, o| p.role_get(o, "r", &r)),
            "Role r\nKV Read:\n\t[foo, fop) (prefix foo)\n\tk\nKV Write:\n\t[foo, fop) (prefix foo)\n\t[a, <open ended>\n"
        );
    }
}
