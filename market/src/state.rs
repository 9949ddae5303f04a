//! Where a proposal stands.

use serde::{Deserialize, Serialize};

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
