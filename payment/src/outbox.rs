//! Messages that must reach another node (documents, acceptances, payments): kept until the peer
//! answers, tried again meanwhile, each peer's in order.

use crate::model::Status;
use crate::wire::{Message, PaymentRequest, PaymentResponse};
use crate::{Error, PaymentCourier, Payments, Result};
use futures_util::StreamExt;
use sqlx::{Postgres, Row, Transaction};
use std::collections::BTreeMap;
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
        tx: &mut Transaction<'_, Postgres>,
        peer: &str,
        request: &PaymentRequest,
    ) -> Result<()> {
        let message = serde_json::to_value(request).map_err(|e| Error::Corrupt(e.to_string()))?;
        sqlx::query("INSERT INTO payment_outbox (peer, message) VALUES ($1, $2)")
            .bind(peer)
            .bind(message)
            .execute(&mut **tx)
            .await?;
        Ok(())
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
        let rows = match sqlx::query(
            "SELECT q.id, q.peer, q.message FROM (SELECT DISTINCT peer FROM payment_outbox) peers
             CROSS JOIN LATERAL (SELECT id, peer, message FROM payment_outbox o
                                 WHERE o.peer = peers.peer ORDER BY id LIMIT $1) q
             ORDER BY q.peer, q.id",
        )
        .bind(PER_PEER)
        .fetch_all(self.pool())
        .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "reading the payment outbox");
                return;
            }
        };
        let mut per_peer: BTreeMap<String, Vec<(i64, serde_json::Value)>> = BTreeMap::new();
        for row in rows {
            if let (Ok(id), Ok(peer), Ok(message)) = (
                row.try_get::<i64, _>("id"),
                row.try_get::<String, _>("peer"),
                row.try_get::<serde_json::Value, _>("message"),
            ) {
                per_peer.entry(peer).or_default().push((id, message));
            }
        }
        futures_util::stream::iter(per_peer)
            .for_each_concurrent(PEERS_AT_ONCE, |(peer, queued)| {
                let courier = courier.clone();
                async move {
                    // A delivery to this peer under way already takes its messages in order.
                    let Ok(_delivering) = self.delivery_lock(&peer).try_lock_owned() else { return };
                    self.deliver(courier.as_ref(), &peer, queued).await;
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
        if let Err(e) =
            sqlx::query("DELETE FROM payment_outbox WHERE id = $1").bind(id).execute(self.pool()).await
        {
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
