//! Dev networks: starting anvil, deploying agora's contracts, and plain send-and-wait transactions
//! for setup (deployment, faucet, approval), where a lost transaction is simply sent again.

use super::{Contract, Receipt, Rpc, RpcError, TestToken, sign_eip1559, tx::Fees};
use alloy_primitives::{Address, Bytes, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The first of anvil's well-known dev accounts (from its default mnemonic): it holds 10,000 ETH
/// on every fresh anvil, and deploys agora's contracts there. Worth nothing anywhere else.
pub const ANVIL_DEPLOYER_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Why a setup transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("signing failed: {0}")]
    Sign(#[from] alloy_signer::Error),
    #[error("transaction {0} reverted")]
    Reverted(alloy_primitives::B256),
    #[error("transaction {0} was not mined within 60 s")]
    NotMined(alloy_primitives::B256),
    #[error("cannot start anvil ({bin}): {detail}; install it with `scripts/setup` (npm ci)")]
    Anvil { bin: String, detail: String },
}

/// Where anvil is: `$AGORA_ANVIL`, the npm package in the workspace's `node_modules`, or `PATH`.
pub fn anvil_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("AGORA_ANVIL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let from_npm =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if from_npm.is_file() {
        return from_npm;
    }
    PathBuf::from("anvil")
}

/// The command that starts anvil on 127.0.0.1:`port`, keeping its state in `state` if given.
pub fn anvil_command(port: u16, state: Option<&Path>) -> Command {
    let mut cmd = Command::new(anvil_bin());
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"]);
    if let Some(state) = state {
        cmd.arg("--state").arg(state);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    cmd
}

/// An anvil process, killed on drop (for benchmarks and tools; the tests supervise their own).
#[derive(Debug)]
pub struct AnvilProcess {
    child: Child,
    pub rpc: Rpc,
}

impl AnvilProcess {
    pub async fn start(port: u16) -> Result<Self, DevError> {
        let bin = anvil_bin().display().to_string();
        let child = anvil_command(port, None)
            .spawn()
            .map_err(|e| DevError::Anvil { bin: bin.clone(), detail: e.to_string() })?;
        let rpc = Rpc::new(format!("http://127.0.0.1:{port}"));
        for _ in 0..300 {
            if rpc.chain_id().await.is_ok() {
                return Ok(Self { child, rpc });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DevError::Anvil { bin, detail: "it did not answer eth_chainId within 30 s".into() })
    }
}

impl Drop for AnvilProcess {
    fn drop(&mut self) {
        let _already_gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// Sends a call (or a creation) from `signer` and waits for its receipt; a revert is an error.
pub async fn transact(
    rpc: &Rpc,
    signer: &PrivateKeySigner,
    to: Option<Address>,
    data: Bytes,
) -> Result<Receipt, DevError> {
    let chain_id = rpc.chain_id().await?;
    let nonce = rpc.nonce(signer.address(), true).await?;
    let gas = rpc.estimate_gas(signer.address(), to, &data).await?;
    let (base, tip) = rpc.fees().await?;
    let tx = sign_eip1559(signer, chain_id, nonce, to, data, gas + gas / 5, Fees::for_base(base, tip))?;
    rpc.send_raw(&tx.raw).await?;
    for _ in 0..600 {
        if let Some(receipt) = rpc.receipt(tx.hash).await? {
            return if receipt.succeeded() { Ok(receipt) } else { Err(DevError::Reverted(tx.hash)) };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DevError::NotMined(tx.hash))
}

/// Where agora's contracts are on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    pub token: Address,
    pub batch: Address,
}

/// Deploys the test token and the batch payer from `deployer`.
pub async fn deploy(rpc: &Rpc, deployer: &PrivateKeySigner) -> Result<Deployment, DevError> {
    let mut at = [Address::ZERO; 2];
    for (slot, contract) in at.iter_mut().zip([Contract::TestToken, Contract::BatchPayer]) {
        let receipt = transact(rpc, deployer, None, contract.creation_code()).await?;
        *slot = receipt.contract_address.ok_or(DevError::Reverted(receipt.transaction_hash))?;
    }
    Ok(Deployment { token: at[0], batch: at[1] })
}

/// Mints `amount` test tokens to `to` from the token's faucet.
pub async fn faucet(
    rpc: &Rpc,
    signer: &PrivateKeySigner,
    token: Address,
    to: Address,
    amount: U256,
) -> Result<Receipt, DevError> {
    let data = TestToken::faucetCall { to, amount }.abi_encode().into();
    transact(rpc, signer, Some(token), data).await
}

/// The token balance of `owner`.
pub async fn token_balance(rpc: &Rpc, token: Address, owner: Address) -> Result<U256, RpcError> {
    let out = rpc.call(token, &TestToken::balanceOfCall { owner }.abi_encode().into()).await?;
    TestToken::balanceOfCall::abi_decode_returns(&out)
        .map_err(|e| RpcError::Malformed { method: "eth_call", detail: format!("balanceOf: {e}") })
}
