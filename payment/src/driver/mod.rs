//! The ERC-20 driver: turns payment orders into batch transactions, exactly once.
//!
//! The order of writes is what makes a crash harmless:
//! 1. an acceptance writes its order (with the allocation charged) before anything is signed;
//! 2. a batch takes the account's next nonce, and its signed transaction is written with the
//!    orders it pays, before it is broadcast;
//! 3. on every round, and so first after a restart, the driver looks for the receipts of the
//!    batches it already signed before it signs anything new, and sends their stored bytes again
//!    if the chain does not have them.
//!
//! A nonce is used once; a transaction that waits too long is replaced by one with the same
//! nonce and a higher fee, so whichever is mined, the orders are paid once.

mod batch;

use crate::chain::{Fees, Receipt, Rpc, RpcError, SignedTx, sign_eip1559};
use crate::model::{Kind, Payment, Share, now_micros};
use crate::platform::Network;
use crate::service::new_id;
use crate::store;
use crate::wire::Message;
use crate::{Error, Payments, Result};
use alloy_primitives::{Address, B256, Bytes};
use alloy_signer_local::PrivateKeySigner;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often a driver with nothing to do looks again (an order wakes it at once).
const IDLE: Duration = Duration::from_secs(1);
/// How soon a driver with a transaction in flight looks again.
const BUSY: Duration = Duration::from_millis(100);

/// The most payees one batch pays (about 10,000 gas each).
const MAX_PAYEES: usize = 200;

/// Where a test kills the payer's process, to prove a crash there loses nothing and pays nothing
/// twice: `AGORA_TEST_KILL_AT` = `ordered`, `signed`, `broadcast` or `mined`.
pub(crate) fn kill_point(point: &str) {
    if std::env::var("AGORA_TEST_KILL_AT").is_ok_and(|p| p == point) {
        tracing::warn!(point, "AGORA_TEST_KILL_AT: the node kills itself here");
        let _killed = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// A problem that stops a platform's payments, as Golem's `DriverStatusProperty` names it.
#[derive(Debug)]
enum Stop {
    Rpc(RpcError),
    Status(Value),
    Db(Error),
}

impl From<RpcError> for Stop {
    fn from(e: RpcError) -> Self {
        Self::Rpc(e)
    }
}
impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Self::Db(e)
    }
}
impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e.into())
    }
}

/// A signed batch's transaction, as stored.
struct StoredTx {
    hash: B256,
    raw: Bytes,
    fees: Fees,
    gas_limit: u64,
    sent: bool,
    signed_at: chrono::DateTime<chrono::Utc>,
}

