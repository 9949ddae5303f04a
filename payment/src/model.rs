//! Allocations, debit notes, invoices and payments, as Golem's payment API shows them (camelCase
//! JSON, amounts as decimal strings), and the amounts a caller gives.

use chrono::{DateTime, DurationRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::str::FromStr;

/// Decimal places of the tokens agora pays in; amounts are rounded to this on the way in.
pub const TOKEN_DECIMALS: u32 = 18;

/// An amount a caller or a peer gives: a decimal string of tokens, `0` or more, optionally with
/// an exponent (`1E-7`, as Python's `str(Decimal)` writes small amounts). More decimal places than
/// a token has (Golem's SDK sends 50 and more) are rounded half-up to [`TOKEN_DECIMALS`]; a sign,
/// or anything not a decimal number, is refused.
pub fn parse_amount(field: &str, text: &str) -> Result<Decimal, String> {
    let t = text.trim();
    let bad =
        || format!("{field} {text:?} is not an amount: give a decimal number of tokens, such as \"1.5\"");
    if t.starts_with('-') {
        return Err(format!("{field} {text:?} is negative: amounts are 0 or more"));
    }
    let (number, exponent) = match t.split_once(['e', 'E']) {
        None => (t, 0i32),
        // Bounded, so a hostile exponent cannot ask for a string of a billion zeros.
        Some((number, exp)) => match exp.parse::<i32>() {
            // Bounded, so a hostile exponent cannot ask for a string of a billion zeros.
            Ok(e) if e.abs() <= 64 => (number, e),
            _ => return Err(bad()),
        },
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    // Moves the decimal point by the exponent, in the digits themselves.
    let all = format!("{whole}{frac}");
    let point = whole.len() as i64 + i64::from(exponent);
    let (whole, frac) = if point <= 0 {
        (String::from("0"), format!("{}{all}", "0".repeat(point.unsigned_abs() as usize)))
    } else if point as usize >= all.len() {
        (format!("{all}{}", "0".repeat(point as usize - all.len())), String::new())
    } else {
        (all[..point as usize].to_string(), all[point as usize..].to_string())
    };
    let keep = frac.len().min(TOKEN_DECIMALS as usize);
    let round_up = frac.as_bytes().get(keep).is_some_and(|d| *d >= b'5');
    let whole = if whole.is_empty() { "0" } else { whole.as_str() };
    let mut amount = Decimal::from_str(&format!("{whole}.{}", &frac[..keep]))
        .or_else(|_| Decimal::from_str(whole))
        .map_err(|_| format!("{field} {text:?} is too large"))?;
    if round_up {
        amount = amount
            .checked_add(Decimal::new(1, keep as u32))
            .ok_or_else(|| format!("{field} {text:?} is too large"))?;
    }
    Ok(amount.normalize())
}

/// Amounts as Golem writes them: a plain decimal string, no trailing zeros.
pub fn amount_text(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// Now, at the microsecond precision PostgreSQL keeps, so what is signed reads back the same.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(chrono::Duration::microseconds(1)).unwrap_or(now)
}

/// A document's status, Golem's `InvoiceStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Issued,
    Received,
    Accepted,
    Rejected,
    Failed,
    Settled,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "ISSUED",
            Self::Received => "RECEIVED",
            Self::Accepted => "ACCEPTED",
            Self::Rejected => "REJECTED",
            Self::Failed => "FAILED",
            Self::Settled => "SETTLED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Issued,
            Self::Received,
            Self::Accepted,
            Self::Rejected,
            Self::Failed,
            Self::Settled,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// The event that reports a document reaching this status (`Issued` has none).
    pub fn event(self) -> Option<&'static str> {
        Some(match self {
            Self::Issued => return None,
            Self::Received => "Received",
            Self::Accepted => "Accepted",
            Self::Rejected => "Rejected",
            Self::Failed => "Failed",
            Self::Settled => "Settled",
            Self::Cancelled => "Cancelled",
        })
    }
}

