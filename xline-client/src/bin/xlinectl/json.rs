//! The JSON etcdctl's `-w json` prints: Go's `encoding/json` applied to etcd 3.4's generated
//! Go structs (field names from the `.proto` field names, every field `omitempty`) and to a few
//! client-side wrapper structs whose field names are Go's (`ID`, `TTL`, `Header`, ...) and which
//! print zero values. Only the fields etcd 3.4 knows are printed.

use xline_proto::authpb::{Permission, Role, User};
use xline_proto::etcdserverpb::{
    AlarmMember, HashKvResponse, Member, ResponseHeader, ResponseOp, StatusResponse, response_op,
};
use xline_proto::mvccpb::{Event, KeyValue};

use crate::gofmt;

/// A JSON value, objects keeping their field order.
#[derive(Debug, Clone)]
pub enum J {
    /// `null`
    Null,
    /// `true`/`false`
    Bool(bool),
    /// An unsigned number.
    U(u64),
    /// A signed number.
    I(i64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<J>),
    /// An object.
    Obj(Vec<(&'static str, J)>),
}

impl J {
    /// The compact encoding, as `json.Marshal` produces it.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::U(n) => out.push_str(&n.to_string()),
            J::I(n) => out.push_str(&n.to_string()),
            J::Str(s) => gofmt::json_string(s, out),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    gofmt::json_string(name, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Builds an object; the `*_oe` methods skip zero values (`omitempty`).
#[derive(Debug, Default)]
pub struct Obj(Vec<(&'static str, J)>);

impl Obj {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }
    /// Any value, always printed.
    pub fn put(mut self, name: &'static str, v: J) -> Self {
        self.0.push((name, v));
        self
    }
    /// An optional value, printed when present.
    pub fn opt(self, name: &'static str, v: Option<J>) -> Self {
        match v {
            Some(v) => self.put(name, v),
            None => self,
        }
    }
    /// An unsigned number, omitted when zero.
    pub fn u_oe(self, name: &'static str, v: u64) -> Self {
        if v == 0 {
            self
        } else {
            self.put(name, J::U(v))
        }
    }
    /// A signed number, omitted when zero.
    pub fn i_oe(self, name: &'static str, v: i64) -> Self {
        if v == 0 {
            self
        } else {
            self.put(name, J::I(v))
        }
    }
    /// A bool, omitted when false.
    pub fn b_oe(self, name: &'static str, v: bool) -> Self {
        if v {
            self.put(name, J::Bool(true))
        } else {
            self
        }
    }
    /// A string, omitted when empty.
    pub fn s_oe(self, name: &'static str, v: &str) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(name, J::Str(v.to_owned()))
        }
    }
    /// Bytes (base64), omitted when empty.
    pub fn bytes_oe(self, name: &'static str, v: &[u8]) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(name, J::Str(gofmt::base64(v)))
        }
    }
    /// An array, omitted when empty.
    pub fn arr_oe(self, name: &'static str, v: Vec<J>) -> Self {
        if v.is_empty() {
            self
        } else {
            self.put(name, J::Arr(v))
        }
    }
    /// A string array, omitted when empty.
    pub fn strs_oe(self, name: &'static str, v: &[String]) -> Self {
        self.arr_oe(name, v.iter().map(|s| J::Str(s.clone())).collect())
    }
    /// The fields of an embedded `*pb.ResponseHeader` (flattened, as Go embeds it).
    pub fn embed_header(mut self, h: Option<&ResponseHeader>) -> Self {
        if let Some(J::Obj(fields)) = h.map(header) {
            self.0.extend(fields);
        }
        self
    }
    /// The finished object.
    pub fn done(self) -> J {
        J::Obj(self.0)
    }
}

/// `etcdserverpb.ResponseHeader`.
pub fn header(h: &ResponseHeader) -> J {
    Obj::new()
        .u_oe("cluster_id", h.cluster_id)
        .u_oe("member_id", h.member_id)
        .i_oe("revision", h.revision)
        .u_oe("raft_term", h.raft_term)
        .done()
}

/// The `header` field of a response.
pub fn header_field(o: Obj, h: Option<&ResponseHeader>) -> Obj {
    o.opt("header", h.map(header))
}

/// `mvccpb.KeyValue`.
pub fn kv(kv: &KeyValue) -> J {
    Obj::new()
        .bytes_oe("key", &kv.key)
        .i_oe("create_revision", kv.create_revision)
        .i_oe("mod_revision", kv.mod_revision)
        .i_oe("version", kv.version)
        .bytes_oe("value", &kv.value)
        .i_oe("lease", kv.lease)
        .done()
}

/// A list of key-values.
pub fn kvs(list: &[KeyValue]) -> Vec<J> {
    list.iter().map(kv).collect()
}

/// `mvccpb.Event`.
pub fn event(e: &Event) -> J {
    Obj::new()
        .i_oe("type", i64::from(e.r#type))
        .opt("kv", e.kv.as_ref().map(kv))
        .opt("prev_kv", e.prev_kv.as_ref().map(kv))
        .done()
}

/// `etcdserverpb.ResponseOp`: the oneof prints as Go's interface field `Response` holding the
/// wrapper struct, whose single field keeps its Go name.
pub fn response_op(op: &ResponseOp) -> J {
    let inner = match &op.response {
        None => J::Null,
        Some(response_op::Response::ResponseRange(r)) => Obj::new()
            .put("ResponseRange", crate::printer::range_json(r))
            .done(),
        Some(response_op::Response::ResponsePut(r)) => Obj::new()
            .put("ResponsePut", crate::printer::put_json(r))
            .done(),
        Some(response_op::Response::ResponseDeleteRange(r)) => Obj::new()
            .put("ResponseDeleteRange", crate::printer::del_json(r))
            .done(),
        Some(response_op::Response::ResponseTxn(r)) => Obj::new()
            .put("ResponseTxn", crate::printer::txn_json(r))
            .done(),
    };
    Obj::new().put("Response", inner).done()
}

/// `etcdserverpb.Member`.
pub fn member(m: &Member) -> J {
    Obj::new()
        .u_oe("ID", m.id)
        .s_oe("name", &m.name)
        .strs_oe("peerURLs", &m.peer_ur_ls)
        .strs_oe("clientURLs", &m.client_ur_ls)
        .b_oe("isLearner", m.is_learner)
        .done()
}

/// `etcdserverpb.AlarmMember`.
pub fn alarm_member(a: &AlarmMember) -> J {
    Obj::new()
        .u_oe("memberID", a.member_id)
        .i_oe("alarm", i64::from(a.alarm))
        .done()
}

/// `etcdserverpb.StatusResponse` (etcd 3.4's fields).
pub fn status(s: &StatusResponse) -> J {
    header_field(Obj::new(), s.header.as_ref())
        .s_oe("version", &s.version)
        .i_oe("dbSize", s.db_size)
        .u_oe("leader", s.leader)
        .u_oe("raftIndex", s.raft_index)
        .u_oe("raftTerm", s.raft_term)
        .u_oe("raftAppliedIndex", s.raft_applied_index)
        .strs_oe("errors", &s.errors)
        .i_oe("dbSizeInUse", s.db_size_in_use)
        .b_oe("isLearner", s.is_learner)
        .done()
}

/// `etcdserverpb.HashKVResponse` (etcd 3.4's fields).
pub fn hash_kv(h: &HashKvResponse) -> J {
    header_field(Obj::new(), h.header.as_ref())
        .u_oe("hash", u64::from(h.hash))
        .i_oe("compact_revision", h.compact_revision)
        .done()
}

/// `authpb.Permission`.
pub fn permission(p: &Permission) -> J {
    Obj::new()
        .i_oe("permType", i64::from(p.perm_type))
        .bytes_oe("key", &p.key)
        .bytes_oe("range_end", &p.range_end)
        .done()
}

/// `authpb.User` (unused by etcdctl's printers; kept for completeness of the auth types).
#[allow(dead_code)]
pub fn user(u: &User) -> J {
    Obj::new()
        .bytes_oe("name", &u.name)
        .strs_oe("roles", &u.roles)
        .done()
}

/// `authpb.Role` (unused by etcdctl's printers; kept for completeness of the auth types).
#[allow(dead_code)]
pub fn role(r: &Role) -> J {
    Obj::new()
        .bytes_oe("name", &r.name)
        .arr_oe(
            "keyPermission",
            r.key_permission.iter().map(permission).collect(),
        )
        .done()
}
