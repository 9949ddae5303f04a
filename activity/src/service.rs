//! Activities on both sides of an agreement: the state they share.
//!
//! The provider's node hosts them (`host.rs`, batches in `batch.rs`): it checks that the asker is
//! the agreement's requestor and that the agreement is Approved, runs batches on the exe-unit the
//! offer names, keeps each run's results folder and hash, and counts usage. The requestor's node
//! drives them (`driver.rs`): it forwards its REST calls to the provider over
//! `/agora/activity/3`, and fetches outputs back as blobs.

use crate::blobs::BlobStore;
use crate::store::ActivityStore;
use crate::unit::{ExeUnit, Limits, Usage};
use crate::wire::{ActivityRequest, ActivityResponse, CommandResult};
use crate::{DockerUnit, Error, Result, WasmRuntime};
use agora_agreement::Agreement;
use agora_identity::Address;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::task::TaskTracker;

/// Sends activity requests to another node; the node's network is one
/// ([`agora_net::NetHandle`]).
pub trait Messenger: Send + Sync + std::fmt::Debug {
    fn send(&self, peer: String, request: ActivityRequest) -> BoxFuture<'static, Result<ActivityResponse>>;
    /// Opens a stream to `peer`'s blob protocol (`/agora/blob/1`, [`crate::pipe`]).
    fn open_blob(&self, peer: String) -> BoxFuture<'static, Result<Box<dyn crate::BlobPipe>>>;
}

/// What activities learn of the node's agreements. The node implements it over its market;
/// activities never read the market's tables.
pub trait Agreements: Send + Sync + std::fmt::Debug {
    /// The agreement, or `None` when this node has none by that id.
    fn agreement(&self, id: &str) -> BoxFuture<'_, Result<Option<Agreement>>>;
    /// Whether this node has an Approved agreement with `party`, on either side.
    fn approved_with(&self, party: Address) -> BoxFuture<'_, Result<bool>>;
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
    /// PEM files of certificate authorities `https://` transfers trust besides the system's.
    pub ca_certs: Vec<PathBuf>,
    pub datasets: Vec<Dataset>,
    /// The Docker engine's socket; without one, container activities are refused.
    pub docker_socket: Option<String>,
    /// The most bytes a second one blob stream sends to another node; unlimited if `None`.
    pub blob_send_rate: Option<u64>,
    /// Appends a line to every run's stdout before its results are hashed, as a dishonest
    /// provider would: for demonstrations and tests of verification, never for real work.
    pub alter_outputs: bool,
    /// Uploads a changed copy of every output the run left, after its results were hashed, as a
    /// dishonest provider would: for tests of the requestor's output check, never for real work.
    pub alter_uploads: bool,
    /// Where outputs of activities this node drives are written for `gftp` destinations; none
    /// hands out no destinations.
    pub outputs_dir: Option<PathBuf>,
}

/// One hosted activity's usage counters ([`Activities::hosted_usage`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HostedUsage {
    pub activity_id: String,
    pub usage: Vec<f64>,
    pub ended: bool,
}

/// The largest stdout or stderr returned in a command result; the results folder has it whole.
pub(crate) const MAX_CAPTURE: usize = 1 << 20;
/// The longest a results request waits on the provider.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Batches a provider node runs at once, at most, across all its activities. A batch holds an
/// exe-unit (a WASM run on the runtime's threads, or a container) for its whole length; with two cores, eight
/// already share them four ways. One more is refused as busy, to be tried again.
pub const MAX_CONCURRENT_BATCHES: usize = 8;

/// A batch in progress or done.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) results: Mutex<Vec<CommandResult>>,
    pub(crate) changed: Notify,
}

impl Batch {
    pub(crate) fn finished(&self) -> bool {
        self.results.lock().expect("batch").last().is_some_and(|r| r.is_batch_finished)
    }
}

/// An activity this node hosts.
///
/// Its locks are held for a few statements, never across an `.await`. A lock is poisoned only
/// by a panic while it was held, after which what it guards is not to be trusted: every
/// `.lock().expect(…)` in this crate passes that panic on rather than carry on with it.
pub(crate) struct Live {
    pub(crate) agreement_id: String,
    pub(crate) requestor: Address,
    pub(crate) requestor_peer: String,
    pub(crate) dir: PathBuf,
    pub(crate) package: String,
    pub(crate) limits: Limits,
    /// The counters the agreement prices, in its order: what usage is reported as.
    pub(crate) usage_vector: Vec<String>,
    pub(crate) unit: tokio::sync::Mutex<Box<dyn ExeUnit>>,
    pub(crate) batches: Mutex<HashMap<String, Arc<Batch>>>,
    pub(crate) usage: Mutex<Usage>,
    /// (current, reason, error)
    pub(crate) state: Mutex<(String, Option<String>, Option<String>)>,
    pub(crate) last_outputs: Mutex<Option<PathBuf>>,
    /// The `h1:` hash of the last run's results folder.
    pub(crate) last_results_hash: Mutex<Option<String>>,
    /// Batches still running (by batch id), stopped when the activity ends (their containers go
    /// with them).
    pub(crate) running: Mutex<Vec<(String, tokio::task::AbortHandle)>>,
    /// When it ended, if it has.
    pub(crate) ended: Mutex<Option<std::time::Instant>>,
}

