//! The work round: a debit note per running activity at the agreed interval, agreements ended
//! when their notes go unaccepted or nothing runs, and an invoice for each agreement that ended.

use super::{Dishonesty, LATE_INVOICE, POLL, ProviderAgent};
use agora_agreement::{AgreementState, Role};
use agora_payment::model::{Kind, Status};
use rust_decimal::Decimal;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long the agent does not bid for a requestor that left its debit notes unaccepted.
const STOP_FOR: Duration = Duration::from_secs(600);

/// The longest debit-note interval and accept timeout the agent works by, whatever the terms
/// say: a day.
const MAX_NOTE_WAIT: Duration = Duration::from_secs(86_400);
/// The most debit notes of one requestor's running work that may wait unaccepted, over all its
/// agreements: past that the agent issues it no more until it answers. Per requestor, so that
/// opening more agreements does not raise it.
const MAX_UNACCEPTED_NOTES: usize = 32;

impl ProviderAgent {
    /// The agreements this node provides that are running.
    pub(super) async fn approved(&self) -> Result<Vec<agora_agreement::Agreement>, crate::Error> {
        Ok(self.inner.market.agreements_in(Role::Provider, AgreementState::Approved).await?)
    }

    /// Looks after each approved agreement: a debit note per running activity at the agreed
    /// interval; the agreement terminated when its debit notes go unaccepted past the agreed
    /// timeout (and no bid for that requestor for a while), or when no activity has run for
    /// `idle_agreement_secs`.
    pub(super) async fn work(&self) -> Result<(), crate::Error> {
        let config = &self.inner.config;
        let retry: Vec<String> =
            self.inner.to_invoice.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
        for agreement in retry {
            if let Err(e) = self.invoice(&agreement).await {
                tracing::warn!(%agreement, error = %e, "invoicing, again");
            }
        }
        let agreements = self.approved().await?;
        let now = Instant::now();
        self.inner
            .working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| agreements.iter().any(|a| &a.id == id));
        // The notes waiting for an answer, per agreement, and the backlog of running work's
        // notes each requestor has left over all its agreements.
        let mut waiting_of = std::collections::HashMap::new();
        let mut backlog_of: std::collections::HashMap<agora_identity::Address, usize> =
            std::collections::HashMap::new();
        for agreement in &agreements {
            let running: Vec<_> =
                self.inner.activities.hosted_usage(&agreement.id).into_iter().filter(|u| !u.ended).collect();
            let waiting: Vec<_> = self
                .inner
                .payments
                .agreement_documents(Kind::DebitNote, &agreement.id)
                .await?
                .into_iter()
                .filter(|d| d.issued_here && matches!(d.status, Status::Issued | Status::Received))
                .collect();
            // Notes of activities that ended are settled by the invoice (Golem's SDKs leave them
            // unanswered), so only the running ones' count towards the backlog.
            let backlog = waiting
                .iter()
                .filter(|d| running.iter().any(|a| d.document.activity_id.as_deref() == Some(&a.activity_id)))
                .count();
            *backlog_of.entry(agreement.requestor).or_default() += backlog;
            waiting_of.insert(agreement.id.clone(), waiting);
        }
        for agreement in agreements {
            // The agreed terms, read checked; the agent never sends notes more often than it
            // offered to, and waits a day at the most, whatever a requestor wrote.
            let own_interval = Duration::from_secs(config.debit_note_interval_secs.max(1));
            let interval = agreement
                .debit_note_interval()
                .ok()
                .flatten()
                .unwrap_or(own_interval)
                .clamp(own_interval, MAX_NOTE_WAIT.max(own_interval));
            let timeout = agreement
                .debit_note_accept_timeout()
                .ok()
                .flatten()
                .unwrap_or(Duration::from_secs(config.debit_note_accept_timeout_secs))
                .clamp(Duration::from_secs(1), MAX_NOTE_WAIT);
            let running: Vec<_> =
                self.inner.activities.hosted_usage(&agreement.id).into_iter().filter(|u| !u.ended).collect();
            let (note_due, idle_for) = {
                let mut working =
                    self.inner.working.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let w = working.entry(agreement.id.clone()).or_default();
                if running.is_empty() {
                    w.idle_since.get_or_insert(now);
                } else {
                    w.idle_since = None;
                }
                let due = !running.is_empty() && w.last_note.is_none_or(|t| now - t >= interval);
                if due {
                    w.last_note = Some(now);
                }
                (due, w.idle_since.map(|t| now - t))
            };
            if idle_for.is_some_and(|idle| idle >= Duration::from_secs(config.idle_agreement_secs)) {
                let reason =
                    json!({"message": format!("idle: no activity for {} s", config.idle_agreement_secs)});
                self.inner.market.terminate_agreement(&agreement.id, Some(reason)).await?;
                continue;
            }
            let waiting = waiting_of.remove(&agreement.id).unwrap_or_default();
            // Clamped above to a day, which chrono holds.
            let timeout_delta = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
            let unaccepted = waiting
                .iter()
                // Only work still running can be stopped for it: a note of an activity that has
                // ended (Golem's SDKs ignore those) is settled by the invoice.
                .filter(|d| running.iter().any(|a| d.document.activity_id.as_deref() == Some(&a.activity_id)))
                .any(|d| chrono::Utc::now() - d.document.timestamp > timeout_delta);
            if unaccepted {
                self.inner
                    .stopped_for
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(agreement.requestor, now + STOP_FOR);
                let reason =
                    json!({"message": format!("debit notes unaccepted for {} s", timeout.as_secs())});
                self.inner.market.terminate_agreement(&agreement.id, Some(reason)).await?;
                tracing::info!(agreement = %agreement.id, requestor = %agreement.requestor, "stopped working: debit notes unaccepted");
                continue;
            }
            let backlog = backlog_of.entry(agreement.requestor).or_default();
            if note_due && backlog.saturating_add(running.len()) > MAX_UNACCEPTED_NOTES {
                tracing::info!(agreement = %agreement.id, requestor = %agreement.requestor, backlog = *backlog,
                    "no more debit notes until the requestor answers");
            } else if note_due {
                *backlog += running.len();
                for activity in running {
                    let usage: Vec<f64> = if self.inner.dishonesty == Some(Dishonesty::InflateUsage) {
                        activity.usage.iter().map(|u| u * 100.0 + 100.0).collect()
                    } else {
                        activity.usage.clone()
                    };
                    let note = self
                        .inner
                        .payments
                        .issue_debit_note(agora_payment::NewDebitNote {
                            agreement_id: agreement.id.clone(),
                            activity_id: activity.activity_id.clone(),
                            total_amount_due: None,
                            usage_counter_vector: Some(json!(usage)),
                            payment_due_date: None,
                        })
                        .await?;
                    self.inner.payments.send(Kind::DebitNote, &note.document.id).await?;
                }
            }
        }
        Ok(())
    }

    /// Invoices each agreement this node provides as soon as it ends: the cost of its
    /// activities' usage at the agreement's prices.
    pub(super) async fn invoice_ended(&self, stop: CancellationToken) {
        let mut after = Some(chrono::Utc::now());
        loop {
            let events = tokio::select! {
                () = stop.cancelled() => return,
                events = self.inner.market.agreement_events(after, POLL, 100) => events,
            };
            match events {
                Ok(events) => {
                    for event in events {
                        after = Some(event.event_date);
                        if event.event_type == "AgreementTerminatedEvent"
                            && let Err(e) = self.invoice(&event.agreement_id).await
                        {
                            tracing::warn!(agreement = %event.agreement_id, error = %e, "invoicing");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "agreement events");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Invoices an ended agreement, or sends its invoice if it was issued and not sent. A failure
    /// is tried again at the next round of [`ProviderAgent::work`].
    async fn invoice(&self, agreement_id: &str) -> Result<(), crate::Error> {
        if !self
            .inner
            .invoiced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agreement_id.into())
        {
            return Ok(());
        }
        let done = self.invoice_once(agreement_id).await;
        if done.is_err() {
            self.inner
                .invoiced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(agreement_id);
            self.inner
                .to_invoice
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(agreement_id.into());
        }
        done
    }

    async fn invoice_once(&self, agreement_id: &str) -> Result<(), crate::Error> {
        if self.inner.dishonesty == Some(Dishonesty::LateInvoice) {
            let since = *self
                .inner
                .invoice_asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(agreement_id.to_string())
                .or_insert_with(Instant::now);
            if since.elapsed() < LATE_INVOICE {
                // Tried again at the next round, as a failure to invoice is.
                return Err(crate::Error::Conflict(format!("late-invoice: invoicing {agreement_id} later")));
            }
        }
        let agreement = self.inner.market.agreement(agreement_id).await?;
        if agreement.role != Role::Provider {
            return Ok(());
        }
        let issued = self
            .inner
            .payments
            .agreement_documents(Kind::Invoice, agreement_id)
            .await?
            .into_iter()
            .find(|d| d.issued_here && d.status != Status::Cancelled);
        if let Some(issued) = issued {
            if issued.status == Status::Issued {
                self.inner.payments.send(Kind::Invoice, &issued.document.id).await?;
            }
            return Ok(());
        }
        let usage = self.inner.activities.hosted_usage(agreement_id);
        let mut amount = Decimal::ZERO;
        for hosted in &usage {
            amount += agora_payment::usage_cost(&agreement, &json!(hosted.usage))?.unwrap_or_default();
        }
        if amount.is_zero() {
            return Ok(());
        }
        if self.inner.dishonesty == Some(Dishonesty::Overcharge) {
            amount = amount.checked_mul(Decimal::ONE_HUNDRED).unwrap_or(amount);
        }
        let invoice = self
            .inner
            .payments
            .issue_invoice(agora_payment::NewInvoice {
                agreement_id: agreement_id.into(),
                activity_ids: usage.into_iter().map(|u| u.activity_id).collect(),
                amount: amount.to_string(),
                payment_due_date: None,
            })
            .await?;
        self.inner.payments.send(Kind::Invoice, &invoice.document.id).await?;
        tracing::info!(agreement = agreement_id, invoice = %invoice.document.id, %amount, "invoice sent");
        Ok(())
    }
}
