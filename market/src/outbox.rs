//! Messages that must reach the other side (an approval, a rejection, a termination): kept in the
//! store until the peer answers, and tried again meanwhile, so a peer that restarts still gets
//! them.

use crate::wire::{MarketRequest, MarketResponse};
use crate::{Error, Market, Result};
use std::sync::atomic::Ordering;

/// Messages tried per round, oldest first.
const BATCH: i64 = 100;

impl Market {
    /// Queues a message that must reach `peer`, and tries it once now.
    pub(crate) async fn enqueue(&self, peer: &str, request: &MarketRequest) -> Result<()> {
        let message = serde_json::to_value(request).map_err(|e| Error::Corrupt(e.to_string()))?;
        self.store.enqueue(peer, &message).await?;
        self.flush_soon().await;
        Ok(())
    }

    /// Delivers what was just queued (by [`Market::enqueue`] or with a state change).
    pub(crate) async fn flush_soon(&self) {
        self.outbox_pending.store(true, Ordering::Release);
        self.flush_outbox().await;
    }

    /// Delivers queued messages, each peer's in order. One the peer answers goes: acknowledged,
    /// or refused for good (which no retry would change, so it is logged); one that does not
    /// reach the peer, or that the peer failed to take, stays for the next round, and so do
    /// that peer's later ones.
    pub async fn flush_outbox(&self) {
        let Some(courier) = self.courier.as_deref() else { return };
        if !self.outbox_pending.swap(false, Ordering::AcqRel) {
            return;
        }
        let rows = match self.store.outbox(BATCH).await {
            Ok(rows) => rows,
            Err(e) => {
                self.outbox_pending.store(true, Ordering::Release);
                tracing::warn!(error = %e, "reading the market outbox");
                return;
            }
        };
        // A peer's messages go in order: once one of them stays, its later ones wait too.
        let mut waiting: std::collections::HashSet<String> = std::collections::HashSet::new();
        for (id, peer, message) in rows {
            if waiting.contains(&peer) {
                self.outbox_pending.store(true, Ordering::Release);
                continue;
            }
            let answered = match serde_json::from_value::<MarketRequest>(message) {
                Ok(request) => match courier.send(peer.clone(), request).await {
                    Ok(MarketResponse::Ack) => true,
                    Ok(MarketResponse::Error { retry: true, message }) => {
                        tracing::debug!(%peer, %message, "the other side failed to take a queued market message; it stays");
                        false
                    }
                    Ok(refused) => {
                        tracing::warn!(%peer, answer = ?refused, "the other side refused a queued market message");
                        true
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "a queued market message is not delivered yet");
                        false
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "a queued market message does not read back; dropped");
                    true
                }
            };
            if !answered {
                waiting.insert(peer.clone());
            }
            if !answered {
                // Still something to deliver next time.
                self.outbox_pending.store(true, Ordering::Release);
            }
            if let Err(e) = self.store.outbox_tried(id, answered).await {
                tracing::warn!(error = %e, "updating the market outbox");
            }
        }
    }
}
