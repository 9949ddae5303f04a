//! The flow of one job: bids, the choice of providers, negotiation, runs and commitments, the
//! verdict with replicas added while one is still possible, the reveal, and the check of what
//! came back against the verified hash.

use super::bounds::worst_cost;
use super::choice::{Bids, Waiting, choose};
use super::referee::Refereed;
use super::verdict::{Decision, no_verdict};
use super::{INVOICE_WAIT, Jobs, PAYMENT_WAIT, Replica, short, store};
use crate::job::{JobSpec, JobState, Verifier};
use crate::verify::{self, Commitment};
use crate::{Error, Result};
use agora_market::api::DemandOfferBase;
use agora_payment::model::NewAllocation;
use alloy_primitives::Address;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

impl Jobs {
    /// Runs a job to its end; returns the state it ends in and why. A job an earlier run of the
    /// node left under way is resumed: settled if its verdict was reached, else run again.
    pub(super) async fn run(&self, id: &str, spec: &JobSpec) -> Result<(JobState, String)> {
        if let Some(outcome) = self.resume(id).await? {
            return Ok(outcome);
        }
        self.run_fresh(id, spec).await
    }

    pub(super) async fn run_fresh(&self, id: &str, spec: &JobSpec) -> Result<(JobState, String)> {
        let budget = spec.check().map_err(Error::BadInput)?;

        let t = Duration::from_secs(spec.timeout);
        let started = Instant::now();
        // Bids by start + T; each replica commits within 2T of its start and by start + 5T, and
        // replicas are added only while one can still do so; copied seals are settled within T,
        // the winners reveal within T of the decision, and their outputs are checked within T
        // more: all by start + 8T (9T with a referee, whose own run takes up to T), and the
        // allocation holds until then. Then the invoices and payments, whose waits are bounded
        // too: nothing stays reserved past that.
        let rounds_end = started + 5 * t;
        let rounds = if spec.referee.is_some() { 9 } else { 8 };
        let final_deadline = Utc::now()
            + chrono::Duration::from_std(rounds * t + INVOICE_WAIT + PAYMENT_WAIT)
                .expect("a bounded timeout");

        self.record(id, JobState::FindingProviders, &format!("reserving a budget of {budget}")).await?;
        // The job's money is its service's (an end user's job is its service's), as if the
        // service had made the allocation and demand through the payment and market APIs.
        let principal = store::jobs::principal(&self.inner.pool, id).await?;
        let allocation = self
            .inner
            .payments
            .create_allocation(
                NewAllocation {
                    address: None,
                    payment_platform: None,
                    total_amount: budget.to_string(),
                    timeout: Some(final_deadline),
                    make_deposit: false,
                },
                &principal,
            )
            .await?;
        store::jobs::set_allocation(&self.inner.pool, id, &allocation.id).await?;

        let base = self.demand(id, spec, &allocation, final_deadline).await?;
        let demand_id = self.inner.market.subscribe_demand(&base, &principal).await?;
        store::jobs::set_demand(&self.inner.pool, id, &demand_id).await?;
        self.record(id, JobState::FindingProviders, &format!("waiting for {} bids", spec.min_bids())).await?;
        let mut bids = Bids { offers: BTreeMap::new(), only: spec.providers.clone() };
        let bid_deadline = started + t;
        while bids.offers.len() < spec.min_bids() {
            let left = bid_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok((
                    JobState::Failed,
                    format!(
                        "{} providers bid within the job's timeout of {} s; min_bids is {}",
                        bids.offers.len(),
                        spec.timeout,
                        spec.min_bids()
                    ),
                ));
            }
            let events = self
                .inner
                .market
                .collect_demand_events(&demand_id, left.min(Duration::from_secs(1)), 100)
                .await?;
            bids.take(events);
        }
        let reputation = self.reputation(&bids.offers.keys().copied().collect::<Vec<_>>()).await?;
        for (caught, _) in reputation.iter().filter(|(_, s)| s.caught) {
            let who = short(&format!("{caught:#x}"));
            self.record(
                id,
                JobState::Negotiating,
                &format!("leaving {who} out: contradicted by a referee before"),
            )
            .await?;
        }
        let mut pool = choose(&bids.offers, &reputation, &spec.providers);
        self.record(
            id,
            JobState::Negotiating,
            &format!("{} bids; choosing {}", bids.offers.len(), spec.concurrency),
        )
        .await?;

