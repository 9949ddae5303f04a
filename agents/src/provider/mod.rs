//! The provider agent: it turns the operator's presets into offers ([`offers`]), answers
//! requestors' proposals with its own priced terms by its bid rules and hooks ([`bids`]),
//! approves agreements while it has room for them, looks after them while it works and invoices
//! each when it ends ([`work`]), and commits to and reveals its runs' results ([`reveal`]).

mod bids;
mod offers;
mod reveal;
mod work;

pub use bids::BidDecision;
pub use offers::{Machine, Preset, ProviderConfig, offer_properties};

use crate::wire::{VerifyRequest, VerifyResponse};
use agora_activity::Activities;
use agora_market::Market;
use agora_market::api::DemandOfferBase;
use agora_payment::Payments;
use alloy_primitives::Address;
use futures_util::FutureExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a provider node cheats, for demonstrations and tests of verification and payment: such a
/// provider is never paid what it cheats for. `alter` changes its runs' output (the activity host
/// does it), `no-reveal` commits honestly but never reveals, `replay:<address>` commits with
/// another provider's seal, as a provider copying that provider's commitment would,
/// `overcharge` invoices a hundred times what its runs cost, `late-invoice` invoices after the
/// job runner stopped waiting for it, `alter-uploads` uploads changed outputs after committing
/// to the true ones, and `inflate-usage` reports a hundredfold usage in its debit notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dishonesty {
    Alter,
    NoReveal,
    Replay(Address),
    /// Invoices a hundred times what its activities' usage costs.
    Overcharge,
    /// Invoices [`LATE_INVOICE`] after an agreement ends, past the job runner's wait.
    LateInvoice,
    /// Commits to its runs' true results, then uploads changed outputs (the activity host does
    /// it).
    AlterUploads,
    /// Reports a hundred times its activities' usage, and 100 more of each counter, in its debit
    /// notes: usage it never had.
    InflateUsage,
}

/// How late a `late-invoice` provider invoices.
pub const LATE_INVOICE: Duration = Duration::from_secs(75);

impl std::str::FromStr for Dishonesty {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "alter" => Ok(Self::Alter),
            "no-reveal" => Ok(Self::NoReveal),
            "overcharge" => Ok(Self::Overcharge),
            "late-invoice" => Ok(Self::LateInvoice),
            "alter-uploads" => Ok(Self::AlterUploads),
            "inflate-usage" => Ok(Self::InflateUsage),
            other => match other.strip_prefix("replay:") {
                Some(address) => address
                    .parse()
                    .map(Self::Replay)
                    .map_err(|_| format!("{other}: replay:<address> needs a 0x… node address")),
                None => Err(format!(
                    "{other}: one of alter, no-reveal, overcharge, late-invoice, alter-uploads, inflate-usage, replay:<address>"
                )),
            },
        }
    }
}

/// The provider agent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProviderAgent {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ProviderConfig,
    market: Market,
    activities: Activities,
    payments: Payments,
    identity: agora_identity::Identity,
    machine: Machine,
    /// Offer subscriptions, each with its preset's base.
    offers: Mutex<Vec<(String, DemandOfferBase)>>,
    /// Agreements invoiced by this run of the node, and those to try again.
    invoiced: Mutex<HashSet<String>>,
    to_invoice: Mutex<HashSet<String>>,
    /// Held while deciding on an agreement, so two decisions never both see room for one more.
    deciding: tokio::sync::Mutex<()>,
    dishonesty: Option<Dishonesty>,
    /// For `late-invoice`: when each agreement was first to be invoiced.
    invoice_asked: Mutex<HashMap<String, Instant>>,
    http: reqwest::Client,
    /// What the agent tracks of each agreement it works under.
    working: Mutex<HashMap<String, Working>>,
    /// Requestors the agent stopped working for, and until when.
    stopped_for: Mutex<HashMap<Address, Instant>>,
}

/// One agreement as the agent works under it.
#[derive(Debug, Default)]
struct Working {
    /// When it last sent a debit note.
    last_note: Option<Instant>,
    /// Since when no activity has been running.
    idle_since: Option<Instant>,
}

