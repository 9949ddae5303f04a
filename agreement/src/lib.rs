//! An agreement and its vocabulary, as every part of a node reads it: pure data, no I/O.
//!
//! - [`Agreement`]: the terms both sides signed (the requestor's and the provider's final
//!   proposals, [`AgreementBody`]), who the parties are and where it stands, with accessors for
//!   the terms payments and agents read: pricing, usage vector, payment platform, CPU threads,
//!   fuel, debit-note and payment timeouts.
//! - [`Role`] and [`AgreementState`]: which side a node is, and Golem's agreement states.
//! - [`keys`]: Golem's property names for those terms.
//! - [`LinearPricing`]: Golem's linear price model, read from an offer's properties.
//! - [`is_valid_id`]: what may name a subscription, proposal, agreement or document.
//!
//! The market makes agreements and keeps them; activities, payments and the agents read them
//! through this crate, so none of them depends on the market's service.
//!
//! ```
//! use agora_agreement::{AgreementState, Role, is_valid_id};
//! assert_eq!(AgreementState::parse("Approved"), Some(AgreementState::Approved));
//! assert_eq!(Role::Provider.to_string(), "provider");
//! assert!(is_valid_id("9f9f") && !is_valid_id("a b"));
//! ```

mod body;
mod ids;
mod pricing;
mod state;
mod terms;

#[cfg(any(test, feature = "test-utils"))]
pub use body::fixtures;
pub use body::{AgreementBody, DemandTerms, OfferTerms};
pub use ids::{MAX_ID_LEN, is_valid_id};
pub use pricing::{LinearPricing, PricingError, json_decimal};
pub use state::{AgreementState, Role};
pub use terms::{Agreement, MAX_THREADS, PaymentPlatform, TermsError, cpu_threads, fuel_limit, keys};

/// The principal of what the node does for itself or its admin token: its provider agent's offers,
/// and anything from before principals were recorded. An app-key's principal is its service's
/// name, `app-key:<name>@<micros>`. An agreement belongs to the principal of the subscription it
/// was made from.
pub const ADMIN_PRINCIPAL: &str = "admin";
