//! Node settings: a TOML file, `AGORA_*` environment variables and command-line flags. A flag
//! overrides its environment variable (clap reads both), which overrides the file, which
//! overrides the built-in default. Every key is documented in docs/src/configuration.md.

use crate::Error;
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7465";
/// Info for agora; sqlx reports every statement at info, which drowns the rest.
pub const DEFAULT_LOG: &str = "info,sqlx=warn";

/// The keys of `agora.toml`. Unknown keys are an error, so a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub api_addr: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub log: Option<String>,
    pub identity_password_file: Option<PathBuf>,
    pub postgres_bin_dir: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    pub peers: Option<Vec<String>>,
    pub mdns: Option<bool>,
    pub swarm_key_file: Option<PathBuf>,
    pub transfer_dirs: Option<Vec<PathBuf>>,
    pub ca_certs: Option<Vec<PathBuf>>,
    pub docker_socket: Option<String>,
    pub datasets: Option<Vec<DatasetConfig>>,
    pub max_blob_bytes: Option<u64>,
    pub blob_send_rate: Option<u64>,
    pub payment: Option<PaymentFileConfig>,
    /// The provider agent's presets and rules (`[provider]`), used with `--provider`.
    pub provider: Option<agora_agents::ProviderConfig>,
    /// Jobs the runner runs at once.
    pub max_jobs: Option<usize>,
    /// The database the job queue lives in, when several requestor nodes share it.
    pub jobs_database_url: Option<String>,
}

/// The `[payment]` table: how long accepted amounts wait to share a transaction, and the
/// networks this node pays and is paid on (`[[payment.networks]]`). Without networks, the node
/// has the dev network: anvil at `chain_rpc` (or 127.0.0.1:8545).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentFileConfig {
    pub batch_window_secs: Option<f64>,
    pub networks: Option<Vec<agora_payment::Network>>,
    pub embedded_chain: Option<bool>,
}

/// A `[[datasets]]` entry: a folder the provider offers to runs, read-only, by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub name: String,
    pub path: PathBuf,
    /// Hex SHA-256 of the folder's `h1:` directory hash (`agora results hash DIR --hex`).
    pub sha256: String,
}

