//! Activities learn about agreements through [`agora_activity::Agreements`]; the node answers
//! from its market, so no crate reads another's tables.

use agora_activity::{Agreements, Error, Result};
use agora_identity::Address;
use agora_market::{Agreement, Market};
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

impl agora_payment::PaymentAgreements for MarketAgreements {
    fn agreement(&self, id: &str) -> BoxFuture<'_, agora_payment::Result<Option<Agreement>>> {
        let id = id.to_string();
        Box::pin(async move {
            match self.0.agreement(&id).await {
                Ok(agreement) => Ok(Some(agreement)),
                Err(agora_market::Error::NotFound(_)) => Ok(None),
                Err(agora_market::Error::Db(db)) => Err(agora_payment::Error::Db(db)),
                Err(other) => Err(agora_payment::Error::Unreachable(other.to_string())),
            }
        })
    }

    fn principal(&self, id: &str) -> BoxFuture<'_, agora_payment::Result<Option<String>>> {
        let id = id.to_string();
        Box::pin(async move {
            match self.0.agreement_principal(&id).await {
                Ok(principal) => Ok(Some(principal)),
                Err(agora_market::Error::NotFound(_)) => Ok(None),
                Err(agora_market::Error::Db(db)) => Err(agora_payment::Error::Db(db)),
                Err(other) => Err(agora_payment::Error::Unreachable(other.to_string())),
            }
        })
    }
}
