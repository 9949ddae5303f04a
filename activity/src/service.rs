//! Activities on both sides of an agreement.
//!
//! The provider's node hosts them: it checks that the asker is the agreement's requestor and
//! that the agreement is Approved, runs batches on the exe-unit the offer names, keeps each
//! run's results folder and hash, and counts usage. The requestor's node forwards its REST calls
//! to the provider over `/agora/activity/1`, and fetches outputs back as blobs.

use crate::blobs::{BlobSource, BlobStore};
use crate::exescript::{self, Command};
use crate::transfer::{self, Source, Transfer};
use crate::unit::{ExeError, ExeUnit, Limits, Package, RunSpec, Usage};
use crate::wire::{ActivityRequest, ActivityResponse, ActivityState, ActivityUsage, CommandResult};
use crate::{DockerUnit, WasmRuntime, WasmUnit, results_hash};
use agora_identity::Address;
use base64::Engine as _;
use chrono::Utc;
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Sends activity requests to another node.
pub trait Messenger: Send + Sync + std::fmt::Debug {
    fn send(
        &self,
        peer: String,
        request: ActivityRequest,
    ) -> BoxFuture<'static, Result<ActivityResponse, String>>;
}

/// A local dataset a provider offers to runs (compute-to-data): it is mounted read-only, and
/// never leaves the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub path: PathBuf,
    /// Lowercase hex; checked when the node starts.
    pub sha256: String,
}

/// What a provider allows its activities.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Where activities keep their folders.
    pub work_dir: PathBuf,
    /// Folders `file://` transfers may read from.
    pub transfer_dirs: Vec<PathBuf>,
    pub datasets: Vec<Dataset>,
    /// The Docker engine's socket; without one, container activities are refused.
    pub docker_socket: Option<String>,
}

/// The largest stdout or stderr returned in a command result; the results folder has it whole.
const MAX_CAPTURE: usize = 1 << 20;
/// The longest a results request waits on the provider.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

fn refuse(status: u16, message: impl Into<String>) -> ActivityResponse {
    ActivityResponse::Error { status, message: message.into() }
}

/// A batch in progress or done.
#[derive(Debug, Default)]
struct Batch {
    results: Mutex<Vec<CommandResult>>,
    changed: Notify,
}

impl Batch {
    fn finished(&self) -> bool {
        self.results.lock().expect("batch").last().is_some_and(|r| r.is_batch_finished)
    }
}

struct Live {
    agreement_id: String,
    requestor: Address,
    requestor_peer: String,
    dir: PathBuf,
    package: String,
    limits: Limits,
    unit: tokio::sync::Mutex<Box<dyn ExeUnit>>,
    batches: Mutex<HashMap<String, Arc<Batch>>>,
    usage: Mutex<Usage>,
    /// (current, reason, error)
    state: Mutex<(String, Option<String>, Option<String>)>,
    last_outputs: Mutex<Option<PathBuf>>,
    /// Batches still running, stopped when the activity ends (their containers go with them).
    running: Mutex<Vec<tokio::task::AbortHandle>>,
}

struct Inner {
    pool: sqlx::PgPool,
    config: HostConfig,
    blobs: BlobStore,
    messenger: Arc<dyn Messenger>,
    wasm: Arc<WasmRuntime>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    http: reqwest::Client,
}

/// A node's activities: those it hosts as a provider and those it drives as a requestor.
#[derive(Clone)]
pub struct Activities {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Activities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activities").field("work_dir", &self.inner.config.work_dir).finish_non_exhaustive()
    }
}

struct AgreementRow {
    role: String,
    peer_id: String,
    requestor_id: String,
    state: String,
    demand: BTreeMap<String, serde_json::Value>,
    offer: BTreeMap<String, serde_json::Value>,
}

fn flat(side: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    agora_grammar::flatten(&side["properties"]).map(|p| p.into_iter().collect()).unwrap_or_default()
}

