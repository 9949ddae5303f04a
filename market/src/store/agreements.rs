//! Agreements, their events, and the outbox of messages that must reach the other side
//! (`agreements`, `agreement_events`, `market_outbox`).

use super::MarketStore;
use super::proposals::{EventRef, add_event};
use crate::api::AgreementEvent;
use crate::{Error, Result};
use agora_agreement::{ADMIN_PRINCIPAL, Agreement, AgreementState, DemandTerms, OfferTerms, Role};
use agora_identity::Address;
use chrono::{DateTime, Utc};

/// A row of `agreements`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct AgreementRow {
    agreement_id: String,
    role: String,
    peer_id: String,
    requestor_id: String,
    provider_id: String,
    demand: serde_json::Value,
    offer: serde_json::Value,
    valid_to: DateTime<Utc>,
    state: String,
    proposed_signature: Option<String>,
    approved_signature: Option<String>,
    approved_date: Option<DateTime<Utc>>,
    reason: Option<serde_json::Value>,
    created_at: DateTime<Utc>,
}

const AGREEMENT_COLUMNS: &str = "agreement_id, role, peer_id, requestor_id, provider_id, demand, offer, \
     valid_to, state, proposed_signature, approved_signature, approved_date, reason, created_at";

impl AgreementRow {
    /// The typed agreement. A row that does not read back is a bug or a tampered database, and
    /// says which agreement and what.
    fn typed(self) -> Result<Agreement> {
        let id = self.agreement_id;
        let bad = |what: String| Error::Corrupt(format!("agreement {id}: {what}"));
        let role = match self.role.as_str() {
            "requestor" => Role::Requestor,
            "provider" => Role::Provider,
            other => return Err(bad(format!("role {other:?}"))),
        };
        let state =
            AgreementState::parse(&self.state).ok_or_else(|| bad(format!("state {:?}", self.state)))?;
        let address =
            |text: &str| agora_identity::parse_address(text).map_err(|e| bad(format!("address {text}: {e}")));
        let demand: DemandTerms =
            serde_json::from_value(self.demand).map_err(|e| bad(format!("demand terms: {e}")))?;
        let offer: OfferTerms =
            serde_json::from_value(self.offer).map_err(|e| bad(format!("offer terms: {e}")))?;
        Ok(Agreement {
            requestor: address(&self.requestor_id)?,
            provider: address(&self.provider_id)?,
            id,
            role,
            state,
            peer_id: self.peer_id,
            demand,
            offer,
            valid_to: self.valid_to,
            timestamp: self.created_at,
            proposed_signature: self.proposed_signature,
            approved_signature: self.approved_signature,
            approved_date: self.approved_date,
            reason: self.reason,
        })
    }
}

fn states(list: &[AgreementState]) -> Vec<&'static str> {
    list.iter().map(|s| s.as_str()).collect()
}

