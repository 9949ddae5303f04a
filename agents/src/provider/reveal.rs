//! Commit and reveal: a sealed, signed commitment to a run's results digest for the requestor,
//! then the digest itself.

use super::{Dishonesty, ProviderAgent};
use crate::verify;
use crate::wire::{CommitmentBody, SignedCommitment, VerifyRequest, VerifyResponse};

impl ProviderAgent {
    pub(super) fn on_verify(&self, peer: &agora_net::PeerId, request: VerifyRequest) -> VerifyResponse {
        match self.verify_answer(peer, request) {
            Ok(answer) => answer,
            Err(message) => VerifyResponse::Refused { message },
        }
    }

    fn verify_answer(
        &self,
        peer: &agora_net::PeerId,
        request: VerifyRequest,
    ) -> Result<VerifyResponse, String> {
        let requestor = agora_identity::address_of_peer(peer).map_err(|e| e.to_string())?;
        let (VerifyRequest::Commit { activity_id, job_id } | VerifyRequest::Reveal { activity_id, job_id }) =
            &request;
        let digest = self
            .inner
            .activities
            .hosted_results_hash(activity_id, requestor)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("activity {activity_id} has no finished run"))?;
        match request {
            VerifyRequest::Commit { .. } => {
                let mut commitment = verify::commit(job_id, self.inner.identity.address(), &digest);
                if let Some(Dishonesty::Replay(other)) = self.inner.dishonesty {
                    // Another provider's seal, under this provider's name and signature.
                    commitment.seal = verify::commit(job_id, other, &digest).seal;
                }
                let body = CommitmentBody::new(job_id, activity_id, &commitment);
                let signature =
                    agora_identity::sign_json(&self.inner.identity, &body).map_err(|e| e.to_string())?;
                let signed = serde_json::to_vec(&SignedCommitment { body, signature }).expect("JSON");
                let key = agora_identity::public_key_of_peer(peer).map_err(|e| e.to_string())?;
                let sealed = agora_identity::seal(&key, &signed).map_err(|e| e.to_string())?;
                Ok(VerifyResponse::Committed { sealed: hex::encode(sealed) })
            }
            VerifyRequest::Reveal { .. } => Ok(VerifyResponse::Revealed { digest }),
        }
    }
}
