//! The directed request-response protocols, in one table.
//!
//! Adding a protocol: a [`Channel`] variant with its row in [`Channel::spec`], and its field in
//! [`crate::Behaviour`] (named in `Behaviour::protocol` and `split`). The part of the node that
//! serves it asks for its requests with [`crate::NetHandle::serve`].

use std::time::Duration;

/// A directed request-response protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Offer bodies, announcements to one peer, proposals, agreements.
    Market,
    /// Activity control, results and content-addressed blobs.
    Activity,
}

/// What the network needs to know of a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The versioned protocol name.
    pub name: &'static str,
    /// How long a request may take before it fails.
    pub timeout: Duration,
    /// Requests handled at once, at most, from all peers together; more are refused as busy.
    pub handlers: usize,
}

/// Every protocol, for building the behaviour and for tests.
pub const CHANNELS: [Channel; 2] = [Channel::Market, Channel::Activity];

/// Market handlers at once. A handler is a few database statements; 32 of them keep half the
/// node's pool free for the REST API.
pub const MARKET_HANDLERS: usize = 32;
/// Activity handlers at once. Most are short; a results request may wait up to a minute on a
/// batch, so there is room for a few dozen requestors polling.
pub const ACTIVITY_HANDLERS: usize = 48;

impl Channel {
    pub const fn spec(self) -> Spec {
        match self {
            Self::Market => {
                Spec { name: "/agora/market/1", timeout: Duration::from_secs(15), handlers: MARKET_HANDLERS }
            }
            // Activity requests may wait on work (a long poll of results, a deploy).
            Self::Activity => Spec {
                name: "/agora/activity/1",
                timeout: Duration::from_secs(75),
                handlers: ACTIVITY_HANDLERS,
            },
        }
    }

    pub const fn name(self) -> &'static str {
        self.spec().name
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
