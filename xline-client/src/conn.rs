//! Connections to the endpoints: round-robin balancing over healthy endpoints, failover,
//! etcd's safe-retry rules and the auth token.
//!
//! Retry rules (as etcd's clientv3): a call whose request was never sent (the endpoint could not
//! be dialled) is retried on another endpoint whatever it is; a *repeatable* call (reads) is also
//! retried when it fails with `Unavailable` (a member that went away, `etcdserver: no leader`, ...);
//! a non-repeatable call (writes) that may have reached a server is never retried. A call that
//! fails with `etcdserver: invalid auth token` is retried once after fetching a new token.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use xline_proto::etcdserverpb::AuthenticateRequest;
use xline_proto::etcdserverpb::auth_client::AuthClient;

use crate::error::{Error, EtcdErrorKind, Result};
use crate::tls::error_chain;
use crate::{ConnectOptions, TlsOptions};

/// A channel with the auth token attached to every request.
pub(crate) type Svc = InterceptedService<Channel, TokenInterceptor>;

/// Adds the `token` metadata etcd reads the auth token from.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenInterceptor {
    token: Option<AsciiMetadataValue>,
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            req.metadata_mut().insert("token", token.clone());
        }
        Ok(req)
    }
}

/// Whether a call may be retried after it may have reached a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Repeatable (reads): retried on `Unavailable`.
    Repeatable,
    /// Not repeatable (writes): retried only when the request was never sent.
    NonRepeatable,
}

/// How long an endpoint that failed is skipped by the balancer.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// One endpoint and its (lazily dialled) connection.
#[derive(Debug)]
struct Member {
    url: String,
    endpoint: Endpoint,
    channel: tokio::sync::Mutex<Option<Channel>>,
    down_until: Mutex<Option<Instant>>,
}

/// The state shared by every handle of one client.
#[derive(Debug)]
pub(crate) struct Inner {
    members: Vec<Member>,
    next: AtomicUsize,
    pub(crate) opts: ConnectOptions,
    token: RwLock<Option<AsciiMetadataValue>>,
}

/// Parses `host:port`, `http://host:port` or `https://host:port`. TLS is used for `https://`
/// and, when TLS options are given, for bare `host:port` (as etcd's clientv3 does).
fn parse_endpoint(raw: &str, opts: &ConnectOptions) -> Result<(String, Endpoint)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(Error::InvalidArgs("empty endpoint".to_owned()));
    }
    if raw.starts_with("unixs://") {
        return Err(Error::Unimplemented(format!(
            "TLS over a unix socket ({raw}) is not supported"
        )));
    }
    let url = if raw.contains("://") {
        raw.to_owned()
    } else if opts.tls.is_some() {
        format!("https://{raw}")
    } else {
        format!("http://{raw}")
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Error::InvalidArgs(format!("endpoint {raw}: {e}")))?
        .connect_timeout(opts.dial_timeout)
        .tcp_nodelay(true);
    if let Some((interval, timeout)) = opts.keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(timeout)
            .keep_alive_while_idle(true);
    }
    if url.starts_with("https://") {
        let default_tls;
        let tls = match &opts.tls {
            Some(tls) => tls,
            None => {
                default_tls = TlsOptions::new();
                &default_tls
            }
        };
        endpoint = tls.apply(endpoint)?;
    }
    Ok((url, endpoint))
}

