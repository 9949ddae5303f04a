//! The node's account on each network: what it holds, what it set aside, owes and paid, and, on
//! dev networks, a faucet.

use crate::chain::dev::{self, ANVIL_DEPLOYER_KEY};
use crate::chain::{Rpc, RpcError};
use crate::model::amount_text;
use crate::platform::Network;
use crate::{Error, Payments, Result, from_token_units};
use alloy_primitives::U256;
use serde_json::{Value, json};

/// Tokens one `fund` mints.
const FAUCET_TOKENS: u64 = 1000;
/// Gas money a `fund` tops the account up to on a dev chain: 100 ETH, in wei.
const DEV_GAS_WEI: u128 = 100_000_000_000_000_000_000;

impl Payments {
    fn network_named(&self, platform: Option<&str>) -> Result<&Network> {
        match platform {
            None => self
                .config()
                .networks
                .first()
                .ok_or_else(|| Error::BadInput("this node has no payment networks".into())),
            Some(p) => self.config().network(p).ok_or_else(|| {
                let known: Vec<_> = self.config().networks.iter().map(|n| n.platform()).collect();
                Error::BadInput(format!("unknown payment platform {p}; this node has: {}", known.join(", ")))
            }),
        }
    }

    /// Funds this node's account on a dev network: gas money (anvil's `anvil_setBalance`) and
    /// tokens from the test token's faucet. Deploys agora's contracts first if the chain has none.
    pub async fn fund(&self, platform: Option<&str>) -> Result<Value> {
        let network = self.network_named(platform)?.clone();
        if !network.faucet {
            return Err(Error::BadInput(format!(
                "{} has no faucet: fund {} from an exchange or a faucet of that network",
                network.platform(),
                self.me()
            )));
        }
        let rpc = Rpc::new(network.rpc_urls[0].clone());
        let chain = |e: RpcError| Error::Unreachable(format!("{}: {e}", network.platform()));
        let failed = |e: dev::DevError| Error::Unreachable(format!("{}: {e}", network.platform()));
        let _account = self.inner.account.lock().await;
        // The faucet call takes the account's next nonce: not while a payment holds one unsent.
        let in_flight =
            crate::store::chain::pending_count(self.pool(), &network.platform(), &self.me()).await?;
        if in_flight > 0 {
            return Err(Error::Conflict(format!(
                "{} has a payment transaction in flight; fund once it is mined",
                network.platform()
            )));
        }
        if rpc.code(network.token).await.map_err(chain)?.is_empty() {
            let deployer: alloy_signer_local::PrivateKeySigner =
                ANVIL_DEPLOYER_KEY.parse().expect("a valid key");
            let deployed = dev::deploy(&rpc, &deployer).await.map_err(failed)?;
            if deployed.token != network.token || deployed.batch != network.batch_contract {
                return Err(Error::BadInput(format!(
                    "deployed agora's contracts at {} and {}, but the settings expect {} and {}: \
                     the dev account had sent transactions before; start from a fresh chain",
                    deployed.token, deployed.batch, network.token, network.batch_contract
                )));
            }
            tracing::info!(token = %deployed.token, batch = %deployed.batch, "deployed agora's contracts on the dev chain");
        }
        let me = self.node_id();
        if rpc.balance(me).await.map_err(chain)? < U256::from(DEV_GAS_WEI / 2) {
            rpc.dev_call("anvil_setBalance", json!([me, format!("{:#x}", DEV_GAS_WEI)])).await.map_err(
                |e| Error::BadInput(format!("the dev chain does not set balances (anvil_setBalance): {e}")),
            )?;
        }
        let amount = U256::from(FAUCET_TOKENS) * U256::from(10u8).pow(U256::from(network.decimals));
        dev::faucet(&rpc, &self.signer(), network.token, me, amount).await.map_err(failed)?;
        drop(_account);
        self.account_status(&network).await
    }

    /// Every network's account status.
    pub async fn status(&self) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        for network in &self.config().networks {
            all.push(self.account_status(network).await?);
        }
        Ok(all)
    }

    /// Balances on chain (null when the chain cannot be reached), and the amounts allocated,
    /// ordered but not yet paid, paid, and received.
    async fn account_status(&self, network: &Network) -> Result<Value> {
        let platform = network.platform();
        use crate::store::{allocations, orders, payments};
        let db = self.pool();
        let rpc = Rpc::new(network.rpc_urls[0].clone());
        let me = self.node_id();
        let (token, gas) = match (dev::token_balance(&rpc, network.token, me).await, rpc.balance(me).await) {
            (Ok(t), Ok(g)) => (
                from_token_units(t, network.decimals).map(amount_text).ok(),
                from_token_units(g, 18).map(amount_text).ok(),
            ),
            _ => (None, None),
        };
        Ok(json!({
            "platform": platform,
            "address": self.me(),
            "token": token,
            "gas": gas,
            "allocated": amount_text(allocations::unspent(db, &platform).await?),
            "pending": amount_text(orders::pending(db, &platform).await?),
            "paid": amount_text(payments::total(db, &platform, true).await?),
            "received": amount_text(payments::total(db, &platform, false).await?),
        }))
    }
}
