//! The `payment_outbox` table: signed messages waiting to reach another node, in order per peer.

use crate::Result;
use sqlx::PgExecutor;

pub(crate) async fn insert(db: impl PgExecutor<'_>, peer: &str, message: serde_json::Value) -> Result<()> {
    sqlx::query("INSERT INTO payment_outbox (peer, message) VALUES ($1, $2)")
        .bind(peer)
        .bind(message)
        .execute(db)
        .await?;
    Ok(())
}

/// The peers that have messages waiting.
pub(crate) async fn peers(db: impl PgExecutor<'_>) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT peer FROM payment_outbox").fetch_all(db).await?)
}

/// A peer's first `max` messages, oldest first, with their ids.
pub(crate) async fn of_peer(
    db: impl PgExecutor<'_>,
    peer: &str,
    max: i64,
) -> Result<Vec<(i64, serde_json::Value)>> {
    Ok(sqlx::query_as("SELECT id, message FROM payment_outbox WHERE peer = $1 ORDER BY id LIMIT $2")
        .bind(peer)
        .bind(max)
        .fetch_all(db)
        .await?)
}

pub(crate) async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM payment_outbox WHERE id = $1").bind(id).execute(db).await?;
    Ok(())
}

/// Drops the message that carries a document not delivered yet (it was withdrawn).
pub(crate) async fn drop_document(db: impl PgExecutor<'_>, document_id: &str) -> Result<()> {
    sqlx::query(
        "DELETE FROM payment_outbox
         WHERE message->'message'->>'type' = 'document' AND message->'message'->'document'->>'id' = $1",
    )
    .bind(document_id)
    .execute(db)
    .await?;
    Ok(())
}
