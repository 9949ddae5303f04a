//! Providers' standing with this node: verified and failed runs, and a referee's catch.

use super::store;
use super::{Jobs, Replica};
use crate::Result;
use crate::verify::{self, Loss};
use alloy_primitives::Address;
use std::collections::{BTreeMap, HashMap};

impl Jobs {
    pub(super) async fn reputation(&self, providers: &[Address]) -> Result<HashMap<Address, Standing>> {
        let names: Vec<String> = providers.iter().map(|p| format!("{p:#x}")).collect();
        let rows = store::reputation::of(&self.inner.pool, &names).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(p, score, verified, failed, caught)| {
                Some((p.parse().ok()?, Standing { score, verified, failed, caught }))
            })
            .collect())
    }
}

/// +1 for each verified run, ×2/3 for each failed one; a run that only lacked a verdict
/// (a tie) counts neither way. A provider a referee `caught` loses all its score and is left
/// out from then on; one it `spared` (its result was the referee's) is not judged.
pub(super) async fn update_reputation(
    db: &mut sqlx::PgConnection,
    replicas: &[Replica],
    paid: &[Address],
    refused: &BTreeMap<Address, String>,
    verdict: &verify::Verdict,
    caught: &[Address],
    spared: &[Address],
) -> Result<()> {
    let no_verdict: Vec<Address> =
        verdict.losers.iter().filter(|(_, l)| *l == Loss::NoVerdict).map(|(p, _)| *p).collect();
    for r in replicas {
        let provider = format!("{:#x}", r.provider);
        if caught.contains(&r.provider) {
            store::reputation::caught(&mut *db, &provider).await?;
            continue;
        }
        let verified = paid.contains(&r.provider);
        // A provider that never ran (it declined, or did not answer in time) is not judged.
        if r.activity_id.is_none()
            || spared.contains(&r.provider)
            || !verified && (!refused.contains_key(&r.provider) || no_verdict.contains(&r.provider))
        {
            continue;
        }
        // In one statement, so jobs ending at once do not lose each other's outcomes; the
        // rule is verify::reputation_after's.
        store::reputation::judged(&mut *db, &provider, verify::reputation_after(0.0, verified), verified)
            .await?;
    }
    Ok(())
}

/// A provider's record with this node's jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Standing {
    pub(super) score: f64,
    pub(super) verified: i64,
    pub(super) failed: i64,
    /// A referee contradicted a group it was in: it is left out of this node's jobs.
    pub(super) caught: bool,
}
