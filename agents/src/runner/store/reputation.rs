//! The `reputation` table: each provider's score, verified and failed runs, and whether a referee
//! caught it.

use crate::Result;
use sqlx::PgExecutor;

/// A provider's standing as stored: provider, score, verified, failed, caught.
pub(crate) type Row = (String, f64, i64, i64, bool);

pub(crate) async fn of(db: impl PgExecutor<'_>, providers: &[String]) -> Result<Vec<Row>> {
    Ok(sqlx::query_as(
        "SELECT provider, score, verified, failed, caught_at IS NOT NULL AS caught
         FROM reputation WHERE provider = ANY($1)",
    )
    .bind(providers)
    .fetch_all(db)
    .await?)
}

/// A referee caught the provider: its score goes, and it is left out from then on.
pub(crate) async fn caught(db: impl PgExecutor<'_>, provider: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO reputation (provider, score, verified, failed, caught_at) VALUES ($1, 0, 0, 1, now())
         ON CONFLICT (provider) DO UPDATE SET
             score = 0, failed = reputation.failed + 1, caught_at = now(), updated_at = now()",
    )
    .bind(provider)
    .execute(db)
    .await?;
    Ok(())
}

/// One judged run, in one statement so that jobs ending at once do not lose each other's: +1 for
/// a verified run, ×2/3 for a failed one (`first` is a new provider's score).
pub(crate) async fn judged(
    db: impl PgExecutor<'_>,
    provider: &str,
    first: f64,
    verified: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO reputation (provider, score, verified, failed) VALUES ($1, $2, $3, $4)
         ON CONFLICT (provider) DO UPDATE SET
             score = CASE WHEN $3 = 1 THEN reputation.score + 1 ELSE reputation.score * 2 / 3 END,
             verified = reputation.verified + $3, failed = reputation.failed + $4, updated_at = now()",
    )
    .bind(provider)
    .bind(first)
    .bind(i64::from(verified))
    .bind(i64::from(!verified))
    .execute(db)
    .await?;
    Ok(())
}
