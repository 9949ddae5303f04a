//! `agora market match`: one offer and one demand from files, matched both ways.

use crate::Error;
use agora_grammar::{Side, Vocabulary, match_pair};
use serde::Deserialize;
use serde_json::json;
use std::path::Path;

/// An offer or a demand file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SideFile {
    properties: serde_json::Value,
    #[serde(default = "empty")]
    constraints: String,
}

fn empty() -> String {
    "()".into()
}

fn read(vocab: &mut Vocabulary, path: &Path, what: &str) -> Result<Side, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Input(format!("{what} file {}: {e}", path.display())))?;
    let file: SideFile = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{what} file {}: {e}", path.display())))?;
    Side::parse(vocab, &file.properties, &file.constraints)
        .map_err(|e| Error::Input(format!("{what} file {}: {e}", path.display())))
}

pub fn run(offer: &Path, demand: &Path, as_json: bool) -> Result<(), Error> {
    let mut vocab = Vocabulary::default();
    let offer = read(&mut vocab, offer, "offer")?;
    let demand = read(&mut vocab, demand, "demand")?;
    let report = match_pair(&vocab, &demand, &offer);
    if as_json {
        crate::output::json(&json!({
            "result": report.result.as_str(),
            "demand_side": report.demand_side.as_str(),
            "offer_side": report.offer_side.as_str(),
            "undefined": {
                "demand_side": report.undefined_demand_side,
                "offer_side": report.undefined_offer_side,
            },
        }));
    } else {
        println!("result:      {}", report.result.as_str());
        println!("demand side: {} (the demand's constraints on the offer)", report.demand_side.as_str());
        println!("offer side:  {} (the offer's constraints on the demand)", report.offer_side.as_str());
        if !report.undefined_demand_side.is_empty() {
            println!("the offer lacks:  {}", report.undefined_demand_side.join(", "));
        }
        if !report.undefined_offer_side.is_empty() {
            println!("the demand lacks: {}", report.undefined_offer_side.join(", "));
        }
    }
    Ok(())
}
