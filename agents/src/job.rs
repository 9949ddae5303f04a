//! A job as a requestor submits it: what to run, on how many providers, how sure to be of the
//! result, and what it may cost. Its states are numbered, as `GET /jobs` shows them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The job spec (`POST /jobs`, or a YAML or JSON file for `agora job submit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct JobSpec {
    #[serde(default)]
    pub engine: Engine,
    /// The WASM module (`blob:sha256:…` on this node, or an `http(s)://` URL), or the image
    /// (`docker:<name>@sha256:…`).
    pub module: String,
    /// The WASM export or the container's program.
    #[serde(default = "default_entry_point")]
    pub entry_point: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Files placed under `/input` before the run.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// Datasets of the provider (names or `sha256:` digests), mounted read-only.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// Files of `/output` the job's results keep.
    #[serde(default)]
    pub outputs: Vec<Output>,
    /// Providers the job runs on at first.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Results that must agree; 0 asks only for a majority of at least two.
    #[serde(default)]
    pub confidence: usize,
    /// Proposals to wait for before choosing; `concurrency` when not set.
    #[serde(default)]
    pub min_bids: Option<usize>,
    /// The most the job may cost, every replica included, in the platform's token.
    pub budget: String,
    /// Seconds a run may take; the job's deadlines are counted in it.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub verifier: Verifier,
    /// A WASM job run by the requestor's node too, whose result the winning group's must be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referee: Option<Referee>,
    /// Only providers of this `golem.node.debug.subnet`.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Only these providers (node addresses), asked in this order; any provider, chosen by
    /// reputation, when empty.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub providers: Vec<alloy_primitives::Address>,
    /// An `http(s)://` URL that each step of the job is POSTed to, signed (see
    /// `GET /jobs/webhook-secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

fn default_entry_point() -> String {
    "_start".into()
}
fn default_concurrency() -> usize {
    3
}
fn default_timeout() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Wasm,
    Docker,
}

