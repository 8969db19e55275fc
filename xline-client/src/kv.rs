//! The KV service: typed request builders for Range, Put, DeleteRange, Txn and Compact.

use std::sync::Arc;

use xline_proto::etcdserverpb::kv_client::KvClient as RawKv;
use xline_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare as RawCompare, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse, compare, request_op,
};

pub use xline_proto::etcdserverpb::range_request::{SortOrder, SortTarget};

use crate::conn::{Inner, Retry};
use crate::error::Result;

/// The range end that covers every key with prefix `key` (etcd's `GetPrefixRangeEnd`).
pub(crate) fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            if let Some(b) = end.last_mut() {
                *b = last + 1;
            }
            return end;
        }
        end.pop();
    }
    // Every byte was 0xff (or the key is empty): the range to the end of the keyspace.
    vec![0]
}

/// How a key range is given, resolved against the key when the request is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// Just the key.
    #[default]
    Key,
    /// `[key, end)`.
    End(Vec<u8>),
    /// Every key with the key as prefix.
    Prefix,
    /// Every key `>= key`.
    FromKey,
    /// Every key (the key is replaced by `\0`).
    All,
}

impl RangeSpec {
    /// The `(key, range_end)` pair to send.
    pub(crate) fn resolve(&self, key: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        match self {
            RangeSpec::Key => (key, Vec::new()),
            RangeSpec::End(end) => (key, end.clone()),
            RangeSpec::Prefix => {
                if key.is_empty() {
                    (vec![0], vec![0])
                } else {
                    let end = prefix_end(&key);
                    (key, end)
                }
            }
            RangeSpec::FromKey => {
                if key.is_empty() {
                    (vec![0], vec![0])
                } else {
                    (key, vec![0])
                }
            }
            RangeSpec::All => (vec![0], vec![0]),
        }
    }
}

/// Options of [`KvClient::get`] (etcd's Range).
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    range: RangeSpec,
    req: RangeRequest,
}

range_methods!(GetOptions, "Gets", with_range, with_all_keys);

impl GetOptions {
    /// A plain single-key, linearizable get.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns at most `limit` keys (0: no limit).
    #[must_use]
    pub fn with_limit(mut self, limit: i64) -> Self {
        self.req.limit = limit;
        self
    }

    /// Reads at revision `rev` (0: the latest).
    #[must_use]
    pub fn with_rev(mut self, rev: i64) -> Self {
        self.req.revision = rev;
        self
    }

    /// Orders the results by `target` in `order`.
    #[must_use]
    pub fn with_sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.req.sort_target = target as i32;
        self.req.sort_order = order as i32;
        self
    }

    /// Serves the read from the member's local state (not linearizable).
    #[must_use]
    pub fn with_serializable(mut self) -> Self {
        self.req.serializable = true;
        self
    }

    /// Returns keys without values.
    #[must_use]
    pub fn with_keys_only(mut self) -> Self {
        self.req.keys_only = true;
        self
    }

    /// Returns only the count of keys.
    #[must_use]
    pub fn with_count_only(mut self) -> Self {
        self.req.count_only = true;
        self
    }

    /// Only keys modified at or after `rev`.
    #[must_use]
    pub fn with_min_mod_revision(mut self, rev: i64) -> Self {
        self.req.min_mod_revision = rev;
        self
    }

    /// Only keys modified at or before `rev`.
    #[must_use]
    pub fn with_max_mod_revision(mut self, rev: i64) -> Self {
        self.req.max_mod_revision = rev;
        self
    }

    /// Only keys created at or after `rev`.
    #[must_use]
    pub fn with_min_create_revision(mut self, rev: i64) -> Self {
        self.req.min_create_revision = rev;
        self
    }

    /// Only keys created at or before `rev`.
    #[must_use]
    pub fn with_max_create_revision(mut self, rev: i64) -> Self {
        self.req.max_create_revision = rev;
        self
    }

    /// The request these options make for `key`.
    pub fn into_request(self, key: impl Into<Vec<u8>>) -> RangeRequest {
        let (key, range_end) = self.range.resolve(key.into());
        RangeRequest {
            key,
            range_end,
            ..self.req
        }
    }
}

