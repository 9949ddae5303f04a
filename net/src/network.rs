use crate::behaviour::{Behaviour, BehaviourEvent, Split, split};
use crate::handle::{Command, NetHandle, NetStatus};
use crate::routes::{Gossip, Routes, refusal};
use crate::{Channel, Error, Result};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use libp2p::core::transport::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::SwarmEvent;
use libp2p::{
    Multiaddr, PeerId, Swarm, Transport, gossipsub, identify, kad, mdns, noise, request_response, tcp, yamux,
};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the network starts.
#[derive(Debug, Clone, Default)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers to dial (with or without a `/p2p/<peer id>` suffix).
    pub peers: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// A private network's pre-shared key: only nodes with the same key can connect.
    pub swarm_key: Option<PreSharedKey>,
    /// Gossip topics to join at start ([`NetHandle::join`] joins one later).
    pub topics: Vec<String>,
}

/// Misbehaviours (a forged offer, say) after which a peer is banned.
const PENALTIES_TO_BAN: u32 = 3;
/// How long a ban lasts.
const BAN: Duration = Duration::from_secs(600);

/// Directed requests one peer may make per second before it is refused.
const REQUESTS_PER_PEER_PER_SECOND: u32 = 200;

/// The commands waiting for the network task, at most.
const COMMAND_QUEUE: usize = 64;
/// Connections idle this long are closed. Long, because a connection is how a provider's
/// announcements reach a requestor: the provider does not relay the offers topic, so nothing
/// else keeps the two in touch (a gossip mesh keeps only the connections between nodes that
/// joined the topic).
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

type PendingResponse = Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Channel,
                    request_response::ResponseChannel<serde_json::Value>,
                    Option<serde_json::Value>,
                ),
            > + Send,
    >,
>;

/// The task that owns the swarm. Only it touches the [`Swarm`].
pub struct Network {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    routes: Routes,
    connected: BTreeSet<PeerId>,
    outbound:
        HashMap<(Channel, request_response::OutboundRequestId), oneshot::Sender<Result<serde_json::Value>>>,
    answering: FuturesUnordered<PendingResponse>,
    /// Per peer: the second being counted and the requests in it.
    rate: HashMap<PeerId, (std::time::Instant, u32)>,
    penalties: HashMap<PeerId, u32>,
    banned: HashMap<PeerId, std::time::Instant>,
    /// The `--peer` addresses, dialled again when the node joins a topic.
    bootstrap: Vec<Multiaddr>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("peer_id", self.swarm.local_peer_id()).finish_non_exhaustive()
    }
}

type BoxedTransport = libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>;

fn transport(key: &Keypair, psk: Option<PreSharedKey>) -> std::result::Result<BoxedTransport, noise::Error> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let timeout = Duration::from_secs(20);
    // The two arms differ only in the pnet handshake before noise; their stream types differ, so
    // each builds its own chain.
    Ok(match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1)
            .authenticate(noise::Config::new(key)?)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
        None => tcp
            .upgrade(Version::V1)
            .authenticate(noise::Config::new(key)?)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
    })
}

/// Builds the swarm, starts listening and dialling, and spawns the network task. The task ends
/// when `shutdown` is cancelled.
pub async fn start(
    key: Keypair,
    config: NetConfig,
    shutdown: CancellationToken,
) -> Result<(NetHandle, JoinHandle<()>)> {
    let transport = transport(&key, config.swarm_key).map_err(|e| Error::Setup(e.to_string()))?;
    let behaviour = Behaviour::new(&key, config.mdns)?;
    let streams = behaviour.streams.new_control();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| Error::Setup(e.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| Error::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    let peer_id = *swarm.local_peer_id();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::Listen { addr: addr.clone(), message: e.to_string() })?;
    }
    // Wait for the listeners to come up, so a port in use is an error of the start, not a log line.
    let mut pending = config.listen.len();
    while pending > 0 {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                pending -= 1;
            }
            SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                let addr = addresses.first().cloned().unwrap_or_else(Multiaddr::empty);
                let message = reason.err().map_or_else(|| "closed".to_string(), |e| e.to_string());
                return Err(Error::Listen { addr, message });
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(Error::Listen { addr: Multiaddr::empty(), message: error.to_string() });
            }
            _ => {}
        }
    }
    for addr in &config.peers {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        swarm.dial(addr.clone()).map_err(|e| Error::Dial { addr: addr.clone(), message: e.to_string() })?;
    }
    for topic in &config.topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic))
            .map_err(|e| Error::Setup(e.to_string()))?;
    }
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let network = Network {
        swarm,
        commands: rx,
        routes: Routes::default(),
        connected: BTreeSet::new(),
        outbound: HashMap::new(),
        answering: FuturesUnordered::new(),
        rate: HashMap::new(),
        penalties: HashMap::new(),
        banned: HashMap::new(),
        bootstrap: config.peers.clone(),
    };
    let task = tokio::spawn(network.run(shutdown));
    Ok((NetHandle::new(tx, peer_id, streams), task))
}

