//! The receiving side: the `curppb.Peer` service.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::curppb::{self, peer_server::PeerServer};
use crate::core::Envelope;

/// Where received envelopes go: the node's `deliver`. Called on the gRPC task, so it must
/// not block (queue and return).
pub type Sink = Arc<dyn Fn(Envelope) + Send + Sync>;

/// Implements `curppb.Peer`: decodes every batch of every `Send` stream and hands the
/// envelopes, in order, to the [`Sink`]. Envelopes without a core meaning are dropped with a
/// warning; a stream whose bytes do not decode at all ends with an error status.
#[derive(Clone)]
pub struct PeerService {
    /// The node's deliver function.
    sink: Sink,
}

impl std::fmt::Debug for PeerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerService").finish_non_exhaustive()
    }
}

impl PeerService {
    /// A service delivering into `sink`.
    pub fn new(sink: Sink) -> Self {
        Self { sink }
    }

    /// Delivers the well-formed envelopes of `batch`; returns (delivered, malformed).
    fn deliver(&self, batch: curppb::EnvelopeBatch) -> (u64, u64) {
        let (mut delivered, mut malformed) = (0, 0);
        let mut first_error = None;
        for wire in batch.envelopes {
            match Envelope::try_from(wire) {
                Ok(envelope) => {
                    (self.sink)(envelope);
                    delivered += 1;
                }
                Err(err) => {
                    malformed += 1;
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_error {
            tracing::warn!(malformed, %err, "peer service: dropped malformed envelopes");
        }
        (delivered, malformed)
    }
}

#[tonic::async_trait]
impl curppb::peer_server::Peer for PeerService {
    async fn send(
        &self,
        request: Request<Streaming<curppb::EnvelopeBatch>>,
    ) -> Result<Response<curppb::SendAck>, Status> {
        let remote = request.remote_addr();
        let mut stream = request.into_inner();
        let mut ack = curppb::SendAck::default();
        loop {
            match stream.message().await {
                Ok(Some(batch)) => {
                    let (delivered, malformed) = self.deliver(batch);
                    ack.delivered += delivered;
                    ack.malformed += malformed;
                }
                Ok(None) => return Ok(Response::new(ack)),
                Err(status) => {
                    // Undecodable or oversized bytes, or a broken connection: end this stream;
                    // the sender reconnects.
                    tracing::warn!(?remote, %status, "peer service: Send stream failed");
                    return Err(status);
                }
            }
        }
    }

    async fn ping(
        &self,
        request: Request<curppb::PingRequest>,
    ) -> Result<Response<curppb::PingResponse>, Status> {
        Ok(Response::new(curppb::PingResponse {
            nonce: request.into_inner().nonce,
        }))
    }
}

/// The `curppb.Peer` server to mount on the peer listener: envelopes go to `sink`, and gRPC
/// messages (batches) larger than `max_message_bytes` are refused. Use at least the senders'
/// [`super::GrpcOptions::max_message_bytes`].
pub fn peer_server(sink: Sink, max_message_bytes: usize) -> PeerServer<PeerService> {
    PeerServer::new(PeerService::new(sink))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}
