//! How the market reaches other nodes: negotiation messages to one peer, announcements to all.
//! The node's network is one courier ([`agora_net::NetHandle`]); a test can link two markets
//! in-process with another.

use crate::wire::{Announcement, MarketRequest, MarketResponse, OFFERS_TOPIC};
use crate::{Error, Result};
use agora_net::{Channel, NetHandle};
use std::future::Future;
use std::pin::Pin;

/// A boxed future, as a courier's methods return them.
pub type Delivery<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Carries the market's messages.
pub trait Courier: Send + Sync + std::fmt::Debug + 'static {
    /// Sends a request to `peer` and waits for its answer.
    fn send(
        &self,
        peer: String,
        request: MarketRequest,
    ) -> Delivery<Result<MarketResponse, agora_net::Error>>;

    /// Tells the whole network; best effort (offers are announced again periodically).
    fn announce(&self, announcement: Announcement) -> Delivery<()>;
}

impl Courier for NetHandle {
    fn send(
        &self,
        peer: String,
        request: MarketRequest,
    ) -> Delivery<Result<MarketResponse, agora_net::Error>> {
        let net = self.clone();
        Box::pin(async move { net.request_typed(Channel::Market, &peer, &request).await })
    }

    fn announce(&self, announcement: Announcement) -> Delivery<()> {
        let net = self.clone();
        Box::pin(async move {
            // Serialising our own enum cannot fail.
            let data = serde_json::to_vec(&announcement).expect("announcement JSON");
            if let Err(e) = net.publish(OFFERS_TOPIC, data).await {
                tracing::warn!(error = %e, "could not announce offers");
            }
        })
    }
}

/// The answer a peer gives to a request it accepted.
pub(crate) fn acked(answer: Result<MarketResponse, agora_net::Error>) -> Result<()> {
    match answer {
        Ok(MarketResponse::Ack) => Ok(()),
        Ok(MarketResponse::Error { message, .. }) => {
            Err(Error::Conflict(format!("the other side refused: {message}")))
        }
        Ok(other) => Err(Error::Conflict(format!("unexpected answer: {other:?}"))),
        Err(e) => Err(Error::Unreachable(e.to_string())),
    }
}