/// Flags of `agora node run`, each with its environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct NodeArgs {
    /// TOML settings file.
    #[arg(long, env = "AGORA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// REST API listen address (port 0 picks a free port; the node records the one it got).
    #[arg(long, env = "AGORA_API_ADDR", value_name = "ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// PostgreSQL URL; without it the node runs a private cluster under its data dir.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log filter, in `tracing` syntax (e.g. `info,agora=debug`).
    #[arg(long, env = "AGORA_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// File holding the password of the default identity, when it is locked.
    #[arg(long, env = "AGORA_IDENTITY_PASSWORD_FILE", value_name = "FILE")]
    pub identity_password_file: Option<PathBuf>,
    /// Folder with PostgreSQL's `initdb`, `pg_ctl` and `postgres` for the embedded database.
    #[arg(long, env = "AGORA_POSTGRES_BIN_DIR", value_name = "DIR")]
    pub postgres_bin_dir: Option<PathBuf>,
    /// p2p listen address (repeatable; the variable takes a comma-separated list).
    #[arg(long, env = "AGORA_LISTEN", value_name = "MULTIADDR", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Bootstrap peer to dial (repeatable; the variable takes a comma-separated list).
    #[arg(long = "peer", env = "AGORA_PEERS", value_name = "MULTIADDR", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Find peers on the local network with mDNS.
    #[arg(long, env = "AGORA_MDNS")]
    pub mdns: bool,
    /// Pre-shared key file of a private network (pnet); only nodes with the same key connect.
    #[arg(long = "swarm-key", env = "AGORA_SWARM_KEY_FILE", value_name = "FILE")]
    pub swarm_key_file: Option<PathBuf>,

    /// A folder `file://` transfers may read from (repeatable).
    #[arg(long = "transfer-dir", env = "AGORA_TRANSFER_DIRS", value_delimiter = ',', value_name = "DIR")]
    pub transfer_dirs: Vec<PathBuf>,

    /// A PEM file of certificate authorities that `https://` transfers trust besides the
    /// system's (repeatable): a private registry's, say.
    #[arg(long = "ca-cert", env = "AGORA_CA_CERTS", value_delimiter = ',', value_name = "PEM")]
    pub ca_certs: Vec<PathBuf>,

    /// The Docker engine's socket, for container activities.
    #[arg(long = "docker-socket", env = "AGORA_DOCKER_SOCKET", value_name = "PATH")]
    pub docker_socket: Option<String>,

    /// The largest blob the node takes in, in bytes.
    #[arg(long = "max-blob-bytes", env = "AGORA_MAX_BLOB_BYTES", value_name = "BYTES")]
    pub max_blob_bytes: Option<u64>,

    /// The most bytes a second each blob stream sends to another node (unlimited if not set):
    /// for a node on a metered or shared link.
    #[arg(long = "blob-send-rate", env = "AGORA_BLOB_SEND_RATE", value_name = "BYTES")]
    pub blob_send_rate: Option<u64>,

    /// The dev network's JSON-RPC URL (anvil), when the settings name no payment networks.
    #[arg(long = "chain-rpc", env = "AGORA_CHAIN_RPC", value_name = "URL")]
    pub chain_rpc: Option<String>,

    /// Seconds accepted amounts wait to share one transaction.
    #[arg(long = "batch-window", env = "AGORA_BATCH_WINDOW", value_name = "SECS")]
    pub batch_window: Option<f64>,

    /// Start the dev network's chain (anvil, state in the data dir) with the node, unless one
    /// already answers at its RPC.
    #[arg(long = "embedded-chain", env = "AGORA_EMBEDDED_CHAIN")]
    pub embedded_chain: bool,

    /// Sell compute: run the provider agent, with the `[provider]` presets of the settings (one
    /// WASM preset when there are none).
    #[arg(long, env = "AGORA_PROVIDER")]
    pub provider: bool,

    /// Cheat, for demonstrations and tests of verification and payment only (such a provider is
    /// never paid what it cheats for): `alter` its runs' output, commit and `no-reveal`,
    /// `replay:<address>` another provider's commitment, `overcharge` its invoices a hundredfold,
    /// invoice `late-invoice` after the job runner stopped waiting, `alter-uploads`: upload
    /// changed outputs after committing to the true ones, or `inflate-usage` a hundredfold in its
    /// debit notes.
    #[arg(long = "dishonest", env = "AGORA_DISHONEST", value_name = "MODE")]
    pub dishonest: Option<agora_agents::Dishonesty>,

    /// Jobs the node's runner runs at once; more wait, queued [default: 8].
    #[arg(long = "max-jobs", env = "AGORA_MAX_JOBS", value_name = "N")]
    pub max_jobs: Option<usize>,

    /// A PostgreSQL database for the job queue, shared by several requestor nodes (each with its
    /// own identity and its own database for the rest); the node's own database when unset.
    #[arg(
        long = "jobs-database-url",
        env = "AGORA_JOBS_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub jobs_database_url: Option<String>,
}

/// Where the node's database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A server the operator runs.
    External(String),
    /// A private cluster under the data dir, from the system's server binaries.
    Embedded { bin_dir: Option<PathBuf> },
}

/// The resolved settings of a node.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub database: Database,
    pub log: String,
    pub identity_password_file: Option<PathBuf>,
    pub net: agora_net::NetConfig,
    pub activity: ActivitySettings,
    pub payment: agora_payment::PaymentConfig,
    /// The RPC of the dev chain the node starts itself, if it does.
    pub embedded_chain: Option<String>,
    /// The provider agent's settings, when the node sells compute.
    pub provider: Option<agora_agents::ProviderConfig>,
    /// How the provider cheats (`--dishonest`), for demonstrations and tests only.
    pub dishonesty: Option<agora_agents::Dishonesty>,
    /// Jobs run at once.
    pub max_jobs: usize,
    /// The shared job queue's database, if not the node's own.
    pub jobs_database_url: Option<String>,
}

