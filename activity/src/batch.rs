//! Running a hosted batch: its commands one after another, each leaving a result; the first that
//! fails ends the batch.

use crate::exescript::Command;
use crate::pipe::PeerBlobs;
use crate::service::{Batch, Live, MAX_CAPTURE};
use crate::transfer::{self, Source, Transfer};
use crate::unit::{ExeError, Package, RunSpec};
use crate::wire::CommandResult;
use crate::{Activities, Error, Result, results_hash};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;

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

pub(crate) fn source_of(package: &str) -> Result<Source> {
    match transfer::check(package, "container:/input/package", &[]) {
        Ok(Transfer::In { from, .. }) => Ok(from),
        Ok(_) => Err(Error::BadInput(format!("package {package}: not a source"))),
        Err(e) => Err(Error::BadInput(format!("package: {e}"))),
    }
}

fn io(e: impl std::fmt::Display) -> Error {
    Error::Io(e.to_string())
}

impl Activities {
    pub(crate) async fn run_batch(
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
                    // The requestor reads this: the activity's paths, not the provider's.
                    result.message = Some(self.public_paths(&e.for_requestor()));
                    true
                }
            };
            if failed {
                result.is_batch_finished = true;
            }
            {
                let mut results = batch.results.lock().expect("batch");
                // Finished already: the activity ended under this batch, and said so.
                if results.last().is_some_and(|r| r.is_batch_finished) {
                    break;
                }
                results.push(result);
            }
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
    ) -> Result<Done> {
        if live.is_terminated() {
            return Err(Error::Gone(format!("activity {id} is Terminated")));
        }
        match command {
            Command::Deploy(_) => {
                let package = if let Some(image) = live.package.strip_prefix("docker:") {
                    Package::Image(image.to_string())
                } else {
                    let path = live.dir.join("package");
                    self.fetch(Some(&live.requestor_peer), &source_of(&live.package)?, &path).await?;
                    Package::File(path)
                };
                live.unit.lock().await.deploy(package).await?;
                self.move_to(id, live, "Deployed").await;
                Ok(Done::default())
            }
            Command::Start(_) => {
                self.move_to(id, live, "Ready").await;
                Ok(Done::default())
            }
            Command::Run(run) => {
                let results = live.dir.join("runs").join(format!("{batch_id}-{index}"));
                std::fs::create_dir_all(&results).map_err(io)?;
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
                let outcome = live.unit.lock().await.run(spec).await?;
                live.usage.lock().expect("usage").add(&outcome.usage);
                std::fs::write(results.join("exitCode"), format!("{}\n", outcome.exit_code)).map_err(io)?;
                if self.inner.config.alter_outputs {
                    use std::io::Write;
                    let mut stdout = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(results.join("stdout"))
                        .map_err(io)?;
                    stdout.write_all(b"altered by the provider\n").map_err(io)?;
                }
                // A folder that cannot be hashed (a link in /output, say) is the run's doing.
                let hash = results_hash(&results).map_err(|e| ExeError::Failed(e.to_string()))?;
                *live.last_results_hash.lock().expect("results hash") = Some(hash.clone());
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
                    let target = live.dir.join("input").join(&to);
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent).map_err(io)?;
                    }
                    // A folder where the file should go is the batch's mistake.
                    if target.is_dir() {
                        return Err(Error::BadInput(format!("/input/{}: a folder is there", to.display())));
                    }
                    self.fetch(Some(&live.requestor_peer), &from, &target).await?;
                    Ok(Done::default())
                }
                Some(Transfer::OutToBlob { from }) => {
                    let outputs = live.last_outputs.lock().expect("outputs").clone();
                    let Some(outputs) = outputs else {
                        return Err(Error::Conflict("no run has left outputs yet".into()));
                    };
                    let path = outputs.join(&from);
                    // A missing output is the batch's mistake; failing to store it, this node's.
                    if !path.is_file() {
                        return Err(Error::BadInput(format!(
                            "/output/{}: the run left no such file",
                            from.display()
                        )));
                    }
                    let hex = if self.inner.config.alter_uploads {
                        let altered = live.dir.join("altered-upload");
                        std::fs::copy(&path, &altered).map_err(io)?;
                        let mut file = std::fs::OpenOptions::new().append(true).open(&altered).map_err(io)?;
                        std::io::Write::write_all(&mut file, b"altered by the provider\n").map_err(io)?;
                        let hex = self.inner.blobs.put_file(&altered).map_err(io)?;
                        let _removed = std::fs::remove_file(&altered);
                        hex
                    } else {
                        self.inner.blobs.put_file(&path).map_err(io)?
                    };
                    Ok(Done { blob: Some(format!("blob:sha256:{hex}")), ..Done::default() })
                }
                None => Err(Error::Conflict("transfer was not checked".into())),
            },
            Command::Terminate(_) => {
                self.terminate_hosted(id, "terminated by its batch").await;
                Ok(Done::default())
            }
        }
    }

    async fn move_to(&self, id: &str, live: &Live, state: &str) {
        live.state.lock().expect("state").0 = state.to_string();
        self.inner.store.set_state(id, state, None).await;
    }

    /// Brings a transfer's source to `target`, an input file: a blob from `peer`, or from this
    /// node's own blobs when there is no peer (a run of this node's own). It is made beside the
    /// target under a temporary name and put in place only when whole, so a transfer that fails
    /// leaves the input as it was; putting it in place replaces the old file rather than writing
    /// into it (which may be a blob's, linked).
    pub(crate) async fn fetch(
        &self,
        peer: Option<&str>,
        from: &Source,
        target: &std::path::Path,
    ) -> Result<()> {
        let folder = target.parent().unwrap_or(target);
        // Readable by all: a container's own user reads its inputs.
        let tmp = tempfile::Builder::new()
            .prefix(".transfer")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(folder)
            .map_err(io)?;
        match from {
            Source::File(path) => {
                std::fs::copy(path, tmp.path()).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
            }
            Source::Http { url, digest } => {
                use tokio::io::AsyncWriteExt;
                let remote =
                    |e: reqwest::Error| Error::Remote(format!("{url}: {}", crate::transfer::explain(&e)));
                let mut response = self.inner.http.get(url).send().await.map_err(remote)?;
                if !response.status().is_success() {
                    return Err(Error::Remote(format!("{url}: HTTP {}", response.status())));
                }
                // Streamed to the file as it comes, and hashed as it comes when a digest is named:
                // a download of any size.
                let mut hasher = digest.as_ref().map(|d| d.hasher());
                let mut file = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
                while let Some(piece) = response.chunk().await.map_err(remote)? {
                    if let Some(hasher) = hasher.as_mut() {
                        hasher.update(&piece);
                    }
                    file.write_all(&piece).await.map_err(io)?;
                }
                file.flush().await.map_err(io)?;
                if let (Some(hasher), Some(digest)) = (hasher, digest) {
                    let got = hex::encode(hasher.finalize());
                    // The download is not what was named: the source's fault, and nothing is kept.
                    if got != digest.hex {
                        return Err(Error::Remote(format!(
                            "{url}: the download hashes to {got}, not the {:?} digest {} it was named by",
                            digest.algorithm, digest.hex
                        )));
                    }
                }
            }
            Source::Blob(hex) => {
                let path = match peer {
                    Some(peer) => {
                        let source =
                            PeerBlobs { messenger: self.inner.messenger.clone(), peer: peer.to_string() };
                        self.inner.blobs.fetch(hex, &source).await?
                    }
                    None => self
                        .inner
                        .blobs
                        .path(hex)
                        .ok_or_else(|| Error::NotFound(format!("blob {hex} is not on this node")))?,
                };
                // Inputs are read-only to runs and blobs are never changed in place, so the input
                // can be the blob itself; a copy only where a link cannot be made.
                let linked = tmp.path().with_extension("link");
                let made = std::fs::hard_link(&path, &linked)
                    .or_else(|_| std::fs::copy(&path, &linked).map(|_| ()))
                    .and_then(|()| std::fs::rename(&linked, target));
                // Renaming a link onto another link of the same file does nothing and leaves
                // both; and a failed step leaves the link. Either way it goes.
                let _already_gone = std::fs::remove_file(&linked);
                return made.map_err(io);
            }
        }
        tmp.persist(target).map(|_| ()).map_err(|e| io(e.error))
    }
}
