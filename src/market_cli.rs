//! `agora market …`: listings and subscriptions through the node's market API.

use crate::Error;
use crate::client::Client;
use crate::output::{json, table};
use agora_agreement::Role;
use agora_market::api::{AgreementView, DemandOfferBase, DemandView, OfferView};
use clap::Subcommand;
use std::path::Path;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum MarketCommand {
    /// Match an offer with a demand, both ways. Each file is `{"properties": {…}, "constraints": "…"}`.
    Match {
        #[arg(long, value_name = "FILE")]
        offer: PathBuf,
        #[arg(long, value_name = "FILE")]
        demand: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// This node's standing offers.
    Offers {
        #[arg(long)]
        json: bool,
    },
    /// This node's standing demands.
    Demands {
        #[arg(long)]
        json: bool,
    },
    /// Agreements this node is a party to.
    Agreements {
        #[arg(long)]
        json: bool,
    },
    /// Publish an offer from a file (`{"properties": {…}, "constraints": "…"}`); prints its id.
    SubscribeOffer { file: PathBuf },
    /// Place a demand from a file (`{"properties": {…}, "constraints": "…"}`); prints its id.
    SubscribeDemand { file: PathBuf },
}

fn read_base(path: &Path) -> Result<DemandOfferBase, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

/// Ids are 64 hex digits; a listing shows enough of one to tell it apart.
fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

fn runtime(properties: &serde_json::Value) -> String {
    agora_grammar::flatten(properties)
        .ok()
        .and_then(|p| p.get("golem.runtime.name").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| "-".into())
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub async fn run(cmd: MarketCommand, client: &Client) -> Result<(), Error> {
    match cmd {
        MarketCommand::Offers { json: as_json } => {
            let offers: Vec<OfferView> = client.get("/market-api/v1/offers").await?;
            if as_json {
                json(&offers);
            } else {
                let rows: Vec<Vec<String>> = offers
                    .iter()
                    .map(|o| {
                        vec![
                            short(&o.offer_id),
                            runtime(&o.properties),
                            o.constraints.clone(),
                            when(&o.timestamp),
                        ]
                    })
                    .collect();
                table(&["OFFER", "RUNTIME", "CONSTRAINTS", "CREATED"], &rows);
            }
        }
        MarketCommand::Demands { json: as_json } => {
            let demands: Vec<DemandView> = client.get("/market-api/v1/demands").await?;
            if as_json {
                json(&demands);
            } else {
                let rows: Vec<Vec<String>> = demands
                    .iter()
                    .map(|d| vec![short(&d.demand_id), d.constraints.clone(), when(&d.timestamp)])
                    .collect();
                table(&["DEMAND", "CONSTRAINTS", "CREATED"], &rows);
            }
        }
        MarketCommand::Agreements { json: as_json } => {
            let agreements: Vec<AgreementView> = client.get("/market-api/v1/agreements").await?;
            if as_json {
                json(&agreements);
            } else {
                let rows: Vec<Vec<String>> = agreements
                    .iter()
                    .map(|a| {
                        let other = match a.role {
                            Role::Requestor => &a.offer.provider_id,
                            Role::Provider => &a.demand.requestor_id,
                        };
                        vec![
                            short(&a.agreement_id),
                            a.role.to_string(),
                            a.state.to_string(),
                            other.clone(),
                            when(&a.valid_to),
                        ]
                    })
                    .collect();
                table(&["AGREEMENT", "ROLE", "STATE", "OTHER PARTY", "VALID TO"], &rows);
            }
        }
        MarketCommand::SubscribeOffer { file } => {
            let id: String = client.post("/market-api/v1/offers", &read_base(&file)?).await?;
            println!("{id}");
        }
        MarketCommand::SubscribeDemand { file } => {
            let id: String = client.post("/market-api/v1/demands", &read_base(&file)?).await?;
            println!("{id}");
        }
        MarketCommand::Match { offer, demand, json } => crate::matching::run(&offer, &demand, json)?,
    }
    Ok(())
}