impl Network {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.event(event),
                Some((channel, response, answer)) = self.answering.next(), if !self.answering.is_empty() => {
                    let answer = answer
                        .unwrap_or_else(|| refusal(format!("{channel}: the request was dropped unanswered")));
                    if self.swarm.behaviour_mut().protocol(channel).send_response(response, answer).is_err() {
                        tracing::debug!("a requester left before its answer");
                    }
                }
            }
        }
        tracing::debug!("network task stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let status = NetStatus {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen: self.swarm.listeners().map(ToString::to_string).collect(),
                    peers: self.connected.iter().map(ToString::to_string).collect(),
                };
                let _asker_gone = reply.send(status);
            }
            Command::Publish { topic, data, reply } => {
                let result = match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(topic), data)
                {
                    Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
                    Err(gossipsub::PublishError::Duplicate) => Ok(()),
                    Err(e) => Err(Error::Setup(format!("publish: {e}"))),
                };
                let _asker_gone = reply.send(result);
            }
            Command::Serve(channel, reply) => {
                let _asker_gone = reply.send(self.routes.serve(channel));
            }
            Command::Follow(topic, reply) => {
                let _asker_gone = reply.send(self.routes.follow(&topic));
            }
            Command::Join(topic, reply) => {
                let joined =
                    self.swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(&topic));
                let _asker_gone =
                    reply.send(joined.map(drop).map_err(|e| Error::Setup(format!("join {topic}: {e}"))));
                self.reach_out();
            }
            Command::Request { channel, peer, body, reply } => {
                let id = self.swarm.behaviour_mut().protocol(channel).send_request(&peer, body);
                self.outbound.insert((channel, id), reply);
            }
            Command::Penalise(peer) => {
                let count = self.penalties.entry(peer).or_insert(0);
                *count += 1;
                if *count >= PENALTIES_TO_BAN {
                    tracing::warn!(%peer, "banned for misbehaving");
                    self.penalties.remove(&peer);
                    self.banned.insert(peer, std::time::Instant::now() + BAN);
                    let _not_connected = self.swarm.disconnect_peer_id(peer);
                }
            }
            Command::Dial(addr, reply) => {
                let result =
                    self.swarm.dial(addr.clone()).map_err(|e| Error::Dial { addr, message: e.to_string() });
                let _asker_gone = reply.send(result);
            }
        }
    }

    /// Dials the bootstrap peers this node is not connected to, and looks for more: a node that
    /// joins a topic may have been alone for a while, and joining is seen only by its peers.
    fn reach_out(&mut self) {
        for addr in &self.bootstrap {
            let known = match addr.iter().last() {
                Some(Protocol::P2p(peer)) => self.swarm.is_connected(&peer),
                _ => false,
            };
            if !known && let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "bootstrap peer not dialled again");
            }
        }
        if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!(error = %e, "no Kademlia bootstrap: no peers known yet");
        }
    }

    fn is_banned(&mut self, peer: &PeerId) -> bool {
        match self.banned.get(peer) {
            Some(until) if *until > std::time::Instant::now() => true,
            Some(_) => {
                self.banned.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Drops what a banned peer sends; true if `peer` is banned.
    fn refuse_banned(&mut self, peer: PeerId) -> bool {
        if self.is_banned(&peer) {
            let _not_connected = self.swarm.disconnect_peer_id(peer);
            return true;
        }
        false
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                if self.refuse_banned(peer_id) {
                    return;
                }
                tracing::debug!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.connected.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                tracing::debug!(%peer_id, "disconnected");
                self.connected.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::warn!(?peer_id, %error, "could not connect");
            }
            SwarmEvent::Behaviour(event) => match split(event) {
                Split::Request(channel, event) => self.request_event(channel, event),
                Split::Other(other) => self.behaviour_event(other),
            },
            _ => {}
        }
    }

    fn behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer_id, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                    if let Err(e) = self.swarm.dial(addr) {
                        tracing::debug!(%peer_id, error = %e, "mDNS peer not dialled");
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message, .. }) => {
                if self.refuse_banned(propagation_source) {
                    return;
                }
                let from = message.source.unwrap_or(propagation_source);
                self.routes.gossip(message.topic.as_str(), Gossip::Message { from, data: message.data });
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                self.routes.gossip(topic.as_str(), Gossip::Joined { peer: peer_id });
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                tracing::trace!(%peer, "routing table updated");
            }
            _ => {}
        }
    }

    fn request_event(
        &mut self,
        channel: Channel,
        event: request_response::Event<serde_json::Value, serde_json::Value>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => {
                if !self.refuse_banned(peer) {
                    self.message(channel, peer, message);
                }
            }
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                self.failed(channel, request_id, peer, error);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, protocol = %channel, %error, "an inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn allowed(&mut self, peer: PeerId) -> bool {
        let now = std::time::Instant::now();
        let entry = self.rate.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(1) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= REQUESTS_PER_PEER_PER_SECOND
    }

    fn failed(
        &mut self,
        channel: Channel,
        request_id: request_response::OutboundRequestId,
        peer: PeerId,
        error: request_response::OutboundFailure,
    ) {
        if let Some(reply) = self.outbound.remove(&(channel, request_id)) {
            let failure = Error::Request { peer: peer.to_string(), message: error.to_string() };
            let _asker_gone = reply.send(Err(failure));
        }
    }

    fn message(
        &mut self,
        channel: Channel,
        peer: PeerId,
        message: request_response::Message<serde_json::Value, serde_json::Value>,
    ) {
        match message {
            request_response::Message::Request { request, channel: response, .. } => {
                let routed = if self.allowed(peer) {
                    self.routes.route(channel, peer, request)
                } else {
                    tracing::warn!(%peer, "request rate limit exceeded");
                    Err(refusal(format!(
                        "rate limited: more than {REQUESTS_PER_PEER_PER_SECOND} requests a second from one peer"
                    )))
                };
                match routed {
                    Ok(rx) => {
                        self.answering.push(Box::pin(async move { (channel, response, rx.await.ok()) }))
                    }
                    Err(refused) => {
                        let _gone =
                            self.swarm.behaviour_mut().protocol(channel).send_response(response, refused);
                    }
                }
            }
            request_response::Message::Response { request_id, response } => {
                if let Some(reply) = self.outbound.remove(&(channel, request_id)) {
                    let _asker_gone = reply.send(Ok(response));
                }
            }
        }
    }
}
