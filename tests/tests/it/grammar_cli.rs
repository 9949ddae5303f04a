//! `agora constraints check` and `agora market match` as a script would use them.

use agora_tests::run_agora;
use serde_json::{Value, json};

#[test]
fn constraints_check_prints_the_canonical_form_or_the_error() {
    let ok = run_agora(
        &["constraints", "check", "(& (golem.inf.mem.gib>=8)\n (golem.runtime.name=\"wasm*\"))"],
        None,
    );
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "(&(golem.inf.mem.gib>=8)(golem.runtime.name=\"wasm*\"))\n"
    );

    let bad = run_agora(&["constraints", "check", "(&(a=1)(golem.inf.mem.gib==8))"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        "error: line 1, column 27: expected ')', a list or a quoted value, found '='"
    );
}

#[test]
fn market_match_reports_both_sides_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let offer = dir.path().join("offer.json");
    let demand = dir.path().join("demand.json");
    let write = |path: &std::path::Path, v: Value| std::fs::write(path, v.to_string()).unwrap();
    write(
        &offer,
        json!({"properties": {"golem": {"runtime": {"name": "docker"}}, "golem.inf.mem.gib": 4}, "constraints": "(requestor.ok=true)"}),
    );
    write(
        &demand,
        json!({"properties": {"requestor.ok": true}, "constraints": "(&(golem.runtime.name=docker)(golem.inf.gpu.model=a100))"}),
    );
    let (o, d) = (offer.to_str().unwrap(), demand.to_str().unwrap());
    let out = run_agora(&["market", "match", "--offer", o, "--demand", d, "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        json!({"result": "undefined", "demand_side": "undefined", "offer_side": "true",
               "undefined": {"demand_side": ["golem.inf.gpu.model"], "offer_side": []}})
    );

    write(&demand, json!({"properties": {}, "constraints": "(golem.runtime.name=docker)"}));
    let report: Value = serde_json::from_slice(
        &run_agora(&["market", "match", "--offer", o, "--demand", d, "--json"], None).stdout,
    )
    .unwrap();
    assert_eq!(
        (report["result"].as_str(), report["offer_side"].as_str()),
        (Some("undefined"), Some("undefined"))
    );
    assert_eq!(report["undefined"]["offer_side"], json!(["requestor.ok"]));

    write(&demand, json!({"properties": {}, "constraints": "(golem.runtime.name=docker"}));
    let bad = run_agora(&["market", "match", "--offer", o, "--demand", d], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line 1, column 27"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
