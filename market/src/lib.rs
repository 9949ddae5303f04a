//! The market: providers' offers, requestors' demands, and (in later parts) the negotiation that
//! turns a matching pair into an agreement both sides sign.
//!
//! - [`Offer`]: an offer's content and its id, a SHA-256 over the canonical JSON of everything it
//!   says — flattened properties, constraints, owner and timestamps. A received offer whose id
//!   does not match its content is refused ([`Offer::check_id`]).
//! - [`wire`]: what nodes say to each other — gossip [`Announcement`]s carry offer ids only;
//!   bodies are fetched from their provider with a [`MarketRequest`].
//! - [`Market`]: subscriptions from the REST API, offers from the network, matching (with the
//!   grammar crate's indexed matcher), proposals and events, all in Postgres ([`MarketStore`]).
//! - [`api`]: the JSON shapes of Golem's `/market-api/v1`.
//!
//! This crate is not the network that carries offers (the node wires [`Market`] to it), nor the
//! grammar that matches them.
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

pub mod api;
mod error;
mod negotiation;
mod offer;
mod service;
mod store;
pub mod wire;

pub use error::{Error, Result};
pub use negotiation::Courier;
pub use offer::{Error as OfferError, Offer};
pub use service::{DEFAULT_LIFETIME, DEFAULT_PROPOSAL_LIFETIME, FollowUp, Market};
pub use store::{MarketStore, Presence, Stored};
pub use wire::{
    AgreementBody, Announcement, MarketRequest, MarketResponse, OFFERS_TOPIC, OfferBody, WireProposal,
};

/// Offer ids one announcement may carry; more are ignored (a provider with more offers spreads
/// them over several announcements).
pub const MAX_OFFERS_PER_ANNOUNCEMENT: usize = 256;
