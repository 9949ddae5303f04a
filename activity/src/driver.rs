//! The requestor side: activities this node drives on its agreements' providers, through
//! `/agora/activity/3`.

use crate::exescript::{self, Command};
use crate::pipe::PeerBlobs;
use crate::service::require_approved;
use crate::wire::{ActivityRequest, ActivityResponse, ActivityState, ActivityUsage, CommandResult};
use crate::{Activities, Error, MAX_WAIT, Result};
use agora_agreement::Role;
use std::time::Duration;

fn unexpected(answer: &ActivityResponse) -> Error {
    Error::Remote(format!("unexpected answer from the provider: {answer:?}"))
}

impl Activities {
    async fn ask(&self, peer: &str, request: ActivityRequest) -> Result<ActivityResponse> {
        match self.inner.messenger.send(peer.to_string(), request).await? {
            ActivityResponse::Error { refusal, message } => Err(Error::from_refusal(refusal, message)),
            answer => Ok(answer),
        }
    }

    /// The provider peer of an activity this node drives.
    async fn driven(&self, id: &str) -> Result<String> {
        match self.inner.store.peer_and_role(id).await? {
            Some((peer, role)) if role == Role::Requestor.as_str() => Ok(peer),
            Some(_) => {
                Err(Error::Forbidden(format!("activity {id} is hosted here; its requestor drives it")))
            }
            None => Err(Error::NotFound(format!("no activity {id}"))),
        }
    }

    /// `POST /activity`: creates an activity on the agreement's provider.
    pub async fn create(&self, agreement_id: &str) -> Result<String> {
        let Some(agreement) = self.inner.agreements.agreement(agreement_id).await? else {
            return Err(Error::NotFound(format!("no agreement {agreement_id}")));
        };
        if agreement.role != Role::Requestor {
            return Err(Error::Forbidden(format!(
                "agreement {agreement_id}: this node is its provider; only its requestor creates activities"
            )));
        }
        require_approved(&agreement)?;
        let request = ActivityRequest::Create { agreement_id: agreement_id.into() };
        let answer = self.ask(&agreement.peer_id, request).await?;
        let ActivityResponse::Created { activity_id } = answer else { return Err(unexpected(&answer)) };
        if !agora_agreement::is_valid_id(&activity_id) {
            return Err(Error::Remote(format!("the provider named its activity {activity_id:?}")));
        }
        self.inner.store.insert(&activity_id, agreement_id, Role::Requestor, &agreement.peer_id).await?;
        Ok(activity_id)
    }

    /// `POST /activity/{id}/exec`: checks the batch here, then hands it to the provider.
    pub async fn exec(&self, id: &str, script: &str) -> Result<String> {
        let peer = self.driven(id).await?;
        let commands = exescript::parse(script).map_err(|e| Error::BadInput(e.to_string()))?;
        for (index, command) in commands.iter().enumerate() {
            if let Command::Transfer(t) = command
                && let Some(hex) = crate::blobs::parse_blob_url(&t.from)
                    .or_else(|| crate::transfer::parse_gftp_blob(&t.from))
                && self.inner.blobs.path(&hex).is_none()
            {
                return Err(Error::BadInput(format!(
                    "command {index}: blob {hex} is not on this node; upload it first (POST /blobs)"
                )));
            }
        }
        let destinations = &self.inner.destinations;
        let claimed = destinations.claim(&commands)?;
        let request = ActivityRequest::Exec { activity_id: id.into(), script: script.into() };
        match self.ask(&peer, request).await {
            Ok(ActivityResponse::Batch { batch_id }) => {
                destinations.expect(id, &batch_id, claimed);
                Ok(batch_id)
            }
            refused => {
                destinations.reopen(&commands, claimed);
                Err(match refused {
                    Ok(other) => unexpected(&other),
                    Err(e) => e,
                })
            }
        }
    }

