//! What nodes say to each other over `/agora/activity/3`, and the JSON shapes of Golem's
//! `/activity-api/v1` that both ends share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A requestor's node to the provider's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ActivityRequest {
    Create {
        agreement_id: String,
    },
    Exec {
        activity_id: String,
        script: String,
    },
    /// Results of a batch: waits up to `wait_ms` for new ones (or for `command_index` to finish).
    Results {
        activity_id: String,
        batch_id: String,
        wait_ms: u64,
        command_index: Option<usize>,
    },
    State {
        activity_id: String,
    },
    Usage {
        activity_id: String,
    },
    Destroy {
        activity_id: String,
    },
}

/// Answers to [`ActivityRequest`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ActivityResponse {
    Created {
        activity_id: String,
    },
    Batch {
        batch_id: String,
    },
    Results {
        results: Vec<CommandResult>,
    },
    State {
        state: ActivityState,
    },
    Usage {
        usage: ActivityUsage,
    },
    Done,
    /// Refused: what kind of refusal, and why.
    Error {
        refusal: Refusal,
        message: String,
    },
}

/// What a fetcher asks for on `/agora/blob/1`: a blob's bytes from `offset` to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobAsk {
    pub sha256: String,
    pub offset: u64,
}

/// What the source says before the bytes: how large the whole blob is, or why it sends nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum BlobHead {
    Sending { total: u64 },
    Refused { refusal: Refusal, message: String },
}

/// Why a node refused an activity request, by what the asker can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Refusal {
    BadInput,
    Forbidden,
    NotFound,
    Conflict,
    Gone,
    /// At a limit: try again shortly.
    Busy,
    /// It could not reach what it needed.
    Unavailable,
    /// It failed; its log has the details.
    Internal,
}

/// One command's result (Golem's `ExeScriptCommandResult`, plus agora's `exitCode`,
/// `resultsHash` and `outputs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub index: usize,
    pub event_date: DateTime<Utc>,
    /// `Ok` or `Error`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub is_batch_finished: bool,
    /// `run`: the exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// `run`: the `h1:` hash of the run's results folder, the verification proposal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_hash: Option<String>,
    /// `transfer` to `blob:`: the `blob:sha256:…` the output can be fetched as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

/// Golem's `ActivityState`: `[current, next]`, with a reason once terminated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityState {
    #[schema(value_type = Vec<Option<String>>)]
    pub state: (String, Option<String>),
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// Golem's `ActivityUsage`: one value per counter of the agreement's `golem.com.usage.vector`, in
/// its order ([`USAGE_VECTOR`] in agora's own offers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityUsage {
    pub current_usage: Vec<f64>,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
}

/// The usage counters, as `golem.usage.vector` names them.
pub const USAGE_VECTOR: [&str; 3] = ["golem.usage.duration_sec", "golem.usage.cpu_sec", "agora.usage.fuel"];

/// An activity's usage, one value per counter of `vector` in its order (Golem's clients zip it
/// with the offer's vector and coefficients); a counter this node does not measure is 0.
pub(crate) fn usage_of(usage: &crate::Usage, vector: &[String]) -> ActivityUsage {
    let value = |counter: &str| match counter {
        "golem.usage.duration_sec" => usage.duration_sec,
        "golem.usage.cpu_sec" => usage.cpu_sec,
        "agora.usage.fuel" => usage.fuel.unwrap_or(0) as f64,
        _ => 0.0,
    };
    ActivityUsage {
        current_usage: vector.iter().map(|c| value(c)).collect(),
        timestamp: chrono::Utc::now().timestamp(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_follows_the_agreements_vector_in_its_order() {
        let usage = crate::Usage { duration_sec: 12.5, cpu_sec: 3.25, fuel: Some(7) };
        let vector = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // Golem's usual vector: CPU first, and no fuel.
        let golem = vector(&["golem.usage.cpu_sec", "golem.usage.duration_sec"]);
        assert_eq!(usage_of(&usage, &golem).current_usage, [3.25, 12.5]);
        // A counter this node does not measure counts nothing rather than shifting the rest.
        let other = vector(&["golem.usage.gib", "agora.usage.fuel", "golem.usage.duration_sec"]);
        assert_eq!(usage_of(&usage, &other).current_usage, [0.0, 7.0, 12.5]);
        let own: Vec<String> = USAGE_VECTOR.iter().map(|n| n.to_string()).collect();
        assert_eq!(usage_of(&usage, &own).current_usage, [12.5, 3.25, 7.0]);
    }

    use chrono::TimeZone;

    /// Golem's SDKs read a batch's results in this shape: it must not change by accident.
    #[test]
    fn the_rest_json_of_a_batch_result_is_pinned() {
        let results = vec![
            CommandResult {
                index: 0,
                event_date: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
                result: "Ok".into(),
                stdout: Some("hello\n".into()),
                stderr: Some(String::new()),
                message: None,
                is_batch_finished: false,
                exit_code: Some(0),
                results_hash: Some("h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into()),
                blob: None,
            },
            CommandResult {
                index: 1,
                event_date: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 6).unwrap(),
                result: "Error".into(),
                stdout: None,
                stderr: None,
                message: Some("exited with code 3".into()),
                is_batch_finished: true,
                exit_code: Some(3),
                results_hash: None,
                blob: Some(format!("blob:sha256:{}", "cd".repeat(32))),
            },
        ];
        assert_eq!(
            serde_json::to_string(&results).unwrap(),
            r#"[{"index":0,"eventDate":"2026-01-02T03:04:05Z","result":"Ok","stdout":"hello\n","stderr":"","isBatchFinished":false,"exitCode":0,"resultsHash":"h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},{"index":1,"eventDate":"2026-01-02T03:04:06Z","result":"Error","message":"exited with code 3","isBatchFinished":true,"exitCode":3,"blob":"blob:sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}]"#
        );
    }
}
