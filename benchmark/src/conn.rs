//! gRPC connections to the endpoints, and finding the leader for `--target-leader`.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use xline_proto::etcdserverpb::StatusRequest;
use xline_proto::etcdserverpb::maintenance_client::MaintenanceClient;

use crate::error::BenchError;
use crate::native::NativeClient;

/// One connection the clients of a run share.
#[derive(Debug, Clone)]
pub enum Conn {
    /// An HTTP/2 channel for the etcd API.
    Grpc(Channel),
    /// A native (CURP) client, with `--native`.
    Native(Arc<NativeClient>),
}

/// How long establishing one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` or `http://host:port` as a URL (`http://` is added when missing). TLS is not
/// supported, so `https://` is refused with a clear message.
pub fn endpoint_url(endpoint: &str) -> Result<String, BenchError> {
    let endpoint = endpoint.trim();
    let fail = |reason: &str| BenchError::Connect {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    if endpoint.is_empty() {
        return Err(fail("empty endpoint"));
    }
    if endpoint.starts_with("https://") {
        return Err(fail("TLS endpoints are not supported; use http://"));
    }
    if endpoint.starts_with("http://") {
        Ok(endpoint.to_owned())
    } else if endpoint.contains("://") {
        Err(fail("only http:// endpoints are supported"))
    } else {
        Ok(format!("http://{endpoint}"))
    }
}

/// Opens one connection (an HTTP/2 channel) to `url`.
pub async fn connect(url: &str) -> Result<Channel, BenchError> {
    let fail = |reason: String| BenchError::Connect {
        endpoint: url.to_owned(),
        reason,
    };
    Endpoint::from_shared(url.to_owned())
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| fail(format!("{e}: {}", source_chain(&e))))
}

/// The messages of an error's sources, joined (tonic's top-level message is just
/// "transport error").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// `conns` connections spread round-robin over `urls` (connection `i` goes to `urls[i % n]`).
pub async fn connect_all(urls: &[String], conns: usize) -> Result<Vec<Channel>, BenchError> {
    let mut channels = Vec::with_capacity(conns);
    for url in urls.iter().cycle().take(conns) {
        channels.push(connect(url).await?);
    }
    Ok(channels)
}

/// The URL of the endpoint that is the leader, found with Maintenance.Status as etcd's tool
/// does: the member whose own ID equals the leader it reports.
pub async fn find_leader(urls: &[String]) -> Result<String, BenchError> {
    let mut notes = Vec::new();
    for url in urls {
        let channel = match connect(url).await {
            Ok(c) => c,
            Err(e) => {
                notes.push(e.to_string());
                continue;
            }
        };
        match MaintenanceClient::new(channel)
            .status(StatusRequest {})
            .await
        {
            Ok(resp) => {
                let status = resp.into_inner();
                let member = status.header.map_or(0, |h| h.member_id);
                if status.leader != 0 && status.leader == member {
                    return Ok(url.clone());
                }
                notes.push(format!("{url} is not the leader"));
            }
            Err(s) => notes.push(format!("{url}: {}", s.message())),
        }
    }
    Err(BenchError::NoLeader(format!(
        "{} ({})",
        urls.join(","),
        notes.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_an_http_scheme() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url(" http://h:1 ").unwrap(), "http://h:1");
        assert!(endpoint_url("https://h:1").is_err());
        assert!(endpoint_url("unix://x").is_err());
        assert!(endpoint_url("").is_err());
    }

    #[tokio::test]
    async fn connecting_to_a_closed_port_fails_with_the_endpoint_named() {
        // Bind then drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = connect(&url).await.unwrap_err().to_string();
        assert!(err.contains(&url), "{err}");
        let err = find_leader(&[url]).await.unwrap_err().to_string();
        assert!(err.contains("no leader found"), "{err}");
    }
}