/// What the node allows activities it hosts.
#[derive(Debug, Clone, Default)]
pub struct ActivitySettings {
    pub transfer_dirs: Vec<PathBuf>,
    /// Certificate authorities `https://` transfers trust besides the system's.
    pub ca_certs: Vec<PathBuf>,
    pub docker_socket: Option<String>,
    pub datasets: Vec<agora_activity::Dataset>,
    /// The largest blob the node takes in.
    pub max_blob_bytes: u64,
    /// The most bytes a second one blob stream sends.
    pub blob_send_rate: Option<u64>,
    /// Alter runs' stdout (`--dishonest alter`).
    pub alter_outputs: bool,
    /// Alter outputs as they are uploaded (`--dishonest alter-uploads`).
    pub alter_uploads: bool,
}

/// Checks each dataset folder against its configured digest.
fn datasets(configured: Vec<DatasetConfig>) -> Result<Vec<agora_activity::Dataset>, Error> {
    let mut names = std::collections::BTreeSet::new();
    configured
        .into_iter()
        .map(|d| {
            if !names.insert(d.name.clone()) || d.name.is_empty() || d.name.contains('/') {
                return Err(Error::Config(format!(
                    "datasets: name '{}' is empty, has a '/' or is used twice",
                    d.name
                )));
            }
            let digest = agora_activity::folder_sha256(&d.path)
                .map_err(|e| Error::Config(format!("datasets '{}' at {}: {e}", d.name, d.path.display())))?;
            if digest != d.sha256.to_ascii_lowercase() {
                return Err(Error::Config(format!(
                    "datasets '{}': sha256 is {} in the settings but {} hashes to {digest}",
                    d.name,
                    d.sha256,
                    d.path.display()
                )));
            }
            Ok(agora_activity::Dataset { name: d.name, path: d.path, sha256: digest })
        })
        .collect()
}

/// The p2p listen address when none is given: every interface, a fixed port.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/7464";

fn multiaddrs(key: &str, texts: Vec<String>) -> Result<Vec<agora_net::Multiaddr>, Error> {
    texts
        .into_iter()
        .map(|t| {
            t.trim().parse().map_err(|e| {
                Error::Config(format!("{key}: '{t}' is not a multiaddr ({e}), e.g. /ip4/127.0.0.1/tcp/7464"))
            })
        })
        .collect()
}

fn net_config(args: &NodeArgs, file: &FileConfig) -> Result<agora_net::NetConfig, Error> {
    let pick = |flag: &Vec<String>, file: &Option<Vec<String>>| {
        if flag.is_empty() { file.clone().unwrap_or_default() } else { flag.clone() }
    };
    let mut listen = pick(&args.listen, &file.listen);
    if listen.is_empty() && file.listen.is_none() {
        listen.push(DEFAULT_LISTEN.into());
    }
    let swarm_key = match args.swarm_key_file.clone().or(file.swarm_key_file.clone()) {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Config(format!("swarm_key_file {}: {e}", path.display())))?;
            Some(
                agora_net::read_swarm_key(&text)
                    .map_err(|e| Error::Config(format!("swarm_key_file {}: {e}", path.display())))?,
            )
        }
    };
    Ok(agora_net::NetConfig {
        listen: multiaddrs("listen", listen)?,
        peers: multiaddrs("peer", pick(&args.peers, &file.peers))?,
        mdns: args.mdns || file.mdns.unwrap_or(false),
        swarm_key,
        topics: Vec::new(),
    })
}

/// How long accepted amounts wait for others to share their transaction, unless told.
pub const DEFAULT_BATCH_WINDOW_SECS: f64 = 2.0;

fn embedded_chain(args: &NodeArgs, file: Option<&PaymentFileConfig>) -> Result<Option<String>, Error> {
    if !(args.embedded_chain || file.and_then(|f| f.embedded_chain).unwrap_or(false)) {
        return Ok(None);
    }
    if file.and_then(|f| f.networks.as_ref()).is_some_and(|n| !n.is_empty()) {
        return Err(Error::Config(
            "embedded_chain runs the dev network's chain; it cannot go with [[payment.networks]]".into(),
        ));
    }
    Ok(Some(non_empty(args.chain_rpc.clone()).unwrap_or_else(|| agora_payment::DEV_RPC_URL.into())))
}

