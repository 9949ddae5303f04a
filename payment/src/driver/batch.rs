//! A new batch: the waiting orders paid in one transaction of the batch payer, signed and kept
//! before it is broadcast; payees the token refuses found by halving, and their orders failed.

use super::{MAX_PAYEES, Stop, kill_point, reverted, store_tx};
use crate::chain::{BatchPayer, Fees, Rpc, RpcError, TestToken, pack_payee, sign_eip1559};
use crate::model::amount_text;
use crate::platform::Network;
use crate::store;
use crate::{Error, Payments, Result, to_token_units};
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::SolCall;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;

impl Payments {
    /// Pays the waiting orders in one new batch (after an approval of the batch payer, if the
    /// token's allowance is short).
    pub(super) async fn start_batch(&self, network: &Network, rpc: &Rpc) -> Result<(), Stop> {
        let platform = network.platform();
        let payer = self.me();
        let waiting = store::orders::waiting(self.pool(), &platform, &payer).await?;
        // Amounts to one payee are summed; payees beyond a batch's size wait for the next.
        let mut per_payee: BTreeMap<String, (Decimal, Vec<i64>)> = BTreeMap::new();
        for (id, payee, amount) in waiting {
            if per_payee.len() == MAX_PAYEES && !per_payee.contains_key(&payee) {
                continue;
            }
            let entry = per_payee.entry(payee).or_default();
            entry.0 += amount;
            entry.1.push(id);
        }
        if per_payee.is_empty() {
            return Ok(());
        }
        let mut words = Vec::new();
        let mut total = U256::ZERO;
        for (payee, (amount, _)) in &per_payee {
            let units = to_token_units(*amount, network.decimals)
                .map_err(|e| Stop::Db(Error::Corrupt(format!("order amount {amount}: {e}"))))?;
            let address: Address =
                payee.parse().map_err(|_| Stop::Db(Error::Corrupt(format!("payee {payee}"))))?;
            words.push(pack_payee(address, units).ok_or_else(|| {
                Stop::Db(Error::Corrupt(format!("{amount} to {payee} is more than one batch word holds")))
            })?);
            total = total
                .checked_add(units)
                .ok_or_else(|| Stop::Db(Error::Corrupt("the batch's total overflows".into())))?;
        }
        let me = self.node_id();
        let balance = crate::chain::dev::token_balance(rpc, network.token, me).await?;
        if balance < total {
            return Err(Stop::Status(json!({
                "kind": "InsufficientToken", "driver": "erc20", "network": network.name, "address": payer,
                "neededTokenEst": amount_text(crate::from_token_units(total, network.decimals).unwrap_or_default()),
                "message": format!("{payer} holds {balance} token units, and the waiting payments need {total}"),
            })));
        }
        let allowance = {
            let out = rpc
                .call(
                    network.token,
                    &TestToken::allowanceCall { owner: me, spender: network.batch_contract }
                        .abi_encode()
                        .into(),
                )
                .await?;
            TestToken::allowanceCall::abi_decode_returns(&out)
                .map_err(|e| RpcError::Malformed { method: "eth_call", detail: format!("allowance: {e}") })?
        };
        let (purpose, to, data) = if allowance < total {
            let call = TestToken::approveCall { spender: network.batch_contract, amount: U256::MAX };
            ("approve", network.token, Bytes::from(call.abi_encode()))
        } else {
            let call = BatchPayer::payCall { token: network.token, total, packed: words.clone() };
            ("pay", network.batch_contract, Bytes::from(call.abi_encode()))
        };
        let gas = match rpc.estimate_gas(me, Some(to), &data).await {
            Ok(g) => g + g / 5,
            Err(RpcError::Refused { message, .. }) if purpose == "pay" && reverted(&message) => {
                // One payee the chain refuses (the zero address, say) must not stop the others:
                // the payees at fault are found by halving the batch, their orders fail with the
                // chain's reason, and the next round pays the rest.
                let payees: Vec<(&String, B256, U256)> = per_payee
                    .keys()
                    .zip(&words)
                    .map(|(payee, word)| (payee, *word, U256::from_be_bytes(word.0) >> 160))
                    .collect();
                let faulty = self.faulty_payees(network, rpc, &payees).await?;
                if faulty.is_empty() {
                    // Every part passes alone: not one payee's fault. Said as before, and tried again.
                    return Err(Stop::Status(json!({
                        "kind": "InsufficientGas", "driver": "erc20", "network": network.name, "address": payer,
                        "message": format!("the {purpose} transaction would fail: {message}"),
                    })));
                }
                let ids: Vec<(String, Vec<i64>)> =
                    faulty.iter().map(|(payee, why)| (why.clone(), per_payee[*payee].1.clone())).collect();
                self.fail_orders(&ids).await?;
                return Ok(());
            }
            Err(e @ RpcError::Refused { .. }) => {
                return Err(Stop::Status(json!({
                    "kind": "InsufficientGas", "driver": "erc20", "network": network.name, "address": payer,
                    "message": format!("the {purpose} transaction would fail: {e}"),
                })));
            }
            Err(e) => return Err(e.into()),
        };
        let (base, tip) = rpc.fees().await?;
        let fees = Fees::for_base(base, tip);
        let eth = rpc.balance(me).await?;
        let needed = U256::from(gas) * U256::from(fees.max_fee);
        if eth < needed {
            return Err(Stop::Status(json!({
                "kind": "InsufficientGas", "driver": "erc20", "network": network.name, "address": payer,
                "neededGasEst": needed.to_string(),
                "message": format!("{payer} holds {eth} wei for gas, and the {purpose} transaction may need {needed}"),
            })));
        }
        // The nonce: the next after this account's last batch, or the chain's, whichever is later
        // (the account may have sent transactions of its own).
        let mut db = self.pool().begin().await?;
        let last = store::chain::last_nonce(&mut *db, &platform, &payer).await?;
        let chain_next = rpc.nonce(me, true).await?;
        let nonce = chain_next.max(last.map_or(0, |n| n as u64 + 1));
        let signed = sign_eip1559(&self.signer(), network.chain_id, nonce, Some(to), data, gas, fees)
            .map_err(|e| Stop::Status(json!({"kind": "CantSign", "driver": "erc20", "network": network.name, "message": e.to_string()})))?;
        let batch = store::chain::insert_batch(&mut *db, &platform, &payer, nonce as i64, purpose).await?;
        store_tx(&mut *db, batch, &signed, fees, gas).await?;
        if purpose == "pay" {
            let ids: Vec<i64> = per_payee.values().flat_map(|(_, ids)| ids.iter().copied()).collect();
            let taken = store::orders::batch(&mut *db, batch, &ids).await?;
            if taken != ids.len() as u64 {
                // Another batch took some of them meanwhile: nothing of this one is kept.
                return Err(Stop::Db(Error::Conflict("payment orders were batched twice at once".into())));
            }
        }
        db.commit().await?;
        tracing::info!(purpose, nonce, tx = %signed.hash, payees = per_payee.len(), "signed a payment transaction");
        kill_point("signed");
        self.broadcast(rpc, signed.hash, &signed.raw).await?;
        Ok(())
    }

