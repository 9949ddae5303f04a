//! Money in agora: what a requestor owes, and how it reaches the provider on chain.
//!
//! Amounts are [`rust_decimal::Decimal`] in the domain (and `NUMERIC` in Postgres), never `f64`.
//! On chain an ERC-20 amount is a `U256` count of the token's smallest unit; [`to_token_units`] and
//! [`from_token_units`] convert exactly, refusing anything that would round.
//!
//! This crate is not the market or the verifier: it is told what to pay and pays it.
//!
//! ```
//! use rust_decimal::Decimal;
//! let units = agora_payment::to_token_units(Decimal::new(15, 1), 18).unwrap(); // 1.5 tokens
//! assert_eq!(units.to_string(), "1500000000000000000");
//! assert_eq!(agora_payment::from_token_units(units, 18).unwrap(), Decimal::new(15, 1));
//! ```

mod amount;

pub use amount::{AmountError, from_token_units, to_token_units};
pub mod chain;
