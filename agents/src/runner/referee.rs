//! The referee: the requestor's node runs a WASM job itself once its providers' commitments are
//! in, and the winning group's result must be its own. WASM runs are deterministic, so an honest
//! group always agrees with it; a group of identities that agree on a made-up result is caught,
//! and nobody is paid. A spot check draws the jobs it checks only after the commitments arrive,
//! so no provider can know which of its jobs are checked.

use super::{Jobs, Replica};
use crate::Result;
use crate::job::{JobSpec, JobState, Referee};
use crate::verify::{self, Loss, Verdict};
use agora_activity::LocalRun;
use alloy_primitives::Address;
use rand::Rng;
use std::time::Duration;

/// What the referee found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refereed {
    /// The job has no referee, or the spot check did not draw it.
    Unchecked,
    /// The referee's result is the winning group's: its digest.
    Agrees(String),
    /// The referee's result is not the winning group's: its digest.
    Contradicts(String),
    /// The referee's own run did not give a result: why. Nobody is paid, and nobody is judged.
    Failed(String),
}

impl Refereed {
    /// Why each replica is not paid when the referee stops the payment; `None` when it does not.
    pub(super) fn refusal(&self, id: &str, verdict: &Verdict, replica: &Replica) -> Option<String> {
        let caught = verdict.winners.contains(&replica.provider);
        Some(match self {
            Self::Unchecked | Self::Agrees(_) => return None,
            Self::Contradicts(_) if caught => {
                "verification failed: the referee's run of the job gives another result than its group's"
                    .into()
            }
            Self::Contradicts(digest) if self.matches(id, digest, replica) => {
                "its result is the referee's, but the winning group's is not: nobody is paid".into()
            }
            Self::Contradicts(_) => return None,
            // A replica that committed to nothing keeps its own reason.
            Self::Failed(_) if replica.commitment.is_none() => return None,
            Self::Failed(why) => format!("the referee could not check the result ({why}): nobody is paid"),
        })
    }

    /// Whether a replica committed to the referee's `digest`.
    fn matches(&self, id: &str, digest: &str, replica: &Replica) -> bool {
        let hash = verify::commit(id, Address::ZERO, digest).hash;
        replica.commitment.is_some_and(|c| c.hash == hash)
    }

    /// Who the referee caught in a group it contradicts, and who it spared (their result was its
    /// own); `None` when its run gave no result, and nobody is judged.
    pub(super) fn judged(
        &self,
        id: &str,
        verdict: &Verdict,
        replicas: &[Replica],
    ) -> Option<(Vec<Address>, Vec<Address>)> {
        match self {
            Self::Unchecked | Self::Agrees(_) => Some((Vec::new(), Vec::new())),
            Self::Contradicts(digest) => {
                // A copied seal is not spared, whatever it copied.
                let replayed =
                    |p: &Address| verdict.losers.iter().any(|(l, loss)| l == p && *loss == Loss::Replayed);
                let spared = replicas
                    .iter()
                    .filter(|r| self.matches(id, digest, r) && !replayed(&r.provider))
                    .map(|r| r.provider);
                Some((verdict.winners.clone(), spared.collect()))
            }
            Self::Failed(_) => None,
        }
    }

    /// Why nobody is paid, when the referee stops the payment.
    pub(super) fn stops_payment(&self) -> Option<String> {
        match self {
            Self::Unchecked | Self::Agrees(_) => None,
            Self::Contradicts(_) => {
                Some("the referee's run contradicts the winning group: nobody is paid".into())
            }
            Self::Failed(why) => {
                Some(format!("the referee could not check the result: {why}; nobody is paid"))
            }
        }
    }
}

impl Jobs {
    /// Runs the job on this node when its referee asks for it, within `time`, and compares the
    /// result with the verdict's.
    pub(super) async fn referee(
        &self,
        id: &str,
        spec: &JobSpec,
        verdict: &Verdict,
        time: Duration,
    ) -> Result<Refereed> {
        let step = match spec.referee {
            None => return Ok(Refereed::Unchecked),
            Some(Referee::Local) => "the referee runs the job on this node",
            // Drawn now that the commitments are in.
            Some(Referee::SpotCheck(p)) if rand::thread_rng().r#gen::<f64>() < p => {
                "a spot check drew this job: the referee runs it on this node"
            }
            Some(Referee::SpotCheck(_)) => {
                self.record(id, JobState::Verifying, "no spot check drew this job").await?;
                return Ok(Refereed::Unchecked);
            }
        };
        self.record(id, JobState::Verifying, step).await?;
        let run = LocalRun {
            module: spec.module.clone(),
            inputs: spec.inputs.iter().map(|i| (i.src.clone(), i.dst.clone())).collect(),
            entry_point: spec.entry_point.clone(),
            args: spec.args.clone(),
            env: spec.env.clone(),
            time,
        };
        // The run stops itself at `time`; this bounds the fetches before it too.
        let ran = tokio::time::timeout(time, self.inner.activities.run_locally(run)).await;
        let (found, said) = match ran {
            Err(_) => {
                let why = format!("its run took over {} s", time.as_secs());
                (Refereed::Failed(why.clone()), format!("the referee could not check the result: {why}"))
            }
            Ok(Err(e)) => {
                let why = format!("its run: {e}");
                (Refereed::Failed(why.clone()), format!("the referee could not check the result: {why}"))
            }
            Ok(Ok(outcome)) if outcome.exit_code != 0 => {
                let why = format!("its run exited with code {}", outcome.exit_code);
                (Refereed::Failed(why.clone()), format!("the referee could not check the result: {why}"))
            }
            Ok(Ok(outcome)) if verify::commit(id, Address::ZERO, &outcome.digest).hash == verdict.hash => {
                let said = format!("the referee agrees: {}", outcome.digest);
                (Refereed::Agrees(outcome.digest), said)
            }
            Ok(Ok(outcome)) => {
                let said = format!("the referee's result is {}, not the winning group's", outcome.digest);
                (Refereed::Contradicts(outcome.digest), said)
            }
        };
        self.record(id, JobState::Verifying, &said).await?;
        Ok(found)
    }
}
