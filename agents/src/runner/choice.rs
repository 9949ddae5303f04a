//! Which providers a job asks: the bids it keeps, one per provider, and the order it asks them
//! in, by their standing with this node.

use super::reputation::Standing;
use agora_market::ProposalState;
use agora_market::api::{Event, ProposalView};
use alloy_primitives::Address;
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// The providers' first proposals on a demand, one per provider.
#[derive(Debug)]
pub(super) struct Bids {
    pub(super) offers: BTreeMap<Address, ProposalView>,
    /// The job's own list of providers; any when empty.
    pub(super) only: Vec<Address>,
}

impl Bids {
    /// Keeps new providers' Initial proposals; returns the other proposals (counters).
    pub(super) fn take(&mut self, events: Vec<Event>) -> Vec<ProposalView> {
        let mut others = Vec::new();
        for event in events {
            let Event::Proposal { proposal, .. } = event else { continue };
            if proposal.state == ProposalState::Initial {
                if let Ok(provider) = proposal.issuer_id.parse::<Address>()
                    && (self.only.is_empty() || self.only.contains(&provider))
                {
                    self.offers.entry(provider).or_insert(proposal);
                }
            } else {
                others.push(proposal);
            }
        }
        others
    }
}

/// How much a provider with no verified run on this node weighs in [`choose`], against at least
/// 2 for one with a verified run.
pub(super) const NEW_IDENTITY_WEIGHT: f64 = 0.5;

/// A provider's weight in [`choose`]: [`NEW_IDENTITY_WEIGHT`] until it has a verified run on
/// this node, then `1 + score`, and at least 2.
pub(super) fn weight(standing: Option<&Standing>) -> f64 {
    match standing {
        Some(s) if s.verified > 0 => (1.0 + s.score).max(2.0),
        _ => NEW_IDENTITY_WEIGHT,
    }
}

/// The order providers are asked in, leaving out those a referee caught and those that failed
/// more often than they were verified: the order the job names them in when it names them, else
/// at random, weighted by [`weight`].
pub(super) fn choose(
    offers: &BTreeMap<Address, ProposalView>,
    reputation: &HashMap<Address, Standing>,
    named: &[Address],
) -> Vec<Address> {
    let trusted = |p: &Address| reputation.get(p).is_none_or(|s| !s.caught && s.failed <= s.verified);
    if !named.is_empty() {
        return named.iter().filter(|p| offers.contains_key(*p) && trusted(p)).copied().collect();
    }
    let mut rng = rand::thread_rng();
    let mut left: Vec<(Address, f64)> =
        offers.keys().filter(|p| trusted(p)).map(|p| (*p, weight(reputation.get(p)))).collect();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: f64 = left.iter().map(|(_, w)| w).sum();
        let mut pick = rng.r#gen::<f64>() * total;
        let mut index = left.len() - 1;
        for (i, (_, w)) in left.iter().enumerate() {
            if pick < *w {
                index = i;
                break;
            }
            pick -= w;
        }
        order.push(left.remove(index).0);
    }
    order
}

/// How long a busy provider is left before it is asked again: 2 s, doubling with each refusal up
/// to [`MAX_BUSY_PAUSE`].
const FIRST_BUSY_PAUSE: Duration = Duration::from_secs(2);
const MAX_BUSY_PAUSE: Duration = Duration::from_secs(16);
/// How often a job asks one busy provider before it stops waiting for it (about seven minutes).
pub(super) const MAX_REFUSALS: u32 = 30;

/// Providers that turned a job's agreement down as busy: when each is asked again, and how often
/// each refused, so that its pause doubles.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    due: BTreeMap<Address, Instant>,
    refusals: HashMap<Address, u32>,
}

impl Waiting {
    /// Notes a refusal at `now`: the provider is asked again after its pause, unless it refused
    /// [`MAX_REFUSALS`] times; whether it will be.
    pub(super) fn add(&mut self, provider: Address, now: Instant) -> bool {
        let refusals = self.refusals.entry(provider).or_default();
        let pause = FIRST_BUSY_PAUSE.saturating_mul(1 << (*refusals).min(3)).min(MAX_BUSY_PAUSE);
        *refusals = refusals.saturating_add(1);
        if *refusals >= MAX_REFUSALS {
            return false;
        }
        self.due.insert(provider, now + pause);
        true
    }

