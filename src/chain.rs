//! The embedded dev chain: an anvil the node starts and stops, like its embedded PostgreSQL, so a
//! node on the dev network needs nothing else running. Its chain is kept in the data dir
//! (`chain/state.json`), so a restart finds its accounts and payments again. When something
//! already answers at the dev RPC with the dev chain id (another node's embedded chain on this
//! machine), the node uses that one and starts nothing.

use crate::Error;
use agora_payment::chain::Rpc;
use agora_payment::chain::dev::{anvil_bin, anvil_command};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// How long anvil may take to answer after it starts.
const START_WITHIN: Duration = Duration::from_secs(30);
/// How long a stopping anvil may take to write its state.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The anvil this node started, if it started one.
#[derive(Debug)]
pub struct EmbeddedChain {
    child: Option<Child>,
}

impl EmbeddedChain {
    /// Starts anvil at `rpc_url` (a loopback `http://127.0.0.1:PORT`) with its state in `dir`,
    /// unless the dev chain already answers there.
    pub async fn start(dir: &Path, rpc_url: &str) -> Result<Self, Error> {
        let rpc = Rpc::new(rpc_url);
        if let Ok(id) = rpc.chain_id().await {
            if id != agora_payment::DEV_CHAIN_ID {
                return Err(Error::Config(format!(
                    "embedded chain: {rpc_url} answers chain id {id}, not the dev chain's {}; choose another --chain-rpc port",
                    agora_payment::DEV_CHAIN_ID
                )));
            }
            tracing::info!(rpc = rpc_url, "using the dev chain already running");
            return Ok(Self { child: None });
        }
        let port = rpc_url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
            .ok_or_else(|| {
                Error::Config(format!("embedded chain: --chain-rpc {rpc_url} must be http://127.0.0.1:PORT"))
            })?;
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("anvil.log"))?;
        let mut cmd = anvil_command(port, Some(&dir.join("state.json")));
        cmd.stderr(Stdio::from(log));
        let bin = anvil_bin();
        let mut child = cmd.spawn().map_err(|e| {
            Error::Config(format!(
                "embedded chain: cannot start anvil ({}): {e}; install it with `scripts/setup` (npm ci) or set AGORA_ANVIL",
                bin.display()
            ))
        })?;
        let deadline = tokio::time::Instant::now() + START_WITHIN;
        while rpc.chain_id().await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Config(format!(
                    "embedded chain: anvil exited ({status}); see {}",
                    dir.join("anvil.log").display()
                )));
            }
            if tokio::time::Instant::now() > deadline {
                let _killed = child.kill();
                return Err(Error::Config(format!(
                    "embedded chain: anvil did not answer within {START_WITHIN:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::info!(rpc = rpc_url, state = %dir.display(), "embedded dev chain started");
        Ok(Self { child: Some(child) })
    }

    /// Stops the anvil this node started; it writes its state as it exits.
    pub fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _already_gone = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = std::time::Instant::now() + STOP_WITHIN;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                tracing::info!("embedded dev chain stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!("the embedded dev chain did not stop in time; killed");
        let _killed = child.kill();
        let _reaped = child.wait();
    }
}
