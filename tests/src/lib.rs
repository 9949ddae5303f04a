//! Support code for agora's cross-crate scenarios: real local services, started on free loopback
//! ports and torn down when their guard drops.
//!
//! - [`TestPg`]: a throwaway PostgreSQL cluster with a fresh database.
//! - [`Anvil`]: an Ethereum dev chain, from the npm package `@foundry-rs/anvil-linux-amd64`.
//! - [`Dockerd`]: a private Docker engine (Debian's `docker.io`), with no bridge network, and a
//!   busybox image made by `docker import`.
//! - [`NodeProcess`]: an `agora node run` process.
//! - [`TlsServer`]: an HTTPS server on loopback, with a certificate from a certificate authority
//!   made for it.
//!
//! Every service runs as a child started by [`reaper`], which asks the kernel to kill it when the
//! test process dies, so even a test that is killed leaves no server running. When a service cannot
//! start, the test fails with the reason; nothing is skipped.
//!
//! This crate is not a mock of anything: every service is the real program.

mod anvil;
pub mod data;
mod docker;
pub mod flow;
pub mod netns;
mod node;
mod pg;
pub mod reaper;
mod tls;

pub use anvil::Anvil;
pub use docker::{BUSYBOX_IMAGE, Dockerd};
pub use node::{NodeProcess, agora_bin, run_agora};
pub use pg::TestPg;
pub use tls::TlsServer;

use std::path::PathBuf;

/// A test module in `tests/wasm/NAME.wat`, compiled.
pub fn module(name: &str) -> Vec<u8> {
    let path = workspace_root().join("tests/wasm").join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Answers every HTTP GET on a loopback port with `body`, for as long as the test runs; the
/// port's address.
pub async fn serve_http(body: Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = vec![0; 8192];
                let _read = socket.read(&mut request).await;
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                // A client that goes away early is not this server's concern.
                let _client_gone = async {
                    socket.write_all(head.as_bytes()).await?;
                    socket.write_all(&body).await?;
                    socket.shutdown().await
                }
                .await;
            });
        }
    });
    addr
}

/// A free TCP port on 127.0.0.1 (bound, then released for the service to take).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// The workspace root, where `node_modules/` and `target/` are.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A temporary folder that the `postgres` user can traverse (the server runs as that user when
/// the tests run as root).
pub fn shared_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new().prefix("agora-test-").tempdir().expect("create a temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod temp dir");
    dir
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `secs` seconds with `what`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A proxy on a free loopback port in front of the HTTP/1.1 server at `upstream`: its URL, and the
/// number of requests that went through it (request lines, keep-alive connections included).
/// Used to count a node's chain calls.
pub async fn counting_proxy(
    upstream: std::net::SocketAddr,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
            let count = counted.clone();
            tokio::spawn(async move {
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let back =
                    tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
                const LINE_END: &[u8] = b"HTTP/1.1\r\n";
                let mut buf = vec![0u8; 16 * 1024];
                // The end of the previous read, so a request line split across reads counts once.
                let mut carry: Vec<u8> = Vec::new();
                while let Ok(n) = from_client.read(&mut buf).await {
                    if n == 0 || to_server.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    carry.extend_from_slice(&buf[..n]);
                    let found = carry.windows(LINE_END.len()).filter(|w| *w == LINE_END).count();
                    count.fetch_add(found as u64, Ordering::Relaxed);
                    let keep = carry.len().min(LINE_END.len() - 1);
                    carry.drain(..carry.len() - keep);
                }
                let _server_done = to_server.shutdown().await;
                let _copied = back.await;
            });
        }
    });
    (url, count)
}
