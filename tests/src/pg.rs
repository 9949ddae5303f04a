use crate::reaper::Supervised;
use crate::{free_port, shared_tempdir};
use agora::postgres::{Binaries, Cluster, Listen};
use nix::sys::signal::Signal;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::process::Stdio;

/// A throwaway PostgreSQL cluster on 127.0.0.1 with one fresh database, removed on drop.
#[derive(Debug)]
pub struct TestPg {
    cluster: Cluster,
    db: String,
    // Dropped before `_dir`: the server stops before its folder is removed.
    child: Supervised,
    _dir: tempfile::TempDir,
}

impl TestPg {
    /// Starts a cluster from the system's server binaries and creates a database in it.
    pub async fn start() -> Self {
        let bin = Binaries::locate(None).unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"));
        let mut dir = shared_tempdir();
        let log = dir.path().join("postgres.log");
        // The free port is found by binding and letting go, so a test starting beside this one
        // can take it first: then the server exits at once, and it gets another port.
        for attempt in 1..=5 {
            let cluster = Cluster::new(bin.clone(), dir.path().join("pg"), free_port(), Listen::Loopback)
                .unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"));
            if attempt == 1 {
                cluster.prepare().unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"));
                cluster.init(false).unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"));
            }
            let mut cmd = cluster.foreground_command();
            let log_file = std::fs::File::create(&log).expect("postgres log");
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
            // SIGQUIT is PostgreSQL's immediate shutdown: right for a server whose test is gone.
            let child = Supervised::spawn(cmd, Signal::SIGQUIT, 10).expect("start postgres");
            let mut pg = Self { cluster, child, db: String::new(), _dir: dir };
            let Some(admin) = pg.wait_ready().await else {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                if said.contains("already in use") && attempt < 5 {
                    dir = pg.into_dir();
                    continue;
                }
                panic!("postgres exited during start-up; its log:\n{said}");
            };
            let db = format!("agora_test_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&admin)
                .await
                .expect("create the test database");
            admin.close().await;
            pg.db = db;
            return pg;
        }
        unreachable!("the last attempt panics or returns")
    }

    /// Stops the server (clients see their connections cut and new ones refused); the cluster
    /// stays, for [`TestPg::restart`]. A fast shutdown (SIGINT), not an immediate one: the test
    /// cluster commits asynchronously, and an immediate stop could lose the last commits.
    pub fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _already_gone = nix::sys::signal::kill(pid, Signal::SIGINT);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.child.exited().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _status = self.child.stop();
    }

    /// Starts the stopped server again on the same port, and waits until it answers.
    pub async fn restart(&mut self) {
        let mut cmd = self.cluster.foreground_command();
        let log = self._dir.path().join("postgres.log");
        let log_file = std::fs::OpenOptions::new().append(true).open(&log).expect("postgres log");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        self.child = Supervised::spawn(cmd, Signal::SIGQUIT, 10).expect("restart postgres");
        let admin = self.wait_ready().await.unwrap_or_else(|| {
            panic!("postgres did not start again: {}", std::fs::read_to_string(&log).unwrap_or_default())
        });
        admin.close().await;
    }

    /// Gives back the folder of a server that did not start.
    fn into_dir(self) -> tempfile::TempDir {
        let Self { child, _dir, .. } = self;
        drop(child);
        _dir
    }

    /// A connection once the server answers; `None` if it exited first.
    async fn wait_ready(&mut self) -> Option<PgPool> {
        let options = self.cluster.connect_options("postgres");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if self.child.exited().is_some() {
                return None;
            }
            match PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await {
                Ok(pool) => return Some(pool),
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("postgres did not start: {e}")
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    /// A `postgres://` URL of the test database, over TCP on loopback.
    pub fn url(&self) -> String {
        self.cluster.tcp_url(&self.db)
    }

    /// Creates another database in the same cluster (for a second node, say) and returns its URL.
    pub async fn another_database(&self, name: &str) -> String {
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "plain database names only"
        );
        let pool = self.pool().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .expect("create a database");
        pool.close().await;
        self.cluster.tcp_url(name)
    }

    /// A pool on the test database.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url())
            .await
            .expect("connect to the test database")
    }

    /// A pool on the test database with agora's schema applied.
    pub async fn migrated_pool(&self) -> PgPool {
        let pool = self.pool().await;
        agora::node::MIGRATOR.run(&pool).await.expect("apply migrations");
        pool
    }
}
