//! The market service: subscriptions from the REST API, offers from the network, and matching.

use crate::api::{DemandOfferBase, DemandView, Event, OfferView};
use crate::courier::Courier;
use crate::ids::now_millis;
use crate::store::{MarketStore, Presence, Stored};
use crate::wire::{Announcement, OfferBody};
use crate::{Error, Offer, Result};
use agora_grammar::{Offers, Side, Vocabulary, match_pair};
use agora_identity::Address;
use chrono::Duration;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// How long an offer or a demand stands unless its properties say otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::hours(1);

/// What a node does after an announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Fetch these offers' bodies from the announcing peer.
    Fetch(Vec<String>),
    /// Ask the announcing peer whether it still offers these; drop those it no longer does.
    Confirm(Vec<String>),
}

/// One node's market.
#[derive(Debug, Clone)]
pub struct Market {
    pub(crate) store: MarketStore,
    pub(crate) node_id: Address,
    /// Signs agreements: the node's identity.
    pub(crate) identity: agora_identity::Identity,
    /// Carries negotiation messages to other nodes.
    pub(crate) courier: Option<Arc<dyn Courier>>,
    /// Woken whenever events are added, so long polls answer at once.
    pub(crate) events: Arc<Notify>,
    /// Whether this node has a standing demand: unknown, no, yes. Asked for every announcement
    /// heard, so it is kept here rather than asked of the database each time.
    has_demands: Arc<std::sync::atomic::AtomicU8>,
    /// Offers heard of while this node had no demand: id → (announcing peer, its address). Fetched
    /// once a demand is placed, so the node need not wait for the next announcement.
    heard: Arc<std::sync::Mutex<HashMap<String, (String, Address)>>>,
    /// Woken when a demand is placed while offers are waiting in `heard`.
    demand_placed: Arc<Notify>,
    /// Woken whenever a demand is placed, for [`Market::demand_stands`].
    demand_standing: Arc<Notify>,
    /// How long an Initial or Draft proposal waits for an answer before it is Expired.
    pub(crate) proposal_lifetime: Duration,
    /// Whether the outbox may hold undelivered messages (true at start: a restart may have left
    /// some), so an idle node does not poll it.
    pub(crate) outbox_pending: Arc<std::sync::atomic::AtomicBool>,
}

const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

/// How long an unanswered proposal stays open.
pub const DEFAULT_PROPOSAL_LIFETIME: Duration = Duration::minutes(30);

/// Offers remembered while a node has no demand, at most.
const MAX_HEARD: usize = 100_000;

fn owned_by(offer: &Stored, provider: Address) -> bool {
    agora_identity::parse_address(&offer.owner).is_ok_and(|owner| owner == provider)
}

fn owner_text(a: Address) -> String {
    format!("{a:#x}")
}

/// Checks a subscription body as a user wrote it: properties flatten, constraints parse.
fn check(base: &DemandOfferBase) -> Result<Offer> {
    crate::ids::storable(&base.properties, &base.constraints).map_err(Error::BadInput)?;
    agora_grammar::parse(&base.constraints).map_err(|e| Error::BadInput(format!("constraints: {e}")))?;
    let now = now_millis();
    Offer::new(&base.properties, &base.constraints, Address::ZERO, now, now + DEFAULT_LIFETIME)
        .map_err(|e| Error::BadInput(e.to_string()))
}

fn stored(spec: &Offer, id: String) -> Stored {
    Stored {
        id,
        owner: owner_text(spec.provider_id),
        properties: serde_json::to_value(&spec.properties).unwrap_or_default(),
        constraints: spec.constraints.clone(),
        created_at: spec.timestamp,
        expires_at: spec.expiration,
    }
}

fn side(vocab: &mut Vocabulary, s: &Stored) -> Option<Side> {
    // Stored specs were checked when they came in; one that no longer reads is skipped.
    Side::parse(vocab, &s.properties, &s.constraints).ok()
}

