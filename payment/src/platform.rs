//! Payment platforms: ERC-20 tokens on EVM networks, named as Golem names them,
//! `erc20-<network>-<token>`.

use crate::chain::dev::ANVIL_DEPLOYER_KEY;
use alloy_primitives::Address;
use std::time::Duration;

/// One network's settings, as `[[payment.networks]]` in the node's TOML gives them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The network's name in platform names: `dev`, `holesky`, `mainnet`, ….
    pub name: String,
    pub chain_id: u64,
    /// JSON-RPC endpoints, tried in order: the next one takes over when one is unreachable.
    pub rpc_urls: Vec<String>,
    /// The ERC-20 token's contract.
    pub token: Address,
    /// The token's symbol in platform names, lowercase: `tglm`, `glm`.
    pub token_symbol: String,
    #[serde(default = "default_decimals")]
    pub decimals: u32,
    /// agora's batch payer on this network.
    pub batch_contract: Address,
    /// Blocks on top of a payment's block before it counts as paid (1: mined).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Seconds a sent transaction may wait to be mined before it is replaced with a higher fee.
    #[serde(default = "default_stuck_secs")]
    pub stuck_after_secs: u64,
    /// Whether the token has a faucet (`agora payment fund`): dev networks only.
    #[serde(default)]
    pub faucet: bool,
}

fn default_decimals() -> u32 {
    18
}
fn default_confirmations() -> u64 {
    1
}
fn default_stuck_secs() -> u64 {
    30
}

/// The chain id of anvil, the dev network.
pub const DEV_CHAIN_ID: u64 = 31337;
/// Where the dev network's RPC is unless told otherwise: anvil's default port.
pub const DEV_RPC_URL: &str = "http://127.0.0.1:8545";

impl Network {
    /// `erc20-<network>-<token>`.
    pub fn platform(&self) -> String {
        format!("erc20-{}-{}", self.name, self.token_symbol)
    }

    pub fn driver(&self) -> &'static str {
        "erc20"
    }

    /// Why `payee` cannot be paid on this network, if it cannot: the token's `transfer` reverts
    /// for the zero address, and paying the token or the batch payer itself would lock the money
    /// there. Such a payee would make every batch it is in fail.
    pub fn payee_problem(&self, payee: Address) -> Option<String> {
        if payee.is_zero() {
            Some(format!("payee address {payee:#x} is the zero address, which no transfer reaches"))
        } else if payee == self.token {
            Some(format!("payee address {payee:#x} is the token {} itself", self.token_symbol))
        } else if payee == self.batch_contract {
            Some(format!("payee address {payee:#x} is the batch payer contract"))
        } else {
            None
        }
    }

    /// The dev network: anvil at `rpc_url`, with agora's contracts where deploying them first
    /// from anvil's first dev account puts them (its nonces 0 and 1).
    pub fn dev(rpc_url: impl Into<String>) -> Self {
        let deployer: alloy_signer_local::PrivateKeySigner =
            ANVIL_DEPLOYER_KEY.parse().expect("the well-known anvil key parses");
        Self {
            name: "dev".into(),
            chain_id: DEV_CHAIN_ID,
            rpc_urls: vec![rpc_url.into()],
            token: deployer.address().create(0),
            token_symbol: "tglm".into(),
            decimals: 18,
            batch_contract: deployer.address().create(1),
            confirmations: 1,
            stuck_after_secs: default_stuck_secs(),
            faucet: true,
        }
    }

    pub fn stuck_after(&self) -> Duration {
        Duration::from_secs(self.stuck_after_secs)
    }

    /// What is wrong with these settings, named.
    pub fn check(&self) -> Result<(), String> {
        let name_ok =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !name_ok(&self.name) || !name_ok(&self.token_symbol) {
            return Err(format!(
                "network '{}' token '{}': names are lowercase letters and digits",
                self.name, self.token_symbol
            ));
        }
        if self.rpc_urls.is_empty() {
            return Err(format!("network '{}': rpc_urls is empty", self.name));
        }
        if let Some(bad) =
            self.rpc_urls.iter().find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(format!("network '{}': rpc url '{bad}' is not http(s)://", self.name));
        }
        if self.decimals != crate::model::TOKEN_DECIMALS {
            return Err(format!(
                "network '{}': decimals {}: agora pays tokens of {} decimals",
                self.name,
                self.decimals,
                crate::model::TOKEN_DECIMALS
            ));
        }
        if self.confirmations == 0 {
            return Err(format!("network '{}': confirmations must be at least 1", self.name));
        }
        Ok(())
    }
}

/// The payment settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentConfig {
    /// The first is the default platform of new allocations.
    pub networks: Vec<Network>,
    /// How long accepted amounts wait to share a transaction.
    pub batch_window: Duration,
}

impl PaymentConfig {
    pub fn network(&self, platform: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.platform() == platform)
    }

    /// Checks each network, and that no platform is named twice.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for n in &self.networks {
            n.check()?;
            if !seen.insert(n.platform()) {
                return Err(format!("platform {} is configured twice", n.platform()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_platform_is_named_as_golem_names_it() {
        let dev = Network::dev(DEV_RPC_URL);
        assert_eq!(dev.platform(), "erc20-dev-tglm");
        assert!(dev.check().is_ok());
        assert_ne!(dev.token, dev.batch_contract);
    }

    #[test]
    fn bad_network_settings_are_named() {
        let mut n = Network::dev("ftp://x");
        assert!(n.check().unwrap_err().contains("ftp://x"));
        n.rpc_urls = vec![];
        assert!(n.check().unwrap_err().contains("rpc_urls is empty"));
        let n = Network { name: "Dev".into(), ..Network::dev(DEV_RPC_URL) };
        assert!(n.check().unwrap_err().contains("lowercase"));
        let twice = PaymentConfig {
            networks: vec![Network::dev(DEV_RPC_URL), Network::dev(DEV_RPC_URL)],
            batch_window: Duration::from_secs(1),
        };
        assert!(twice.check().unwrap_err().contains("twice"));
    }
}
