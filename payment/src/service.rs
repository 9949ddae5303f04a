//! The payment service of a node: its allocations, the documents it issued or received, the
//! events they made, and what it still owes other nodes.

use crate::model::{DocumentRow, Kind, Status, now_micros};
use crate::store;
use crate::wire::{Message, PaymentRequest, PaymentResponse};
use crate::{Error, PaymentConfig, Result};
use agora_agreement::Agreement;
use agora_identity::{Address, Identity};
use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// How payments learn about agreements (the market's): the node implements it.
pub trait PaymentAgreements: Send + Sync + std::fmt::Debug + 'static {
    /// The agreement, as this node holds it; `None` if it has none by that id.
    fn agreement(&self, id: &str) -> BoxFuture<'_, Result<Option<Agreement>>>;
    /// Whose the agreement is (see [`agora_agreement::ADMIN_PRINCIPAL`]); `None` if this node has
    /// none by that id.
    fn principal(&self, id: &str) -> BoxFuture<'_, Result<Option<String>>>;
    /// The agreement an activity of this node runs under; `None` if it has no such activity.
    fn activity_agreement(&self, activity_id: &str) -> BoxFuture<'_, Result<Option<String>>>;
}

/// Whose money a caller may see and move: the node's admin all of it, an app-key what it made —
/// its allocations, and the documents and payments of the agreements its subscriptions made.
/// Anything else is, to it, not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    All,
    Of(&'a str),
}

impl Scope<'_> {
    /// The principal to filter by; `None` for all.
    pub(crate) fn principal(self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Of(principal) => Some(principal.to_string()),
        }
    }

    pub(crate) fn sees(self, principal: &str) -> bool {
        match self {
            Self::All => true,
            Self::Of(mine) => mine == principal,
        }
    }
}

/// What a [`Scope`] is checked against before an act.
#[derive(Debug, Clone, Copy)]
pub enum Owned<'a> {
    Allocation(&'a str),
    Agreement(&'a str),
    Document(Kind, &'a str),
}

/// How payments reach other nodes.
pub trait PaymentCourier: Send + Sync + std::fmt::Debug + 'static {
    /// Sends a request to `peer` and waits for its answer; `Err` if it did not get there.
    fn send(
        &self,
        peer: String,
        request: PaymentRequest,
    ) -> BoxFuture<'static, Result<PaymentResponse, String>>;
}

impl PaymentCourier for agora_net::NetHandle {
    fn send(
        &self,
        peer: String,
        request: PaymentRequest,
    ) -> BoxFuture<'static, Result<PaymentResponse, String>> {
        let net = self.clone();
        Box::pin(async move {
            net.request_typed(agora_net::Channel::Payment, &peer, &request).await.map_err(|e| e.to_string())
        })
    }
}

/// The payment service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Payments {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) identity: Identity,
    pub(crate) node_id: Address,
    pub(crate) config: PaymentConfig,
    pub(crate) agreements: Arc<dyn PaymentAgreements>,
    pub(crate) courier: Option<Arc<dyn PaymentCourier>>,
    /// Woken when an event is recorded: long polls look again.
    pub(crate) events: Notify,
    /// Woken when an order is written: the driver forms a batch sooner.
    pub(crate) orders: Notify,
    /// Woken when a payment arrives: the payee checks it.
    pub(crate) arrivals: Notify,
    /// What stops each platform's driver now, Golem's `DriverStatusProperty` list.
    pub(crate) status: Mutex<BTreeMap<String, Vec<Value>>>,
    /// Per peer, the lock its deliveries hold (see `Payments::delivery_lock`).
    pub(crate) delivering: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held by whatever signs with this node's account (the driver, the faucet), so two never
    /// take the same nonce.
    pub(crate) account: tokio::sync::Mutex<()>,
}