/// True when the status says the request never left the client: the endpoint could not be
/// dialled (tonic's `ConnectError` is in the source chain).
fn never_sent(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// True when the status was made on this side from a transport failure (not sent by a server).
fn transport_failure(status: &Status) -> bool {
    std::error::Error::source(status).is_some() && status.code() != Code::DeadlineExceeded
}

/// The backoff before retry number `attempt` (1-based).
fn backoff(attempt: usize) -> Duration {
    let ms = 25u64.saturating_mul(u64::try_from(attempt).unwrap_or(u64::MAX));
    Duration::from_millis(ms.min(500))
}

impl Inner {
    /// Validates the endpoints; dials nothing yet.
    pub(crate) fn new(endpoints: &[String], opts: ConnectOptions) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(Error::InvalidArgs("no endpoints given".to_owned()));
        }
        if let Some(tls) = &opts.tls {
            tls.validate()?;
        }
        let members = endpoints
            .iter()
            .map(|raw| {
                let (url, endpoint) = parse_endpoint(raw, &opts)?;
                Ok(Member {
                    url,
                    endpoint,
                    channel: tokio::sync::Mutex::new(None),
                    down_until: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            members,
            next: AtomicUsize::new(0),
            opts,
            token: RwLock::new(None),
        })
    }

    /// The endpoint URLs, in the order given.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.url.clone()).collect()
    }

    /// The current auth token, if any.
    pub(crate) fn token(&self) -> Option<String> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|t| t.to_str().ok().map(str::to_owned))
    }

    fn interceptor(&self) -> TokenInterceptor {
        TokenInterceptor {
            token: self
                .token
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn is_down(&self, i: usize, now: Instant) -> bool {
        self.members[i]
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| until > now)
    }

    /// Marks endpoint `i` failed: its connection is dropped and the balancer skips it a while.
    pub(crate) async fn mark_down(&self, i: usize) {
        *self.members[i]
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + DOWN_FOR);
        *self.members[i].channel.lock().await = None;
    }

    fn mark_up(&self, i: usize) {
        *self.members[i]
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The next endpoint in round-robin order that is not marked down (any, if all are).
    pub(crate) fn pick(&self) -> usize {
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| !self.is_down(i, now))
            .unwrap_or(start)
    }

    /// The connection to endpoint `i`, dialling it (within the dial timeout) if needed.
    async fn dial(&self, i: usize) -> Result<Channel> {
        let member = &self.members[i];
        let mut slot = member.channel.lock().await;
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let connect_err = |reason: String| Error::Connect {
            endpoint: member.url.clone(),
            reason,
        };
        let channel =
            match tokio::time::timeout(self.opts.dial_timeout, member.endpoint.connect()).await {
                Ok(Ok(channel)) => channel,
                Ok(Err(e)) => return Err(connect_err(error_chain(&e))),
                Err(_) => return Err(connect_err("dial timeout".to_owned())),
            };
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// A service on a reachable endpoint (trying each endpoint once) and that endpoint's index:
    /// for streams, which the caller manages itself.
    pub(crate) async fn service(&self) -> Result<(Svc, usize)> {
        let mut last = None;
        for _ in 0..self.members.len() {
            let i = self.pick();
            match self.dial(i).await {
                Ok(channel) => {
                    return Ok((InterceptedService::new(channel, self.interceptor()), i));
                }
                Err(e) => {
                    self.mark_down(i).await;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidArgs("no endpoints given".to_owned())))
    }

    /// How many attempts a call gets at most.
    fn max_attempts(&self) -> usize {
        // With a per-call timeout the deadline bounds the retries (as etcd's clients do).
        let default = if self.opts.timeout.is_some() {
            usize::MAX
        } else {
            2 * self.members.len() + 1
        };
        self.opts.max_retries.unwrap_or(default).max(1)
    }

    /// Runs a unary call with balancing, failover, retries, token refresh and the per-call
    /// timeout. `f` makes the call on the service it is given.
    pub(crate) async fn call<T, F, Fut>(&self, retry: Retry, mut f: F) -> Result<T>
    where
        F: FnMut(Svc) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let deadline = self.opts.timeout.map(|t| Instant::now() + t);
        // Bounds one step (a dial, an attempt, a token refresh) by what is left of the deadline.
        async fn bounded<R>(
            deadline: Option<Instant>,
            fut: impl Future<Output = Result<R>>,
        ) -> Result<R> {
            match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), fut)
                    .await
                    .map_err(|_| Error::Timeout)?,
                None => fut.await,
            }
        }
        let max = self.max_attempts();
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let i = self.pick();
            let last_err = match bounded(deadline, self.dial(i)).await {
                Ok(channel) => {
                    let svc = InterceptedService::new(channel, self.interceptor());
                    let status = match bounded(deadline, async { Ok(f(svc).await) }).await? {
                        Ok(resp) => {
                            self.mark_up(i);
                            return Ok(resp.into_inner());
                        }
                        Err(status) => status,
                    };
                    if status.message() == EtcdErrorKind::InvalidAuthToken.message()
                        && self.opts.user.is_some()
                        && !refreshed
                    {
                        refreshed = true;
                        bounded(deadline, self.refresh_token()).await?;
                        continue;
                    }
                    let unsent = never_sent(&status);
                    if unsent || transport_failure(&status) {
                        self.mark_down(i).await;
                    }
                    // A transport failure (connection reset, TLS alert) is what gRPC-go reports
                    // as `Unavailable`: a read is retried on it too.
                    let retriable = unsent
                        || (retry == Retry::Repeatable
                            && (status.code() == Code::Unavailable || transport_failure(&status)));
                    if !retriable {
                        return Err(Error::from_status(status));
                    }
                    tracing::debug!(endpoint = %self.members[i].url, ?status, "retrying call");
                    Error::from_status(status)
                }
                Err(Error::Timeout) => return Err(Error::Timeout),
                Err(e) => {
                    // Never sent: safe to retry anything elsewhere.
                    tracing::debug!(endpoint = %self.members[i].url, error = %e, "dial failed");
                    self.mark_down(i).await;
                    e
                }
            };
            let pause = backoff(attempt);
            let out_of_time = deadline.is_some_and(|d| Instant::now() + pause >= d);
            if attempt >= max || out_of_time {
                return Err(last_err);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Fetches a new token with the configured user and password (Authenticate is repeatable).
    pub(crate) async fn refresh_token(&self) -> Result<()> {
        let Some((name, password)) = self.opts.user.clone() else {
            return Ok(());
        };
        let max = self.max_attempts();
        let mut attempt = 0;
        let token = loop {
            attempt += 1;
            let i = self.pick();
            let result = match self.dial(i).await {
                Ok(channel) => AuthClient::new(channel)
                    .authenticate(AuthenticateRequest {
                        name: name.clone(),
                        password: password.clone(),
                    })
                    .await
                    .map_err(|s| (never_sent(&s) || transport_failure(&s), s)),
                Err(e) => {
                    self.mark_down(i).await;
                    if attempt >= max {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            match result {
                Ok(resp) => break resp.into_inner().token,
                Err((transport, status)) => {
                    if transport {
                        self.mark_down(i).await;
                    }
                    if status.code() != Code::Unavailable || attempt >= max {
                        return Err(Error::from_status(status));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        };
        let value = AsciiMetadataValue::try_from(token.as_str())
            .map_err(|e| Error::InvalidArgs(format!("auth token is not ASCII: {e}")))?;
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = Some(value);
        Ok(())
    }

    /// Whether a stream failure means the endpoint should be left (transport failure or a
    /// server-side `Unavailable`).
    pub(crate) fn should_failover(status: &Status) -> bool {
        never_sent(status) || transport_failure(status) || status.code() == Code::Unavailable
    }

    /// Whether a status is `etcdserver: invalid auth token` and a new token can be fetched.
    pub(crate) fn can_refresh(&self, status: &Status) -> bool {
        status.message() == EtcdErrorKind::InvalidAuthToken.message() && self.opts.user.is_some()
    }

    /// The backoff before retry number `attempt` of a stream.
    pub(crate) fn backoff(attempt: usize) -> Duration {
        backoff(attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_parsed() {
        let opts = ConnectOptions::new();
        assert_eq!(
            parse_endpoint("127.0.0.1:2379", &opts).unwrap().0,
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint("http://localhost:1", &opts).unwrap().0,
            "http://localhost:1"
        );
        assert_eq!(
            parse_endpoint("https://localhost:1", &opts).unwrap().0,
            "https://localhost:1"
        );
        assert!(matches!(
            parse_endpoint("unixs://sock", &opts),
            Err(Error::Unimplemented(_))
        ));
        // With TLS options a bare host:port is TLS, an http:// endpoint stays plaintext.
        let tls = ConnectOptions::new().with_tls(TlsOptions::new().with_insecure_skip_verify(true));
        assert_eq!(
            parse_endpoint("127.0.0.1:2379", &tls).unwrap().0,
            "https://127.0.0.1:2379"
        );
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379", &tls).unwrap().0,
            "http://127.0.0.1:2379"
        );
        assert!(matches!(
            parse_endpoint("", &opts),
            Err(Error::InvalidArgs(_))
        ));
    }

    #[test]
    fn round_robin_skips_down_members() {
        let eps: Vec<String> = ["a:1", "b:2", "c:3"]
            .iter()
            .map(ToString::to_string)
            .collect();
        let inner = Inner::new(&eps, ConnectOptions::new()).unwrap();
        let picks: Vec<usize> = (0..6).map(|_| inner.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        *inner.members[1].down_until.lock().unwrap() = Some(Instant::now() + DOWN_FOR);
        let picks: Vec<usize> = (0..6).map(|_| inner.pick()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2));
    }

    #[tokio::test]
    async fn writes_are_retried_only_when_never_sent() {
        // Nothing listens on these ports: every dial fails, so every call is retried until the
        // attempts run out and the dial error is reported.
        let eps = vec!["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()];
        let inner = Inner::new(&eps, ConnectOptions::new().with_max_retries(3)).unwrap();
        let mut calls = 0;
        let err = inner
            .call(Retry::NonRepeatable, |_svc| {
                calls += 1;
                async { Ok(Response::new(())) }
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert_eq!(
            calls, 0,
            "a request was sent to an endpoint that was never dialled"
        );
    }

    #[test]
    fn server_statuses_are_not_transport_failures() {
        let s = Status::unavailable("etcdserver: no leader");
        assert!(!never_sent(&s));
        assert!(!transport_failure(&s));
        assert!(Inner::should_failover(&s));
    }
}
