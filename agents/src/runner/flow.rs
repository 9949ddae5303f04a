//! The flow of one job: bids, the choice of providers, negotiation, runs and commitments, the
//! verdict with replicas added while one is still possible, the reveal, and the check of what
//! came back against the verified hash.

use super::bounds::{justified, worst_cost};
use super::choice::{Bids, Waiting, choose};
use super::referee::Refereed;
use super::{INVOICE_WAIT, Jobs, PAYMENT_WAIT, Replica, new_id, short};
use crate::job::{ExecState, JobSpec, JobState, Verifier};
use crate::verify::{self, Commitment, Loss, NoVerdict};
use crate::wire::{SignedCommitment, VerifyRequest, VerifyResponse};
use crate::{Error, Result};
use agora_market::api::DemandOfferBase;
use agora_payment::model::NewAllocation;
use alloy_primitives::Address;
use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// How often a winner's outputs are fetched again when what came back does not match.
const OUTPUT_FETCHES: usize = 2;

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
        let principal: String = sqlx::query_scalar(
            "SELECT coalesce((SELECT u.service FROM job_users u WHERE 'user:' || u.id = j.owner), j.owner)
             FROM jobs j WHERE j.id = $1",
        )
        .bind(id)
        .fetch_one(&self.inner.pool)
        .await?;
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
        sqlx::query("UPDATE jobs SET allocation_id = $2 WHERE id = $1")
            .bind(id)
            .bind(&allocation.id)
            .execute(&self.inner.pool)
            .await?;

        let base = self.demand(id, spec, &allocation, final_deadline).await?;
        let demand_id = self.inner.market.subscribe_demand(&base, &principal).await?;
        sqlx::query("UPDATE jobs SET demand_id = $2 WHERE id = $1")
            .bind(id)
            .bind(&demand_id)
            .execute(&self.inner.pool)
            .await?;
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

        // The decision: who is paid, who is not, and why.
        let mut paid: Vec<Address> = Vec::new();
        let mut refused: BTreeMap<Address, String> = BTreeMap::new();
        let mut results = None;
        match &verdict {
            None => {
                // No verifier: the one replica is paid when its run finished.
                for r in &replicas {
                    match &r.failure {
                        None => {
                            paid.push(r.provider);
                            // Its results, as they came: nothing verified them.
                            results = Some(json!({
                                "digest": Value::Null, "stdout": r.stdout, "outputs": r.outputs,
                                "checked": false, "unchecked": "the job has no verifier",
                            }));
                        }
                        Some(why) => {
                            refused.insert(r.provider, why.clone());
                        }
                    }
                }
            }
            Some(verdict) => {
                for r in &replicas {
                    if let Some(why) = &r.failure {
                        refused.insert(r.provider, why.clone());
                    }
                }
                for (provider, loss) in &verdict.losers {
                    refused.insert(*provider, format!("verification failed: {}", loss_reason(loss)));
                }
                for r in &replicas {
                    if let Some(why) = refereed.refusal(id, verdict, r) {
                        refused.insert(r.provider, why);
                    }
                }
                if verdict.undecided.is_none() && stopped.is_none() {
                    self.record(
                        id,
                        JobState::Verifying,
                        &format!("{} results agree; asking them to reveal", verdict.winners.len()),
                    )
                    .await?;
                    let reveal_deadline = Instant::now() + t;
                    let winners: Vec<&Replica> = verdict
                        .winners
                        .iter()
                        .map(|w| replicas.iter().find(|r| r.provider == *w).expect("a winner ran"))
                        .collect();
                    // All at once: one that holds its answer does not eat into the others' time.
                    let reveals = futures_util::future::join_all(
                        winners.iter().map(|r| self.reveal(id, r, reveal_deadline)),
                    )
                    .await;
                    let outputs_deadline = Instant::now() + t;
                    for (replica, revealed) in winners.into_iter().zip(reveals) {
                        let winner = &replica.provider;
                        match revealed {
                            // A job that names its outputs pays a winner only for outputs that
                            // came back as the verified result has them.
                            Ok(digest) if !spec.outputs.is_empty() => {
                                match self.verified_outputs(spec, replica, &digest, outputs_deadline).await {
                                    Ok(outputs) => {
                                        paid.push(*winner);
                                        results.get_or_insert_with(|| json!({
                                            "digest": digest, "stdout": replica.stdout, "outputs": outputs,
                                            "checked": true, "unchecked": Value::Null,
                                        }));
                                    }
                                    Err(why) => {
                                        refused.insert(*winner, format!(
                                            "verification failed: what came back of its outputs is not the verified result: {why}"
                                        ));
                                    }
                                }
                            }
                            Ok(digest) => {
                                paid.push(*winner);
                                if results.as_ref().is_none_or(|r: &Value| r["checked"] != true) {
                                    let checked = replica
                                        .run
                                        .as_ref()
                                        .ok_or_else(|| "no run result".to_string())
                                        .and_then(|run| {
                                            self.check_outputs(spec, run, &replica.outputs, &digest)
                                        });
                                    if let Err(why) = &checked {
                                        tracing::info!(job = id, provider = %winner, "outputs not checked: {why}");
                                    }
                                    results = Some(json!({
                                        "digest": digest, "stdout": replica.stdout, "outputs": replica.outputs,
                                        "checked": checked.is_ok(), "unchecked": checked.err(),
                                    }));
                                }
                            }
                            Err(why) => {
                                refused.insert(*winner, format!("verification failed: {why}"));
                            }
                        }
                    }
                    let needed = spec.confidence.max(2);
                    if paid.len() < needed {
                        for p in paid.drain(..) {
                            refused.insert(p, "verification failed: too few results were revealed".into());
                        }
                        results = None;
                    }
                }
            }
        }
        if let (Some(results), Refereed::Agrees(digest)) = (&mut results, &refereed) {
            results["referee"] = json!(digest);
        }
        // The verdict is written in one transaction, results and every replica's row: a restart
        // that finds a winner recorded settles the job, and finds everything it needs for that
        // (every winner, and why each other replica is not paid); one that finds none runs the
        // job again.
        let mut tx = self.inner.pool.begin().await?;
        if let Some(results) = &results {
            sqlx::query("UPDATE jobs SET results = $2 WHERE id = $1")
                .bind(id)
                .bind(results)
                .execute(&mut *tx)
                .await?;
        }
        for r in &replicas {
            let state = if paid.contains(&r.provider) {
                ExecState::Verified
            } else if r.failure.is_some() {
                ExecState::Failed
            } else {
                ExecState::Lost
            };
            let reason = refused.get(&r.provider).map(String::as_str);
            super::write_execution(&mut *tx, id, r, state, reason).await?;
        }
        // Reputation with it: a referee's catch is not lost to a crash.
        if let Some(v) = &verdict
            && let Some((caught, spared)) = refereed.judged(id, v, &replicas)
        {
            super::settle::update_reputation(&mut tx, &replicas, &paid, &refused, v, &caught, &spared)
                .await?;
        }
        tx.commit().await?;
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
        properties.insert(agora_market::keys::TASK_PACKAGE.into(), json!(spec.module));
        properties.insert(agora_market::keys::CHOSEN_PLATFORM.into(), json!(allocation.platform));
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
        constraints.push_str(&format!("({}=*)", agora_market::keys::platform_address(&allocation.platform)));
        Ok(DemandOfferBase {
            properties: Value::Object(properties),
            constraints: format!("(&{constraints})"),
        })
    }

    /// Runs the job on one replica and takes its commitment, by `deadline`.
    pub(super) async fn execute(&self, id: &str, spec: &JobSpec, r: &mut Replica, deadline: Instant) {
        if r.failure.is_some() {
            return;
        }
        let ran = tokio::time::timeout_at(deadline, self.execute_inner(id, spec, r)).await;
        let failure = match ran {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some("it did not commit to a result by the commit deadline".into()),
        };
        let state = if failure.is_some() { ExecState::Failed } else { ExecState::Committed };
        r.failure = failure;
        if let Err(e) = self.set_execution(id, r, state, r.failure.as_deref()).await {
            tracing::warn!(job = id, error = %e, "recording a replica");
        }
    }

    pub(super) async fn execute_inner(
        &self,
        id: &str,
        spec: &JobSpec,
        r: &mut Replica,
    ) -> Result<(), String> {
        let activities = &self.inner.activities;
        let agreement = r.agreement_id.clone().expect("an agreed replica");
        let activity =
            activities.create(&agreement).await.map_err(|e| format!("creating the activity: {e}"))?;
        r.activity_id = Some(activity.clone());
        self.set_execution(id, r, ExecState::Running, None).await.map_err(|e| e.to_string())?;
        let exec_at = Instant::now();
        sqlx::query("UPDATE job_executions SET exec_at = now() WHERE job_id = $1 AND provider = $2")
            .bind(id)
            .bind(format!("{:#x}", r.provider))
            .execute(&self.inner.pool)
            .await
            .map_err(|e| e.to_string())?;
        let batch = activities
            .exec(&activity, &spec.script().to_string())
            .await
            .map_err(|e| format!("starting the run: {e}"))?;
        let results = loop {
            let results = activities
                .results(&activity, &batch, Duration::from_secs(10), None)
                .await
                .map_err(|e| format!("the run's results: {e}"))?;
            if results.last().is_some_and(|l| l.is_batch_finished) {
                break results;
            }
        };
        // The provider measured its usage inside this span; its invoice is held to what the
        // agreed terms give for it.
        let seen = exec_at.elapsed();
        r.max_amount = match self.inner.market.agreement(&agreement).await {
            Ok(terms) => justified(&terms, seen, r.worst_cost).ok(),
            Err(e) => return Err(format!("reading its agreement: {e}")),
        };
        if let Some(failed) = results.iter().find(|c| c.result != "Ok") {
            return Err(format!(
                "command {} failed: {}",
                failed.index,
                failed.message.clone().unwrap_or_default()
            ));
        }
        let run_index = 2 + spec.inputs.len();
        r.stdout = results.get(run_index).and_then(|c| c.stdout.clone());
        r.run = results.get(run_index).cloned();
        for (output, result) in spec.outputs.iter().zip(results.iter().skip(run_index + 1)) {
            if let Some(blob) = &result.blob {
                r.outputs.insert(output.name.clone(), blob.clone());
            }
        }
        if spec.verifier == Verifier::None {
            return Ok(());
        }
        let peer = r.peer.clone().ok_or("the provider's peer is unknown")?;
        let request = VerifyRequest::Commit { activity_id: activity.clone(), job_id: id.into() };
        let answer: VerifyResponse = self
            .inner
            .net
            .request_typed(agora_net::Channel::Verify, &peer, &request)
            .await
            .map_err(|e| format!("asking for its commitment: {e}"))?;
        let sealed = match answer {
            VerifyResponse::Committed { sealed } => sealed,
            VerifyResponse::Refused { message } => return Err(format!("it committed to nothing: {message}")),
            other => return Err(format!("it answered a commit with {other:?}")),
        };
        let bytes = hex::decode(sealed).map_err(|_| "its commitment is not hex")?;
        let opened =
            self.inner.identity.unseal(&bytes).map_err(|e| format!("its commitment does not open: {e}"))?;
        let signed: SignedCommitment =
            serde_json::from_slice(&opened).map_err(|e| format!("its commitment is malformed: {e}"))?;
        agora_identity::verify_json(&signed.body, &signed.signature, r.provider)
            .map_err(|e| format!("its commitment is not signed by it: {e}"))?;
        if signed.body.provider != r.provider {
            return Err(format!("its commitment names another provider, {:#x}", signed.body.provider));
        }
        if signed.body.job_id != id || signed.body.activity_id != activity {
            return Err("its commitment is for another job or activity".into());
        }
        r.commitment = Some(signed.body.commitment()?);
        Ok(())
    }

    /// A seal held by more than one provider was copied: each holder is asked to reveal now, and
    /// only the one whose digest opens it under its own address keeps its commitment. The others
    /// fail, as replays.
    pub(super) async fn resolve_replays(&self, id: &str, replicas: &mut [Replica], deadline: Instant) {
        let mut holders: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
        for (i, r) in replicas.iter().enumerate() {
            if let Some(c) = r.commitment {
                holders.entry(c.seal).or_default().push(i);
            }
        }
        for indices in holders.into_values().filter(|h| h.len() > 1) {
            for i in indices {
                if self.reveal(id, &replicas[i], deadline).await.is_err() {
                    let r = &mut replicas[i];
                    r.commitment = None;
                    r.failure = Some(format!("verification failed: {}", loss_reason(&Loss::Replayed)));
                    if let Err(e) = self.set_execution(id, r, ExecState::Failed, r.failure.as_deref()).await {
                        tracing::warn!(job = id, error = %e, "recording a replica");
                    }
                }
            }
        }
    }

    /// Rebuilds a winner's results folder from what came back (its stdout, stderr and exit code,
    /// and its outputs, fetched into this node's blobs) and checks its `h1:` hash against the
    /// verified digest. It can only match when the job names every file its run leaves in
    /// `/output`, and its stdout and stderr are text within the size a result carries.
    pub(super) fn check_outputs(
        &self,
        spec: &JobSpec,
        run: &agora_activity::wire::CommandResult,
        outputs: &BTreeMap<String, String>,
        digest: &str,
    ) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("agora-results-{}", new_id()));
        let built = (|| -> Result<String, String> {
            let io = |e: std::io::Error| e.to_string();
            std::fs::create_dir_all(dir.join("outputs")).map_err(io)?;
            std::fs::write(dir.join("stdout"), run.stdout.as_deref().unwrap_or_default()).map_err(io)?;
            std::fs::write(dir.join("stderr"), run.stderr.as_deref().unwrap_or_default()).map_err(io)?;
            std::fs::write(dir.join("exitCode"), format!("{}\n", run.exit_code.unwrap_or_default()))
                .map_err(io)?;
            for output in &spec.outputs {
                let blob = outputs
                    .get(&output.name)
                    .ok_or_else(|| format!("output {} did not come back", output.name))?;
                let sha = blob.strip_prefix("blob:sha256:").unwrap_or(blob);
                let from = self
                    .inner
                    .activities
                    .blobs()
                    .path(sha)
                    .ok_or_else(|| format!("blob {sha} is not here"))?;
                let to = dir.join("outputs").join(&output.path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::copy(from, to).map_err(io)?;
            }
            agora_activity::results_hash(&dir).map_err(|e| e.to_string())
        })();
        let _removed = std::fs::remove_dir_all(&dir);
        let built = built?;
        if built != digest {
            return Err(format!(
                "what came back hashes to {built}, not the verified {digest}: name every file the run leaves in /output"
            ));
        }
        Ok(())
    }

    /// Marks the job decided, unless a cancel was recorded first: whether it is.
    async fn decide(&self, id: &str) -> Result<bool> {
        let decided = sqlx::query("UPDATE jobs SET decided = TRUE WHERE id = $1 AND NOT cancel_requested")
            .bind(id)
            .execute(&self.inner.pool)
            .await?
            .rows_affected();
        Ok(decided == 1)
    }

    /// Why the payee a proposal names on `platform` cannot be paid, if it cannot: not an
    /// address, or one the chain refuses (the zero address, the token, the batch payer).
    pub(super) fn payee_problem(&self, properties: &Value, platform: &str) -> Option<String> {
        let key = agora_market::keys::platform_address(platform);
        let flat = agora_grammar::flatten(properties).ok()?;
        let payee = match flat.get(&key).map(|v| v.as_str().map(agora_identity::parse_address)) {
            // No address there: the provider is paid at its node address.
            None => return None,
            Some(Some(Ok(payee))) => payee,
            Some(_) => return Some(format!("{key} is not an address")),
        };
        self.inner.payments.config().network(platform)?.payee_problem(payee)
    }

    /// A winner's outputs, checked against the verified digest: as they came back, and when they
    /// do not match, fetched again from its activity (its output transfers run again) while
    /// `deadline` and [`OUTPUT_FETCHES`] allow. Why they never matched, when they did not.
    async fn verified_outputs(
        &self,
        spec: &JobSpec,
        r: &Replica,
        digest: &str,
        deadline: Instant,
    ) -> Result<BTreeMap<String, String>, String> {
        let run = r.run.as_ref().ok_or("no run result")?;
        let mut outputs = r.outputs.clone();
        let mut fetches = 0;
        loop {
            let why = match self.check_outputs(spec, run, &outputs, digest) {
                Ok(()) => return Ok(outputs),
                Err(why) => why,
            };
            if fetches == OUTPUT_FETCHES || Instant::now() >= deadline {
                return Err(why);
            }
            fetches += 1;
            outputs = match tokio::time::timeout_at(deadline, self.fetch_outputs(spec, r)).await {
                Ok(Ok(fresh)) => fresh,
                Ok(Err(again)) => return Err(format!("{why}; fetching them again: {again}")),
                Err(_) => return Err(format!("{why}; fetching them again took past the deadline")),
            };
        }
    }

    /// Runs a replica's output transfers again on its activity; the outputs' blobs, by name.
    async fn fetch_outputs(&self, spec: &JobSpec, r: &Replica) -> Result<BTreeMap<String, String>, String> {
        let activities = &self.inner.activities;
        let activity = r.activity_id.as_deref().ok_or("it has no activity")?;
        let script = Value::Array(spec.output_transfers()).to_string();
        let batch = activities.exec(activity, &script).await.map_err(|e| e.to_string())?;
        let results = loop {
            let results = activities
                .results(activity, &batch, Duration::from_secs(10), None)
                .await
                .map_err(|e| e.to_string())?;
            if results.last().is_some_and(|l| l.is_batch_finished) {
                break results;
            }
        };
        if let Some(failed) = results.iter().find(|c| c.result != "Ok") {
            return Err(failed.message.clone().unwrap_or_else(|| "a transfer failed".into()));
        }
        Ok(spec
            .outputs
            .iter()
            .zip(&results)
            .filter_map(|(output, result)| Some((output.name.clone(), result.blob.clone()?)))
            .collect())
    }

    /// Asks a winner for its digest, which must open its commitment.
    pub(super) async fn reveal(&self, id: &str, r: &Replica, deadline: Instant) -> Result<String, String> {
        let (Some(peer), Some(activity), Some(commitment)) = (&r.peer, &r.activity_id, &r.commitment) else {
            return Err("it has no commitment".into());
        };
        let request = VerifyRequest::Reveal { activity_id: activity.clone(), job_id: id.into() };
        let asked =
            self.inner.net.request_typed::<_, VerifyResponse>(agora_net::Channel::Verify, peer, &request);
        let digest = match tokio::time::timeout_at(deadline, asked).await {
            Err(_) => return Err("it did not reveal by the reveal deadline".into()),
            Ok(Err(e)) => return Err(format!("it did not reveal: {e}")),
            Ok(Ok(VerifyResponse::Revealed { digest })) => digest,
            Ok(Ok(other)) => return Err(format!("it answered the reveal with {other:?}")),
        };
        if !verify::reveal_opens(id, commitment, &digest) {
            return Err(loss_reason(&Loss::BadReveal));
        }
        Ok(digest)
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

pub(super) fn no_verdict(why: &NoVerdict) -> String {
    match why {
        NoVerdict::TooFew => "fewer than two results".into(),
        NoVerdict::Tie => "a tie".into(),
        NoVerdict::ConfidenceNotMet { largest, confidence } => {
            format!("confidence not met: {largest} alike, {confidence} needed")
        }
    }
}

pub(super) fn loss_reason(loss: &Loss) -> String {
    match loss {
        Loss::Outvoted => "its result differs from the verified one",
        Loss::NoVerdict => "no result could be verified",
        Loss::NoResult => "it committed to no result",
        Loss::Replayed => "its commitment copies another provider's",
        Loss::BadReveal => "its reveal does not open its commitment",
    }
    .into()
}