impl Market {
    /// The market of the node whose identity is `identity`.
    pub fn new(pool: sqlx::PgPool, identity: agora_identity::Identity) -> Self {
        Self {
            store: MarketStore::new(pool),
            node_id: identity.address(),
            identity,
            courier: None,
            events: Arc::new(Notify::new()),
            has_demands: Arc::new(std::sync::atomic::AtomicU8::new(UNKNOWN)),
            heard: Arc::default(),
            demand_placed: Arc::new(Notify::new()),
            demand_standing: Arc::new(Notify::new()),
            proposal_lifetime: DEFAULT_PROPOSAL_LIFETIME,
            outbox_pending: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Sets how long a proposal waits for an answer before it expires.
    pub fn with_proposal_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.proposal_lifetime = Duration::from_std(lifetime).unwrap_or(DEFAULT_PROPOSAL_LIFETIME);
        self
    }

    /// Lets the market send negotiation messages.
    pub fn with_courier(mut self, courier: Arc<dyn Courier>) -> Self {
        self.courier = Some(courier);
        self
    }

    /// The address of the node this market belongs to.
    pub fn node_id(&self) -> Address {
        self.node_id
    }

    /// Other nodes' offers this node knows and that still stand, as Golem shows offers.
    pub async fn remote_offers(&self) -> Result<Vec<OfferView>> {
        Ok(self.store.active_remote_offers().await?.into_iter().map(Stored::into_view).collect())
    }

    pub(crate) fn courier(&self) -> Result<&dyn Courier> {
        self.courier.as_deref().ok_or_else(|| Error::Unreachable("this node has no network".into()))
    }

    /// Tells the network now, if this market has one, rather than at the next periodic round.
    async fn announce(&self, announcement: Announcement) {
        if let Some(courier) = &self.courier {
            courier.announce(announcement).await;
        }
    }

    /// Publishes an offer on behalf of `principal` (whose its agreements and their money are),
    /// and announces it; its id is its subscription id.
    pub async fn subscribe_offer(&self, base: &DemandOfferBase, principal: &str) -> Result<String> {
        let mut spec = check(base)?;
        spec.provider_id = self.node_id;
        let id = spec.id();
        self.store.insert_offer(&stored(&spec, id.clone()), principal).await?;
        self.announce(Announcement::Offered { offer_ids: vec![id.clone()] }).await;
        Ok(id)
    }

    pub(crate) async fn require_subscription(&self, subscription: &str, provider_side: bool) -> Result<()> {
        let presence = if provider_side {
            self.store.offer_presence(subscription).await?
        } else {
            self.store.demand_presence(subscription).await?
        };
        match presence {
            Presence::Active => Ok(()),
            Presence::Unsubscribed => {
                Err(Error::Gone(format!("subscription {subscription} is unsubscribed")))
            }
            Presence::Unknown => Err(Error::NotFound(format!("no subscription {subscription}"))),
        }
    }

    /// Places a demand on behalf of `principal` (whose its agreements and their money are), and
    /// matches it against every offer this node knows.
    pub async fn subscribe_demand(&self, base: &DemandOfferBase, principal: &str) -> Result<String> {
        let mut spec = check(base)?;
        spec.provider_id = self.node_id;
        let id = spec.demand_id();
        let demand = stored(&spec, id.clone());
        self.store.insert_demand(&demand, principal).await?;
        self.has_demands.store(YES, std::sync::atomic::Ordering::Relaxed);
        self.demand_standing.notify_waiters();
        if !self.heard.lock().expect("heard lock").is_empty() {
            self.demand_placed.notify_one();
        }
        let offers = self.store.active_remote_offers().await?;
        let mut index = Offers::new(agora_grammar::DEFAULT_INDEXED);
        let mut kept = Vec::with_capacity(offers.len());
        for offer in offers.into_iter().filter(|o| o.owner != owner_text(self.node_id)) {
            let (Ok(flat), Ok(expr)) =
                (agora_grammar::flatten(&offer.properties), agora_grammar::parse(&offer.constraints))
            else {
                continue;
            };
            index.push(&flat, &expr);
            kept.push(offer);
        }
        let flat = agora_grammar::flatten(&demand.properties).map_err(|e| Error::BadInput(e.to_string()))?;
        let expr = agora_grammar::parse(&demand.constraints).map_err(|e| Error::BadInput(e.to_string()))?;
        let compiled = index.demand(&flat, &expr);
        let mut added = false;
        for at in index.match_all(&compiled) {
            added |= self.store.initial_proposal(&id, &kept[at]).await?;
        }
        if added {
            self.events.notify_waiters();
        }
        Ok(id)
    }

    pub async fn offers(&self) -> Result<Vec<OfferView>> {
        self.store.list_offers().await
    }

    pub async fn demands(&self) -> Result<Vec<DemandView>> {
        self.store.list_demands().await
    }

    fn presence_error(kind: &str, id: &str, presence: Presence) -> Error {
        match presence {
            Presence::Unsubscribed => {
                Error::Gone(format!("{kind} subscription {id} is already unsubscribed"))
            }
            _ => Error::NotFound(format!("no {kind} subscription {id}")),
        }
    }

    /// Withdraws an offer, and tells the network.
    pub async fn unsubscribe_offer(&self, id: &str) -> Result<()> {
        if !self.store.unsubscribe_offer(id).await? {
            return Err(Self::presence_error("offer", id, self.store.offer_presence(id).await?));
        }
        self.announce(Announcement::Unsubscribed { offer_ids: vec![id.to_string()] }).await;
        Ok(())
    }

    pub async fn unsubscribe_demand(&self, id: &str) -> Result<()> {
        if !self.store.unsubscribe_demand(id).await? {
            return Err(Self::presence_error("demand", id, self.store.demand_presence(id).await?));
        }
        self.has_demands.store(UNKNOWN, std::sync::atomic::Ordering::Relaxed);
        self.events.notify_waiters();
        Ok(())
    }

    /// Events of a demand subscription: waits up to `timeout` for the first, returns up to `max`.
    pub async fn collect_demand_events(
        &self,
        demand_id: &str,
        timeout: std::time::Duration,
        max: usize,
    ) -> Result<Vec<Event>> {
        self.collect_events(demand_id, false, timeout, max).await
    }

    /// The long poll of a subscription's events (either side): waits up to `timeout` for the
    /// first, returns up to `max`; an unknown or ended subscription is an error.
    pub(crate) async fn collect_events(
        &self,
        subscription: &str,
        provider_side: bool,
        timeout: std::time::Duration,
        max: usize,
    ) -> Result<Vec<Event>> {
        self.long_poll(timeout, || async {
            self.require_subscription(subscription, provider_side).await?;
            self.store.take_events(subscription, max.max(1) as i64).await
        })
        .await
    }

    /// Asks `ask` until it finds something or `timeout` passes, waking whenever an event is
    /// added. The wake-up is registered before each ask, so an event added in between still
    /// wakes the poll.
    pub(crate) async fn long_poll<T, F, Fut>(
        &self,
        timeout: std::time::Duration,
        mut ask: F,
    ) -> Result<Vec<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.events.notified();
            let found = ask().await?;
            if !found.is_empty() || tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Ok(found);
            }
        }
    }

    /// What to announce now: every standing own offer, in announcements of a bounded size.
    pub async fn announcements(&self) -> Result<Vec<Announcement>> {
        let ids: Vec<String> = self.store.active_offers().await?.into_iter().map(|o| o.id).collect();
        Ok(ids
            .chunks(crate::MAX_OFFERS_PER_ANNOUNCEMENT)
            .map(|chunk| Announcement::Offered { offer_ids: chunk.to_vec() })
            .collect())
    }

    /// Returns once this node has a standing demand: at once if it has one already (placed
    /// before a restart, say), else when one is placed.
    pub async fn demand_stands(&self) -> Result<()> {
        loop {
            // Enabled before the check, so a demand placed during it still wakes this.
            let placed = self.demand_standing.notified();
            tokio::pin!(placed);
            placed.as_mut().enable();
            // Asked of the database, not of the cached answer, which a demand placed and another
            // withdrawn during a read can leave stale.
            if self.has_demands.load(std::sync::atomic::Ordering::Relaxed) == YES
                || self.store.has_active_demands().await?
            {
                return Ok(());
            }
            placed.await;
        }
    }

    async fn has_standing_demand(&self) -> Result<bool> {
        use std::sync::atomic::Ordering::Relaxed;
        match self.has_demands.load(Relaxed) {
            YES => Ok(true),
            NO => Ok(false),
            _ => {
                let yes = self.store.has_active_demands().await?;
                // Only if nothing was learnt meanwhile: a demand placed while the database was
                // asked has already said YES, and a stale NO must not undo it.
                let _learnt_meanwhile =
                    self.has_demands.compare_exchange(UNKNOWN, if yes { YES } else { NO }, Relaxed, Relaxed);
                Ok(yes)
            }
        }
    }

    /// Handles an announcement from `provider` (the address behind the sending peer): says which
    /// offers to fetch from that peer, or which to ask it about. Gossip is unsigned, so an
    /// announcement changes nothing by itself; the node acts only on the peer's own answers.
    pub async fn on_announcement(
        &self,
        peer: &str,
        provider: Address,
        announcement: Announcement,
    ) -> Result<FollowUp> {
        if provider == self.node_id {
            return Ok(FollowUp::Fetch(Vec::new()));
        }
        // Gossip is anyone's to send: what cannot be an id is dropped before it is looked up.
        let announcement = match announcement {
            Announcement::Offered { mut offer_ids } => {
                offer_ids.retain(|id| agora_agreement::is_valid_id(id));
                Announcement::Offered { offer_ids }
            }
            Announcement::Unsubscribed { mut offer_ids } => {
                offer_ids.retain(|id| agora_agreement::is_valid_id(id));
                Announcement::Unsubscribed { offer_ids }
            }
        };
        match announcement {
            // A node with no standing demand has nothing to match offers with: it fetches none
            // now, and remembers them for when it places one.
            Announcement::Offered { offer_ids } if !self.has_standing_demand().await? => {
                let mut heard = self.heard.lock().expect("heard lock");
                for id in offer_ids.into_iter().take(crate::MAX_OFFERS_PER_ANNOUNCEMENT) {
                    if heard.len() >= MAX_HEARD {
                        break;
                    }
                    heard.insert(id, (peer.to_string(), provider));
                }
                // A demand placed since the check above looked at `heard` before these were
                // added (the lock orders the two): wake the fetcher for them.
                if self.has_demands.load(std::sync::atomic::Ordering::Relaxed) == YES {
                    self.demand_placed.notify_one();
                }
                Ok(FollowUp::Fetch(Vec::new()))
            }
            Announcement::Offered { offer_ids } => {
                let mut unknown = Vec::new();
                for id in offer_ids.into_iter().take(crate::MAX_OFFERS_PER_ANNOUNCEMENT) {
                    if !self.store.knows_remote_offer(&id).await? {
                        unknown.push(id);
                    }
                }
                Ok(FollowUp::Fetch(unknown))
            }
            Announcement::Unsubscribed { mut offer_ids } => {
                offer_ids.truncate(crate::MAX_OFFERS_PER_ANNOUNCEMENT);
                {
                    let mut heard = self.heard.lock().expect("heard lock");
                    for id in &offer_ids {
                        if heard.get(id).is_some_and(|(_, owner)| *owner == provider) {
                            heard.remove(id);
                        }
                    }
                }
                let mut standing = Vec::new();
                for id in offer_ids {
                    if self.store.remote_offer(&id).await?.is_some_and(|o| owned_by(&o, provider)) {
                        standing.push(id);
                    }
                }
                Ok(FollowUp::Confirm(standing))
            }
        }
    }

    /// Waits until a demand is placed while offers heard of earlier wait to be fetched; returns
    /// them as (offer id, peer, provider), and forgets them.
    pub async fn heard_offers_wanted(&self) -> Vec<(String, String, Address)> {
        loop {
            self.demand_placed.notified().await;
            let taken = std::mem::take(&mut *self.heard.lock().expect("heard lock"));
            if !taken.is_empty() {
                return taken.into_iter().map(|(id, (peer, provider))| (id, peer, provider)).collect();
            }
        }
    }

    /// `provider` answered that it no longer offers `offer_id` (asked after an announcement said
    /// so): the offer stops matching here.
    pub async fn on_offer_gone(&self, provider: Address, offer_id: &str) -> Result<()> {
        if let Some(offer) = self.store.remote_offer(offer_id).await?
            && owned_by(&offer, provider)
        {
            self.store.unsubscribe_remote(&[offer.id], &offer.owner).await?;
        }
        Ok(())
    }

    /// Takes in an offer fetched from `provider`: its id must be the hash of its content, and its
    /// owner the peer that served it. Then matches it against every standing demand.
    pub async fn on_offer_body(&self, provider: Address, peer: &str, body: OfferBody) -> Result<()> {
        let owner: Address = agora_identity::parse_address(&body.provider_id)
            .map_err(|e| Error::Refused(format!("offer {}: {e}", body.offer_id)))?;
        if owner != provider {
            return Err(Error::Refused(format!(
                "offer {} names provider {owner} but came from {provider}",
                body.offer_id
            )));
        }
        crate::ids::storable(&body.properties, &body.constraints).map_err(Error::Refused)?;
        if !agora_agreement::is_valid_id(&body.offer_id) {
            return Err(Error::Refused(format!("{:?} is not an offer id", body.offer_id)));
        }
        let spec = Offer::new(&body.properties, &body.constraints, owner, body.timestamp, body.expiration)
            .map_err(|e| Error::Refused(format!("offer {}: {e}", body.offer_id)))?;
        spec.check_id(&body.offer_id).map_err(|e| Error::Refused(e.to_string()))?;
        agora_grammar::parse(&body.constraints)
            .map_err(|e| Error::Refused(format!("offer {}: constraints: {e}", body.offer_id)))?;
        if !self.store.insert_remote_offer(&body, peer).await? {
            return Ok(());
        }
        let Some(offer) = self.store.remote_offer(&body.offer_id).await? else { return Ok(()) };
        let mut vocab = Vocabulary::default();
        let Some(offer_side) = side(&mut vocab, &offer) else { return Ok(()) };
        let mut added = false;
        for demand in self.store.active_demands().await? {
            let Some(demand_side) = side(&mut vocab, &demand) else { continue };
            if match_pair(&vocab, &demand_side, &offer_side).result == agora_grammar::Outcome::Match {
                added |= self.store.initial_proposal(&demand.id, &offer).await?;
            }
        }
        if added {
            self.events.notify_waiters();
        }
        Ok(())
    }
}
