//! The provider side: activities this node hosts for its agreements' requestors.

use crate::exescript::{self, Command};
use crate::new_id;
use crate::service::{Batch, Live, require_approved};
use crate::transfer;
use crate::unit::{ExeUnit, Limits};
use crate::wire::{ActivityRequest, ActivityResponse, ActivityState, CommandResult, USAGE_VECTOR};
use crate::{Activities, DockerUnit, Error, MAX_CONCURRENT_BATCHES, MAX_WAIT, Result, WasmUnit};
use agora_agreement::{AgreementState, Role};
use agora_identity::Address;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an ended activity's state and results stay answerable to its requestor.
pub const KEEP_ENDED: Duration = Duration::from_secs(600);

/// Limits from the offer's properties, over the defaults.
fn limits_of(offer: &BTreeMap<String, serde_json::Value>) -> Limits {
    let mut limits = crate::default_limits();
    if let Some(secs) = offer.get("agora.limits.time_sec").and_then(serde_json::Value::as_f64) {
        limits.time = Duration::from_secs_f64(secs.clamp(0.01, 1e9));
    }
    if let Some(fuel) = offer.get("agora.limits.fuel").and_then(serde_json::Value::as_u64) {
        limits.fuel = Some(fuel);
    }
    if let Some(gib) = offer.get("golem.inf.mem.gib").and_then(serde_json::Value::as_f64) {
        limits.memory_bytes = (gib * f64::from(1u32 << 30)) as usize;
    }
    if let Some(threads) = offer.get("golem.inf.cpu.threads").and_then(serde_json::Value::as_f64) {
        limits.cpus = threads.max(0.1);
    }
    if let Some(pids) = offer.get("agora.limits.pids").and_then(serde_json::Value::as_i64) {
        limits.pids = pids;
    }
    limits.network = offer.get("agora.net.host").and_then(serde_json::Value::as_bool) == Some(true);
    limits
}

/// The counters the agreement's offer prices (`golem.com.usage.vector`), in its order; an
/// offer without linear pricing is reported on agora's own [`USAGE_VECTOR`].
fn usage_vector_of(agreement: &agora_agreement::Agreement) -> Vec<String> {
    match agreement.pricing() {
        Ok(pricing) => pricing.usage_vector,
        Err(_) => USAGE_VECTOR.iter().map(|n| n.to_string()).collect(),
    }
}

impl Activities {
    /// Answers a request from `peer` (whose node address is `sender`). A refusal names the
    /// activity's own paths, never the host's.
    pub async fn handle(
        &self,
        peer: &str,
        sender: Option<Address>,
        request: ActivityRequest,
    ) -> ActivityResponse {
        match self.answer(peer, sender, request).await {
            Ok(response) => response,
            Err(e) => ActivityResponse::Error {
                refusal: e.refusal(),
                message: self.public_paths(&e.public_message()),
            },
        }
    }

    async fn answer(
        &self,
        peer: &str,
        sender: Option<Address>,
        request: ActivityRequest,
    ) -> Result<ActivityResponse> {
        let sender = sender.ok_or_else(|| Error::Forbidden("a peer without a node address".into()))?;
        Ok(match request {
            ActivityRequest::Create { agreement_id } => ActivityResponse::Created {
                activity_id: self.create_hosted(peer, sender, &agreement_id).await?,
            },
            ActivityRequest::Exec { activity_id, script } => {
                let live = self.live_for(&activity_id, sender)?;
                ActivityResponse::Batch { batch_id: self.exec_hosted(&activity_id, live, &script)? }
            }
            ActivityRequest::Results { activity_id, batch_id, wait_ms, command_index } => {
                let live = self.live_for(&activity_id, sender)?;
                let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
                self.results_hosted(&live, &batch_id, wait, command_index).await?
            }
            ActivityRequest::State { activity_id } => {
                let live = self.live_for(&activity_id, sender)?;
                let (state, reason, error) = live.state.lock().expect("state").clone();
                ActivityResponse::State {
                    state: ActivityState { state: (state, None), reason, error_message: error },
                }
            }
            ActivityRequest::Usage { activity_id } => {
                let live = self.live_for(&activity_id, sender)?;
                ActivityResponse::Usage {
                    usage: crate::wire::usage_of(&live.usage.lock().expect("usage"), &live.usage_vector),
                }
            }
            ActivityRequest::Destroy { activity_id } => {
                self.live_for(&activity_id, sender)?;
                self.terminate_hosted(&activity_id, "destroyed by the requestor").await;
                ActivityResponse::Done
            }
        })
    }