/// Debit note or invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    DebitNote,
    Invoice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DebitNote => "debit_note",
            Self::Invoice => "invoice",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "debit_note" => Some(Self::DebitNote),
            "invoice" => Some(Self::Invoice),
            _ => None,
        }
    }

    /// `Debit note` or `Invoice`, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::DebitNote => "debit note",
            Self::Invoice => "invoice",
        }
    }

    /// The prefix of this kind's event types: `DebitNote…Event`, `Invoice…Event`.
    fn event_prefix(self) -> &'static str {
        match self {
            Self::DebitNote => "DebitNote",
            Self::Invoice => "Invoice",
        }
    }

    pub fn event_type(self, what: &str) -> String {
        format!("{}{what}Event", self.event_prefix())
    }
}

/// A debit note or an invoice, as the provider signs and sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub id: String,
    pub kind: Kind,
    pub agreement_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_ids: Option<Vec<String>>,
    pub issuer_id: String,
    pub recipient_id: String,
    pub payee_addr: String,
    pub payer_addr: String,
    pub payment_platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// A debit note's cumulative `totalAmountDue`, an invoice's `amount`.
    #[serde(with = "decimal_text")]
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_counter_vector: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_due_date: Option<DateTime<Utc>>,
    pub timestamp: DateTime<Utc>,
}

/// A document with its status on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRow {
    pub document: Document,
    pub status: Status,
    pub issued_here: bool,
    pub signature: String,
    pub accepted_amount: Option<Decimal>,
    pub allocation_id: Option<String>,
}

impl DocumentRow {
    /// Golem's `DebitNote` or `Invoice` JSON.
    pub fn view(&self) -> Value {
        let d = &self.document;
        let mut v = serde_json::json!({
            "issuerId": d.issuer_id,
            "recipientId": d.recipient_id,
            "payeeAddr": d.payee_addr,
            "payerAddr": d.payer_addr,
            "paymentPlatform": d.payment_platform,
            "timestamp": d.timestamp,
            "agreementId": d.agreement_id,
            "status": self.status,
        });
        let m = v.as_object_mut().expect("an object");
        match d.kind {
            Kind::DebitNote => {
                m.insert("debitNoteId".into(), d.id.clone().into());
                m.insert("activityId".into(), d.activity_id.clone().unwrap_or_default().into());
                m.insert("totalAmountDue".into(), amount_text(d.amount).into());
                if let Some(p) = &d.previous_id {
                    m.insert("previousDebitNoteId".into(), p.clone().into());
                }
                if let Some(u) = &d.usage_counter_vector {
                    m.insert("usageCounterVector".into(), u.clone());
                }
                if let Some(due) = d.payment_due_date {
                    m.insert("paymentDueDate".into(), serde_json::json!(due));
                }
            }
            Kind::Invoice => {
                m.insert("invoiceId".into(), d.id.clone().into());
                m.insert("activityIds".into(), serde_json::json!(d.activity_ids.clone().unwrap_or_default()));
                m.insert("amount".into(), amount_text(d.amount).into());
                m.insert(
                    "paymentDueDate".into(),
                    serde_json::json!(d.payment_due_date.unwrap_or(d.timestamp)),
                );
            }
        }
        v
    }
}

/// Golem's `Rejection`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub rejection_reason: RejectionReason,
    pub total_amount_accepted: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionReason {
    UnsolicitedService,
    BadService,
    IncorrectAmount,
}

/// Golem's `Acceptance` (and `DebitNoteAcceptance`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Acceptance {
    pub total_amount_accepted: String,
    pub allocation_id: String,
}

/// An allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub id: String,
    pub platform: String,
    pub address: String,
    pub total: Decimal,
    pub spent: Decimal,
    pub timestamp: DateTime<Utc>,
    pub timeout: Option<DateTime<Utc>>,
    pub make_deposit: bool,
}

impl Allocation {
    pub fn remaining(&self) -> Decimal {
        self.total - self.spent
    }

    /// Golem's `Allocation` JSON.
    pub fn view(&self) -> Value {
        let v = serde_json::json!({
            "allocationId": self.id,
            "address": self.address,
            "paymentPlatform": self.platform,
            "totalAmount": amount_text(self.total),
            "spentAmount": amount_text(self.spent),
            "remainingAmount": amount_text(self.remaining()),
            "timestamp": self.timestamp,
            "makeDeposit": self.make_deposit,
            "timeout": self.timeout,
        });
        v
    }
}