impl Payments {
    pub fn new(
        pool: PgPool,
        identity: Identity,
        config: PaymentConfig,
        agreements: Arc<dyn PaymentAgreements>,
    ) -> Self {
        let node_id = identity.address();
        Self {
            inner: Arc::new(Inner {
                pool,
                identity,
                node_id,
                config,
                agreements,
                courier: None,
                events: Notify::new(),
                orders: Notify::new(),
                arrivals: Notify::new(),
                status: Mutex::new(BTreeMap::new()),
                delivering: Mutex::default(),
                account: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Delivers messages to other nodes through `courier`. Only before the service is shared.
    pub fn with_courier(mut self, courier: Arc<dyn PaymentCourier>) -> Self {
        Arc::get_mut(&mut self.inner).expect("with_courier before the service is cloned").courier =
            Some(courier);
        self
    }

    pub fn config(&self) -> &PaymentConfig {
        &self.inner.config
    }

    pub fn node_id(&self) -> Address {
        self.inner.node_id
    }

    pub(crate) fn me(&self) -> String {
        format!("{:#x}", self.inner.node_id)
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(crate) async fn agreement(&self, id: &str) -> Result<Agreement> {
        self.inner
            .agreements
            .agreement(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no agreement {id} on this node")))
    }

    /// Whose an agreement is; `NotFound` if this node has none by that id.
    pub(crate) async fn principal(&self, agreement_id: &str) -> Result<String> {
        self.inner
            .agreements
            .principal(agreement_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no agreement {agreement_id} on this node")))
    }

    /// `Ok` if `activity_id` is an activity of `agreement_id` on this node: what a debit note
    /// must name, on either side.
    pub(crate) async fn check_activity(&self, agreement_id: &str, activity_id: &str) -> Result<()> {
        match self.inner.agreements.activity_agreement(activity_id).await? {
            Some(under) if under == agreement_id => Ok(()),
            Some(under) => Err(Error::BadInput(format!(
                "activity {activity_id} runs under agreement {under}, not {agreement_id}: a debit note is of an \
                 activity of its own agreement"
            ))),
            None => Err(Error::BadInput(format!(
                "activity {activity_id} is not one of agreement {agreement_id}'s here: a debit note is of an \
                 activity of its own agreement"
            ))),
        }
    }

    /// `Ok` if `scope` may see and act on `what`, and `NotFound` (as if it were not there) if it
    /// may not or it is not.
    pub async fn check_scope(&self, scope: Scope<'_>, what: Owned<'_>) -> Result<()> {
        let (principal, missing) = match what {
            Owned::Agreement(id) => {
                crate::model::check_id("agreementId", id)?;
                (self.principal(id).await?, format!("no agreement {id} on this node"))
            }
            Owned::Allocation(id) => {
                crate::model::check_id("allocationId", id)?;
                let principal = store::allocations::principal(self.pool(), id).await?;
                (principal.unwrap_or_default(), format!("no allocation {id}"))
            }
            Owned::Document(kind, id) => {
                crate::model::check_id(kind.label(), id)?;
                let principal = store::documents::principal(self.pool(), kind, id).await?;
                (principal.unwrap_or_default(), format!("no {} {id} on this node", kind.label()))
            }
        };
        if principal.is_empty() || !scope.sees(&principal) {
            return Err(Error::NotFound(missing));
        }
        Ok(())
    }

    /// Records an event of a document, in `tx`.
    pub(crate) async fn record_event(
        tx: &mut sqlx::PgConnection,
        kind: Kind,
        document_id: &str,
        status: Status,
        detail: Option<Value>,
    ) -> Result<()> {
        let Some(what) = status.event() else { return Ok(()) };
        store::events::insert(tx, kind, document_id, &kind.event_type(what), detail).await
    }

    /// Tells long polls that events were committed.
    pub(crate) fn events_changed(&self) {
        self.inner.events.notify_waiters();
    }

    /// Events of `kind` after `after`, oldest first, as Golem's `…Event` JSON; waits up to
    /// `timeout` for the first if there is none yet.
    pub async fn events(
        &self,
        kind: Kind,
        after: Option<chrono::DateTime<chrono::Utc>>,
        max: i64,
        timeout: std::time::Duration,
        scope: Scope<'_>,
    ) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let rows = store::events::after(self.pool(), kind, after, max, scope.principal()).await?;
            if !rows.is_empty() {
                let id_key = match kind {
                    Kind::DebitNote => "debitNoteId",
                    Kind::Invoice => "invoiceId",
                };
                return Ok(rows
                    .into_iter()
                    .map(|r| {
                        let mut event = serde_json::json!({
                            "eventType": r.event_type,
                            "eventDate": r.date.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            id_key: r.document_id,
                        });
                        if let Some(Value::Object(detail)) = r.detail {
                            event.as_object_mut().expect("an object").extend(detail);
                        }
                        event
                    })
                    .collect());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// One document, as this node holds it.
    pub async fn document(&self, kind: Kind, id: &str) -> Result<DocumentRow> {
        store::documents::get(self.pool(), kind, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no {} {id} on this node", kind.label())))
    }

    /// Documents of `kind` that `scope` sees, oldest first, optionally only those after `after`.
    pub async fn documents(
        &self,
        kind: Kind,
        after: Option<chrono::DateTime<chrono::Utc>>,
        max: i64,
        scope: Scope<'_>,
    ) -> Result<Vec<DocumentRow>> {
        store::documents::list(self.pool(), kind, after, max, scope.principal()).await
    }

    /// The documents of `kind` of one agreement, oldest first.
    pub async fn agreement_documents(&self, kind: Kind, agreement_id: &str) -> Result<Vec<DocumentRow>> {
        store::documents::of_agreement(self.pool(), kind, agreement_id).await
    }

    /// Handles a message from another node.
    pub async fn handle(&self, request: PaymentRequest) -> PaymentResponse {
        let PaymentRequest { message, signature } = request;
        let handled = match message.clone() {
            Message::Document { document } => self.on_document(document, &message, &signature).await,
            Message::Accepted { kind, document_id, total_amount_accepted } => {
                self.on_accepted(kind, &document_id, &total_amount_accepted, &message, &signature).await
            }
            Message::Rejected { kind, document_id, rejection } => {
                self.on_rejected(kind, &document_id, rejection, &message, &signature).await
            }
            Message::Cancelled { kind, document_id } => {
                self.on_cancelled(kind, &document_id, &message, &signature).await
            }
            Message::Paid { payment } => self.on_paid(payment, &message, &signature).await,
        };
        match handled {
            Ok(()) => PaymentResponse::Ack,
            Err(e @ (Error::Db(_) | Error::Unreachable(_))) => {
                tracing::warn!(error = %e, "a payment message could not be taken now");
                PaymentResponse::Error { message: e.to_string(), retry: true }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a payment message refused");
                PaymentResponse::Error { message: e.to_string(), retry: false }
            }
        }
    }

    /// Signs a message as this node.
    pub(crate) fn sign(&self, message: Message) -> Result<PaymentRequest> {
        let signature = agora_identity::sign_json(&self.inner.identity, &message)
            .map_err(|e| Error::Corrupt(format!("signing a payment message: {e}")))?;
        Ok(PaymentRequest { message, signature })
    }
}

/// Checks that `signature` over `message` is `signer`'s.
pub(crate) fn verify(message: &Message, signature: &str, signer: Address) -> Result<()> {
    agora_identity::verify_json(message, signature, signer)
        .map_err(|e| Error::BadInput(format!("payment message signature: {e}")))
}

/// A random id: 32 hex digits.
pub(crate) fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The time a new document gets.
pub(crate) fn timestamp() -> chrono::DateTime<chrono::Utc> {
    now_micros()
}
