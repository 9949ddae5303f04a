//! Negotiation and agreements: counter-proposals both ways, rejection with a reason, and the
//! agreement both sides sign — the requestor on confirm, the provider on approve. Each side checks
//! the other's signature before it counts. Every transition is a compare-and-set on the current
//! state, and messages that must arrive go through an outbox that is retried until acknowledged.

use crate::api::{AgreementEvent, AgreementView, DemandOfferBase, ProposalView, Reason};
use crate::service::{derived_id, now_millis};
use crate::store::{EventRef, MarketStore, Presence, add_event};
use crate::wire::{AgreementBody, MarketRequest, MarketResponse, WireProposal};
use crate::{Error, Market, Result};
use agora_identity::{Address, sign_json, verify_json};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// Sends market requests to other nodes. The node implements it with its network handle.
pub trait Courier: Send + Sync + std::fmt::Debug + 'static {
    fn send(
        &self,
        peer: String,
        request: MarketRequest,
    ) -> Pin<Box<dyn Future<Output = Result<MarketResponse, String>> + Send>>;
}

#[derive(sqlx::FromRow)]
struct ProposalRow {
    proposal_id: String,
    subscription_id: String,
    demand_id: String,
    offer_id: String,
    issuer_id: String,
    peer_id: String,
    properties: serde_json::Value,
    constraints: String,
    state: String,
}

#[derive(sqlx::FromRow)]
struct AgreementRow {
    agreement_id: String,
    role: String,
    peer_id: String,
    provider_id: String,
    demand: serde_json::Value,
    offer: serde_json::Value,
    valid_to: DateTime<Utc>,
    state: String,
    proposed_signature: Option<String>,
    approved_signature: Option<String>,
    approved_date: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl AgreementRow {
    fn body(&self) -> AgreementBody {
        AgreementBody {
            agreement_id: self.agreement_id.clone(),
            demand: self.demand.clone(),
            offer: self.offer.clone(),
            valid_to: self.valid_to,
            timestamp: self.created_at,
        }
    }

    fn view(self) -> AgreementView {
        AgreementView {
            agreement_id: self.agreement_id,
            demand: self.demand,
            offer: self.offer,
            valid_to: self.valid_to,
            approved_date: self.approved_date,
            state: self.state,
            timestamp: self.created_at,
            proposed_signature: self.proposed_signature,
            approved_signature: self.approved_signature,
            role: self.role,
        }
    }
}

const AGREEMENT_COLUMNS: &str = "agreement_id, role, peer_id, provider_id, demand, offer, \
     valid_to, state, proposed_signature, approved_signature, approved_date, created_at";

async fn agreement_row(store: &MarketStore, id: &str) -> Result<AgreementRow> {
    let row: Option<AgreementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AGREEMENT_COLUMNS} FROM agreements WHERE agreement_id = $1"
    )))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    row.ok_or_else(|| Error::NotFound(format!("no agreement {id}")))
}

pub(crate) async fn agreement_view(store: &MarketStore, id: &str) -> Result<AgreementView> {
    Ok(agreement_row(store, id).await?.view())
}

fn reason_of(message: Option<Reason>) -> Option<Reason> {
    message.filter(|r| !r.is_null())
}

/// The answer a peer gives to a request it accepted.
fn acked(answer: Result<MarketResponse, String>) -> Result<()> {
    match answer {
        Ok(MarketResponse::Ack) => Ok(()),
        Ok(MarketResponse::Error { message }) => {
            Err(Error::Conflict(format!("the other side refused: {message}")))
        }
        Ok(other) => Err(Error::Conflict(format!("unexpected answer: {other:?}"))),
        Err(e) => Err(Error::Unreachable(e)),
    }
}

impl Market {
    fn courier(&self) -> Result<&dyn Courier> {
        self.courier.as_deref().ok_or_else(|| Error::Unreachable("this node has no network".into()))
    }