    async fn create_hosted(&self, peer: &str, sender: Address, agreement_id: &str) -> Result<String> {
        let agreement = self.inner.agreements.agreement(agreement_id).await?;
        let Some(agreement) = agreement.filter(|a| a.role == Role::Provider) else {
            return Err(Error::NotFound(format!("no agreement {agreement_id} on this provider")));
        };
        if agreement.requestor != sender {
            return Err(Error::Forbidden(format!(
                "agreement {agreement_id} is not yours: only its requestor may create activities"
            )));
        }
        require_approved(&agreement)?;
        let runtime = agreement.runtime().unwrap_or_default();
        let unit: Box<dyn ExeUnit> = match runtime.as_str() {
            "wasmtime" => Box::new(WasmUnit::new(self.inner.wasm.clone())),
            "docker" => {
                let Some(socket) = &self.inner.config.docker_socket else {
                    return Err(Error::Conflict(
                        "this provider has no container engine configured (docker_socket)".into(),
                    ));
                };
                let docker = DockerUnit::connect(socket).await?;
                Box::new(DockerUnit::new(docker, self.owner()))
            }
            other => {
                return Err(Error::Conflict(format!(
                    "the offer's runtime {other:?} is not one this node runs (wasmtime, docker)"
                )));
            }
        };
        let Some(package) = agreement.task_package() else {
            return Err(Error::BadInput("the demand names no golem.srv.comp.task_package to deploy".into()));
        };
        let id = new_id();
        let dir = self.inner.config.work_dir.join(&id);
        std::fs::create_dir_all(dir.join("input")).map_err(|e| Error::Io(format!("activity folder: {e}")))?;
        self.inner.store.insert(&id, agreement_id, Role::Provider, peer).await?;
        let live = Live {
            agreement_id: agreement_id.to_string(),
            requestor: sender,
            requestor_peer: peer.to_string(),
            dir,
            package,
            limits: limits_of(&agreement.offer_properties()),
            usage_vector: usage_vector_of(&agreement),
            unit: tokio::sync::Mutex::new(unit),
            batches: Mutex::default(),
            usage: Mutex::default(),
            state: Mutex::new(("Initialized".into(), None, None)),
            last_outputs: Mutex::default(),
            last_results_hash: Mutex::default(),
            running: Mutex::default(),
            ended: Mutex::default(),
        };
        self.inner.live.lock().expect("activities").insert(id.clone(), Arc::new(live));
        tracing::info!(activity = %id, agreement = agreement_id, runtime, "activity created");
        Ok(id)
    }

    /// The hosted activity, if `sender` is its requestor.
    pub(crate) fn live_for(&self, id: &str, sender: Address) -> Result<Arc<Live>> {
        let live = self.inner.live.lock().expect("activities").get(id).cloned();
        let Some(live) = live else {
            return Err(Error::NotFound(format!("no activity {id} on this provider")));
        };
        if live.requestor != sender {
            return Err(Error::Forbidden(format!("activity {id} is not yours")));
        }
        Ok(live)
    }

    fn exec_hosted(&self, id: &str, live: Arc<Live>, script: &str) -> Result<String> {
        if live.is_terminated() {
            return Err(Error::Gone(format!("activity {id} is Terminated")));
        }
        let commands = exescript::parse(script).map_err(|e| Error::BadInput(e.to_string()))?;
        // Everything is checked before anything runs.
        let mut transfers = HashMap::new();
        for (index, command) in commands.iter().enumerate() {
            match command {
                Command::Transfer(t) => {
                    let checked = transfer::check(&t.from, &t.to, &self.inner.config.transfer_dirs).map_err(
                        |e| match e {
                            Error::Forbidden(m) => Error::Forbidden(format!("command {index}: {m}")),
                            other => Error::BadInput(format!("command {index}: {other}")),
                        },
                    )?;
                    transfers.insert(index, checked);
                }
                Command::Run(run) => {
                    if let Some(wanted) = run.datasets.iter().find(|w| self.dataset(w).is_none()) {
                        return Err(Error::BadInput(format!(
                            "command {index}: this provider has no dataset {wanted}"
                        )));
                    }
                }
                _ => {}
            }
        }
        let Ok(permit) = self.inner.batch_permits.clone().try_acquire_owned() else {
            return Err(Error::Busy(format!(
                "this provider runs {MAX_CONCURRENT_BATCHES} batches at once, its limit; try again when one finishes"
            )));
        };
        let batch_id = new_id();
        let batch = Arc::new(Batch::default());
        live.batches.lock().expect("batches").insert(batch_id.clone(), batch.clone());
        let (this, id, batch_name, keep) = (self.clone(), id.to_string(), batch_id.clone(), live.clone());
        // Under the lock termination drains: a batch is either seen by it (and stopped) or sees
        // the activity terminated here (and never starts).
        let mut running = keep.running.lock().expect("running");
        if keep.is_terminated() {
            return Err(Error::Gone(format!("activity {id} is Terminated")));
        }
        let task = self.inner.tasks.spawn(async move {
            let _permit = permit;
            this.run_batch(&id, live, &batch_name, batch, commands, transfers).await;
        });
        running.retain(|(_, t)| !t.is_finished());
        running.push((batch_id.clone(), task.abort_handle()));
        Ok(batch_id)
    }

