//! Every query of the payment crate, one module per table, each beside its row type: the domain
//! modules read as steps and call these. Each function takes any executor: the pool, or a
//! transaction the caller holds (`&mut *tx`).

pub(crate) mod allocations;
pub(crate) mod chain;
pub(crate) mod documents;
pub(crate) mod events;
pub(crate) mod orders;
pub(crate) mod outbox;
pub(crate) mod payments;

use crate::Result;

/// Takes the transaction-wide advisory lock named `key`: other transactions taking it wait until
/// this one ends.
pub(crate) async fn lock(db: &mut sqlx::PgConnection, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(key).execute(db).await?;
    Ok(())
}
