//! Agreements: made from the provider's Draft and the requestor's proposal it answered, signed by
//! the requestor on confirm and by the provider on approve (each checks the other's signature
//! over the same terms before it counts), and ended by either side. Every transition is a
//! compare-and-set in the store; messages that must arrive go through the outbox.

use crate::api::reason_of;
use crate::api::{AgreementEvent, Reason};
use crate::courier::acked;
use crate::ids::now_millis;
use crate::state::ProposalState;
use crate::store::{Change, ProposalRow};
use crate::wire::MarketRequest;
use crate::{Error, Market, Result};
use agora_agreement::{Agreement, AgreementBody, AgreementState, DemandTerms, OfferTerms, Role};
use agora_identity::{Address, sign_json, verify_json};
use chrono::{DateTime, Utc};

use AgreementState::{Approved, Cancelled, Pending, Proposal, Rejected, Terminated};

/// One side of an agreement's terms, as the provider checks it against what it holds.
#[derive(Clone, Copy)]
struct Side<'a> {
    properties: &'a serde_json::Value,
    constraints: &'a str,
    timestamp: DateTime<Utc>,
}

fn check_role(agreement: &Agreement, role: Role) -> Result<()> {
    if agreement.role != role {
        return Err(Error::Conflict(format!("only the {role} can do that to agreement {}", agreement.id)));
    }
    Ok(())
}

