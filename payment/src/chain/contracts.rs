//! agora's contracts: their call interfaces, and the bytecode compiled by `scripts/contracts` from
//! `payment/contracts/*.sol` (committed beside the sources; `scripts/contracts --check` proves they
//! match).

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::sol;

sol! {
    /// The standard ERC-20 calls the driver makes, plus the dev token's faucet.
    interface TestToken {
        event Transfer(address indexed from, address indexed to, uint256 value);
        function balanceOf(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function approve(address spender, uint256 amount) external returns (bool);
        function transfer(address to, uint256 amount) external returns (bool);
        function faucet(address to, uint256 amount) external;
    }

    /// The batch payer: one transaction, many payees.
    interface BatchPayer {
        function pay(address token, uint256 total, bytes32[] calldata packed) external;
    }
}

/// The largest amount one payee can get in one batch word: 2^96 − 1 token units.
pub const MAX_BATCH_AMOUNT: U256 = U256::from_limbs([u64::MAX, u32::MAX as u64, 0, 0]);

/// One payee's word in a `BatchPayer.pay` call, `amount << 160 | payee`; `None` when the amount
/// does not fit in 96 bits.
pub fn pack_payee(payee: Address, amount: U256) -> Option<B256> {
    (amount <= MAX_BATCH_AMOUNT).then(|| B256::from((amount << 160) | U256::from_be_slice(payee.as_slice())))
}

/// A contract agora deploys on dev networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    TestToken,
    BatchPayer,
}

impl Contract {
    /// Creation code for a deployment transaction (neither constructor takes arguments).
    pub fn creation_code(self) -> Bytes {
        #[derive(serde::Deserialize)]
        struct Artifact {
            bytecode: Bytes,
        }
        let text = match self {
            Self::TestToken => include_str!("../../contracts/artifacts/TestToken.json"),
            Self::BatchPayer => include_str!("../../contracts/artifacts/BatchPayer.json"),
        };
        let artifact: Artifact =
            serde_json::from_str(text).expect("committed contract artifacts are valid JSON");
        artifact.bytecode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payee_word_holds_amount_above_address() {
        let payee = Address::repeat_byte(0xab);
        let word = pack_payee(payee, U256::from(5u8)).unwrap();
        assert_eq!(&word[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&word[12..], payee.as_slice());
        assert!(pack_payee(payee, MAX_BATCH_AMOUNT).is_some());
        assert!(pack_payee(payee, MAX_BATCH_AMOUNT + U256::from(1u8)).is_none());
    }

    #[test]
    fn both_artifacts_have_creation_code() {
        for c in [Contract::TestToken, Contract::BatchPayer] {
            assert!(c.creation_code().len() > 100, "{c:?}");
        }
    }
}
