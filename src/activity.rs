//! Wires activities to the network: requests on `/agora/activity/1` answered, activity
//! requests sent, hosted activities swept when their agreement ends.

use agora_activity::wire::{ActivityRequest, ActivityResponse};
use agora_activity::{Activities, Messenger};
use agora_net::{Channel, Inbound, NetHandle};
use futures_util::future::BoxFuture;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often hosted activities are checked against their agreements.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Sends activity requests over the node's network.
#[derive(Debug, Clone)]
pub struct NetMessenger(pub NetHandle);

impl Messenger for NetMessenger {
    fn send(
        &self,
        peer: String,
        request: ActivityRequest,
    ) -> BoxFuture<'static, Result<ActivityResponse, String>> {
        let net = self.0.clone();
        Box::pin(async move { net.request_typed(Channel::Activity, &peer, &request).await })
    }
}

/// Takes the activity requests out of the node's inbound stream and answers them, each on its
/// own task; everything else goes on to the returned stream (the market's). Also sweeps hosted
/// activities whose agreement has ended.
pub fn serve(
    activities: Activities,
    mut inbound: mpsc::Receiver<Inbound>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Inbound> {
    let (rest_tx, rest_rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    let activities = activities.clone();
                    tokio::spawn(async move { activities.sweep().await });
                }
                event = inbound.recv() => match event {
                    None => break,
                    Some(Inbound::Request { channel: Channel::Activity, from, body, reply }) => {
                        let activities = activities.clone();
                        tokio::spawn(async move {
                            let sender = agora_identity::address_of_peer(&from).ok();
                            let response = match serde_json::from_value::<ActivityRequest>(body) {
                                Ok(request) => activities.handle(&from.to_string(), sender, request).await,
                                Err(e) => ActivityResponse::Error { status: 400, message: format!("bad request: {e}") },
                            };
                            let _requester_gone = reply.send(serde_json::to_value(response).unwrap_or_default());
                        });
                    }
                    Some(other) => {
                        if rest_tx.send(other).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
    });
    rest_rx
}
