//! The market: providers' offers, requestors' demands, and (in later parts) the negotiation that
//! turns a matching pair into an agreement both sides sign.
//!
//! An offer travels between nodes, so its id must be checkable by anyone who holds it:
//! [`Offer::id`] is a SHA-256 over the canonical JSON of everything the offer says — flattened
//! properties, constraints, owner and timestamps. A received offer whose id does not match its
//! content is refused ([`Offer::check_id`]).
//!
//! This crate is not the network that carries offers, nor the grammar that matches them.
//!
//! ```
//! use agora_market::Offer;
//! use chrono::{TimeZone, Utc};
//! let offer = Offer::new(
//!     &serde_json::json!({"golem": {"runtime": {"name": "wasmtime"}}}),
//!     "(golem.srv.comp.expiration>0)",
//!     agora_identity::Identity::random().address(),
//!     Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
//!     Utc.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap(),
//! )
//! .unwrap();
//! offer.check_id(&offer.id()).unwrap();
//! ```

mod offer;

pub use offer::{Error, Offer};
