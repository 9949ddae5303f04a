//! The directed request-response protocols, in one table.
//!
//! Adding a protocol is one row of the [`protocols!`] table below (a [`Channel`] variant, the
//! field of the behaviour that carries it, its versioned name, request timeout and handler cap),
//! plus the part of the node that serves it with [`crate::NetHandle::serve`]. The macro makes
//! the enum, the spec, and the behaviour with one field per protocol.

use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, request_response};
use std::time::Duration;

/// Directed requests one connection may carry at once, per protocol.
pub const MAX_CONCURRENT_STREAMS: usize = 64;

/// The request-response behaviour of one protocol: JSON both ways, decoded at the edges by the
/// crate that owns the protocol's message types.
pub type JsonProtocol = request_response::json::Behaviour<serde_json::Value, serde_json::Value>;

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

/// Market handlers at once. A handler is a few database statements; 32 of them keep half the
/// node's pool free for the REST API.
pub const MARKET_HANDLERS: usize = 32;
/// Activity handlers at once. Most are short; a results request may wait up to a minute on a
/// batch, so there is room for a few dozen requestors polling.
pub const ACTIVITY_HANDLERS: usize = 48;

/// Payment handlers at once: each a few database statements, like the market's.
pub const PAYMENT_HANDLERS: usize = 16;

/// Verification handlers at once: a commitment or a reveal is a lookup and a signature.
pub const VERIFY_HANDLERS: usize = 16;

/// One directed protocol's events.
pub(crate) type RequestEvent = request_response::Event<serde_json::Value, serde_json::Value>;

macro_rules! protocols {
    ($($(#[$doc:meta])* $variant:ident => $field:ident {
        name: $name:literal, timeout: $timeout:expr, handlers: $handlers:expr $(,)?
    }),+ $(,)?) => {
        /// A directed request-response protocol.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Channel {
            $($(#[$doc])* $variant),+
        }

        /// Every protocol.
        pub const CHANNELS: &[Channel] = &[$(Channel::$variant),+];

        impl Channel {
            pub const fn spec(self) -> Spec {
                match self {
                    $(Self::$variant => Spec { name: $name, timeout: $timeout, handlers: $handlers }),+
                }
            }
        }

        /// The request-response behaviours of every protocol, a field each.
        // Not `Debug`: libp2p's behaviours do not implement it.
        #[allow(missing_debug_implementations)]
        #[derive(NetworkBehaviour)]
        pub struct Protocols {
            $(pub $field: JsonProtocol),+
        }

        impl Protocols {
            pub(crate) fn new() -> Self {
                Self { $($field: json_protocol(Channel::$variant)),+ }
            }

            /// The behaviour of one protocol.
            pub fn get(&mut self, channel: Channel) -> &mut JsonProtocol {
                match channel {
                    $(Channel::$variant => &mut self.$field),+
                }
            }
        }

        /// A protocol's event, with the protocol it came on.
        pub(crate) fn split(event: ProtocolsEvent) -> (Channel, RequestEvent) {
            match event {
                $(ProtocolsEvent::$variant(e) => (Channel::$variant, e)),+
            }
        }
    };
}

protocols! {
    /// Offer bodies, announcements to one peer, proposals, agreements.
    Market => market { name: "/agora/market/2", timeout: Duration::from_secs(15), handlers: MARKET_HANDLERS },
    /// Activity control, results and content-addressed blobs. Requests may wait on work (a long
    /// poll of results, a deploy), so the timeout is longer.
    Activity => activity { name: "/agora/activity/3", timeout: Duration::from_secs(75), handlers: ACTIVITY_HANDLERS },
    /// Debit notes, invoices, acceptances, rejections and payments: each a few statements.
    Payment => payment { name: "/agora/payment/1", timeout: Duration::from_secs(15), handlers: PAYMENT_HANDLERS },
    /// A job's commit and reveal: each provider's sealed commitment to its result, then the
    /// winners' digests.
    Verify => verify { name: "/agora/verify/1", timeout: Duration::from_secs(15), handlers: VERIFY_HANDLERS },
}

fn json_protocol(channel: Channel) -> JsonProtocol {
    let spec = channel.spec();
    request_response::json::Behaviour::new(
        [(StreamProtocol::new(spec.name), request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(spec.timeout)
            .with_max_concurrent_streams(MAX_CONCURRENT_STREAMS),
    )
}

/// A protocol that carries one byte stream per request rather than a JSON answer: a blob, sent
/// whole from where the fetcher asks to start. The crate that owns it frames the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pipe {
    /// Content-addressed blobs, from an offset to their end.
    Blob,
}

impl Pipe {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Blob => "/agora/blob/1",
        }
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Channel {
    pub const fn name(self) -> &'static str {
        self.spec().name
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
