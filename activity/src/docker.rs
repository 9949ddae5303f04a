//! The container exe-unit: Docker through bollard, against the provider's local engine.
//!
//! Every run gets a fresh container from the deployed image: no network unless the agreement
//! allows the host's, every capability dropped, no-new-privileges, pids, memory and CPU limits,
//! the input folder and datasets bind-mounted read-only and the outputs folder read-write. Its
//! logs are kept, and it is removed afterwards, whatever happened.

use crate::unit::{ExeError, ExeUnit, Package, RunOutcome, RunSpec, Usage};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{LogsOptions, RemoveContainerOptions};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A Docker exe-unit bound to one engine.
#[derive(Debug, Clone)]
pub struct DockerUnit {
    docker: Docker,
    image: Option<String>,
    /// Put on every container as [`OWNER_LABEL`], so a node can find what it left behind.
    owner: String,
}

/// The label naming the node (by its activities folder) that made a container.
pub const OWNER_LABEL: &str = "agora.owner";

impl DockerUnit {
    /// A unit whose containers carry `owner` in [`OWNER_LABEL`].
    pub fn new(docker: Docker, owner: impl Into<String>) -> Self {
        Self { docker, image: None, owner: owner.into() }
    }

    /// Removes every container labelled with `owner`: those a node that stopped abruptly left
    /// running. Returns how many.
    pub async fn remove_leftovers(docker: &Docker, owner: &str) -> Result<usize, ExeError> {
        let filters =
            std::collections::HashMap::from([("label".to_string(), vec![format!("{OWNER_LABEL}={owner}")])]);
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let found = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| ExeError::Engine(format!("listing containers: {e}")))?;
        for container in &found {
            if let Some(id) = &container.id {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                match docker.remove_container(id, Some(options)).await {
                    Ok(()) => {}
                    // Gone already, or being removed (by the guard of a run that was stopped).
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404 | 409, ..
                    }) => {}
                    Err(e) => return Err(ExeError::Engine(format!("removing container {id}: {e}"))),
                }
            }
        }
        Ok(found.len())
    }

    /// Connects to the engine at a Unix socket and agrees on the API version.
    pub async fn connect(socket: &str) -> Result<Docker, ExeError> {
        let docker = Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| ExeError::Engine(format!("Docker engine at {socket}: {e}")))?;
        docker
            .negotiate_version()
            .await
            .map_err(|e| ExeError::Engine(format!("Docker engine at {socket}: {e}")))
    }

    async fn has_image(&self, image: &str) -> Result<bool, ExeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(ExeError::Engine(format!("asking the engine for {image}: {e}"))),
        }
    }

    /// Loads an image tarball (`docker save` format) and returns the name it carries.
    async fn load(&self, tarball: &std::path::Path) -> Result<String, ExeError> {
        let bytes = tokio::fs::read(tarball)
            .await
            .map_err(|e| ExeError::Io(format!("image tarball {}: {e}", tarball.display())))?;
        let mut stream = self.docker.import_image(
            bollard::query_parameters::ImportImageOptions { quiet: true, ..Default::default() },
            bollard::body_full(bytes.into()),
            None,
        );
        let mut loaded = None;
        while let Some(info) = stream.next().await {
            let info = info.map_err(|e| {
                ExeError::BadPackage(format!(
                    "{} is not an image tarball the engine can load: {e}",
                    tarball.display()
                ))
            })?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(ExeError::BadPackage(format!("loading {}: {error}", tarball.display())));
            }
            let said = info.stream.unwrap_or_default();
            if let Some(name) = said.trim().strip_prefix("Loaded image: ") {
                loaded = Some(name.to_string());
            } else if let Some(id) = said.trim().strip_prefix("Loaded image ID: ") {
                loaded = Some(id.to_string());
            }
        }
        loaded.ok_or_else(|| ExeError::BadPackage(format!("{} held no image", tarball.display())))
    }

    async fn remove(&self, id: &str) {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        if let Err(e) = self.docker.remove_container(id, Some(options)).await {
            tracing::warn!(container = id, error = %e, "could not remove a container");
        }
    }

    async fn run_in(&self, id: &str, spec: &RunSpec) -> Result<(i64, Instant), ExeError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| ExeError::Failed(format!("the container did not start: {e}")))?;
        let started_at = Instant::now();
        let waited =
            tokio::time::timeout(spec.limits.time, self.docker.wait_container(id, None).next()).await;
        let code = match waited {
            Err(_) => {
                return Err(ExeError::Limit(format!(
                    "the container ran past its time limit of {:.1} s and was stopped",
                    spec.limits.time.as_secs_f64()
                )));
            }
            Ok(None) => {
                return Err(ExeError::Engine("the engine stopped answering about the container".into()));
            }
            Ok(Some(Ok(done))) => done.status_code,
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(e))) => return Err(ExeError::Engine(format!("waiting for the container: {e}"))),
        };
        // Killed by the kernel's OOM killer within the memory limit: say so, rather than 137.
        if let Ok(state) = self.docker.inspect_container(id, None).await
            && state.state.and_then(|s| s.oom_killed) == Some(true)
        {
            return Err(ExeError::Limit(format!(
                "the container went over its memory limit of {} MiB and was stopped",
                spec.limits.memory_bytes >> 20
            )));
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut logs =
            self.docker.logs(id, Some(LogsOptions { stdout: true, stderr: true, ..Default::default() }));
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(|e| ExeError::Engine(format!("reading the container's logs: {e}")))? {
                bollard::container::LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                bollard::container::LogOutput::StdOut { message }
                | bollard::container::LogOutput::Console { message } => stdout.extend_from_slice(&message),
                bollard::container::LogOutput::StdIn { .. } => {}
            }
        }
        write(&spec.results.join("stdout"), &stdout)?;
        write(&spec.results.join("stderr"), &stderr)?;
        Ok((code, started_at))
    }
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<(), ExeError> {
    std::fs::write(path, bytes).map_err(|e| ExeError::Io(format!("{}: {e}", path.display())))
}

