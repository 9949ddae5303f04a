//! Money in agora: what a requestor owes, and how it reaches the provider on chain.
//!
//! - Amounts are [`rust_decimal::Decimal`] in the domain (and `NUMERIC` in Postgres), never `f64`.
//!   On chain an ERC-20 amount is a `U256` count of the token's smallest unit; [`to_token_units`]
//!   and [`from_token_units`] convert exactly, refusing anything that would round.
//! - [`Payments`] keeps allocations, the debit notes and invoices a provider issues, their events,
//!   and the payments made and received; it speaks `/agora/payment/1` with other nodes.
//! - Its ERC-20 driver pays accepted amounts in batches, exactly once (see `driver.rs`), and a
//!   payee counts a payment only after it found the transfer on chain.
//!
//! This crate is not the market or the verifier: it is told what to pay and pays it.
//!
//! ```
//! use rust_decimal::Decimal;
//! let units = agora_payment::to_token_units(Decimal::new(15, 1), 18).unwrap(); // 1.5 tokens
//! assert_eq!(units.to_string(), "1500000000000000000");
//! assert_eq!(agora_payment::from_token_units(units, 18).unwrap(), Decimal::new(15, 1));
//! ```

mod acceptance;
mod account;
mod allocations;
mod amount;
pub mod chain;
mod documents;
mod driver;
mod error;
pub mod model;
mod network;
mod outbox;
mod platform;
mod service;
mod settle;
mod store;
pub mod wire;

pub use allocations::{PROTOCOL_VERSION, PROTOCOL_VERSION_KEY};
pub use amount::{AmountError, from_token_units, to_token_units};
pub use documents::{NewDebitNote, NewInvoice, usage_cost};
pub use error::{Error, Result};
pub use network::serve;
pub use platform::{DEV_CHAIN_ID, DEV_RPC_URL, Network, PaymentConfig};
pub use service::{Owned, PaymentAgreements, PaymentCourier, Payments, Scope};
pub use wire::{PaymentRequest, PaymentResponse};
