//! EIP-1559 transactions, signed by the driver itself.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_signer::SignerSync;

/// The fee caps of a transaction, in wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fees {
    pub max_fee: u128,
    pub priority: u128,
}

impl Fees {
    /// Caps that survive the base fee doubling twice: `2 × base + tip`.
    pub fn for_base(base: u128, tip: u128) -> Self {
        let tip = tip.max(1);
        Self { max_fee: base.saturating_mul(2).saturating_add(tip), priority: tip }
    }

    /// Fees for a replacement: nodes accept one only when both caps rise by at least 10 %; this
    /// raises them by 25 %, and at least to `floor`.
    pub fn bumped(self, floor: Fees) -> Self {
        let up = |v: u128| v.saturating_add(v / 4).saturating_add(1);
        Self { max_fee: up(self.max_fee).max(floor.max_fee), priority: up(self.priority).max(floor.priority) }
    }
}

/// A signed transaction, as broadcast.
#[derive(Debug, Clone)]
pub struct SignedTx {
    pub hash: B256,
    pub raw: Bytes,
}

/// Signs a call (or a creation when `to` is `None`) with `signer`.
#[allow(clippy::too_many_arguments)]
pub fn sign_eip1559(
    signer: &alloy_signer_local::PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Option<Address>,
    data: Bytes,
    gas_limit: u64,
    fees: Fees,
) -> Result<SignedTx, alloy_signer::Error> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: fees.max_fee,
        max_priority_fee_per_gas: fees.priority,
        to: to.map_or(TxKind::Create, TxKind::Call),
        value: U256::ZERO,
        access_list: Default::default(),
        input: data,
    };
    let signature = signer.sign_hash_sync(&tx.signature_hash())?;
    let envelope = TxEnvelope::from(tx.into_signed(signature));
    Ok(SignedTx { hash: *envelope.tx_hash(), raw: envelope.encoded_2718().into() })
}
