use agora_grammar::Properties;
use agora_identity::Address;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Why an offer is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("offer properties: {0}")]
    Properties(#[from] agora_grammar::Error),
    #[error("offer expires ({expiration}) before it is made ({timestamp})")]
    ExpiresBeforeMade { timestamp: DateTime<Utc>, expiration: DateTime<Utc> },
    #[error("offer id {claimed} does not match its content (which hashes to {actual})")]
    IdMismatch { claimed: String, actual: String },
}

/// A provider's offer: what it has, what it asks of demands, who it is and how long it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub properties: Properties,
    pub constraints: String,
    pub provider_id: Address,
    pub timestamp: DateTime<Utc>,
    pub expiration: DateTime<Utc>,
}

pub(crate) fn instant(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Hex SHA-256 over the canonical JSON of everything an offer or a demand says.
fn content_id(owner_key: &str, spec: &Offer) -> String {
    let content = json!({
        "properties": spec.properties,
        "constraints": spec.constraints,
        owner_key: format!("{:#x}", spec.provider_id),
        "timestamp": instant(&spec.timestamp),
        "expiration": instant(&spec.expiration),
    });
    // Canonical JSON of a value built from strings and JSON values cannot fail.
    let bytes = agora_identity::canonical_json(&content).expect("canonical offer content");
    hex::encode(Sha256::digest(bytes))
}

impl Offer {
    /// An offer with `properties` (nested or dotted) flattened.
    pub fn new(
        properties: &serde_json::Value,
        constraints: &str,
        provider_id: Address,
        timestamp: DateTime<Utc>,
        expiration: DateTime<Utc>,
    ) -> Result<Self, Error> {
        if expiration <= timestamp {
            return Err(Error::ExpiresBeforeMade { timestamp, expiration });
        }
        Ok(Self {
            properties: agora_grammar::flatten(properties)?,
            constraints: constraints.trim().to_string(),
            provider_id,
            timestamp,
            expiration,
        })
    }

    /// The offer's id: hex SHA-256 of the canonical JSON of its content. Timestamps count to the
    /// millisecond, as they travel.
    pub fn id(&self) -> String {
        content_id("providerId", self)
    }

    /// The same content read as a demand: its id names the requestor instead.
    pub fn demand_id(&self) -> String {
        content_id("requestorId", self)
    }

    /// Refuses an offer whose claimed id is not the hash of its content.
    pub fn check_id(&self, claimed: &str) -> Result<(), Error> {
        let actual = self.id();
        if actual != claimed.to_ascii_lowercase() {
            return Err(Error::IdMismatch { claimed: claimed.to_string(), actual });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn offer(props: serde_json::Value, constraints: &str) -> Offer {
        let owner: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse().unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        Offer::new(&props, constraints, owner, t, t + chrono::Duration::hours(1)).unwrap()
    }

    #[test]
    fn the_id_does_not_depend_on_how_properties_are_written() {
        let a = offer(json!({"golem": {"inf": {"cpu": {"threads": 4}}}, "x": "y"}), "()");
        let b = offer(json!({"x": "y", "golem.inf.cpu.threads": 4}), " () ");
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 64);
    }

    #[test]
    fn any_change_of_content_changes_the_id() {
        let base = offer(json!({"a": 1}), "()");
        let id = base.id();
        assert_ne!(offer(json!({"a": 2}), "()").id(), id);
        assert_ne!(offer(json!({"a": 1}), "(b=1)").id(), id);
        let mut moved = base.clone();
        moved.expiration += chrono::Duration::milliseconds(1);
        assert_ne!(moved.id(), id);
        let mut other_owner = base.clone();
        other_owner.provider_id = agora_identity::Identity::random().address();
        assert_ne!(other_owner.id(), id);
    }

    #[test]
    fn a_forged_id_and_a_backwards_expiry_are_refused() {
        let o = offer(json!({"a": 1}), "()");
        o.check_id(&o.id().to_uppercase()).unwrap();
        assert!(matches!(o.check_id(&"0".repeat(64)), Err(Error::IdMismatch { .. })));
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        let err = Offer::new(&json!({}), "()", o.provider_id, t, t).unwrap_err();
        assert!(matches!(err, Error::ExpiresBeforeMade { .. }));
        assert!(matches!(
            Offer::new(&json!(1), "()", o.provider_id, t, t + chrono::Duration::seconds(1)),
            Err(Error::Properties(_))
        ));
    }
}