impl Live {
    pub(crate) fn is_terminated(&self) -> bool {
        self.state.lock().expect("state").0 == "Terminated"
    }
}

pub(crate) struct Inner {
    pub(crate) store: ActivityStore,
    pub(crate) config: HostConfig,
    pub(crate) blobs: BlobStore,
    pub(crate) messenger: Arc<dyn Messenger>,
    pub(crate) agreements: Arc<dyn Agreements>,
    pub(crate) wasm: Arc<WasmRuntime>,
    pub(crate) live: Mutex<HashMap<String, Arc<Live>>>,
    pub(crate) http: reqwest::Client,
    /// Every task activities spawn, so the node's shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// [`MAX_CONCURRENT_BATCHES`] permits; a running batch holds one.
    pub(crate) batch_permits: Arc<Semaphore>,
    /// [`crate::pipe::BLOB_STREAMS`] places; a blob stream being sent holds one.
    pub(crate) blob_places: Arc<Semaphore>,
    /// Cancelled when the node begins to stop: work on tasks of its own (an output being
    /// fetched) ends then.
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// Files on this machine that outputs of driven activities are written to.
    pub(crate) destinations: crate::destinations::Destinations,
}

/// A node's activities: those it hosts as a provider and those it drives as a requestor.
#[derive(Clone)]
pub struct Activities {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Activities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activities").field("work_dir", &self.inner.config.work_dir).finish_non_exhaustive()
    }
}

/// An activity needs an Approved agreement.
pub(crate) fn require_approved(agreement: &Agreement) -> Result<()> {
    if agreement.state != agora_agreement::AgreementState::Approved {
        return Err(Error::Conflict(format!(
            "agreement {} is {}; an activity needs an Approved agreement",
            agreement.id, agreement.state
        )));
    }
    Ok(())
}

