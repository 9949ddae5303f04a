use crate::reaper::Supervised;
use crate::wait_for;
use bollard::Docker;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The image every Docker test can use: busybox-static's binary in an otherwise empty root.
pub const BUSYBOX_IMAGE: &str = "agora-busybox:test";

/// A private Docker engine: its own data and exec roots and socket, no bridge, no iptables.
/// Stopped and removed on drop.
#[derive(Debug)]
pub struct Dockerd {
    docker: Docker,
    // Dropped before `dir`: the engine stops before its folders are removed.
    _child: Supervised,
    dir: tempfile::TempDir,
}

fn need(path: &str, package: &str) {
    assert!(Path::new(path).exists(), "{path} is missing: install Debian's `{package}` (scripts/setup does)");
}

impl Dockerd {
    /// Starts dockerd and imports [`BUSYBOX_IMAGE`].
    pub async fn start() -> Self {
        need("/usr/sbin/dockerd", "docker.io");
        need("/bin/busybox", "busybox-static");
        assert!(nix::unistd::Uid::effective().is_root(), "dockerd needs root");
        // Short paths: containerd's sockets live under the exec root and Unix socket paths are short.
        let dir = tempfile::Builder::new().prefix("agd-").tempdir_in("/tmp").expect("temp dir");
        let root = dir.path();
        for sub in ["data", "exec", "run"] {
            std::fs::create_dir_all(root.join(sub)).expect("create dockerd folders");
        }
        let socket = root.join("run/docker.sock");
        let mut cmd = Command::new("/usr/sbin/dockerd");
        cmd.args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver=overlay2"])
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("run/docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("dockerd.log")).expect("dockerd log"));
        let mut child = Supervised::spawn(cmd, Signal::SIGTERM, 30).expect("start dockerd");
        let log = root.join("dockerd.log");
        let sock = socket.display().to_string();
        let docker = wait_for(60, "dockerd to answer a ping", || {
            let sock = sock.clone();
            async move {
                let docker = Docker::connect_with_unix(&sock, 120, bollard::API_DEFAULT_VERSION).ok()?;
                let docker = docker.negotiate_version().await.ok()?;
                docker.ping().await.ok()?;
                Some(docker)
            }
        })
        .await;
        if let Some(status) = child.exited() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("dockerd exited during start-up ({status}); its log: {log}");
        }
        let this = Self { docker, _child: child, dir };
        this.import_busybox();
        this
    }

    /// The engine's socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/docker.sock")
    }

    /// A client of this engine, its API version negotiated.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// `docker import` of a root holding busybox-static and its applet links.
    fn import_busybox(&self) {
        let rootfs = self.dir.path().join("rootfs");
        for sub in ["bin", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("rootfs folders");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "cat", "echo", "ls", "grep", "sed", "wc", "sleep", "true", "false", "env"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("applet link");
        }
        let tar = self.dir.path().join("rootfs.tar");
        let status = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".").status();
        assert!(status.is_ok_and(|s| s.success()), "tar of the busybox root failed");
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("import")
            .arg(&tar)
            .arg(BUSYBOX_IMAGE)
            .output()
            .expect("run `docker import` (Debian's docker.io)");
        assert!(out.status.success(), "docker import failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}
