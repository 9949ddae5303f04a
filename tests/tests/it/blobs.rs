//! Blobs of any size go into a node and come out as they stream, never whole in memory; what is
//! over the limit, too big for the disk, or cut short is refused and leaves nothing behind.

use agora_tests::flow::post;
use agora_tests::{NodeProcess, TestPg};
use serde_json::json;
use std::io::{Read, Write};

/// Files in the node's blob folder.
fn blob_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("n/blobs")).map(|d| d.count()).unwrap_or(0)
}

/// `POST /blobs` over a plain socket, announcing `announced` bytes and sending `body`, then
/// closing its side: the node's whole answer, as text. (A client still writing a body when the
/// node answers early and closes would see a broken pipe rather than the answer.) The read is
/// bounded in case the node kept the connection open.
fn raw_upload(node: &NodeProcess, announced: u64, body: &[u8]) -> String {
    let addr = node.node.api_url.trim_start_matches("http://").to_string();
    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        socket,
        "POST /blobs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n",
        node.node.admin_token
    )
    .unwrap();
    socket.write_all(body).unwrap();
    socket.shutdown(std::net::Shutdown::Write).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _closed_or_timed_out = socket.read_to_string(&mut answer);
    answer
}

#[tokio::test]
async fn blobs_stream_in_and_out_and_what_is_refused_leaves_nothing() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let limit = 8 << 20;
    let node = NodeProcess::start(
        &root.path().join("n"),
        &["--max-blob-bytes", &limit.to_string()],
        &[("DATABASE_URL", pg.url().as_str())],
    )
    .await;

    // 6 MiB, over the 2 MB that JSON bodies may carry, through the CLI and back.
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = root.path().join("six.bin");
    std::fs::write(&file, &data).unwrap();
    let out = node.cli(&["blob", "put", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let digest = agora_activity::BlobStore::open(root.path().join("reference")).unwrap().put(&data).unwrap();
    assert_eq!(url, format!("blob:sha256:{digest}"));
    let back = root.path().join("back.bin");
    let out = node.cli(&["blob", "get", &url, "--output", back.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert!(
        out.stderr.is_empty(),
        "no progress when not on a terminal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = blob_files(root.path());

    // Over the node's limit: 413, with the limit, answered from the announced length before the
    // body is read.
    let answer = raw_upload(&node, limit + 1, &[]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(&limit.to_string()), "the limit is said: {answer}");
    assert_eq!(blob_files(root.path()), kept, "nothing left of a refused blob");

    // A JSON body over its limit: 413, with the limit.
    let big = json!({"properties": {"x": "y".repeat(3 << 20)}, "constraints": "()"});
    let (status, said) = post(&node, "/market-api/v1/demands", big).await;
    assert_eq!(status, 413, "{said}");
    assert!(said["message"].as_str().unwrap().contains("2097152"), "{said}");

    // An upload that announces more than it sends, then goes: refused, nothing left.
    let answer = raw_upload(&node, 1_000_000, &[1; 1000]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(blob_files(root.path()), kept, "nothing left of an upload cut short: {answer}");
}

#[tokio::test]
async fn a_blob_the_disk_cannot_hold_is_refused_before_it_is_written() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        &root.path().join("n"),
        &["--max-blob-bytes", &u64::MAX.to_string()],
        &[("DATABASE_URL", pg.url().as_str())],
    )
    .await;
    // An upload that announces a petabyte: no disk here has that free.
    let answer = raw_upload(&node, 1 << 50, &[]);
    assert!(answer.starts_with("HTTP/1.1 507"), "{answer}");
    assert!(answer.contains("bytes free"), "{answer}");
    assert_eq!(blob_files(root.path()), 0);
}
