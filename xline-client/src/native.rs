//! The native CURP fast path to an Xline cluster (feature `native`, on by default).
//!
//! A [`NativeClient`] proposes writes (put, delete, txn) through Xline's CURP client service,
//! which every member serves on its **peer** listener, instead of the etcd API. A write that
//! commutes with everything in flight (it touches no key a concurrent write touches) and whose
//! result cannot depend on the order completes in **one round trip** to the cluster: the leader
//! answers at once and a super quorum of the other members records it. Any other write (a
//! conflict, a txn, a put with `prev_kv` or a lease...) completes with the result of applying it
//! in log order, like through the etcd API.
//!
//! # Final and speculative revisions
//!
//! Every response says whether its revision is final ([`NativeResponse::revision_final`]):
//!
//! - `true`: the write was applied in log order; its header carries its revision, as a response
//!   of the etcd API would.
//! - `false`: the write completed on the fast path with the leader's *speculative* result. It is
//!   durable and will be applied exactly once, in an order consistent with every other write,
//!   but its revision is not known yet: the header's revision is 0. The rest of the response is
//!   exact (a delete's `deleted` count is the count it will have in log order).
//!
//! The revision of a speculated write cannot be asked for afterwards (the CURP client service
//! reports results only to the proposal that made them). A caller that needs the revision (to
//! compare against it later, to watch from it) makes that write on the ordered path instead:
//! [`NativeClient::ordered`] returns a handle whose writes always carry their final revision.
//! A read through the etcd API ([`crate::Client`]) made after a write completed, on either path,
//! sees it: a linearizable read waits for every write the cluster acknowledged.
//!
//! # What is not carried
//!
//! - **Credentials**: the native path has no tokens, so it is meant for clusters without auth.
//!   [`NativeClient::from_client`] refuses ([`Error::Unimplemented`]) a [`crate::Client`]
//!   configured with a user, and a cluster whose auth is enabled. [`NativeClient::connect`]
//!   (peer URLs only) cannot check: do not use it on a cluster with auth enabled.
//! - **Skipping TLS verification**: `https://` peer URLs work with [`NativeOptions::with_tls`]
//!   (the CA that signs the members' peer certificates, and a certificate they trust when the
//!   members run with `--peer-client-cert-auth`), but
//!   [`TlsOptions::with_insecure_skip_verify`] is refused ([`Error::Unimplemented`]).
//! - **Reads, watches, leases**: only writes go through consensus; use [`crate::Client`].
//!
//! The client validates what etcd's front end would before proposing (empty keys, a value or
//! lease given with `ignore_value`/`ignore_lease`, in txns too). Errors the server applies come
//! back as the library's [`Error::Etcd`] kinds, with the gRPC code the etcd API would have used;
//! a request whose outcome is unknown after the client's deadline is [`Error::Timeout`];
//! failures of the CURP client itself are [`Error::Native`].
//!
//! ```no_run
//! use xline_client::native::{NativeClient, NativeOptions};
//! use xline_client::{Compare, CompareOp, Txn, TxnOp};
//!
//! # async fn run() -> xline_client::Result<()> {
//! // The members' peer URLs (seeds: the client learns the others and the leader from them).
//! let native = NativeClient::connect(["http://127.0.0.1:2380"], NativeOptions::new()).await?;
//! let put = native.put("foo", "bar", None).await?;
//! if !put.revision_final {
//!     // Completed in one round trip; the revision is assigned by the order.
//!     assert_eq!(put.revision(), 0);
//! }
//! // A txn always completes in log order, with its revision.
//! let txn = Txn::new()
//!     .when([Compare::value("foo", CompareOp::Equal, "bar")])
//!     .and_then([TxnOp::put("foo", "baz", None)]);
//! let resp = native.txn(txn).await?;
//! assert!(resp.revision_final && resp.revision() > 0);
//! // A put whose revision the caller needs.
//! let ordered = native.ordered().put("counter", "1", None).await?;
//! assert!(ordered.revision_final);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use curp::client::{ClientConfig, ClientError, ClientStats, CurpClient, ProposeResponse};
use curp::transport::client_service::GrpcClientTransport;
use tonic::Status;
use xline_native::{Command, NativeOutput, NativeResult, Request, WireCodec};
use xline_proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse, request_op,
};