    /// Marks every Initial or Draft proposal older than the proposal lifetime Expired (a
    /// compare-and-set on the state, so an answer that got in first stands).
    pub async fn expire_proposals(&self) -> Result<u64> {
        let lifetime = self.proposal_lifetime.num_milliseconds() as f64 / 1000.0;
        Ok(sqlx::query(
            "UPDATE proposals SET state = 'Expired'
             WHERE state IN ('Initial', 'Draft') AND created_at < now() - make_interval(secs => $1)",
        )
        .bind(lifetime)
        .execute(self.store.pool())
        .await?
        .rows_affected())
    }

    async fn proposal_row(&self, subscription: &str, proposal_id: &str) -> Result<ProposalRow> {
        self.expire_proposals().await?;
        let row: Option<ProposalRow> = sqlx::query_as(
            "SELECT proposal_id, subscription_id, demand_id, offer_id, issuer_id, peer_id, properties,
                    constraints, state
             FROM proposals WHERE proposal_id = $1 AND subscription_id = $2",
        )
        .bind(proposal_id)
        .bind(subscription)
        .fetch_optional(self.store.pool())
        .await?;
        row.ok_or_else(|| Error::NotFound(format!("no proposal {proposal_id} on {subscription}")))
    }

    pub(crate) async fn require_subscription(&self, subscription: &str, provider_side: bool) -> Result<()> {
        let presence = if provider_side {
            self.store.offer_presence(subscription).await?
        } else {
            self.store.demand_presence(subscription).await?
        };
        match presence {
            Presence::Active => Ok(()),
            Presence::Unsubscribed => {
                Err(Error::Gone(format!("subscription {subscription} is unsubscribed")))
            }
            Presence::Unknown => Err(Error::NotFound(format!("no subscription {subscription}"))),
        }
    }

    /// Responds to the other side's proposal with a counter-proposal (either role).
    pub async fn counter_proposal(
        &self,
        subscription: &str,
        prev_id: &str,
        base: &DemandOfferBase,
        provider_side: bool,
    ) -> Result<String> {
        self.require_subscription(subscription, provider_side).await?;
        let prev = self.proposal_row(subscription, prev_id).await?;
        let me = format!("{:#x}", self.node_id);
        if prev.issuer_id == me {
            return Err(Error::Conflict(format!(
                "proposal {prev_id} is this node's own; counter the other side's"
            )));
        }
        if !matches!(prev.state.as_str(), "Initial" | "Draft") {
            return Err(Error::Gone(format!("proposal {prev_id} is {}", prev.state)));
        }
        agora_grammar::parse(&base.constraints).map_err(|e| Error::BadInput(format!("constraints: {e}")))?;
        let flat = agora_grammar::flatten(&base.properties).map_err(|e| Error::BadInput(e.to_string()))?;
        let properties = serde_json::to_value(&flat).unwrap_or_default();
        let timestamp = now_millis();
        let id = derived_id(&["proposal", prev_id, &me, &timestamp.to_rfc3339()]);
        sqlx::query(
            "INSERT INTO proposals (proposal_id, subscription_id, demand_id, offer_id, issuer_id, peer_id,
                                    properties, constraints, state, prev_proposal_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Draft', $9)",
        )
        .bind(&id)
        .bind(subscription)
        .bind(&prev.demand_id)
        .bind(&prev.offer_id)
        .bind(&me)
        .bind(&prev.peer_id)
        .bind(&properties)
        .bind(&base.constraints)
        .bind(prev_id)
        .execute(self.store.pool())
        .await?;
        let wire = WireProposal {
            proposal_id: id.clone(),
            prev_proposal_id: prev_id.to_string(),
            demand_id: prev.demand_id,
            offer_id: prev.offer_id,
            issuer_id: me,
            properties,
            constraints: base.constraints.clone(),
            timestamp,
        };
        acked(self.courier()?.send(prev.peer_id, MarketRequest::Proposal { proposal: wire }).await)?;
        Ok(id)
    }

