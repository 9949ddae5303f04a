//! A JSON-RPC client for the few `eth_` methods the driver needs.
//!
//! The driver signs its own transactions and keeps them (see `tx.rs`), so it needs no wallet or
//! nonce manager from a provider library: only requests and their answers, with errors told apart
//! by kind. An unreachable node is not a refused transaction.

use alloy_primitives::{Address, B256, Bytes, U64, U256};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The node did not answer: connection refused, timed out, or an answer that is not JSON-RPC.
    #[error("RPC node {url} unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    /// The node answered with a JSON-RPC error.
    #[error("RPC node refused {method}: {message} (code {code})")]
    Refused { method: &'static str, code: i64, message: String },
    /// The node answered, but not with what the method returns.
    #[error("RPC node answered {method} with something unexpected: {detail}")]
    Malformed { method: &'static str, detail: String },
}

impl RpcError {
    /// The node's error message, if it answered with one.
    pub fn refusal(&self) -> Option<&str> {
        match self {
            Self::Refused { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// An endpoint, with the HTTP client to reach it.
#[derive(Debug, Clone)]
pub struct Rpc {
    url: String,
    http: reqwest::Client,
}

/// A mined transaction's outcome.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub transaction_hash: B256,
    pub block_number: U64,
    pub status: U64,
    pub gas_used: U64,
    pub from: Address,
    pub to: Option<Address>,
    pub contract_address: Option<Address>,
    pub logs: Vec<Log>,
}

/// One log of a receipt.
#[derive(Debug, Clone, Deserialize)]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
}

/// An ERC-20 `Transfer` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLog {
    pub token: Address,
    pub from: Address,
    pub to: Address,
    pub value: U256,
}

impl Receipt {
    pub fn succeeded(&self) -> bool {
        self.status == U64::from(1)
    }

    /// The ERC-20 transfers this transaction made.
    pub fn transfers(&self) -> Vec<TransferLog> {
        use alloy_sol_types::SolEvent;
        let topic = super::TestToken::Transfer::SIGNATURE_HASH;
        self.logs
            .iter()
            .filter(|l| l.topics.len() == 3 && l.topics[0] == topic && l.data.len() == 32)
            .map(|l| TransferLog {
                token: l.address,
                from: Address::from_word(l.topics[1]),
                to: Address::from_word(l.topics[2]),
                value: U256::from_be_slice(&l.data),
            })
            .collect()
    }
}

/// What the driver needs of a transaction that may not be mined yet.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxInfo {
    pub hash: B256,
    pub from: Address,
    pub to: Option<Address>,
    pub nonce: U64,
    pub block_number: Option<U64>,
}

impl Rpc {
    pub fn new(url: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client with timeouts builds");
        Self { url: url.into(), http }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn request<T: DeserializeOwned>(&self, method: &'static str, params: Value) -> Result<T, RpcError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let unreachable = |detail: String| RpcError::Unreachable { url: self.url.clone(), detail };
        let resp =
            self.http.post(&self.url).json(&body).send().await.map_err(|e| unreachable(cause_chain(&e)))?;
        let status = resp.status();
        let answer: Value =
            resp.json().await.map_err(|e| unreachable(format!("HTTP {status}: {}", cause_chain(&e))))?;
        if let Some(err) = answer.get("error") {
            return Err(RpcError::Refused {
                method,
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or("no message").to_owned(),
            });
        }
        let result =
            answer.get("result").cloned().ok_or_else(|| unreachable(format!("HTTP {status}: no result")))?;
        serde_json::from_value(result).map_err(|e| RpcError::Malformed { method, detail: e.to_string() })
    }

    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        Ok(self.request::<U64>("eth_chainId", json!([])).await?.to())
    }

    pub async fn block_number(&self) -> Result<u64, RpcError> {
        Ok(self.request::<U64>("eth_blockNumber", json!([])).await?.to())
    }

    /// The next nonce of `address`, counting mined transactions only (`latest`) or also those in
    /// the node's pool (`pending`).
    pub async fn nonce(&self, address: Address, pending: bool) -> Result<u64, RpcError> {
        let tag = if pending { "pending" } else { "latest" };
        Ok(self.request::<U64>("eth_getTransactionCount", json!([address, tag])).await?.to())
    }

    pub async fn balance(&self, address: Address) -> Result<U256, RpcError> {
        self.request("eth_getBalance", json!([address, "latest"])).await
    }

    pub async fn code(&self, address: Address) -> Result<Bytes, RpcError> {
        self.request("eth_getCode", json!([address, "latest"])).await
    }

    pub async fn call(&self, to: Address, data: &Bytes) -> Result<Bytes, RpcError> {
        self.request("eth_call", json!([{"to": to, "data": data}, "latest"])).await
    }

    /// Gas for a call from `from`; a call that would revert is refused with the revert's reason.
    pub async fn estimate_gas(
        &self,
        from: Address,
        to: Option<Address>,
        data: &Bytes,
    ) -> Result<u64, RpcError> {
        Ok(self
            .request::<U64>("eth_estimateGas", json!([{"from": from, "to": to, "data": data}]))
            .await?
            .to())
    }

    /// The latest block's base fee and the node's suggested priority fee, in wei.
    pub async fn fees(&self) -> Result<(u128, u128), RpcError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Block {
            base_fee_per_gas: Option<U256>,
        }
        let block: Block = self.request("eth_getBlockByNumber", json!(["latest", false])).await?;
        let base = block.base_fee_per_gas.ok_or(RpcError::Malformed {
            method: "eth_getBlockByNumber",
            detail: "the chain has no base fee (not EIP-1559)".into(),
        })?;
        let tip: U256 = self.request("eth_maxPriorityFeePerGas", json!([])).await?;
        Ok((base.saturating_to(), tip.saturating_to()))
    }

    /// Broadcasts a signed transaction; its hash.
    pub async fn send_raw(&self, raw: &Bytes) -> Result<B256, RpcError> {
        self.request("eth_sendRawTransaction", json!([raw])).await
    }

    pub async fn receipt(&self, hash: B256) -> Result<Option<Receipt>, RpcError> {
        self.request("eth_getTransactionReceipt", json!([hash])).await
    }

    pub async fn transaction(&self, hash: B256) -> Result<Option<TxInfo>, RpcError> {
        self.request("eth_getTransactionByHash", json!([hash])).await
    }

    /// A call on a dev chain that only anvil (and hardhat) answer, such as `anvil_setBalance`.
    pub async fn dev_call(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        self.request(method, params).await
    }
}

/// An error with its causes, `outer: inner: …`: reqwest's own message says only "error sending
/// request".
fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
