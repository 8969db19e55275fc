//! `etcdserverpb.Watch`: a bidirectional stream served by the [`WatchHub`].

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use xline_proto::etcdserverpb::WatchRequest;
use xline_proto::etcdserverpb::watch_server::Watch;

use crate::server::ServerContext;
use crate::watch::{WatchHub, WatchItem};

/// Serves Watch streams.
#[derive(Debug, Clone)]
pub struct WatchService {
    hub: Arc<WatchHub>,
}

impl WatchService {
    /// A Watch service over the member's context.
    pub fn new(ctx: Arc<ServerContext>) -> Self {
        Self {
            hub: WatchHub::new(ctx),
        }
    }

    /// The hub behind this service (to stop its streams at shutdown).
    pub fn hub(&self) -> Arc<WatchHub> {
        Arc::clone(&self.hub)
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<WatchItem>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // The token, or the certificate's user when there is none (etcd's AuthInfoFromCtx).
        let caller = crate::auth::Caller::of(request.metadata());
        let responses = self.hub.open_stream_as(request.into_inner(), caller);
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}
