//! The market: providers' offers, requestors' demands, and the negotiation that turns a matching
//! pair into an agreement both sides sign.
//!
//! - [`Offer`]: an offer's content and its id, a SHA-256 over the canonical JSON of everything it
//!   says — flattened properties, constraints, owner and timestamps. A received offer whose id
//!   does not match its content is refused ([`Offer::check_id`]).
//! - [`wire`]: what nodes say to each other — gossip [`Announcement`]s carry offer ids only;
//!   bodies are fetched from their provider with a [`MarketRequest`].
//! - [`Market`]: subscriptions from the REST API, offers from the network, matching (with the
//!   grammar crate's indexed matcher), proposals and events, all in Postgres (the store, which
//!   no other crate reaches).
//! - Negotiation (`negotiation.rs`, `agreeing.rs`): the state machine of proposals and
//!   agreements; every statement it needs is in the store, the only module that speaks SQL.
//! - [`Agreement`]: the typed agreement, made from the provider's Draft and the requestor's
//!   proposal it answered, with accessors for the terms payments and agents read (pricing,
//!   usage vector, payment platform, debit-note and payment timeouts).
//!   [`Market::agreement`] is how the rest of the node reads one.
//! - [`serve`]: the market on the network — its `/agora/market/2` route, announcements on
//!   [`OFFERS_TOPIC`], offer fetches and the outbox — through a [`Courier`], which the node's
//!   [`agora_net::NetHandle`] is.
//! - [`api`]: the JSON shapes of Golem's `/market-api/v1`.
//!
//! This crate is not the network itself, nor the grammar that matches offers.
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

mod agreeing;
mod agreement;
pub mod api;
mod courier;
mod error;
mod ids;
mod negotiation;
mod network;
mod offer;
mod outbox;
mod pricing;
mod service;
mod state;
mod store;
pub mod wire;

pub use agreement::{Agreement, MAX_THREADS, PaymentPlatform, TermsError, cpu_threads, fuel_limit, keys};
pub use courier::{Courier, Delivery};
pub use error::{Error, Result};
pub use ids::{MAX_ID_LEN, is_valid_id};
pub use network::{ANNOUNCE_INTERVAL, serve};
pub use offer::{Error as OfferError, Offer};
pub use pricing::{LinearPricing, PricingError, json_decimal};
pub use service::{DEFAULT_LIFETIME, DEFAULT_PROPOSAL_LIFETIME, FollowUp, Market};
pub use state::{AgreementState, ProposalState, Role};
pub use store::{Presence, Stored};
pub use wire::{
    AgreementBody, Announcement, DemandTerms, MarketRequest, MarketResponse, OFFERS_TOPIC, OfferBody,
    OfferTerms, WireProposal,
};

/// The principal of what the node does for itself or its admin token: its provider agent's offers,
/// and anything from before principals were recorded. An app-key's principal is its service's
/// name, `app-key:<name>@<micros>`.
pub const ADMIN_PRINCIPAL: &str = "admin";

/// Offer ids one announcement may carry; more are ignored (a provider with more offers spreads
/// them over several announcements).
pub const MAX_OFFERS_PER_ANNOUNCEMENT: usize = 256;