use crate::{Client, DeleteOptions, Error, EtcdErrorKind, PutOptions, Result, TlsOptions, Txn};

/// The CURP client over gRPC, with the wire output.
type Curp = CurpClient<Command, NativeOutput, WireCodec, GrpcClientTransport>;

/// How a [`NativeClient`] connects and proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOptions {
    dial_timeout: Duration,
    timeout: Duration,
    max_message_bytes: usize,
    tls: Option<TlsOptions>,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            max_message_bytes: 16 << 20,
            tls: None,
        }
    }
}

impl NativeOptions {
    /// Defaults: 2 s to dial a member, 10 s per write (retries included), messages up to
    /// 16 MiB (the server's default bound).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long dialling one member may take.
    #[must_use]
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// How long connecting, or one write, may take, retries included; then
    /// [`Error::Timeout`] (for a write: its outcome is unknown, it is applied at most once).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest message either way.
    #[must_use]
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// TLS to the members' peer listeners (`--peer-cert-file`...): the CA bundle that signs
    /// their peer certificates and, when they run with `--peer-client-cert-auth`, a client
    /// certificate that CA (`--peer-trusted-ca-file`) signed. With it, bare `host:port` peer
    /// URLs are dialled over TLS too; without it, `https://` ones are verified against the
    /// system's roots. Skipping verification ([`TlsOptions::with_insecure_skip_verify`]) is
    /// not available on this path.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A write's response and whether its revision is final (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq)]
pub struct NativeResponse<R> {
    /// The etcd response. When the revision is not final, its header's revision is 0.
    pub response: R,
    /// Whether the write was applied in log order and its header carries its revision (`false`:
    /// it completed on the fast path with a speculative result).
    pub revision_final: bool,
}

impl<R> NativeResponse<R> {
    /// The etcd response.
    pub fn into_response(self) -> R {
        self.response
    }
}

/// Implements `revision()` for the responses that carry a header.
macro_rules! revision_accessor {
    ($($ty:ty),*) => {$(
        impl NativeResponse<$ty> {
            /// The write's revision: final when [`NativeResponse::revision_final`], 0 when the
            /// write completed on the fast path.
            pub fn revision(&self) -> i64 {
                self.response.header.as_ref().map_or(0, |h| h.revision)
            }

            /// The response header (speculative responses carry an empty one).
            pub fn header(&self) -> Option<&ResponseHeader> {
                self.response.header.as_ref()
            }
        }
    )*};
}

revision_accessor!(PutResponse, DeleteRangeResponse, TxnResponse);

/// Counters of a [`NativeClient`]'s writes (shared by its clones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NativeStats {
    /// Writes completed on the fast path (speculative result, revision not final).
    pub fast: u64,
    /// Fast-path writes that completed with their ordered result instead (a conflict, or a
    /// write the server does not speculate).
    pub fallback: u64,
    /// Writes sent on the ordered path ([`NativeClient::ordered`]).
    pub ordered: u64,
    /// Attempts beyond the first, over all writes.
    pub retries: u64,
}

impl From<ClientStats> for NativeStats {
    fn from(s: ClientStats) -> Self {
        Self {
            fast: s.fast,
            fallback: s.fallback,
            ordered: s.ordered,
            retries: s.retries,
        }
    }
}

/// A client of Xline's native CURP path; see the [module docs](self). Cheap to clone; clones
/// share the connections and may write concurrently.
#[derive(Debug, Clone)]
pub struct NativeClient {
    curp: Arc<Curp>,
    /// Every write on the ordered path.
    ordered: bool,
}

