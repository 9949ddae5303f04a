//! The node's peer-to-peer network.
//!
//! One libp2p swarm per node, owned by one task ([`Network`]); everything else talks to it through
//! a cheap-to-clone [`NetHandle`] that sends commands over a bounded channel, each with a oneshot
//! for its reply. The transport is TCP with noise and yamux, optionally behind a pre-shared swarm
//! key (pnet) that keeps a private cluster apart from any other. Peers are found from `--peer`
//! bootstrap addresses through Kademlia, and on a LAN through mDNS when asked for.
//!
//! The node's libp2p key is its identity's secp256k1 key, so a peer id names a node address
//! (`agora_identity::address_of_peer`).
//!
//! Inbound traffic has one route per protocol ([`routes`]): the part of the node that serves a
//! protocol asks for its receiver with [`NetHandle::serve`], and gets that protocol's requests
//! and no others; gossip topics likewise with [`NetHandle::follow`], whose messages a node hears
//! once it has joined the topic ([`NetHandle::join`]). Handlers per protocol are
//! capped ([`Spec::handlers`]); a request beyond the cap, over a peer's rate, or on a protocol
//! nobody serves is refused with a message the sender sees as [`Error::Refused`]. The protocols
//! are listed in one table (`protocol.rs`): adding one is a row there plus its handler.
//!
//! Besides request and answer, a node can open a byte stream to a peer on a [`Pipe`] protocol
//! ([`NetHandle::open`]), for what is too large to answer in one message: a blob, sent whole.
//! The part of the node that serves a pipe takes its streams from [`NetHandle::accept`].
//!
//! This crate is not the market: it carries bytes between peers under versioned protocol names
//! (`/agora/…/1`) and knows nothing of offers or agreements.
//!
//! ```no_run
//! # async fn run() -> Result<(), agora_net::Error> {
//! let key = libp2p::identity::Keypair::generate_secp256k1();
//! let config = agora_net::NetConfig {
//!     listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
//!     ..Default::default()
//! };
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let (net, task) = agora_net::start(key, config, shutdown.clone()).await?;
//! println!("{:?}", net.status().await?);
//! shutdown.cancel();
//! task.await.ok();
//! # Ok(()) }
//! ```

mod behaviour;
mod handle;
mod in_flight;
mod network;
mod pipes;
mod protocol;
pub mod routes;

pub use behaviour::{Behaviour, BehaviourEvent};
pub use handle::{NetHandle, NetStatus};
pub use libp2p::{Multiaddr, PeerId, multiaddr::Protocol, pnet::PreSharedKey};
pub use network::{NetConfig, Network, start};
pub use pipes::{Incoming, Piped};
pub use protocol::{ACTIVITY_HANDLERS, CHANNELS, Channel, MARKET_HANDLERS, Pipe, Protocols, Spec};
pub use routes::{Gossip, Request, RouteError};

/// Errors of the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {message}")]
    Listen { addr: Multiaddr, message: String },
    #[error("cannot dial {addr}: {message}")]
    Dial { addr: Multiaddr, message: String },
    #[error("network setup: {0}")]
    Setup(String),
    #[error("swarm key: {0}")]
    SwarmKey(String),
    #[error("the network task has stopped")]
    Stopped,
    #[error("request to {peer} failed: {message}")]
    Request { peer: String, message: String },
    /// The other node's network refused the request (busy, rate limited, not served).
    #[error("{peer} refused the request: {message}")]
    Refused { peer: String, message: String },
    #[error("not a peer id: {0}")]
    BadPeer(String),
    /// The answer did not have the protocol's shape.
    #[error("{0}")]
    BadAnswer(String),
    #[error(transparent)]
    Route(#[from] RouteError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a swarm key file in the usual `/key/swarm/psk/1.0.0/` format (three lines: that header,
/// `/base16/`, and 64 hex digits).
pub fn read_swarm_key(text: &str) -> Result<PreSharedKey> {
    text.trim().parse::<PreSharedKey>().map_err(|e| Error::SwarmKey(e.to_string()))
}
