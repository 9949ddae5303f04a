//! Messages that must reach another node (documents, acceptances, payments): kept until the peer
//! answers, tried again meanwhile, each peer's in order.

use crate::model::Status;
use crate::store;
use crate::wire::{Message, PaymentRequest, PaymentResponse};
use crate::{Error, PaymentCourier, Payments, Result};
use futures_util::StreamExt;
use std::sync::Arc;

/// Messages tried per peer and round, oldest first.
const PER_PEER: i64 = 20;
/// Peers delivered to at once in a round.
const PEERS_AT_ONCE: usize = 16;

impl Payments {
    pub(crate) async fn enqueue(&self, peer: &str, request: &PaymentRequest) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        self.enqueue_in(&mut tx, peer, request).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn enqueue_in(
        &self,
        tx: &mut sqlx::PgConnection,
        peer: &str,
        request: &PaymentRequest,
    ) -> Result<()> {
        let message = serde_json::to_value(request).map_err(|e| Error::Corrupt(e.to_string()))?;
        store::outbox::insert(tx, peer, message).await
    }

    /// The lock of deliveries to `peer`: held while its messages are sent, so each peer's go in
    /// order and a withdrawal can wait for a delivery in flight. Other peers' do not wait for it.
    pub(crate) fn delivery_lock(&self, peer: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.delivering.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(peer.to_string()).or_default().clone()
    }

    /// Delivers what is queued, each peer's messages in order and the peers side by side, so no
    /// peer's backlog delays another's. An answered message goes (acknowledged, or refused for
    /// good, which is logged); one that did not get there stays, and so do its peer's later ones.
    pub async fn flush_outbox(&self) {
        let Some(courier) = self.inner.courier.clone() else { return };
        let peers: Vec<String> = match store::outbox::peers(self.pool()).await {
            Ok(peers) => peers,
            Err(e) => {
                tracing::warn!(error = %e, "reading the payment outbox");
                return;
            }
        };
        futures_util::stream::iter(peers)
            .for_each_concurrent(PEERS_AT_ONCE, |peer| {
                let courier = courier.clone();
                async move {
                    // Each peer's messages are read under its lock, so a delivery never sends one
                    // that another delivery (or a withdrawal) has dealt with meanwhile.
                    let _delivering = self.delivery_lock(&peer).lock_owned().await;
                    let queued = store::outbox::of_peer(self.pool(), &peer, PER_PEER).await;
                    match queued {
                        Ok(queued) => self.deliver(courier.as_ref(), &peer, queued).await,
                        Err(e) => tracing::warn!(%peer, error = %e, "reading the payment outbox"),
                    }
                }
            })
            .await;
    }

    /// Sends one peer's messages in order, until one does not get there.
    async fn deliver(&self, courier: &dyn PaymentCourier, peer: &str, queued: Vec<(i64, serde_json::Value)>) {
        for (id, message) in queued {
            let request: PaymentRequest = match serde_json::from_value(message) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "a queued payment message does not read back; dropped");
                    self.dequeue(id).await;
                    continue;
                }
            };
            match courier.send(peer.to_string(), request.clone()).await {
                Ok(PaymentResponse::Ack) => {
                    self.delivered(&request.message).await;
                    self.dequeue(id).await;
                }
                Ok(PaymentResponse::Error { message, retry: false }) => {
                    tracing::warn!(%peer, %message, "the other side refused a payment message");
                    self.dequeue(id).await;
                }
                Ok(PaymentResponse::Error { message, retry: true }) => {
                    tracing::debug!(%peer, %message, "the other side could not take a payment message now");
                    return;
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "a payment message is not delivered yet");
                    return;
                }
            }
        }
    }

    async fn dequeue(&self, id: i64) {
        if let Err(e) = store::outbox::delete(self.pool(), id).await {
            tracing::warn!(error = %e, "updating the payment outbox");
        }
    }

    /// What an acknowledgement means here: the requestor has the document.
    async fn delivered(&self, message: &Message) {
        if let Message::Document { document } = message {
            let moved =
                self.set_status(document.kind, &document.id, &[Status::Issued], Status::Received, None).await;
            if let Err(e) = moved {
                tracing::warn!(error = %e, "recording a delivered document");
            }
        }
    }
}
