//! The operator's presets as offers: what the machine has, priced as each preset says.

use alloy_primitives::Address;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The `[provider]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// What the node offers: one offer per preset.
    pub presets: Vec<Preset>,
    /// Agreements approved at once, at most; more are rejected.
    pub max_agreements: usize,
    /// `golem.node.debug.subnet`: requestors filter on it to find a private group of providers.
    pub subnet: String,
    /// Requestors (node addresses) it bids for; every one when empty.
    pub allow: Vec<Address>,
    /// Requestors it never bids for.
    pub deny: Vec<Address>,
    /// An HTTP hook asked about every demand (`POST` of the demand's JSON, answered with
    /// `{"shouldBid": bool, "reason": "…"}`), as Bacalhau's probes are.
    pub bid_hook_url: Option<String>,
    /// A program asked the same on its standard input and output.
    pub bid_hook_command: Option<Vec<String>>,
    /// `golem.com.scheme.payu.debit-note.interval-sec?`, offered.
    pub debit_note_interval_secs: u64,
    /// `golem.com.payment.debit-notes.accept-timeout?`, offered.
    pub debit_note_accept_timeout_secs: u64,
    /// An approved agreement with no activity running this long is terminated.
    pub idle_agreement_secs: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            presets: vec![Preset::default()],
            max_agreements: 8,
            subnet: "public".into(),
            allow: Vec::new(),
            deny: Vec::new(),
            bid_hook_url: None,
            bid_hook_command: None,
            debit_note_interval_secs: 120,
            debit_note_accept_timeout_secs: 240,
            idle_agreement_secs: 90,
        }
    }
}

/// One kind of work the node sells, and its price.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preset {
    pub name: String,
    /// `wasmtime` or `docker`.
    pub runtime: String,
    /// Price per second of an activity's life (`golem.usage.duration_sec`).
    pub per_duration_sec: f64,
    /// Price per CPU second (`golem.usage.cpu_sec`).
    pub per_cpu_sec: f64,
    /// Price per unit of WASM fuel (`agora.usage.fuel`).
    pub per_fuel: f64,
    /// Price of starting an activity, the fixed part.
    pub start: f64,
    /// Longest run, in seconds.
    pub max_run_secs: f64,
    /// Memory for one activity, GiB; the machine's memory when not set.
    pub mem_gib: Option<f64>,
    /// CPU threads for one activity; the machine's when not set.
    pub cpu_threads: Option<f64>,
}

impl Default for Preset {
    fn default() -> Self {
        Self {
            name: "wasm".into(),
            runtime: "wasmtime".into(),
            per_duration_sec: 0.0001,
            per_cpu_sec: 0.0002,
            per_fuel: 0.0,
            start: 0.001,
            max_run_secs: 60.0,
            mem_gib: None,
            cpu_threads: None,
        }
    }
}

/// What the machine has, as offers state it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    pub cpu_threads: usize,
    pub mem_gib: f64,
    pub storage_gib: f64,
}

impl Machine {
    /// This machine: its CPU threads, its memory, and the free space where `data_dir` is.
    pub fn probe(data_dir: &Path) -> Self {
        let cpu_threads = std::thread::available_parallelism().map_or(1, usize::from);
        let mem_bytes = agora_activity::memory_total().map_or(0.0, |bytes| bytes as f64);
        let storage_gib = nix::sys::statvfs::statvfs(data_dir)
            .map(|s| s.blocks_available() as f64 * s.fragment_size() as f64 / f64::from(1u32 << 30))
            .unwrap_or(0.0);
        Self {
            cpu_threads,
            mem_gib: round2(mem_bytes / f64::from(1u32 << 30)),
            storage_gib: round2(storage_gib),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).floor() / 100.0
}

/// The offer of one preset: what Golem's requestors filter and score on, and agora's limits.
pub fn offer_properties(
    preset: &Preset,
    config: &ProviderConfig,
    machine: &Machine,
    platforms: &[(String, Address)],
) -> Value {
    let mut p = BTreeMap::<String, Value>::new();
    p.insert("golem.node.id.name".into(), json!(preset.name));
    p.insert("golem.node.debug.subnet".into(), json!(config.subnet));
    p.insert("golem.runtime.name".into(), json!(preset.runtime));
    p.insert("golem.inf.cpu.threads".into(), json!(preset.cpu_threads.unwrap_or(machine.cpu_threads as f64)));
    p.insert("golem.inf.mem.gib".into(), json!(preset.mem_gib.unwrap_or(machine.mem_gib)));
    p.insert("golem.inf.storage.gib".into(), json!(machine.storage_gib));
    p.insert("golem.com.scheme".into(), json!("payu"));
    p.insert("golem.com.pricing.model".into(), json!("linear"));
    p.insert("golem.com.usage.vector".into(), json!(agora_activity::wire::USAGE_VECTOR));
    p.insert(
        "golem.com.pricing.model.linear.coeffs".into(),
        json!([preset.per_duration_sec, preset.per_cpu_sec, preset.per_fuel, preset.start]),
    );
    for (platform, address) in platforms {
        p.insert(agora_agreement::keys::platform_address(platform), json!(format!("{address:#x}")));
    }
    p.insert(agora_payment::PROTOCOL_VERSION_KEY.into(), json!(agora_payment::PROTOCOL_VERSION));
    p.insert("golem.srv.caps.multi-activity".into(), json!(true));
    p.insert(agora_agreement::keys::DEBIT_NOTE_INTERVAL.into(), json!(config.debit_note_interval_secs));
    p.insert(
        agora_agreement::keys::DEBIT_NOTE_ACCEPT_TIMEOUT.into(),
        json!(config.debit_note_accept_timeout_secs),
    );
    p.insert("agora.limits.time_sec".into(), json!(preset.max_run_secs));
    json!(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_carries_what_golem_requestors_filter_and_score_on() {
        let machine = Machine { cpu_threads: 2, mem_gib: 7.5, storage_gib: 100.0 };
        let platforms = [("erc20-dev-tglm".to_string(), Address::repeat_byte(7))];
        let p = offer_properties(&Preset::default(), &ProviderConfig::default(), &machine, &platforms);
        assert_eq!(p["golem.inf.cpu.threads"], json!(2.0));
        assert_eq!(p["golem.inf.mem.gib"], json!(7.5));
        assert_eq!(p["golem.inf.storage.gib"], json!(100.0));
        assert_eq!(p["golem.runtime.name"], "wasmtime");
        assert_eq!(p["golem.com.scheme"], "payu");
        assert_eq!(p["golem.com.pricing.model"], "linear");
        // One coefficient per usage counter, then the fixed price, as JSON floats.
        assert_eq!(p["golem.com.pricing.model.linear.coeffs"], json!([0.0001, 0.0002, 0.0, 0.001]));
        assert_eq!(p["golem.com.usage.vector"].as_array().unwrap().len(), 3);
        assert_eq!(
            p["golem.com.payment.platform.erc20-dev-tglm.address"],
            "0x0707070707070707070707070707070707070707"
        );
        assert_eq!(p["golem.com.payment.protocol.version"], json!(3));
        assert_eq!(p["golem.srv.caps.multi-activity"], json!(true));
        assert_eq!(p["golem.node.debug.subnet"], "public");
        assert_eq!(p["golem.com.scheme.payu.debit-note.interval-sec?"], json!(120));
        assert_eq!(p["golem.com.payment.debit-notes.accept-timeout?"], json!(240));
        // The pricing reads back as the market reads it.
        let flat = agora_grammar::flatten(&p).unwrap();
        assert!(crate::LinearPricing::from_properties(&flat).is_ok());
    }

    #[test]
    fn the_machine_is_probed() {
        let m = Machine::probe(Path::new("/"));
        assert!(m.cpu_threads >= 1);
        assert!(m.mem_gib > 0.0);
    }
}