fn payment_config(args: &NodeArgs, file: PaymentFileConfig) -> Result<agora_payment::PaymentConfig, Error> {
    let window = args.batch_window.or(file.batch_window_secs).unwrap_or(DEFAULT_BATCH_WINDOW_SECS);
    if !(window.is_finite() && (0.0..=3600.0).contains(&window)) {
        return Err(Error::Config(format!("batch_window_secs {window}: give 0 to 3600 seconds")));
    }
    let networks = match file.networks {
        Some(networks) if !networks.is_empty() => {
            if args.chain_rpc.is_some() {
                return Err(Error::Config(
                    "chain_rpc sets the dev network's RPC; with [[payment.networks]], give rpc_urls there"
                        .into(),
                ));
            }
            networks
        }
        _ => vec![agora_payment::Network::dev(
            non_empty(args.chain_rpc.clone()).unwrap_or_else(|| agora_payment::DEV_RPC_URL.into()),
        )],
    };
    let config =
        agora_payment::PaymentConfig { networks, batch_window: std::time::Duration::from_secs_f64(window) };
    config.check().map_err(|e| Error::Config(format!("payment: {e}")))?;
    Ok(config)
}

/// The data dir when none is given: `/var/lib/agora` for root (a system daemon), else
/// `$XDG_DATA_HOME/agora` or `~/.local/share/agora`.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::Uid::effective().is_root() {
        return PathBuf::from("/var/lib/agora");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("agora");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/agora")
}

/// The provider agent's settings with `--provider`; `[provider]` without the flag is an error,
/// so an operator does not believe the node sells compute when it does not.
fn provider_config(
    flag: bool,
    file: Option<agora_agents::ProviderConfig>,
) -> Result<Option<agora_agents::ProviderConfig>, Error> {
    let config = match (flag, file) {
        (false, None) => return Ok(None),
        (false, Some(_)) => {
            return Err(Error::Config(
                "[provider] is set but the node does not sell compute: start it with --provider".into(),
            ));
        }
        (true, file) => file.unwrap_or_default(),
    };
    if config.presets.is_empty() {
        return Err(Error::Config("[provider] presets: none; give at least one [[provider.presets]]".into()));
    }
    let mut names = std::collections::BTreeSet::new();
    for preset in &config.presets {
        if !names.insert(preset.name.as_str()) {
            return Err(Error::Config(format!("[[provider.presets]] name '{}' is used twice", preset.name)));
        }
        if !matches!(preset.runtime.as_str(), "wasmtime" | "docker") {
            return Err(Error::Config(format!(
                "[[provider.presets]] '{}': runtime '{}' is not wasmtime or docker",
                preset.name, preset.runtime
            )));
        }
        let prices = [preset.per_duration_sec, preset.per_cpu_sec, preset.per_fuel, preset.start];
        if prices.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return Err(Error::Config(format!(
                "[[provider.presets]] '{}': prices must be numbers ≥ 0",
                preset.name
            )));
        }
    }
    if config.max_agreements == 0 {
        return Err(Error::Config("[provider] max_agreements: at least 1".into()));
    }
    Ok(Some(config))
}

