use crate::Channel;
use crate::protocol::{JsonProtocol, Protocols, RequestEvent};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, gossipsub, identify, kad, mdns, ping};
use std::time::Duration;

/// The largest gossip message: offer announcements carry ids, not bodies.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;

/// Every protocol of an agora node, in one behaviour.
// Not `Debug`: libp2p's behaviours do not implement it.
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// The directed protocols (`crate::protocol`).
    pub requests: Protocols,
    /// Byte streams ([`crate::Pipe`]), opened and accepted through a [`libp2p_stream::Control`].
    pub streams: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub fn new(key: &Keypair, with_mdns: bool) -> crate::Result<Self> {
        let setup = |e: &dyn std::fmt::Display| crate::Error::Setup(e.to_string());
        let peer_id = key.public().to_peer_id();
        let identify = identify::Behaviour::new(
            identify::Config::new("/agora/id/1".into(), key.public())
                .with_agent_version(format!("agora/{}", env!("CARGO_PKG_VERSION"))),
        );
        let mut kad_config = kad::Config::new(StreamProtocol::new("/agora/kad/1"));
        kad_config.set_query_timeout(Duration::from_secs(30));
        let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        kad.set_mode(Some(kad::Mode::Server));
        // Gossip carries hints only: an announcement names offer ids and their author, and the
        // node confirms everything it acts on with a direct request to that author over the
        // authenticated connection (a forged author can only make it ask an honest node a
        // question). So messages are not signed: verifying a secp256k1 signature on every copy
        // of every announcement was most of the CPU time of a 60-node market.
        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(MAX_GOSSIP_BYTES)
            .validation_mode(gossipsub::ValidationMode::Permissive)
            .heartbeat_interval(Duration::from_secs(1))
            .build()
            .map_err(|e| setup(&e))?;
        let gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Author(peer_id), gossip_config)
                .map_err(|e| setup(&e))?;
        let mdns = if with_mdns {
            Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id).map_err(|e| setup(&e))?)
        } else {
            None
        };
        Ok(Self {
            identify,
            ping: ping::Behaviour::default(),
            kad,
            gossipsub,
            mdns: mdns.into(),
            requests: Protocols::new(),
            streams: libp2p_stream::Behaviour::new(),
        })
    }

    /// The behaviour of one directed protocol.
    pub fn protocol(&mut self, channel: Channel) -> &mut JsonProtocol {
        self.requests.get(channel)
    }
}

/// A behaviour event: a directed protocol's, with the protocol it came on, or another.
// Matched at once where it is made; boxing the large variant would allocate per event for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Split {
    Request(Channel, RequestEvent),
    Other(BehaviourEvent),
}

pub(crate) fn split(event: BehaviourEvent) -> Split {
    match event {
        BehaviourEvent::Requests(e) => {
            let (channel, event) = crate::protocol::split(e);
            Split::Request(channel, event)
        }
        other => Split::Other(other),
    }
}