/// Options of [`KvClient::put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    req: PutRequest,
}

impl PutOptions {
    /// A plain put.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches the key to lease `id`.
    #[must_use]
    pub fn with_lease(mut self, id: i64) -> Self {
        self.req.lease = id;
        self
    }

    /// Returns the previous key-value.
    #[must_use]
    pub fn with_prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }

    /// Keeps the current value (the key must exist).
    #[must_use]
    pub fn with_ignore_value(mut self) -> Self {
        self.req.ignore_value = true;
        self
    }

    /// Keeps the current lease (the key must exist).
    #[must_use]
    pub fn with_ignore_lease(mut self) -> Self {
        self.req.ignore_lease = true;
        self
    }

    /// The request these options make.
    pub fn into_request(self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> PutRequest {
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..self.req
        }
    }
}

/// Options of [`KvClient::delete`] (etcd's DeleteRange).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    range: RangeSpec,
    prev_kv: bool,
}

range_methods!(DeleteOptions, "Deletes", with_range, with_all_keys);

impl DeleteOptions {
    /// Deletes just the key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the deleted key-values.
    #[must_use]
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// The request these options make for `key`.
    pub fn into_request(self, key: impl Into<Vec<u8>>) -> DeleteRangeRequest {
        let (key, range_end) = self.range.resolve(key.into());
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        }
    }
}

/// Options of [`KvClient::compact`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactionOptions {
    physical: bool,
}

impl CompactionOptions {
    /// A logical compaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until the compaction is physically applied.
    #[must_use]
    pub fn with_physical(mut self) -> Self {
        self.physical = true;
        self
    }
}

/// A comparison operator of a [`Compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

impl From<CompareOp> for compare::CompareResult {
    fn from(op: CompareOp) -> Self {
        match op {
            CompareOp::Equal => compare::CompareResult::Equal,
            CompareOp::Greater => compare::CompareResult::Greater,
            CompareOp::Less => compare::CompareResult::Less,
            CompareOp::NotEqual => compare::CompareResult::NotEqual,
        }
    }
}

/// A condition of a [`Txn`].
#[derive(Debug, Clone, PartialEq)]
pub struct Compare(RawCompare);

impl Compare {
    fn new(
        key: impl Into<Vec<u8>>,
        op: CompareOp,
        target: compare::CompareTarget,
        value: compare::TargetUnion,
    ) -> Self {
        Self(RawCompare {
            result: compare::CompareResult::from(op) as i32,
            target: target as i32,
            key: key.into(),
            range_end: Vec::new(),
            target_union: Some(value),
        })
    }

    /// Compares the key's version.
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Self::new(
            key,
            op,
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(version),
        )
    }

    /// Compares the key's create revision.
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, rev: i64) -> Self {
        Self::new(
            key,
            op,
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(rev),
        )
    }

    /// Compares the key's mod revision.
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, rev: i64) -> Self {
        Self::new(
            key,
            op,
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(rev),
        )
    }

    /// Compares the key's value.
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Self::new(
            key,
            op,
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(value.into()),
        )
    }

    /// Compares the key's lease.
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Self {
        Self::new(
            key,
            op,
            compare::CompareTarget::Lease,
            compare::TargetUnion::Lease(lease),
        )
    }

    /// Applies the comparison to every key in `[key, end)`.
    #[must_use]
    pub fn with_range(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.0.range_end = end.into();
        self
    }

    /// Applies the comparison to every key with the key as prefix.
    #[must_use]
    pub fn with_prefix(mut self) -> Self {
        let (key, end) = RangeSpec::Prefix.resolve(std::mem::take(&mut self.0.key));
        self.0.key = key;
        self.0.range_end = end;
        self
    }

    /// The protocol message.
    pub fn into_proto(self) -> RawCompare {
        self.0
    }
}

/// An operation of a [`Txn`] branch.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOp(RequestOp);

