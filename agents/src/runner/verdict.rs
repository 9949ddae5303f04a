//! The verdict: who is paid, who is not and why, after the winners revealed and their outputs
//! came back; written in one transaction.

use super::referee::Refereed;
use super::{Jobs, Replica};
use super::{new_id, store};
use crate::Result;
use crate::job::{ExecState, JobSpec, JobState};
use crate::verify::Verdict;
use crate::verify::{self, Loss, NoVerdict};
use crate::wire::{VerifyRequest, VerifyResponse};
use alloy_primitives::Address;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How often a winner's outputs are fetched again when what came back does not match.
const OUTPUT_FETCHES: usize = 2;

/// Who is paid, who is not and why, and the job's results (none when nothing was verified).
pub(super) struct Decision {
    pub(super) paid: Vec<Address>,
    pub(super) refused: BTreeMap<Address, String>,
    pub(super) results: Option<Value>,
}

impl Jobs {
    /// Decides on the replicas that ran: with a verifier, the winners of `verdict` are asked to
    /// reveal (all at once, within `t`) and paid once their reveal opens their commitment and
    /// their outputs came back as the verified result has them; the rest are refused with the
    /// reason. `stopped` (a referee's contradiction) pays nobody.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn judge(
        &self,
        id: &str,
        spec: &JobSpec,
        t: Duration,
        replicas: &[Replica],
        verdict: Option<&Verdict>,
        refereed: &Refereed,
        stopped: bool,
    ) -> Result<Decision> {
        let mut paid: Vec<Address> = Vec::new();
        let mut refused: BTreeMap<Address, String> = BTreeMap::new();
        let mut results: Option<Value> = None;
        match verdict {
            None => {
                // No verifier: the one replica is paid when its run finished.
                for r in replicas {
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
                for r in replicas {
                    if let Some(why) = &r.failure {
                        refused.insert(r.provider, why.clone());
                    }
                }
                for (provider, loss) in &verdict.losers {
                    refused.insert(*provider, format!("verification failed: {}", loss_reason(loss)));
                }
                for r in replicas {
                    if let Some(why) = refereed.refusal(id, verdict, r) {
                        refused.insert(r.provider, why);
                    }
                }
                if verdict.undecided.is_none() && !stopped {
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
        Ok(Decision { paid, refused, results })
    }

    /// Writes the verdict in one transaction, results and every replica's row: a restart that
    /// finds a winner recorded settles the job, and finds everything it needs for that (every
    /// winner, and why each other replica is not paid); one that finds none runs the job again.
    /// The referee's catch goes with it, so a crash cannot lose it.
    pub(super) async fn write_verdict(
        &self,
        id: &str,
        replicas: &[Replica],
        decision: &Decision,
        verdict: Option<&Verdict>,
        refereed: &Refereed,
    ) -> Result<()> {
        let Decision { paid, refused, results } = decision;
        let mut tx = self.inner.pool.begin().await?;
        if let Some(results) = results {
            store::jobs::set_results(&mut *tx, id, results).await?;
        }
        for r in replicas {
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
        if let Some(v) = verdict
            && let Some((caught, spared)) = refereed.judged(id, v, replicas)
        {
            super::reputation::update_reputation(&mut tx, replicas, paid, refused, v, &caught, &spared)
                .await?;
        }
        tx.commit().await?;
        Ok(())
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
    pub(super) async fn decide(&self, id: &str) -> Result<bool> {
        store::jobs::decide(&self.inner.pool, id).await
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
