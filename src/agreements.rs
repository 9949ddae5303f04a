//! Activities learn about agreements through [`agora_activity::Agreements`], and payments about
//! agreements and activities through [`agora_payment::PaymentAgreements`]; the node answers from
//! its market and activities, so no crate reads another's tables.

use agora_activity::{Agreements, Error, Result};
use agora_agreement::Agreement;
use agora_identity::Address;
use agora_market::Market;
use futures_util::future::BoxFuture;

/// The market, as activities see it.
#[derive(Debug, Clone)]
pub struct MarketAgreements(pub Market);

fn unavailable(e: agora_market::Error) -> Error {
    match e {
        // The database is the market's and the activities' alike: say it as such, so a
        // connection failure reads as one.
        agora_market::Error::Db(db) => Error::Db(db),
        other => Error::Agreements(other.to_string()),
    }
}

impl Agreements for MarketAgreements {
    fn agreement(&self, id: &str) -> BoxFuture<'_, Result<Option<Agreement>>> {
        let id = id.to_string();
        Box::pin(async move {
            match self.0.agreement(&id).await {
                Ok(agreement) => Ok(Some(agreement)),
                Err(agora_market::Error::NotFound(_)) => Ok(None),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn approved_with(&self, party: Address) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move { self.0.approved_with(party).await.map_err(unavailable) })
    }
}

/// A market answer as payments take it: an agreement the market does not have is `None`.
fn found<T>(answer: agora_market::Result<T>) -> agora_payment::Result<Option<T>> {
    match answer {
        Ok(found) => Ok(Some(found)),
        Err(agora_market::Error::NotFound(_)) => Ok(None),
        Err(agora_market::Error::Db(db)) => Err(agora_payment::Error::Db(db)),
        Err(other) => Err(agora_payment::Error::Unreachable(other.to_string())),
    }
}

/// The market and the activities, as payments see them.
#[derive(Debug, Clone)]
pub struct PaymentLookups {
    pub market: Market,
    pub activities: agora_activity::Activities,
}

impl agora_payment::PaymentAgreements for PaymentLookups {
    fn agreement(&self, id: &str) -> BoxFuture<'_, agora_payment::Result<Option<Agreement>>> {
        let id = id.to_string();
        Box::pin(async move { found(self.market.agreement(&id).await) })
    }

    fn principal(&self, id: &str) -> BoxFuture<'_, agora_payment::Result<Option<String>>> {
        let id = id.to_string();
        Box::pin(async move { found(self.market.agreement_principal(&id).await) })
    }

    fn activity_agreement(&self, activity_id: &str) -> BoxFuture<'_, agora_payment::Result<Option<String>>> {
        let id = activity_id.to_string();
        Box::pin(async move {
            self.activities.agreement_of(&id).await.map_err(|e| match e {
                agora_activity::Error::Db(db) => agora_payment::Error::Db(db),
                other => agora_payment::Error::Unreachable(other.to_string()),
            })
        })
    }
}