    /// Rejects the other side's proposal, telling it why.
    pub async fn reject_proposal(
        &self,
        subscription: &str,
        proposal_id: &str,
        reason: Option<Reason>,
    ) -> Result<()> {
        let prev = self.proposal_row(subscription, proposal_id).await?;
        let done = sqlx::query(
            "UPDATE proposals SET state = 'Rejected'
             WHERE proposal_id = $1 AND subscription_id = $2 AND state IN ('Initial', 'Draft')",
        )
        .bind(proposal_id)
        .bind(subscription)
        .execute(self.store.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Gone(format!("proposal {proposal_id} is already {}", prev.state)));
        }
        let request =
            MarketRequest::RejectProposal { proposal_id: proposal_id.to_string(), reason: reason_of(reason) };
        self.enqueue(&prev.peer_id, &request).await
    }

    /// Creates an agreement from the provider's proposal on one of this node's demands.
    pub async fn create_agreement(&self, proposal_id: &str, valid_to: DateTime<Utc>) -> Result<String> {
        if valid_to <= Utc::now() {
            return Err(Error::BadInput(format!("validTo {valid_to} is in the past")));
        }
        self.expire_proposals().await?;
        let row: Option<ProposalRow> = sqlx::query_as(
            "SELECT p.proposal_id, p.subscription_id, p.demand_id, p.offer_id, p.issuer_id, p.peer_id,
                    p.properties, p.constraints, p.state
             FROM proposals p JOIN demands d ON d.demand_id = p.subscription_id
             WHERE p.proposal_id = $1",
        )
        .bind(proposal_id)
        .fetch_optional(self.store.pool())
        .await?;
        let proposal =
            row.ok_or_else(|| Error::NotFound(format!("no proposal {proposal_id} on this node's demands")))?;
        let me = format!("{:#x}", self.node_id);
        if proposal.issuer_id == me {
            return Err(Error::Conflict(
                "an agreement is made from the provider's proposal, not one's own".into(),
            ));
        }
        if proposal.state == "Expired" {
            return Err(Error::Gone(format!("proposal {proposal_id} has expired unanswered")));
        }
        if proposal.state != "Draft" {
            return Err(Error::Conflict(format!(
                "proposal {proposal_id} is {}; only a Draft (a counter-proposal) can become an agreement",
                proposal.state
            )));
        }
        let demand = self
            .store
            .active_demands()
            .await?
            .into_iter()
            .find(|d| d.id == proposal.subscription_id)
            .ok_or_else(|| Error::Gone(format!("demand {} is unsubscribed", proposal.subscription_id)))?;
        let timestamp = now_millis();
        let id = derived_id(&["agreement", proposal_id, &valid_to.to_rfc3339()]);
        let demand_json = json!({
            "demandId": demand.id, "requestorId": me, "properties": demand.properties,
            "constraints": demand.constraints, "timestamp": demand.created_at,
        });
        let offer_json = json!({
            "offerId": proposal.offer_id, "providerId": proposal.issuer_id, "properties": proposal.properties,
            "constraints": proposal.constraints, "proposalId": proposal.proposal_id,
        });
        let mut tx = self.store.pool().begin().await?;
        let accepted =
            sqlx::query("UPDATE proposals SET state = 'Accepted' WHERE proposal_id = $1 AND state = 'Draft'")
                .bind(proposal_id)
                .execute(&mut *tx)
                .await?;
        if accepted.rows_affected() == 0 {
            return Err(Error::Conflict(format!("proposal {proposal_id} changed state meanwhile")));
        }
        sqlx::query(
            "INSERT INTO agreements (agreement_id, role, peer_id, requestor_id, provider_id, demand, offer,
                                     valid_to, state, created_at)
             VALUES ($1, 'requestor', $2, $3, $4, $5, $6, $7, 'Proposal', $8)",
        )
        .bind(&id)
        .bind(&proposal.peer_id)
        .bind(&me)
        .bind(&proposal.issuer_id)
        .bind(&demand_json)
        .bind(&offer_json)
        .bind(valid_to)
        .bind(timestamp)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn transition(&self, id: &str, from: &[&str], to: &str) -> Result<AgreementRow> {
        let row = agreement_row(&self.store, id).await?;
        if row.valid_to <= Utc::now() && matches!(row.state.as_str(), "Proposal" | "Pending") {
            sqlx::query("UPDATE agreements SET state = 'Expired' WHERE agreement_id = $1 AND state = $2")
                .bind(id)
                .bind(&row.state)
                .execute(self.store.pool())
                .await?;
            return Err(Error::Gone(format!("agreement {id} expired at {}", row.valid_to)));
        }
        let done =
            sqlx::query("UPDATE agreements SET state = $3 WHERE agreement_id = $1 AND state = ANY($2)")
                .bind(id)
                .bind(from)
                .bind(to)
                .execute(self.store.pool())
                .await?;
        if done.rows_affected() == 0 {
            let now = agreement_row(&self.store, id).await?;
            return Err(Error::Conflict(format!(
                "agreement {id} is {}, not {}",
                now.state,
                from.join(" or ")
            )));
        }
        Ok(row)
    }

    fn check_role(row: &AgreementRow, role: &str) -> Result<()> {
        if row.role != role {
            return Err(Error::Conflict(format!(
                "only the {role} can do that to agreement {}",
                row.agreement_id
            )));
        }
        Ok(())
    }

    async fn event(&self, agreement_id: &str, event_type: &str, reason: Option<Reason>) -> Result<()> {
        sqlx::query("INSERT INTO agreement_events (agreement_id, event_type, reason) VALUES ($1, $2, $3)")
            .bind(agreement_id)
            .bind(event_type)
            .bind(reason)
            .execute(self.store.pool())
            .await?;
        self.events.notify_waiters();
        Ok(())
    }

    /// The requestor signs the agreement and sends it to the provider.
    pub async fn confirm_agreement(&self, id: &str) -> Result<()> {
        let row = agreement_row(&self.store, id).await?;
        Self::check_role(&row, "requestor")?;
        let signature = sign_json(&self.identity, &row.body()).map_err(|e| Error::Conflict(e.to_string()))?;
        let row = self.transition(id, &["Proposal"], "Pending").await?;
        sqlx::query("UPDATE agreements SET proposed_signature = $2 WHERE agreement_id = $1")
            .bind(id)
            .bind(&signature)
            .execute(self.store.pool())
            .await?;
        let request = MarketRequest::ProposeAgreement { agreement: row.body(), signature };
        if let Err(e) = acked(self.courier()?.send(row.peer_id.clone(), request).await) {
            // Not delivered: back to Proposal, so confirm can be called again.
            sqlx::query(
                "UPDATE agreements SET state = 'Proposal', proposed_signature = NULL
                         WHERE agreement_id = $1 AND state = 'Pending'",
            )
            .bind(id)
            .execute(self.store.pool())
            .await?;
            return Err(e);
        }
        Ok(())
    }

    /// The provider approves: signs, commits, and sends the approval until the requestor has it.
    pub async fn approve_agreement(&self, id: &str) -> Result<&'static str> {
        let row = agreement_row(&self.store, id).await?;
        Self::check_role(&row, "provider")?;
        let signature = sign_json(&self.identity, &row.body()).map_err(|e| Error::Conflict(e.to_string()))?;
        let row = self.transition(id, &["Pending"], "Approved").await?;
        sqlx::query(
            "UPDATE agreements SET approved_signature = $2, approved_date = now() WHERE agreement_id = $1",
        )
        .bind(id)
        .bind(&signature)
        .execute(self.store.pool())
        .await?;
        self.event(id, "AgreementApprovedEvent", None).await?;
        self.enqueue(
            &row.peer_id,
            &MarketRequest::ApproveAgreement { agreement_id: id.to_string(), signature },
        )
        .await?;
        Ok("Approved")
    }

    pub async fn reject_agreement(&self, id: &str, reason: Option<Reason>) -> Result<()> {
        let row = agreement_row(&self.store, id).await?;
        Self::check_role(&row, "provider")?;
        let row = self.transition(id, &["Pending"], "Rejected").await?;
        self.event(id, "AgreementRejectedEvent", reason_of(reason.clone())).await?;
        self.enqueue(&row.peer_id, &MarketRequest::RejectAgreement { agreement_id: id.into(), reason }).await
    }

    pub async fn cancel_agreement(&self, id: &str, reason: Option<Reason>) -> Result<()> {
        let row = agreement_row(&self.store, id).await?;
        Self::check_role(&row, "requestor")?;
        let row = self.transition(id, &["Proposal", "Pending"], "Cancelled").await?;
        self.event(id, "AgreementCancelledEvent", reason_of(reason.clone())).await?;
        if row.state == "Pending" {
            self.enqueue(&row.peer_id, &MarketRequest::CancelAgreement { agreement_id: id.into(), reason })
                .await?;
        }
        Ok(())
    }

    pub async fn terminate_agreement(&self, id: &str, reason: Option<Reason>) -> Result<()> {
        let row = self.transition(id, &["Approved"], "Terminated").await?;
        sqlx::query("UPDATE agreements SET reason = $2 WHERE agreement_id = $1")
            .bind(id)
            .bind(reason_of(reason.clone()))
            .execute(self.store.pool())
            .await?;
        self.event(id, "AgreementTerminatedEvent", reason_of(reason.clone())).await?;
        self.enqueue(&row.peer_id, &MarketRequest::TerminateAgreement { agreement_id: id.into(), reason })
            .await
    }

    /// Waits up to `timeout` for the provider's answer: `Ok(None)` on timeout.
    pub async fn wait_for_approval(&self, id: &str, timeout: std::time::Duration) -> Result<Option<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.events.notified();
            let row = agreement_row(&self.store, id).await?;
            Self::check_role(&row, "requestor")?;
            match row.state.as_str() {
                "Approved" | "Rejected" | "Cancelled" => return Ok(Some(row.state)),
                "Pending" => {}
                "Proposal" => return Err(Error::Conflict(format!("agreement {id} is not confirmed yet"))),
                other => return Err(Error::Gone(format!("agreement {id} is {other}"))),
            }
            if row.valid_to <= Utc::now() {
                return Err(Error::Gone(format!("agreement {id} expired at {}", row.valid_to)));
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Ok(None);
            }
        }
    }

    pub async fn agreement(&self, id: &str) -> Result<AgreementView> {
        agreement_view(&self.store, id).await
    }

    pub async fn agreements(&self) -> Result<Vec<AgreementView>> {
        let rows: Vec<AgreementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements ORDER BY created_at, agreement_id"
        )))
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.into_iter().map(AgreementRow::view).collect())
    }

    /// Agreement events after `after`, waiting up to `timeout` for the first.
    pub async fn agreement_events(
        &self,
        after: Option<DateTime<Utc>>,
        timeout: std::time::Duration,
        max: i64,
    ) -> Result<Vec<AgreementEvent>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            agreement_id: String,
            event_type: String,
            reason: Option<serde_json::Value>,
            created_at: DateTime<Utc>,
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.events.notified();
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT agreement_id, event_type, reason, created_at FROM agreement_events
                 WHERE $1::timestamptz IS NULL OR created_at > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(max)
            .fetch_all(self.store.pool())
            .await?;
            if !rows.is_empty() || tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Ok(rows
                    .into_iter()
                    .map(|r| AgreementEvent {
                        event_type: r.event_type,
                        event_date: r.created_at,
                        agreement_id: r.agreement_id,
                        reason: r.reason,
                    })
                    .collect());
            }
        }
    }

    /// Queues a message that must reach `peer`, and tries it once now.
    async fn enqueue(&self, peer: &str, request: &MarketRequest) -> Result<()> {
        let message = serde_json::to_value(request).unwrap_or_default();
        sqlx::query("INSERT INTO market_outbox (peer_id, message) VALUES ($1, $2)")
            .bind(peer)
            .bind(&message)
            .execute(self.store.pool())
            .await?;
        self.outbox_pending.store(true, std::sync::atomic::Ordering::Release);
        self.flush_outbox().await;
        Ok(())
    }

    /// Delivers queued messages; those not acknowledged stay for the next try.
    pub async fn flush_outbox(&self) {
        let Some(courier) = self.courier.as_deref() else { return };
        if !self.outbox_pending.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let rows: Vec<(i64, String, serde_json::Value)> =
            match sqlx::query_as("SELECT id, peer_id, message FROM market_outbox ORDER BY id LIMIT 100")
                .fetch_all(self.store.pool())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the market outbox");
                    return;
                }
            };
        for (id, peer, message) in rows {
            let Ok(request) = serde_json::from_value::<MarketRequest>(message) else { continue };
            let delivered = matches!(courier.send(peer.clone(), request).await, Ok(MarketResponse::Ack));
            if !delivered {
                // Still something to deliver next time.
                self.outbox_pending.store(true, std::sync::atomic::Ordering::Release);
            }
            let query = if delivered {
                "DELETE FROM market_outbox WHERE id = $1"
            } else {
                "UPDATE market_outbox SET attempts = attempts + 1 WHERE id = $1"
            };
            if let Err(e) = sqlx::query(query).bind(id).execute(self.store.pool()).await {
                tracing::warn!(error = %e, "updating the market outbox");
            }
        }
    }

    /// Handles a negotiation message from `peer` (whose node address is `sender`).
    pub(crate) async fn on_negotiation(
        &self,
        sender: Address,
        peer: &str,
        request: MarketRequest,
    ) -> Result<()> {
        let sender_text = format!("{sender:#x}");
        let me = format!("{:#x}", self.node_id);
        match request {
            MarketRequest::Proposal { proposal } => {
                if proposal.issuer_id.to_ascii_lowercase() != sender_text {
                    return Err(Error::Refused(format!(
                        "proposal issued by {} came from {sender}",
                        proposal.issuer_id
                    )));
                }
                // On the provider, the proposal belongs to the offer; on the requestor, to the demand.
                let subscription = if self.store.offer_presence(&proposal.offer_id).await? == Presence::Active
                    && self.store.own_offer(&proposal.offer_id).await?.is_some_and(|o| o.owner == me)
                {
                    proposal.offer_id.clone()
                } else if self.store.demand_presence(&proposal.demand_id).await? == Presence::Active {
                    proposal.demand_id.clone()
                } else {
                    return Err(Error::Gone("no standing offer or demand for this proposal".into()));
                };
                agora_grammar::parse(&proposal.constraints).map_err(|e| Error::Refused(e.to_string()))?;
                let mut tx = self.store.pool().begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO proposals (proposal_id, subscription_id, demand_id, offer_id, issuer_id, peer_id,
                                            properties, constraints, state, prev_proposal_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Draft', $9, $10) ON CONFLICT DO NOTHING",
                )
                .bind(&proposal.proposal_id)
                .bind(&subscription)
                .bind(&proposal.demand_id)
                .bind(&proposal.offer_id)
                .bind(&sender_text)
                .bind(peer)
                .bind(&proposal.properties)
                .bind(&proposal.constraints)
                .bind(&proposal.prev_proposal_id)
                .bind(proposal.timestamp)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    let about = EventRef::Proposal(&proposal.proposal_id);
                    add_event(&mut *tx, &subscription, "ProposalEvent", about, None).await?;
                }
                tx.commit().await?;
            }
            MarketRequest::RejectProposal { proposal_id, reason } => {
                let subscription: Option<String> = sqlx::query_scalar(
                    "UPDATE proposals SET state = 'Rejected' WHERE proposal_id = $1 AND issuer_id = $2
                     RETURNING subscription_id",
                )
                .bind(&proposal_id)
                .bind(&me)
                .fetch_optional(self.store.pool())
                .await?;
                if let Some(subscription) = subscription {
                    let about = EventRef::Proposal(&proposal_id);
                    add_event(
                        self.store.pool(),
                        &subscription,
                        "ProposalRejectedEvent",
                        about,
                        reason_of(reason),
                    )
                    .await?;
                }
            }
            MarketRequest::ProposeAgreement { agreement, signature } => {
                let requestor =
                    agreement.demand["requestorId"].as_str().unwrap_or_default().to_ascii_lowercase();
                let provider =
                    agreement.offer["providerId"].as_str().unwrap_or_default().to_ascii_lowercase();
                if requestor != sender_text || provider != me {
                    return Err(Error::Refused("the agreement names other parties".into()));
                }
                verify_json(&agreement, &signature, sender).map_err(|e| Error::Refused(e.to_string()))?;
                let offer_id = agreement.offer["offerId"].as_str().unwrap_or_default().to_string();
                if self.store.own_offer(&offer_id).await?.is_none() {
                    return Err(Error::Gone(format!("offer {offer_id} is not offered any more")));
                }
                let mut tx = self.store.pool().begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO agreements (agreement_id, role, peer_id, requestor_id, provider_id, demand, offer,
                                             valid_to, state, proposed_signature, created_at)
                     VALUES ($1, 'provider', $2, $3, $4, $5, $6, $7, 'Pending', $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(&agreement.agreement_id)
                .bind(peer)
                .bind(&requestor)
                .bind(&provider)
                .bind(&agreement.demand)
                .bind(&agreement.offer)
                .bind(agreement.valid_to)
                .bind(&signature)
                .bind(agreement.timestamp)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    let about = EventRef::Agreement(&agreement.agreement_id);
                    add_event(&mut *tx, &offer_id, "AgreementEvent", about, None).await?;
                }
                tx.commit().await?;
            }
            MarketRequest::ApproveAgreement { agreement_id, signature } => {
                let row = agreement_row(&self.store, &agreement_id).await?;
                if row.role != "requestor" || row.provider_id != sender_text {
                    return Err(Error::Refused(format!("{sender} is not the provider of {agreement_id}")));
                }
                verify_json(&row.body(), &signature, sender).map_err(|e| Error::Refused(e.to_string()))?;
                let done = sqlx::query(
                    "UPDATE agreements SET state = 'Approved', approved_signature = $2, approved_date = now()
                     WHERE agreement_id = $1 AND state = 'Pending'",
                )
                .bind(&agreement_id)
                .bind(&signature)
                .execute(self.store.pool())
                .await?;
                if done.rows_affected() == 1 {
                    self.event(&agreement_id, "AgreementApprovedEvent", None).await?;
                } else if row.state != "Approved" {
                    return Err(Error::Conflict(format!("agreement {agreement_id} is {}", row.state)));
                }
            }
            MarketRequest::RejectAgreement { agreement_id, reason }
            | MarketRequest::CancelAgreement { agreement_id, reason }
            | MarketRequest::TerminateAgreement { agreement_id, reason } => {
                let row = agreement_row(&self.store, &agreement_id).await?;
                if row.peer_id != peer {
                    return Err(Error::Refused(format!("{sender} is not a party to {agreement_id}")));
                }
                let (from, to, event): (&[&str], _, _) = match row.state.as_str() {
                    "Pending" if row.role == "requestor" => {
                        (&["Pending"], "Rejected", "AgreementRejectedEvent")
                    }
                    "Pending" | "Proposal" => {
                        (&["Pending", "Proposal"], "Cancelled", "AgreementCancelledEvent")
                    }
                    "Approved" => (&["Approved"], "Terminated", "AgreementTerminatedEvent"),
                    _ => return Ok(()),
                };
                let done = sqlx::query(
                    "UPDATE agreements SET state = $3, reason = $4 WHERE agreement_id = $1 AND state = ANY($2)",
                )
                .bind(&agreement_id)
                .bind(from)
                .bind(to)
                .bind(reason_of(reason.clone()))
                .execute(self.store.pool())
                .await?;
                if done.rows_affected() == 1 {
                    self.event(&agreement_id, event, reason_of(reason)).await?;
                }
            }
            MarketRequest::GetOffer { .. } | MarketRequest::Announce { .. } => {}
        }
        self.events.notify_waiters();
        Ok(())
    }

    /// Collects a provider's offer events (`collectDemands`): proposals and agreements.
    pub async fn collect_offer_events(
        &self,
        offer_id: &str,
        timeout: std::time::Duration,
        max: usize,
    ) -> Result<Vec<crate::api::Event>> {
        self.collect_events(offer_id, true, timeout, max).await
    }

    pub async fn offer_proposal(&self, offer_id: &str, proposal_id: &str) -> Result<ProposalView> {
        if self.store.offer_presence(offer_id).await? == Presence::Unknown {
            return Err(Error::NotFound(format!("no offer subscription {offer_id}")));
        }
        self.expire_proposals().await?;
        self.store.proposal(offer_id, proposal_id).await
    }
}
