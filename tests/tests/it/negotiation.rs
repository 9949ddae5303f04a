//! Signatures decide: an agreement whose provider signature is forged is refused, and one whose
//! requestor signature is forged is never recorded. Two markets on real Postgres, joined by a
//! courier that can tamper with what it carries.

use agora_agreement::AgreementState;
use agora_identity::{Address, Identity};
use agora_market::api::{DemandOfferBase, Event};
use agora_market::{Courier, Market, MarketRequest, MarketResponse, ProposalState};
use agora_tests::TestPg;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Delivers to another market in-process, forging provider signatures when told to, or losing
/// approvals (as an unreachable peer would) while `lose_approvals` counts down.
#[derive(Debug)]
struct Link {
    to: Arc<OnceLock<Market>>,
    from_peer: String,
    from: Address,
    forge_approvals: bool,
    lose_approvals: Arc<AtomicUsize>,
}

impl Courier for Link {
    fn send(
        &self,
        _peer: String,
        request: MarketRequest,
    ) -> Pin<Box<dyn Future<Output = Result<MarketResponse, agora_net::Error>> + Send>> {
        let to = self.to.get().expect("linked").clone();
        let (from_peer, from) = (self.from_peer.clone(), self.from);
        if matches!(request, MarketRequest::ApproveAgreement { .. })
            && self
                .lose_approvals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            let lost =
                agora_net::Error::Request { peer: self.from_peer.clone(), message: "lost on the way".into() };
            return Box::pin(async move { Err(lost) });
        }
        let request = match request {
            MarketRequest::ApproveAgreement { agreement_id, .. } if self.forge_approvals => {
                let forged = Identity::random().sign_message(agreement_id.as_bytes());
                MarketRequest::ApproveAgreement { agreement_id, signature: forged }
            }
            other => other,
        };
        Box::pin(async move { Ok(to.handle(&from_peer, Some(from), request).await) })
    }

    /// Two markets linked directly have no network to announce to.
    fn announce(
        &self,
        _announcement: agora_market::Announcement,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

async fn market(pg: &TestPg, db: Option<&str>, identity: &Identity, link: Link) -> Market {
    let url = match db {
        Some(name) => pg.another_database(name).await,
        None => pg.url(),
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    agora::node::MIGRATOR.run(&pool).await.unwrap();
    Market::new(pool, identity.clone()).with_courier(Arc::new(link))
}

fn base(properties: serde_json::Value, constraints: &str) -> DemandOfferBase {
    DemandOfferBase { properties, constraints: constraints.into() }
}

async fn first_proposal(events: Vec<Event>) -> String {
    match events.into_iter().next() {
        Some(Event::Proposal { proposal, .. }) => proposal.proposal_id,
        other => panic!("expected a proposal event, got {other:?}"),
    }
}

#[tokio::test]
async fn forged_signatures_are_refused() {
    let pg = TestPg::start().await;
    let (p_id, r_id) = (Identity::random(), Identity::random());
    let (p_peer, r_peer) = (p_id.peer_id().to_string(), r_id.peer_id().to_string());
    let (to_provider, to_requestor) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let provider = market(
        &pg,
        None,
        &p_id,
        Link {
            to: to_requestor.clone(),
            from_peer: p_peer.clone(),
            from: p_id.address(),
            forge_approvals: true,
            lose_approvals: Arc::default(),
        },
    )
    .await;
    let requestor = market(
        &pg,
        Some("requestor"),
        &r_id,
        Link {
            to: to_provider.clone(),
            from_peer: r_peer.clone(),
            from: r_id.address(),
            forge_approvals: false,
            lose_approvals: Arc::default(),
        },
    )
    .await;
    to_provider.set(provider.clone()).unwrap();
    to_requestor.set(requestor.clone()).unwrap();

    // The offer travels as it would over the network: fetched by id, checked, matched.
    let offer_id = provider
        .subscribe_offer(
            &base(json!({"golem.runtime.name": "wasmtime"}), "()"),
            agora_agreement::ADMIN_PRINCIPAL,
        )
        .await
        .unwrap();
    let MarketResponse::Offer { offer: Some(body) } = provider
        .handle(&r_peer, Some(r_id.address()), MarketRequest::GetOffer { offer_id: offer_id.clone() })
        .await
    else {
        panic!("the provider serves its offer");
    };
    // An offer whose content does not hash to its id is refused.
    let mut forged_body = body.clone();
    forged_body.properties = json!({"golem.runtime.name": "docker"});
    assert!(requestor.on_offer_body(p_id.address(), &p_peer, forged_body).await.is_err());
    requestor.on_offer_body(p_id.address(), &p_peer, body).await.unwrap();

    let demand_id = requestor
        .subscribe_demand(&base(json!({}), "(golem.runtime.name=wasmtime)"), agora_agreement::ADMIN_PRINCIPAL)
        .await
        .unwrap();
    let wait = Duration::from_secs(5);
    let initial = first_proposal(requestor.collect_demand_events(&demand_id, wait, 10).await.unwrap()).await;
    let r_draft = requestor
        .counter_proposal(&demand_id, &initial, &base(json!({}), "(golem.runtime.name=wasmtime)"), false)
        .await
        .unwrap();
    let seen = first_proposal(provider.collect_offer_events(&offer_id, wait, 10).await.unwrap()).await;
    assert_eq!(seen, r_draft);
    let p_draft = provider
        .counter_proposal(&offer_id, &r_draft, &base(json!({"golem.runtime.name": "wasmtime"}), "()"), true)
        .await
        .unwrap();
    assert_eq!(
        first_proposal(requestor.collect_demand_events(&demand_id, wait, 10).await.unwrap()).await,
        p_draft
    );

    let agreement_id = requestor
        .create_agreement(&p_draft, chrono::Utc::now() + chrono::Duration::minutes(5))
        .await
        .unwrap();
    let agreement = requestor.agreement(&agreement_id).await.unwrap();

    // A requestor signature by anyone but the requestor is refused, and nothing is recorded.
    let body = agreement.body();
    let forged = agora_identity::sign_json(&Identity::random(), &body).unwrap();
    let answer = provider
        .handle(
            &r_peer,
            Some(r_id.address()),
            MarketRequest::ProposeAgreement { agreement: body, signature: forged },
        )
        .await;
    assert!(
        matches!(&answer, MarketResponse::Error { message, .. } if message.contains("signature")),
        "{answer:?}"
    );
    assert!(provider.agreement(&agreement_id).await.is_err(), "a forged proposal is not recorded");

    // Terms the provider never offered, though truly signed by the requestor, are refused: the
    // offer side must be the provider's own Draft, word for word.
    let mut altered = agreement.body();
    altered.offer.properties["golem.com.pricing.model.linear.coeffs"] = json!([0, 0, 0]);
    let signature = agora_identity::sign_json(&r_id, &altered).unwrap();
    let answer = provider
        .handle(
            &r_peer,
            Some(r_id.address()),
            MarketRequest::ProposeAgreement { agreement: altered, signature },
        )
        .await;
    assert!(
        matches!(&answer, MarketResponse::Error { message, .. } if message.contains("not this provider's Draft")),
        "{answer:?}"
    );
    assert!(provider.agreement(&agreement_id).await.is_err(), "altered terms are not recorded");

    // The genuine confirmation goes through; the approval the courier forges does not count.
    requestor.confirm_agreement(&agreement_id).await.unwrap();
    assert_eq!(provider.agreement(&agreement_id).await.unwrap().state, AgreementState::Pending);
    // The same signed agreement again (a confirmation whose answer was lost) is acknowledged;
    // other terms under its id are not.
    let held = provider.agreement(&agreement_id).await.unwrap();
    let again = MarketRequest::ProposeAgreement {
        agreement: held.body(),
        signature: held.proposed_signature.clone().unwrap(),
    };
    assert_eq!(provider.handle(&r_peer, Some(r_id.address()), again).await, MarketResponse::Ack);
    let mut other = held.body();
    other.valid_to += chrono::Duration::seconds(1);
    let signature = agora_identity::sign_json(&r_id, &other).unwrap();
    let answer = provider
        .handle(
            &r_peer,
            Some(r_id.address()),
            MarketRequest::ProposeAgreement { agreement: other, signature },
        )
        .await;
    assert!(
        matches!(&answer, MarketResponse::Error { message, .. } if message.contains("taken")),
        "{answer:?}"
    );
    // Only a requestor cancels: the provider's "cancel" is refused and changes nothing.
    let cancel = MarketRequest::CancelAgreement { agreement_id: agreement_id.clone(), reason: None };
    let answer = requestor.handle(&p_peer, Some(p_id.address()), cancel).await;
    assert!(
        matches!(&answer, MarketResponse::Error { message, .. } if message.contains("cannot send")),
        "{answer:?}"
    );
    assert_eq!(requestor.agreement(&agreement_id).await.unwrap().state, AgreementState::Pending);
    assert_eq!(provider.approve_agreement(&agreement_id).await.unwrap(), AgreementState::Approved);
    assert_eq!(
        requestor.agreement(&agreement_id).await.unwrap().state,
        AgreementState::Pending,
        "forged approval refused"
    );
    assert_eq!(requestor.wait_for_approval(&agreement_id, Duration::from_millis(300)).await.unwrap(), None);
}

/// Two markets on real Postgres, linked in-process.
struct Linked {
    provider: Market,
    requestor: Market,
    /// The provider's peer id, as the requestor knows it.
    p_peer: String,
    /// Approvals the provider's link is to lose.
    losing: Arc<AtomicUsize>,
}

async fn linked(pg: &TestPg, lifetime: Duration) -> Linked {
    let (p_id, r_id) = (Identity::random(), Identity::random());
    let (p_peer, r_peer) = (p_id.peer_id().to_string(), r_id.peer_id().to_string());
    let (to_provider, to_requestor) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let losing = Arc::new(AtomicUsize::new(0));
    let link = |to: &Arc<OnceLock<Market>>, from_peer: &str, from: &Identity| Link {
        to: to.clone(),
        from_peer: from_peer.to_string(),
        from: from.address(),
        forge_approvals: false,
        lose_approvals: losing.clone(),
    };
    let provider =
        market(pg, None, &p_id, link(&to_requestor, &p_peer, &p_id)).await.with_proposal_lifetime(lifetime);
    let requestor = market(pg, Some("requestor"), &r_id, link(&to_provider, &r_peer, &r_id))
        .await
        .with_proposal_lifetime(lifetime);
    to_provider.set(provider.clone()).unwrap();
    to_requestor.set(requestor.clone()).unwrap();
    Linked { provider, requestor, p_peer, losing }
}

/// The provider offers, the requestor fetches the offer and demands it: (offer, demand, the
/// requestor's Initial proposal).
async fn matched(linked: &Linked) -> (String, String, String) {
    let Linked { provider, requestor, p_peer, .. } = linked;
    let offer_id = provider
        .subscribe_offer(
            &base(json!({"golem.runtime.name": "wasmtime"}), "()"),
            agora_agreement::ADMIN_PRINCIPAL,
        )
        .await
        .unwrap();
    let MarketResponse::Offer { offer: Some(body) } =
        provider.handle("requestor", None, MarketRequest::GetOffer { offer_id: offer_id.clone() }).await
    else {
        panic!("the provider serves its offer");
    };
    requestor.on_offer_body(provider.node_id(), p_peer, body).await.unwrap();
    let demand_id = requestor
        .subscribe_demand(&base(json!({}), "(golem.runtime.name=wasmtime)"), agora_agreement::ADMIN_PRINCIPAL)
        .await
        .unwrap();
    let events = requestor.collect_demand_events(&demand_id, Duration::from_secs(5), 10).await.unwrap();
    (offer_id, demand_id, first_proposal(events).await)
}

#[tokio::test]
async fn an_unanswered_proposal_expires() {
    let pg = TestPg::start().await;
    let lifetime = Duration::from_millis(800);
    let linked = linked(&pg, lifetime).await;
    let requestor = &linked.requestor;
    let (_, demand_id, initial) = matched(&linked).await;
    assert_eq!(requestor.demand_proposal(&demand_id, &initial).await.unwrap().state, ProposalState::Initial);

    tokio::time::sleep(lifetime + Duration::from_millis(400)).await;
    assert_eq!(requestor.demand_proposal(&demand_id, &initial).await.unwrap().state, ProposalState::Expired);
    let late = requestor
        .counter_proposal(&demand_id, &initial, &base(json!({}), "(golem.runtime.name=wasmtime)"), false)
        .await;
    assert!(matches!(late, Err(agora_market::Error::Gone(ref m)) if m.contains("Expired")), "{late:?}");
}

/// Messages that must arrive reach the other side in the order they were sent: a termination
/// queued behind an approval that did not get through waits for it.
#[tokio::test]
async fn queued_messages_reach_the_other_side_in_order() {
    let pg = TestPg::start().await;
    let linked = linked(&pg, Duration::from_secs(600)).await;
    let (provider, requestor) = (&linked.provider, &linked.requestor);
    let (offer_id, demand_id, initial) = matched(&linked).await;
    let demand = base(json!({}), "(golem.runtime.name=wasmtime)");
    let r_draft = requestor.counter_proposal(&demand_id, &initial, &demand, false).await.unwrap();
    let offer = base(json!({"golem.runtime.name": "wasmtime"}), "()");
    let p_draft = provider.counter_proposal(&offer_id, &r_draft, &offer, true).await.unwrap();
    let valid_to = chrono::Utc::now() + chrono::Duration::minutes(5);
    let agreement_id = requestor.create_agreement(&p_draft, valid_to).await.unwrap();
    requestor.confirm_agreement(&agreement_id).await.unwrap();

    // The approval is lost twice: when it is sent, and again when the termination behind it is.
    linked.losing.store(2, Ordering::SeqCst);
    provider.approve_agreement(&agreement_id).await.unwrap();
    provider.terminate_agreement(&agreement_id, Some(json!({"message": "done"}))).await.unwrap();
    assert_eq!(requestor.agreement(&agreement_id).await.unwrap().state, AgreementState::Pending);
    // Now it gets through, and the termination after it.
    provider.flush_outbox().await;
    assert_eq!(requestor.agreement(&agreement_id).await.unwrap().state, AgreementState::Terminated);
    let events = requestor.agreement_events(None, Duration::ZERO, 10).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["AgreementApprovedEvent", "AgreementTerminatedEvent"]);
}
