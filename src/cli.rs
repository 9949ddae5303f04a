//! The `agora` command line: `node run` starts a node; the other commands manage a running node
//! through its REST API.

use crate::activity_cli::{ActivityCommand, BlobCommand};
use crate::client::{Client, segment};
use crate::config::{NodeArgs, Settings, default_data_dir};
use crate::market_cli::MarketCommand;
use crate::output::{json, table, yes_no};
use crate::{Error, node};
use agora_identity::{AppKey, IdentityInfo};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::io::BufRead;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "agora", version, about = "agora: a peer-to-peer compute marketplace node")]
pub struct Cli {
    /// The node's data dir [default: /var/lib/agora for root, else ~/.local/share/agora].
    #[arg(long, global = true, env = "AGORA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage the node's identities.
    #[command(subcommand)]
    Id(IdCommand),
    /// Manage app-keys, the bearer tokens of REST clients.
    #[command(subcommand, name = "app-key")]
    AppKey(AppKeyCommand),
    /// Work with results folders.
    #[command(subcommand)]
    Results(ResultsCommand),
    /// Check constraint expressions.
    #[command(subcommand)]
    Constraints(ConstraintsCommand),
    /// Market tools.
    #[command(subcommand)]
    Market(MarketCommand),
    /// The peer-to-peer network.
    #[command(subcommand)]
    Net(NetCommand),
    /// Activities on providers, as their requestor.
    #[command(subcommand)]
    Activity(ActivityCommand),
    /// The node's content-addressed blobs: inputs to send, outputs fetched back.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// Payments: the account, debit notes, invoices and payments.
    #[command(subcommand)]
    Payment(crate::payment_cli::PaymentCommand),
    /// Jobs run on several providers, verified, and paid only where verified.
    #[command(subcommand)]
    Job(crate::job_cli::JobCommand),
    /// A private network on this machine: a dev chain, a requestor and providers.
    #[command(subcommand)]
    Devnet(crate::devnet::DevnetCommand),
    /// Golem's file service for its SDKs (yapapi starts it as `gftp server`; a link to this
    /// binary named `gftp` runs it so).
    #[command(subcommand)]
    Gftp(GftpCommand),
    /// Print the OpenAPI 3.1 document of the node's REST API (what `GET /openapi.json` serves).
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum GftpCommand {
    /// Serve JSON-RPC on stdin and stdout: files published become the node's blobs, and files
    /// received are written by the node. The node is YAGNA_API_URL's with YAGNA_APPKEY when that
    /// is set, else the data dir's.
    Server,
}

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// This node's peer id, listen addresses and connected peers.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConstraintsCommand {
    /// Print the canonical form of a constraint, or where it is wrong.
    Check { expr: String },
}

#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// Print the `h1:` hash of a results folder, the value providers propose for verification.
    Hash {
        dir: PathBuf,
        /// The same digest in hex, as a dataset's `sha256` in the settings.
        #[arg(long)]
        hex: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Start the node and serve until SIGINT or SIGTERM.
    Run(Box<NodeArgs>),
}

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Show one identity (the default when none is named).
    Show {
        /// Address or alias.
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create an identity.
    Create {
        #[arg(long)]
        alias: Option<String>,
        /// Read a password from standard input and lock the new identity with it.
        #[arg(long)]
        password_stdin: bool,
        /// Make it the default identity.
        #[arg(long)]
        default: bool,
        #[arg(long)]
        json: bool,
    },
    /// List identities.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a password on an identity (read from standard input); it must be unlocked to be used.
    Lock { id: Option<String> },
    /// Unlock an identity until the node stops (password read from standard input).
    Unlock { id: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum AppKeyCommand {
    /// Create an app-key and print it alone on standard output.
    Create {
        name: String,
        /// Address or alias of the identity the key acts as [default: the default identity].
        #[arg(long)]
        identity: Option<String>,
        #[arg(long, default_value = "manager")]
        role: String,
    },
    /// List app-keys (names only: keys are stored hashed and cannot be shown again).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an app-key; requests with it are refused from then on.
    Drop { name: String },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let data_dir = cli.data_dir.clone().filter(|p| !p.as_os_str().is_empty());
    match cli.command {
        Command::Node(NodeCommand::Run(args)) => run_node(&args, data_dir).await,
        Command::Id(cmd) => id(cmd, &client(data_dir)?).await,
        Command::AppKey(cmd) => app_key(cmd, &client(data_dir)?).await,
        Command::Net(NetCommand::Status { json: as_json }) => {
            let status: agora_net::NetStatus = client(data_dir)?.get("/net-api/v1/status").await?;
            if as_json {
                json(&status);
            } else {
                println!("peer id: {}", status.peer_id);
                let rows: Vec<Vec<String>> = status
                    .listen
                    .iter()
                    .map(|a| vec!["listen".to_string(), a.clone()])
                    .chain(status.peers.iter().map(|p| vec!["peer".to_string(), p.clone()]))
                    .collect();
                table(&["KIND", "ADDRESS / PEER ID"], &rows);
            }
            Ok(())
        }
        Command::Constraints(ConstraintsCommand::Check { expr }) => {
            let parsed = agora_grammar::parse(&expr).map_err(|e| Error::Input(e.to_string()))?;
            println!("{parsed}");
            Ok(())
        }
        Command::Market(MarketCommand::Match { offer, demand, json }) => {
            crate::matching::run(&offer, &demand, json)
        }
        Command::Market(cmd) => crate::market_cli::run(cmd, &client(data_dir)?).await,
        Command::Activity(cmd) => crate::activity_cli::activity(cmd, &client(data_dir)?).await,
        Command::Blob(cmd) => crate::activity_cli::blob(cmd, &client(data_dir)?).await,
        Command::Payment(cmd) => crate::payment_cli::run(cmd, &client(data_dir)?).await,
        Command::Job(cmd) => crate::job_cli::run(cmd, &client(data_dir)?).await,
        Command::Devnet(cmd) => crate::devnet::run(cmd).await,
        Command::Gftp(GftpCommand::Server) => {
            crate::gftp::serve(crate::gftp::client(|| client(data_dir))).await
        }
        Command::Openapi => {
            println!("{}", crate::api::openapi_text());
            Ok(())
        }
        Command::Results(ResultsCommand::Hash { dir, hex }) => {
            let hash =
                if hex { agora_activity::folder_sha256(&dir) } else { agora_activity::results_hash(&dir) }
                    .map_err(|e| Error::Input(e.to_string()))?;
            println!("{hash}");
            Ok(())
        }
    }
}

fn client(data_dir: Option<PathBuf>) -> Result<Client, Error> {
    Client::for_data_dir(&data_dir.unwrap_or_else(default_data_dir))
}

async fn run_node(args: &NodeArgs, data_dir: Option<PathBuf>) -> Result<(), Error> {
    let settings = Settings::resolve(args, data_dir)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .map_err(|e| Error::Config(format!("log filter: {e}")))?;
    // A second subscriber can only be installed by a caller that set one up already; keep theirs.
    let _already_set =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        on_signal.cancel();
    });
    node::run(settings, shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the node");
            let _ignored = tokio::signal::ctrl_c().await;
        }
    }
}