    /// The providers whose pause is over at `now`, taken out, soonest due first.
    pub(super) fn ready(&mut self, now: Instant) -> Vec<Address> {
        let mut ready: Vec<(Address, Instant)> =
            self.due.iter().filter(|(_, at)| **at <= now).map(|(p, at)| (*p, *at)).collect();
        ready.sort_by_key(|(_, at)| *at);
        for (p, _) in &ready {
            self.due.remove(p);
        }
        ready.into_iter().map(|(p, _)| p).collect()
    }

    /// How many are due at `now`.
    pub(super) fn ready_count(&self, now: Instant) -> usize {
        self.due.values().filter(|at| **at <= now).count()
    }

    /// When the first is due.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    pub(super) fn providers(&self) -> impl Iterator<Item = &Address> {
        self.due.keys()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn offer(provider: Address) -> ProposalView {
        serde_json::from_value(json!({
            "properties": {}, "constraints": "", "proposalId": "p", "issuerId": format!("{provider:#x}"),
            "state": "Initial", "timestamp": "2026-01-01T00:00:00Z",
        }))
        .expect("a proposal")
    }

    fn standing(verified: i64, failed: i64, caught: bool) -> Standing {
        Standing { score: verified as f64, verified, failed, caught }
    }

    #[test]
    fn new_identities_weigh_less_than_proven_ones_and_the_caught_are_left_out() {
        assert_eq!(weight(None), NEW_IDENTITY_WEIGHT);
        assert_eq!(weight(Some(&standing(0, 0, false))), NEW_IDENTITY_WEIGHT);
        assert!(weight(Some(&standing(1, 0, false))) >= 4.0 * NEW_IDENTITY_WEIGHT);
        let worn = Standing { score: 0.1, verified: 1, failed: 1, caught: false };
        assert_eq!(weight(Some(&worn)), 2.0);
        let [proven, fresh, caught, failing] = [1u8, 2, 3, 4].map(Address::repeat_byte);
        let offers: BTreeMap<Address, ProposalView> =
            [proven, fresh, caught, failing].into_iter().map(|p| (p, offer(p))).collect();
        let reputation = HashMap::from([
            (proven, standing(3, 0, false)),
            (caught, standing(9, 0, true)),
            (failing, standing(1, 2, false)),
        ]);
        let mut order = choose(&offers, &reputation, &[]);
        order.sort();
        assert_eq!(order, vec![proven, fresh]);
        assert_eq!(choose(&offers, &reputation, &[caught, fresh, proven]), vec![fresh, proven]);
    }

    #[test]
    fn a_busy_provider_is_asked_again_after_a_pause_that_doubles() {
        let now = Instant::now();
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let mut waiting = Waiting::default();
        waiting.add(a, now);
        waiting.add(b, now + Duration::from_secs(1));
        assert_eq!(waiting.next_at(), Some(now + Duration::from_secs(2)));
        assert!(waiting.ready(now + Duration::from_secs(1)).is_empty());
        assert_eq!(waiting.ready_count(now + Duration::from_secs(3)), 2);
        assert_eq!(waiting.ready(now + Duration::from_secs(3)), vec![a, b]);
        assert!(waiting.is_empty());
        let pauses: Vec<u64> = (0..6)
            .map(|_| {
                assert!(waiting.add(a, now));
                let at = waiting.next_at().unwrap();
                waiting.ready(at);
                (at - now).as_secs()
            })
            .collect();
        assert_eq!(pauses, vec![4, 8, 16, 16, 16, 16]);
        // Seven refusals so far; it is waited for until its thirtieth.
        let mut more = 0;
        while waiting.add(a, now) {
            waiting.ready(now + MAX_BUSY_PAUSE);
            more += 1;
        }
        assert_eq!(more, MAX_REFUSALS - 8);
        assert!(waiting.is_empty());
    }
}
