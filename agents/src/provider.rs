//! The provider agent: it turns the operator's presets into offers, answers requestors'
//! proposals with its own priced terms, approves agreements while it has room for them, invoices
//! each agreement when it ends, and commits to and reveals its runs' results.

use crate::verify;
use crate::wire::{CommitmentBody, SignedCommitment, VerifyRequest, VerifyResponse};
use agora_activity::Activities;
use agora_market::api::{DemandOfferBase, Event};
use agora_market::{AgreementState, Market, ProposalState, Role};
use agora_payment::Payments;
use agora_payment::model::{Kind, Status};
use alloy_primitives::Address;
use futures_util::FutureExt;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The `[provider]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// What the node offers: one offer per preset.
    pub presets: Vec<Preset>,
    /// Agreements approved at once, at most; more are rejected.
    pub max_agreements: usize,
    /// `golem.node.debug.subnet`: requestors filter on it to find a private group of providers.
    pub subnet: String,
    /// Requestors (node addresses) it bids for; every one when empty.
    pub allow: Vec<Address>,
    /// Requestors it never bids for.
    pub deny: Vec<Address>,
    /// An HTTP hook asked about every demand (`POST` of the demand's JSON, answered with
    /// `{"shouldBid": bool, "reason": "…"}`), as Bacalhau's probes are.
    pub bid_hook_url: Option<String>,
    /// A program asked the same on its standard input and output.
    pub bid_hook_command: Option<Vec<String>>,
    /// `golem.com.scheme.payu.debit-note.interval-sec?`, offered.
    pub debit_note_interval_secs: u64,
    /// `golem.com.payment.debit-notes.accept-timeout?`, offered.
    pub debit_note_accept_timeout_secs: u64,
    /// An approved agreement with no activity running this long is terminated.
    pub idle_agreement_secs: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            presets: vec![Preset::default()],
            max_agreements: 8,
            subnet: "public".into(),
            allow: Vec::new(),
            deny: Vec::new(),
            bid_hook_url: None,
            bid_hook_command: None,
            debit_note_interval_secs: 120,
            debit_note_accept_timeout_secs: 240,
            idle_agreement_secs: 90,
        }
    }
}

/// One kind of work the node sells, and its price.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preset {
    pub name: String,
    /// `wasmtime` or `docker`.
    pub runtime: String,
    /// Price per second of an activity's life (`golem.usage.duration_sec`).
    pub per_duration_sec: f64,
    /// Price per CPU second (`golem.usage.cpu_sec`).
    pub per_cpu_sec: f64,
    /// Price per unit of WASM fuel (`agora.usage.fuel`).
    pub per_fuel: f64,
    /// Price of starting an activity, the fixed part.
    pub start: f64,
    /// Longest run, in seconds.
    pub max_run_secs: f64,
    /// Memory for one activity, GiB; the machine's memory when not set.
    pub mem_gib: Option<f64>,
    /// CPU threads for one activity; the machine's when not set.
    pub cpu_threads: Option<f64>,
}

impl Default for Preset {
    fn default() -> Self {
        Self {
            name: "wasm".into(),
            runtime: "wasmtime".into(),
            per_duration_sec: 0.0001,
            per_cpu_sec: 0.0002,
            per_fuel: 0.0,
            start: 0.001,
            max_run_secs: 60.0,
            mem_gib: None,
            cpu_threads: None,
        }
    }
}

/// What the machine has, as offers state it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    pub cpu_threads: usize,
    pub mem_gib: f64,
    pub storage_gib: f64,
}

impl Machine {
    /// This machine: its CPU threads, its memory, and the free space where `data_dir` is.
    pub fn probe(data_dir: &Path) -> Self {
        let cpu_threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mem_bytes = agora_activity::memory_total().map_or(0.0, |bytes| bytes as f64);
        let storage_gib = nix::sys::statvfs::statvfs(data_dir)
            .map(|s| s.blocks_available() as f64 * s.fragment_size() as f64 / f64::from(1u32 << 30))
            .unwrap_or(0.0);
        Self {
            cpu_threads,
            mem_gib: round2(mem_bytes / f64::from(1u32 << 30)),
            storage_gib: round2(storage_gib),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).floor() / 100.0
}

/// The offer of one preset: what Golem's requestors filter and score on, and agora's limits.
pub fn offer_properties(
    preset: &Preset,
    config: &ProviderConfig,
    machine: &Machine,
    platforms: &[(String, Address)],
) -> Value {
    let mut p = BTreeMap::<String, Value>::new();
    p.insert("golem.node.id.name".into(), json!(preset.name));
    p.insert("golem.node.debug.subnet".into(), json!(config.subnet));
    p.insert("golem.runtime.name".into(), json!(preset.runtime));
    p.insert("golem.inf.cpu.threads".into(), json!(preset.cpu_threads.unwrap_or(machine.cpu_threads as f64)));
    p.insert("golem.inf.mem.gib".into(), json!(preset.mem_gib.unwrap_or(machine.mem_gib)));
    p.insert("golem.inf.storage.gib".into(), json!(machine.storage_gib));
    p.insert("golem.com.scheme".into(), json!("payu"));
    p.insert("golem.com.pricing.model".into(), json!("linear"));
    p.insert("golem.com.usage.vector".into(), json!(agora_activity::wire::USAGE_VECTOR));
    p.insert(
        "golem.com.pricing.model.linear.coeffs".into(),
        json!([preset.per_duration_sec, preset.per_cpu_sec, preset.per_fuel, preset.start]),
    );
    for (platform, address) in platforms {
        p.insert(agora_market::keys::platform_address(platform), json!(format!("{address:#x}")));
    }
    p.insert(agora_payment::PROTOCOL_VERSION_KEY.into(), json!(agora_payment::PROTOCOL_VERSION));
    p.insert("golem.srv.caps.multi-activity".into(), json!(true));
    p.insert(agora_market::keys::DEBIT_NOTE_INTERVAL.into(), json!(config.debit_note_interval_secs));
    p.insert(
        agora_market::keys::DEBIT_NOTE_ACCEPT_TIMEOUT.into(),
        json!(config.debit_note_accept_timeout_secs),
    );
    p.insert("agora.limits.time_sec".into(), json!(preset.max_run_secs));
    json!(p)
}

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

/// Whether the agent bids for a demand, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidDecision {
    pub should_bid: bool,
    #[serde(default)]
    pub reason: String,
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
/// How long the agent does not bid for a requestor that left its debit notes unaccepted.
const STOP_FOR: Duration = Duration::from_secs(600);

/// The longest debit-note interval and accept timeout the agent works by, whatever the terms
/// say: a day.
const MAX_NOTE_WAIT: Duration = Duration::from_secs(86_400);
/// The most debit notes of one agreement that may wait unaccepted: past that the agent issues no
/// more until the requestor answers.
const MAX_UNACCEPTED_NOTES: usize = 32;

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
            let id = self.inner.market.subscribe_offer(&base, agora_market::ADMIN_PRINCIPAL).await?;
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

    /// Answers proposals and agreements on one offer until `stop`.
    async fn negotiate(&self, offer_id: &str, stop: CancellationToken) {
        loop {
            let events = tokio::select! {
                () = stop.cancelled() => return,
                events = self.inner.market.collect_offer_events(offer_id, POLL, 100) => events,
            };
            let events = match events {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(offer = offer_id, error = %e, "offer events");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            for event in events {
                // A proposal that panics its answer is left unanswered; the offer's loop goes on.
                match std::panic::AssertUnwindSafe(self.on_offer_event(offer_id, event)).catch_unwind().await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(offer = offer_id, error = %e, "answering the market"),
                    Err(panic) => tracing::error!(
                        offer = offer_id,
                        panic = crate::panic_message(&panic),
                        "answering the market panicked; the offer's next events are answered"
                    ),
                }
            }
        }
    }

    async fn on_offer_event(&self, offer_id: &str, event: Event) -> Result<(), crate::Error> {
        match event {
            Event::Proposal { proposal, .. } if proposal.state == ProposalState::Draft => {
                let requestor = proposal.issuer_id.parse::<Address>().ok();
                let decision = self.should_bid(requestor, &proposal.properties).await;
                if !decision.should_bid {
                    tracing::info!(proposal = %proposal.proposal_id, reason = %decision.reason, "not bidding");
                    let reason = json!({"message": decision.reason});
                    self.inner.market.reject_proposal(offer_id, &proposal.proposal_id, Some(reason)).await?;
                    return Ok(());
                }
                let base = self.base(offer_id);
                self.inner.market.counter_proposal(offer_id, &proposal.proposal_id, &base, true).await?;
            }
            Event::Agreement { agreement, .. } if agreement.state == AgreementState::Pending => {
                let _deciding = self.inner.deciding.lock().await;
                let approved = self.approved().await?.len();
                if approved >= self.inner.config.max_agreements {
                    let reason = json!({"message": format!(
                        "at capacity: {approved} agreements of {} are running", self.inner.config.max_agreements
                    )});
                    self.inner.market.reject_agreement(&agreement.agreement_id, Some(reason)).await?;
                } else {
                    self.inner.market.approve_agreement(&agreement.agreement_id).await?;
                    tracing::info!(agreement = %agreement.agreement_id, "agreement approved");
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn base(&self, offer_id: &str) -> DemandOfferBase {
        let offers = self.inner.offers.lock().expect("offers");
        offers.iter().find(|(id, _)| id == offer_id).map(|(_, b)| b.clone()).expect("an offer of this agent")
    }

    /// The bid rules: the deny-list, the allow-list, then the hooks.
    pub async fn should_bid(&self, requestor: Option<Address>, demand: &Value) -> BidDecision {
        let config = &self.inner.config;
        let no = |reason: String| BidDecision { should_bid: false, reason };
        let Some(requestor) = requestor else { return no("the requestor has no node address".into()) };
        let stopped = self
            .inner
            .stopped_for
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&requestor)
            .copied();
        if stopped.is_some_and(|until| Instant::now() < until) {
            return no(format!(
                "requestor {requestor:#x} left debit notes unaccepted; not working for it for now"
            ));
        }
        if config.deny.contains(&requestor) {
            return no(format!("requestor {requestor:#x} is on the deny-list"));
        }
        if !config.allow.is_empty() && !config.allow.contains(&requestor) {
            return no(format!("requestor {requestor:#x} is not on the allow-list"));
        }
        let asked = json!({"requestor": format!("{requestor:#x}"), "properties": demand});
        if let Some(url) = &config.bid_hook_url {
            match ask_hook(&self.inner.http, url, &asked).await {
                Ok(decision) if !decision.should_bid => return decision,
                Ok(_) => {}
                Err(e) => return no(format!("the bid hook {url} did not answer: {e}")),
            }
        }
        if let Some(command) = &config.bid_hook_command {
            match run_hook(command, &asked).await {
                Ok(decision) if !decision.should_bid => return decision,
                Ok(_) => {}
                Err(e) => return no(format!("the bid hook {} failed: {e}", command.join(" "))),
            }
        }
        BidDecision { should_bid: true, reason: String::new() }
    }

    /// The agreements this node provides that are running.
    async fn approved(&self) -> Result<Vec<agora_market::Agreement>, crate::Error> {
        Ok(self.inner.market.agreements_in(Role::Provider, AgreementState::Approved).await?)
    }

    /// Looks after each approved agreement: a debit note per running activity at the agreed
    /// interval; the agreement terminated when its debit notes go unaccepted past the agreed
    /// timeout (and no bid for that requestor for a while), or when no activity has run for
    /// `idle_agreement_secs`.
    async fn work(&self) -> Result<(), crate::Error> {
        let config = &self.inner.config;
        let retry: Vec<String> =
            self.inner.to_invoice.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
        for agreement in retry {
            if let Err(e) = self.invoice(&agreement).await {
                tracing::warn!(%agreement, error = %e, "invoicing, again");
            }
        }
        let agreements = self.approved().await?;
        let now = Instant::now();
        self.inner
            .working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| agreements.iter().any(|a| &a.id == id));
        for agreement in agreements {
            // The agreed terms, read checked; the agent never sends notes more often than it
            // offered to, and waits a day at the most, whatever a requestor wrote.
            let own_interval = Duration::from_secs(config.debit_note_interval_secs.max(1));
            let interval = agreement
                .debit_note_interval()
                .ok()
                .flatten()
                .unwrap_or(own_interval)
                .clamp(own_interval, MAX_NOTE_WAIT.max(own_interval));
            let timeout = agreement
                .debit_note_accept_timeout()
                .ok()
                .flatten()
                .unwrap_or(Duration::from_secs(config.debit_note_accept_timeout_secs))
                .clamp(Duration::from_secs(1), MAX_NOTE_WAIT);
            let running: Vec<_> =
                self.inner.activities.hosted_usage(&agreement.id).into_iter().filter(|u| !u.ended).collect();
            let (note_due, idle_for) = {
                let mut working =
                    self.inner.working.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let w = working.entry(agreement.id.clone()).or_default();
                if running.is_empty() {
                    w.idle_since.get_or_insert(now);
                } else {
                    w.idle_since = None;
                }
                let due = !running.is_empty() && w.last_note.is_none_or(|t| now - t >= interval);
                if due {
                    w.last_note = Some(now);
                }
                (due, w.idle_since.map(|t| now - t))
            };
            if idle_for.is_some_and(|idle| idle >= Duration::from_secs(config.idle_agreement_secs)) {
                let reason =
                    json!({"message": format!("idle: no activity for {} s", config.idle_agreement_secs)});
                self.inner.market.terminate_agreement(&agreement.id, Some(reason)).await?;
                continue;
            }
            let waiting: Vec<_> = self
                .inner
                .payments
                .agreement_documents(Kind::DebitNote, &agreement.id)
                .await?
                .into_iter()
                .filter(|d| d.issued_here && matches!(d.status, Status::Issued | Status::Received))
                .collect();
            // Clamped above to a day, which chrono holds.
            let timeout_delta = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
            let unaccepted = waiting
                .iter()
                // Only work still running can be stopped for it: a note of an activity that has
                // ended (Golem's SDKs ignore those) is settled by the invoice.
                .filter(|d| running.iter().any(|a| d.document.activity_id.as_deref() == Some(&a.activity_id)))
                .any(|d| chrono::Utc::now() - d.document.timestamp > timeout_delta);
            if unaccepted {
                self.inner
                    .stopped_for
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(agreement.requestor, now + STOP_FOR);
                let reason =
                    json!({"message": format!("debit notes unaccepted for {} s", timeout.as_secs())});
                self.inner.market.terminate_agreement(&agreement.id, Some(reason)).await?;
                tracing::info!(agreement = %agreement.id, requestor = %agreement.requestor, "stopped working: debit notes unaccepted");
                continue;
            }
            // Notes of activities that ended are settled by the invoice (Golem's SDKs leave them
            // unanswered), so only the running ones' count towards the backlog.
            let backlog = waiting
                .iter()
                .filter(|d| running.iter().any(|a| d.document.activity_id.as_deref() == Some(&a.activity_id)))
                .count();
            if note_due && backlog >= MAX_UNACCEPTED_NOTES {
                tracing::info!(agreement = %agreement.id, backlog, "no more debit notes until the requestor answers");
            } else if note_due {
                for activity in running {
                    let usage: Vec<f64> = if self.inner.dishonesty == Some(Dishonesty::InflateUsage) {
                        activity.usage.iter().map(|u| u * 100.0 + 100.0).collect()
                    } else {
                        activity.usage.clone()
                    };
                    let note = self
                        .inner
                        .payments
                        .issue_debit_note(agora_payment::NewDebitNote {
                            agreement_id: agreement.id.clone(),
                            activity_id: activity.activity_id.clone(),
                            total_amount_due: None,
                            usage_counter_vector: Some(json!(usage)),
                            payment_due_date: None,
                        })
                        .await?;
                    self.inner.payments.send(Kind::DebitNote, &note.document.id).await?;
                }
            }
        }
        Ok(())
    }

    /// Invoices each agreement this node provides as soon as it ends: the cost of its
    /// activities' usage at the agreement's prices.
    async fn invoice_ended(&self, stop: CancellationToken) {
        let mut after = Some(chrono::Utc::now());
        loop {
            let events = tokio::select! {
                () = stop.cancelled() => return,
                events = self.inner.market.agreement_events(after, POLL, 100) => events,
            };
            match events {
                Ok(events) => {
                    for event in events {
                        after = Some(event.event_date);
                        if event.event_type == "AgreementTerminatedEvent"
                            && let Err(e) = self.invoice(&event.agreement_id).await
                        {
                            tracing::warn!(agreement = %event.agreement_id, error = %e, "invoicing");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "agreement events");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Invoices an ended agreement, or sends its invoice if it was issued and not sent. A failure
    /// is tried again at the next round of [`ProviderAgent::work`].
    async fn invoice(&self, agreement_id: &str) -> Result<(), crate::Error> {
        if !self
            .inner
            .invoiced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agreement_id.into())
        {
            return Ok(());
        }
        let done = self.invoice_once(agreement_id).await;
        if done.is_err() {
            self.inner
                .invoiced
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(agreement_id);
            self.inner
                .to_invoice
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(agreement_id.into());
        }
        done
    }

    async fn invoice_once(&self, agreement_id: &str) -> Result<(), crate::Error> {
        if self.inner.dishonesty == Some(Dishonesty::LateInvoice) {
            let since = *self
                .inner
                .invoice_asked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(agreement_id.to_string())
                .or_insert_with(Instant::now);
            if since.elapsed() < LATE_INVOICE {
                // Tried again at the next round, as a failure to invoice is.
                return Err(crate::Error::Conflict(format!("late-invoice: invoicing {agreement_id} later")));
            }
        }
        let agreement = self.inner.market.agreement(agreement_id).await?;
        if agreement.role != Role::Provider {
            return Ok(());
        }
        let issued = self
            .inner
            .payments
            .agreement_documents(Kind::Invoice, agreement_id)
            .await?
            .into_iter()
            .find(|d| d.issued_here && d.status != Status::Cancelled);
        if let Some(issued) = issued {
            if issued.status == Status::Issued {
                self.inner.payments.send(Kind::Invoice, &issued.document.id).await?;
            }
            return Ok(());
        }
        let usage = self.inner.activities.hosted_usage(agreement_id);
        let mut amount = Decimal::ZERO;
        for hosted in &usage {
            amount += agora_payment::usage_cost(&agreement, &json!(hosted.usage))?.unwrap_or_default();
        }
        if amount.is_zero() {
            return Ok(());
        }
        if self.inner.dishonesty == Some(Dishonesty::Overcharge) {
            amount = amount.checked_mul(Decimal::ONE_HUNDRED).unwrap_or(amount);
        }
        let invoice = self
            .inner
            .payments
            .issue_invoice(agora_payment::NewInvoice {
                agreement_id: agreement_id.into(),
                activity_ids: usage.into_iter().map(|u| u.activity_id).collect(),
                amount: amount.to_string(),
                payment_due_date: None,
            })
            .await?;
        self.inner.payments.send(Kind::Invoice, &invoice.document.id).await?;
        tracing::info!(agreement = agreement_id, invoice = %invoice.document.id, %amount, "invoice sent");
        Ok(())
    }

    fn on_verify(&self, peer: &agora_net::PeerId, request: VerifyRequest) -> VerifyResponse {
        match self.verify_answer(peer, request) {
            Ok(answer) => answer,
            Err(message) => VerifyResponse::Refused { message },
        }
    }

    fn verify_answer(
        &self,
        peer: &agora_net::PeerId,
        request: VerifyRequest,
    ) -> Result<VerifyResponse, String> {
        let requestor = agora_identity::address_of_peer(peer).map_err(|e| e.to_string())?;
        let (VerifyRequest::Commit { activity_id, job_id } | VerifyRequest::Reveal { activity_id, job_id }) =
            &request;
        let digest = self
            .inner
            .activities
            .hosted_results_hash(activity_id, requestor)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("activity {activity_id} has no finished run"))?;
        match request {
            VerifyRequest::Commit { .. } => {
                let mut commitment = verify::commit(job_id, self.inner.identity.address(), &digest);
                if let Some(Dishonesty::Replay(other)) = self.inner.dishonesty {
                    // Another provider's seal, under this provider's name and signature.
                    commitment.seal = verify::commit(job_id, other, &digest).seal;
                }
                let body = CommitmentBody::new(job_id, activity_id, &commitment);
                let signature =
                    agora_identity::sign_json(&self.inner.identity, &body).map_err(|e| e.to_string())?;
                let signed = serde_json::to_vec(&SignedCommitment { body, signature }).expect("JSON");
                let key = agora_identity::public_key_of_peer(peer).map_err(|e| e.to_string())?;
                let sealed = agora_identity::seal(&key, &signed).map_err(|e| e.to_string())?;
                Ok(VerifyResponse::Committed { sealed: hex::encode(sealed) })
            }
            VerifyRequest::Reveal { .. } => Ok(VerifyResponse::Revealed { digest }),
        }
    }
}

/// How long a bid hook may take to answer.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks an HTTP bid hook: the question as the JSON body of a `POST`, the decision as the answer.
async fn ask_hook(http: &reqwest::Client, url: &str, asked: &Value) -> Result<BidDecision, String> {
    let resp = http.post(url).json(asked).timeout(HOOK_TIMEOUT).send().await.map_err(|e| e.to_string())?;
    let resp = resp.error_for_status().map_err(|e| e.to_string())?;
    resp.json::<BidDecision>().await.map_err(|e| format!("its answer is not {{shouldBid, reason}}: {e}"))
}

/// Runs a bid hook program: the question on its stdin, the decision on its stdout.
async fn run_hook(command: &[String], asked: &Value) -> Result<BidDecision, String> {
    use tokio::io::AsyncWriteExt;
    let (program, args) = command.split_first().ok_or("the command is empty")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin.write_all(asked.to_string().as_bytes()).await.map_err(|e| e.to_string())?;
    drop(stdin);
    let out = tokio::time::timeout(HOOK_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("no answer within {} s", HOOK_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("it exited with {}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("its answer is not {{shouldBid, reason}}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_carries_what_golem_requestors_filter_and_score_on() {
        let machine = Machine { cpu_threads: 2, mem_gib: 7.5, storage_gib: 100.0 };
        let platforms = [("erc20-dev-tglm".to_string(), Address::repeat_byte(7))];
        let p = offer_properties(&Preset::default(), &ProviderConfig::default(), &machine, &platforms);
        assert_eq!(p["golem.inf.cpu.threads"], json!(2.0));
        assert_eq!(p["golem.inf.mem.gib"], json!(7.5));
        assert_eq!(p["golem.inf.storage.gib"], json!(100.0));
        assert_eq!(p["golem.runtime.name"], "wasmtime");
        assert_eq!(p["golem.com.scheme"], "payu");
        assert_eq!(p["golem.com.pricing.model"], "linear");
        // One coefficient per usage counter, then the fixed price, as JSON floats.
        assert_eq!(p["golem.com.pricing.model.linear.coeffs"], json!([0.0001, 0.0002, 0.0, 0.001]));
        assert_eq!(p["golem.com.usage.vector"].as_array().unwrap().len(), 3);
        assert_eq!(
            p["golem.com.payment.platform.erc20-dev-tglm.address"],
            "0x0707070707070707070707070707070707070707"
        );
        assert_eq!(p["golem.com.payment.protocol.version"], json!(3));
        assert_eq!(p["golem.srv.caps.multi-activity"], json!(true));
        assert_eq!(p["golem.node.debug.subnet"], "public");
        assert_eq!(p["golem.com.scheme.payu.debit-note.interval-sec?"], json!(120));
        assert_eq!(p["golem.com.payment.debit-notes.accept-timeout?"], json!(240));
        // The pricing reads back as the market reads it.
        let flat = agora_grammar::flatten(&p).unwrap();
        assert!(crate::LinearPricing::from_properties(&flat).is_ok());
    }

    fn asked() -> Value {
        json!({"requestor": "0x0707070707070707070707070707070707070707", "properties": {"a": 1}})
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_program_hook_reads_the_demand_and_answers_should_bid() {
        // It answers no when the demand names the requestor it was given on stdin.
        let script = r#"grep -q 0x0707 && echo '{"shouldBid": false, "reason": "busy"}'"#;
        let decision = run_hook(&sh(script), &asked()).await.unwrap();
        assert_eq!(decision, BidDecision { should_bid: false, reason: "busy".into() });
        let yes = run_hook(&sh(r#"cat >/dev/null; echo '{"shouldBid": true}'"#), &asked()).await.unwrap();
        assert!(yes.should_bid);
        let failed = run_hook(&sh("cat >/dev/null; exit 3"), &asked()).await.unwrap_err();
        assert!(failed.contains("exit"), "{failed}");
        let garbled = run_hook(&sh("cat >/dev/null; echo maybe"), &asked()).await.unwrap_err();
        assert!(garbled.contains("shouldBid"), "{garbled}");
        assert!(run_hook(&["/nonexistent/hook".into()], &asked()).await.is_err());
    }

    #[tokio::test]
    async fn an_http_hook_gets_the_demand_posted_and_answers_should_bid() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/bid", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            // The whole request: its headers, then as many bytes as Content-Length says.
            let mut request = Vec::new();
            let mut piece = [0u8; 4096];
            loop {
                let n = socket.read(&mut piece).await.unwrap();
                request.extend_from_slice(&piece[..n]);
                let text = String::from_utf8_lossy(&request).to_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                assert!(n > 0, "the request ended early");
            }
            let body = r#"{"shouldBid": false, "reason": "not today"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let decision = ask_hook(&reqwest::Client::new(), &url, &asked()).await.unwrap();
        assert_eq!(decision, BidDecision { should_bid: false, reason: "not today".into() });
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /bid") && request.contains("0x0707"), "{request}");
        // Nobody listening: an error, which the agent takes as no.
        assert!(ask_hook(&reqwest::Client::new(), "http://127.0.0.1:9/bid", &asked()).await.is_err());
    }

    #[test]
    fn the_machine_is_probed() {
        let m = Machine::probe(Path::new("/"));
        assert!(m.cpu_threads >= 1);
        assert!(m.mem_gib > 0.0);
    }
}
