//! Payments as both sides record them. The payee counts one only after it has found the transfer
//! on chain itself: the payer's word (its signed `Paid` message) says where to look, not that it
//! happened.

use crate::chain::Rpc;
use crate::model::{Kind, Payment, Status};
use crate::service::verify;
use crate::store;
use crate::wire::Message;
use crate::{Error, Payments, Result, Scope, to_token_units};
use agora_agreement::Role;
use alloy_primitives::{Address, B256};
use rust_decimal::Decimal;
use std::time::Duration;

/// Payment notices checked on chain in one round, at the most.
const CHECKS_PER_ROUND: i64 = 50;
/// How long a payment notice is looked for on chain before it is given up on.
const NOTICE_LIFETIME: Duration = Duration::from_secs(3600);
/// Payment notices of one payer that may wait to be found on chain; more are refused until
/// those are settled one way or the other (the payer's outbox sends them again).
const PENDING_PER_PAYER: i64 = 100;

impl Payments {
    /// Payments this node made, or received and checked, that `scope` sees, oldest first.
    pub async fn payments(
        &self,
        after: Option<chrono::DateTime<chrono::Utc>>,
        max: i64,
        scope: Scope<'_>,
    ) -> Result<Vec<Payment>> {
        store::payments::list(self.pool(), after, max, scope.principal()).await
    }

    /// A payment `scope` sees; `NotFound` as if it were not there otherwise.
    pub async fn payment(&self, id: &str, scope: Scope<'_>) -> Result<Payment> {
        crate::model::check_id("paymentId", id)?;
        store::payments::get(self.pool(), id, scope.principal())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no payment {id}")))
    }

    /// The payee hears it was paid: the message is kept, and checked on chain. Its addresses and
    /// transaction hash are kept in one form (typed, then written lower case), so one transfer
    /// cannot be claimed twice under two spellings: a transaction pays this payee once.
    pub(crate) async fn on_paid(&self, mut p: Payment, message: &Message, signature: &str) -> Result<()> {
        let payer: Address = agora_identity::parse_address(&p.payer_addr)
            .map_err(|e| Error::BadInput(format!("payerAddr: {e}")))?;
        verify(message, signature, payer)?;
        if agora_identity::parse_address(&p.payee_addr).ok() != Some(self.node_id()) {
            return Err(Error::BadInput(format!(
                "payment {} is to {}, not this node",
                p.payment_id, p.payee_addr
            )));
        }
        crate::model::check_id("paymentId", &p.payment_id)?;
        let hash: B256 = p.details.parse().map_err(|_| {
            Error::BadInput(format!(
                "payment {}: details {:?} is not a transaction hash",
                p.payment_id, p.details
            ))
        })?;
        p.details = format!("{hash:#x}");
        p.payer_addr = format!("{payer:#x}");
        p.payee_addr = format!("{:#x}", self.node_id());
        for share in p.agreement_payments.iter().chain(&p.activity_payments) {
            let id = share.agreement_id.as_deref().unwrap_or_default();
            let agreement = self.agreement(id).await?;
            if agreement.role != Role::Provider || agreement.requestor != payer {
                return Err(Error::BadInput(format!(
                    "payment {} names agreement {id}, which {} is not the payer of",
                    p.payment_id, p.payer_addr
                )));
            }
        }
        let shares =
            p.agreement_payments.iter().chain(&p.activity_payments).try_fold(Decimal::ZERO, |sum, s| {
                (s.amount >= Decimal::ZERO).then_some(sum.checked_add(s.amount)).flatten()
            });
        if shares != Some(p.amount) || p.amount <= Decimal::ZERO {
            return Err(Error::BadInput(format!(
                "payment {} of {} names shares that do not add up to it, or a negative share",
                p.payment_id, p.amount
            )));
        }
        let mut tx = self.pool().begin().await?;
        // Counted under a lock of the payer, so notices arriving at once cannot pass the bound.
        store::lock(&mut tx, &format!("paid {}", p.payer_addr)).await?;
        let pending = store::payments::unverified_of_payer(&mut *tx, &p.payer_addr).await?;
        if pending >= PENDING_PER_PAYER {
            return Err(Error::Unreachable(format!(
                "{pending} payments from {} wait to be found on chain; send this one again later",
                p.payer_addr
            )));
        }
        if !store::payments::insert(&mut *tx, &p, "payee", signature, false).await? {
            // The same payment again (the payer's outbox retries) is taken once; another payment
            // naming a transaction already counted for this payee is refused.
            let again =
                store::payments::same_or_same_transfer(&mut *tx, &p.payment_id, &p.details, &p.payee_addr)
                    .await?;
            if again.as_deref() != Some(p.payment_id.as_str()) {
                return Err(Error::BadInput(format!(
                    "payment {}: transaction {} already paid this node's payment {}",
                    p.payment_id,
                    p.details,
                    again.unwrap_or_default()
                )));
            }
        }
        tx.commit().await?;
        self.inner.arrivals.notify_waiters();
        Ok(())
    }

