//! A WASM run on this node of what its job asks providers to run: the referee's run. Its results
//! folder is made as a hosted run's is (the same inputs, seed, clocks and files), so its `h1:`
//! hash is what every honest provider commits to.

use crate::batch::source_of;
use crate::transfer::{self, Transfer};
use crate::unit::{ExeError, Limits, RunSpec};
use crate::{Activities, Error, Result, results_hash};
use std::collections::BTreeMap;
use std::time::Duration;

/// One run, as a job's batch names it: the module, the files put under `/input`, and the command.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// `blob:sha256:…` on this node, or an `http(s)://` URL.
    pub module: String,
    /// `(source, path under /input)`, sources as the module's.
    pub inputs: Vec<(String, String)>,
    pub entry_point: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// The longest the run may take.
    pub time: Duration,
}

/// How a local run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOutcome {
    pub exit_code: i32,
    /// The results folder's `h1:` hash.
    pub digest: String,
}

impl Activities {
    /// Runs `run` on this node's WASM runtime, with as much memory as a run here can have, no
    /// fuel limit and `run.time`; its folder is removed afterwards.
    pub async fn run_locally(&self, run: LocalRun) -> Result<LocalOutcome> {
        let io = |e: std::io::Error| Error::Io(format!("the local run's folder: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("local-run-")
            .tempdir_in(&self.inner.config.work_dir)
            .map_err(io)?;
        let input = dir.path().join("input");
        std::fs::create_dir_all(&input).map_err(io)?;
        let package = dir.path().join("package");
        self.fetch(None, &source_of(&run.module)?, &package).await?;
        for (src, dst) in &run.inputs {
            let Transfer::In { from, to } = transfer::check(src, &format!("container:/input/{dst}"), &[])?
            else {
                return Err(Error::BadInput(format!("input {src}: not a source")));
            };
            let target = input.join(to);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            self.fetch(None, &from, &target).await?;
        }
        let bytes = tokio::fs::read(&package).await.map_err(io)?;
        let wasm = self.inner.wasm.clone();
        let (module, _compiled) = tokio::task::spawn_blocking(move || wasm.prepare(&bytes))
            .await
            .map_err(|e| ExeError::Engine(format!("compiling: {e}")))??;
        let results = dir.path().join("results");
        std::fs::create_dir_all(&results).map_err(io)?;
        let spec = RunSpec {
            entry_point: run.entry_point,
            args: run.args,
            env: run.env,
            input,
            results: results.clone(),
            datasets: Vec::new(),
            // The runtime gives a run at most its memory slot: all a run here can have.
            limits: Limits {
                time: run.time,
                memory_bytes: usize::MAX,
                fuel: None,
                ..crate::default_limits()
            },
        };
        let outcome = self.inner.wasm.spawn(module, spec).await?;
        std::fs::write(results.join("exitCode"), format!("{}\n", outcome.exit_code)).map_err(io)?;
        let digest = results_hash(&results).map_err(|e| ExeError::Failed(e.to_string()))?;
        Ok(LocalOutcome { exit_code: outcome.exit_code, digest })
    }
}