impl TxnOp {
    /// A put.
    pub fn put(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: Option<PutOptions>,
    ) -> Self {
        let req = opts.unwrap_or_default().into_request(key, value);
        Self(RequestOp {
            request: Some(request_op::Request::RequestPut(req)),
        })
    }

    /// A get.
    pub fn get(key: impl Into<Vec<u8>>, opts: Option<GetOptions>) -> Self {
        let req = opts.unwrap_or_default().into_request(key);
        Self(RequestOp {
            request: Some(request_op::Request::RequestRange(req)),
        })
    }

    /// A delete.
    pub fn delete(key: impl Into<Vec<u8>>, opts: Option<DeleteOptions>) -> Self {
        let req = opts.unwrap_or_default().into_request(key);
        Self(RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(req)),
        })
    }

    /// A nested transaction.
    pub fn txn(txn: Txn) -> Self {
        Self(RequestOp {
            request: Some(request_op::Request::RequestTxn(txn.into_request())),
        })
    }

    /// The protocol message.
    pub fn into_proto(self) -> RequestOp {
        self.0
    }

    fn is_write(&self) -> bool {
        match &self.0.request {
            Some(request_op::Request::RequestRange(_)) | None => false,
            Some(request_op::Request::RequestTxn(t)) => !txn_is_read_only(t),
            Some(_) => true,
        }
    }
}

fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| !TxnOp(op.clone()).is_write())
}

/// A transaction: `if compares { success } else { failure }`.
///
/// ```
/// use xline_client::{Compare, CompareOp, Txn, TxnOp};
///
/// let txn = Txn::new()
///     .when([Compare::version("k", CompareOp::Equal, 0)])
///     .and_then([TxnOp::put("k", "created", None)])
///     .or_else([TxnOp::get("k", None)]);
/// assert_eq!(txn.into_request().success.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    compare: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds conditions (all must hold).
    #[must_use]
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compare.extend(compares);
        self
    }

    /// Adds operations run when every condition holds.
    #[must_use]
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations run otherwise.
    #[must_use]
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Whether no branch writes.
    pub fn is_read_only(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .all(|op| !op.is_write())
    }

    /// The protocol message.
    pub fn into_request(self) -> TxnRequest {
        TxnRequest {
            compare: self.compare.into_iter().map(Compare::into_proto).collect(),
            success: self.success.into_iter().map(TxnOp::into_proto).collect(),
            failure: self.failure.into_iter().map(TxnOp::into_proto).collect(),
        }
    }
}

/// The KV service.
///
/// ```no_run
/// use xline_client::{Client, ConnectOptions, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
///
/// # async fn run() -> xline_client::Result<()> {
/// let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
/// let kv = client.kv();
/// kv.put("app/a", "1", Some(PutOptions::new().with_prev_kv())).await?;
/// let all = kv.get("app/", Some(GetOptions::new().with_prefix().with_limit(10))).await?;
/// println!("{} keys", all.count);
/// let txn = Txn::new()
///     .when([Compare::value("app/a", CompareOp::Equal, "1")])
///     .and_then([TxnOp::put("app/a", "2", None)]);
/// assert!(kv.txn(txn).await?.succeeded);
/// kv.delete("app/", Some(xline_client::DeleteOptions::new().with_prefix())).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KvClient {
    inner: Arc<Inner>,
}

