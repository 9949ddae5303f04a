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
//! - Agreements ([`agora_agreement::Agreement`], shared data in their own crate): made here from
//!   the provider's Draft and the requestor's proposal it answered, signed by both, and kept.
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
pub mod api;
mod courier;
mod error;
mod ids;
mod negotiation;
mod network;
mod offer;
mod outbox;
mod service;
mod state;
mod store;
pub mod wire;

pub use courier::{Courier, Delivery};
pub use error::{Error, Result};
pub use network::{ANNOUNCE_INTERVAL, serve};
pub use offer::{Error as OfferError, Offer};
pub use service::{DEFAULT_LIFETIME, DEFAULT_PROPOSAL_LIFETIME, FollowUp, Market};
pub use state::ProposalState;
pub use store::{Presence, Stored};
pub use wire::{Announcement, MarketRequest, MarketResponse, OFFERS_TOPIC, OfferBody, WireProposal};

/// Offer ids one announcement may carry; more are ignored (a provider with more offers spreads
/// them over several announcements).
pub const MAX_OFFERS_PER_ANNOUNCEMENT: usize = 256;
