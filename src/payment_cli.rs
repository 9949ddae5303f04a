//! `agora payment …`: the node's account, the dev faucet, and its documents and payments.

use crate::Error;
use crate::client::Client;
use crate::output::{json, table};
use clap::Subcommand;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum PaymentCommand {
    /// Balances on chain, and the amounts allocated, pending (accepted, not yet paid), paid and
    /// received, per platform.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// On a dev network: gas money and 1000 test tokens from the faucet for this node's account.
    Fund {
        /// The platform, e.g. erc20-dev-tglm [default: the node's first].
        #[arg(long)]
        platform: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Invoices issued or received here.
    Invoices {
        #[arg(long)]
        json: bool,
    },
    /// Debit notes issued or received here.
    DebitNotes {
        #[arg(long)]
        json: bool,
    },
    /// Payments made, or received and found on chain.
    Payments {
        #[arg(long)]
        json: bool,
    },
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

fn statuses(rows: &[Value]) {
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            ["platform", "address", "token", "gas", "allocated", "pending", "paid", "received"]
                .iter()
                .map(|k| text(s, k))
                .collect()
        })
        .collect();
    table(&["PLATFORM", "ADDRESS", "TOKEN", "GAS", "ALLOCATED", "PENDING", "PAID", "RECEIVED"], &lines);
}

pub async fn run(cmd: PaymentCommand, client: &Client) -> Result<(), Error> {
    match cmd {
        PaymentCommand::Status { json: as_json } => {
            let rows: Vec<Value> = client.get("/admin/v1/payment/status").await?;
            if as_json { json(&rows) } else { statuses(&rows) }
        }
        PaymentCommand::Fund { platform, json: as_json } => {
            let row: Value =
                client.post("/admin/v1/payment/fund", &serde_json::json!({ "platform": platform })).await?;
            if as_json { json(&row) } else { statuses(&[row]) }
        }
        PaymentCommand::Invoices { json: as_json } => {
            let rows: Vec<Value> = client.get("/payment-api/v1/invoices").await?;
            documents(&rows, "invoiceId", "amount", as_json);
        }
        PaymentCommand::DebitNotes { json: as_json } => {
            let rows: Vec<Value> = client.get("/payment-api/v1/debitNotes").await?;
            documents(&rows, "debitNoteId", "totalAmountDue", as_json);
        }
        PaymentCommand::Payments { json: as_json } => {
            let rows: Vec<Value> = client.get("/payment-api/v1/payments").await?;
            if as_json {
                json(&rows);
            } else {
                let lines: Vec<Vec<String>> = rows
                    .iter()
                    .map(|p| {
                        vec![
                            short(&text(p, "paymentId")),
                            text(p, "payerAddr"),
                            text(p, "payeeAddr"),
                            text(p, "amount"),
                            text(p, "details"),
                        ]
                    })
                    .collect();
                table(&["PAYMENT", "PAYER", "PAYEE", "AMOUNT", "TRANSACTION"], &lines);
            }
        }
    }
    Ok(())
}

fn documents(rows: &[Value], id: &str, amount: &str, as_json: bool) {
    if as_json {
        return json(&rows);
    }
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            vec![
                short(&text(d, id)),
                short(&text(d, "agreementId")),
                text(d, amount),
                text(d, "status"),
                text(d, "paymentPlatform"),
                text(d, "timestamp"),
            ]
        })
        .collect();
    table(&["ID", "AGREEMENT", "AMOUNT", "STATUS", "PLATFORM", "ISSUED"], &lines);
}
