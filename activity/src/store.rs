//! The `activities` table (`migrations/0004_activities.sql`), owned by this crate: every
//! statement on it is here.

use crate::Result;
use agora_agreement::Role;

/// Postgres-backed records of activities, hosted and driven.
#[derive(Debug, Clone)]
pub struct ActivityStore {
    pool: sqlx::PgPool,
}

impl ActivityStore {
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }

    pub async fn insert(&self, id: &str, agreement_id: &str, role: Role, peer: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO activities (activity_id, agreement_id, role, peer_id, state)
             VALUES ($1, $2, $3, $4, 'Initialized')",
        )
        .bind(id)
        .bind(agreement_id)
        .bind(role.as_str())
        .bind(peer)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records an activity's state (and why, when there is a reason); a failure is logged, as
    /// the record follows the live state and must not fail the work.
    pub async fn set_state(&self, id: &str, state: &str, reason: Option<&str>) {
        let done = sqlx::query(
            "UPDATE activities SET state = $2, reason = COALESCE($3, reason) WHERE activity_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(reason)
        .execute(&self.pool)
        .await;
        if let Err(e) = done {
            tracing::warn!(activity = id, error = %e, "could not record an activity's state");
        }
    }

    /// The agreement an activity of this node (hosted or driven) runs under.
    pub async fn agreement_of(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT agreement_id FROM activities WHERE activity_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The other side's peer and this node's role in an activity.
    pub async fn peer_and_role(&self, id: &str) -> Result<Option<(String, String)>> {
        Ok(sqlx::query_as("SELECT peer_id, role FROM activities WHERE activity_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// After a restart: hosted activities did not survive it.
    pub async fn end_hosted(&self, reason: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE activities SET state = 'Terminated', reason = $1
             WHERE role = 'provider' AND state <> 'Terminated'",
        )
        .bind(reason)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