    /// The payees of `payees` whose transfer the chain refuses, each with the chain's reason: the
    /// batch is halved until each refused part is one payee. A part the chain takes is not looked
    /// into further.
    async fn faulty_payees<'a>(
        &self,
        network: &Network,
        rpc: &Rpc,
        payees: &[(&'a String, B256, U256)],
    ) -> Result<Vec<(&'a String, String)>, Stop> {
        let mut faulty = Vec::new();
        let mut parts = vec![payees];
        while let Some(part) = parts.pop() {
            let total = part.iter().try_fold(U256::ZERO, |sum, (_, _, units)| sum.checked_add(*units));
            let Some(total) = total else {
                return Err(Stop::Db(Error::Corrupt("the batch's total overflows".into())));
            };
            let call = BatchPayer::payCall {
                token: network.token,
                total,
                packed: part.iter().map(|(_, word, _)| *word).collect(),
            };
            let data = Bytes::from(call.abi_encode());
            match rpc.estimate_gas(self.node_id(), Some(network.batch_contract), &data).await {
                Ok(_) => {}
                Err(RpcError::Refused { message, .. }) if part.len() == 1 && reverted(&message) => {
                    // The chain's words, as text a person and the database can take: a revert
                    // reason may carry raw bytes.
                    let reason: String = message.chars().filter(|c| !c.is_control()).take(500).collect();
                    faulty.push((part[0].0, reason));
                }
                Err(RpcError::Refused { message, .. }) if part.len() > 1 && reverted(&message) => {
                    let (left, right) = part.split_at(part.len() / 2);
                    parts.push(left);
                    parts.push(right);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(faulty)
    }

    /// Orders the chain refuses to pay: each marked failed with the chain's reason, and what it
    /// took of its allocation given back, since nothing will be paid for it.
    async fn fail_orders(&self, failed: &[(String, Vec<i64>)]) -> Result<(), Stop> {
        let mut db = self.pool().begin().await?;
        for (why, ids) in failed {
            for (allocation, amount, document) in store::orders::fail(&mut *db, ids, why).await? {
                store::allocations::give_back(&mut *db, &allocation, amount).await?;
                tracing::warn!(document = %document, %amount, reason = %why, "the chain refuses this payment; its order failed");
            }
        }
        db.commit().await?;
        Ok(())
    }
}
