//! Negotiation: counter-proposals both ways and rejection with a reason. Each step is a
//! transition of a proposal's state, made in the store by compare-and-set; messages the other
//! side must get go through the outbox, retried until acknowledged.

use crate::api::{DemandOfferBase, ProposalView, Reason, reason_of};
use crate::courier::acked;
use crate::ids::{derived_id, now_millis};
use crate::state::ProposalState;
use crate::store::{Presence, ProposalRow};
use crate::wire::{MarketRequest, WireProposal};
use crate::{Error, Market, Result};
use agora_identity::Address;

impl Market {
    /// Marks every Initial or Draft proposal older than the proposal lifetime Expired.
    pub async fn expire_proposals(&self) -> Result<u64> {
        self.store.expire_proposals(self.proposal_lifetime).await
    }

    async fn open_proposal(&self, subscription: &str, proposal_id: &str) -> Result<ProposalRow> {
        self.expire_proposals().await?;
        self.store.proposal_row(subscription, proposal_id).await
    }

    /// Responds to the other side's proposal with a counter-proposal (either role).
    pub async fn counter_proposal(
        &self,
        subscription: &str,
        prev_id: &str,
        base: &DemandOfferBase,
        provider_side: bool,
    ) -> Result<String> {
        self.require_subscription(subscription, provider_side).await?;
        let prev = self.open_proposal(subscription, prev_id).await?;
        let me = format!("{:#x}", self.node_id);
        if prev.issuer_id == me {
            return Err(Error::Conflict(format!(
                "proposal {prev_id} is this node's own; counter the other side's"
            )));
        }
        if !prev.state.is_open() {
            return Err(Error::Gone(format!("proposal {prev_id} is {}", prev.state)));
        }
        crate::ids::storable(&base.properties, &base.constraints).map_err(Error::BadInput)?;
        agora_grammar::parse(&base.constraints).map_err(|e| Error::BadInput(format!("constraints: {e}")))?;
        let flat = agora_grammar::flatten(&base.properties).map_err(|e| Error::BadInput(e.to_string()))?;
        let properties = serde_json::to_value(&flat).unwrap_or_default();
        let timestamp = now_millis();
        let id = derived_id(&["proposal", prev_id, &me, &timestamp.to_rfc3339()]);
        let row = ProposalRow {
            proposal_id: id.clone(),
            subscription_id: subscription.to_string(),
            demand_id: prev.demand_id.clone(),
            offer_id: prev.offer_id.clone(),
            issuer_id: me.clone(),
            peer_id: prev.peer_id.clone(),
            properties: properties.clone(),
            constraints: base.constraints.clone(),
            state: ProposalState::Draft,
            prev_proposal_id: Some(prev_id.to_string()),
            // The same instant the other side is told, so both hold the same terms.
            created_at: timestamp,
        };
        self.store.insert_draft(&row, false).await?;
        let wire = WireProposal {
            proposal_id: id.clone(),
            prev_proposal_id: prev_id.to_string(),
            demand_id: prev.demand_id,
            offer_id: prev.offer_id,
            issuer_id: me,
            properties,
            constraints: base.constraints.clone(),
            timestamp,
        };
        acked(self.courier()?.send(prev.peer_id, MarketRequest::Proposal { proposal: wire }).await)?;
        Ok(id)
    }

    /// Rejects the other side's proposal, telling it why.
    pub async fn reject_proposal(
        &self,
        subscription: &str,
        proposal_id: &str,
        reason: Option<Reason>,
    ) -> Result<()> {
        let prev = self.open_proposal(subscription, proposal_id).await?;
        if !self.store.reject_open_proposal(subscription, proposal_id).await? {
            return Err(Error::Gone(format!("proposal {proposal_id} is already {}", prev.state)));
        }
        let request =
            MarketRequest::RejectProposal { proposal_id: proposal_id.to_string(), reason: reason_of(reason) };
        self.enqueue(&prev.peer_id, &request).await
    }

    /// A counter-proposal from `sender` (at `peer`): kept on this node's offer (provider) or
    /// demand (requestor), with an event for its collectors.
    pub(crate) async fn on_proposal(
        &self,
        sender: Address,
        peer: &str,
        proposal: WireProposal,
    ) -> Result<()> {
        let sender_text = format!("{sender:#x}");
        if proposal.issuer_id.to_ascii_lowercase() != sender_text {
            return Err(Error::Refused(format!(
                "proposal issued by {} came from {sender}",
                proposal.issuer_id
            )));
        }
        let me = format!("{:#x}", self.node_id);
        // On the provider, the proposal belongs to the offer; on the requestor, to the demand.
        let subscription = if self.store.offer_presence(&proposal.offer_id).await? == Presence::Active
            && self.store.own_offer(&proposal.offer_id).await?.is_some_and(|o| o.owner == me)
        {
            proposal.offer_id.clone()
        } else if self.store.demand_presence(&proposal.demand_id).await? == Presence::Active {
            proposal.demand_id.clone()
        } else {
            return Err(Error::Gone("no standing offer or demand for this proposal".into()));
        };
        crate::ids::storable(&proposal.properties, &proposal.constraints).map_err(Error::Refused)?;
        agora_grammar::parse(&proposal.constraints).map_err(|e| Error::Refused(e.to_string()))?;
        let row = ProposalRow {
            proposal_id: proposal.proposal_id,
            subscription_id: subscription,
            demand_id: proposal.demand_id,
            offer_id: proposal.offer_id,
            issuer_id: sender_text,
            peer_id: peer.to_string(),
            properties: proposal.properties,
            constraints: proposal.constraints,
            state: ProposalState::Draft,
            prev_proposal_id: Some(proposal.prev_proposal_id),
            created_at: proposal.timestamp,
        };
        self.store.insert_draft(&row, true).await?;
        Ok(())
    }

    /// Collects a provider's offer events (`collectDemands`): proposals and agreements.
    pub async fn collect_offer_events(
        &self,
        offer_id: &str,
        timeout: std::time::Duration,
        max: usize,
    ) -> Result<Vec<crate::api::Event>> {
        self.collect_events(offer_id, true, timeout, max).await
    }

    pub async fn offer_proposal(&self, offer_id: &str, proposal_id: &str) -> Result<ProposalView> {
        if self.store.offer_presence(offer_id).await? == Presence::Unknown {
            return Err(Error::NotFound(format!("no offer subscription {offer_id}")));
        }
        Ok(self.open_proposal(offer_id, proposal_id).await?.view())
    }

    pub async fn demand_proposal(&self, demand_id: &str, proposal_id: &str) -> Result<ProposalView> {
        if self.store.demand_presence(demand_id).await? == Presence::Unknown {
            return Err(Error::NotFound(format!("no demand subscription {demand_id}")));
        }
        Ok(self.open_proposal(demand_id, proposal_id).await?.view())
    }
}
