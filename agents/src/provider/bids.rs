//! Answering the market: a counter-proposal for each demand the bid rules and hooks accept, and
//! an agreement approved while there is room for it.

use super::{POLL, ProviderAgent};
use agora_agreement::AgreementState;
use agora_market::ProposalState;
use agora_market::api::{DemandOfferBase, Event};
use alloy_primitives::Address;
use futures_util::FutureExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Whether the agent bids for a demand, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidDecision {
    pub should_bid: bool,
    #[serde(default)]
    pub reason: String,
}

impl ProviderAgent {
    pub(super) async fn negotiate(&self, offer_id: &str, stop: CancellationToken) {
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
}

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
}