impl Engine {
    /// `golem.runtime.name` of the providers that run it.
    pub fn runtime(self) -> &'static str {
        match self {
            Self::Wasm => "wasmtime",
            Self::Docker => "docker",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verifier {
    /// Results are compared by commit and reveal; only the verified majority is paid.
    #[default]
    Deterministic,
    /// One provider, paid for what it ran.
    None,
}

/// Who checks the verified result by running the job itself: `"local"`, or `{"spotCheck": p}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Referee {
    /// The requestor's node runs every such job.
    Local,
    /// The requestor's node runs the job with this probability (0 to 1), drawn once the
    /// commitments are in.
    SpotCheck(f64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// `blob:sha256:…` on this node, or an `http(s)://` URL.
    pub src: String,
    /// The path under `/input`.
    pub dst: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub name: String,
    /// The path under `/output`.
    pub path: String,
}

/// The most providers one job runs on, added replicas included.
pub const MAX_CONCURRENCY: usize = 32;
/// The longest run a job may ask for: a day.
pub const MAX_TIMEOUT: u64 = 86_400;

impl JobSpec {
    /// The spec's mistakes, each naming its field and what to do.
    pub fn check(&self) -> Result<Decimal, String> {
        if self.module.is_empty() {
            return Err("module: empty; give a blob:sha256:… or http(s):// URL, or docker:<image>".into());
        }
        if self.engine == Engine::Docker && !self.module.starts_with("docker:") {
            return Err(format!(
                "module {}: a docker job names its image as docker:<name>@sha256:…",
                self.module
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!("concurrency {}: must be 1 to {MAX_CONCURRENCY}", self.concurrency));
        }
        if self.verifier == Verifier::None && self.concurrency != 1 {
            return Err("concurrency: a job without a verifier runs on one provider; set it to 1".into());
        }
        if self.confidence > MAX_CONCURRENCY {
            return Err(format!("confidence {}: at most {MAX_CONCURRENCY}", self.confidence));
        }
        if self.min_bids == Some(0) {
            return Err("min_bids: at least 1".into());
        }
        if !(1..=MAX_TIMEOUT).contains(&self.timeout) {
            return Err(format!("timeout {}: 1 to {MAX_TIMEOUT} seconds", self.timeout));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if input.dst.is_empty() || input.dst.starts_with('/') || input.dst.split('/').any(|p| p == "..") {
                return Err(format!("inputs[{i}].dst {:?}: a relative path under /input", input.dst));
            }
        }
        for (i, output) in self.outputs.iter().enumerate() {
            if output.path.is_empty()
                || output.path.starts_with('/')
                || output.path.split('/').any(|p| p == "..")
            {
                return Err(format!("outputs[{i}].path {:?}: a relative path under /output", output.path));
            }
        }
        match self.referee {
            None => {}
            Some(_) if self.engine != Engine::Wasm => {
                return Err("referee: only a wasm job can be run by the referee; leave it out".into());
            }
            Some(_) if self.verifier != Verifier::Deterministic => {
                return Err("referee: it checks a verified result; use the deterministic verifier".into());
            }
            Some(_) if !self.datasets.is_empty() => {
                return Err(
                    "referee: the datasets are the providers'; a job with datasets cannot be refereed".into(),
                );
            }
            Some(Referee::SpotCheck(p)) if !(0.0..=1.0).contains(&p) => {
                return Err(format!("referee.spotCheck {p}: a probability, from 0 to 1"));
            }
            Some(_) => {
                // The referee must run exactly what the providers ran: sources named by their
                // content, not a URL whose answer may change.
                let pinned = |src: &str| src.starts_with("blob:sha256:") || src.starts_with("hash:");
                if let Some(src) = std::iter::once(&self.module)
                    .chain(self.inputs.iter().map(|i| &i.src))
                    .find(|src| !pinned(src))
                {
                    return Err(format!(
                        "referee: {src} is not named by its content; give blob:sha256:… or hash:<sha3|sha256>:<hex>:<url>"
                    ));
                }
            }
        }
        if let Some(url) = &self.webhook {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("webhook {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(format!("webhook {url:?}: an http:// or https:// URL"));
            }
        }
        let budget = agora_payment::model::parse_amount("budget", &self.budget)?;
        if budget <= Decimal::ZERO {
            return Err(format!("budget {}: must be above 0", self.budget));
        }
        Ok(budget)
    }

    pub fn min_bids(&self) -> usize {
        self.min_bids.unwrap_or(self.concurrency)
    }

    /// The activity's batch: deploy, start, inputs in, the run, outputs out.
    pub fn script(&self) -> serde_json::Value {
        use serde_json::json;
        let mut script = vec![json!({"deploy": {}}), json!({"start": {}})];
        for input in &self.inputs {
            script.push(
                json!({"transfer": {"from": input.src, "to": format!("container:/input/{}", input.dst)}}),
            );
        }
        script.push(json!({"run": {
            "entry_point": self.entry_point, "args": self.args, "env": self.env, "datasets": self.datasets,
        }}));
        script.extend(self.output_transfers());
        json!(script)
    }

    /// The commands that bring the run's outputs back, in the order of `outputs`.
    pub fn output_transfers(&self) -> Vec<serde_json::Value> {
        self.outputs
            .iter()
            .map(|output| {
                serde_json::json!({"transfer": {"from": format!("container:/output/{}", output.path), "to": "blob:"}})
            })
            .collect()
    }
}

/// A state numbered as stored and shown: the enum, every variant in order, its code and label.
macro_rules! numbered_states {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal, $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($variant = $code),+
        }

        impl $name {
            pub const ALL: [Self; [$($code),+].len()] = [$(Self::$variant),+];

            pub const fn code(self) -> i16 {
                self as i16
            }

            pub fn from_code(code: i16) -> Option<Self> {
                Self::ALL.get(usize::try_from(code).ok()?).copied()
            }

            pub fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label),+
                }
            }
        }
    };
}

numbered_states! {
    /// Where a job is.
    JobState {
        Queued = 0, "queued",
        FindingProviders = 1, "finding providers",
        Negotiating = 2, "negotiating",
        Running = 3, "running",
        Verifying = 4, "verifying",
        Paying = 5, "paying",
        Completed = 6, "completed",
        Failed = 7, "failed",
        Cancelled = 8, "cancelled",
    }
}

impl JobState {
    pub fn is_final(self) -> bool {
        self >= Self::Completed
    }
}

