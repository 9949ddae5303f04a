//! Where inbound traffic goes: each protocol to the one part of the node that serves it, each
//! gossip topic to the one part that follows it.
//!
//! A request holds a permit of its protocol's handler cap from the moment it is routed until it
//! is answered, so no more than [`crate::Spec::handlers`] run at once; one that finds none free
//! is refused as busy. A request on a protocol nobody serves is refused, and logged.

use crate::Channel;
use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// A directed request from a peer, to be answered once.
#[derive(Debug)]
pub struct Request {
    pub from: PeerId,
    pub body: serde_json::Value,
    reply: oneshot::Sender<serde_json::Value>,
    /// Held until the answer is sent: the protocol's handler cap counts this request.
    _permit: OwnedSemaphorePermit,
}

impl Request {
    /// Sends the answer; a requester that left meanwhile is not an error.
    pub fn answer(self, answer: serde_json::Value) {
        let _requester_gone = self.reply.send(answer);
    }

    /// Decodes the body as the protocol's request type.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.body)
    }
}

/// What a followed gossip topic brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gossip {
    Message {
        from: PeerId,
        data: Vec<u8>,
    },
    /// A peer joined the topic: what it missed can be repeated to it now.
    Joined {
        peer: PeerId,
    },
}

/// The answer net itself gives when it refuses a request before any handler sees it:
/// `{"error": …}`. Protocol answers are tagged objects, so the two cannot be confused.
pub(crate) fn refusal(message: impl Into<String>) -> serde_json::Value {
    serde_json::json!({ "error": message.into() })
}

/// The refusal message, if `answer` is one.
pub(crate) fn refusal_of(answer: &serde_json::Value) -> Option<&str> {
    let object = answer.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get("error")?.as_str()
}

/// Gossip events waiting for their follower, at most; more are dropped (offers are announced
/// again).
pub const GOSSIP_QUEUE: usize = 1024;

struct Route {
    requests: mpsc::Sender<Request>,
    permits: Arc<Semaphore>,
}

/// The routes of one node, owned by the network task.
#[derive(Default)]
pub(crate) struct Routes {
    requests: HashMap<Channel, Route>,
    gossip: HashMap<String, mpsc::Sender<Gossip>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("requests", &self.requests.keys().collect::<Vec<_>>())
            .field("gossip", &self.gossip.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a route could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{0} is already served by another part of this node")]
    AlreadyServed(Channel),
    #[error("gossip topic {0} is already followed by another part of this node")]
    AlreadyFollowed(String),
    #[error("{0} is already accepted by another part of this node")]
    AlreadyAccepted(crate::Pipe),
}

impl Routes {
    pub(crate) fn serve(&mut self, channel: Channel) -> Result<mpsc::Receiver<Request>, RouteError> {
        if self.requests.get(&channel).is_some_and(|r| !r.requests.is_closed()) {
            return Err(RouteError::AlreadyServed(channel));
        }
        let handlers = channel.spec().handlers;
        // Every queued request holds a permit, so the queue never holds more than the cap.
        let (tx, rx) = mpsc::channel(handlers);
        self.requests.insert(channel, Route { requests: tx, permits: Arc::new(Semaphore::new(handlers)) });
        Ok(rx)
    }

    pub(crate) fn follow(&mut self, topic: &str) -> Result<mpsc::Receiver<Gossip>, RouteError> {
        if self.gossip.get(topic).is_some_and(|r| !r.is_closed()) {
            return Err(RouteError::AlreadyFollowed(topic.to_string()));
        }
        let (tx, rx) = mpsc::channel(GOSSIP_QUEUE);
        self.gossip.insert(topic.to_string(), tx);
        Ok(rx)
    }

    /// Hands a request to its protocol's server; the error is the refusal to answer with.
    pub(crate) fn route(
        &self,
        channel: Channel,
        from: PeerId,
        body: serde_json::Value,
    ) -> Result<oneshot::Receiver<serde_json::Value>, serde_json::Value> {
        let Some(route) = self.requests.get(&channel) else {
            tracing::warn!(%from, protocol = %channel, "a request on a protocol this node does not serve");
            return Err(refusal(format!("this node does not serve {channel}")));
        };
        if route.requests.is_closed() {
            tracing::debug!(%from, protocol = %channel, "a request while the node stops");
            return Err(refusal(format!("{channel} is stopping on this node")));
        }
        let Ok(permit) = route.permits.clone().try_acquire_owned() else {
            tracing::debug!(%from, protocol = %channel, "handlers at their cap; a request refused");
            let cap = channel.spec().handlers;
            return Err(refusal(format!(
                "busy: this node is handling {cap} requests of {channel}, its limit; try again shortly"
            )));
        };
        let (tx, rx) = oneshot::channel();
        let request = Request { from, body, reply: tx, _permit: permit };
        match route.requests.try_send(request) {
            Ok(()) => Ok(rx),
            // Full cannot happen (permits bound the queue); closed means the server stopped.
            Err(_) => Err(refusal(format!("{channel} is stopping on this node"))),
        }
    }

    /// Hands gossip to its topic's follower; unfollowed topics and a full queue drop it.
    pub(crate) fn gossip(&self, topic: &str, event: Gossip) {
        match self.gossip.get(topic) {
            Some(follower) => {
                if follower.try_send(event).is_err() {
                    tracing::debug!(topic, "gossip queue full or closed; an event dropped");
                }
            }
            None => tracing::debug!(topic, "gossip on a topic nobody follows"),
        }
    }
}
