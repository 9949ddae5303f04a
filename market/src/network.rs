//! The market on the network: `/agora/market/2` requests answered, announcements followed, own
//! offers repeated, undelivered messages retried.
//!
//! A node joins the offers topic once it has a demand, and from then on hears and relays every
//! announcement. Until then it has no use for other nodes' offers, so it neither hears nor relays
//! them: in a burst of offers, the copies go to the nodes looking for offers rather than to every
//! node several times over. Its own announcements still reach every connected node that joined,
//! and a node joining is told the offers of its peers at once, directly.

use crate::agreeing::Ending;
use crate::courier::Courier;
use crate::wire::{Announcement, MarketRequest, MarketResponse, OFFERS_TOPIC};
use crate::{Error, FollowUp, Market, Result};
use agora_identity::Address;
use agora_net::{Channel, Gossip, NetHandle, PeerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often a node repeats its offers to the whole network, for nodes that missed them. A node
/// joining next to it is told at once, directly; this round reaches the rest. Each round costs
/// every node a copy of every announcement, so it is not frequent.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);
/// Tries at telling a joining node our offers, and the pause between them (and between tries at
/// reading whether this node has a demand).
const JOIN_TRIES: u32 = 5;
const JOIN_RETRY: Duration = Duration::from_millis(500);
/// Offer bodies fetched at once, at most.
const CONCURRENT_FETCHES: usize = 16;
/// Announcements in hand at once (waiting for fetches included), at most; more are dropped until
/// their next announcement.
const CONCURRENT_ANNOUNCEMENTS: usize = 256;
/// How often undelivered negotiation messages are tried again.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(2);

/// Serves the market on `net` until `shutdown`: answers market requests (each on its own task,
/// tracked by `tasks`), follows announcements, repeats own offers. Fails only if another part of
/// the node already serves the market protocol.
pub async fn serve(
    market: Market,
    net: NetHandle,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> Result<(), agora_net::Error> {
    let requests = net.serve(Channel::Market).await?;
    let gossip = net.follow(OFFERS_TOPIC).await?;
    tasks.spawn(join_on_demand(market.clone(), net.clone(), shutdown.clone()));
    tasks.spawn(run(market, net, requests, gossip, shutdown, tasks.clone()));
    Ok(())
}

/// Joins the offers topic once the node has a standing demand.
async fn join_on_demand(market: Market, net: NetHandle, shutdown: CancellationToken) {
    loop {
        let stands = tokio::select! {
            () = shutdown.cancelled() => return,
            stands = market.demand_stands() => stands,
        };
        let joined = match stands {
            Ok(()) => {
                net.join(OFFERS_TOPIC).await.map_err(|e| format!("could not join the offers topic: {e}"))
            }
            Err(e) => Err(format!("could not tell whether this node has a demand: {e}")),
        };
        match joined {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "no offers are heard until this node joins; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(JOIN_RETRY) => {}
                }
            }
        }
    }
}

