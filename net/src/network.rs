use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::{Error, Result};
use futures_util::StreamExt;
use libp2p::core::transport::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, Transport, identify, kad, mdns, noise, tcp, yamux};
use serde::Serialize;
use std::collections::BTreeSet;
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
}

/// What `agora net status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NetStatus {
    pub peer_id: String,
    pub listen: Vec<String>,
    pub peers: Vec<String>,
}

/// Commands the handle sends to the task that owns the swarm.
#[derive(Debug)]
enum Command {
    Status(oneshot::Sender<NetStatus>),
    Dial(Multiaddr, oneshot::Sender<Result<()>>),
}

/// The commands waiting for the network task, at most.
const COMMAND_QUEUE: usize = 64;
/// How long a handle waits for the network task to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections idle this long are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A cheap-to-clone handle on the network task.
#[derive(Debug, Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
}

impl NetHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        tokio::time::timeout(REPLY_TIMEOUT, rx)
            .await
            .map_err(|_| Error::Stopped)?
            .map_err(|_| Error::Stopped)
    }

    /// This node's peer id, listen addresses and connected peers.
    pub async fn status(&self) -> Result<NetStatus> {
        self.ask(Command::Status).await
    }

    /// Dials a peer address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }
}

/// The task that owns the swarm. Only it touches the [`Swarm`].
pub struct Network {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    connected: BTreeSet<PeerId>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("peer_id", self.swarm.local_peer_id())
            .finish_non_exhaustive()
    }
}

type BoxedTransport =
    libp2p::core::transport::Boxed<(PeerId, libp2p::core::muxing::StreamMuxerBox)>;

fn transport(
    key: &Keypair,
    psk: Option<PreSharedKey>,
) -> std::result::Result<BoxedTransport, noise::Error> {
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
    let behaviour = Behaviour::new(&key, config.mdns).map_err(Error::Setup)?;
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
        swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
            addr: addr.clone(),
            message: e.to_string(),
        })?;
    }
    // Wait for the listeners to come up, so a port in use is an error of the start, not a log line.
    let mut pending = config.listen.len();
    while pending > 0 {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                pending -= 1;
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                let addr = addresses.first().cloned().unwrap_or_else(Multiaddr::empty);
                let message = reason
                    .err()
                    .map_or_else(|| "closed".to_string(), |e| e.to_string());
                return Err(Error::Listen { addr, message });
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(Error::Listen {
                    addr: Multiaddr::empty(),
                    message: error.to_string(),
                });
            }
            _ => {}
        }
    }
    for addr in &config.peers {
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        swarm.dial(addr.clone()).map_err(|e| Error::Dial {
            addr: addr.clone(),
            message: e.to_string(),
        })?;
    }
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let network = Network {
        swarm,
        commands: rx,
        connected: BTreeSet::new(),
    };
    let task = tokio::spawn(network.run(shutdown));
    Ok((
        NetHandle {
            commands: tx,
            peer_id,
        },
        task,
    ))
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
            Command::Dial(addr, reply) => {
                let result = self.swarm.dial(addr.clone()).map_err(|e| Error::Dial {
                    addr,
                    message: e.to_string(),
                });
                let _asker_gone = reply.send(result);
            }
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.connected.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                tracing::debug!(%peer_id, "disconnected");
                self.connected.remove(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::warn!(?peer_id, %error, "could not connect");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer_id, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                    if let Err(e) = self.swarm.dial(addr) {
                        tracing::debug!(%peer_id, error = %e, "mDNS peer not dialled");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, ..
            })) => {
                tracing::trace!(%peer, "routing table updated");
            }
            _ => {}
        }
    }
}
