//! Allocations: money a requestor sets aside on a platform, which acceptances draw on. The table
//! never lets `spent` pass `total`; acceptances take what they need with a compare-and-set.

use crate::model::{Allocation, AllocationUpdate, NewAllocation, PlatformChoice, check_id, parse_amount};
use crate::service::new_id;
use crate::store::allocations as table;
use crate::{Error, Payments, Result, Scope};
use serde_json::{Value, json};

impl Payments {
    /// The platform a caller names, or the node's first.
    fn platform_of(&self, choice: Option<&PlatformChoice>) -> Result<String> {
        let known = || self.config().networks.iter().map(|n| n.platform()).collect::<Vec<_>>().join(", ");
        let name = match choice {
            None => self.config().networks.first().map(|n| n.platform()),
            Some(PlatformChoice::Name(name)) if name.is_empty() => {
                self.config().networks.first().map(|n| n.platform())
            }
            Some(PlatformChoice::Name(name)) => Some(name.clone()),
            Some(PlatformChoice::Parts { driver, network, token }) => self
                .config()
                .networks
                .iter()
                .find(|n| {
                    driver.as_deref().is_none_or(|d| d == n.driver())
                        && network.as_deref().is_none_or(|x| x == n.name)
                        && token.as_deref().is_none_or(|t| t.eq_ignore_ascii_case(&n.token_symbol))
                })
                .map(|n| n.platform()),
        };
        match name {
            Some(name) if self.config().network(&name).is_some() => Ok(name),
            Some(name) => {
                Err(Error::BadInput(format!("unknown payment platform {name}; this node has: {}", known())))
            }
            None => Err(Error::BadInput(format!("no payment platform matches; this node has: {}", known()))),
        }
    }

    /// `POST /allocations`, on behalf of `principal` (see [`Scope`]).
    pub async fn create_allocation(&self, new: NewAllocation, principal: &str) -> Result<Allocation> {
        let total = parse_amount("totalAmount", &new.total_amount).map_err(Error::BadInput)?;
        let platform = self.platform_of(new.payment_platform.as_ref())?;
        let address = match new.address.as_deref().filter(|a| !a.is_empty()) {
            None => self.me(),
            Some(a) => {
                let parsed = agora_identity::parse_address(a)
                    .map_err(|e| Error::BadInput(format!("address {a:?}: {e}")))?;
                if parsed != self.node_id() {
                    return Err(Error::BadInput(format!(
                        "address {a} is not this node's ({}): a node pays only from its own account",
                        self.me()
                    )));
                }
                self.me()
            }
        };
        let row = table::NewRow {
            id: &new_id(),
            platform: &platform,
            address: &address,
            total,
            timeout: new.timeout,
            make_deposit: new.make_deposit,
            principal,
        };
        table::insert(self.pool(), row).await
    }

    /// Allocations not released that `scope` sees, oldest first.
    pub async fn allocations(&self, scope: Scope<'_>) -> Result<Vec<Allocation>> {
        table::open(self.pool(), scope.principal()).await
    }

    pub async fn allocation(&self, id: &str) -> Result<Allocation> {
        check_id("allocationId", id)?;
        table::get_open(self.pool(), id).await?.ok_or_else(|| Error::NotFound(format!("no allocation {id}")))
    }

    /// An allocation an acceptance may draw on, locked for the rest of `tx`.
    pub(crate) async fn allocation_in(&self, tx: &mut sqlx::PgConnection, id: &str) -> Result<Allocation> {
        let (found, released) =
            table::get(tx, id).await?.ok_or_else(|| Error::BadInput(format!("no allocation {id}")))?;
        if released {
            return Err(Error::BadInput(format!("allocation {id} is released")));
        }
        if found.timeout.is_some_and(|t| t < chrono::Utc::now()) {
            return Err(Error::BadInput(format!("allocation {id} timed out")));
        }
        Ok(found)
    }

    /// `PUT /allocations/{id}`: a new total (never below what was spent) or timeout.
    pub async fn amend_allocation(&self, id: &str, update: AllocationUpdate) -> Result<Allocation> {
        let current = self.allocation(id).await?;
        let total = match &update.total_amount {
            Some(t) => parse_amount("totalAmount", t).map_err(Error::BadInput)?,
            None => current.total,
        };
        table::amend(self.pool(), id, total, update.timeout).await?.ok_or_else(|| {
            Error::BadInput(format!(
                "totalAmount {total} is below the {} allocation {id} already spent",
                current.spent
            ))
        })
    }

    /// `DELETE /allocations/{id}`: what is not spent is free again.
    pub async fn release_allocation(&self, id: &str) -> Result<()> {
        check_id("allocationId", id)?;
        match table::release(self.pool(), id).await? {
            None => Err(Error::NotFound(format!("no allocation {id}"))),
            Some(true) => Err(Error::Gone(format!("allocation {id} is already released"))),
            Some(false) => Ok(()),
        }
    }

    /// `GET /demandDecorations`: the properties and constraints a demand paid from these
    /// allocations carries.
    pub async fn demand_decorations(&self, ids: &[String]) -> Result<Value> {
        if ids.is_empty() {
            return Err(Error::BadInput("allocationIds names no allocation".into()));
        }
        let mut properties = Vec::new();
        let mut constraints = Vec::new();
        let mut platforms = std::collections::BTreeSet::new();
        for id in ids {
            let a = self.allocation(id).await.map_err(|e| match e {
                Error::NotFound(m) => Error::BadInput(m),
                other => other,
            })?;
            if platforms.insert(a.platform.clone()) {
                let key = agora_agreement::keys::platform_address(&a.platform);
                properties.push(json!({"key": key, "value": a.address}));
                constraints.push(format!("({key}=*)"));
            }
        }
        properties.push(json!({"key": PROTOCOL_VERSION_KEY, "value": PROTOCOL_VERSION}));
        constraints.push(format!("({PROTOCOL_VERSION_KEY}>1)"));
        Ok(json!({"properties": properties, "constraints": constraints}))
    }

    /// The accounts this node pays from (`requestorAccounts`) or is paid at (`providerAccounts`).
    pub fn accounts(&self, send: bool) -> Vec<Value> {
        self.config()
            .networks
            .iter()
            .map(|n| {
                json!({
                    "platform": n.platform(),
                    "address": self.me(),
                    "driver": n.driver(),
                    "network": n.name,
                    "token": n.token_symbol,
                    "send": send,
                    "receive": !send,
                })
            })
            .collect()
    }
}

/// Golem's payment protocol version property, which both sides state.
pub const PROTOCOL_VERSION_KEY: &str = "golem.com.payment.protocol.version";
/// The version agora speaks: Golem's current one.
pub const PROTOCOL_VERSION: u32 = 3;
