//! An agreement: the terms both sides signed, who they are, and where it stands.
//!
//! The terms are the two final proposals of the negotiation, as Golem makes them: the provider's
//! Draft and the requestor's proposal it answered. What either side added while negotiating (the
//! chosen payment platform, say) is in them, and so under both signatures.

use crate::body::{AgreementBody, DemandTerms, OfferTerms};
use crate::pricing::{LinearPricing, PricingError};
use crate::state::{AgreementState, Role};
use agora_grammar::Properties;
use agora_identity::Address;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::time::Duration;

/// An agreement as this node holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub id: String,
    pub role: Role,
    pub state: AgreementState,
    pub requestor: Address,
    pub provider: Address,
    /// The other side's libp2p peer.
    pub peer_id: String,
    /// The requestor's final proposal.
    pub demand: DemandTerms,
    /// The provider's final proposal (its Draft the agreement was made from).
    pub offer: OfferTerms,
    pub valid_to: DateTime<Utc>,
    /// When the requestor made it.
    pub timestamp: DateTime<Utc>,
    /// The requestor's signature over [`Agreement::body`].
    pub proposed_signature: Option<String>,
    /// The provider's signature over the same.
    pub approved_signature: Option<String>,
    pub approved_date: Option<DateTime<Utc>>,
    /// Why it was rejected, cancelled or terminated, as the party said it.
    pub reason: Option<serde_json::Value>,
}

/// Golem's property names for the terms payments and agents read.
pub mod keys {
    pub const CHOSEN_PLATFORM: &str = "golem.com.payment.chosen-platform";
    pub const DEBIT_NOTE_INTERVAL: &str = "golem.com.scheme.payu.debit-note.interval-sec?";
    pub const DEBIT_NOTE_ACCEPT_TIMEOUT: &str = "golem.com.payment.debit-notes.accept-timeout?";
    pub const PAYMENT_TIMEOUT: &str = "golem.com.scheme.payu.payment-timeout-sec?";
    pub const RUNTIME: &str = "golem.runtime.name";
    pub const TASK_PACKAGE: &str = "golem.srv.comp.task_package";
    pub const CPU_THREADS: &str = "golem.inf.cpu.threads";
    pub const FUEL_LIMIT: &str = "agora.limits.fuel";

    /// `golem.com.payment.platform.<platform>.address`: a party's address on a platform.
    pub fn platform_address(platform: &str) -> String {
        format!("golem.com.payment.platform.{platform}.address")
    }
}

/// What is missing or malformed in an agreement's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    #[error("agreement {agreement}: {source}")]
    Pricing {
        agreement: String,
        #[source]
        source: PricingError,
    },
    #[error("agreement {agreement}: the demand names no payment platform ({})", keys::CHOSEN_PLATFORM)]
    NoPlatform { agreement: String },
    #[error("agreement {agreement}: {key} is not {expected}")]
    Malformed { agreement: String, key: String, expected: &'static str },
}

/// The payment platform the requestor chose, and both parties' addresses on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentPlatform {
    /// Golem's platform name, `erc20-<network>-<token>`.
    pub name: String,
    pub payer: Address,
    pub payee: Address,
}

/// Properties flattened to dotted keys (what was signed may be nested).
fn flat(properties: &serde_json::Value) -> Properties {
    agora_grammar::flatten(properties).unwrap_or_default()
}

impl Agreement {
    /// What both parties sign.
    pub fn body(&self) -> AgreementBody {
        AgreementBody {
            agreement_id: self.id.clone(),
            demand: self.demand.clone(),
            offer: self.offer.clone(),
            valid_to: self.valid_to,
            timestamp: self.timestamp,
        }
    }

    /// The offer side's properties, flattened.
    pub fn offer_properties(&self) -> Properties {
        flat(&self.offer.properties)
    }

    /// The demand side's properties, flattened.
    pub fn demand_properties(&self) -> Properties {
        flat(&self.demand.properties)
    }

    /// The offer's runtime (`golem.runtime.name`).
    pub fn runtime(&self) -> Option<String> {
        self.offer_properties().get(keys::RUNTIME).and_then(|v| v.as_str()).map(str::to_string)
    }