    /// A `gftp://` URL on this node (`node`, its address) and the file in the node's outputs
    /// folder it stands for: an output a batch transfers there is written to the file before its
    /// result is reported.
    pub fn open_destination(&self, node: &str) -> Result<(String, std::path::PathBuf)> {
        self.inner.destinations.open(node)
    }

    /// `GET /activity/{id}/exec/{batch}`: results so far, waiting up to `wait`; outputs sent to
    /// `blob:` or a `gftp://` URL are fetched into this node's blob store before they are
    /// reported, and written to the file a destination stands for.
    pub async fn results(
        &self,
        id: &str,
        batch_id: &str,
        wait: Duration,
        command_index: Option<usize>,
    ) -> Result<Vec<CommandResult>> {
        let peer = self.driven(id).await?;
        let request = ActivityRequest::Results {
            activity_id: id.into(),
            batch_id: batch_id.into(),
            wait_ms: wait.min(MAX_WAIT).as_millis() as u64,
            command_index,
        };
        let answer = self.ask(&peer, request).await?;
        let ActivityResponse::Results { results } = answer else { return Err(unexpected(&answer)) };
        for result in &results {
            if let Some(hex) = result.blob.as_deref().and_then(crate::blobs::parse_blob_url) {
                // On a task of its own: a caller that stops waiting (a client's timeout) does not
                // stop the fetch, and its next call waits for the same one. It ends when the node
                // begins to stop (what arrived is kept for the next fetch).
                let source = PeerBlobs { messenger: self.inner.messenger.clone(), peer: peer.clone() };
                let (this, id, batch_id, index) =
                    (self.clone(), id.to_string(), batch_id.to_string(), result.index);
                let fetch = self.inner.tasks.spawn(async move {
                    let inner = &this.inner;
                    let blob = tokio::select! {
                        () = inner.stopping.cancelled() => Err(Error::Busy("the node is stopping".into())),
                        fetched = inner.blobs.fetch(&hex, &source) => fetched,
                    }?;
                    match inner.destinations.file_for(&id, &batch_id, index) {
                        Some(file) => tokio::task::spawn_blocking(move || {
                            this.inner.destinations.deliver(&id, &batch_id, index, &blob, &file)
                        })
                        .await
                        .map_err(|e| Error::Io(format!("writing an output: {e}")))?,
                        None => Ok(()),
                    }
                });
                fetch.await.map_err(|e| Error::Io(format!("fetching an output: {e}")))??;
            }
        }
        Ok(results)
    }

    pub async fn state(&self, id: &str) -> Result<ActivityState> {
        let peer = self.driven(id).await?;
        match self.ask(&peer, ActivityRequest::State { activity_id: id.into() }).await {
            Ok(ActivityResponse::State { state }) => {
                self.inner.store.set_state(id, &state.state.0, state.reason.as_deref()).await;
                Ok(state)
            }
            // The provider's node does not answer: the activity is Unresponsive until it does.
            Err(Error::Unreachable(message)) => {
                self.inner.store.set_state(id, "Unresponsive", None).await;
                Ok(ActivityState {
                    state: ("Unresponsive".into(), None),
                    reason: None,
                    error_message: Some(format!("the provider's node did not answer: {message}")),
                })
            }
            Err(refused) => Err(refused),
            Ok(other) => Err(unexpected(&other)),
        }
    }

    pub async fn usage(&self, id: &str) -> Result<ActivityUsage> {
        let peer = self.driven(id).await?;
        match self.ask(&peer, ActivityRequest::Usage { activity_id: id.into() }).await? {
            ActivityResponse::Usage { usage } => Ok(usage),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn destroy(&self, id: &str) -> Result<()> {
        let peer = self.driven(id).await?;
        self.ask(&peer, ActivityRequest::Destroy { activity_id: id.into() }).await?;
        self.inner.store.set_state(id, "Terminated", Some("destroyed")).await;
        Ok(())
    }
}
