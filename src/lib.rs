//! The agora node: the daemon that holds a node's identities and database and serves its REST
//! API, and the command-line interface that manages a running node.
//!
//! This crate wires the domain crates together; it holds no market, activity or payment logic of
//! its own. Parts:
//! - [`config`]: settings from a TOML file, `AGORA_*` variables and flags.
//! - [`postgres`]: private PostgreSQL clusters from the system's server binaries.
//! - [`datadir`]: the node's data dir, its lock, and the file that tells the CLI where the node is.
//! - [`node`]: start-up, serving and graceful shutdown; [`agreements`]: what activities learn of
//!   agreements, answered by the market.
//! - [`api`]: the axum router (`fn app(state) -> Router`), authentication and metrics.
//! - [`client`] and [`cli`]: the `agora` commands that talk to a running node.
//!
//! ```
//! let settings = agora::config::Settings::resolve(&Default::default(), Some("/tmp/n1".into()))
//!     .unwrap();
//! assert_eq!(settings.api_addr.to_string(), agora::config::DEFAULT_API_ADDR);
//! ```

mod activity_cli;
pub mod agreements;
pub mod api;
pub mod chain;
pub mod cli;
pub mod client;
pub mod config;
pub mod datadir;
mod devnet;
mod error;
mod gftp;
mod job_cli;
mod market_cli;
mod matching;
pub mod node;
mod output;
mod payment_cli;
pub mod postgres;
mod store;

pub use error::{Error, redact_url};
