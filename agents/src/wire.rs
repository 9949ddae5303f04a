//! What a requestor's job runner and a provider's agent say on `/agora/verify/1`: the provider's
//! sealed commitment to a run's result, then, for the winners only, the result's digest.

use crate::verify::Commitment;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// The requestor to the provider, about an activity the provider hosts for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum VerifyRequest {
    /// Commit to the last run's result for `job_id`.
    Commit { activity_id: String, job_id: String },
    /// Reveal the digest committed to.
    Reveal { activity_id: String, job_id: String },
}

/// Answers to [`VerifyRequest`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum VerifyResponse {
    /// A [`SignedCommitment`] as JSON, ECIES-sealed to the requestor's key, in hex.
    Committed {
        sealed: String,
    },
    Revealed {
        digest: String,
    },
    Refused {
        message: String,
    },
}

/// A commitment as the provider signs it: its hash and seal in hex, `hash` absent when the run
/// left no result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitmentBody {
    pub job_id: String,
    pub activity_id: String,
    pub provider: Address,
    pub hash: Option<String>,
    pub seal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedCommitment {
    pub body: CommitmentBody,
    /// The provider's signature over the canonical JSON of `body`.
    pub signature: String,
}

impl CommitmentBody {
    pub fn new(job_id: &str, activity_id: &str, commitment: &Commitment) -> Self {
        Self {
            job_id: job_id.into(),
            activity_id: activity_id.into(),
            provider: commitment.provider,
            hash: commitment.hash.map(hex::encode),
            seal: hex::encode(commitment.seal),
        }
    }

    /// The commitment, or what is malformed in it.
    pub fn commitment(&self) -> Result<Commitment, String> {
        let word = |name: &str, text: &str| -> Result<[u8; 32], String> {
            let bytes = hex::decode(text).map_err(|_| format!("{name} is not hex"))?;
            bytes.try_into().map_err(|_| format!("{name} is not 32 bytes"))
        };
        Ok(Commitment {
            provider: self.provider,
            hash: self.hash.as_deref().map(|h| word("hash", h)).transpose()?,
            seal: word("seal", &self.seal)?,
        })
    }
}
