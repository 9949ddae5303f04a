//! Messages that must reach another node (documents, acceptances, payments): kept until the peer
//! answers, tried again meanwhile, each peer's in order.

use crate::model::Status;
use crate::wire::{Message, PaymentRequest, PaymentResponse};
use crate::{Error, Payments, Result};
use sqlx::{Postgres, Row, Transaction};

/// Messages tried per round, oldest first.
const BATCH: i64 = 100;

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

    /// Delivers what is queued. An answered message goes (acknowledged, or refused for good,
    /// which is logged); one that did not get there stays, and so do its peer's later ones.
    pub async fn flush_outbox(&self) {
        let Some(courier) = self.inner.courier.clone() else { return };
        let _one_at_a_time = self.inner.flushing.lock().await;
        let rows = match sqlx::query("SELECT id, peer, message FROM payment_outbox ORDER BY id LIMIT $1")
            .bind(BATCH)
            .fetch_all(self.pool())
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "reading the payment outbox");
                return;
            }
        };
        let mut waiting = std::collections::HashSet::new();
        for row in rows {
            let (Ok(id), Ok(peer), Ok(message)) = (
                row.try_get::<i64, _>("id"),
                row.try_get::<String, _>("peer"),
                row.try_get::<serde_json::Value, _>("message"),
            ) else {
                continue;
            };
            if waiting.contains(&peer) {
                continue;
            }
            let request: PaymentRequest = match serde_json::from_value(message) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "a queued payment message does not read back; dropped");
                    self.dequeue(id).await;
                    continue;
                }
            };
            match courier.send(peer.clone(), request.clone()).await {
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
                    waiting.insert(peer);
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "a payment message is not delivered yet");
                    waiting.insert(peer);
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