/// How often the agent looks at the agreements it works under.
const WORK_TICK: Duration = Duration::from_secs(1);
/// How long a `no-reveal` provider holds a reveal request before it refuses it: past the
/// network's request timeout.
const NO_REVEAL_HOLD: Duration = Duration::from_secs(20);

/// How long one poll of offer or agreement events waits.
const POLL: Duration = Duration::from_secs(5);

impl ProviderAgent {
    pub fn new(
        config: ProviderConfig,
        market: Market,
        activities: Activities,
        payments: Payments,
        identity: agora_identity::Identity,
        machine: Machine,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                market,
                activities,
                payments,
                identity,
                machine,
                offers: Mutex::default(),
                invoiced: Mutex::default(),
                to_invoice: Mutex::default(),
                deciding: tokio::sync::Mutex::new(()),
                dishonesty: None,
                invoice_asked: Mutex::default(),
                http: reqwest::Client::new(),
                working: Mutex::default(),
                stopped_for: Mutex::default(),
            }),
        }
    }

    /// Cheats as `dishonesty` says (the activity host alters outputs itself).
    pub fn with_dishonesty(mut self, dishonesty: Option<Dishonesty>) -> Self {
        Arc::get_mut(&mut self.inner).expect("set before the agent is shared").dishonesty = dishonesty;
        self
    }

    /// Publishes the offers and serves the agent's part until `shutdown`: negotiation,
    /// approvals, invoices, and the commit and reveal on `/agora/verify/1`.
    pub async fn start(
        &self,
        net: &agora_net::NetHandle,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(), crate::Error> {
        let platforms: Vec<(String, Address)> = self
            .inner
            .payments
            .config()
            .networks
            .iter()
            .map(|n| (n.platform(), self.inner.identity.address()))
            .collect();
        for preset in &self.inner.config.presets {
            let properties = offer_properties(preset, &self.inner.config, &self.inner.machine, &platforms);
            let base = DemandOfferBase { properties, constraints: "()".into() };
            let id = self.inner.market.subscribe_offer(&base, agora_agreement::ADMIN_PRINCIPAL).await?;
            tracing::info!(offer = %id, preset = %preset.name, "offer published");
            self.inner.offers.lock().expect("offers").push((id.clone(), base));
            let (agent, stop) = (self.clone(), shutdown.clone());
            tasks.spawn(async move { agent.negotiate(&id, stop).await });
        }
        let (agent, stop) = (self.clone(), shutdown.clone());
        tasks.spawn(async move { agent.invoice_ended(stop).await });
        let (agent, stop) = (self.clone(), shutdown.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(WORK_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {
                        // A round that panics is that round's end, not the agent's: the next
                        // one starts from the agreements as they are.
                        match std::panic::AssertUnwindSafe(agent.work()).catch_unwind().await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::warn!(error = %e, "looking after the agreements"),
                            Err(panic) => tracing::error!(
                                panic = crate::panic_message(&panic),
                                "a round of looking after the agreements panicked; the next one goes on"
                            ),
                        }
                    }
                }
            }
        });
        let mut requests = net.serve(agora_net::Channel::Verify).await?;
        let (agent, tracker) = (self.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let request = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = requests.recv() => match r { Some(r) => r, None => return },
                };
                let agent = agent.clone();
                tracker.spawn(async move {
                    let answer = match request.decode::<VerifyRequest>() {
                        Ok(decoded @ VerifyRequest::Reveal { .. })
                            if agent.inner.dishonesty == Some(Dishonesty::NoReveal) =>
                        {
                            // It lets the reveal deadline pass without an answer.
                            tokio::time::sleep(NO_REVEAL_HOLD).await;
                            drop(decoded);
                            VerifyResponse::Refused { message: "no reveal".into() }
                        }
                        Ok(decoded) => agent.on_verify(&request.from, decoded),
                        Err(e) => VerifyResponse::Refused { message: format!("bad request: {e}") },
                    };
                    request.answer(serde_json::to_value(answer).expect("answers serialise"));
                });
            }
        });
        Ok(())
    }
}
