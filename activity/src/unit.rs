//! The exe-unit interface: what an activity asks of a runtime, whatever the runtime is.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Why a command failed. Each says what happened and, where it can, what to do.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ExeError {
    /// The package cannot be deployed (not a module, an image that is not there, ...).
    #[error("{0}")]
    BadPackage(String),
    /// `run` before `deploy`.
    #[error("{0}")]
    NotDeployed(String),
    /// A limit from the agreement stopped the run.
    #[error("{0}")]
    Limit(String),
    /// The runtime itself failed.
    #[error("{0}")]
    Engine(String),
    /// The work failed in a way that is not an exit code.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Io(String),
}

/// What the agreement allows one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time.
    pub time: Duration,
    pub memory_bytes: usize,
    /// WASM: a deterministic work budget; none means only the time limit applies.
    pub fuel: Option<u64>,
    /// Containers: processes at most.
    pub pids: i64,
    /// Containers: CPUs.
    pub cpus: f64,
    /// Containers: the host's network instead of none.
    pub network: bool,
}

/// One `run`.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub entry_point: String,
    pub args: Vec<String>,
    /// Sorted by name, as every exe-unit passes them.
    pub env: BTreeMap<String, String>,
    /// Seen read-only as `/input`.
    pub input: PathBuf,
    /// The run's results folder: `stdout`, `stderr`, `outputs/` (seen as `/output`).
    pub results: PathBuf,
    /// Host folders seen read-only as `/datasets/<name>`.
    pub datasets: Vec<(PathBuf, String)>,
    pub limits: Limits,
}

impl RunSpec {
    /// The seed of a run's randomness: a hash of what the run is, so every provider running the
    /// same command draws the same bytes.
    pub fn seed(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"agora run seed\0");
        for part in std::iter::once(&self.entry_point).chain(&self.args) {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        for (name, value) in &self.env {
            hasher.update(name.as_bytes());
            hasher.update([b'=']);
            hasher.update(value.as_bytes());
            hasher.update([0]);
        }
        hasher.finalize().into()
    }
}

/// Counters of one run; they add up over an activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub duration_sec: f64,
    pub cpu_sec: f64,
    /// WASM only.
    pub fuel: Option<u64>,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.duration_sec += other.duration_sec;
        self.cpu_sec += other.cpu_sec;
        self.fuel = match (self.fuel, other.fuel) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
    }
}

/// How a run ended, when it ran to an end.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub exit_code: i32,
    pub usage: Usage,
    /// When the work itself began (the module's `_start`, the container's start), for
    /// measuring what comes before it.
    pub started_at: Option<std::time::Instant>,
}

/// A runtime an activity deploys a package into and runs commands on.
pub trait ExeUnit: Send + Sync {
    /// The runtime's name in offers (`golem.runtime.name`).
    fn runtime(&self) -> &'static str;
    /// Makes the package ready to run: `package` is the deployed file (a module, an image
    /// tarball) or an image name the engine already has.
    fn deploy(&mut self, package: Package) -> BoxFuture<'_, Result<(), ExeError>>;
    /// Runs a command to its end, or to a limit.
    fn run(&self, spec: RunSpec) -> BoxFuture<'_, Result<RunOutcome, ExeError>>;
    /// Releases whatever the unit holds (containers, images loaded for it).
    fn terminate(&mut self) -> BoxFuture<'_, ()>;
}

/// What `deploy` deploys.
#[derive(Debug, Clone, PartialEq)]
pub enum Package {
    /// A file already on this node (transferred in).
    File(PathBuf),
    /// An image the local container engine has, by name.
    Image(String),
}

/// This machine's memory in bytes (`MemTotal` of `/proc/meminfo`), which its offers state and its
/// runs are limited by; `None` where it cannot be read.
pub fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.split_whitespace().next()?;
    kib.parse::<u64>().ok()?.checked_mul(1024)
}
