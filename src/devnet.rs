//! `agora devnet up|status|down`: a private network on this machine, on loopback only: a dev
//! chain (anvil, started by the requestor node), a requestor node with a funded account, and
//! provider nodes selling WASM compute, each on its own embedded PostgreSQL. `up` leaves them
//! running in the background; `down` stops them all and removes the folder.

use crate::Error;
use crate::client::Client;
use crate::output::{json, table};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Start a chain, a requestor and provider nodes in DIR, and leave them running.
    Up {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Provider nodes.
        #[arg(long, default_value_t = 3)]
        providers: usize,
        /// Of which this many alter their outputs, as dishonest providers would.
        #[arg(long, default_value_t = 0)]
        dishonest: usize,
        #[arg(long)]
        json: bool,
    },
    /// The devnet's nodes, their addresses and token balances.
    Status {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Stop every node of the devnet (and its chain) and remove DIR.
    Down {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// What `up` records in `DIR/devnet.json` for `status` and `down`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Devnet {
    chain_rpc: String,
    nodes: Vec<DevnetNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DevnetNode {
    name: String,
    role: String,
    dishonest: bool,
    data_dir: PathBuf,
    pid: u32,
}

const RECORD: &str = "devnet.json";
/// How long a node may take to come up (its first start creates a database cluster).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `down` waits for a node to stop before it kills it.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn default_dir() -> PathBuf {
    crate::config::default_data_dir().with_file_name("agora-devnet")
}

fn alive(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    nix::sys::signal::kill(pid, None).is_ok()
}

fn read_record(dir: &Path) -> Result<Devnet, Error> {
    let text = std::fs::read_to_string(dir.join(RECORD)).map_err(|_| {
        Error::Input(format!("no devnet in {}; start one with `agora devnet up`", dir.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: {e}", dir.join(RECORD).display())))
}

/// Starts `agora node run` for one node in its own process group, so it outlives this command.
fn spawn_node(dir: &Path, name: &str, args: &[String]) -> Result<(PathBuf, u32), Error> {
    let data_dir = dir.join(name);
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["node", "run", "--api-addr", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()?;
    Ok((data_dir, child.id()))
}

async fn wait_up(dir: &Path, name: &str, data_dir: &Path, pid: u32) -> Result<Client, Error> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(client) = Client::for_data_dir(data_dir)
            && client.get::<Value>("/net-api/v1/status").await.is_ok()
        {
            return Ok(client);
        }
        if !alive(pid) || tokio::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            return Err(Error::Input(format!(
                "node {name} did not start; the end of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn p2p_address(client: &Client) -> Result<String, Error> {
    let status: agora_net::NetStatus = client.get("/net-api/v1/status").await?;
    let listen = status.listen.first().ok_or_else(|| Error::Http("the node listens nowhere".into()))?;
    Ok(format!("{listen}/p2p/{}", status.peer_id))
}

pub async fn run(cmd: DevnetCommand) -> Result<(), Error> {
    match cmd {
        DevnetCommand::Up { dir, providers, dishonest, json: as_json } => {
            let dir = dir.unwrap_or_else(default_dir);
            if dishonest > providers {
                return Err(Error::Input(format!(
                    "--dishonest {dishonest} is more than --providers {providers}"
                )));
            }
            if let Ok(record) = read_record(&dir)
                && record.nodes.iter().any(|n| alive(n.pid))
            {
                return Err(Error::Input(format!(
                    "a devnet is already up in {}; stop it with `agora devnet down --dir {0}`",
                    dir.display()
                )));
            }
            let _stale = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            // The embedded PostgreSQL of a root-run node runs as `postgres`, which must be able to
            // traverse into the data dirs.
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
            let brought_up = up(&dir, providers, dishonest).await;
            let record = match brought_up {
                Ok(record) => record,
                Err(e) => {
                    // Nothing half-started is left behind.
                    if let Ok(record) = read_record(&dir) {
                        stop_all(&record).await;
                    }
                    let _removed = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            let rows = status_rows(&record).await;
            if as_json {
                json(&serde_json::json!({"dir": dir, "chainRpc": record.chain_rpc, "nodes": rows}));
            } else {
                show(&rows);
                let requestor = dir.join("requestor");
                println!();
                println!("the devnet is up in {} (chain at {})", dir.display(), record.chain_rpc);
                println!("drive the requestor with the CLI:");
                println!("    export AGORA_DATA_DIR={}", requestor.display());
                println!("    agora job run tests/wasm/hello.wasm --entry-point hello --wait");
                println!("or with a Golem SDK script (yapapi):");
                println!("    export YAGNA_API_URL={}", Client::for_data_dir(&requestor)?.base());
                println!(
                    "    export YAGNA_APPKEY=$(agora --data-dir {} app-key create sdk)",
                    requestor.display()
                );
                println!("    export YAGNA_PAYMENT_DRIVER=erc20 YAGNA_PAYMENT_NETWORK=dev");
                println!("stop it with: agora devnet down --dir {}", dir.display());
            }
            Ok(())
        }
        DevnetCommand::Status { dir, json: as_json } => {
            let record = read_record(&dir.unwrap_or_else(default_dir))?;
            let rows = status_rows(&record).await;
            if as_json {
                json(&rows)
            } else {
                show(&rows)
            }
            Ok(())
        }
        DevnetCommand::Down { dir } => {
            let dir = dir.unwrap_or_else(default_dir);
            let record = read_record(&dir)?;
            stop_all(&record).await;
            std::fs::remove_dir_all(&dir)?;
            eprintln!("the devnet in {} is down", dir.display());
            Ok(())
        }
    }
}

async fn up(dir: &Path, providers: usize, dishonest: usize) -> Result<Devnet, Error> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let chain_rpc = format!("http://127.0.0.1:{port}");
    let mut record = Devnet { chain_rpc: chain_rpc.clone(), nodes: Vec::new() };
    let save =
        |record: &Devnet| std::fs::write(dir.join(RECORD), serde_json::to_vec_pretty(record).expect("JSON"));

    eprintln!("==> starting the requestor node and the dev chain");
    let args: Vec<String> =
        ["--embedded-chain", "--chain-rpc", &chain_rpc, "--batch-window", "0"].map(String::from).to_vec();
    let (data_dir, pid) = spawn_node(dir, "requestor", &args)?;
    record.nodes.push(DevnetNode {
        name: "requestor".into(),
        role: "requestor".into(),
        dishonest: false,
        data_dir,
        pid,
    });
    save(&record)?;
    let requestor = wait_up(dir, "requestor", &dir.join("requestor"), pid).await?;
    let requestor_p2p = p2p_address(&requestor).await?;

    eprintln!("==> starting {providers} provider nodes ({dishonest} dishonest)");
    let mut started = Vec::new();
    for i in 0..providers {
        let name = format!("provider-{}", i + 1);
        let bad = i >= providers - dishonest;
        let mut args: Vec<String> =
            ["--provider", "--chain-rpc", &chain_rpc, "--peer", &requestor_p2p].map(String::from).to_vec();
        if bad {
            args.extend(["--dishonest".into(), "alter".into()]);
        }
        let (data_dir, pid) = spawn_node(dir, &name, &args)?;
        record.nodes.push(DevnetNode {
            name: name.clone(),
            role: "provider".into(),
            dishonest: bad,
            data_dir,
            pid,
        });
        save(&record)?;
        started.push((name, pid));
    }
    for (name, pid) in &started {
        wait_up(dir, name, &dir.join(name), *pid).await?;
    }

    eprintln!("==> funding the requestor's account from the dev faucet");
    let _funded: Value = requestor.post("/admin/v1/payment/fund", &serde_json::json!({})).await?;
    Ok(record)
}

/// SIGTERM to the providers, then the requestor (whose chain goes with it); a node still running
/// after the stop timeout is killed.
async fn stop_all(record: &Devnet) {
    let mut order: Vec<&DevnetNode> = record.nodes.iter().filter(|n| n.role == "provider").collect();
    order.extend(record.nodes.iter().filter(|n| n.role != "provider"));
    for node in &order {
        if alive(node.pid) {
            let _sent = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(node.pid as i32),
                nix::sys::signal::SIGTERM,
            );
        }
        if node.role != "provider" {
            // The providers are stopping meanwhile; the requestor goes last.
            wait_gone(&record.nodes.iter().filter(|n| n.role == "provider").collect::<Vec<_>>()).await;
        }
    }
    wait_gone(&order).await;
}

async fn wait_gone(nodes: &[&DevnetNode]) {
    let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
    while nodes.iter().any(|n| alive(n.pid)) {
        if tokio::time::Instant::now() > deadline {
            for n in nodes.iter().filter(|n| alive(n.pid)) {
                eprintln!("node {} did not stop within {} s; killing it", n.name, STOP_TIMEOUT.as_secs());
                let _sent = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(n.pid as i32),
                    nix::sys::signal::SIGKILL,
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_rows(record: &Devnet) -> Vec<Value> {
    let mut rows = Vec::new();
    for node in &record.nodes {
        let mut row = serde_json::json!({
            "name": node.name, "role": node.role, "dishonest": node.dishonest,
            "dataDir": node.data_dir, "running": alive(node.pid),
        });
        if let Ok(client) = Client::for_data_dir(&node.data_dir) {
            row["apiUrl"] = Value::String(client.base().to_string());
            if let Ok(accounts) = client.get::<Vec<Value>>("/admin/v1/payment/status").await
                && let Some(account) = accounts.first()
            {
                row["address"] = account["address"].clone();
                row["token"] = account["token"].clone();
                row["platform"] = account["platform"].clone();
            }
        }
        rows.push(row);
    }
    rows
}

fn show(rows: &[Value]) {
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let role =
                if r["dishonest"] == true { "provider (dishonest)".to_string() } else { text(&r["role"]) };
            vec![text(&r["name"]), role, text(&r["address"]), text(&r["token"]), text(&r["apiUrl"])]
        })
        .collect();
    table(&["NODE", "ROLE", "ADDRESS", "TOKEN", "API"], &lines);
}
