use crate::reaper::Supervised;
use crate::{free_port, wait_for, workspace_root};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// An anvil dev chain on 127.0.0.1, stopped on drop.
#[derive(Debug)]
pub struct Anvil {
    _child: Supervised,
    port: u16,
}

/// Where anvil is: `$AGORA_ANVIL`, the npm package installed in the workspace, or `PATH`.
fn anvil_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("AGORA_ANVIL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let from_npm = workspace_root().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if from_npm.is_file() {
        return from_npm;
    }
    PathBuf::from("anvil")
}

impl Anvil {
    /// The chain id anvil uses unless told otherwise.
    pub const CHAIN_ID: u64 = 31337;

    pub async fn start() -> Self {
        let bin = anvil_bin();
        let port = free_port();
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = Supervised::spawn(cmd, Signal::SIGKILL, 5).unwrap_or_else(|e| {
            panic!("cannot start anvil ({}): {e}; install it with `scripts/setup` (npm ci)", bin.display())
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
        Self { _child: child, port }
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
