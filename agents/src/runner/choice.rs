//! Which providers a job asks: the bids it keeps, one per provider, and the order it asks them
//! in, by their standing with this node.

use super::settle::Standing;
use agora_market::ProposalState;
use agora_market::api::{Event, ProposalView};
use alloy_primitives::Address;
use rand::Rng;
use std::collections::{BTreeMap, HashMap};

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

/// How much a provider with no verified run on this node weighs in [`choose`], against `1 + score`
/// (at least 2) for one with a verified run.
pub(super) const NEW_IDENTITY_WEIGHT: f64 = 0.5;

/// A provider's weight in [`choose`]: [`NEW_IDENTITY_WEIGHT`] until it has a verified run on
/// this node, then `1 + score`.
pub(super) fn weight(standing: Option<&Standing>) -> f64 {
    match standing {
        Some(s) if s.verified > 0 => 1.0 + s.score.max(0.0),
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
}
