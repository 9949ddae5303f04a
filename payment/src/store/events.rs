//! The `payment_events` table: what happened to each document, in one order for all.

use crate::Result;
use crate::model::Kind;
use serde_json::Value;
use sqlx::{PgExecutor, Row};

/// Where events' timestamps are serialised: a transaction-scoped advisory lock, so events commit
/// in the order of their timestamps and a poll "after T" never misses one that commits later.
const EVENT_LOCK: i64 = 0x6167_6f72_6170_6179;

/// Records an event, dated after every other.
pub(crate) async fn insert(
    db: &mut sqlx::PgConnection,
    kind: Kind,
    document_id: &str,
    event_type: &str,
    detail: Option<Value>,
) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(EVENT_LOCK).execute(&mut *db).await?;
    sqlx::query(
        "INSERT INTO payment_events (event_date, kind, document_id, event_type, detail)
         SELECT GREATEST(date_trunc('microseconds', clock_timestamp()),
                         COALESCE((SELECT max(event_date) FROM payment_events), '-infinity')
                             + interval '1 microsecond'),
                $1, $2, $3, $4",
    )
    .bind(kind.as_str())
    .bind(document_id)
    .bind(event_type)
    .bind(detail)
    .execute(db)
    .await?;
    Ok(())
}

/// One event as it is read back.
pub(crate) struct EventRow {
    pub date: chrono::DateTime<chrono::Utc>,
    pub document_id: String,
    pub event_type: String,
    pub detail: Option<Value>,
}

/// Events of `kind` after `after` of the documents of `principal` (all when `None`), oldest first.
pub(crate) async fn after(
    db: impl PgExecutor<'_>,
    kind: Kind,
    after: Option<chrono::DateTime<chrono::Utc>>,
    max: i64,
    principal: Option<String>,
) -> Result<Vec<EventRow>> {
    let rows = sqlx::query(
        "SELECT event_date, document_id, event_type, detail FROM payment_events e
         WHERE kind = $1 AND ($2::timestamptz IS NULL OR event_date > $2)
           AND ($4::text IS NULL
                OR EXISTS (SELECT 1 FROM payment_documents d WHERE d.id = e.document_id AND d.principal = $4))
         ORDER BY event_date LIMIT $3",
    )
    .bind(kind.as_str())
    .bind(after)
    .bind(max)
    .bind(principal)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(EventRow {
                date: r.try_get("event_date")?,
                document_id: r.try_get("document_id")?,
                event_type: r.try_get("event_type")?,
                detail: r.try_get("detail")?,
            })
        })
        .collect()
}