fn bind(host: &std::path::Path, guest: &str, mode: &str) -> String {
    format!("{}:{guest}:{mode}", host.display())
}

impl ExeUnit for DockerUnit {
    fn runtime(&self) -> &'static str {
        "docker"
    }

    fn deploy(&mut self, package: Package) -> BoxFuture<'_, Result<(), ExeError>> {
        Box::pin(async move {
            let image = match package {
                Package::Image(name) => {
                    if !self.has_image(&name).await? {
                        return Err(ExeError::BadPackage(format!(
                            "image {name} is not on this provider's engine, and no registry is used: \
                             transfer the image as a tarball (docker save) and deploy that"
                        )));
                    }
                    name
                }
                Package::File(path) => self.load(&path).await?,
            };
            self.image = Some(image);
            Ok(())
        })
    }

    fn run(&self, spec: RunSpec) -> BoxFuture<'_, Result<RunOutcome, ExeError>> {
        Box::pin(async move {
            let image = self
                .image
                .clone()
                .ok_or_else(|| ExeError::NotDeployed("deploy an image before run".into()))?;
            let started = Instant::now();
            let outputs = spec.results.join("outputs");
            std::fs::create_dir_all(&outputs)
                .map_err(|e| ExeError::Io(format!("{}: {e}", outputs.display())))?;
            let mut binds = vec![bind(&spec.input, "/input", "ro"), bind(&outputs, "/output", "rw")];
            for (host, name) in &spec.datasets {
                binds.push(bind(host, &format!("/datasets/{name}"), "ro"));
            }
            let limits = &spec.limits;
            let network = if limits.network { "host" } else { "none" };
            let mut cmd = vec![spec.entry_point.clone()];
            cmd.extend(spec.args.iter().cloned());
            let body = ContainerCreateBody {
                image: Some(image),
                cmd: Some(cmd),
                env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                network_disabled: Some(!limits.network),
                working_dir: Some("/".into()),
                labels: Some(std::collections::HashMap::from([(
                    OWNER_LABEL.to_string(),
                    self.owner.clone(),
                )])),
                host_config: Some(HostConfig {
                    binds: Some(binds),
                    network_mode: Some(network.into()),
                    cap_drop: Some(vec!["ALL".into()]),
                    security_opt: Some(vec!["no-new-privileges".into()]),
                    pids_limit: Some(limits.pids),
                    memory: Some(limits.memory_bytes as i64),
                    memory_swap: Some(limits.memory_bytes as i64),
                    nano_cpus: Some((limits.cpus * 1e9) as i64),
                    readonly_rootfs: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let created = self
                .docker
                .create_container(None, body)
                .await
                .map_err(|e| ExeError::Failed(format!("the container could not be created: {e}")))?;
            // Removed whatever the run does; the future may also be dropped (cancel), so a guard
            // removes it then.
            let guard = RemoveOnDrop { docker: self.docker.clone(), id: Some(created.id.clone()) };
            let cpu_ns = Arc::new(AtomicU64::new(0));
            // Sampled beside the run, in the same future: when the run ends or is dropped, so is
            // the sampling.
            let sampling = sample_cpu(self.docker.clone(), created.id.clone(), cpu_ns.clone());
            let code = tokio::select! {
                code = self.run_in(&created.id, &spec) => code,
                never = sampling => match never {},
            };
            self.remove(&created.id).await;
            guard.disarm();
            let (code, started_at) = code?;
            let elapsed = started.elapsed().as_secs_f64();
            Ok(RunOutcome {
                started_at: Some(started_at),
                exit_code: i32::try_from(code).unwrap_or(i32::MAX),
                usage: Usage {
                    duration_sec: elapsed,
                    cpu_sec: cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
                    fuel: None,
                },
            })
        })
    }

    fn terminate(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.image = None;
        })
    }
}

/// How often a running container's CPU time is read.
const CPU_SAMPLE: std::time::Duration = std::time::Duration::from_millis(250);

/// Keeps the container's CPU time (ns, from its cgroup through the engine) in `into`, read every
/// [`CPU_SAMPLE`] until dropped. The engine forgets it when the container exits, so the figure is
/// the last reading: a run shorter than one sample reads as 0.
async fn sample_cpu(docker: Docker, id: String, into: Arc<AtomicU64>) -> std::convert::Infallible {
    let options = bollard::query_parameters::StatsOptions { stream: false, one_shot: true };
    loop {
        if let Some(Ok(stats)) = docker.stats(&id, Some(options.clone())).next().await
            && let Some(total) = stats.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage)
            && total > 0
        {
            into.fetch_max(total, Ordering::Relaxed);
        }
        tokio::time::sleep(CPU_SAMPLE).await;
    }
}

/// Removes a container when a run is cancelled (its future dropped) before it could.
struct RemoveOnDrop {
    docker: Docker,
    id: Option<String>,
}

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let docker = self.docker.clone();
            runtime.spawn(async move {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                let _already_gone = docker.remove_container(&id, Some(options)).await;
            });
        }
    }
}