async fn run(
    market: Market,
    net: NetHandle,
    mut requests: tokio::sync::mpsc::Receiver<agora_net::Request>,
    mut gossip: tokio::sync::mpsc::Receiver<Gossip>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let fetches = Arc::new(Semaphore::new(CONCURRENT_FETCHES));
    let handling = Arc::new(Semaphore::new(CONCURRENT_ANNOUNCEMENTS));
    let mut repeat = tokio::time::interval(ANNOUNCE_INTERVAL);
    let mut outbox = tokio::time::interval(OUTBOX_INTERVAL);
    // After a stall, carry on at the normal pace rather than catching up in a burst.
    repeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    outbox.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flushing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Offers heard of before this node had a demand are fetched once it places one.
    tasks.spawn({
        let (market, net, fetches, shutdown, tracker) =
            (market.clone(), net.clone(), fetches.clone(), shutdown.clone(), tasks.clone());
        async move {
            loop {
                let wanted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    wanted = market.heard_offers_wanted() => wanted,
                };
                for (offer_id, peer, provider) in wanted {
                    let Ok(peer) = peer.parse::<PeerId>() else { continue };
                    fetch(&tracker, &market, &net, &fetches, peer, provider, offer_id, false).await;
                }
            }
        }
    });
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = outbox.tick() => {
                // Deliveries wait on other nodes; they must not hold up this loop. One at a time.
                if !flushing.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    let (market, flushing) = (market.clone(), flushing.clone());
                    tasks.spawn(async move {
                        if let Err(e) = market.expire_proposals().await {
                            tracing::warn!(error = %e, "could not expire proposals");
                        }
                        market.flush_outbox().await;
                        flushing.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
            }
            _ = repeat.tick() => match market.announcements().await {
                Ok(list) => for a in list { net.announce(a).await },
                Err(e) => tracing::warn!(error = %e, "could not list offers to announce"),
            },
            request = requests.recv() => match request {
                None => break,
                Some(request) => {
                    let from = request.from;
                    match request.decode::<MarketRequest>() {
                        Ok(MarketRequest::Announce { announcement }) => {
                            request.answer(answer(&MarketResponse::Ack));
                            follow(&tasks, &market, &net, &handling, &fetches, from, announcement);
                        }
                        Ok(decoded) => {
                            let market = market.clone();
                            // Answered on its own task: a slow database must not hold up the
                            // loop. The request holds its protocol's handler permit until then.
                            tasks.spawn(async move {
                                let sender = agora_identity::address_of_peer(&from).ok();
                                let response = market.handle(&from.to_string(), sender, decoded).await;
                                request.answer(answer(&response));
                            });
                        }
                        Err(e) => {
                            tracing::debug!(%from, error = %e, "a malformed market request");
                            let message = format!("bad request: {e}");
                            request.answer(answer(&MarketResponse::Error { message, retry: false }));
                        }
                    }
                }
            },
            event = gossip.recv() => match event {
                None => break,
                Some(Gossip::Message { from, data }) => match serde_json::from_slice::<Announcement>(&data) {
                    Ok(announcement) => follow(&tasks, &market, &net, &handling, &fetches, from, announcement),
                    Err(e) => tracing::debug!(%from, error = %e, "malformed announcement"),
                },
                Some(Gossip::Joined { peer }) => {
                    // A node joined the offers topic next to us: tell it our offers now, directly,
                    // rather than at the next tick. Sent to that node alone: a broadcast here
                    // would repeat every offer to the whole network each time any two nodes
                    // connect.
                    let (market, net) = (market.clone(), net.clone());
                    tasks.spawn(async move {
                        let Ok(list) = market.announcements().await else { return };
                        for announcement in list {
                            let request = MarketRequest::Announce { announcement };
                            // A node joins the topic as its network starts, a moment before its
                            // market serves: a refusal then is tried again, a few times.
                            for attempt in 1..=JOIN_TRIES {
                                let sent: Result<MarketResponse, _> =
                                    net.request_typed(Channel::Market, &peer.to_string(), &request).await;
                                match sent {
                                    Ok(_) => break,
                                    Err(e) if attempt == JOIN_TRIES => {
                                        tracing::debug!(%peer, error = %e, "could not tell a joining peer our offers");
                                    }
                                    Err(_) => tokio::time::sleep(JOIN_RETRY).await,
                                }
                            }
                        }
                    });
                }
            },
        }
    }
}

impl Market {
    /// Handles a negotiation message from `peer` (whose node address is `sender`).
    async fn on_negotiation(&self, sender: Address, peer: &str, request: MarketRequest) -> Result<()> {
        if let Some(bad) = request.ids().into_iter().find(|id| !agora_agreement::is_valid_id(id)) {
            return Err(Error::Refused(format!("{bad:?} is not an id")));
        }
        match request {
            MarketRequest::Proposal { proposal } => self.on_proposal(sender, peer, proposal).await?,
            MarketRequest::RejectProposal { proposal_id, reason } => {
                let me = format!("{:#x}", self.node_id);
                self.store.own_proposal_rejected(&proposal_id, &me, crate::api::reason_of(reason)).await?;
            }
            MarketRequest::ProposeAgreement { agreement, signature } => {
                self.on_proposed_agreement(sender, peer, agreement, signature).await?;
            }
            MarketRequest::ApproveAgreement { agreement_id, signature } => {
                self.on_approval(sender, &agreement_id, &signature).await?;
            }
            MarketRequest::RejectAgreement { agreement_id, reason } => {
                self.on_ended(peer, sender, &agreement_id, Ending::Rejected, reason).await?;
            }
            MarketRequest::CancelAgreement { agreement_id, reason } => {
                self.on_ended(peer, sender, &agreement_id, Ending::Cancelled, reason).await?;
            }
            MarketRequest::TerminateAgreement { agreement_id, reason } => {
                self.on_ended(peer, sender, &agreement_id, Ending::Terminated, reason).await?;
            }
            MarketRequest::GetOffer { .. } | MarketRequest::Announce { .. } => {}
        }
        self.events.notify_waiters();
        Ok(())
    }