impl Payments {
    /// The driver of one network: a round every batch window, or sooner when an order is
    /// written, until `stop`.
    pub async fn drive(&self, network: Network, stop: tokio_util::sync::CancellationToken) {
        let mut rpc_at = 0usize;
        loop {
            let rpc = Rpc::new(network.rpc_urls[rpc_at % network.rpc_urls.len()].clone());
            let round = {
                let _account = self.inner.account.lock().await;
                self.round(&network, &rpc).await
            };
            let wait = match round {
                Ok(next) => {
                    self.set_driver_status(&network, Vec::new());
                    next
                }
                Err(Stop::Rpc(e)) => {
                    tracing::warn!(platform = %network.platform(), error = %e, "payments wait for the chain");
                    if matches!(e, RpcError::Unreachable { .. }) {
                        rpc_at += 1;
                    }
                    self.set_driver_status(&network, vec![json!({
                        "kind": "RpcError", "driver": "erc20", "network": network.name, "message": e.to_string(),
                    })]);
                    Duration::from_secs(1)
                }
                Err(Stop::Status(status)) => {
                    tracing::warn!(platform = %network.platform(), %status, "payments wait");
                    self.set_driver_status(&network, vec![status]);
                    Duration::from_secs(2)
                }
                Err(Stop::Db(e)) => {
                    tracing::warn!(platform = %network.platform(), error = %e, "payments wait for the database");
                    Duration::from_secs(1)
                }
            };
            // A new order wakes the driver; the round then works out how long the batch still
            // has to wait for others.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.inner.orders.notified() => {}
            }
        }
    }

    fn set_driver_status(&self, network: &Network, status: Vec<Value>) {
        let mut all = self.inner.status.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(network.platform(), status);
    }

    /// Golem's `GET /payments/status`: what stops payments now, per platform.
    pub fn driver_status(&self) -> Vec<Value> {
        let all = self.inner.status.lock().unwrap_or_else(|e| e.into_inner());
        all.values().flatten().cloned().collect()
    }

    pub(crate) fn signer(&self) -> PrivateKeySigner {
        PrivateKeySigner::from_slice(&self.inner.identity.secret_bytes())
            .expect("an identity key is a valid secp256k1 key")
    }

    /// One round: finish what was signed, then pay what has waited the batch window. How long
    /// to wait before the next.
    async fn round(&self, network: &Network, rpc: &Rpc) -> Result<Duration, Stop> {
        let platform = network.platform();
        let payer = self.me();
        let pending = store::chain::pending(self.pool(), &platform, &payer).await?;
        // How long the oldest waiting order has waited, in seconds.
        let waited = store::orders::oldest_wait(self.pool(), &platform, &payer).await?;
        if pending.is_empty() {
            match waited {
                None => return Ok(IDLE),
                Some(waited) => {
                    let left =
                        self.config().batch_window.saturating_sub(Duration::from_secs_f64(waited.max(0.0)));
                    if !left.is_zero() {
                        return Ok(left);
                    }
                }
            }
        }
        let chain_id = rpc.chain_id().await?;
        if chain_id != network.chain_id {
            return Err(Stop::Status(json!({
                "kind": "InvalidChainId", "driver": "erc20", "chainId": chain_id,
                "message": format!("{} answers chain id {chain_id}, but network {} is chain {}",
                    rpc.url(), network.name, network.chain_id),
            })));
        }
        if let Some((batch, nonce, _)) = pending.first() {
            self.finish(network, rpc, *batch, *nonce).await?;
            return Ok(BUSY);
        }
        self.start_batch(network, rpc).await?;
        Ok(BUSY)
    }

    /// Takes a signed batch one step on: records it if mined, or (re)sends it, replacing it with a
    /// higher fee once it is stuck.
    async fn finish(&self, network: &Network, rpc: &Rpc, batch: i64, nonce: i64) -> Result<(), Stop> {
        let txs = self.stored_txs(batch).await?;
        for tx in &txs {
            if let Some(receipt) = rpc.receipt(tx.hash).await? {
                let latest = rpc.block_number().await?;
                if latest + 1 < receipt.block_number.to::<u64>() + network.confirmations {
                    return Ok(());
                }
                kill_point("mined");
                return self.record_mined(network, batch, &receipt).await;
            }
        }
        let Some(last) = txs.last() else {
            return Err(Stop::Db(Error::Corrupt(format!("chain batch {batch} has no transaction"))));
        };
        let mined_nonce = rpc.nonce(self.node_id(), false).await?;
        if mined_nonce > nonce as u64 {
            // The nonce is used, but by none of ours that the node reports. A receipt may lag;
            // if another transaction took the nonce, these orders need a person: paying them
            // again on another nonce could pay twice, should one of ours surface after all.
            return Err(Stop::Status(json!({
                "kind": "TxStuck", "driver": "erc20", "network": network.name, "address": self.me(),
                "message": format!("nonce {nonce} of {} is used, but no receipt of batch {batch}'s transactions \
                    ({}) is found", self.me(), txs.iter().map(|t| format!("{:#x}", t.hash)).collect::<Vec<_>>().join(", ")),
            })));
        }
        let stuck_after = chrono::Duration::from_std(network.stuck_after()).unwrap_or(chrono::Duration::MAX);
        let stale = chrono::Utc::now() - last.signed_at > stuck_after;
        let known = rpc.transaction(last.hash).await?.is_some();
        if known && !last.sent {
            // Broadcast by a run of the node that died before it wrote so down: the chain's pool
            // says it was sent, and that is recorded now, so a stuck one is bumped like any other.
            store::chain::sent(self.pool(), &format!("{:#x}", last.hash)).await?;
        }
        if known && !stale {
            return Ok(());
        }
        if !known {
            // Never sent, or the node lost it (a restart without its pool): the same bytes again.
            match self.broadcast(rpc, last.hash, &last.raw).await {
                Ok(()) => return Ok(()),
                // Refused (too low a fee for the chain now, say) and old enough: priced again below.
                Err(Stop::Rpc(e @ RpcError::Refused { .. })) if stale => {
                    tracing::warn!(batch, nonce, error = %e, "the chain refuses a payment transaction");
                }
                Err(e) => return Err(e),
            }
        }
        let (base, tip) = rpc.fees().await?;
        let fees = last.fees.bumped(Fees::for_base(base, tip));
        let (to, data) = decode_input(&last.raw)?;
        let signed = sign_eip1559(&self.signer(), network.chain_id, nonce as u64, Some(to), data, last.gas_limit, fees)
            .map_err(|e| {
                Stop::Status(json!({"kind": "CantSign", "driver": "erc20", "network": network.name, "message": e.to_string()}))
            })?;
        tracing::warn!(batch, nonce, old = %last.hash, new = %signed.hash, "a stuck transaction is replaced with a higher fee");
        store_tx(self.pool(), batch, &signed, fees, last.gas_limit).await?;
        self.broadcast(rpc, signed.hash, &signed.raw).await
    }

    async fn broadcast(&self, rpc: &Rpc, hash: B256, raw: &Bytes) -> Result<(), Stop> {
        match rpc.send_raw(raw).await {
            Ok(_) => {}
            // Already in the pool, or already mined: both are what we want.
            Err(e)
                if e.refusal().is_some_and(|m| {
                    let m = m.to_ascii_lowercase();
                    m.contains("already known")
                        || m.contains("nonce too low")
                        || m.contains("already imported")
                }) => {}
            Err(e) => return Err(e.into()),
        }
        kill_point("broadcast");
        store::chain::sent(self.pool(), &format!("{hash:#x}")).await?;
        Ok(())
    }

    async fn stored_txs(&self, batch: i64) -> Result<Vec<StoredTx>, Stop> {
        let rows = store::chain::txs(self.pool(), batch).await?;
        rows.into_iter()
            .map(|r| {
                let fee = |c: &str, d: Decimal| -> Result<u128, Stop> {
                    d.to_string().parse().map_err(|_| Stop::Db(Error::Corrupt(format!("{c} {d}"))))
                };
                let hash = &r.hash;
                Ok(StoredTx {
                    hash: hash.parse().map_err(|_| Stop::Db(Error::Corrupt(format!("tx hash {hash}"))))?,
                    raw: Bytes::from(r.raw),
                    fees: Fees {
                        max_fee: fee("max_fee", r.max_fee)?,
                        priority: fee("priority_fee", r.priority_fee)?,
                    },
                    gas_limit: r.gas_limit as u64,
                    sent: r.sent,
                    signed_at: r.signed_at,
                })
            })
            .collect()
    }

    /// Records a mined batch: its orders paid, a payment per payee (signed, and queued to the
    /// payee), its documents settled. One transaction, so a crash records all of it or none.
    async fn record_mined(&self, network: &Network, batch: i64, receipt: &Receipt) -> Result<(), Stop> {
        let hash = format!("{:#x}", receipt.transaction_hash);
        let block = receipt.block_number.to::<u64>() as i64;
        let mut db = self.pool().begin().await?;
        if !receipt.succeeded() {
            tracing::warn!(batch, tx = %hash, "a payment transaction reverted; its orders wait for another batch");
            store::chain::mined(&mut *db, batch, "reverted", &hash, block).await?;
            store::orders::unbatch(&mut *db, batch).await?;
            db.commit().await?;
            return Ok(());
        }
        store::chain::mined(&mut *db, batch, "mined", &hash, block).await?;
        let orders = store::orders::mark_paid(&mut *db, batch).await?;
        let mut per_payee: BTreeMap<String, (String, String, Vec<Share>)> = BTreeMap::new();
        let mut agreements = std::collections::BTreeSet::new();
        let count = orders.len();
        for o in orders {
            let kind = &o.document_kind;
            agreements.insert(o.agreement_id.clone());
            let share = Share {
                agreement_id: Some(o.agreement_id),
                activity_id: o.activity_id,
                amount: o.amount,
                allocation_id: o.allocation_id,
                document_id: o.document_id,
                document_kind: Kind::parse(kind)
                    .ok_or_else(|| Error::Corrupt(format!("order kind {kind}")))?,
            };
            match per_payee.get_mut(&o.payee_addr) {
                Some(entry) => entry.2.push(share),
                None => {
                    per_payee.insert(o.payee_addr, (o.payee_id, o.payee_peer, vec![share]));
                }
            }
        }
        for (payee_addr, (payee_id, peer, shares)) in per_payee {
            let (activity, agreement): (Vec<Share>, Vec<Share>) =
                shares.into_iter().partition(|s| s.document_kind == Kind::DebitNote);
            let payment = Payment {
                payment_id: new_id(),
                payer_id: self.me(),
                payee_id,
                payer_addr: self.me(),
                payee_addr,
                payment_platform: network.platform(),
                amount: agreement.iter().chain(&activity).map(|s| s.amount).sum(),
                timestamp: now_micros(),
                agreement_payments: agreement,
                activity_payments: activity,
                details: hash.clone(),
            };
            let request = self.sign(Message::Paid { payment: payment.clone() })?;
            store::payments::insert(&mut *db, &payment, "payer", &request.signature, true).await?;
            self.enqueue_in(&mut db, &peer, &request).await?;
        }
        for agreement in &agreements {
            Self::settle_covered_in(&mut db, agreement, false).await?;
        }
        db.commit().await?;
        tracing::info!(batch, tx = %hash, block, orders = count, "payment transaction mined");
        self.events_changed();
        self.inner.arrivals.notify_waiters();
        self.flush_outbox().await;
        Ok(())
    }
}

