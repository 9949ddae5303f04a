//! The handle the rest of the node holds on the network task: commands sent to the task, and
//! requests opened on streams of their own, bounded per peer and protocol.

use crate::in_flight::{InFlight, Slot};
use crate::protocol::MAX_CONCURRENT_STREAMS;
use crate::routes::{Gossip, Request, RouteError, refusal_of};
use crate::{Channel, Error, Result};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What `agora net status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NetStatus {
    pub peer_id: String,
    pub listen: Vec<String>,
    pub peers: Vec<String>,
}

/// Commands the handle sends to the task that owns the swarm.
#[derive(Debug)]
pub(crate) enum Command {
    Status(oneshot::Sender<NetStatus>),
    Dial(Multiaddr, oneshot::Sender<Result<()>>),
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    Request {
        channel: Channel,
        peer: PeerId,
        body: serde_json::Value,
        reply: oneshot::Sender<Result<serde_json::Value>>,
    },
    Penalise(PeerId),
    Serve(Channel, oneshot::Sender<std::result::Result<mpsc::Receiver<Request>, RouteError>>),
    Follow(String, oneshot::Sender<std::result::Result<mpsc::Receiver<Gossip>, RouteError>>),
    Join(String, oneshot::Sender<Result<()>>),
}

/// How long a handle waits for the network task to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A cheap-to-clone handle on the network task.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    /// Opens and accepts [`Pipe`] streams without going through the network task.
    pub(crate) streams: libp2p_stream::Control,
    /// Requests in flight per peer and protocol, at most [`MAX_CONCURRENT_STREAMS`]: more wait
    /// their turn here rather than open streams the connection cannot carry (a peer that opens
    /// too many has its connection closed). The lock is held for a map look-up only; a poisoned
    /// one (a panic while it was held) is passed on.
    in_flight: Arc<Mutex<InFlight>>,
}

impl std::fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetHandle").field("peer_id", &self.peer_id).finish_non_exhaustive()
    }
}

impl NetHandle {
    pub(crate) fn new(
        commands: mpsc::Sender<Command>,
        peer_id: PeerId,
        streams: libp2p_stream::Control,
    ) -> Self {
        Self { commands, peer_id, streams, in_flight: Arc::default() }
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Error::Stopped)?;
        tokio::time::timeout(REPLY_TIMEOUT, rx).await.map_err(|_| Error::Stopped)?.map_err(|_| Error::Stopped)
    }

    /// This node's peer id, listen addresses and connected peers.
    pub async fn status(&self) -> Result<NetStatus> {
        self.ask(Command::Status).await
    }

    /// Dials a peer address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// Publishes on a gossip topic. With no peers subscribed yet there is no one to send to, and
    /// that is not an error: announcements are repeated.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<()> {
        self.ask(|reply| Command::Publish { topic: topic.to_string(), data, reply }).await?
    }

    /// Reports that `peer` sent something that does not hold up. After a few reports the peer is
    /// disconnected and ignored for a while.
    pub async fn penalise(&self, peer: PeerId) {
        let _stopped = self.commands.send(Command::Penalise(peer)).await;
    }

    async fn send_request(
        &self,
        channel: Channel,
        peer: PeerId,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let (tx, rx) = oneshot::channel();
        let command = Command::Request { channel, peer, body, reply: tx };
        self.commands.send(command).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Opens this node's route for `channel`: every request on that protocol comes out of the
    /// returned receiver, and nowhere else. Answer each with [`Request::answer`].
    pub async fn serve(&self, channel: Channel) -> Result<mpsc::Receiver<Request>> {
        self.ask(|tx| Command::Serve(channel, tx)).await?.map_err(Error::Route)
    }

    /// Follows a gossip topic: peers joining it, and once this node has joined it too, its
    /// messages, come out of the returned receiver.
    pub async fn follow(&self, topic: &str) -> Result<mpsc::Receiver<Gossip>> {
        self.ask(|tx| Command::Follow(topic.to_string(), tx)).await?.map_err(Error::Route)
    }

    /// Joins a gossip topic: from now on this node receives its messages and relays them to its
    /// peers, and its peers see it joined. A node that has not joined a topic can still publish
    /// on it, to the connected peers that have. Joining twice is joining once.
    pub async fn join(&self, topic: &str) -> Result<()> {
        self.ask(|tx| Command::Join(topic.to_string(), tx)).await?
    }

    /// Sends a typed request to a peer named by its id text and decodes the answer; every
    /// failure (a bad peer id, the network, a refusal, an answer of another shape) is said in
    /// the error.
    pub async fn request_typed<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        channel: Channel,
        peer: &str,
        request: &Req,
    ) -> Result<Resp> {
        let peer_id: PeerId = peer.parse().map_err(|e| Error::BadPeer(format!("{peer}: {e}")))?;
        let body = serde_json::to_value(request).map_err(|e| Error::BadAnswer(e.to_string()))?;
        let answer = self.request_on(channel, peer_id, body).await?;
        serde_json::from_value(answer)
            .map_err(|e| Error::BadAnswer(format!("{peer} answered {channel} in an unexpected shape: {e}")))
    }

    /// Sends a request on one of the directed protocols and waits for the answer. A refusal by
    /// the other node's network (busy, rate limited, not served) is an [`Error::Refused`].
    pub async fn request_on(
        &self,
        channel: Channel,
        peer: PeerId,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let mut slot = Slot::take(&self.in_flight, (peer, channel));
        let timeout = channel.spec().timeout;
        let permit = tokio::time::timeout(timeout, slot.slots.clone().acquire_owned())
            .await
            .map_err(|_| Error::Request {
                peer: peer.to_string(),
                message: format!(
                    "{MAX_CONCURRENT_STREAMS} requests of {channel} to it were in flight for {timeout:?}"
                ),
            })?
            .map_err(|_| Error::Stopped)?;
        slot.permit = Some(permit);
        let answer = self.send_request(channel, peer, body).await;
        drop(slot);
        let answer = answer?;
        match refusal_of(&answer) {
            Some(message) => Err(Error::Refused { peer: peer.to_string(), message: message.to_string() }),
            None => Ok(answer),
        }
    }
}