/// Reads and checks a settings file.
pub fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Merges flags (and their environment variables) over the file over the defaults.
    /// `data_dir` is the global `--data-dir` / `AGORA_DATA_DIR`.
    pub fn resolve(args: &NodeArgs, data_dir: Option<PathBuf>) -> Result<Self, Error> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let net = net_config(args, &file)?;
        let data_dir = data_dir.or(file.data_dir).unwrap_or_else(default_data_dir);
        let api_addr = match args.api_addr.or(file.api_addr) {
            Some(addr) => addr,
            // A constant that parses; checked by a unit test.
            None => DEFAULT_API_ADDR.parse().expect("default API address"),
        };
        let postgres_url = |key: &str, url: String| {
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Ok(url)
            } else {
                Err(Error::Config(format!(
                    "{key} must start with postgres:// or postgresql://, got '{}'",
                    crate::redact_url(&url)
                )))
            }
        };
        let jobs_database_url = non_empty(args.jobs_database_url.clone())
            .or(non_empty(file.jobs_database_url))
            .map(|url| postgres_url("jobs_database_url", url))
            .transpose()?;
        let database = match non_empty(args.database_url.clone()).or(non_empty(file.database_url)) {
            Some(url) => Database::External(postgres_url("database_url", url)?),
            None => Database::Embedded { bin_dir: args.postgres_bin_dir.clone().or(file.postgres_bin_dir) },
        };
        let log = non_empty(args.log.clone()).or(file.log).unwrap_or_else(|| DEFAULT_LOG.into());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| Error::Config(format!("log filter '{log}': {e}")))?;
        Ok(Self {
            data_dir,
            api_addr,
            database,
            log,
            identity_password_file: args.identity_password_file.clone().or(file.identity_password_file),
            net,
            activity: ActivitySettings {
                transfer_dirs: if args.transfer_dirs.is_empty() {
                    file.transfer_dirs.unwrap_or_default()
                } else {
                    args.transfer_dirs.clone()
                },
                ca_certs: if args.ca_certs.is_empty() {
                    file.ca_certs.unwrap_or_default()
                } else {
                    args.ca_certs.clone()
                },
                docker_socket: non_empty(args.docker_socket.clone()).or(file.docker_socket),
                datasets: datasets(file.datasets.unwrap_or_default())?,
                max_blob_bytes: args
                    .max_blob_bytes
                    .or(file.max_blob_bytes)
                    .unwrap_or(agora_activity::blobs::DEFAULT_MAX_BLOB),
                blob_send_rate: args.blob_send_rate.or(file.blob_send_rate).filter(|rate| *rate > 0),
                alter_outputs: args.dishonest == Some(agora_agents::Dishonesty::Alter),
                alter_uploads: args.dishonest == Some(agora_agents::Dishonesty::AlterUploads),
            },
            provider: provider_config(args.provider, file.provider)?,
            dishonesty: args.dishonest,
            max_jobs: match args.max_jobs.or(file.max_jobs) {
                Some(0) => return Err(Error::Config("max_jobs: at least 1".into())),
                Some(n) => n,
                None => agora_agents::runner::DEFAULT_MAX_RUNNING,
            },
            jobs_database_url,
            embedded_chain: embedded_chain(args, file.payment.as_ref())?,
            payment: payment_config(args, file.payment.unwrap_or_default())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agora.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let (_d, path) = write("api_addr = \"127.0.0.1:9000\"\nlog = \"debug\"\ndata_dir = \"/srv/a\"\n");
        let args = NodeArgs { config: Some(path.clone()), ..Default::default() };
        let s = Settings::resolve(&args, None).unwrap();
        assert_eq!(s.api_addr.port(), 9000);
        assert_eq!(s.log, "debug");
        assert_eq!(s.data_dir, PathBuf::from("/srv/a"));
        assert!(matches!(s.database, Database::Embedded { bin_dir: None }));

        let args = NodeArgs {
            config: Some(path),
            api_addr: Some("127.0.0.1:9001".parse().unwrap()),
            database_url: Some("postgres://u@127.0.0.1/db".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&args, Some("/srv/b".into())).unwrap();
        assert_eq!(s.api_addr.port(), 9001);
        assert_eq!(s.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(s.database, Database::External("postgres://u@127.0.0.1/db".into()));
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let s = Settings::resolve(&NodeArgs::default(), None).unwrap();
        assert_eq!(s.api_addr.to_string(), DEFAULT_API_ADDR);
        assert_eq!(s.log, DEFAULT_LOG);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let (_d, path) = write("api_adr = \"127.0.0.1:1\"\n");
        let args = NodeArgs { config: Some(path), ..Default::default() };
        let err = Settings::resolve(&args, None).unwrap_err().to_string();
        assert!(err.contains("unknown field `api_adr`"), "{err}");
        assert!(err.contains("line 1"), "{err}");

        let (_d, path) = write("api_addr = \"nowhere\"\n");
        let args = NodeArgs { config: Some(path), ..Default::default() };
        let err = Settings::resolve(&args, None).unwrap_err().to_string();
        assert!(err.contains("api_addr") || err.contains("socket address"), "{err}");

        let args = NodeArgs { database_url: Some("mysql://x".into()), ..Default::default() };
        let err = Settings::resolve(&args, None).unwrap_err().to_string();
        assert!(err.contains("postgres://"), "{err}");

        let args = NodeArgs { config: Some("/nonexistent/agora.toml".into()), ..Default::default() };
        assert!(Settings::resolve(&args, None).unwrap_err().to_string().contains("cannot read"));
    }
}