impl Market {
    /// Creates an agreement from the provider's Draft on one of this node's demands: its terms
    /// are that Draft and the requestor's proposal it answered.
    pub async fn create_agreement(&self, proposal_id: &str, valid_to: DateTime<Utc>) -> Result<String> {
        if valid_to <= Utc::now() {
            return Err(Error::BadInput(format!("validTo {valid_to} is in the past")));
        }
        self.expire_proposals().await?;
        let draft =
            self.store.demand_side_proposal(proposal_id).await?.ok_or_else(|| {
                Error::NotFound(format!("no proposal {proposal_id} on this node's demands"))
            })?;
        let me = format!("{:#x}", self.node_id);
        if draft.issuer_id == me {
            return Err(Error::Conflict(
                "an agreement is made from the provider's proposal, not one's own".into(),
            ));
        }
        match draft.state {
            ProposalState::Draft => {}
            ProposalState::Expired => {
                return Err(Error::Gone(format!("proposal {proposal_id} has expired unanswered")));
            }
            other => {
                return Err(Error::Conflict(format!(
                    "proposal {proposal_id} is {other}; only a Draft (a counter-proposal) can become an agreement"
                )));
            }
        }
        if self.store.demand_presence(&draft.subscription_id).await? != crate::Presence::Active {
            return Err(Error::Gone(format!("demand {} is unsubscribed", draft.subscription_id)));
        }
        let answered = draft.prev_proposal_id.as_deref().unwrap_or_default();
        let mine = match self.store.proposal_row(&draft.subscription_id, answered).await {
            Ok(row) => Some(row),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let mine = mine.filter(|p| p.issuer_id == me).ok_or_else(|| {
            Error::Conflict(format!(
                "proposal {proposal_id} answers {answered:?}, which is not this node's proposal"
            ))
        })?;
        let provider = agora_identity::parse_address(&draft.issuer_id)
            .map_err(|e| Error::Corrupt(format!("proposal {proposal_id}: issuer: {e}")))?;
        let agreement = Agreement {
            id: crate::ids::derived_id(&["agreement", proposal_id, &valid_to.to_rfc3339()]),
            role: Role::Requestor,
            state: Proposal,
            requestor: self.node_id,
            provider,
            peer_id: draft.peer_id.clone(),
            demand: DemandTerms {
                constraints: mine.constraints,
                demand_id: draft.demand_id.clone(),
                properties: mine.properties,
                proposal_id: mine.proposal_id,
                requestor_id: me,
                timestamp: mine.created_at,
            },
            offer: OfferTerms {
                constraints: draft.constraints,
                offer_id: draft.offer_id,
                properties: draft.properties,
                proposal_id: draft.proposal_id,
                provider_id: draft.issuer_id,
                timestamp: draft.created_at,
            },
            valid_to,
            timestamp: now_millis(),
            proposed_signature: None,
            approved_signature: None,
            approved_date: None,
            reason: None,
        };
        self.store.insert_agreement(&agreement).await?;
        Ok(agreement.id)
    }

    /// `Market::agreement` is how every other part of the node reads an agreement.
    pub async fn agreement(&self, id: &str) -> Result<Agreement> {
        self.store.agreement(id).await
    }

    /// Whose an agreement is (see [`agora_agreement::ADMIN_PRINCIPAL`]): the principal of the demand or
    /// offer it was made on.
    pub async fn agreement_principal(&self, id: &str) -> Result<String> {
        self.store.agreement_principal(id).await
    }

    pub async fn agreements(&self) -> Result<Vec<Agreement>> {
        self.store.agreements().await
    }

    /// This node's agreements of one role in one state: what an agent looks after, without
    /// reading every agreement it ever made.
    pub async fn agreements_in(&self, role: Role, state: AgreementState) -> Result<Vec<Agreement>> {
        self.store.agreements_in(role, state).await
    }

    /// Whether this node has an Approved agreement with `party`.
    pub async fn approved_with(&self, party: Address) -> Result<bool> {
        self.store.approved_with(party).await
    }

    /// Moves an agreement from one of `from` to `to`; an agreement past its `validTo` before
    /// approval is Expired instead.
    async fn transition(
        &self,
        id: &str,
        from: &[AgreementState],
        to: AgreementState,
        change: Change<'_>,
    ) -> Result<Agreement> {
        self.transition_telling(id, from, to, change, None).await
    }

    /// [`Market::transition`], queueing `tell` for the other side in the same transaction when
    /// the agreement moved from one of the states given with it. The caller records its event,
    /// then flushes the outbox.
    async fn transition_telling(
        &self,
        id: &str,
        from: &[AgreementState],
        to: AgreementState,
        change: Change<'_>,
        tell: Option<(&MarketRequest, &[AgreementState])>,
    ) -> Result<Agreement> {
        let agreement = self.store.agreement(id).await?;
        if agreement.valid_to <= Utc::now() && matches!(agreement.state, Proposal | Pending) {
            let _expired_or_moved_meanwhile = self
                .store
                .set_agreement_state(id, &[agreement.state], AgreementState::Expired, Change::None)
                .await?;
            return Err(Error::Gone(format!("agreement {id} expired at {}", agreement.valid_to)));
        }
        let message = match tell {
            Some((request, _)) => {
                Some(serde_json::to_value(request).map_err(|e| Error::Corrupt(e.to_string()))?)
            }
            None => None,
        };
        let tell = message
            .as_ref()
            .zip(tell)
            .map(|(message, (_, when))| (agreement.peer_id.as_str(), message, when));
        match self.store.set_agreement_state_telling(id, from, to, change, tell).await? {
            // The state it had when it moved, which a caller acts on (not the one read before).
            Some(was) => Ok(Agreement { state: was, ..agreement }),
            None => {
                let now = self.store.agreement(id).await?;
                let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
                Err(Error::Conflict(format!("agreement {id} is {}, not {}", now.state, from.join(" or "))))
            }
        }
    }

    async fn event(&self, agreement_id: &str, event_type: &str, reason: Option<Reason>) -> Result<()> {
        self.store.add_agreement_event(agreement_id, event_type, reason).await?;
        // An agreement of this requestor's that was cancelled or ended after approval: its
        // provider's offer is proposed to the demand again, so the demand can agree with that
        // provider anew. (Not after a rejection: the provider said no to this demand.) The
        // ending itself is recorded either way.
        if matches!(event_type, "AgreementCancelledEvent" | "AgreementTerminatedEvent") {
            let again = async {
                let agreement = self.store.agreement(agreement_id).await?;
                if agreement.role == Role::Requestor {
                    let (demand, offer) = (&agreement.demand.demand_id, &agreement.offer.offer_id);
                    self.store.offer_again(demand, offer, agreement_id).await?;
                }
                Ok::<_, Error>(())
            };
            if let Err(e) = again.await {
                tracing::warn!(agreement = agreement_id, error = %e, "could not propose the provider again");
            }
        }
        self.events.notify_waiters();
        Ok(())
    }

    /// The requestor signs the agreement and sends it to the provider.
    pub async fn confirm_agreement(&self, id: &str) -> Result<()> {
        let agreement = self.store.agreement(id).await?;
        check_role(&agreement, Role::Requestor)?;
        let signature =
            sign_json(&self.identity, &agreement.body()).map_err(|e| Error::Conflict(e.to_string()))?;
        let agreement = self.transition(id, &[Proposal], Pending, Change::Proposed(&signature)).await?;
        let request = MarketRequest::ProposeAgreement { agreement: agreement.body(), signature };
        if let Err(e) = acked(self.courier()?.send(agreement.peer_id.clone(), request).await) {
            // Not delivered: back to Proposal, so confirm can be called again.
            self.store.unconfirm(id).await?;
            return Err(e);
        }
        Ok(())
    }

    /// The provider approves: signs, commits, and sends the approval until the requestor has it.
    pub async fn approve_agreement(&self, id: &str) -> Result<AgreementState> {
        let agreement = self.store.agreement(id).await?;
        check_role(&agreement, Role::Provider)?;
        let signature =
            sign_json(&self.identity, &agreement.body()).map_err(|e| Error::Conflict(e.to_string()))?;
        let request =
            MarketRequest::ApproveAgreement { agreement_id: id.to_string(), signature: signature.clone() };
        let change = Change::Approved(&signature);
        self.transition_telling(id, &[Pending], Approved, change, Some((&request, &[Pending]))).await?;
        self.event(id, "AgreementApprovedEvent", None).await?;
        self.flush_soon().await;
        Ok(Approved)
    }

    pub async fn reject_agreement(&self, id: &str, reason: Option<Reason>) -> Result<()> {
        check_role(&self.store.agreement(id).await?, Role::Provider)?;
        let reason = reason_of(reason);
        let request = MarketRequest::RejectAgreement { agreement_id: id.into(), reason: reason.clone() };
        let change = Change::Reason(reason.as_ref());
        self.transition_telling(id, &[Pending], Rejected, change, Some((&request, &[Pending]))).await?;
        self.event(id, "AgreementRejectedEvent", reason).await?;
        self.flush_soon().await;
        Ok(())
    }

    pub async fn cancel_agreement(&self, id: &str, reason: Option<Reason>) -> Result<()> {
        check_role(&self.store.agreement(id).await?, Role::Requestor)?;
        let reason = reason_of(reason);
        let change = Change::Reason(reason.as_ref());
        // The provider hears of it only if it was sent the agreement (Pending).
        let request = MarketRequest::CancelAgreement { agreement_id: id.into(), reason: reason.clone() };
        self.transition_telling(id, &[Proposal, Pending], Cancelled, change, Some((&request, &[Pending])))
            .await?;
        self.event(id, "AgreementCancelledEvent", reason).await?;
        self.flush_soon().await;
        Ok(())
    }

    pub async fn terminate_agreement(&self, id: &str, reason: Option<Reason>) -> Result<()> {
        let reason = reason_of(reason);
        let request = MarketRequest::TerminateAgreement { agreement_id: id.into(), reason: reason.clone() };
        let change = Change::Reason(reason.as_ref());
        self.transition_telling(id, &[Approved], Terminated, change, Some((&request, &[Approved]))).await?;
        self.event(id, "AgreementTerminatedEvent", reason).await?;
        self.flush_soon().await;
        Ok(())
    }

    /// Waits up to `timeout` for the provider's answer: `Ok(None)` on timeout.
    pub async fn wait_for_approval(
        &self,
        id: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<AgreementState>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let woken = self.events.notified();
            let agreement = self.store.agreement(id).await?;
            check_role(&agreement, Role::Requestor)?;
            match agreement.state {
                Approved | Rejected | Cancelled => return Ok(Some(agreement.state)),
                Pending => {}
                Proposal => return Err(Error::Conflict(format!("agreement {id} is not confirmed yet"))),
                other => return Err(Error::Gone(format!("agreement {id} is {other}"))),
            }
            if agreement.valid_to <= Utc::now() {
                return Err(Error::Gone(format!("agreement {id} expired at {}", agreement.valid_to)));
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Ok(None);
            }
        }
    }

