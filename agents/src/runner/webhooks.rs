//! Webhooks: each step of a job that names a `webhook` is POSTed there, signed with its service's
//! secret, one at a time per job in the order the steps happened, retried with backoff until the
//! receiver takes it (or a day has passed), and recorded. Any node sharing the database may
//! send a delivery; a lease keeps two from sending the same one at once.

use super::Jobs;
use super::store;
use crate::Result;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;

/// How often a node looks for deliveries that came due.
const DELIVERY_POLL: Duration = Duration::from_millis(250);
/// How long a receiver may take to answer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two tries.
const MAX_BACKOFF_SECS: i64 = 30;
/// Deliveries sent at once by one node.
const DELIVERIES_AT_ONCE: i64 = 16;

/// One delivery as `GET /jobs/{id}/webhooks` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub event_id: i64,
    pub url: String,
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub gave_up_at: Option<DateTime<Utc>>,
    /// The receiver's last HTTP status.
    pub last_status: Option<i16>,
    /// Why the last try failed.
    pub last_error: Option<String>,
}

/// The `v1` signature of a delivery: hex HMAC-SHA256 of `<t>.<body>`, keyed with the secret's
/// text as `GET /jobs/webhook-secret` shows it, where `t` is the Unix time in the
/// `Agora-Signature` header (`t=<t>,v1=<hex>`).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Seconds before try `attempts + 1`: 1, 2, 4, … up to [`MAX_BACKOFF_SECS`].
fn backoff(attempts: i32) -> i64 {
    1i64.checked_shl(attempts.saturating_sub(1).clamp(0, 30) as u32).unwrap_or(i64::MAX).min(MAX_BACKOFF_SECS)
}

impl Jobs {
    /// A job's deliveries, oldest step first.
    pub async fn deliveries(&self, id: &str) -> Result<Vec<Delivery>> {
        store::webhooks::of_job(&self.inner.pool, id).await
    }

    /// Sends due deliveries until the node stops.
    pub(super) fn serve_webhooks(&self) {
        let jobs = self.clone();
        self.inner.tasks.spawn(async move {
            // A receiver's redirect is not followed: the job's URL is where its steps go.
            let client = match reqwest::Client::builder()
                .timeout(DELIVERY_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
            {
                Ok(client) => client,
                Err(e) => {
                    tracing::error!(error = %e, "no HTTP client: webhooks are not sent from this node");
                    return;
                }
            };
            loop {
                match jobs.deliver_due(&client).await {
                    // More may be due at once.
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sending webhooks"),
                }
                tokio::select! {
                    () = jobs.inner.shutdown.cancelled() => return,
                    () = jobs.inner.deliveries.notified() => {}
                    () = tokio::time::sleep(DELIVERY_POLL) => {}
                }
            }
        });
    }

    /// Leases the due deliveries (each the earliest one of its job not yet delivered), sends
    /// them, and records how each went; how many it sent.
    async fn deliver_due(&self, client: &reqwest::Client) -> Result<usize> {
        let rows = store::webhooks::lease_due(&self.inner.pool, DELIVERIES_AT_ONCE).await?;
        let sent = rows.len();
        let sends = rows.into_iter().map(|row| async move {
            let event_id = row.event_id;
            if let Err(e) = self.deliver(client, row).await {
                tracing::warn!(event = event_id, error = %e, "recording a webhook delivery");
            }
        });
        futures_util::future::join_all(sends).await;
        Ok(sent)
    }

    async fn deliver(&self, client: &reqwest::Client, row: store::webhooks::Due) -> Result<()> {
        let store::webhooks::Due { event_id, job_id, url, attempts, at, state, message, signer } = row;
        let state = crate::JobState::from_code(state).expect("the table checks the state");
        let body = json!({
            "jobId": job_id,
            "eventId": event_id,
            "state": state.label(),
            "stateCode": state.code(),
            "message": message,
            "at": at,
        })
        .to_string();
        let secret = hex::encode(self.secret_of(&signer).await?);
        let t = Utc::now().timestamp();
        let sent = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Agora-Event-Id", event_id.to_string())
            .header("Agora-Job-Id", &job_id)
            .header("Agora-Signature", format!("t={t},v1={}", signature(&secret, t, body.as_bytes())))
            .body(body)
            .send()
            .await;
        let (status, error) = match sent {
            Ok(resp) if resp.status().is_success() => (Some(resp.status().as_u16()), None),
            Ok(resp) => {
                (Some(resp.status().as_u16()), Some(format!("the receiver answered {}", resp.status())))
            }
            Err(e) => (None, Some(format!("not delivered: {e}"))),
        };
        let status = status.map(|s| i16::try_from(s).unwrap_or(i16::MAX));
        match error {
            None => {
                store::webhooks::delivered(&self.inner.pool, event_id, status).await?;
            }
            Some(error) => {
                tracing::info!(job = %job_id, event = event_id, attempts, "webhook: {error}");
                store::webhooks::failed(&self.inner.pool, event_id, status, &error, backoff(attempts) as f64)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let waits: Vec<i64> = (1..=8).map(backoff).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(i32::MAX), MAX_BACKOFF_SECS);
    }

    #[test]
    fn signatures_cover_the_time_and_the_body() {
        let s = signature("k", 1, b"{}");
        assert_eq!(s.len(), 64);
        assert_ne!(s, signature("k", 2, b"{}"));
        assert_ne!(s, signature("k", 1, b"{ }"));
        assert_ne!(s, signature("j", 1, b"{}"));
        // What Python's `hmac.new(b"Jefe", b"0.what do ya want for nothing?", "sha256")` gives.
        assert_eq!(
            signature("Jefe", 0, b"what do ya want for nothing?"),
            "37f471929915ccd2cbbe79feb84ffcff4f2bb25e15fc41c2506687331ae179cc"
        );
    }
}