impl KvClient {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Reads a key or range (repeatable: retried on `Unavailable`).
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<GetOptions>,
    ) -> Result<RangeResponse> {
        self.range(opts.unwrap_or_default().into_request(key)).await
    }

    /// Sends a raw Range request.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.inner
            .call(Retry::Repeatable, |svc| {
                let req = req.clone();
                async move { RawKv::new(svc).range(req).await }
            })
            .await
    }

    /// Writes a key.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: Option<PutOptions>,
    ) -> Result<PutResponse> {
        let req = opts.unwrap_or_default().into_request(key, value);
        self.inner
            .call(Retry::NonRepeatable, |svc| {
                let req = req.clone();
                async move { RawKv::new(svc).put(req).await }
            })
            .await
    }

    /// Deletes a key or range.
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<DeleteOptions>,
    ) -> Result<DeleteRangeResponse> {
        let req = opts.unwrap_or_default().into_request(key);
        self.inner
            .call(Retry::NonRepeatable, |svc| {
                let req = req.clone();
                async move { RawKv::new(svc).delete_range(req).await }
            })
            .await
    }

    /// Runs a transaction (retried like a read when no branch writes).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let retry = if txn.is_read_only() {
            Retry::Repeatable
        } else {
            Retry::NonRepeatable
        };
        let req = txn.into_request();
        self.inner
            .call(retry, |svc| {
                let req = req.clone();
                async move { RawKv::new(svc).txn(req).await }
            })
            .await
    }

    /// Compacts the key-value history up to `revision`.
    pub async fn compact(
        &self,
        revision: i64,
        opts: Option<CompactionOptions>,
    ) -> Result<CompactionResponse> {
        let req = CompactionRequest {
            revision,
            physical: opts.unwrap_or_default().physical,
        };
        self.inner
            .call(Retry::NonRepeatable, |svc| async move {
                RawKv::new(svc).compact(req).await
            })
            .await
    }
}

/// Raw requests: etcd's request messages as they are, with the pool's balancing, failover,
/// retry rules and auth token (see the crate docs, "Raw requests").
impl KvClient {
    /// KV.Range (repeatable). Responses may be of any size.
    pub async fn range_request(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.inner
            .call(Retry::Repeatable, |svc| {
                let req = req.clone();
                async move {
                    RawKv::new(svc)
                        .max_decoding_message_size(usize::MAX)
                        .range(req)
                        .await
                }
            })
            .await
    }

    /// KV.Put (not repeatable).
    pub async fn put_request(&self, req: PutRequest) -> Result<PutResponse> {
        unary!(self, Retry::NonRepeatable, RawKv, put, req)
    }

    /// KV.DeleteRange (not repeatable).
    pub async fn delete_range_request(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        unary!(self, Retry::NonRepeatable, RawKv, delete_range, req)
    }

    /// KV.Txn: repeatable when no branch writes, like [`KvClient::txn`]. Responses may be of
    /// any size.
    pub async fn txn_request(&self, req: TxnRequest) -> Result<TxnResponse> {
        let retry = if txn_is_read_only(&req) {
            Retry::Repeatable
        } else {
            Retry::NonRepeatable
        };
        self.inner
            .call(retry, |svc| {
                let req = req.clone();
                async move {
                    RawKv::new(svc)
                        .max_decoding_message_size(usize::MAX)
                        .txn(req)
                        .await
                }
            })
            .await
    }

    /// KV.Compact (not repeatable).
    pub async fn compact_request(&self, req: CompactionRequest) -> Result<CompactionResponse> {
        unary!(self, Retry::NonRepeatable, RawKv, compact, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn get_options_build_ranges() {
        let r = GetOptions::new()
            .with_prefix()
            .with_limit(3)
            .into_request("k");
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice(), r.limit),
            (&b"k"[..], &b"l"[..], 3)
        );
        let r = GetOptions::new().with_from_key().into_request("k");
        assert_eq!(r.range_end, vec![0]);
        let r = GetOptions::new().with_all_keys().into_request("ignored");
        assert_eq!((r.key, r.range_end), (vec![0], vec![0]));
        let r = GetOptions::new()
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_keys_only()
            .with_count_only()
            .with_rev(7)
            .into_request("k");
        assert_eq!(r.sort_target, SortTarget::Mod as i32);
        assert_eq!(r.sort_order, SortOrder::Descend as i32);
        assert!(r.keys_only && r.count_only);
        assert_eq!(r.revision, 7);
    }

    #[test]
    fn txn_read_only_detection() {
        let read = Txn::new().and_then([TxnOp::get("a", None)]);
        assert!(read.is_read_only());
        let nested_write =
            Txn::new().or_else([TxnOp::txn(Txn::new().and_then([TxnOp::delete("a", None)]))]);
        assert!(!nested_write.is_read_only());
        let c = Compare::value("p", CompareOp::NotEqual, "x").with_prefix();
        assert_eq!(c.into_proto().range_end, b"q");
    }
}