    /// The package the demand asks to deploy (`golem.srv.comp.task_package`).
    pub fn task_package(&self) -> Option<String> {
        self.demand_properties().get(keys::TASK_PACKAGE).and_then(|v| v.as_str()).map(str::to_string)
    }

    /// The provider's price: Golem's linear model, one coefficient per usage counter and a
    /// fixed price.
    pub fn pricing(&self) -> Result<LinearPricing, TermsError> {
        LinearPricing::from_properties(&self.offer_properties())
            .map_err(|source| TermsError::Pricing { agreement: self.id.clone(), source })
    }

    /// The usage counters the provider reports, in the order its debit notes count them.
    pub fn usage_vector(&self) -> Result<Vec<String>, TermsError> {
        Ok(self.pricing()?.usage_vector)
    }

    /// The platform the requestor chose, with the payer's and payee's addresses on it. A party
    /// that names no address there is paid at (or pays from) its node address.
    pub fn payment_platform(&self) -> Result<PaymentPlatform, TermsError> {
        let demand = self.demand_properties();
        let name = match demand.get(keys::CHOSEN_PLATFORM) {
            None => return Err(TermsError::NoPlatform { agreement: self.id.clone() }),
            Some(v) => v.as_str().ok_or_else(|| self.malformed(keys::CHOSEN_PLATFORM, "a string"))?,
        };
        let key = keys::platform_address(name);
        let address = |props: &Properties, default: Address| match props.get(&key) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .and_then(|s| agora_identity::parse_address(s).ok())
                .ok_or_else(|| self.malformed(&key, "an address")),
        };
        Ok(PaymentPlatform {
            name: name.to_string(),
            payer: address(&demand, self.requestor)?,
            payee: address(&self.offer_properties(), self.provider)?,
        })
    }

    /// The CPU threads the offer gives a run: at least one and at most [`MAX_THREADS`]; 1 when
    /// the offer does not say.
    pub fn cpu_threads(&self) -> Result<Decimal, TermsError> {
        cpu_threads(&self.offer_properties()).map_err(|expected| self.malformed(keys::CPU_THREADS, expected))
    }

    /// The most WASM fuel a run may burn (`agora.limits.fuel`), if the offer says.
    pub fn fuel_limit(&self) -> Result<Option<u64>, TermsError> {
        fuel_limit(&self.offer_properties()).map_err(|expected| self.malformed(keys::FUEL_LIMIT, expected))
    }

    /// How often the provider sends debit notes, if the terms say.
    pub fn debit_note_interval(&self) -> Result<Option<Duration>, TermsError> {
        self.seconds(keys::DEBIT_NOTE_INTERVAL)
    }

    /// How long the requestor may take to accept a debit note, if the terms say.
    pub fn debit_note_accept_timeout(&self) -> Result<Option<Duration>, TermsError> {
        self.seconds(keys::DEBIT_NOTE_ACCEPT_TIMEOUT)
    }

    /// How long after a debit note's acceptance it must be paid (pay-as-you-go), if the terms say.
    pub fn payment_timeout(&self) -> Result<Option<Duration>, TermsError> {
        self.seconds(keys::PAYMENT_TIMEOUT)
    }

    /// A duration in seconds that both sides negotiate: what the requestor asked for first (what
    /// Golem's requestors hold a provider to), else the provider's offer. A reader clamps it to
    /// its own bounds.
    fn seconds(&self, key: &str) -> Result<Option<Duration>, TermsError> {
        let offer = self.offer_properties();
        let demand = self.demand_properties();
        let Some(value) = demand.get(key).or_else(|| offer.get(key)) else { return Ok(None) };
        value
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= u32::MAX as f64)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| self.malformed(key, "a number of seconds"))
    }

    fn malformed(&self, key: &str, expected: &'static str) -> TermsError {
        TermsError::Malformed { agreement: self.id.clone(), key: key.to_string(), expected }
    }
}

/// The most CPU threads an offer may give one run: more is no machine, and a larger figure would
/// only make the worst case of a run overflow.
pub const MAX_THREADS: u32 = 1 << 16;