        let mut replicas: Vec<Replica> = Vec::new();
        let mut spent_worst = Decimal::ZERO;
        let mut wanted = spec.concurrency;
        // Providers that turned an agreement down as busy, to be asked again from a time on.
        let mut waiting = Waiting::default();
        let verdict = loop {
            // Engage `wanted` more providers, within the budget: those whose wait is over first.
            pool.splice(0..0, waiting.ready(Instant::now()));
            let mut fresh = Vec::new();
            while fresh.len() < wanted {
                let Some(address) = pool.first().copied() else { break };
                pool.remove(0);
                let proposal = bids.offers[&address].clone();
                let checked = self
                    .payee_problem(&proposal.properties, &allocation.platform)
                    .map_or_else(|| worst_cost(&proposal.properties, t), Err);
                let worst_cost = match checked {
                    Ok(cost) => cost,
                    Err(why) => {
                        let who = short(&format!("{address:#x}"));
                        self.record(id, JobState::Negotiating, &format!("leaving {who} out: {why}")).await?;
                        let reason = json!({"message": format!("refused: {why}")});
                        let refused = self
                            .inner
                            .market
                            .reject_proposal(&demand_id, &proposal.proposal_id, Some(reason))
                            .await;
                        if let Err(e) = refused {
                            tracing::info!(job = id, provider = %address, error = %e, "telling a provider its bid is refused");
                        }
                        continue;
                    }
                };
                let Some(total) = spent_worst.checked_add(worst_cost).filter(|total| *total <= budget) else {
                    continue;
                };
                spent_worst = total;
                fresh.push(Replica {
                    provider: address,
                    proposal,
                    worst_cost,
                    max_amount: None,
                    agreement_id: None,
                    peer: None,
                    activity_id: None,
                    commitment: None,
                    stdout: None,
                    run: None,
                    outputs: BTreeMap::new(),
                    failure: None,
                    busy: false,
                });
            }
            if fresh.is_empty() && replicas.is_empty() && waiting.is_empty() {
                return Ok((JobState::Failed, format!("no provider's price fits the budget of {budget}")));
            }
            if !fresh.is_empty() {
                self.negotiate(id, &demand_id, &base, &mut fresh, &mut bids, spec.timeout).await?;
                // A busy provider never ran: its worst case is given back, and it is asked again
                // later, unless it refused too often (then it stays a failed replica).
                for r in fresh.extract_if(.., |r| r.busy).collect::<Vec<_>>() {
                    spent_worst = spent_worst.checked_sub(r.worst_cost).unwrap_or(Decimal::ZERO);
                    if !waiting.add(r.provider, Instant::now()) {
                        replicas.push(r);
                    }
                }
            }
            if !fresh.is_empty() {
                self.record(id, JobState::Running, &format!("running on {}", providers(&fresh))).await?;
                let commit_by = (Instant::now() + 2 * t).min(rounds_end);
                let runs = fresh.iter_mut().map(|r| self.execute(id, spec, r, commit_by));
                futures_util::future::join_all(runs).await;
                replicas.extend(fresh);
            }
            let ran = replicas.iter().any(|r| r.failure.is_none());
            if spec.verifier == Verifier::None && (ran || waiting.is_empty()) {
                break None;
            }
            self.resolve_replays(id, &mut replicas, Instant::now() + t).await;
            let commitments: Vec<Commitment> = replicas.iter().filter_map(|r| r.commitment).collect();
            let verdict = verify::decide(&commitments, spec.confidence);
            match &verdict.undecided {
                // (A job without a verifier has no commitments: it is never decided here.)
                None => break Some(verdict),
                Some(why) => {
                    let fits = |a: &Address| {
                        worst_cost(&bids.offers[a].properties, t)
                            .ok()
                            .and_then(|cost| spent_worst.checked_add(cost))
                            .is_some_and(|total| total <= budget)
                    };
                    let affordable = pool.iter().any(fits);
                    let in_time = Instant::now() + 2 * t <= rounds_end;
                    // Only busy providers are left to ask: wait for the first of them, while a
                    // replica asked then could still commit in time.
                    if !affordable
                        && in_time
                        && let Some(until) = waiting.next_at().filter(|at| *at + 2 * t <= rounds_end)
                    {
                        let who: Vec<String> =
                            waiting.providers().map(|p| short(&format!("{p:#x}"))).collect();
                        let secs = until.saturating_duration_since(Instant::now()).as_secs();
                        self.record(
                            id,
                            JobState::Negotiating,
                            &format!("waiting for {}, busy: asking again in {secs} s", who.join(", ")),
                        )
                        .await?;
                        tokio::time::sleep_until(until).await;
                        // As many as are due, up to the replicas still missing.
                        let ran = replicas.iter().filter(|r| r.failure.is_none()).count();
                        let missing = if spec.verifier == Verifier::None {
                            1
                        } else {
                            spec.concurrency.saturating_sub(ran)
                        };
                        wanted = waiting.ready_count(Instant::now()).min(missing).max(1);
                        continue;
                    }
                    let more = affordable && in_time;
                    let next = if more {
                        "; adding a replica"
                    } else if pool.is_empty() {
                        "; no provider left to add"
                    } else if !affordable {
                        "; the budget cannot pay for another replica"
                    } else {
                        "; no time is left for another replica"
                    };
                    self.record(
                        id,
                        JobState::Verifying,
                        &format!("no verdict yet ({}){next}", no_verdict(why)),
                    )
                    .await?;
                    if !more {
                        break (spec.verifier != Verifier::None).then_some(verdict);
                    }
                    // Pool members that the budget cannot take are skipped as they come up.
                    wanted = 1;
                }
            }
        };