impl MarketStore {
    pub async fn agreement(&self, id: &str) -> Result<Agreement> {
        let row: Option<AgreementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements WHERE agreement_id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| Error::NotFound(format!("no agreement {id}")))?.typed()
    }

    /// Whose an agreement is: the principal of the subscription it was made on.
    pub async fn agreement_principal(&self, id: &str) -> Result<String> {
        let principal: Option<String> =
            sqlx::query_scalar("SELECT principal FROM agreements WHERE agreement_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        principal.ok_or_else(|| Error::NotFound(format!("no agreement {id}")))
    }

    pub async fn agreements(&self) -> Result<Vec<Agreement>> {
        let rows: Vec<AgreementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements ORDER BY created_at, agreement_id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AgreementRow::typed).collect()
    }

    /// This node's agreements of one role in one state, oldest first.
    pub async fn agreements_in(&self, role: Role, state: AgreementState) -> Result<Vec<Agreement>> {
        let rows: Vec<AgreementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements WHERE role = $1 AND state = $2
             ORDER BY created_at, agreement_id"
        )))
        .bind(role.as_str())
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AgreementRow::typed).collect()
    }

    /// Whether this node has an Approved agreement with `party` (on either side).
    pub async fn approved_with(&self, party: Address) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM agreements
                            WHERE (lower(requestor_id) = $1 OR lower(provider_id) = $1) AND state = 'Approved')",
        )
        .bind(format!("{party:#x}"))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Stores a new agreement. The provider's Draft it is made from becomes Accepted in the same
    /// transaction (compare-and-set: a Draft that changed meanwhile makes nothing); on the
    /// provider an event tells the offer's collectors.
    pub async fn insert_agreement(&self, agreement: &Agreement) -> Result<()> {
        let demand = serde_json::to_value(&agreement.demand).map_err(|e| Error::Corrupt(e.to_string()))?;
        let offer = serde_json::to_value(&agreement.offer).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        // On either side, the provider's Draft the agreement is made from is Accepted with it,
        // so one Draft makes one agreement.
        let accepted =
            sqlx::query("UPDATE proposals SET state = 'Accepted' WHERE proposal_id = $1 AND state = 'Draft'")
                .bind(&agreement.offer.proposal_id)
                .execute(&mut *tx)
                .await?;
        if accepted.rows_affected() == 0 {
            return Err(Error::Conflict(format!(
                "proposal {} changed state meanwhile",
                agreement.offer.proposal_id
            )));
        }
        // The agreement is its subscription's principal's: the demand's on the requestor, the
        // offer's on the provider.
        let (made_on_demand, made_on_offer) = match agreement.role {
            Role::Requestor => (Some(&agreement.demand.demand_id), None),
            Role::Provider => (None, Some(&agreement.offer.offer_id)),
        };
        let inserted = sqlx::query(
            "INSERT INTO agreements (agreement_id, role, peer_id, requestor_id, provider_id, demand, offer,
                                     valid_to, state, proposed_signature, created_at, principal)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                     COALESCE((SELECT principal FROM demands WHERE demand_id = $12),
                              (SELECT principal FROM offers WHERE offer_id = $13), $14))
             ON CONFLICT DO NOTHING",
        )
        .bind(&agreement.id)
        .bind(agreement.role.as_str())
        .bind(&agreement.peer_id)
        .bind(format!("{:#x}", agreement.requestor))
        .bind(format!("{:#x}", agreement.provider))
        .bind(&demand)
        .bind(&offer)
        .bind(agreement.valid_to)
        .bind(agreement.state.as_str())
        .bind(&agreement.proposed_signature)
        .bind(agreement.timestamp)
        .bind(made_on_demand)
        .bind(made_on_offer)
        .bind(ADMIN_PRINCIPAL)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            // Dropping the transaction rolls the Draft's acceptance back.
            return Err(Error::Conflict(format!("agreement {} is already here", agreement.id)));
        }
        if agreement.role == Role::Provider {
            let about = EventRef::Agreement(&agreement.id);
            add_event(&mut *tx, &agreement.offer.offer_id, "AgreementEvent", about, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Moves an agreement from one of `from` to `to`, recording what changes with it. Returns the
    /// state it was in when it moved, or `None` if it was in none of `from` (someone else moved
    /// it first).
    pub async fn set_agreement_state(
        &self,
        id: &str,
        from: &[AgreementState],
        to: AgreementState,
        change: Change<'_>,
    ) -> Result<Option<AgreementState>> {
        self.set_agreement_state_telling(id, from, to, change, None).await
    }

    /// [`Self::set_agreement_state`], and in the same transaction, when the agreement
    /// moved from one of `tell.2`, queues `tell.1` for peer `tell.0`: a move the other side must
    /// hear of is never kept without its message, even when the node stops between the two.
    pub async fn set_agreement_state_telling(
        &self,
        id: &str,
        from: &[AgreementState],
        to: AgreementState,
        change: Change<'_>,
        tell: Option<(&str, &serde_json::Value, &[AgreementState])>,
    ) -> Result<Option<AgreementState>> {
        let (proposed, approved, reason) = match change {
            Change::None => (None, None, None),
            Change::Proposed(signature) => (Some(signature), None, None),
            Change::Approved(signature) => (None, Some(signature), None),
            Change::Reason(reason) => (None, None, reason),
        };
        let mut tx = self.pool.begin().await?;
        // The row is locked by the sub-select, so the state returned is the one replaced.
        let was: Option<String> = sqlx::query_scalar(
            "WITH was AS (SELECT state FROM agreements WHERE agreement_id = $1 FOR UPDATE)
             UPDATE agreements SET state = $3,
                 proposed_signature = COALESCE($4, proposed_signature),
                 approved_signature = COALESCE($5, approved_signature),
                 approved_date = CASE WHEN $5::text IS NULL THEN approved_date ELSE now() END,
                 reason = COALESCE($6, reason)
             FROM was
             WHERE agreement_id = $1 AND agreements.state = ANY($2)
             RETURNING was.state",
        )
        .bind(id)
        .bind(states(from))
        .bind(to.as_str())
        .bind(proposed)
        .bind(approved)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        let was = was
            .map(|w| {
                AgreementState::parse(&w)
                    .ok_or_else(|| Error::Corrupt(format!("agreement {id}: state {w:?}")))
            })
            .transpose()?;
        if let (Some(was), Some((peer, message, when))) = (was, tell)
            && when.contains(&was)
        {
            queue(&mut *tx, peer, message).await?;
        }
        tx.commit().await?;
        Ok(was)
    }

    /// The requestor's confirmation did not reach the provider: back to Proposal, unsigned.
    pub async fn unconfirm(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE agreements SET state = 'Proposal', proposed_signature = NULL
             WHERE agreement_id = $1 AND state = 'Pending'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn add_agreement_event(
        &self,
        agreement_id: &str,
        event_type: &str,
        reason: Option<serde_json::Value>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO agreement_events (agreement_id, event_type, reason) VALUES ($1, $2, $3)")
            .bind(agreement_id)
            .bind(event_type)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Agreement events after `after`, oldest first, at most `max`.
    pub async fn agreement_events(
        &self,
        after: Option<DateTime<Utc>>,
        max: i64,
    ) -> Result<Vec<AgreementEvent>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            agreement_id: String,
            event_type: String,
            reason: Option<serde_json::Value>,
            created_at: DateTime<Utc>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT agreement_id, event_type, reason, created_at FROM agreement_events
             WHERE $1::timestamptz IS NULL OR created_at > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(max)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AgreementEvent {
                event_type: r.event_type,
                event_date: r.created_at,
                agreement_id: r.agreement_id,
                reason: r.reason,
            })
            .collect())
    }

    /// Queues a message for `peer` until it acknowledges.
    pub async fn enqueue(&self, peer: &str, message: &serde_json::Value) -> Result<()> {
        queue(&self.pool, peer, message).await
    }

    /// The oldest queued messages: (id, peer, message).
    pub async fn outbox(&self, max: i64) -> Result<Vec<(i64, String, serde_json::Value)>> {
        Ok(sqlx::query_as("SELECT id, peer_id, message FROM market_outbox ORDER BY id LIMIT $1")
            .bind(max)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A queued message was answered (it goes) or not (it stays, counted).
    pub async fn outbox_tried(&self, id: i64, answered: bool) -> Result<()> {
        let query = if answered {
            "DELETE FROM market_outbox WHERE id = $1"
        } else {
            "UPDATE market_outbox SET attempts = attempts + 1 WHERE id = $1"
        };
        sqlx::query(query).bind(id).execute(&self.pool).await?;
        Ok(())
    }
}

/// What changes with an agreement's state.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    None,
    /// The requestor's signature.
    Proposed(&'a str),
    /// The provider's signature; the approval date is now.
    Approved(&'a str),
    /// Why, as the party said it.
    Reason(Option<&'a serde_json::Value>),
}

/// Queues `message` for `peer` in the outbox, through `db`.
async fn queue(db: impl sqlx::PgExecutor<'_>, peer: &str, message: &serde_json::Value) -> Result<()> {
    sqlx::query("INSERT INTO market_outbox (peer_id, message) VALUES ($1, $2)")
        .bind(peer)
        .bind(message)
        .execute(db)
        .await?;
    Ok(())
}
