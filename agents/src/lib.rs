//! The agents: the provider side that decides what to offer and at what price, and the requestor
//! side that decides which offers to take and what the work may cost.
//!
//! Prices follow Golem's linear model, so agora offers read the same to Golem tools:
//! `golem.com.usage.vector` names the usage counters, and `golem.com.pricing.model.linear.coeffs`
//! gives one price per counter plus, last, a fixed price. [`LinearPricing`] reads and writes those
//! properties and computes what a given usage costs, exactly, in decimals.
//!
//! - [`verify`]: the requestor's verdict on a job's results: commitments, Bacalhau's rules for
//!   which results are verified, the reveal, and reputation.
//! - [`ProviderAgent`]: the provider's side, run by `agora node run --provider`: offers from the
//!   operator's presets, counters, approvals within capacity, bid rules, invoices, and the
//!   commit and reveal of its runs ([`wire`], on `/agora/verify/1`).
//! - [`Jobs`]: the requestor's job runner: a [`JobSpec`] run on several providers, verified, and
//!   paid only where verified. Jobs wait in a Postgres queue that several requestor nodes can
//!   share; web services' end users ([`Principal`]) have their own keys, caps and rate limits,
//!   and each step can be POSTed to a signed webhook.
//!
//! This crate is not the market protocol or the payment driver; it holds the decisions and
//! drives those through their services.
//!
//! ```
//! use agora_agents::LinearPricing;
//! use rust_decimal::Decimal;
//! let props = serde_json::json!({
//!     "golem.com.pricing.model": "linear",
//!     "golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec"],
//!     "golem.com.pricing.model.linear.coeffs": [0.001, 0.002, 0.5],
//! });
//! let pricing = LinearPricing::from_properties(&agora_grammar::flatten(&props).unwrap()).unwrap();
//! // 100 s of wall time and 50 s of CPU: 0.1 + 0.1 + 0.5.
//! assert_eq!(pricing.cost(&[Decimal::from(100), Decimal::from(50)]).unwrap(), Decimal::new(7, 1));
//! ```

mod error;
pub mod job;
pub mod provider;
pub mod runner;
pub mod verify;
pub mod wire;

pub(crate) use error::panic_message;
pub use error::{Error, Result};
pub use job::{JobSpec, JobState};
pub use provider::{Dishonesty, Machine, ProviderAgent, ProviderConfig};
pub use runner::{
    CreatedEndUser, Delivery, EndUser, ExecutionView, JobDetail, JobEvent, JobFilter, JobPage, JobView, Jobs,
    NewEndUser, Principal, Submitted,
};

// Pricing is part of an agreement's terms, so the market holds it; agents decide with it.
pub use agora_agreement::{LinearPricing, PricingError};
