use crate::reaper::Supervised;
use crate::{free_port, wait_for};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// An anvil dev chain on 127.0.0.1, stopped on drop. With a state file, it can be stopped and
/// started again on the same port with its chain kept.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Supervised>,
    port: u16,
    state: Option<PathBuf>,
}

impl Anvil {
    /// The chain id anvil uses unless told otherwise.
    pub const CHAIN_ID: u64 = 31337;

    pub async fn start() -> Self {
        Self::launch(free_port(), None).await
    }

    /// An anvil that keeps its chain in `state` when it stops (`--state`).
    pub async fn start_with_state(state: &Path) -> Self {
        Self::launch(free_port(), Some(state.to_path_buf())).await
    }

    async fn launch(port: u16, state: Option<PathBuf>) -> Self {
        let mut cmd = agora_payment::chain::dev::anvil_command(port, state.as_deref());
        cmd.stderr(Stdio::inherit());
        // SIGINT: anvil writes its state file as it exits.
        let mut child = Supervised::spawn(cmd, Signal::SIGINT, 10).unwrap_or_else(|e| {
            panic!(
                "cannot start anvil ({}): {e}; install it with `scripts/setup` (npm ci)",
                agora_payment::chain::dev::anvil_bin().display()
            )
        });
        let rpc = format!("http://127.0.0.1:{port}");
        wait_for(30, "anvil to answer eth_chainId", || {
            let rpc = rpc.clone();
            async move { call(&rpc, "eth_chainId").await.ok() }
        })
        .await;
        if let Some(status) = child.exited() {
            panic!("anvil exited during start-up: {status}");
        }
        Self { child: Some(child), port, state }
    }

    /// Stops anvil (it writes its state file, if it has one).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop();
        }
    }

    /// Starts anvil again on the same port, from its state file.
    pub async fn restart(&mut self) {
        self.stop();
        let started = Self::launch(self.port, self.state.clone()).await;
        self.child = started.child;
    }

    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A JSON-RPC call with no parameters; the `result`.
    pub async fn call(&self, method: &str) -> Result<Value, String> {
        call(&self.rpc_url(), method).await
    }
}

async fn call(url: &str, method: &str) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []});
    let resp: Value = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    resp.get("result").cloned().ok_or_else(|| format!("no result: {resp}"))
}
