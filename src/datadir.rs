//! The node's data dir: its lock, the keystore, the embedded database, and `node.json`, which
//! tells the management commands where the running node listens and how to authenticate.

use crate::Error;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file a running node writes for the CLI.
pub const NODE_FILE: &str = "node.json";

/// What `node.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    /// Base URL of the REST API, e.g. `http://127.0.0.1:7465`.
    pub api_url: String,
    /// Bearer token for the management endpoints; valid until the node stops.
    pub admin_token: String,
    pub pid: u32,
}

/// A data dir held by this process. While it lives, no other node can use the folder.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Whether this run created the folder, so a failed start can remove it again.
    created: bool,
    _lock: Flock<File>,
}

fn data_dir_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::DataDir { path: path.to_path_buf(), message: e.to_string() }
}

impl DataDir {
    /// Creates the folder if needed (mode `mode`), checks that it is writable, and takes its lock.
    pub fn open(path: &Path, mode: u32) -> Result<Self, Error> {
        let created = !path.exists();
        if created {
            std::fs::create_dir_all(path).map_err(|e| data_dir_error(path, e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| data_dir_error(path, e))?;
        } else if !path.is_dir() {
            return Err(data_dir_error(path, "it exists and is not a folder"));
        }
        let cleanup = |e: Error| {
            if created {
                let _ignored = std::fs::remove_dir_all(path);
            }
            e
        };
        // Permission bits alone do not tell (root ignores them, a read-only mount does not show
        // in them): write and remove a file to know.
        let probe = path.join(".write-test");
        File::create(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| cleanup(data_dir_error(path, format!("cannot write in it: {e}"))))?;
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("node.lock"))
            .map_err(|e| cleanup(data_dir_error(path, e)))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| cleanup(Error::DataDirInUse(path.to_path_buf())))?;
        Ok(Self { path: path.to_path_buf(), created, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Undoes a start that failed: a folder this run created is removed whole.
    pub fn abandon(self) {
        if self.created
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the data dir");
        }
    }

    /// Writes `node.json` (mode 0600), replacing it atomically.
    pub fn write_node_file(&self, node: &NodeFile) -> Result<(), Error> {
        let temp = self.path.join(".node.json.tmp");
        let mut file = File::options().create(true).write(true).truncate(true).mode(0o600).open(&temp)?;
        file.write_all(&serde_json::to_vec_pretty(node).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temp, self.path.join(NODE_FILE))?;
        Ok(())
    }

    pub fn remove_node_file(&self) {
        let _ignored = std::fs::remove_file(self.path.join(NODE_FILE));
    }
}

/// Reads the `node.json` of a running node.
pub fn read_node_file(data_dir: &Path) -> Result<NodeFile, Error> {
    let path = data_dir.join(NODE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NodeNotRunning(data_dir.to_path_buf()));
        }
        Err(e) => {
            return Err(data_dir_error(data_dir, format!("cannot read {}: {e}", path.display())));
        }
    };
    serde_json::from_str(&text).map_err(|e| data_dir_error(data_dir, format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_a_created_dir_is_removed_on_abandon() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("node");
        let held = DataDir::open(&path, 0o700).unwrap();
        assert!(matches!(DataDir::open(&path, 0o700), Err(Error::DataDirInUse(_))));
        held.write_node_file(&NodeFile { api_url: "http://x".into(), admin_token: "t".into(), pid: 1 })
            .unwrap();
        let mode = std::fs::metadata(path.join(NODE_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_node_file(&path).unwrap().admin_token, "t");
        held.abandon();
        assert!(!path.exists());
        assert!(matches!(read_node_file(&path), Err(Error::NodeNotRunning(_))));
    }

    #[test]
    fn a_path_below_a_file_is_not_a_usable_data_dir() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("file"), b"x").unwrap();
        let err = DataDir::open(&root.path().join("file/node"), 0o700).unwrap_err();
        assert!(matches!(err, Error::DataDir { .. }), "{err}");
        assert!(matches!(DataDir::open(&root.path().join("file"), 0o700), Err(Error::DataDir { .. })));
    }
}
