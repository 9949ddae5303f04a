//! What a restarted node finds of a job, and where it takes it up.

use super::Jobs;
use super::settle::Party;
use super::store;
use super::store::executions::ExecutionRow;
use crate::Result;
use crate::job::{ExecState, JobState};
use alloy_primitives::Address;
use std::collections::BTreeMap;

impl Jobs {
    /// What a restart finds of a job: `None` when it is to run from the start.
    pub(super) async fn resume(&self, id: &str) -> Result<Option<(JobState, String)>> {
        let (allocation, demand) = store::jobs::allocation_and_demand(&self.inner.pool, id)
            .await?
            .ok_or_else(|| crate::Error::NotFound(format!("no job {id}")))?;
        let rows = store::executions::of_job(&self.inner.pool, id).await?;
        if allocation.is_none() && rows.is_empty() {
            return Ok(None);
        }
        let state_of = |r: &ExecutionRow| ExecState::from_code(r.state).expect("a state");
        let provider_of = |r: &ExecutionRow| r.provider.parse::<Address>().ok();
        let parties: Vec<Party> = rows
            .iter()
            .filter(|r| r.activity_id.is_some())
            .filter_map(|r| {
                Some(Party {
                    provider: provider_of(r)?,
                    agreement_id: r.agreement_id.clone()?,
                    max_amount: r.max_amount,
                })
            })
            .collect();
        for r in &rows {
            if let Some(activity) = &r.activity_id {
                let _ended = self.inner.activities.destroy(activity).await;
            }
            if let Some(agreement) = &r.agreement_id {
                self.end_agreement(agreement, "the job's run is over").await;
            }
        }
        let verdict = rows.iter().any(|r| matches!(state_of(r), ExecState::Verified | ExecState::Paid));
        if verdict {
            let paid: Vec<Address> = rows
                .iter()
                .filter(|r| matches!(state_of(r), ExecState::Verified | ExecState::Paid))
                .filter_map(provider_of)
                .collect();
            let refused: BTreeMap<Address, String> = rows
                .iter()
                .filter(|r| !matches!(state_of(r), ExecState::Verified | ExecState::Paid))
                .filter_map(|r| {
                    let reason = r.reason.clone().unwrap_or_else(|| "verification failed".into());
                    Some((provider_of(r)?, reason))
                })
                .collect();
            self.record(id, JobState::Paying, "the requestor node restarted; settling the verified result")
                .await?;
            let mut pending = Vec::new();
            if let Some(allocation) = &allocation {
                let settled = self.settle(id, &parties, &paid, &refused, allocation).await?;
                self.release_or_hold(id, allocation, &settled).await?;
                if !settled.unpaid.is_empty() {
                    if let Some(demand) = &demand {
                        let _gone = self.inner.market.unsubscribe_demand(demand).await;
                    }
                    let outcome = format!("verified, but {}", settled.unpaid.join("; "));
                    return Ok(Some((JobState::Failed, outcome)));
                }
                pending = settled.pending;
            }
            if let Some(demand) = &demand {
                let _gone = self.inner.market.unsubscribe_demand(demand).await;
            }
            let mut outcome = format!("verified: {} accepted, {} rejected", paid.len(), refused.len());
            // As a run that was not interrupted says it: what is still on its way.
            if !pending.is_empty() {
                outcome = format!("{outcome}; {}", pending.join("; "));
            }
            return Ok(Some((if paid.is_empty() { JobState::Failed } else { JobState::Completed }, outcome)));
        }
        // Interrupted before its verdict: what ran is not verified, so it is not paid; the job
        // runs again from the start, on a fresh allocation.
        let why = "the requestor node restarted during the run";
        self.record(id, JobState::Queued, &format!("{why}; its agreements end and the job runs again"))
            .await?;
        let refused: BTreeMap<Address, String> =
            parties.iter().map(|p| (p.provider, why.to_string())).collect();
        if let Some(allocation) = &allocation {
            let _nothing_accepted = self.settle(id, &parties, &[], &refused, allocation).await?;
            let _released = self.inner.payments.release_allocation(allocation).await;
        }
        if let Some(demand) = &demand {
            let _gone = self.inner.market.unsubscribe_demand(demand).await;
        }
        let mut tx = self.inner.pool.begin().await?;
        store::executions::delete_of_job(&mut *tx, id).await?;
        store::jobs::reset(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(None)
    }
}