fn id_path(id: &Option<String>) -> String {
    format!("/admin/v1/identities/{}", segment(id.as_deref().unwrap_or("default")))
}

fn read_password() -> Result<String, Error> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(Error::Config("no password on standard input (give it as one line)".into()));
    }
    Ok(password)
}

fn identity_rows(ids: &[IdentityInfo]) {
    let rows: Vec<Vec<String>> = ids
        .iter()
        .map(|i| {
            vec![
                i.address.clone(),
                i.alias.clone().unwrap_or_default(),
                yes_no(i.is_default),
                yes_no(i.locked),
                yes_no(i.unlocked),
            ]
        })
        .collect();
    table(&["ADDRESS", "ALIAS", "DEFAULT", "LOCKED", "UNLOCKED"], &rows);
}

fn show_identity(info: &IdentityInfo, as_json: bool) {
    if as_json {
        json(info);
        return;
    }
    println!("address:  {}", info.address);
    println!("alias:    {}", info.alias.as_deref().unwrap_or("-"));
    println!("default:  {}", yes_no(info.is_default));
    println!("locked:   {}", yes_no(info.locked));
    println!("unlocked: {}", yes_no(info.unlocked));
    println!("peer id:  {}", info.peer_id.as_deref().unwrap_or("- (unlock to derive)"));
}

async fn id(cmd: IdCommand, client: &Client) -> Result<(), Error> {
    match cmd {
        IdCommand::Show { id, json } => show_identity(&client.get(&id_path(&id)).await?, json),
        IdCommand::Create { alias, password_stdin, default, json } => {
            let password = if password_stdin { Some(read_password()?) } else { None };
            let body = json!({"alias": alias, "password": password, "default": default});
            show_identity(&client.post("/admin/v1/identities", &body).await?, json);
        }
        IdCommand::List { json: as_json } => {
            let ids: Vec<IdentityInfo> = client.get("/admin/v1/identities").await?;
            if as_json { json(&ids) } else { identity_rows(&ids) }
        }
        IdCommand::Lock { id } => {
            let info = password_action(client, &id, "lock").await?;
            eprintln!("locked {}", info.address);
        }
        IdCommand::Unlock { id } => {
            let info = password_action(client, &id, "unlock").await?;
            eprintln!("unlocked {} until the node stops", info.address);
        }
    }
    Ok(())
}

/// `lock` or `unlock` an identity with a password read from standard input.
async fn password_action(client: &Client, id: &Option<String>, action: &str) -> Result<IdentityInfo, Error> {
    let body = json!({"password": read_password()?});
    client.post(&format!("{}/{action}", id_path(id)), &body).await
}

async fn app_key(cmd: AppKeyCommand, client: &Client) -> Result<(), Error> {
    match cmd {
        AppKeyCommand::Create { name, identity, role } => {
            let body = json!({"name": name, "identity": identity, "role": role});
            let created: serde_json::Value = client.post("/admin/v1/app-keys", &body).await?;
            let key = created
                .get("key")
                .and_then(|k| k.as_str())
                .ok_or_else(|| Error::Http("no key in the answer".into()))?;
            println!("{key}");
        }
        AppKeyCommand::List { json: as_json } => {
            let keys: Vec<AppKey> = client.get("/admin/v1/app-keys").await?;
            if as_json {
                json(&keys);
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            k.identity.to_checksum(None),
                            k.role.clone(),
                            k.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "IDENTITY", "ROLE", "CREATED"], &rows);
            }
        }
        AppKeyCommand::Drop { name } => {
            client.delete(&format!("/admin/v1/app-keys/{}", segment(&name))).await?;
            eprintln!("dropped app-key {name}");
        }
    }
    Ok(())
}