impl NativeClient {
    /// Connects through members' peer URLs (`http://host:port`, or bare `host:port`): discovers
    /// the cluster's members and leader from them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgs`] without URLs; [`Error::Tls`] for unusable PEM material,
    /// [`Error::Unimplemented`] when it asks to skip verification; [`Error::Connect`] when no
    /// member answered with a leader (a refused TLS handshake included); [`Error::Timeout`].
    pub async fn connect<E, S>(peer_urls: E, options: NativeOptions) -> Result<Self>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let seeds = peer_urls
            .into_iter()
            .map(|u| normalize_url(u.as_ref(), options.tls.is_some()))
            .collect::<Result<Vec<_>>>()?;
        if seeds.is_empty() {
            return Err(Error::InvalidArgs("no peer URL given".into()));
        }
        let mut transport =
            GrpcClientTransport::new(options.dial_timeout, options.max_message_bytes);
        // Members learnt from the seeds are dialled with the same TLS settings.
        let tls = match &options.tls {
            Some(tls) => Some(tls.clone()),
            None if seeds.iter().any(|u| u.starts_with("https://")) => Some(TlsOptions::new()),
            None => None,
        };
        if let Some(tls) = &tls {
            tls.validate()?;
            transport = transport.with_tls(tls.client_config()?);
        }
        let transport = Arc::new(transport);
        let config = ClientConfig {
            propose_timeout: options.timeout,
            rpc_timeout: options
                .dial_timeout
                .max(ClientConfig::default().rpc_timeout),
            ..ClientConfig::default()
        };
        let curp = CurpClient::connect(transport, seeds.clone(), config)
            .await
            .map_err(|e| match e {
                ClientError::Timeout => Error::Timeout,
                ClientError::NoMembers | ClientError::Transport { .. } => Error::Connect {
                    endpoint: seeds.join(","),
                    reason: connect_reason(&e, tls.as_ref()),
                },
                other => Error::Native(other),
            })?;
        Ok(Self {
            curp: Arc::new(curp),
            ordered: false,
        })
    }

    /// Connects to the cluster `client` talks to, through the peer URLs its member list gives.
    /// When they are `https://` and `options` has no TLS settings, `client`'s own
    /// ([`ConnectOptions::with_tls`](crate::ConnectOptions::with_tls)) are used: its CA bundle
    /// must then also sign the peer certificates, and its client certificate (if any) be one
    /// the peers trust.
    ///
    /// # Errors
    ///
    /// [`Error::Unimplemented`] when `client` authenticated as a user or auth is enabled on
    /// the cluster (the native path carries no credentials); the errors of `AuthStatus` and of
    /// the member list; then as [`NativeClient::connect`].
    pub async fn from_client(client: &Client, options: NativeOptions) -> Result<Self> {
        if client.token().is_some() {
            return Err(Error::Unimplemented(
                "the native CURP path carries no credentials: a client configured with a user \
                 cannot use it"
                    .into(),
            ));
        }
        if client.auth().auth_status().await?.enabled {
            return Err(Error::Unimplemented(
                "the native CURP path carries no credentials: auth is enabled on the cluster"
                    .into(),
            ));
        }
        let members = client.cluster().member_list().await?;
        let urls: Vec<String> = members
            .members
            .into_iter()
            .flat_map(|m| m.peer_ur_ls)
            .collect();
        let mut options = options;
        if options.tls.is_none() && urls.iter().any(|u| u.starts_with("https://")) {
            options.tls.clone_from(&client.inner.opts.tls);
        }
        Self::connect(urls, options).await
    }

    /// A handle (sharing this client's connections) whose writes all take the ordered path:
    /// each completes once applied, with its final revision.
    #[must_use]
    pub fn ordered(&self) -> NativeClient {
        NativeClient {
            curp: Arc::clone(&self.curp),
            ordered: true,
        }
    }

    /// The counters of this client's writes so far (clones included).
    pub fn stats(&self) -> NativeStats {
        self.curp.stats().into()
    }

    /// Puts `key` = `value`.
    ///
    /// # Errors
    ///
    /// See the [module docs](self).
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: Option<PutOptions>,
    ) -> Result<NativeResponse<PutResponse>> {
        let req = opts.unwrap_or_default().into_request(key, value);
        check_put(&req)?;
        self.write(Request::Put(req), |r| match r {
            NativeResult::Put(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Deletes `key` (or the range `opts` gives).
    ///
    /// # Errors
    ///
    /// See the [module docs](self).
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<DeleteOptions>,
    ) -> Result<NativeResponse<DeleteRangeResponse>> {
        let req = opts.unwrap_or_default().into_request(key);
        check_delete(&req)?;
        self.write(Request::DeleteRange(req), |r| match r {
            NativeResult::DeleteRange(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Runs `txn` (always in log order: its revision is final).
    ///
    /// # Errors
    ///
    /// See the [module docs](self).
    pub async fn txn(&self, txn: Txn) -> Result<NativeResponse<TxnResponse>> {
        let req = txn.into_request();
        check_txn(&req)?;
        self.write(Request::Txn(req), |r| match r {
            NativeResult::Txn(r) => Ok(r),
            other => Err(other),
        })
        .await
    }

    /// Proposes `request` and picks the expected response out of the output.
    async fn write<R>(
        &self,
        request: Request,
        pick: impl FnOnce(NativeResult) -> std::result::Result<R, NativeResult>,
    ) -> Result<NativeResponse<R>> {
        let cmd = Command::new(request);
        let resp = if self.ordered {
            self.curp.propose_ordered(&cmd).await
        } else {
            self.curp.propose(&cmd).await
        };
        let resp = resp.map_err(client_error)?;
        decode(resp, pick)
    }
}

/// The library's error for a failure of the CURP client.
fn client_error(e: ClientError) -> Error {
    match e {
        ClientError::Timeout => Error::Timeout,
        other => Error::Native(other),
    }
}

/// The response (or etcd error) a completed proposal carries.
fn decode<R>(
    resp: ProposeResponse<NativeOutput>,
    pick: impl FnOnce(NativeResult) -> std::result::Result<R, NativeResult>,
) -> Result<NativeResponse<R>> {
    let revision_final = !resp.is_speculative();
    let Some(result) = resp.output.result else {
        return Err(Error::Native(ClientError::Malformed(
            "an output without a result".into(),
        )));
    };
    if let NativeResult::Error(message) = result {
        return Err(etcd_error(message));
    }
    match pick(result) {
        Ok(response) => Ok(NativeResponse {
            response,
            revision_final,
        }),
        Err(other) => Err(Error::Native(ClientError::Malformed(format!(
            "unexpected output {other:?}"
        )))),
    }
}

/// An etcd error's message, as the library's error: the kind with the gRPC code etcd's API
/// sends it with; a message the library does not know stays a status (`Unknown`).
fn etcd_error(message: String) -> Error {
    match EtcdErrorKind::from_message(&message) {
        Some(kind) => Error::Etcd {
            kind,
            code: kind.code(),
        },
        None => Error::Status(Status::unknown(message)),
    }
}

/// A peer URL as the transport dials it: a bare `host:port` gets `https://` when TLS options
/// are given (as the etcd API's endpoints), `http://` otherwise.
fn normalize_url(url: &str, tls: bool) -> Result<String> {
    let url = url.trim();
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_owned())
    } else if url.contains("://") {
        Err(Error::InvalidArgs(format!("unsupported peer URL {url}")))
    } else if url.is_empty() {
        Err(Error::InvalidArgs("empty peer URL".into()))
    } else if tls {
        Ok(format!("https://{url}"))
    } else {
        Ok(format!("http://{url}"))
    }
}

/// Why connecting failed. Over TLS, a failure that is not the members' certificate failing
/// verification is most likely the members refusing the client's certificate (or its
/// absence): the reason says so.
fn connect_reason(err: &ClientError, tls: Option<&TlsOptions>) -> String {
    let (Some(tls), ClientError::Transport { message, .. }) = (tls, err) else {
        return err.to_string();
    };
    if message.contains("invalid peer certificate") {
        err.to_string()
    } else if tls.has_identity() {
        format!(
            "{err} (members running with --peer-client-cert-auth refuse a certificate their \
             --peer-trusted-ca-file did not sign)"
        )
    } else {
        format!(
            "{err} (no client certificate was presented: members running with \
             --peer-client-cert-auth require one their --peer-trusted-ca-file signed)"
        )
    }
}

/// An error of kind `kind`, found before sending anything.
fn invalid(kind: EtcdErrorKind) -> Error {
    Error::Etcd {
        kind,
        code: kind.code(),
    }
}

/// etcd's checks of a put (`checkPutRequest`).
fn check_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(invalid(EtcdErrorKind::EmptyKey));
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(invalid(EtcdErrorKind::ValueProvided));
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(invalid(EtcdErrorKind::LeaseProvided));
    }
    Ok(())
}

/// etcd's checks of a delete.
fn check_delete(req: &DeleteRangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(invalid(EtcdErrorKind::EmptyKey));
    }
    Ok(())
}

/// etcd's per-operation checks of a txn, nested txns included.
fn check_txn(txn: &TxnRequest) -> Result<()> {
    txn.success
        .iter()
        .chain(&txn.failure)
        .try_for_each(check_op)
}

fn check_op(op: &RequestOp) -> Result<()> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) if r.key.is_empty() => {
            Err(invalid(EtcdErrorKind::EmptyKey))
        }
        Some(request_op::Request::RequestPut(p)) => check_put(p),
        Some(request_op::Request::RequestDeleteRange(d)) => check_delete(d),
        Some(request_op::Request::RequestTxn(t)) => check_txn(t),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TxnOp;
    use curp::client::ResultKind;
    use curp::core::ProposeId;
    use tonic::Code;

    fn response(result: NativeResult, kind: ResultKind) -> ProposeResponse<NativeOutput> {
        ProposeResponse {
            output: NativeOutput {
                result: Some(result),
            },
            kind,
            id: ProposeId::default(),
            attempts: 1,
        }
    }

    fn put_of(r: NativeResult) -> std::result::Result<PutResponse, NativeResult> {
        match r {
            NativeResult::Put(p) => Ok(p),
            other => Err(other),
        }
    }

    #[test]
    fn speculative_and_final_outputs() {
        let spec = decode(
            response(
                NativeResult::Put(PutResponse {
                    header: Some(ResponseHeader::default()),
                    prev_kv: None,
                }),
                ResultKind::Speculative,
            ),
            put_of,
        )
        .expect("put");
        assert!(!spec.revision_final);
        assert_eq!(spec.revision(), 0);
        let fin = decode(
            response(
                NativeResult::Put(PutResponse {
                    header: Some(ResponseHeader {
                        revision: 9,
                        ..Default::default()
                    }),
                    prev_kv: None,
                }),
                ResultKind::Final,
            ),
            put_of,
        )
        .expect("put");
        assert!(fin.revision_final);
        assert_eq!(fin.revision(), 9);
        let wrong = decode(
            response(NativeResult::Txn(TxnResponse::default()), ResultKind::Final),
            put_of,
        );
        assert!(matches!(
            wrong,
            Err(Error::Native(ClientError::Malformed(_)))
        ));
    }

    #[test]
    fn etcd_errors_become_kinds() {
        let err = decode(
            response(
                NativeResult::Error(EtcdErrorKind::LeaseNotFound.message().into()),
                ResultKind::Final,
            ),
            put_of,
        )
        .expect_err("an error");
        assert!(matches!(
            err,
            Error::Etcd {
                kind: EtcdErrorKind::LeaseNotFound,
                code: Code::NotFound
            }
        ));
        let unknown = decode(
            response(
                NativeResult::Error("etcdserver: revision of auth store is old".into()),
                ResultKind::Final,
            ),
            put_of,
        )
        .expect_err("an error");
        assert!(
            matches!(unknown, Error::Status(ref s) if s.code() == Code::Unknown
                && s.message() == "etcdserver: revision of auth store is old")
        );
        assert!(matches!(client_error(ClientError::Timeout), Error::Timeout));
        assert!(matches!(
            client_error(ClientError::Duplicate),
            Error::Native(ClientError::Duplicate)
        ));
    }

    #[test]
    fn requests_are_checked_before_sending() {
        let kind = |r: Result<()>| r.expect_err("refused").etcd_kind();
        let put = |key: &str, opts: PutOptions| opts.into_request(key, "v");
        assert_eq!(
            kind(check_put(&put("", PutOptions::new()))),
            Some(EtcdErrorKind::EmptyKey)
        );
        assert_eq!(
            kind(check_put(&put("k", PutOptions::new().with_ignore_value()))),
            Some(EtcdErrorKind::ValueProvided)
        );
        assert_eq!(
            kind(check_put(
                &PutOptions::new()
                    .with_ignore_lease()
                    .with_lease(5)
                    .into_request("k", "")
            )),
            Some(EtcdErrorKind::LeaseProvided)
        );
        assert!(check_put(&put("k", PutOptions::new())).is_ok());
        assert_eq!(
            kind(check_delete(&DeleteOptions::new().into_request(""))),
            Some(EtcdErrorKind::EmptyKey)
        );
        let nested =
            Txn::new().or_else([TxnOp::txn(Txn::new().and_then([TxnOp::delete("", None)]))]);
        assert_eq!(
            kind(check_txn(&nested.into_request())),
            Some(EtcdErrorKind::EmptyKey)
        );
        let fine = Txn::new().and_then([TxnOp::put("a", "b", None), TxnOp::get("a", None)]);
        assert!(check_txn(&fine.into_request()).is_ok());
    }

    #[test]
    fn peer_urls() {
        assert_eq!(
            normalize_url("127.0.0.1:2380", false).ok(),
            Some("http://127.0.0.1:2380".into())
        );
        assert_eq!(
            normalize_url("127.0.0.1:2380", true).ok(),
            Some("https://127.0.0.1:2380".into())
        );
        for tls in [false, true] {
            assert_eq!(
                normalize_url("http://h:1", tls).ok(),
                Some("http://h:1".into())
            );
            assert_eq!(
                normalize_url("https://h:1", tls).ok(),
                Some("https://h:1".into())
            );
            assert!(matches!(
                normalize_url("unix://x", tls),
                Err(Error::InvalidArgs(_))
            ));
            assert!(matches!(
                normalize_url(" ", tls),
                Err(Error::InvalidArgs(_))
            ));
        }
    }

    #[tokio::test]
    async fn tls_settings_are_checked_before_dialling() {
        let skip = NativeOptions::new().with_tls(TlsOptions::new().with_insecure_skip_verify(true));
        let err = NativeClient::connect(["https://h:1"], skip)
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::Unimplemented(_)), "{err:?}");
        let bad = NativeOptions::new().with_tls(TlsOptions::new().with_ca_pem(b"junk".to_vec()));
        let err = NativeClient::connect(["h:1"], bad)
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
    }

    #[test]
    fn a_missing_client_certificate_is_named() {
        let e = ClientError::Transport {
            addr: "https://h:1".into(),
            message: "broken pipe".into(),
        };
        let ca_only = TlsOptions::new().with_ca_pem(b"CA".to_vec());
        let reason = connect_reason(&e, Some(&ca_only));
        assert!(reason.contains("broken pipe") && reason.contains("no client certificate"));
        let with_cert = ca_only.clone().with_identity(b"C".to_vec(), b"K".to_vec());
        let reason = connect_reason(&e, Some(&with_cert));
        assert!(reason.contains("broken pipe") && reason.contains("did not sign"));
        assert_eq!(connect_reason(&e, None), e.to_string());
        // The members' certificate failing verification is reported as it is.
        let unverified = ClientError::Transport {
            addr: "https://h:1".into(),
            message: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert_eq!(
            connect_reason(&unverified, Some(&ca_only)),
            unverified.to_string()
        );
        assert_eq!(
            connect_reason(&ClientError::NoMembers, Some(&ca_only)),
            ClientError::NoMembers.to_string()
        );
    }
}
