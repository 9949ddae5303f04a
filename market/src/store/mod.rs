//! The market's tables (`migrations/0002_market.sql`), and every statement on them: this module
//! is the only one of the crate that speaks SQL.
//!
//! - here: offers, demands and the offers of other nodes (`offers`, `demands`, `remote_offers`);
//! - [`proposals`]: proposals and subscription events (`proposals`, `market_events`);
//! - [`agreements`]: agreements, their events, and the outbox (`agreements`, `agreement_events`,
//!   `market_outbox`).

mod agreements;
mod proposals;

pub use agreements::Change;
pub(crate) use proposals::ProposalRow;

use crate::Result;
use crate::api::{DemandView, OfferView};
use crate::wire::OfferBody;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Postgres-backed market state; the rest of the node reaches it only through [`crate::Market`].
#[derive(Debug, Clone)]
pub(crate) struct MarketStore {
    pool: PgPool,
}

/// A row of `offers`, `demands` or `remote_offers`, which are alike: what matching needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    pub id: String,
    pub owner: String,
    pub properties: serde_json::Value,
    pub constraints: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Stored {
    /// An offer as Golem's API shows it.
    pub fn into_view(self) -> OfferView {
        OfferView {
            offer_id: self.id,
            provider_id: self.owner,
            properties: self.properties,
            constraints: self.constraints,
            timestamp: self.created_at,
        }
    }

    /// An own offer as it travels to other nodes.
    pub fn into_offer_body(self) -> OfferBody {
        OfferBody {
            offer_id: self.id,
            provider_id: self.owner,
            properties: self.properties,
            constraints: self.constraints,
            timestamp: self.created_at,
            expiration: self.expires_at,
        }
    }
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

    pub async fn insert_offer(&self, s: &Stored, principal: &str) -> Result<()> {
        self.insert_spec(
            "INSERT INTO offers (offer_id, provider_id, properties, constraints, created_at, expires_at, principal)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (offer_id) DO NOTHING",
            s,
            principal,
        )
        .await
    }

    pub async fn insert_demand(&self, s: &Stored, principal: &str) -> Result<()> {
        self.insert_spec(
            "INSERT INTO demands (demand_id, requestor_id, properties, constraints, created_at, expires_at, principal)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (demand_id) DO NOTHING",
            s,
            principal,
        )
        .await
    }

    /// Offers and demands are stored alike; only the table differs.
    async fn insert_spec(&self, insert: &'static str, s: &Stored, principal: &str) -> Result<()> {
        sqlx::query(insert)
            .bind(&s.id)
            .bind(&s.owner)
            .bind(&s.properties)
            .bind(&s.constraints)
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(principal)
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
        Ok(self.active_offers().await?.into_iter().map(Stored::into_view).collect())
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
}