    /// Agreement events after `after`, waiting up to `timeout` for the first.
    pub async fn agreement_events(
        &self,
        after: Option<DateTime<Utc>>,
        timeout: std::time::Duration,
        max: i64,
    ) -> Result<Vec<AgreementEvent>> {
        self.long_poll(timeout, || self.store.agreement_events(after, max)).await
    }

    /// The requestor's signed agreement, on the provider: its terms must be this node's own
    /// Draft and the requestor's proposal that Draft answered, exactly as this node holds them.
    pub(crate) async fn on_proposed_agreement(
        &self,
        sender: Address,
        peer: &str,
        body: AgreementBody,
        signature: String,
    ) -> Result<()> {
        let me = format!("{:#x}", self.node_id);
        let requestor = agora_identity::parse_address(&body.demand.requestor_id)
            .map_err(|e| Error::Refused(format!("requestorId: {e}")))?;
        if requestor != sender || body.offer.provider_id.to_ascii_lowercase() != me {
            return Err(Error::Refused("the agreement names other parties".into()));
        }
        verify_json(&body, &signature, sender).map_err(|e| Error::Refused(e.to_string()))?;
        // The same agreement again (a requestor retrying a confirmation whose answer it missed)
        // is acknowledged again; other terms under a taken id are refused.
        match self.store.agreement(&body.agreement_id).await {
            Ok(held)
                if held.body() == body && held.proposed_signature.as_deref() == Some(signature.as_str()) =>
            {
                return Ok(());
            }
            Ok(_) => {
                return Err(Error::Refused(format!(
                    "agreement id {} is taken by other terms",
                    body.agreement_id
                )));
            }
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        if self.store.own_offer(&body.offer.offer_id).await?.is_none() {
            return Err(Error::Gone(format!("offer {} is not offered any more", body.offer.offer_id)));
        }
        let draft = self.store.proposal_by_id(&body.offer.proposal_id).await?;
        let answered = self.store.proposal_by_id(&body.demand.proposal_id).await?;
        // Each side of the terms must be a proposal this node holds, word for word: who issued
        // it, what it says, when, and on which negotiation.
        let holds = |row: &Option<ProposalRow>, issuer: &str, side: Side<'_>| {
            row.as_ref().is_some_and(|p| {
                p.issuer_id == issuer
                    && p.properties == *side.properties
                    && p.constraints == side.constraints
                    && p.created_at == side.timestamp
                    && p.demand_id == body.demand.demand_id
                    && p.offer_id == body.offer.offer_id
                    && p.state != ProposalState::Rejected
            })
        };
        let sender_text = format!("{sender:#x}");
        let offer_side = Side {
            properties: &body.offer.properties,
            constraints: &body.offer.constraints,
            timestamp: body.offer.timestamp,
        };
        let demand_side = Side {
            properties: &body.demand.properties,
            constraints: &body.demand.constraints,
            timestamp: body.demand.timestamp,
        };
        if !holds(&draft, &me, offer_side)
            || !holds(&answered, &sender_text, demand_side)
            || draft.as_ref().and_then(|d| d.prev_proposal_id.as_deref())
                != Some(body.demand.proposal_id.as_str())
            || draft.as_ref().is_some_and(|d| d.subscription_id != body.offer.offer_id)
        {
            return Err(Error::Refused(
                "the agreement's terms are not this provider's Draft and the proposal it answered".into(),
            ));
        }
        // One Draft makes one agreement: it is Accepted with the agreement (compare-and-set).
        if let Some(d) = draft.as_ref().filter(|d| d.state != ProposalState::Draft) {
            return Err(Error::Gone(format!("the provider's proposal {} is {}", d.proposal_id, d.state)));
        }
        let agreement = Agreement {
            id: body.agreement_id,
            role: Role::Provider,
            state: Pending,
            requestor,
            provider: self.node_id,
            peer_id: peer.to_string(),
            demand: body.demand,
            offer: body.offer,
            valid_to: body.valid_to,
            timestamp: body.timestamp,
            proposed_signature: Some(signature),
            approved_signature: None,
            approved_date: None,
            reason: None,
        };
        self.store.insert_agreement(&agreement).await?;
        Ok(())
    }