    /// Checks the payments this node received until `stop`: each against its transaction's
    /// receipt, once it has the network's confirmations.
    pub async fn check_arrivals(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let woken = self.inner.arrivals.notified();
            if let Err(e) = self.check_once().await {
                tracing::warn!(error = %e, "checking received payments");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = woken => {}
            }
        }
    }

    async fn check_once(&self) -> Result<()> {
        // The notices due for a look, a bounded number a round, so a flood of them costs a
        // bounded number of chain calls; each is looked at again later and later.
        for p in store::payments::due_for_check(self.pool(), CHECKS_PER_ROUND).await? {
            // Whether a node of the network answered: only an answer that the transaction is not
            // there (or not confirmed) yet counts against the notice; an outage does not.
            let mut answered = false;
            let verdict = match self.config().network(&p.payment_platform) {
                None => Some(Err(format!("no network settings for platform {}", p.payment_platform))),
                Some(network) => {
                    let mut verdict = None;
                    for url in &network.rpc_urls {
                        match check_on_chain(&Rpc::new(url.clone()), network, &p).await {
                            Ok(v) => {
                                (answered, verdict) = (true, v);
                                break;
                            }
                            Err(e) => tracing::debug!(error = %e, "checking a payment on chain"),
                        }
                    }
                    verdict
                }
            };
            match verdict {
                None if !answered => {}
                None => {
                    // Not on chain (or not confirmed) yet: looked at again after 1, 2, 4 … 60 s,
                    // and given up on once it has waited longer than a notice may.
                    store::payments::check_later(self.pool(), &p.payment_id, NOTICE_LIFETIME.as_secs_f64())
                        .await?;
                }
                Some(Ok(())) => {
                    let mut tx = self.pool().begin().await?;
                    store::payments::verified(&mut *tx, &p.payment_id).await?;
                    tracing::info!(payment = %p.payment_id, tx = %p.details, amount = %p.amount, "payment found on chain");
                    let agreements: std::collections::BTreeSet<_> = p
                        .agreement_payments
                        .iter()
                        .chain(&p.activity_payments)
                        .filter_map(|s| s.agreement_id.clone())
                        .collect();
                    for a in &agreements {
                        Self::settle_covered_in(&mut tx, a, true).await?;
                    }
                    tx.commit().await?;
                    self.events_changed();
                }
                Some(Err(problem)) => {
                    tracing::warn!(payment = %p.payment_id, tx = %p.details, %problem, "a payment is not on chain as its payer says");
                    store::payments::problem(self.pool(), &p.payment_id, &problem).await?;
                }
            }
        }
        Ok(())
    }
}

