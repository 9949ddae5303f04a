//! Where a proposal or an agreement stands, and which side of it a node is.

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

/// Golem's proposal states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "TEXT")]
pub enum ProposalState {
    /// The other side's offer or demand, as matched; not an answer to anything yet.
    Initial,
    /// A counter-proposal.
    Draft,
    Rejected,
    /// An agreement was made from it.
    Accepted,
    /// Left unanswered past the proposal lifetime.
    Expired,
}

impl ProposalState {
    /// Open: it can still be countered, rejected, or (a Draft) made an agreement.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Initial | Self::Draft)
    }
}

impl std::fmt::Display for ProposalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
