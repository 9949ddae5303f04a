//! Byte streams to and from peers on the [`Pipe`] protocols, for what is too large to answer in
//! one message. They are opened and accepted through libp2p-stream's control, beside the
//! network task rather than through it.

use crate::routes::RouteError;
use crate::{Error, NetHandle, Pipe, Result};
use futures_util::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use std::time::Duration;

/// How long opening a [`Pipe`] stream (dialling included) may take.
const PIPE_OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// A byte stream to or from a peer on a [`Pipe`] protocol, read and written with tokio's traits.
pub type Piped = tokio_util::compat::Compat<libp2p::Stream>;

/// The streams peers open on one [`Pipe`] protocol, as they come. Dropping it stops accepting:
/// the protocol is then refused during negotiation.
pub struct Incoming(libp2p_stream::IncomingStreams);

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl Incoming {
    /// The next stream and the peer that opened it. It waits for as long as the node runs: the
    /// part of the node that accepts stops on its own shutdown signal.
    pub async fn next(&mut self) -> Option<(PeerId, Piped)> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        let (peer, stream) = self.0.next().await?;
        Some((peer, stream.compat()))
    }
}

impl NetHandle {
    /// Opens a byte stream to a peer (named by its id text) on a [`Pipe`] protocol, dialling it
    /// if it is not connected.
    pub async fn open(&self, pipe: Pipe, peer: &str) -> Result<Piped> {
        use tokio_util::compat::FuturesAsyncReadCompatExt;
        let peer_id: PeerId = peer.parse().map_err(|e| Error::BadPeer(format!("{peer}: {e}")))?;
        let mut control = self.streams.clone();
        let stream = tokio::time::timeout(
            PIPE_OPEN_TIMEOUT,
            control.open_stream(peer_id, StreamProtocol::new(pipe.name())),
        )
        .await
        .map_err(|_| Error::Request {
            peer: peer.to_string(),
            message: format!("no {pipe} stream opened within {PIPE_OPEN_TIMEOUT:?}"),
        })?
        .map_err(|e| Error::Request { peer: peer.to_string(), message: e.to_string() })?;
        Ok(stream.compat())
    }

    /// Takes every stream peers open on `pipe`; only one part of the node may.
    pub fn accept(&self, pipe: Pipe) -> Result<Incoming> {
        let mut control = self.streams.clone();
        control
            .accept(StreamProtocol::new(pipe.name()))
            .map(Incoming)
            .map_err(|_| Error::Route(RouteError::AlreadyAccepted(pipe)))
    }
}
