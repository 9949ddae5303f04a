//! Activities on the network: `/agora/activity/3` requests answered (each on its own tracked
//! task, within the protocol's handler cap), activity requests sent, hosted activities swept
//! when their agreement ends.

use crate::wire::{ActivityRequest, ActivityResponse, Refusal};
use crate::{Activities, Error, Messenger, Result};
use agora_net::{Channel, NetHandle, Pipe};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often hosted activities are checked against their agreements.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

impl Messenger for NetHandle {
    fn send(&self, peer: String, request: ActivityRequest) -> BoxFuture<'static, Result<ActivityResponse>> {
        let net = self.clone();
        Box::pin(async move {
            net.request_typed(Channel::Activity, &peer, &request).await.map_err(|e| match e {
                // The other node's network refused (busy, rate limited): it is there, and said why.
                agora_net::Error::Refused { message, .. } => Error::Busy(message),
                other => Error::Unreachable(other.to_string()),
            })
        })
    }

    fn open_blob(&self, peer: String) -> BoxFuture<'static, Result<Box<dyn crate::BlobPipe>>> {
        let net = self.clone();
        Box::pin(async move {
            match net.open(Pipe::Blob, &peer).await {
                Ok(pipe) => Ok(Box::new(pipe) as Box<dyn crate::BlobPipe>),
                // Not a peer id: asking again will not help.
                Err(e @ agora_net::Error::BadPeer(_)) => Err(Error::BadInput(e.to_string())),
                // Not connected, or not (yet) serving blobs, as a restarting node is not.
                Err(e) => Err(Error::Unreachable(e.to_string())),
            }
        })
    }
}

fn answer(response: &ActivityResponse) -> serde_json::Value {
    // Serialising our own enum cannot fail.
    serde_json::to_value(response).expect("activity response JSON")
}

impl Activities {
    /// Serves `/agora/activity/3` and `/agora/blob/1` on `net` until `shutdown`, and sweeps
    /// hosted activities whose agreement has ended. Fails only if another part of the node
    /// already serves either protocol.
    pub async fn serve(
        &self,
        net: &NetHandle,
        shutdown: CancellationToken,
    ) -> std::result::Result<(), agora_net::Error> {
        let mut requests = net.serve(Channel::Activity).await?;
        self.serve_blobs(net.accept(Pipe::Blob)?, shutdown.clone());
        let activities = self.clone();
        self.inner.tasks.spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
            let sweeping = Arc::new(AtomicBool::new(false));
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = sweep.tick() => {
                        // One sweep at a time: a slow database must not pile them up.
                        if !sweeping.swap(true, Ordering::AcqRel) {
                            let (activities, sweeping) = (activities.clone(), sweeping.clone());
                            activities.inner.tasks.clone().spawn(async move {
                                activities.sweep().await;
                                sweeping.store(false, Ordering::Release);
                            });
                        }
                    }
                    request = requests.recv() => match request {
                        None => break,
                        Some(request) => {
                            let activities = activities.clone();
                            activities.inner.tasks.clone().spawn(async move {
                                let from = request.from;
                                let sender = agora_identity::address_of_peer(&from).ok();
                                let response = match request.decode::<ActivityRequest>() {
                                    Ok(decoded) => activities.handle(&from.to_string(), sender, decoded).await,
                                    Err(e) => ActivityResponse::Error {
                                        refusal: Refusal::BadInput,
                                        message: format!("bad request: {e}"),
                                    },
                                };
                                request.answer(answer(&response));
                            });
                        }
                    },
                }
            }
        });
        Ok(())
    }
}
