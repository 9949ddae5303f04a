use crate::reaper::Supervised;
use crate::wait_for;
use agora::datadir::{NodeFile, read_node_file};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `agora` binary built beside the test executable (`cargo build --bin agora` puts it there;
/// the test command in README.md builds it first).
pub fn agora_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("AGORA_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/it-<hash> → target/<profile>/agora
    let bin = exe.parent().and_then(Path::parent).expect("target folder").join("agora");
    assert!(bin.is_file(), "{} is missing: run `cargo build --bin agora` first", bin.display());
    bin
}

/// An `agora node run` process, stopped with SIGTERM on drop.
#[derive(Debug)]
pub struct NodeProcess {
    child: Supervised,
    data_dir: PathBuf,
    log: PathBuf,
    pub node: NodeFile,
}

impl NodeProcess {
    /// Starts `agora node run --data-dir DIR --api-addr 127.0.0.1:0 EXTRA…` with `env`, and waits
    /// until it has written `node.json`.
    pub async fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let _stale = std::fs::remove_file(data_dir.join(agora::datadir::NODE_FILE));
        let log = data_dir.with_extension("log");
        let mut cmd = Command::new(agora_bin());
        cmd.arg("node")
            .arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api-addr", "127.0.0.1:0"])
            // Loopback only, on a free port, unless the test says otherwise.
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "/ip4/127.0.0.1/tcp/0"][..]
            })
            .args(extra)
            .env_remove("DATABASE_URL")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("node log file"));
        let mut child = Supervised::spawn(cmd, Signal::SIGTERM, 30).expect("start agora");
        let dir = data_dir.to_path_buf();
        let node = wait_for(120, "the node to write node.json", || {
            let exited = child.exited();
            let dir = dir.clone();
            let log = log.clone();
            async move {
                if let Some(status) = exited {
                    panic!(
                        "agora node exited ({status}): {}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
                read_node_file(&dir).ok()
            }
        })
        .await;
        Self { child, data_dir: data_dir.to_path_buf(), log, node }
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.node.api_url)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs an `agora` management command against this node.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_agora(&[&["--data-dir", self.data_dir.to_str().expect("utf-8 path")], args].concat(), stdin)
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `secs` for the process to exit by itself; how it exited.
    pub async fn exited_within(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.exited() {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGTERM, then the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.child.stop().and_then(|s| s.code())
    }
}

/// Runs the `agora` binary with `args` (and `stdin`), returning its output.
pub fn run_agora(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(agora_bin());
    cmd.args(args).env_remove("DATABASE_URL").stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("run agora");
    if let Some(text) = stdin {
        child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("agora output")
}
