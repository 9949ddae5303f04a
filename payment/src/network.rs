//! Serving payments on the network: requests on `/agora/payment/1`, the outbox, each platform's
//! driver, and the checks of received payments.

use crate::Payments;
use crate::wire::{PaymentRequest, PaymentResponse};
use agora_net::{Channel, NetHandle};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often queued messages are tried again.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(2);

/// Starts serving: returns once the protocol is routed here.
pub async fn serve(
    payments: Payments,
    net: NetHandle,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> Result<(), agora_net::Error> {
    let mut requests = net.serve(Channel::Payment).await?;
    for network in payments.config().networks.clone() {
        let (p, stop) = (payments.clone(), shutdown.clone());
        tasks.spawn(async move { p.drive(network, stop).await });
    }
    let (p, stop) = (payments.clone(), shutdown.clone());
    tasks.spawn(async move { p.check_arrivals(stop).await });
    let (p, stop) = (payments.clone(), shutdown.clone());
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(OUTBOX_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => p.flush_outbox().await,
            }
        }
    });
    let tracker = tasks.clone();
    tasks.spawn(async move {
        loop {
            let request = tokio::select! {
                () = shutdown.cancelled() => return,
                r = requests.recv() => match r { Some(r) => r, None => return },
            };
            let payments = payments.clone();
            tracker.spawn(async move {
                let answer = match request.decode::<PaymentRequest>() {
                    Ok(decoded) => payments.handle(decoded).await,
                    Err(e) => PaymentResponse::Error { message: format!("bad request: {e}"), retry: false },
                };
                request.answer(serde_json::to_value(answer).expect("answers serialise"));
            });
        }
    });
    Ok(())
}