        // The referee, where the job has one and a group won; before the decision, so a cancel
        // may still come first.
        let refereed = match &verdict {
            Some(v) if v.undecided.is_none() => self.referee(id, spec, v, t).await?,
            _ => Refereed::Unchecked,
        };
        let stopped = refereed.stops_payment();

        // Deciding to pay anyone closes the door to a cancel; a cancel that came first stops the
        // job here (its stop token is cancelled: the runner's select ends it as Cancelled).
        if verdict.as_ref().is_none_or(|v| v.undecided.is_none()) && !self.decide(id).await? {
            return std::future::pending().await;
        }

        // The decision: who is paid, who is not, and why; written in one transaction.
        let decision =
            self.judge(id, spec, t, &replicas, verdict.as_ref(), &refereed, stopped.is_some()).await?;
        self.write_verdict(id, &replicas, &decision, verdict.as_ref(), &refereed).await?;
        let Decision { paid, refused, results } = decision;
        let outcome = match (&verdict, &stopped) {
            (Some(v), _) if v.undecided.is_some() => {
                format!("no verdict: {}", no_verdict(v.undecided.as_ref().expect("undecided")))
            }
            (_, Some(why)) => why.clone(),
            _ if paid.is_empty() => "no result was verified".to_string(),
            _ => format!("verified: {} accepted, {} rejected", paid.len(), refused.len()),
        };
        self.record(id, JobState::Verifying, &outcome).await?;

        // The agreements end; the providers invoice; only the verified are paid.
        for r in &replicas {
            if let Some(activity) = &r.activity_id {
                let _ended = self.inner.activities.destroy(activity).await;
            }
            if let Some(agreement) = &r.agreement_id {
                self.end_agreement(agreement, "the job's run is over").await;
            }
        }
        self.record(id, JobState::Paying, &format!("accepting the invoices of {}", paid.len())).await?;
        let settled =
            self.settle(id, &super::settle::parties(&replicas), &paid, &refused, &allocation.id).await?;
        self.release_or_hold(id, &allocation.id, &settled).await?;
        if let Err(e) = self.inner.market.unsubscribe_demand(&demand_id).await {
            tracing::warn!(job = id, demand = %demand_id, error = %e, "withdrawing the demand");
        }
        if !settled.unpaid.is_empty() {
            // A verified provider the requestor could not pay: the job did not end as it should.
            return Ok((JobState::Failed, format!("{outcome}, but {}", settled.unpaid.join("; "))));
        }
        let outcome = if settled.pending.is_empty() {
            outcome
        } else {
            format!("{outcome}; {}", settled.pending.join("; "))
        };
        Ok(if results.is_some() || (verdict.is_none() && !paid.is_empty()) {
            (JobState::Completed, outcome)
        } else {
            (JobState::Failed, outcome)
        })
    }

    /// The demand: the job's package and runtime, its payment platform and allocation.
    pub(super) async fn demand(
        &self,
        id: &str,
        spec: &JobSpec,
        allocation: &agora_payment::model::Allocation,
        until: chrono::DateTime<Utc>,
    ) -> Result<DemandOfferBase> {
        let decorations =
            self.inner.payments.demand_decorations(std::slice::from_ref(&allocation.id)).await?;
        let mut properties = serde_json::Map::new();
        properties.insert("golem.srv.comp.expiration".into(), json!(until.timestamp_millis()));
        properties.insert(agora_agreement::keys::TASK_PACKAGE.into(), json!(spec.module));
        properties.insert(agora_agreement::keys::CHOSEN_PLATFORM.into(), json!(allocation.platform));
        properties.insert("agora.job.id".into(), json!(id));
        for p in decorations["properties"].as_array().into_iter().flatten() {
            if let Some(key) = p["key"].as_str() {
                properties.insert(key.into(), p["value"].clone());
            }
        }
        let mut constraints = format!(
            "(golem.runtime.name={})(golem.com.pricing.model=linear)(golem.com.scheme=payu)",
            spec.engine.runtime()
        );
        if let Some(subnet) = &spec.subnet {
            constraints.push_str(&format!("(golem.node.debug.subnet={subnet})"));
        }
        constraints
            .push_str(&format!("({}=*)", agora_agreement::keys::platform_address(&allocation.platform)));
        Ok(DemandOfferBase {
            properties: Value::Object(properties),
            constraints: format!("(&{constraints})"),
        })
    }
}

pub(super) fn providers(replicas: &[Replica]) -> String {
    let names: Vec<String> = replicas
        .iter()
        .filter(|r| r.failure.is_none())
        .map(|r| short(&format!("{:#x}", r.provider)))
        .collect();
    if names.is_empty() { "no provider".into() } else { names.join(", ") }
}