impl Activities {
    /// Activities keeping their folders under `config.work_dir`, reaching other nodes through
    /// `messenger`, learning of agreements from `agreements`, and spawning their tasks on `tasks`.
    pub fn new(
        pool: sqlx::PgPool,
        config: HostConfig,
        blobs: BlobStore,
        messenger: Arc<dyn Messenger>,
        agreements: Arc<dyn Agreements>,
        tasks: TaskTracker,
    ) -> Result<Self> {
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|e| Error::Io(format!("{}: {e}", config.work_dir.display())))?;
        let wasm = Arc::new(WasmRuntime::new()?);
        let http = crate::transfer::http_client(&config.ca_certs)?;
        let destinations = crate::destinations::Destinations::new(config.outputs_dir.clone());
        let inner = Inner {
            store: ActivityStore::new(pool),
            config,
            blobs,
            messenger,
            agreements,
            wasm,
            live: Mutex::default(),
            http,
            tasks,
            batch_permits: Arc::new(Semaphore::new(MAX_CONCURRENT_BATCHES)),
            blob_places: Arc::new(Semaphore::new(crate::pipe::BLOB_STREAMS)),
            stopping: tokio_util::sync::CancellationToken::new(),
            destinations,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The agreement an activity this node hosts or drives runs under; `None` for an activity
    /// it has no record of.
    pub async fn agreement_of(&self, activity_id: &str) -> Result<Option<String>> {
        self.inner.store.agreement_of(activity_id).await
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    pub fn wasm(&self) -> &Arc<WasmRuntime> {
        &self.inner.wasm
    }

    /// The `h1:` hash of the last run of an activity this node hosts for `requestor`, or `None`
    /// before its first run ends. An activity of another requestor is not found.
    pub fn hosted_results_hash(&self, activity_id: &str, requestor: Address) -> Result<Option<String>> {
        let live = self.live_for(activity_id, requestor)?;
        let hash = live.last_results_hash.lock().expect("results hash").clone();
        Ok(hash)
    }

    /// The usage counters of each activity this node hosts under `agreement_id`, in the order
    /// of the agreement's `golem.com.usage.vector`, and whether it ended; activities that ended are kept for
    /// a while.
    pub fn hosted_usage(&self, agreement_id: &str) -> Vec<HostedUsage> {
        let live = self.inner.live.lock().expect("activities");
        live.iter()
            .filter(|(_, l)| l.agreement_id == agreement_id)
            .map(|(id, l)| HostedUsage {
                activity_id: id.clone(),
                usage: crate::wire::usage_of(&l.usage.lock().expect("usage"), &l.usage_vector).current_usage,
                ended: l.is_terminated(),
            })
            .collect()
    }

    /// Batches running now on this node.
    pub fn running_batches(&self) -> usize {
        MAX_CONCURRENT_BATCHES - self.inner.batch_permits.available_permits()
    }

    pub(crate) fn dataset(&self, wanted: &str) -> Option<&Dataset> {
        let digest = wanted.strip_prefix("sha256:").unwrap_or(wanted);
        self.inner.config.datasets.iter().find(|d| d.name == wanted || d.sha256 == digest)
    }

    /// What this node's containers are labelled with: its activities folder, unique per node.
    pub(crate) fn owner(&self) -> String {
        self.inner.config.work_dir.display().to_string()
    }

    /// `message` as the requestor may read it: the provider's own folders named as the activity
    /// sees them (`/input`, `/output`, `/datasets/<name>`), never as they are on the host.
    pub fn public_paths(&self, message: &str) -> String {
        public_paths(message, &self.inner.config.work_dir, &self.inner.config.datasets)
    }

    /// After a restart: hosted activities did not survive it (their work was in this process),
    /// so they are recorded as Terminated. Also removes their folders, and the containers they
    /// left on the engine when it answers.
    pub async fn recover(&self) -> Result<u64> {
        // Their folders go too: nothing will read them again.
        if let Ok(entries) = std::fs::read_dir(&self.inner.config.work_dir) {
            for entry in entries.flatten() {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not remove an old activity folder");
                }
            }
        }
        let _removed = self.remove_containers("an earlier run of this node").await;
        self.inner.store.end_hosted("the provider node restarted").await
    }

    /// Removes every container labelled as this node's, and says how many there were. The engine
    /// may be down now and up later: that is logged, not an error.
    async fn remove_containers(&self, left_by: &str) -> usize {
        let Some(socket) = &self.inner.config.docker_socket else { return 0 };
        let removed = match DockerUnit::connect(socket).await {
            Ok(docker) => DockerUnit::remove_leftovers(&docker, &self.owner()).await,
            Err(e) => Err(e),
        };
        match removed {
            Ok(0) => 0,
            Ok(removed) => {
                tracing::info!(removed, left_by, "containers removed");
                removed
            }
            Err(e) => {
                tracing::warn!(error = %e, left_by, "could not look for containers");
                0
            }
        }
    }

    /// The node is stopping: outputs being fetched stop (what arrived is kept), every hosted
    /// activity is terminated (its running batch stopped), and no container of this node's is
    /// left on the engine.
    pub async fn shutdown(&self) {
        self.inner.stopping.cancel();
        let hosted: Vec<String> = self.inner.live.lock().expect("activities").keys().cloned().collect();
        for id in hosted {
            self.terminate_hosted(&id, "the provider node is stopping").await;
        }
        // A stopped run's container may still be on its way out; the engine is asked again
        // until none is listed (for at most five seconds).
        for _ in 0..50 {
            if self.remove_containers("activities stopped by the shutdown").await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Rewrites host paths under `work_dir` (and datasets' paths) in `message` into the paths an
/// activity sees.
fn public_paths(message: &str, work_dir: &Path, datasets: &[Dataset]) -> String {
    let root = format!("{}/", work_dir.display());
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let segment_end =
        |s: &str| s.find(|c: char| c == '/' || c == ':' || c == '"' || c == '\'' || c.is_whitespace());
    while let Some(at) = rest.find(&root) {
        out.push_str(&rest[..at]);
        // <work_dir>/<activity>/…
        let after_root = &rest[at + root.len()..];
        let tail = &after_root[segment_end(after_root).unwrap_or(after_root.len())..];
        rest = if let Some(t) = tail.strip_prefix("/input") {
            out.push_str("/input");
            t
        } else if let Some(runs) = tail.strip_prefix("/runs/") {
            // <…>/runs/<batch>-<index>/outputs/… is the run's /output; the rest of the results
            // folder is the run's own.
            let t = &runs[segment_end(runs).unwrap_or(runs.len())..];
            match t.strip_prefix("/outputs") {
                Some(t) => {
                    out.push_str("/output");
                    t
                }
                None => {
                    out.push_str("/results");
                    t
                }
            }
        } else {
            out.push_str("/activity");
            tail
        };
    }
    out.push_str(rest);
    let mut out = out.replace(&work_dir.display().to_string(), "/activities");
    for dataset in datasets {
        out = out.replace(&dataset.path.display().to_string(), &format!("/datasets/{}", dataset.name));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_activitys_paths_not_the_hosts() {
        let work = Path::new("/tmp/x/activities");
        let datasets = vec![Dataset {
            name: "census".into(),
            path: "/srv/data/census.csv".into(),
            sha256: String::new(),
        }];
        let say = |m: &str| public_paths(m, work, &datasets);
        assert_eq!(
            say("/tmp/x/activities/ab12/runs/c3-2/outputs/leak: a results folder holds only files"),
            "/output/leak: a results folder holds only files"
        );
        assert_eq!(say("cannot read /tmp/x/activities/ab12/input/data.csv"), "cannot read /input/data.csv");
        assert_eq!(say("/tmp/x/activities/ab12/runs/c3-0/stdout: gone"), "/results/stdout: gone");
        assert_eq!(say("bind /tmp/x/activities/ab12/package failed"), "bind /activity/package failed");
        assert_eq!(say("in /tmp/x/activities"), "in /activities");
        assert_eq!(say("open /srv/data/census.csv: denied"), "open /datasets/census: denied");
        assert_eq!(say("nothing to hide"), "nothing to hide");
    }
}
