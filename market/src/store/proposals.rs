//! Proposals and the events subscribers collect (`proposals`, `market_events`).

use super::{MarketStore, Stored};
use crate::api::{Event, ProposalView};
use crate::ids::derived_id;
use crate::state::ProposalState;
use crate::{Error, Result};
use chrono::{DateTime, Utc};

/// A row of `proposals`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProposalRow {
    pub proposal_id: String,
    /// The demand (requestor side) or offer (provider side) subscription it belongs to.
    pub subscription_id: String,
    pub demand_id: String,
    pub offer_id: String,
    pub issuer_id: String,
    /// The other side's libp2p peer.
    pub peer_id: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub state: ProposalState,
    pub prev_proposal_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl ProposalRow {
    pub fn view(self) -> ProposalView {
        ProposalView {
            proposal_id: self.proposal_id,
            issuer_id: self.issuer_id,
            state: self.state,
            timestamp: self.created_at,
            prev_proposal_id: self.prev_proposal_id,
            properties: self.properties,
            constraints: self.constraints,
        }
    }
}

const PROPOSAL_COLUMNS: &str = "proposal_id, subscription_id, demand_id, offer_id, issuer_id, peer_id, \
     properties, constraints, state, prev_proposal_id, created_at";

/// What a market event points at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventRef<'a> {
    Proposal(&'a str),
    Agreement(&'a str),
}

/// Adds an event for a subscription's collectors, inside the caller's transaction (or not).
pub(crate) async fn add_event(
    executor: impl sqlx::PgExecutor<'_>,
    subscription: &str,
    event_type: &str,
    about: EventRef<'_>,
    reason: Option<serde_json::Value>,
) -> Result<()> {
    let (proposal, agreement) = match about {
        EventRef::Proposal(id) => (Some(id), None),
        EventRef::Agreement(id) => (None, Some(id)),
    };
    sqlx::query(
        "INSERT INTO market_events (subscription_id, event_type, proposal_id, agreement_id, reason)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(subscription)
    .bind(event_type)
    .bind(proposal)
    .bind(agreement)
    .bind(reason)
    .execute(executor)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    event_type: String,
    created_at: DateTime<Utc>,
    proposal_id: Option<String>,
    agreement_id: Option<String>,
    reason: Option<serde_json::Value>,
}

impl MarketStore {
    /// Marks every open proposal older than `lifetime` Expired (a compare-and-set on the state,
    /// so an answer that got in first stands).
    pub async fn expire_proposals(&self, lifetime: chrono::Duration) -> Result<u64> {
        let secs = lifetime.num_milliseconds() as f64 / 1000.0;
        Ok(sqlx::query(
            "UPDATE proposals SET state = 'Expired'
             WHERE state IN ('Initial', 'Draft') AND created_at < now() - make_interval(secs => $1)",
        )
        .bind(secs)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// A proposal of a subscription of this node's.
    pub async fn proposal_row(&self, subscription: &str, proposal_id: &str) -> Result<ProposalRow> {
        let row: Option<ProposalRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE proposal_id = $1 AND subscription_id = $2"
        )))
        .bind(proposal_id)
        .bind(subscription)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| Error::NotFound(format!("no proposal {proposal_id} on {subscription}")))
    }

    /// A proposal by id alone, on whichever subscription.
    pub async fn proposal_by_id(&self, proposal_id: &str) -> Result<Option<ProposalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE proposal_id = $1"
        )))
        .bind(proposal_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A proposal on one of this node's demands.
    pub async fn demand_side_proposal(&self, proposal_id: &str) -> Result<Option<ProposalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM proposals p JOIN demands d ON d.demand_id = p.subscription_id
             WHERE p.proposal_id = $1",
            PROPOSAL_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
        )))
        .bind(proposal_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores a counter-proposal, this node's or the other side's. One seen before (the same id)
    /// is not stored again, and `event` (for a proposal received) is added only with the first.
    pub async fn insert_draft(&self, row: &ProposalRow, event: bool) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO proposals (proposal_id, subscription_id, demand_id, offer_id, issuer_id, peer_id,
                                    properties, constraints, state, prev_proposal_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .bind(&row.proposal_id)
        .bind(&row.subscription_id)
        .bind(&row.demand_id)
        .bind(&row.offer_id)
        .bind(&row.issuer_id)
        .bind(&row.peer_id)
        .bind(&row.properties)
        .bind(&row.constraints)
        .bind(row.state)
        .bind(&row.prev_proposal_id)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted && event {
            let about = EventRef::Proposal(&row.proposal_id);
            add_event(&mut *tx, &row.subscription_id, "ProposalEvent", about, None).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Rejects an open proposal (compare-and-set): false if it was no longer open.
    pub async fn reject_open_proposal(&self, subscription: &str, proposal_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE proposals SET state = 'Rejected'
             WHERE proposal_id = $1 AND subscription_id = $2 AND state IN ('Initial', 'Draft')",
        )
        .bind(proposal_id)
        .bind(subscription)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The other side rejected one of this node's proposals: marked Rejected, with an event for
    /// its subscription.
    pub async fn own_proposal_rejected(
        &self,
        proposal_id: &str,
        issuer: &str,
        reason: Option<serde_json::Value>,
    ) -> Result<()> {
        let subscription: Option<String> = sqlx::query_scalar(
            "UPDATE proposals SET state = 'Rejected' WHERE proposal_id = $1 AND issuer_id = $2
             RETURNING subscription_id",
        )
        .bind(proposal_id)
        .bind(issuer)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(subscription) = subscription {
            let about = EventRef::Proposal(proposal_id);
            add_event(&self.pool, &subscription, "ProposalRejectedEvent", about, reason).await?;
        }
        Ok(())
    }

    /// Records the Initial proposal of a matching pair on the demand's subscription, with its
    /// event, once: a pair seen again adds nothing.
    pub async fn initial_proposal(&self, demand_id: &str, offer: &Stored) -> Result<bool> {
        let proposal_id = derived_id(&["initial", demand_id, &offer.id]);
        let insert = sqlx::query(
            "INSERT INTO proposals (proposal_id, subscription_id, demand_id, offer_id, issuer_id, peer_id,
                                    properties, constraints, state)
             VALUES ($1, $2, $2, $3, $4,
                     (SELECT peer_id FROM remote_offers WHERE offer_id = $3), $5, $6, 'Initial')
             ON CONFLICT (proposal_id) DO NOTHING",
        )
        .bind(&proposal_id)
        .bind(demand_id)
        .bind(&offer.id)
        .bind(&offer.owner)
        .bind(&offer.properties)
        .bind(&offer.constraints);
        self.insert_initial(demand_id, &proposal_id, insert).await
    }

    /// Runs `insert`, of an Initial proposal, and adds its event when it added the row, in one
    /// transaction; whether it did.
    async fn insert_initial(
        &self,
        demand_id: &str,
        proposal_id: &str,
        insert: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = insert.execute(&mut *tx).await?.rows_affected() == 1;
        if inserted {
            add_event(&mut *tx, demand_id, "ProposalEvent", EventRef::Proposal(proposal_id), None).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Offers a matching pair again after an agreement made from it ended: a new Initial
    /// proposal (named after the agreement, so once per agreement) with its event, while the
    /// demand and the offer both still stand. Golem's SDKs negotiate with a provider anew only
    /// from a fresh proposal, after its agreement failed or its work was retried.
    pub async fn offer_again(&self, demand_id: &str, offer_id: &str, ended_agreement: &str) -> Result<bool> {
        let proposal_id = derived_id(&["initial", demand_id, offer_id, ended_agreement]);
        let insert = sqlx::query(
            "INSERT INTO proposals (proposal_id, subscription_id, demand_id, offer_id, issuer_id, peer_id,
                                    properties, constraints, state)
             SELECT $1, d.demand_id, d.demand_id, o.offer_id, o.provider_id, o.peer_id,
                    o.properties, o.constraints, 'Initial'
             FROM demands d JOIN remote_offers o ON o.offer_id = $3
             WHERE d.demand_id = $2 AND d.unsubscribed_at IS NULL AND d.expires_at > now()
               AND o.unsubscribed_at IS NULL AND o.expires_at > now()
             ON CONFLICT (proposal_id) DO NOTHING",
        )
        .bind(&proposal_id)
        .bind(demand_id)
        .bind(offer_id);
        self.insert_initial(demand_id, &proposal_id, insert).await
    }

    /// Takes up to `max` undelivered events of a subscription, oldest first, marking them
    /// delivered in the same statement.
    pub async fn take_events(&self, subscription: &str, max: i64) -> Result<Vec<Event>> {
        let mut rows: Vec<EventRow> = sqlx::query_as(
            "UPDATE market_events SET delivered = TRUE
             WHERE id IN (SELECT id FROM market_events WHERE subscription_id = $1 AND NOT delivered
                          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id, event_type, created_at, proposal_id, agreement_id, reason",
        )
        .bind(subscription)
        .bind(max)
        .fetch_all(&self.pool)
        .await?;
        // RETURNING follows no order; events go out oldest first.
        rows.sort_unstable_by_key(|r| r.id);
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let proposal_id = row.proposal_id.unwrap_or_default();
            events.push(match row.event_type.as_str() {
                "AgreementEvent" => Event::Agreement {
                    event_date: row.created_at,
                    agreement: Box::new(
                        (&self.agreement(row.agreement_id.as_deref().unwrap_or("")).await?).into(),
                    ),
                },
                "ProposalRejectedEvent" => {
                    let reason = row.reason.map(crate::api::golem_reason);
                    Event::ProposalRejected { event_date: row.created_at, proposal_id, reason }
                }
                _ => Event::Proposal {
                    event_date: row.created_at,
                    proposal: self.proposal_row(subscription, &proposal_id).await?.view(),
                },
            });
        }
        Ok(events)
    }
}