/// `None` while the transaction is not (confirmed) on chain yet; else whether it pays what the
/// payment says: sent by the payer, and moving exactly the amount in the token to this payee,
/// from the payer or from the contract it called.
async fn check_on_chain(
    rpc: &Rpc,
    network: &crate::platform::Network,
    p: &Payment,
) -> Result<Option<Result<(), String>>, crate::chain::RpcError> {
    let hash: B256 = match p.details.parse() {
        Ok(h) => h,
        Err(_) => return Ok(Some(Err(format!("{:?} is not a transaction hash", p.details)))),
    };
    if rpc.chain_id().await? != network.chain_id {
        return Ok(None);
    }
    let Some(receipt) = rpc.receipt(hash).await? else { return Ok(None) };
    if rpc.block_number().await? + 1 < receipt.block_number.to::<u64>() + network.confirmations {
        return Ok(None);
    }
    let payer = agora_identity::parse_address(&p.payer_addr).ok();
    let payee = agora_identity::parse_address(&p.payee_addr).ok();
    let units = match to_token_units(p.amount, network.decimals) {
        Ok(u) => u,
        Err(e) => return Ok(Some(Err(format!("amount {}: {e}", p.amount)))),
    };
    Ok(Some(if !receipt.succeeded() {
        Err("the transaction reverted".into())
    } else if Some(receipt.from) != payer {
        Err(format!("the transaction is from {:#x}, not the payer", receipt.from))
    } else if !receipt.transfers().iter().any(|t| {
        // From the payer itself (a plain transfer), or from the contract the payer called (its
        // batch payer, wherever it deployed one).
        let from_payer = Some(t.from) == payer || Some(t.from) == receipt.to;
        t.token == network.token && from_payer && Some(t.to) == payee && t.value == units
    }) {
        Err(format!("the transaction moves no {} of the token to {}", p.amount, p.payee_addr))
    } else {
        Ok(())
    }))
}

impl Payments {
    /// Settles the accepted documents of an agreement that what was paid for it covers, in `tx`:
    /// an invoice when the agreement's payments reach its amount; a debit note when its
    /// activity's payments reach its total, or its agreement's invoice is covered. Payments count
    /// on the payer's side once its orders are mined, on the payee's once it found them on chain.
    pub(crate) async fn settle_covered_in(
        tx: &mut sqlx::PgConnection,
        agreement_id: &str,
        payee_side: bool,
    ) -> Result<Vec<(Kind, String)>> {
        let paid = if payee_side {
            store::payments::received_for_agreement(&mut *tx, agreement_id).await?
        } else {
            store::orders::paid_of_agreement(&mut *tx, agreement_id).await?
        };
        let total: Decimal = paid.iter().map(|(_, a)| *a).sum();
        let for_activity = |activity: &Option<String>| -> Decimal {
            paid.iter().filter(|(a, _)| a.is_some() && a == activity).map(|(_, amount)| *amount).sum()
        };
        let documents = store::documents::accepted_of_agreement(&mut *tx, agreement_id, payee_side).await?;
        let invoice_covered = documents
            .iter()
            .any(|(_, kind, _, amount, _)| kind == Kind::Invoice.as_str() && *amount <= total);
        let mut settled = Vec::new();
        for (id, kind, activity, amount, status) in documents {
            let kind = Kind::parse(&kind).ok_or_else(|| Error::Corrupt(format!("document kind {kind}")))?;
            let covered = match kind {
                Kind::Invoice => amount <= total,
                Kind::DebitNote => invoice_covered || amount <= for_activity(&activity),
            };
            if covered && status == Status::Accepted.as_str() {
                store::documents::settle(&mut *tx, &id).await?;
                Self::record_event(tx, kind, &id, Status::Settled, None).await?;
                settled.push((kind, id));
            }
        }
        Ok(settled)
    }

    /// [`Self::settle_covered_in`] in a transaction of its own.
    pub(crate) async fn settle_covered(&self, agreement_id: &str, payee_side: bool) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let settled = Self::settle_covered_in(&mut tx, agreement_id, payee_side).await?;
        tx.commit().await?;
        if !settled.is_empty() {
            self.events_changed();
        }
        Ok(())
    }
}
