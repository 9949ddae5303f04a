//! PostgreSQL clusters started from the system's server binaries: the node's embedded default
//! database, and the throwaway clusters of the test support code.
//!
//! Debian installs the server under `/usr/lib/postgresql/<major>/bin`. PostgreSQL refuses to run
//! as root, so when agora runs as root every server tool runs as the `postgres` user, and the
//! cluster folder is owned by that user.

use nix::unistd::{Gid, Uid, User};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Errors of starting, stopping or reaching a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries not found (looked in {looked}); install Debian's `postgresql` \
         package (`apt-get install postgresql`), or set DATABASE_URL to use a running server"
    )]
    Missing { looked: String },
    #[error(
        "running as root, but there is no `postgres` user to run the server as; install Debian's \
         `postgresql` package, or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "the `postgres` user cannot write to {0}; make its parent folders traversable \
         (chmod o+x) or choose another data dir"
    )]
    Unreachable(PathBuf),
    #[error("socket path {0} is longer than the 107 bytes Unix sockets allow; use a shorter data dir")]
    SocketPathTooLong(PathBuf),
    #[error("`{tool}` failed: {detail}")]
    Tool { tool: String, detail: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The folder holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// `explicit`, or the newest `/usr/lib/postgresql/*/bin` that has the server tools.
    pub fn locate(explicit: Option<&Path>) -> Result<Self> {
        let has_tools = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|t| dir.join(t).is_file());
        if let Some(dir) = explicit {
            return if has_tools(dir) {
                Ok(Self { dir: dir.to_path_buf() })
            } else {
                Err(Error::Missing { looked: dir.display().to_string() })
            };
        }
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                has_tools(&bin).then_some((major, bin))
            })
            .collect();
        found.sort();
        match found.pop() {
            Some((_, dir)) => Ok(Self { dir }),
            None => Err(Error::Missing { looked: "/usr/lib/postgresql/*/bin".into() }),
        }
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// How clients reach the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket only: nothing on the network can reach it.
    SocketOnly,
    /// A Unix socket and TCP on 127.0.0.1 at the cluster's port.
    Loopback,
}

/// One cluster: `<root>/data` holds the cluster, `<root>/run` its socket, `<root>/postgres.log`
/// its log.
#[derive(Debug, Clone)]
pub struct Cluster {
    bin: Binaries,
    root: PathBuf,
    port: u16,
    listen: Listen,
    run_as: Option<(Uid, Gid)>,
}

/// The role every cluster made here is initialised with.
pub const SUPERUSER: &str = "agora";

impl Cluster {
    /// Describes a cluster under `root`; nothing is created until [`Cluster::prepare`].
    pub fn new(bin: Binaries, root: impl Into<PathBuf>, port: u16, listen: Listen) -> Result<Self> {
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres").ok().flatten().ok_or(Error::NoPostgresUser)?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        let root = root.into();
        let cluster = Self { bin, root, port, listen, run_as };
        let socket = cluster.socket_dir().join(format!(".s.PGSQL.{port}"));
        if socket.as_os_str().len() > 107 {
            return Err(Error::SocketPathTooLong(socket));
        }
        Ok(cluster)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// A command for one of the server tools, run as the `postgres` user when we are root.
    pub fn command(&self, tool: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin.tool(tool));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // The server tools look up locale settings from the environment; pin them so a cluster
        // behaves the same whatever the caller's shell had.
        cmd.env("LC_ALL", "C").env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
        cmd
    }

    pub fn is_initialized(&self) -> bool {
        self.data_dir().join("PG_VERSION").is_file()
    }

    /// Creates `root` and its run folder, owned by the user the server runs as.
    pub fn prepare(&self) -> Result<()> {
        std::fs::create_dir_all(self.socket_dir())?;
        set_mode(&self.root, 0o700)?;
        if let Some((uid, gid)) = self.run_as {
            for dir in [self.root.clone(), self.socket_dir()] {
                nix::unistd::chown(&dir, Some(uid), Some(gid)).map_err(std::io::Error::from)?;
            }
            let probe =
                self.command_in_shell("test -w \"$0\" && test -x \"$0\"", &self.socket_dir()).status()?;
            if !probe.success() {
                return Err(Error::Unreachable(self.root.clone()));
            }
        }
        Ok(())
    }

    fn command_in_shell(&self, script: &str, arg: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script).arg(arg);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    /// Runs `initdb`. `durable: false` skips fsync, for throwaway test clusters.
    pub fn init(&self, durable: bool) -> Result<()> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(self.data_dir()).args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"]);
        if !durable {
            cmd.arg("--no-sync");
        }
        run("initdb", cmd.output()?)
    }

    /// The server options: where to listen, and nothing else that differs from the defaults.
    fn server_options(&self) -> Vec<String> {
        let tcp = match self.listen {
            Listen::SocketOnly => "",
            Listen::Loopback => "127.0.0.1",
        };
        vec![
            "-p".into(),
            self.port.to_string(),
            "-k".into(),
            self.socket_dir().display().to_string(),
            "-c".into(),
            format!("listen_addresses={tcp}"),
        ]
    }

    /// Starts the server in the background with `pg_ctl`, waiting until it accepts connections.
    pub fn start(&self) -> Result<()> {
        let options = self
            .server_options()
            .into_iter()
            // pg_ctl hands `-o` to a shell: quote every word.
            .map(|o| format!("'{}'", o.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-w")
            .arg("-s")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .arg("-o")
            .arg(options);
        run("pg_ctl start", cmd.output()?).map_err(|e| self.with_log(e))
    }

    /// A command that runs the server in the foreground (for a supervisor that owns the process).
    pub fn foreground_command(&self) -> Command {
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(self.data_dir()).args(self.server_options());
        cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        // Room for many nodes' pools in one throwaway cluster (benchmarks run a hundred).
        cmd.args(["-c", "max_connections=400"]);
        cmd
    }

    /// Whether a server is running on this cluster's data.
    pub fn is_running(&self) -> bool {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("status").arg("-D").arg(self.data_dir());
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    }

    /// Stops the server (`fast`: open sessions are ended, then a clean shutdown).
    pub fn stop(&self) -> Result<()> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop").args(["-m", "fast", "-w", "-s", "-D"]).arg(self.data_dir());
        run("pg_ctl stop", cmd.output()?)
    }

    /// Connection options for database `db`, over the Unix socket.
    pub fn connect_options(&self, db: &str) -> sqlx::postgres::PgConnectOptions {
        sqlx::postgres::PgConnectOptions::new()
            .socket(self.socket_dir())
            .port(self.port)
            .username(SUPERUSER)
            .database(db)
    }

    /// A `postgres://` URL for database `db` over TCP on loopback (for other processes).
    pub fn tcp_url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    fn with_log(&self, e: Error) -> Error {
        let tail = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        match e {
            Error::Tool { tool, detail } if !tail.is_empty() => Error::Tool {
                tool,
                detail: format!(
                    "{detail}; server log: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            },
            other => other,
        }
    }
}

fn run(tool: &str, out: Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if detail.is_empty() {
        detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    if detail.is_empty() {
        detail = out.status.to_string();
    }
    Err(Error::Tool { tool: tool.into(), detail })
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