/// What a caller asks for in `POST /allocations`. Golem's SDK also sends `allocationId`,
/// `spentAmount` and `remainingAmount` (as empty strings): they are read-only and ignored.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewAllocation {
    pub address: Option<String>,
    pub payment_platform: Option<PlatformChoice>,
    pub total_amount: String,
    pub timeout: Option<DateTime<Utc>>,
    #[serde(default)]
    pub make_deposit: bool,
}

/// A platform as a name, or as Golem's `{driver, network, token}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PlatformChoice {
    Name(String),
    Parts { driver: Option<String>, network: Option<String>, token: Option<String> },
}

/// `PUT /allocations/{id}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationUpdate {
    pub total_amount: Option<String>,
    pub timeout: Option<DateTime<Utc>>,
}

/// A payment to one payee in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub payment_id: String,
    pub payer_id: String,
    pub payee_id: String,
    pub payer_addr: String,
    pub payee_addr: String,
    pub payment_platform: String,
    #[serde(with = "decimal_text")]
    pub amount: Decimal,
    pub timestamp: DateTime<Utc>,
    pub agreement_payments: Vec<Share>,
    pub activity_payments: Vec<Share>,
    /// The transaction's hash, `0x…`.
    pub details: String,
}

/// Golem's `AgreementPayment` / `ActivityPayment`, with the document it pays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    #[serde(with = "decimal_text")]
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_id: Option<String>,
    /// The debit note or invoice paid.
    pub document_id: String,
    pub document_kind: Kind,
}

/// Amounts as strings in JSON, both ways.
pub mod decimal_text {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::amount_text(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_amount("amount", &text).map_err(serde::de::Error::custom)
    }
}

/// Refuses what cannot be an id (of an agreement, allocation or document), naming the field.
pub(crate) fn check_id(field: &str, id: &str) -> crate::Result<()> {
    if agora_agreement::is_valid_id(id) {
        Ok(())
    } else {
        Err(crate::Error::BadInput(format!(
            "{field} {:?} is not an id: 1 to {} ASCII letters, digits, '-' or '_'",
            id.chars().take(80).collect::<String>(),
            agora_agreement::MAX_ID_LEN
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_to_token_precision_and_refuse_the_rest() {
        let d = |s| Decimal::from_str(s).unwrap();
        assert_eq!(parse_amount("a", "1.5").unwrap(), d("1.5"));
        assert_eq!(parse_amount("a", " 10 ").unwrap(), d("10"));
        assert_eq!(parse_amount("a", ".5").unwrap(), d("0.5"));
        // Golem's SDK sends floats printed with 50+ digits.
        let long = "0.1000000000000000055511151231257827021181583404541015625";
        assert_eq!(parse_amount("a", long).unwrap(), d("0.100000000000000006"));
        assert_eq!(
            parse_amount("a", "2.00000000000000000000000000000000000000000000000001").unwrap(),
            d("2")
        );
        assert_eq!(parse_amount("a", "0.0000000000000000015").unwrap(), d("0.000000000000000002"));
        assert!(parse_amount("a", "-1").unwrap_err().contains("negative"));
        // Python's str(Decimal) of small and large amounts.
        assert_eq!(parse_amount("a", "1E-7").unwrap(), d("0.0000001"));
        assert_eq!(parse_amount("a", "2.5e+3").unwrap(), d("2500"));
        assert_eq!(parse_amount("a", "1E-19").unwrap(), d("0"));
        assert_eq!(parse_amount("a", "5E-19").unwrap(), d("0.000000000000000001"));
        for bad in ["", "abc", "1e", "1e99999", "e5", "1.2.3", ".", "0x10", "+1", "1e5.5"] {
            assert!(parse_amount("totalAmount", bad).unwrap_err().contains("is not an amount"), "{bad}");
        }
        assert_eq!(amount_text(d("1.500")), "1.5");
    }

    #[test]
    fn event_types_are_golems() {
        assert_eq!(Kind::Invoice.event_type("Received"), "InvoiceReceivedEvent");
        assert_eq!(Kind::DebitNote.event_type(Status::Accepted.event().unwrap()), "DebitNoteAcceptedEvent");
        assert_eq!(serde_json::to_value(Status::Settled).unwrap(), "SETTLED");
    }
}
