//! Wires the market to the network: announcements in and out, offer bodies fetched and served.

use agora_market::{Announcement, Courier, Market, MarketRequest, MarketResponse, OFFERS_TOPIC};
use agora_net::{Inbound, NetHandle, PeerId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// How often a provider repeats its offers, so nodes that joined later see them.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);
/// Offer bodies fetched at once, at most.
const CONCURRENT_FETCHES: usize = 16;
/// Announcements handled at once, at most.
const CONCURRENT_ANNOUNCEMENTS: usize = 64;
/// How often undelivered negotiation messages are tried again.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(2);

/// Carries the market's messages over the node's network.
#[derive(Debug, Clone)]
pub struct NetCourier(pub NetHandle);

impl Courier for NetCourier {
    fn send(
        &self,
        peer: String,
        request: MarketRequest,
    ) -> Pin<Box<dyn Future<Output = Result<MarketResponse, String>> + Send>> {
        let net = self.0.clone();
        Box::pin(async move {
            let peer: PeerId = peer.parse().map_err(|e| format!("peer id {peer}: {e}"))?;
            let body = serde_json::to_value(request).map_err(|e| e.to_string())?;
            let answer = net.request(peer, body).await.map_err(|e| e.to_string())?;
            serde_json::from_value(answer).map_err(|e| format!("unexpected answer: {e}"))
        })
    }
}

/// Publishes an announcement on the offers topic.
pub async fn announce(net: &NetHandle, announcement: &Announcement) {
    // Serialising our own enum cannot fail.
    let data = serde_json::to_vec(announcement).expect("announcement JSON");
    if let Err(e) = net.publish(OFFERS_TOPIC, data).await {
        tracing::warn!(error = %e, "could not announce offers");
    }
}

/// Runs until `shutdown`: answers market requests, follows announcements, repeats own offers.
pub async fn run(
    market: Market,
    net: NetHandle,
    mut inbound: mpsc::Receiver<Inbound>,
    shutdown: CancellationToken,
) {
    let fetches = Arc::new(Semaphore::new(CONCURRENT_FETCHES));
    let handling = Arc::new(Semaphore::new(CONCURRENT_ANNOUNCEMENTS));
    let mut repeat = tokio::time::interval(ANNOUNCE_INTERVAL);
    let mut outbox = tokio::time::interval(OUTBOX_INTERVAL);
    // After a stall, carry on at the normal pace rather than catching up in a burst.
    repeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    outbox.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let flushing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = outbox.tick() => {
                // Deliveries wait on other nodes; they must not hold up this loop. One at a time.
                if !flushing.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    let (market, flushing) = (market.clone(), flushing.clone());
                    tokio::spawn(async move {
                        market.flush_outbox().await;
                        flushing.store(false, std::sync::atomic::Ordering::Release);
                    });
                }
            }
            _ = repeat.tick() => match market.announcements().await {
                Ok(list) => for a in &list { announce(&net, a).await },
                Err(e) => tracing::warn!(error = %e, "could not list offers to announce"),
            },
            event = inbound.recv() => match event {
                None => break,
                Some(Inbound::Request { from, body, reply }) => {
                    let market = market.clone();
                    // Answered on its own task: a slow database must not hold up the network loop.
                    tokio::spawn(async move {
                        let sender = agora_identity::address_of_peer(&from).ok();
                        let response = match serde_json::from_value::<MarketRequest>(body) {
                            Ok(request) => market.handle(&from.to_string(), sender, request).await,
                            Err(e) => MarketResponse::Error { message: format!("bad request: {e}") },
                        };
                        let _requester_gone = reply.send(serde_json::to_value(response).unwrap_or_default());
                    });
                }
                Some(Inbound::Gossip { from, topic, data }) if topic == OFFERS_TOPIC => {
                    // Handled on its own task, so a slow database never stalls the loop; when too
                    // many are in hand the announcement is dropped (it is repeated).
                    match handling.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let (market, net, fetches) = (market.clone(), net.clone(), fetches.clone());
                            tokio::spawn(async move {
                                let _permit = permit;
                                on_gossip(&market, &net, &fetches, from, &data).await;
                            });
                        }
                        Err(_) => tracing::debug!(%from, "announcements at their limit; one dropped"),
                    }
                }
                Some(Inbound::Gossip { topic, .. }) => tracing::debug!(%topic, "gossip on an unknown topic"),
                Some(Inbound::Subscribed { topic, .. }) if topic == OFFERS_TOPIC => {
                    // A node joined the offers topic: repeat our offers now rather than at the
                    // next tick, so it sees them at once. (Announcements are ids; this is cheap.)
                    if let Ok(list) = market.announcements().await {
                        for a in &list {
                            announce(&net, a).await;
                        }
                    }
                }
                Some(Inbound::Subscribed { .. }) => {}
            },
        }
    }
}

async fn on_gossip(market: &Market, net: &NetHandle, fetches: &Arc<Semaphore>, from: PeerId, data: &[u8]) {
    let Ok(provider) = agora_identity::address_of_peer(&from) else {
        tracing::debug!(%from, "announcement from a peer without an address");
        return;
    };
    let announcement: Announcement = match serde_json::from_slice(data) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(%from, error = %e, "malformed announcement");
            return;
        }
    };
    let wanted = match market.on_announcement(provider, announcement).await {
        Ok(ids) => {
            tracing::trace!(me = %market.node_id(), %provider, wanted = ids.len(), "announcement");
            ids
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not record an announcement");
            return;
        }
    };
    for offer_id in wanted {
        // Never wait for a permit here: this runs on the loop that also answers requests. An
        // offer skipped now is announced again shortly.
        let Ok(permit) = fetches.clone().try_acquire_owned() else {
            tracing::debug!(%offer_id, "fetches at their limit; the offer waits for its next announcement");
            return;
        };
        let (market, net) = (market.clone(), net.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let request = serde_json::to_value(MarketRequest::GetOffer { offer_id: offer_id.clone() })
                .expect("request JSON");
            let answer = match net.request(from, request).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::debug!(me = %market.node_id(), %from, %offer_id, error = %e, "could not fetch an offer");
                    return;
                }
            };
            match serde_json::from_value::<MarketResponse>(answer) {
                Ok(MarketResponse::Offer { offer: Some(body) }) => {
                    if let Err(e) = market.on_offer_body(provider, &from.to_string(), body).await {
                        tracing::warn!(%from, %offer_id, error = %e, "offer refused");
                        if matches!(e, agora_market::Error::Refused(_)) {
                            net.penalise(from).await;
                        }
                    }
                }
                Ok(_) => tracing::debug!(%offer_id, "offer no longer offered"),
                Err(e) => tracing::debug!(%from, error = %e, "malformed offer answer"),
            }
        });
    }
}
