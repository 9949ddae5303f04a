//! Start-up, serving and shutdown of a node.
//!
//! Start-up checks everything a user can get wrong before it creates anything: the settings, the
//! API port, the data dir, the database. A start that fails leaves nothing behind that it made.

use crate::api::{self, AppState};
use crate::config::{Database, Settings};
use crate::datadir::{DataDir, NodeFile};
use crate::postgres::{Binaries, Cluster, Listen};
use crate::store::EMBEDDED_DB;
use crate::{Error, redact_url};
use agora_identity::{Identities, IdentityStore, Keystore};
use rand::RngCore;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The schema, from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long to wait for a database connection before calling the database unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_SIZE: u32 = 16;
/// How long a stopping node waits, from the signal on, for its open requests, its hosted
/// activities to end and its tasks (handlers, batches, deliveries) to finish. Long polls answer
/// at once and batches are stopped, so what may run into it is a request waiting on an
/// unresponsive peer; that is abandoned.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// How long closing the database pool may wait for connections still in use.
const POOL_CLOSE: Duration = Duration::from_secs(3);

/// The embedded server listens on a Unix socket only; the port number only names the socket.
const EMBEDDED_PORT: u16 = 5432;

/// An open database, and the embedded cluster behind it if there is one.
#[derive(Debug)]
struct Db {
    pool: PgPool,
    embedded: Option<Cluster>,
}

impl Db {
    async fn open(settings: &Settings, data: &DataDir) -> Result<Self, Error> {
        match &settings.database {
            Database::External(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect(url)
                    .await
                    .map_err(|e| Error::DatabaseUnreachable {
                        url: redact_url(url),
                        message: e.to_string(),
                    })?;
                Ok(Self { pool, embedded: None })
            }
            Database::Embedded { bin_dir } => {
                let bin = Binaries::locate(bin_dir.as_deref())?;
                let cluster =
                    Cluster::new(bin, data.path().join("postgres"), EMBEDDED_PORT, Listen::SocketOnly)?;
                let fresh = !cluster.is_initialized();
                let prepared = cluster.prepare().and_then(|()| {
                    if fresh {
                        tracing::info!(dir = %cluster.data_dir().display(), "creating the embedded database cluster");
                        cluster.init(true)?;
                    }
                    if cluster.is_running() {
                        tracing::info!("reusing the embedded database server that is already running");
                        Ok(())
                    } else {
                        tracing::info!(dir = %cluster.data_dir().display(), "starting the embedded database");
                        cluster.start()
                    }
                });
                if let Err(e) = prepared {
                    if fresh {
                        let _ignored = std::fs::remove_dir_all(cluster.root());
                    }
                    return Err(e.into());
                }
                let pool = match connect_embedded(&cluster).await {
                    Ok(pool) => pool,
                    Err(e) => {
                        let _ignored = cluster.stop();
                        return Err(e);
                    }
                };
                Ok(Self { pool, embedded: Some(cluster) })
            }
        }
    }

    async fn close(self) {
        if tokio::time::timeout(POOL_CLOSE, self.pool.close()).await.is_err() {
            tracing::warn!("database connections still in use are dropped");
        }
        if let Some(cluster) = self.embedded {
            match cluster.stop() {
                Ok(()) => tracing::info!("embedded database stopped"),
                Err(e) => tracing::warn!(error = %e, "could not stop the embedded database"),
            }
        }
    }
}