/// An offer's `golem.inf.cpu.threads`, checked: a number from 1 to [`MAX_THREADS`] (fractions
/// allowed); 1 when the offer does not say. What the value should be when it is not one.
pub fn cpu_threads(offer: &Properties) -> Result<Decimal, &'static str> {
    const EXPECTED: &str = "a number of threads from 1 to 65536";
    match offer.get(keys::CPU_THREADS) {
        None => Ok(Decimal::ONE),
        Some(value) => crate::pricing::json_decimal(value)
            .filter(|t| *t >= Decimal::ONE && *t <= Decimal::from(MAX_THREADS))
            .ok_or(EXPECTED),
    }
}

/// An offer's `agora.limits.fuel`, checked: a whole number below 2^64, if the offer says.
pub fn fuel_limit(offer: &Properties) -> Result<Option<u64>, &'static str> {
    match offer.get(keys::FUEL_LIMIT) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or("a whole number of fuel units"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::agreement;
    use serde_json::json;

    #[test]
    fn terms_are_read_from_the_final_proposals() {
        let a = agreement(
            json!({"golem.com.payment.chosen-platform": "erc20-dev-tglm",
                   "golem.com.payment.platform.erc20-dev-tglm.address": "0x3333333333333333333333333333333333333333",
                   "golem.com.payment.debit-notes.accept-timeout?": 30,
                   "golem.srv.comp.task_package": "blob:sha256:00"}),
            json!({"golem": {"com": {"pricing": {"model": "linear"}}},
                   "golem.com.pricing.model.linear.coeffs": [0.001, 0.002, 0.5],
                   "golem.com.usage.vector": ["golem.usage.duration_sec", "golem.usage.cpu_sec"],
                   "golem.com.scheme.payu.debit-note.interval-sec?": 120,
                   "golem.com.scheme.payu.payment-timeout-sec?": 600,
                   "golem.runtime.name": "wasmtime"}),
        );
        let pricing = a.pricing().unwrap();
        assert_eq!(pricing.coeffs, [Decimal::new(1, 3), Decimal::new(2, 3)]);
        assert_eq!(pricing.fixed, Decimal::new(5, 1));
        assert_eq!(a.usage_vector().unwrap(), ["golem.usage.duration_sec", "golem.usage.cpu_sec"]);
        let platform = a.payment_platform().unwrap();
        assert_eq!(platform.name, "erc20-dev-tglm");
        assert_eq!(platform.payer, "0x3333333333333333333333333333333333333333".parse::<Address>().unwrap());
        assert_eq!(platform.payee, a.provider, "no address on the offer: the provider's node address");
        assert_eq!(a.debit_note_interval().unwrap(), Some(Duration::from_secs(120)));
        assert_eq!(a.debit_note_accept_timeout().unwrap(), Some(Duration::from_secs(30)));
        assert_eq!(a.payment_timeout().unwrap(), Some(Duration::from_secs(600)));
        assert_eq!(a.runtime().as_deref(), Some("wasmtime"));
        assert_eq!(a.task_package().as_deref(), Some("blob:sha256:00"));
    }

    #[test]
    fn missing_or_malformed_terms_say_which() {
        let a = agreement(
            json!({"golem.com.payment.platform.x.address": "nope"}),
            json!({"golem.com.scheme.payu.payment-timeout-sec?": "soon"}),
        );
        assert_eq!(a.payment_platform(), Err(TermsError::NoPlatform { agreement: "ag".into() }));
        assert!(matches!(a.pricing(), Err(TermsError::Pricing { .. })));
        assert_eq!(a.debit_note_interval(), Ok(None));
        let err = a.payment_timeout().unwrap_err().to_string();
        assert!(err.contains("payment-timeout-sec? is not a number of seconds"), "{err}");
        let mut b = a.clone();
        b.demand.properties = json!({"golem.com.payment.chosen-platform": "x",
                                     "golem.com.payment.platform.x.address": "nope"});
        assert!(b.payment_platform().unwrap_err().to_string().contains("is not an address"));
    }
}
