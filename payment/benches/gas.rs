//! Gas per payee of agora's batch payer, on a fresh anvil this benchmark starts.
//!
//! Prints one line per case: `batch=<N> payees=<funded|fresh> gas_per_payee=<G>`, where G is the
//! whole transaction's gas (21,000 base and the batch's one `transferFrom` included) divided by N.
//! A funded payee already holds some of the token, so paying it rewrites a balance; a fresh one
//! costs a new storage slot. `batch=plain-transfer` is one ERC-20 `transfer`, for comparison.
//!
//! Run: `cargo bench -p agora-payment --bench gas`.

use agora_payment::chain::dev::{self, ANVIL_DEPLOYER_KEY, AnvilProcess};
use agora_payment::chain::{BatchPayer, TestToken, pack_payee};
use alloy_primitives::{Address, U256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;

#[tokio::main]
async fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let anvil = AnvilProcess::start(port).await.unwrap_or_else(|e| panic!("{e}"));
    let rpc = &anvil.rpc;
    let payer: PrivateKeySigner = ANVIL_DEPLOYER_KEY.parse().unwrap();
    let deployed = dev::deploy(rpc, &payer).await.unwrap();
    let token = deployed.token;
    let units = U256::from(10u128.pow(24));
    dev::faucet(rpc, &payer, token, payer.address(), units).await.unwrap();
    let approve = TestToken::approveCall { spender: deployed.batch, amount: U256::MAX }.abi_encode();
    dev::transact(rpc, &payer, Some(token), approve.into()).await.unwrap();

    let mut next = 1u64;
    let mut fresh = |n: usize| -> Vec<Address> {
        (0..n)
            .map(|_| {
                next += 1;
                Address::left_padding_from(&next.to_be_bytes()).create(0)
            })
            .collect()
    };
    let pay = |payees: &[Address]| {
        let amount = U256::from(1_000_000_000_000u64);
        let packed: Vec<_> = payees.iter().map(|p| pack_payee(*p, amount).unwrap()).collect();
        let total = amount * U256::from(payees.len());
        BatchPayer::payCall { token, total, packed }.abi_encode()
    };

    for n in [1usize, 10, 100] {
        let payees = fresh(n);
        let first = dev::transact(rpc, &payer, Some(deployed.batch), pay(&payees).into()).await.unwrap();
        println!("batch={n} payees=fresh gas_per_payee={}", first.gas_used.to::<u64>() / n as u64);
        let again = dev::transact(rpc, &payer, Some(deployed.batch), pay(&payees).into()).await.unwrap();
        println!("batch={n} payees=funded gas_per_payee={}", again.gas_used.to::<u64>() / n as u64);
        let balance = dev::token_balance(rpc, token, payees[0]).await.unwrap();
        assert_eq!(balance, U256::from(2_000_000_000_000u64), "each payee got both payments");
    }
    let to = fresh(1)[0];
    for kind in ["fresh", "funded"] {
        let call = TestToken::transferCall { to, amount: U256::from(1u8) }.abi_encode();
        let receipt = dev::transact(rpc, &payer, Some(token), call.into()).await.unwrap();
        println!("batch=plain-transfer payees={kind} gas_per_payee={}", receipt.gas_used.to::<u64>());
    }
}