    /// The provider's approval, on the requestor: counted only with a valid signature.
    pub(crate) async fn on_approval(
        &self,
        sender: Address,
        agreement_id: &str,
        signature: &str,
    ) -> Result<()> {
        let agreement = self.store.agreement(agreement_id).await?;
        if agreement.role != Role::Requestor || agreement.provider != sender {
            return Err(Error::Refused(format!("{sender} is not the provider of {agreement_id}")));
        }
        verify_json(&agreement.body(), signature, sender).map_err(|e| Error::Refused(e.to_string()))?;
        if self
            .store
            .set_agreement_state(agreement_id, &[Pending], Approved, Change::Approved(signature))
            .await?
            .is_some()
        {
            self.event(agreement_id, "AgreementApprovedEvent", None).await?;
        } else if agreement.state != Approved {
            return Err(Error::Conflict(format!("agreement {agreement_id} is {}", agreement.state)));
        }
        Ok(())
    }

    /// The other side ended an agreement. Who may end what: the provider rejects a Pending
    /// agreement, the requestor cancels one, and either terminates an Approved one. A
    /// cancellation that crosses the provider's approval terminates the agreement, so the two
    /// sides do not disagree about whether it stands. One that finds the agreement already ended
    /// changes nothing.
    pub(crate) async fn on_ended(
        &self,
        peer: &str,
        sender: Address,
        agreement_id: &str,
        ending: Ending,
        reason: Option<Reason>,
    ) -> Result<()> {
        let agreement = self.store.agreement(agreement_id).await?;
        if agreement.peer_id != peer {
            return Err(Error::Refused(format!("{sender} is not a party to {agreement_id}")));
        }
        let moves: &[(&[AgreementState], AgreementState, &str)] = match (ending, agreement.role) {
            (Ending::Rejected, Role::Requestor) => &[(&[Pending], Rejected, "AgreementRejectedEvent")],
            (Ending::Cancelled, Role::Provider) => &[
                (&[Pending], Cancelled, "AgreementCancelledEvent"),
                (&[Approved], Terminated, "AgreementTerminatedEvent"),
            ],
            (Ending::Terminated, _) => &[(&[Approved], Terminated, "AgreementTerminatedEvent")],
            (ending, role) => {
                return Err(Error::Refused(format!(
                    "the other party cannot send {ending:?} for agreement {agreement_id}, of which this node is the {role}"
                )));
            }
        };
        let reason = reason_of(reason);
        for (from, to, event) in moves {
            let change = Change::Reason(reason.as_ref());
            if self.store.set_agreement_state(agreement_id, from, *to, change).await?.is_some() {
                self.event(agreement_id, event, reason).await?;
                break;
            }
        }
        Ok(())
    }
}

/// How the other side ended an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Rejected,
    Cancelled,
    Terminated,
}