fn same_address(text: &str, address: Address) -> bool {
    agora_identity::parse_address(text).is_ok_and(|a| a == address)
}

/// Limits from the offer's properties, over the defaults.
fn limits_of(offer: &BTreeMap<String, serde_json::Value>) -> Limits {
    let mut limits = crate::default_limits();
    if let Some(secs) = offer.get("agora.limits.time_sec").and_then(serde_json::Value::as_f64) {
        limits.time = Duration::from_secs_f64(secs.max(0.01));
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

fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

impl Activities {
    pub fn new(
        pool: sqlx::PgPool,
        config: HostConfig,
        blobs: BlobStore,
        messenger: Arc<dyn Messenger>,
    ) -> Result<Self, ExeError> {
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|e| ExeError::Io(format!("{}: {e}", config.work_dir.display())))?;
        let wasm = Arc::new(WasmRuntime::new()?);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ExeError::Engine(format!("HTTP client: {e}")))?;
        let inner = Inner { pool, config, blobs, messenger, wasm, live: Mutex::default(), http };
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    pub fn wasm(&self) -> &Arc<WasmRuntime> {
        &self.inner.wasm
    }

    async fn agreement(&self, id: &str) -> Result<Option<AgreementRow>, sqlx::Error> {
        let row: Option<(String, String, String, String, serde_json::Value, serde_json::Value)> = sqlx::query_as(
            "SELECT role, peer_id, requestor_id, state, demand, offer FROM agreements WHERE agreement_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.map(|(role, peer_id, requestor_id, state, demand, offer)| AgreementRow {
            role,
            peer_id,
            requestor_id,
            state,
            demand: flat(&demand),
            offer: flat(&offer),
        }))
    }

    async fn is_counterparty(&self, peer: Address) -> bool {
        let party = format!("{peer:#x}");
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM agreements
                            WHERE (lower(requestor_id) = $1 OR lower(provider_id) = $1) AND state = 'Approved')",
        )
        .bind(party)
        .fetch_one(&self.inner.pool)
        .await
        .unwrap_or(false)
    }

    async fn set_state(&self, id: &str, state: &str, reason: Option<&str>) {
        let done = sqlx::query(
            "UPDATE activities SET state = $2, reason = COALESCE($3, reason) WHERE activity_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(reason)
        .execute(&self.inner.pool)
        .await;
        if let Err(e) = done {
            tracing::warn!(activity = id, error = %e, "could not record an activity's state");
        }
    }

    // ---------------------------------------------------------------- provider side

    /// Answers a request from `peer` (whose node address is `sender`).
    pub async fn handle(
        &self,
        peer: &str,
        sender: Option<Address>,
        request: ActivityRequest,
    ) -> ActivityResponse {
        let Some(sender) = sender else { return refuse(403, "a peer without a node address") };
        match request {
            // Blobs are inputs and outputs of agreed work: served only to the other party of an
            // agreement with this node, never to any peer that learns a hash.
            ActivityRequest::GetBlob { .. } if !self.is_counterparty(sender).await => {
                refuse(403, "blobs are served only to the other party of an agreement with this node")
            }
            ActivityRequest::GetBlob { sha256, offset, len } => {
                match self.inner.blobs.read(&sha256, offset, len) {
                    Ok(Some((data, total))) => ActivityResponse::Blob {
                        data: base64::engine::general_purpose::STANDARD.encode(data),
                        total,
                    },
                    Ok(None) => refuse(404, format!("no blob {sha256} here")),
                    Err(e) => refuse(500, format!("reading blob {sha256}: {e}")),
                }
            }
            ActivityRequest::Create { agreement_id } => {
                match self.create_hosted(peer, sender, &agreement_id).await {
                    Ok(activity_id) => ActivityResponse::Created { activity_id },
                    Err(refusal) => refusal,
                }
            }
            ActivityRequest::Exec { activity_id, script } => {
                match self.live_for(&activity_id, sender).await {
                    Ok(live) => self.exec_hosted(&activity_id, live, &script),
                    Err(refusal) => refusal,
                }
            }
            ActivityRequest::Results { activity_id, batch_id, wait_ms, command_index } => {
                match self.live_for(&activity_id, sender).await {
                    Ok(live) => {
                        let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
                        self.results_hosted(&live, &batch_id, wait, command_index).await
                    }
                    Err(refusal) => refusal,
                }
            }
            ActivityRequest::State { activity_id } => match self.live_for(&activity_id, sender).await {
                Ok(live) => {
                    let (state, reason, error) = live.state.lock().expect("state").clone();
                    ActivityResponse::State {
                        state: ActivityState { state: (state, None), reason, error_message: error },
                    }
                }
                Err(refusal) => refusal,
            },
            ActivityRequest::Usage { activity_id } => match self.live_for(&activity_id, sender).await {
                Ok(live) => ActivityResponse::Usage { usage: usage_of(&live.usage.lock().expect("usage")) },
                Err(refusal) => refusal,
            },
            ActivityRequest::Destroy { activity_id } => match self.live_for(&activity_id, sender).await {
                Ok(_) => {
                    self.terminate_hosted(&activity_id, "destroyed by the requestor").await;
                    ActivityResponse::Done
                }
                Err(refusal) => refusal,
            },
        }
    }

    async fn create_hosted(
        &self,
        peer: &str,
        sender: Address,
        agreement_id: &str,
    ) -> Result<String, ActivityResponse> {
        let internal = |e: sqlx::Error| refuse(500, format!("database: {e}"));
        let agreement = self.agreement(agreement_id).await.map_err(internal)?;
        let Some(agreement) = agreement.filter(|a| a.role == "provider") else {
            return Err(refuse(404, format!("no agreement {agreement_id} on this provider")));
        };
        if !same_address(&agreement.requestor_id, sender) {
            return Err(refuse(
                403,
                format!("agreement {agreement_id} is not yours: only its requestor may create activities"),
            ));
        }
        if agreement.state != "Approved" {
            return Err(refuse(
                409,
                format!(
                    "agreement {agreement_id} is {}; an activity needs an Approved agreement",
                    agreement.state
                ),
            ));
        }
        let runtime = agreement.offer.get("golem.runtime.name").and_then(|v| v.as_str()).unwrap_or_default();
        let unit: Box<dyn ExeUnit> = match runtime {
            "wasmtime" => Box::new(WasmUnit::new(self.inner.wasm.clone())),
            "docker" => {
                let Some(socket) = &self.inner.config.docker_socket else {
                    return Err(refuse(
                        409,
                        "this provider has no container engine configured (docker_socket)",
                    ));
                };
                let docker = DockerUnit::connect(socket).await.map_err(|e| refuse(503, e.to_string()))?;
                Box::new(DockerUnit::new(docker, self.owner()))
            }
            other => {
                return Err(refuse(
                    409,
                    format!("the offer's runtime {other:?} is not one this node runs (wasmtime, docker)"),
                ));
            }
        };
        let Some(package) = agreement.demand.get("golem.srv.comp.task_package").and_then(|v| v.as_str())
        else {
            return Err(refuse(400, "the demand names no golem.srv.comp.task_package to deploy"));
        };
        let id = new_id();
        let dir = self.inner.config.work_dir.join(&id);
        std::fs::create_dir_all(dir.join("input"))
            .map_err(|e| refuse(500, format!("activity folder: {e}")))?;
        sqlx::query(
            "INSERT INTO activities (activity_id, agreement_id, role, peer_id, state) VALUES ($1, $2, 'provider', $3, 'Initialized')",
        )
        .bind(&id)
        .bind(agreement_id)
        .bind(peer)
        .execute(&self.inner.pool)
        .await
        .map_err(internal)?;
        let live = Live {
            agreement_id: agreement_id.to_string(),
            requestor: sender,
            requestor_peer: peer.to_string(),
            dir,
            package: package.to_string(),
            limits: limits_of(&agreement.offer),
            unit: tokio::sync::Mutex::new(unit),
            batches: Mutex::default(),
            usage: Mutex::default(),
            state: Mutex::new(("Initialized".into(), None, None)),
            last_outputs: Mutex::default(),
            running: Mutex::default(),
        };
        self.inner.live.lock().expect("activities").insert(id.clone(), Arc::new(live));
        tracing::info!(activity = %id, agreement = agreement_id, runtime, "activity created");
        Ok(id)
    }

    /// The hosted activity, if `sender` is its requestor and its agreement still stands.
    async fn live_for(&self, id: &str, sender: Address) -> Result<Arc<Live>, ActivityResponse> {
        let live = self.inner.live.lock().expect("activities").get(id).cloned();
        let Some(live) = live else { return Err(refuse(404, format!("no activity {id} on this provider"))) };
        if live.requestor != sender {
            return Err(refuse(403, format!("activity {id} is not yours")));
        }
        Ok(live)
    }

    fn exec_hosted(&self, id: &str, live: Arc<Live>, script: &str) -> ActivityResponse {
        if live.state.lock().expect("state").0 == "Terminated" {
            return refuse(410, format!("activity {id} is Terminated"));
        }
        let commands = match exescript::parse(script) {
            Ok(commands) => commands,
            Err(e) => return refuse(400, e.to_string()),
        };
        // Everything is checked before anything runs.
        let mut transfers = HashMap::new();
        for (index, command) in commands.iter().enumerate() {
            match command {
                Command::Transfer(t) => {
                    match transfer::check(&t.from, &t.to, &self.inner.config.transfer_dirs) {
                        Ok(checked) => {
                            transfers.insert(index, checked);
                        }
                        Err((status, message)) => {
                            return refuse(status, format!("command {index}: {message}"));
                        }
                    }
                }
                Command::Run(run) => {
                    for wanted in &run.datasets {
                        if self.dataset(wanted).is_none() {
                            return refuse(
                                400,
                                format!("command {index}: this provider has no dataset {wanted}"),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        let batch_id = new_id();
        let batch = Arc::new(Batch::default());
        live.batches.lock().expect("batches").insert(batch_id.clone(), batch.clone());
        let (this, id, batch_name, keep) = (self.clone(), id.to_string(), batch_id.clone(), live.clone());
        let task =
            tokio::spawn(
                async move { this.run_batch(&id, live, &batch_name, batch, commands, transfers).await },
            );
        let mut running = keep.running.lock().expect("running");
        running.retain(|t| !t.is_finished());
        running.push(task.abort_handle());
        ActivityResponse::Batch { batch_id }
    }

    fn dataset(&self, wanted: &str) -> Option<&Dataset> {
        let digest = wanted.strip_prefix("sha256:").unwrap_or(wanted);
        self.inner.config.datasets.iter().find(|d| d.name == wanted || d.sha256 == digest)
    }

    async fn run_batch(
        &self,
        id: &str,
        live: Arc<Live>,
        batch_id: &str,
        batch: Arc<Batch>,
        commands: Vec<Command>,
        mut transfers: HashMap<usize, Transfer>,
    ) {
        let last = commands.len() - 1;
        for (index, command) in commands.into_iter().enumerate() {
            let outcome = self.command(id, &live, batch_id, index, command, transfers.remove(&index)).await;
            let mut result = CommandResult {
                index,
                event_date: Utc::now(),
                result: "Ok".into(),
                stdout: None,
                stderr: None,
                message: None,
                is_batch_finished: index == last,
                exit_code: None,
                results_hash: None,
                blob: None,
            };
            let failed = match outcome {
                Ok(done) => {
                    let failed = done.exit_code.is_some_and(|c| c != 0);
                    if failed {
                        result.result = "Error".into();
                        result.message =
                            Some(format!("exited with code {}", done.exit_code.unwrap_or_default()));
                    }
                    result.stdout = done.stdout;
                    result.stderr = done.stderr;
                    result.exit_code = done.exit_code;
                    result.results_hash = done.results_hash;
                    result.blob = done.blob;
                    failed
                }
                Err(e) => {
                    result.result = "Error".into();
                    result.message = Some(e);
                    true
                }
            };
            if failed {
                result.is_batch_finished = true;
            }
            batch.results.lock().expect("batch").push(result);
            batch.changed.notify_waiters();
            if failed {
                break;
            }
        }
    }

    async fn command(
        &self,
        id: &str,
        live: &Live,
        batch_id: &str,
        index: usize,
        command: Command,
        transfer: Option<Transfer>,
    ) -> Result<Done, String> {
        if live.state.lock().expect("state").0 == "Terminated" {
            return Err(format!("activity {id} is Terminated"));
        }
        match command {
            Command::Deploy(_) => {
                let package = if let Some(image) = live.package.strip_prefix("docker:") {
                    Package::Image(image.to_string())
                } else {
                    let path = live.dir.join("package");
                    self.fetch(live, &source_of(&live.package)?, &path).await?;
                    Package::File(path)
                };
                live.unit.lock().await.deploy(package).await.map_err(|e| e.to_string())?;
                self.move_to(id, live, "Deployed").await;
                Ok(Done::default())
            }
            Command::Start(_) => {
                self.move_to(id, live, "Ready").await;
                Ok(Done::default())
            }
            Command::Run(run) => {
                let results = live.dir.join("runs").join(format!("{batch_id}-{index}"));
                std::fs::create_dir_all(&results).map_err(|e| e.to_string())?;
                let datasets = run
                    .datasets
                    .iter()
                    .filter_map(|wanted| self.dataset(wanted))
                    .map(|d| (d.path.clone(), d.name.clone()))
                    .collect();
                let spec = RunSpec {
                    entry_point: run.entry_point,
                    args: run.args,
                    env: run.env,
                    input: live.dir.join("input"),
                    results: results.clone(),
                    datasets,
                    limits: live.limits.clone(),
                };
                let outcome = live.unit.lock().await.run(spec).await.map_err(|e| e.to_string())?;
                live.usage.lock().expect("usage").add(&outcome.usage);
                std::fs::write(results.join("exitCode"), format!("{}\n", outcome.exit_code))
                    .map_err(|e| e.to_string())?;
                let hash = results_hash(&results).map_err(|e| e.to_string())?;
                *live.last_outputs.lock().expect("outputs") = Some(results.join("outputs"));
                Ok(Done {
                    stdout: Some(capture(&results.join("stdout"))),
                    stderr: Some(capture(&results.join("stderr"))),
                    exit_code: Some(outcome.exit_code),
                    results_hash: Some(hash),
                    blob: None,
                })
            }
            Command::Transfer(_) => match transfer {
                Some(Transfer::In { from, to }) => {
                    let target = live.dir.join("input").join(to);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                    }
                    self.fetch(live, &from, &target).await?;
                    Ok(Done::default())
                }
                Some(Transfer::OutToBlob { from }) => {
                    let outputs = live.last_outputs.lock().expect("outputs").clone();
                    let Some(outputs) = outputs else { return Err("no run has left outputs yet".into()) };
                    let path = outputs.join(&from);
                    let hex = self
                        .inner
                        .blobs
                        .put_file(&path)
                        .map_err(|e| format!("/output/{}: {e}", from.display()))?;
                    Ok(Done { blob: Some(format!("blob:sha256:{hex}")), ..Done::default() })
                }
                None => Err("transfer was not checked".into()),
            },
            Command::Terminate(_) => {
                self.terminate_hosted(id, "terminated by its batch").await;
                Ok(Done::default())
            }
        }
    }

    async fn move_to(&self, id: &str, live: &Live, state: &str) {
        live.state.lock().expect("state").0 = state.to_string();
        self.set_state(id, state, None).await;
    }

    async fn fetch(&self, live: &Live, from: &Source, target: &std::path::Path) -> Result<(), String> {
        match from {
            Source::File(path) => {
                std::fs::copy(path, target).map(|_| ()).map_err(|e| format!("{}: {e}", path.display()))
            }
            Source::Http(url) => {
                let response = self.inner.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{url}: HTTP {}", response.status()));
                }
                let bytes = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
                std::fs::write(target, &bytes).map_err(|e| e.to_string())
            }
            Source::Blob(hex) => {
                let source =
                    PeerBlobs { messenger: self.inner.messenger.clone(), peer: live.requestor_peer.clone() };
                let path = self.inner.blobs.fetch(hex, &source).await?;
                std::fs::copy(&path, target).map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }

    async fn results_hosted(
        &self,
        live: &Live,
        batch_id: &str,
        wait: Duration,
        command_index: Option<usize>,
    ) -> ActivityResponse {
        let batch = live.batches.lock().expect("batches").get(batch_id).cloned();
        let Some(batch) = batch else { return refuse(404, format!("no batch {batch_id} in this activity")) };
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
                return ActivityResponse::Results { results: batch.results.lock().expect("batch").clone() };
            }
        }
    }

    /// Ends a hosted activity: its unit released, its folder removed (outputs already taken as
    /// blobs stay in the blob store).
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
        // A batch that is still running stops here; a container it ran is removed as its run
        // is dropped. (The terminating batch itself is the caller, and is not aborted under it.)
        let current = tokio::task::try_id();
        for task in live.running.lock().expect("running").drain(..) {
            if Some(task.id()) != current {
                task.abort();
            }
        }
        live.unit.lock().await.terminate().await;
        if let Err(e) = std::fs::remove_dir_all(&live.dir) {
            tracing::debug!(activity = id, error = %e, "activity folder");
        }
        self.set_state(id, "Terminated", Some(reason)).await;
        tracing::info!(activity = id, reason, "activity terminated");
    }

    /// Terminates hosted activities whose agreement no longer stands. Called periodically.
    pub async fn sweep(&self) {
        let hosted: Vec<(String, String)> = self
            .inner
            .live
            .lock()
            .expect("activities")
            .iter()
            .filter(|(_, live)| live.state.lock().expect("state").0 != "Terminated")
            .map(|(id, live)| (id.clone(), live.agreement_id.clone()))
            .collect();
        for (id, agreement_id) in hosted {
            if let Ok(Some(agreement)) = self.agreement(&agreement_id).await
                && agreement.state != "Approved"
            {
                self.terminate_hosted(&id, &format!("agreement {agreement_id} is {}", agreement.state)).await;
            }
        }
    }

    /// After a restart: hosted activities did not survive it (their work was in this process),
    /// so they are recorded as Terminated.
    /// Also removes their folders, and the containers they left on the engine when it answers.
    pub async fn recover(&self) -> Result<u64, ExeError> {
        // Their folders go too: nothing will read them again.
        if let Ok(entries) = std::fs::read_dir(&self.inner.config.work_dir) {
            for entry in entries.flatten() {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not remove an old activity folder");
                }
            }
        }
        // The engine may be down now and up later: that is not a reason to stay down.
        if let Some(socket) = &self.inner.config.docker_socket {
            let removed = match DockerUnit::connect(socket).await {
                Ok(docker) => DockerUnit::remove_leftovers(&docker, &self.owner()).await,
                Err(e) => Err(e),
            };
            match removed {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "containers left by an earlier run of this node are removed")
                }
                Err(e) => tracing::warn!(error = %e, "could not look for containers left by an earlier run"),
            }
        }
        sqlx::query(
            "UPDATE activities SET state = 'Terminated', reason = 'the provider node restarted'
             WHERE role = 'provider' AND state <> 'Terminated'",
        )
        .execute(&self.inner.pool)
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| ExeError::Engine(format!("database: {e}")))
    }

    /// What this node's containers are labelled with: its activities folder, unique per node.
    fn owner(&self) -> String {
        self.inner.config.work_dir.display().to_string()
    }

    // ---------------------------------------------------------------- requestor side

    async fn ask(&self, peer: &str, request: ActivityRequest) -> Result<ActivityResponse, (u16, String)> {
        match self.inner.messenger.send(peer.to_string(), request).await {
            Ok(ActivityResponse::Error { status, message }) => Err((status, message)),
            Ok(answer) => Ok(answer),
            Err(e) => Err((504, format!("the provider's node did not answer: {e}"))),
        }
    }

    /// The provider peer of an activity this node drives.
    async fn driven(&self, id: &str) -> Result<String, (u16, String)> {
        let peer: Option<(String, String)> =
            sqlx::query_as("SELECT peer_id, role FROM activities WHERE activity_id = $1")
                .bind(id)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(|e| (500, format!("database: {e}")))?;
        match peer {
            Some((peer, role)) if role == "requestor" => Ok(peer),
            Some(_) => Err((403, format!("activity {id} is hosted here; its requestor drives it"))),
            None => Err((404, format!("no activity {id}"))),
        }
    }

    /// `POST /activity`: creates an activity on the agreement's provider.
    pub async fn create(&self, agreement_id: &str) -> Result<String, (u16, String)> {
        let agreement = self.agreement(agreement_id).await.map_err(|e| (500, format!("database: {e}")))?;
        let Some(agreement) = agreement else { return Err((404, format!("no agreement {agreement_id}"))) };
        if agreement.role != "requestor" {
            return Err((
                403,
                format!(
                    "agreement {agreement_id}: this node is its provider; only its requestor creates activities"
                ),
            ));
        }
        if agreement.state != "Approved" {
            return Err((
                409,
                format!(
                    "agreement {agreement_id} is {}; an activity needs an Approved agreement",
                    agreement.state
                ),
            ));
        }
        let answer = self
            .ask(&agreement.peer_id, ActivityRequest::Create { agreement_id: agreement_id.into() })
            .await?;
        let ActivityResponse::Created { activity_id } = answer else {
            return Err((502, format!("unexpected answer from the provider: {answer:?}")));
        };
        sqlx::query(
            "INSERT INTO activities (activity_id, agreement_id, role, peer_id, state) VALUES ($1, $2, 'requestor', $3, 'Initialized')",
        )
        .bind(&activity_id)
        .bind(agreement_id)
        .bind(&agreement.peer_id)
        .execute(&self.inner.pool)
        .await
        .map_err(|e| (500, format!("database: {e}")))?;
        Ok(activity_id)
    }

    /// `POST /activity/{id}/exec`: checks the batch here, then hands it to the provider.
    pub async fn exec(&self, id: &str, script: &str) -> Result<String, (u16, String)> {
        let peer = self.driven(id).await?;
        let commands = exescript::parse(script).map_err(|e| (400, e.to_string()))?;
        for (index, command) in commands.iter().enumerate() {
            if let Command::Transfer(t) = command
                && let Some(hex) = crate::blobs::parse_blob_url(&t.from)
                && self.inner.blobs.path(&hex).is_none()
            {
                return Err((
                    400,
                    format!("command {index}: blob {hex} is not on this node; upload it first (POST /blobs)"),
                ));
            }
        }
        match self.ask(&peer, ActivityRequest::Exec { activity_id: id.into(), script: script.into() }).await?
        {
            ActivityResponse::Batch { batch_id } => Ok(batch_id),
            other => Err((502, format!("unexpected answer from the provider: {other:?}"))),
        }
    }

    /// `GET /activity/{id}/exec/{batch}`: results so far, waiting up to `wait`; outputs sent to
    /// `blob:` are fetched into this node's blob store before they are reported.
    pub async fn results(
        &self,
        id: &str,
        batch_id: &str,
        wait: Duration,
        command_index: Option<usize>,
    ) -> Result<Vec<CommandResult>, (u16, String)> {
        let peer = self.driven(id).await?;
        let request = ActivityRequest::Results {
            activity_id: id.into(),
            batch_id: batch_id.into(),
            wait_ms: wait.min(MAX_WAIT).as_millis() as u64,
            command_index,
        };
        let ActivityResponse::Results { results } = self.ask(&peer, request).await? else {
            return Err((502, "unexpected answer from the provider".into()));
        };
        let source = PeerBlobs { messenger: self.inner.messenger.clone(), peer };
        for blob in results.iter().filter_map(|r| r.blob.as_deref()) {
            if let Some(hex) = crate::blobs::parse_blob_url(blob) {
                self.inner.blobs.fetch(&hex, &source).await.map_err(|e| (502, e))?;
            }
        }
        Ok(results)
    }

    pub async fn state(&self, id: &str) -> Result<ActivityState, (u16, String)> {
        let peer = self.driven(id).await?;
        match self.ask(&peer, ActivityRequest::State { activity_id: id.into() }).await {
            Ok(ActivityResponse::State { state }) => {
                self.set_state(id, &state.state.0, state.reason.as_deref()).await;
                Ok(state)
            }
            // The provider's node does not answer: the activity is Unresponsive until it does.
            Err((504, message)) => {
                self.set_state(id, "Unresponsive", None).await;
                Ok(ActivityState {
                    state: ("Unresponsive".into(), None),
                    reason: None,
                    error_message: Some(message),
                })
            }
            Err(refused) => Err(refused),
            Ok(other) => Err((502, format!("unexpected answer from the provider: {other:?}"))),
        }
    }

    pub async fn usage(&self, id: &str) -> Result<ActivityUsage, (u16, String)> {
        let peer = self.driven(id).await?;
        match self.ask(&peer, ActivityRequest::Usage { activity_id: id.into() }).await? {
            ActivityResponse::Usage { usage } => Ok(usage),
            other => Err((502, format!("unexpected answer from the provider: {other:?}"))),
        }
    }

    pub async fn destroy(&self, id: &str) -> Result<(), (u16, String)> {
        let peer = self.driven(id).await?;
        self.ask(&peer, ActivityRequest::Destroy { activity_id: id.into() }).await?;
        self.set_state(id, "Terminated", Some("destroyed")).await;
        Ok(())
    }
}

