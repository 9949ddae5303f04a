use std::path::PathBuf;

/// Why a command or the node failed, and so which exit code it ends with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad settings: a config file, a flag, an environment variable.
    #[error("{0}")]
    Config(String),
    #[error("data dir {path} is not usable: {message}")]
    DataDir { path: PathBuf, message: String },
    #[error("another agora node is already running with data dir {0}")]
    DataDirInUse(PathBuf),
    #[error("cannot reach the database at {url}: {message}")]
    DatabaseUnreachable { url: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("embedded database: {0}")]
    Postgres(#[from] crate::postgres::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Identity(#[from] agora_identity::Error),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// No node is running for the data dir a management command names.
    #[error("no agora node is running with data dir {0}; start one with `agora node run --data-dir {0}`")]
    NodeNotRunning(PathBuf),
    /// The node refused a request: the message is the node's own.
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("cannot talk to the node: {0}")]
    Http(String),
    /// A command's argument is wrong (a missing file, an unreadable folder).
    #[error("{0}")]
    Input(String),
    /// Work ran and failed (a command of a batch ended in an error); what was printed says how.
    #[error("{0}")]
    WorkFailed(String),
}

impl Error {
    /// 2 for input the user can correct (settings, data dir, database address, port, a refused
    /// request); 1 for failures of the system.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Input(_)
            | Error::DataDir { .. }
            | Error::DataDirInUse(_)
            | Error::DatabaseUnreachable { .. }
            | Error::Listen { .. } => 2,
            Error::Postgres(
                crate::postgres::Error::Missing { .. }
                | crate::postgres::Error::NoPostgresUser
                | crate::postgres::Error::Unreachable(_)
                | crate::postgres::Error::SocketPathTooLong(_),
            ) => 2,
            Error::Refused { status, .. } if (400..500).contains(status) => 2,
            _ => 1,
        }
    }
}

/// A database URL with its password replaced, fit for an error message or a log line.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(super::redact_url("postgres://u:secret@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact_url("nonsense"), "nonsense");
    }
}
