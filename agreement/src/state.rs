//! Where an agreement stands, and which side of it a node is.

use serde::{Deserialize, Serialize};

/// Which side of an agreement this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Requestor,
    Provider,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requestor => "requestor",
            Self::Provider => "provider",
        }
    }
}

/// Golem's `AgreementState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AgreementState {
    /// Made by the requestor, not yet signed.
    Proposal,
    /// Signed by the requestor, waiting for the provider.
    Pending,
    Approved,
    Rejected,
    Cancelled,
    Expired,
    Terminated,
}

impl AgreementState {
    pub const ALL: [Self; 7] = [
        Self::Proposal,
        Self::Pending,
        Self::Approved,
        Self::Rejected,
        Self::Cancelled,
        Self::Expired,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposal => "Proposal",
            Self::Pending => "Pending",
            Self::Approved => "Approved",
            Self::Rejected => "Rejected",
            Self::Cancelled => "Cancelled",
            Self::Expired => "Expired",
            Self::Terminated => "Terminated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for AgreementState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
