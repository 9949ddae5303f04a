//! Activities: work a requestor runs on a provider's exe-units, and the results it leaves.
//!
//! - [`exescript`]: Golem's JSON batches (`deploy`, `start`, `run`, `transfer`, `terminate`),
//!   checked whole before anything runs.
//! - [`ExeUnit`]: what a runtime does for an activity; [`WasmUnit`] (wasmtime, WASI preview 1,
//!   deterministic) and [`DockerUnit`] (bollard, locked down) are the two.
//! - Results: every run leaves a results folder (`stdout`, `stderr`, `exitCode`, `outputs/…`).
//!   Its hash, [`results_hash`], is the verification proposal: honest providers running the same
//!   deterministic job produce the same folder, so the same hash. The hash is the `h1:`
//!   directory hash of Go's `golang.org/x/mod/sumdb/dirhash` (`Hash1`), so anyone can recompute
//!   it with standard tools: `agora results hash DIR` prints it.
//!
//! - [`BlobStore`]: content-addressed files (inputs, packages, outputs), taken in as they stream
//!   and fetched from other nodes on `/agora/blob/1` ([`pipe`]), resuming where a stream broke.
//! - [`Activities`]: hosting (provider side) and driving (requestor side), on the node's network
//!   ([`Activities::serve`]); what they know of agreements comes through the [`Agreements`]
//!   trait, which the node implements over its market. Errors are [`Error`], by what the caller
//!   can do; between nodes they travel as a [`wire::Refusal`].
//!
//! This crate is not the market (agreements) or payment (debit notes); it runs work and
//! describes its results.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("stdout"), "hello\n").unwrap();
//! let hash = agora_activity::results_hash(dir.path()).unwrap();
//! assert!(hash.starts_with("h1:"));
//! ```

mod batch;
pub mod blobs;
mod destinations;
mod docker;
mod driver;
mod error;
pub mod exescript;
mod host;
mod network;
pub mod pipe;
mod referee;
mod results;
mod run_output;
mod service;
mod store;
pub mod transfer;
mod unit;
mod wasm;
mod wasm_sources;
mod wasm_unit;
pub mod wire;

pub use blobs::BlobStore;
pub use docker::{DockerUnit, OWNER_LABEL};
pub use error::{Error, Result};
pub use pipe::BlobPipe;
pub use referee::{LocalOutcome, LocalRun};
pub use results::{Error as ResultsError, folder_sha256, results_hash};
pub use service::{
    Activities, Agreements, Dataset, HostConfig, HostedUsage, MAX_CONCURRENT_BATCHES, MAX_WAIT, Messenger,
};
pub use store::ActivityStore;
pub use unit::{ExeError, ExeUnit, Limits, Package, RunOutcome, RunSpec, Usage, memory_total};
pub use wasm::{Metering, Running, WasmRuntime, default_limits};
pub use wasm_unit::WasmUnit;

/// A fresh random id: an activity's, a batch's or a destination's.
pub(crate) fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}