/// Whether a refused call reverted in the contract (a payee's fault can be found by halving),
/// rather than failing for another reason (a node's limit, a header not found), which says
/// nothing of the payees.
fn reverted(message: &str) -> bool {
    message.to_ascii_lowercase().contains("revert")
}

/// Keeps a signed transaction of a batch, before it is broadcast.
async fn store_tx<'e>(
    db: impl sqlx::PgExecutor<'e>,
    batch: i64,
    signed: &SignedTx,
    fees: Fees,
    gas: u64,
) -> Result<(), Stop> {
    let hash = format!("{:#x}", signed.hash);
    let (max_fee, priority) = (Decimal::from(fees.max_fee), Decimal::from(fees.priority));
    store::chain::insert_tx(db, &hash, batch, &signed.raw, max_fee, priority, gas as i64).await?;
    Ok(())
}

/// The destination and calldata of a signed transaction, to sign it again with other fees.
fn decode_input(raw: &Bytes) -> Result<(Address, Bytes), Stop> {
    use alloy_consensus::{Transaction, TxEnvelope};
    use alloy_eips::eip2718::Decodable2718;
    let envelope = TxEnvelope::decode_2718(&mut raw.as_ref())
        .map_err(|e| Stop::Db(Error::Corrupt(format!("a stored transaction does not decode: {e}"))))?;
    let to = envelope
        .to()
        .ok_or_else(|| Stop::Db(Error::Corrupt("a stored payment transaction creates a contract".into())))?;
    Ok((to, envelope.input().clone()))
}