/// Connects to the embedded cluster, creating agora's database on first use.
async fn connect_embedded(cluster: &Cluster) -> Result<PgPool, Error> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(cluster.connect_options("postgres"))
        .await?;
    if !crate::store::has_database(&admin).await? {
        crate::store::create_database(&admin).await?;
    }
    admin.close().await;
    Ok(PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(cluster.connect_options(EMBEDDED_DB))
        .await?)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn read_password(settings: &Settings) -> Result<Option<String>, Error> {
    let Some(path) = &settings.identity_password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("identity_password_file {}: {e}", path.display())))?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Refuses p2p listen addresses whose TCP port is taken, before anything is created. (libp2p
/// binds them later; a port that is free now and taken then is reported by that bind.)
fn check_p2p_ports(listen: &[agora_net::Multiaddr]) -> Result<(), Error> {
    use agora_net::Protocol;
    use std::net::{IpAddr, SocketAddr};
    for addr in listen {
        let mut ip: Option<IpAddr> = None;
        let mut port: Option<u16> = None;
        for part in addr.iter() {
            match part {
                Protocol::Ip4(a) => ip = Some(a.into()),
                Protocol::Ip6(a) => ip = Some(a.into()),
                Protocol::Tcp(p) => port = Some(p),
                _ => {}
            }
        }
        if let (Some(ip), Some(port)) = (ip, port.filter(|p| *p != 0)) {
            let socket = SocketAddr::new(ip, port);
            std::net::TcpListener::bind(socket).map_err(|source| Error::Listen { addr: socket, source })?;
        }
    }
    Ok(())
}

/// Runs a node until `shutdown` is cancelled, then stops it gracefully: in-flight requests finish,
/// the pool closes, and the embedded database stops.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), Error> {
    let password = read_password(&settings)?;
    // Bind first: a port in use is found before anything is created.
    let listener = std::net::TcpListener::bind(settings.api_addr)
        .map_err(|source| Error::Listen { addr: settings.api_addr, source })?;
    listener.set_nonblocking(true)?;

    // When root runs the embedded database, the server runs as `postgres` and must be able to
    // traverse the data dir (not list or read it).
    let embedded_as_root =
        matches!(settings.database, Database::Embedded { .. }) && nix::unistd::Uid::effective().is_root();
    check_p2p_ports(&settings.net.listen)?;
    let data = DataDir::open(&settings.data_dir, if embedded_as_root { 0o711 } else { 0o700 })?;

    let db = match Db::open(&settings, &data).await {
        Ok(db) => db,
        Err(e) => {
            data.abandon();
            return Err(e);
        }
    };
    let started = async {
        MIGRATOR.run(&db.pool).await?;
        let keystore = Keystore::open(data.path().join("keystore"))?;
        let identities = Identities::open(keystore, IdentityStore::new(db.pool.clone()), password).await?;
        Ok::<_, Error>(identities)
    }
    .await;
    let identities = match started {
        Ok(identities) => identities,
        Err(e) => {
            db.close().await;
            return Err(e);
        }
    };
    // The network has a stop of its own: it outlives the node's handlers (see below).
    let net_stop = CancellationToken::new();
    let network = async {
        let node_id = identities.default_address().await?;
        let key = identities.signer(node_id).map_err(|_| {
            Error::Config(format!(
                "the default identity {node_id} is locked; give its password with identity_password_file"
            ))
        })?;
        agora_net::start(key.libp2p_keypair(), settings.net.clone(), net_stop.clone()).await.map_err(|e| {
            match e {
                agora_net::Error::Listen { .. }
                | agora_net::Error::Dial { .. }
                | agora_net::Error::SwarmKey(_) => Error::Config(format!("p2p: {e}")),
                other => Error::Io(std::io::Error::other(other.to_string())),
            }
        })
    }
    .await;
    let (net, net_task) = match network {
        Ok(started) => started,
        Err(e) => {
            db.close().await;
            return Err(e);
        }
    };

    let chain = match &settings.embedded_chain {
        None => None,
        Some(rpc) => match crate::chain::EmbeddedChain::start(&data.path().join("chain"), rpc).await {
            Ok(chain) => Some(chain),
            Err(e) => {
                net_stop.cancel();
                let _ended = net_task.await;
                db.close().await;
                return Err(e);
            }
        },
    };

    // From here on one path stops everything that was started, whether serving ended or failed.
    let served = serve(&settings, identities, db.pool.clone(), net, &data, listener, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(chain) = chain {
        chain.stop();
    }
    // The network stops last, so answers that handlers gave while the node stopped go out.
    net_stop.cancel();
    let _ended = net_task.await;
    data.remove_node_file();
    db.close().await;
    served
}

/// Serves the node until `shutdown`: its market and activities on the network, and the REST API
/// on `listener`. Then ends its hosted activities and waits for its tasks, up to the deadline.
async fn serve(
    settings: &Settings,
    identities: Identities,
    pool: PgPool,
    net: agora_net::NetHandle,
    data: &DataDir,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let api_addr = listener.local_addr()?;
    let admin_token = random_token();
    data.write_node_file(&NodeFile {
        api_url: format!("http://{api_addr}"),
        admin_token: admin_token.clone(),
        pid: std::process::id(),
    })?;
    let node_id = identities.default_address().await?;
    tracing::info!(%api_addr, node_id = %node_id, data_dir = %data.path().display(), "agora node is up");

    // The network started with this key, so it is unlocked.
    let signer = identities.signer(node_id)?;
    let tasks = TaskTracker::new();
    let market =
        agora_market::Market::new(pool.clone(), signer).with_courier(std::sync::Arc::new(net.clone()));
    let host = agora_activity::HostConfig {
        work_dir: data.path().join("activities"),
        transfer_dirs: settings.activity.transfer_dirs.clone(),
        ca_certs: settings.activity.ca_certs.clone(),
        datasets: settings.activity.datasets.clone(),
        docker_socket: settings.activity.docker_socket.clone(),
        blob_send_rate: settings.activity.blob_send_rate,
        alter_outputs: settings.activity.alter_outputs,
        alter_uploads: settings.activity.alter_uploads,
        outputs_dir: Some(data.path().join("outputs")),
    };
    let other = |e: &dyn std::fmt::Display| Error::Io(std::io::Error::other(e.to_string()));
    let blobs = agora_activity::BlobStore::open(data.path().join("blobs"))?
        .with_max_blob(settings.activity.max_blob_bytes);
    let activities = agora_activity::Activities::new(
        pool.clone(),
        host,
        blobs,
        std::sync::Arc::new(net.clone()),
        std::sync::Arc::new(crate::agreements::MarketAgreements(market.clone())),
        tasks.clone(),
    )
    .map_err(|e| other(&e))?;
    let ended = activities.recover().await.map_err(|e| other(&e))?;
    if ended > 0 {
        tracing::info!(ended, "activities hosted before the restart are Terminated");
    }
    agora_market::serve(market.clone(), net.clone(), shutdown.clone(), tasks.clone())
        .await
        .map_err(|e| other(&e))?;
    activities.serve(&net, shutdown.clone()).await.map_err(|e| other(&e))?;
    let payments = agora_payment::Payments::new(
        pool.clone(),
        identities.signer(node_id)?,
        settings.payment.clone(),
        std::sync::Arc::new(crate::agreements::PaymentLookups {
            market: market.clone(),
            activities: activities.clone(),
        }),
    )
    .with_courier(std::sync::Arc::new(net.clone()));
    agora_payment::serve(payments.clone(), net.clone(), shutdown.clone(), tasks.clone())
        .await
        .map_err(|e| other(&e))?;
    if let Some(config) = &settings.provider {
        let agent = agora_agents::ProviderAgent::new(
            config.clone(),
            market.clone(),
            activities.clone(),
            payments.clone(),
            identities.signer(node_id)?,
            agora_agents::Machine::probe(data.path()),
        )
        .with_dishonesty(settings.dishonesty);
        agent.start(&net, shutdown.clone(), &tasks).await.map_err(|e| other(&e))?;
    }
    // The job queue: the node's own database, or one several requestor nodes share.
    let jobs_pool = match &settings.jobs_database_url {
        None => pool.clone(),
        Some(url) => {
            let shared = PgPoolOptions::new()
                .max_connections(POOL_SIZE)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect(url)
                .await
                .map_err(|e| Error::DatabaseUnreachable { url: redact_url(url), message: e.to_string() })?;
            MIGRATOR.run(&shared).await?;
            shared
        }
    };
    let jobs = agora_agents::Jobs::new(
        jobs_pool,
        market.clone(),
        activities.clone(),
        payments.clone(),
        net.clone(),
        identities.signer(node_id)?,
        tasks.clone(),
        shutdown.clone(),
    )
    .with_max_running(settings.max_jobs);
    let jobs = if settings.jobs_database_url.is_some() { jobs.with_shared_queue() } else { jobs };
    jobs.recover().await.map_err(|e| other(&e))?;
    jobs.serve();
    let datasets = settings.activity.datasets.iter().map(|d| format!("sha256:{}", d.sha256)).collect();
    let state = AppState::new(identities, pool, net, market, admin_token)
        .with_activities(activities.clone(), datasets)
        .with_payments(payments)
        .with_jobs(jobs)
        .with_shutdown(shutdown.clone());
    let server = axum::serve(tokio::net::TcpListener::from_std(listener)?, api::app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    let ended_by_itself = tokio::select! {
        served = &mut server => Some(served),
        () = shutdown.cancelled() => None,
    };
    tracing::info!("shutting down");
    shutdown.cancel();
    // One deadline for the whole stop. Long polls answer at once; a request still open at the
    // deadline (one waiting on an unresponsive peer, say) is abandoned.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    let served = match ended_by_itself {
        Some(served) => served,
        None => tokio::time::timeout_at(deadline, &mut server).await.unwrap_or_else(|_| {
            tracing::warn!("requests still open at the shutdown deadline are abandoned");
            Ok(())
        }),
    };
    // Hosted activities end first (their batches stopped, their containers removed), then the
    // node waits for every task it spawned.
    if tokio::time::timeout_at(deadline, activities.shutdown()).await.is_err() {
        tracing::warn!("the activities did not all end by the shutdown deadline");
    }
    tasks.close();
    match tokio::time::timeout_at(deadline, tasks.wait()).await {
        Ok(()) => tracing::info!("all tasks finished"),
        Err(_) => tracing::warn!(
            left = tasks.len(),
            deadline_secs = SHUTDOWN_DEADLINE.as_secs(),
            "tasks still running at the shutdown deadline are abandoned"
        ),
    }
    served?;
    Ok(())
}
