//! The market's tables (`migrations/0002_market.sql`).

use crate::api::{DemandView, Event, OfferView, ProposalView};
use crate::wire::OfferBody;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Postgres-backed market state.
#[derive(Debug, Clone)]
pub struct MarketStore {
    pool: PgPool,
}

/// An active offer or demand as stored: what matching needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    pub id: String,
    pub owner: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ProposalRow {
    proposal_id: String,
    issuer_id: String,
    state: String,
    created_at: DateTime<Utc>,
    prev_proposal_id: Option<String>,
    properties: serde_json::Value,
    constraints: String,
}

impl From<ProposalRow> for ProposalView {
    fn from(r: ProposalRow) -> Self {
        Self {
            proposal_id: r.proposal_id,
            issuer_id: r.issuer_id,
            state: r.state,
            timestamp: r.created_at,
            prev_proposal_id: r.prev_proposal_id,
            properties: r.properties,
            constraints: r.constraints,
        }
    }
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

/// Whether a subscription is there, and active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Active,
    Unsubscribed,
    Unknown,
}

impl MarketStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn insert_offer(&self, s: &Stored) -> Result<()> {
        self.insert_spec(
            "INSERT INTO offers (offer_id, provider_id, properties, constraints, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (offer_id) DO NOTHING",
            s,
        )
        .await
    }

    pub async fn insert_demand(&self, s: &Stored) -> Result<()> {
        self.insert_spec(
            "INSERT INTO demands (demand_id, requestor_id, properties, constraints, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (demand_id) DO NOTHING",
            s,
        )
        .await
    }

    /// Offers and demands are stored alike; only the table differs.
    async fn insert_spec(&self, insert: &'static str, s: &Stored) -> Result<()> {
        sqlx::query(insert)
            .bind(&s.id)
            .bind(&s.owner)
            .bind(&s.properties)
            .bind(&s.constraints)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Own offers still standing.
    pub async fn active_offers(&self) -> Result<Vec<Stored>> {
        Ok(sqlx::query_as(
            "SELECT offer_id AS id, provider_id AS owner, properties, constraints, created_at, expires_at
             FROM offers WHERE unsubscribed_at IS NULL AND expires_at > now() ORDER BY created_at, offer_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn active_demands(&self) -> Result<Vec<Stored>> {
        Ok(sqlx::query_as(
            "SELECT demand_id AS id, requestor_id AS owner, properties, constraints, created_at, expires_at
             FROM demands WHERE unsubscribed_at IS NULL AND expires_at > now() ORDER BY created_at, demand_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn has_active_demands(&self) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM demands WHERE unsubscribed_at IS NULL AND expires_at > now())",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Other nodes' offers still standing.
    pub async fn active_remote_offers(&self) -> Result<Vec<Stored>> {
        Ok(sqlx::query_as(
            "SELECT offer_id AS id, provider_id AS owner, properties, constraints, created_at, expires_at
             FROM remote_offers WHERE unsubscribed_at IS NULL AND expires_at > now()
             ORDER BY received_at, offer_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn own_offer(&self, id: &str) -> Result<Option<Stored>> {
        Ok(sqlx::query_as(
            "SELECT offer_id AS id, provider_id AS owner, properties, constraints, created_at, expires_at
             FROM offers WHERE offer_id = $1 AND unsubscribed_at IS NULL AND expires_at > now()",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn remote_offer(&self, id: &str) -> Result<Option<Stored>> {
        Ok(sqlx::query_as(
            "SELECT offer_id AS id, provider_id AS owner, properties, constraints, created_at, expires_at
             FROM remote_offers WHERE offer_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether a remote offer is already known (standing or not), so it is fetched only once.
    pub async fn knows_remote_offer(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM remote_offers WHERE offer_id = $1)")
            .bind(id)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn insert_remote_offer(&self, body: &OfferBody, peer: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO remote_offers
                 (offer_id, provider_id, peer_id, properties, constraints, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (offer_id) DO NOTHING",
        )
        .bind(&body.offer_id)
        .bind(body.provider_id.to_ascii_lowercase())
        .bind(peer)
        .bind(&body.properties)
        .bind(&body.constraints)
        .bind(body.timestamp)
        .bind(body.expiration)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks remote offers unsubscribed, but only those `provider` owns.
    pub async fn unsubscribe_remote(&self, ids: &[String], provider: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE remote_offers SET unsubscribed_at = now()
             WHERE offer_id = ANY($1) AND provider_id = $2 AND unsubscribed_at IS NULL",
        )
        .bind(ids)
        .bind(provider)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn presence(&self, table_query: &'static str, id: &str) -> Result<Presence> {
        let found: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar(table_query).bind(id).fetch_optional(&self.pool).await?;
        Ok(match found {
            None => Presence::Unknown,
            Some(None) => Presence::Active,
            Some(Some(_)) => Presence::Unsubscribed,
        })
    }

    pub async fn offer_presence(&self, id: &str) -> Result<Presence> {
        self.presence("SELECT unsubscribed_at FROM offers WHERE offer_id = $1", id).await
    }

    pub async fn demand_presence(&self, id: &str) -> Result<Presence> {
        self.presence("SELECT unsubscribed_at FROM demands WHERE demand_id = $1", id).await
    }

    /// Ends a subscription: compare-and-set on "still subscribed", so two callers cannot both win.
    pub async fn unsubscribe_offer(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE offers SET unsubscribed_at = now() WHERE offer_id = $1 AND unsubscribed_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn unsubscribe_demand(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE demands SET unsubscribed_at = now() WHERE demand_id = $1 AND unsubscribed_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn list_offers(&self) -> Result<Vec<OfferView>> {
        Ok(self
            .active_offers()
            .await?
            .into_iter()
            .map(|s| OfferView {
                offer_id: s.id,
                provider_id: s.owner,
                properties: s.properties,
                constraints: s.constraints,
                timestamp: s.created_at,
            })
            .collect())
    }

    pub async fn list_demands(&self) -> Result<Vec<DemandView>> {
        Ok(self
            .active_demands()
            .await?
            .into_iter()
            .map(|s| DemandView {
                demand_id: s.id,
                requestor_id: s.owner,
                properties: s.properties,
                constraints: s.constraints,
                timestamp: s.created_at,
            })
            .collect())
    }

    /// Records the Initial proposal of a matching pair on the demand's subscription, with its
    /// event, once: a pair seen again adds nothing.
    pub async fn initial_proposal(&self, demand_id: &str, offer: &Stored) -> Result<bool> {
        let proposal_id = crate::service::derived_id(&["initial", demand_id, &offer.id]);
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
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
        .bind(&offer.constraints)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            add_event(&mut *tx, demand_id, "ProposalEvent", EventRef::Proposal(&proposal_id), None).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Takes up to `max` undelivered events of a subscription, oldest first, marking them
    /// delivered in the same statement.
    pub async fn take_events(&self, subscription: &str, max: i64) -> Result<Vec<Event>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "UPDATE market_events SET delivered = TRUE
             WHERE id IN (SELECT id FROM market_events WHERE subscription_id = $1 AND NOT delivered
                          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id, event_type, created_at, proposal_id, agreement_id, reason",
        )
        .bind(subscription)
        .bind(max)
        .fetch_all(&self.pool)
        .await?;
        let mut rows = rows;
        // RETURNING follows no order; events go out oldest first.
        rows.sort_unstable_by_key(|r| r.id);
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let proposal_id = row.proposal_id.unwrap_or_default();
            events.push(match row.event_type.as_str() {
                "AgreementEvent" => Event::Agreement {
                    event_date: row.created_at,
                    agreement: crate::negotiation::agreement_view(
                        self,
                        row.agreement_id.as_deref().unwrap_or(""),
                    )
                    .await?,
                },
                "ProposalRejectedEvent" => {
                    Event::ProposalRejected { event_date: row.created_at, proposal_id, reason: row.reason }
                }
                _ => Event::Proposal {
                    event_date: row.created_at,
                    proposal: self.proposal(subscription, &proposal_id).await?,
                },
            });
        }
        Ok(events)
    }

    pub async fn proposal(&self, subscription: &str, proposal_id: &str) -> Result<ProposalView> {
        let row: Option<ProposalRow> = sqlx::query_as(
            "SELECT proposal_id, issuer_id, state, created_at, prev_proposal_id, properties, constraints
             FROM proposals WHERE proposal_id = $1 AND subscription_id = $2",
        )
        .bind(proposal_id)
        .bind(subscription)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Into::into)
            .ok_or_else(|| Error::NotFound(format!("no proposal {proposal_id} on {subscription}")))
    }
}
