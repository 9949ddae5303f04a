//! Negotiating a job's replicas: a counter-proposal to each provider's bid, an agreement signed
//! on its answer, and its approval; each failure is logged and recorded as a step with the
//! provider's reason.

use super::bounds::worst_cost;
use super::choice::Bids;
use super::{Jobs, NEGOTIATION, Replica, short};
use crate::Result;
use crate::job::{ExecState, JobState};
use agora_agreement::AgreementState;
use agora_market::api::{DemandOfferBase, Event};
use chrono::Utc;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

impl Jobs {
    /// Counters each replica's offer, signs an agreement on the provider's answer, and waits for
    /// its approval. A replica that does not get there is marked failed.
    pub(super) async fn negotiate(
        &self,
        id: &str,
        demand_id: &str,
        base: &DemandOfferBase,
        replicas: &mut [Replica],
        bids: &mut Bids,
        timeout: u64,
    ) -> Result<()> {
        let deadline = Instant::now() + NEGOTIATION;
        let mut drafts: HashMap<String, usize> = HashMap::new();
        for (i, r) in replicas.iter_mut().enumerate() {
            self.set_execution(id, r, ExecState::Chosen, None).await?;
            match self.inner.market.counter_proposal(demand_id, &r.proposal.proposal_id, base, false).await {
                Ok(draft) => {
                    drafts.insert(draft, i);
                }
                Err(e) => r.failure = Some(format!("negotiation failed: {e}")),
            }
        }
        let valid_to = Utc::now() + chrono::Duration::hours(1);
        let t = Duration::from_secs(timeout);
        let platform =
            base.properties[agora_agreement::keys::CHOSEN_PLATFORM].as_str().unwrap_or_default().to_string();
        while !drafts.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let events = self
                .inner
                .market
                .collect_demand_events(demand_id, left.min(Duration::from_secs(1)), 100)
                .await?;
            for event in &events {
                if let Event::ProposalRejected { proposal_id, reason, .. } = event
                    && let Some(i) = drafts.remove(proposal_id)
                {
                    let why = reason.as_ref().and_then(|r| r["message"].as_str());
                    let why = why.map_or_else(|| "no reason given".into(), short_reason);
                    replicas[i].failure = Some(format!("the provider declined: {why}"));
                }
            }
            for event in bids.take(events) {
                let Some(i) = event.prev_proposal_id.as_ref().and_then(|prev| drafts.remove(prev)) else {
                    continue;
                };
                let r = &mut replicas[i];
                if let Some(why) = self.payee_problem(&event.properties, &platform) {
                    r.failure = Some(format!("its terms cannot be paid: {why}"));
                    continue;
                }
                match worst_cost(&event.properties, t) {
                    Ok(agreed_cost) if agreed_cost <= r.worst_cost => {}
                    Ok(agreed_cost) => {
                        r.failure = Some(format!(
                            "its terms may cost {agreed_cost}, more than its offer's {}",
                            r.worst_cost
                        ));
                        continue;
                    }
                    Err(why) => {
                        r.failure = Some(format!("its terms cannot be bounded: {why}"));
                        continue;
                    }
                }
                let agreement = match self.inner.market.create_agreement(&event.proposal_id, valid_to).await {
                    Ok(agreement) => agreement,
                    Err(e) => {
                        r.failure = Some(format!("negotiation failed: {e}"));
                        continue;
                    }
                };
                // Recorded before it is signed, so a cancel or a restart finds it to end.
                r.agreement_id = Some(agreement.clone());
                self.set_execution(id, r, ExecState::Chosen, None).await?;
                if let Err(e) = self.inner.market.confirm_agreement(&agreement).await {
                    r.failure = Some(format!("negotiation failed: {e}"));
                }
            }
        }
        let approvals = replicas.iter_mut().map(|r| async move {
            if r.failure.is_some() {
                return;
            }
            let Some(agreement) = r.agreement_id.clone() else {
                r.failure = Some("the provider did not answer the counter-proposal".into());
                return;
            };
            match self.inner.market.wait_for_approval(&agreement, NEGOTIATION).await {
                Ok(Some(AgreementState::Approved)) => {
                    r.peer = self.inner.market.agreement(&agreement).await.ok().map(|a| a.peer_id);
                }
                Ok(Some(AgreementState::Rejected)) => {
                    // It agreed to the terms and turned the agreement down: it is busy (at
                    // capacity, or still ending earlier agreements), and may be asked again.
                    let why = self.inner.market.agreement(&agreement).await.ok().and_then(|a| a.reason);
                    let why = why.as_ref().and_then(|w| w["message"].as_str()).unwrap_or("no reason given");
                    r.failure = Some(format!("the provider rejected the agreement: {}", short_reason(why)));
                    r.busy = true;
                }
                Ok(Some(state)) => {
                    r.failure = Some(format!("the provider's answer to the agreement: {state}"))
                }
                Ok(None) => {
                    r.failure =
                        Some(format!("the provider did not approve within {} s", NEGOTIATION.as_secs()));
                }
                Err(e) => r.failure = Some(format!("negotiation failed: {e}")),
            }
        });
        futures_util::future::join_all(approvals).await;
        for r in replicas.iter() {
            let state = if r.failure.is_some() { ExecState::Failed } else { ExecState::Agreed };
            self.set_execution(id, r, state, r.failure.as_deref()).await?;
            if let Some(why) = &r.failure {
                let who = short(&format!("{:#x}", r.provider));
                tracing::info!(job = id, provider = %r.provider, "negotiation failed: {why}");
                self.record(id, JobState::Negotiating, &format!("negotiating with {who} failed: {why}"))
                    .await?;
            }
        }
        Ok(())
    }

    /// Why the payee a proposal names on `platform` cannot be paid, if it cannot: not an
    /// address, or one the chain refuses (the zero address, the token, the batch payer).
    pub(super) fn payee_problem(&self, properties: &Value, platform: &str) -> Option<String> {
        let key = agora_agreement::keys::platform_address(platform);
        let flat = agora_grammar::flatten(properties).ok()?;
        let payee = match flat.get(&key).map(|v| v.as_str().map(agora_identity::parse_address)) {
            // No address there: the provider is paid at its node address.
            None => return None,
            Some(Some(Ok(payee))) => payee,
            Some(_) => return Some(format!("{key} is not an address")),
        };
        self.inner.payments.config().network(platform)?.payee_problem(payee)
    }
}

/// A reason another node gave, as this node repeats it: at most 200 characters.
fn short_reason(why: &str) -> String {
    match why.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &why[..at]),
        None => why.to_string(),
    }
}
