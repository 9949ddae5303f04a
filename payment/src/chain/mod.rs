//! The chain as the ERC-20 driver sees it: a JSON-RPC endpoint, agora's two contracts, and
//! EIP-1559 transactions signed here, so that the driver holds every signed byte before it is sent.

mod contracts;
pub mod dev;
mod rpc;
mod tx;

pub use contracts::{BatchPayer, Contract, MAX_BATCH_AMOUNT, TestToken, pack_payee};
pub use rpc::{Receipt, Rpc, RpcError, TransferLog};
pub use tx::{Fees, SignedTx, sign_eip1559};
