//! Running a replica: its activity and the job's run on it, then its commitment; seals that
//! another provider copied are found out.

use super::bounds::justified;
use super::verdict::loss_reason;
use super::{Jobs, Replica, store};
use crate::Result;
use crate::job::{ExecState, JobSpec, Verifier};
use crate::verify::Loss;
use crate::wire::{SignedCommitment, VerifyRequest, VerifyResponse};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

impl Jobs {
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
        store::executions::mark_exec(&self.inner.pool, id, &format!("{:#x}", r.provider))
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
        let terms = self
            .inner
            .market
            .agreement(&agreement)
            .await
            .map_err(|e| format!("reading its agreement: {e}"))?;
        // Terms that priced at selection price here too; should they not, the replica's worst
        // case, reserved at selection, is still a bound: never none.
        r.max_amount = Some(justified(&terms, seen, r.worst_cost).unwrap_or_else(|e| {
            tracing::warn!(job = id, provider = %r.provider, error = %e, "invoice bounded by the worst case");
            r.worst_cost
        }));
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
}