    async fn results_hosted(
        &self,
        live: &Live,
        batch_id: &str,
        wait: Duration,
        command_index: Option<usize>,
    ) -> Result<ActivityResponse> {
        let batch = live.batches.lock().expect("batches").get(batch_id).cloned();
        let Some(batch) = batch else {
            return Err(Error::NotFound(format!("no batch {batch_id} in this activity")));
        };
        let deadline = tokio::time::Instant::now() + wait;
        let known = batch.results.lock().expect("batch").len();
        loop {
            let woken = batch.changed.notified();
            let results = batch.results.lock().expect("batch").clone();
            let ready = match command_index {
                Some(index) => results.iter().any(|r| r.index >= index) || batch.finished(),
                None => results.len() > known || batch.finished() || wait.is_zero(),
            };
            if ready || tokio::time::timeout_at(deadline, woken).await.is_err() {
                let results = batch.results.lock().expect("batch").clone();
                return Ok(ActivityResponse::Results { results });
            }
        }
    }

    /// Ends a hosted activity: its running batch stopped, its unit released, its folder removed
    /// (outputs already taken as blobs stay in the blob store).
    pub async fn terminate_hosted(&self, id: &str, reason: &str) {
        let live = self.inner.live.lock().expect("activities").get(id).cloned();
        let Some(live) = live else { return };
        {
            let mut state = live.state.lock().expect("state");
            if state.0 == "Terminated" {
                return;
            }
            *state = ("Terminated".into(), Some(reason.to_string()), None);
        }
        *live.ended.lock().expect("ended") = Some(std::time::Instant::now());
        // A batch that is still running stops here; a container it ran is removed as its run
        // is dropped, a WASM module stops at its next epoch tick. Its requestor is told with a
        // last result that finishes the batch. (The terminating batch itself is the caller, and
        // is neither stopped under it nor finished for it.)
        let current = tokio::task::try_id();
        let running: Vec<_> = live.running.lock().expect("running").drain(..).collect();
        for (batch_id, task) in running {
            if Some(task.id()) == current || task.is_finished() {
                continue;
            }
            task.abort();
            let batch = live.batches.lock().expect("batches").get(&batch_id).cloned();
            if let Some(batch) = batch {
                // Checked and finished under one lock, so the batch's own last result and this
                // one cannot both be added.
                let mut results = batch.results.lock().expect("batch");
                if results.last().is_some_and(|r| r.is_batch_finished) {
                    continue;
                }
                let index = results.len();
                results.push(CommandResult {
                    index,
                    event_date: chrono::Utc::now(),
                    result: "Error".into(),
                    stdout: None,
                    stderr: None,
                    message: Some(format!("the activity ended: {reason}")),
                    is_batch_finished: true,
                    exit_code: None,
                    results_hash: None,
                    blob: None,
                });
                drop(results);
                batch.changed.notify_waiters();
            }
        }
        live.unit.lock().await.terminate().await;
        if let Err(e) = std::fs::remove_dir_all(&live.dir) {
            tracing::debug!(activity = id, error = %e, "activity folder");
        }
        self.inner.store.set_state(id, "Terminated", Some(reason)).await;
        tracing::info!(activity = id, reason, "activity terminated");
    }

    /// Terminates hosted activities whose agreement no longer stands, and forgets those that
    /// ended more than [`KEEP_ENDED`] ago (their record stays in the database). Called
    /// periodically.
    pub async fn sweep(&self) {
        self.inner
            .live
            .lock()
            .expect("activities")
            .retain(|_, live| live.ended.lock().expect("ended").is_none_or(|at| at.elapsed() < KEEP_ENDED));
        let hosted: Vec<(String, String)> = self
            .inner
            .live
            .lock()
            .expect("activities")
            .iter()
            .filter(|(_, live)| !live.is_terminated())
            .map(|(id, live)| (id.clone(), live.agreement_id.clone()))
            .collect();
        for (id, agreement_id) in hosted {
            if let Ok(Some(agreement)) = self.inner.agreements.agreement(&agreement_id).await
                && agreement.state != AgreementState::Approved
            {
                self.terminate_hosted(&id, &format!("agreement {agreement_id} is {}", agreement.state)).await;
            }
        }
    }
}