fn source_of(package: &str) -> Result<Source, String> {
    match transfer::check(package, "container:/input/package", &[]) {
        Ok(Transfer::In { from, .. }) => Ok(from),
        Ok(_) => Err(format!("package {package}: not a source")),
        Err((_, message)) => Err(format!("package: {message}")),
    }
}

#[derive(Debug, Default)]
struct Done {
    stdout: Option<String>,
    stderr: Option<String>,
    exit_code: Option<i32>,
    results_hash: Option<String>,
    blob: Option<String>,
}

fn capture(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_CAPTURE)]).into_owned()
}

fn usage_of(usage: &Usage) -> ActivityUsage {
    ActivityUsage {
        current_usage: vec![usage.duration_sec, usage.cpu_sec, usage.fuel.unwrap_or(0) as f64],
        timestamp: Utc::now().timestamp(),
    }
}

/// Blob pieces from another node.
struct PeerBlobs {
    messenger: Arc<dyn Messenger>,
    peer: String,
}

impl BlobSource for PeerBlobs {
    fn piece(&self, sha256: String, offset: u64, len: u64) -> BoxFuture<'_, Result<(Vec<u8>, u64), String>> {
        Box::pin(async move {
            match self
                .messenger
                .send(self.peer.clone(), ActivityRequest::GetBlob { sha256, offset, len })
                .await?
            {
                ActivityResponse::Blob { data, total } => {
                    let data =
                        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| e.to_string())?;
                    Ok((data, total))
                }
                ActivityResponse::Error { message, .. } => Err(message),
                other => Err(format!("unexpected answer: {other:?}")),
            }
        })
    }
}