    /// Answers a directed request from `peer`, whose node address is `sender`.
    pub async fn handle(
        &self,
        peer: &str,
        sender: Option<Address>,
        request: MarketRequest,
    ) -> MarketResponse {
        match request {
            MarketRequest::GetOffer { offer_id } if !agora_agreement::is_valid_id(&offer_id) => {
                MarketResponse::Error { message: format!("{offer_id:?} is not an offer id"), retry: false }
            }
            MarketRequest::GetOffer { offer_id } => match self.store.own_offer(&offer_id).await {
                Ok(found) => {
                    MarketResponse::Offer { offer: found.map(crate::store::Stored::into_offer_body) }
                }
                Err(e) => {
                    tracing::error!(error = %e, "answering GetOffer");
                    MarketResponse::Error { message: "internal error".into(), retry: true }
                }
            },
            negotiation => {
                let Some(sender) = sender else {
                    return MarketResponse::Error {
                        message: "a peer without a node address".into(),
                        retry: false,
                    };
                };
                match self.on_negotiation(sender, peer, negotiation).await {
                    Ok(()) => MarketResponse::Ack,
                    Err(e @ (Error::Db(_) | Error::Corrupt(_))) => {
                        tracing::error!(error = %e, "handling a negotiation message");
                        MarketResponse::Error { message: "internal error".into(), retry: true }
                    }
                    Err(e) => MarketResponse::Error { message: e.to_string(), retry: false },
                }
            }
        }
    }
}

fn answer(response: &MarketResponse) -> serde_json::Value {
    // Serialising our own enum cannot fail.
    serde_json::to_value(response).expect("market response JSON")
}

/// Follows up an announcement heard from `from` (gossip or a direct request) on its own task, so
/// a slow database never stalls the loop; when too many are in hand it is dropped (offers are
/// announced again).
fn follow(
    tasks: &TaskTracker,
    market: &Market,
    net: &NetHandle,
    handling: &Arc<Semaphore>,
    fetches: &Arc<Semaphore>,
    from: PeerId,
    announcement: Announcement,
) {
    match handling.clone().try_acquire_owned() {
        Ok(permit) => {
            let (market, net, fetches, tracker) =
                (market.clone(), net.clone(), fetches.clone(), tasks.clone());
            tasks.spawn(async move {
                let _permit = permit;
                on_announcement(&tracker, &market, &net, &fetches, from, announcement).await;
            });
        }
        Err(_) => tracing::debug!(%from, "announcements at their limit; one dropped"),
    }
}

async fn on_announcement(
    tasks: &TaskTracker,
    market: &Market,
    net: &NetHandle,
    fetches: &Arc<Semaphore>,
    from: PeerId,
    announcement: Announcement,
) {
    let Ok(provider) = agora_identity::address_of_peer(&from) else {
        tracing::debug!(%from, "announcement from a peer without an address");
        return;
    };
    let (wanted, confirming) = match market.on_announcement(&from.to_string(), provider, announcement).await {
        Ok(FollowUp::Fetch(ids)) => (ids, false),
        Ok(FollowUp::Confirm(ids)) => (ids, true),
        Err(e) => {
            tracing::warn!(error = %e, "could not record an announcement");
            return;
        }
    };
    for offer_id in wanted {
        fetch(tasks, market, net, fetches, from, provider, offer_id, confirming).await;
    }
}

/// Asks `from` for one of its offers, waiting for a fetch permit, and acts on the answer on its
/// own task: a body is checked and matched; "not offered" after a withdrawal drops the offer.
#[allow(clippy::too_many_arguments)] // the context of one fetch; a struct for it would be used once
async fn fetch(
    tasks: &TaskTracker,
    market: &Market,
    net: &NetHandle,
    fetches: &Arc<Semaphore>,
    from: PeerId,
    provider: agora_identity::Address,
    offer_id: String,
    confirming: bool,
) {
    let Ok(permit) = fetches.clone().acquire_owned().await else { return };
    let (market, net) = (market.clone(), net.clone());
    tasks.spawn(async move {
        let _permit = permit;
        let request = MarketRequest::GetOffer { offer_id: offer_id.clone() };
        match net.request_typed::<_, MarketResponse>(Channel::Market, &from.to_string(), &request).await {
            Ok(MarketResponse::Offer { offer: Some(_) }) if confirming => {}
            Ok(MarketResponse::Offer { offer: None }) if confirming => {
                if let Err(e) = market.on_offer_gone(provider, &offer_id).await {
                    tracing::warn!(%offer_id, error = %e, "could not drop a withdrawn offer");
                }
            }
            Ok(MarketResponse::Offer { offer: Some(body) }) => {
                if let Err(e) = market.on_offer_body(provider, &from.to_string(), body).await {
                    tracing::warn!(%from, %offer_id, error = %e, "offer refused");
                    if matches!(e, crate::Error::Refused(_)) {
                        net.penalise(from).await;
                    }
                }
            }
            Ok(_) => tracing::debug!(%offer_id, "offer no longer offered"),
            Err(e) => {
                tracing::debug!(me = %market.node_id(), %from, %offer_id, error = %e, "could not fetch an offer")
            }
        }
    });
}