numbered_states! {
    /// Where one replica of a job is.
    ExecState {
        Chosen = 0, "chosen",
        Agreed = 1, "agreed",
        Running = 2, "running",
        Committed = 3, "committed",
        Verified = 4, "verified",
        Lost = 5, "lost",
        Failed = 6, "failed",
        Paid = 7, "paid",
        Rejected = 8, "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<JobSpec, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn a_spec_has_defaults_and_names_its_mistakes() {
        let s = spec(serde_json::json!({"module": "blob:sha256:00", "budget": "1"})).unwrap();
        assert_eq!((s.concurrency, s.confidence, s.min_bids(), s.timeout), (3, 0, 3, 60));
        assert_eq!(s.verifier, Verifier::Deterministic);
        assert!(s.check().is_ok());
        let bad = |change: serde_json::Value| {
            let mut base = serde_json::json!({"module": "blob:sha256:00", "budget": "1"});
            for (k, v) in change.as_object().unwrap() {
                base[k] = v.clone();
            }
            spec(base).unwrap().check().unwrap_err()
        };
        assert!(bad(serde_json::json!({"concurrency": 0})).starts_with("concurrency 0"));
        assert!(bad(serde_json::json!({"budget": "0"})).starts_with("budget"));
        assert!(bad(serde_json::json!({"budget": "x"})).contains("budget"));
        assert!(bad(serde_json::json!({"timeout": 0})).starts_with("timeout"));
        assert!(bad(serde_json::json!({"verifier": "none"})).starts_with("concurrency"));
        assert!(
            bad(serde_json::json!({"inputs": [{"src": "blob:x", "dst": "../etc"}]})).starts_with("inputs[0]")
        );
        assert!(bad(serde_json::json!({"engine": "docker"})).contains("docker:"));
        assert!(spec(serde_json::json!({"module": "m", "budget": "1", "colour": 1})).is_err());
    }

    #[test]
    fn a_referee_is_local_or_a_spot_check_of_a_wasm_job() {
        let with = |referee: serde_json::Value| {
            spec(serde_json::json!({"module": "blob:sha256:00", "budget": "1", "referee": referee}))
        };
        assert_eq!(with(serde_json::json!("local")).unwrap().referee, Some(Referee::Local));
        let drawn = with(serde_json::json!({"spotCheck": 0.1})).unwrap();
        assert_eq!(drawn.referee, Some(Referee::SpotCheck(0.1)));
        assert!(drawn.check().is_ok());
        assert!(with(serde_json::json!("remote")).is_err());
        assert!(
            with(serde_json::json!({"spotCheck": 1.5})).unwrap().check().unwrap_err().contains("spotCheck")
        );
        assert!(
            with(serde_json::json!({"spotCheck": -0.1})).unwrap().check().unwrap_err().contains("spotCheck")
        );
        let mut docker = with(serde_json::json!("local")).unwrap();
        docker.engine = Engine::Docker;
        docker.module = "docker:x@sha256:00".into();
        assert!(docker.check().unwrap_err().starts_with("referee"));
        let mut datasets = with(serde_json::json!("local")).unwrap();
        datasets.datasets = vec!["imagenet".into()];
        assert!(datasets.check().unwrap_err().starts_with("referee"));
        let mut url = with(serde_json::json!("local")).unwrap();
        url.module = "https://example.org/m.wasm".into();
        assert!(url.check().unwrap_err().contains("not named by its content"));
        url.module = format!("hash:sha256:{}:https://example.org/m.wasm", "ab".repeat(32));
        assert!(url.check().is_ok());
        url.inputs = vec![Input { src: "http://example.org/in".into(), dst: "in".into() }];
        assert!(url.check().unwrap_err().contains("http://example.org/in"));
        // Without a referee, the spec's JSON is as before.
        let plain = spec(serde_json::json!({"module": "m", "budget": "1"})).unwrap();
        assert!(serde_json::to_value(&plain).unwrap().get("referee").is_none());
    }

    #[test]
    fn states_are_numbered() {
        for state in JobState::ALL {
            assert_eq!(JobState::from_code(state.code()), Some(state));
        }
        assert_eq!(JobState::Completed.code(), 6);
        assert!(JobState::Cancelled.is_final() && !JobState::Paying.is_final());
        for state in ExecState::ALL {
            assert_eq!(ExecState::from_code(state.code()), Some(state));
        }
    }
}
