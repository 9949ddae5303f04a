//! The node refuses what its OpenAPI document refuses, on a real node: an empty blob, a JSON body
//! that is a list, a reason that is not an object, a negative `timeout` on a listing. Each is a
//! 400 with a message, and nothing is written.

use agora_tests::flow::call;
use agora_tests::{NodeProcess, TestPg};
use reqwest::Method;
use serde_json::{Value, json};

/// The SHA-256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[tokio::test]
async fn what_the_document_refuses_the_node_refuses_and_writes_nothing() {
    let pg = TestPg::start().await;
    let root = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&root.path().join("n"), &[], &[("DATABASE_URL", pg.url().as_str())]).await;
    let client = reqwest::Client::new();
    let blobs = || client.post(node.url("/blobs")).bearer_auth(&node.node.admin_token);
    let said = |what: &str, status: u16, body: &str, wanted: &str| {
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains(wanted), "{what}: {body}");
    };

    // An empty blob, with a length of 0 and as an empty chunked stream.
    let sized = blobs().body(Vec::<u8>::new()).send().await.unwrap();
    let status = sized.status().as_u16();
    said("an empty blob", status, &sized.text().await.unwrap(), "the body is empty");
    let nothing = futures_util::stream::iter(Vec::<Result<Vec<u8>, std::io::Error>>::new());
    let chunked = blobs().body(reqwest::Body::wrap_stream(nothing)).send().await.unwrap();
    let status = chunked.status().as_u16();
    said("an empty chunked blob", status, &chunked.text().await.unwrap(), "the body is empty");
    let (status, _) = call(&node, Method::GET, &format!("/blobs/{EMPTY_SHA256}"), None).await;
    assert_eq!(status, 404, "no empty blob was stored");

    // A list where an object is documented, which serde would read into a struct's fields.
    let (_, before) = call(&node, Method::GET, "/admin/v1/identities", None).await;
    let (status, body) = call(&node, Method::POST, "/admin/v1/identities", Some(json!([null, null]))).await;
    said("a list for an identity", status, &body.to_string(), "JSON list");
    let (_, after) = call(&node, Method::GET, "/admin/v1/identities", None).await;
    assert_eq!(before, after, "no identity was made");

    // A reason that is neither an object nor null.
    for reason in [json!([1]), json!("x"), json!(5)] {
        let path = "/market-api/v1/agreements/no-such-agreement/reject";
        let (status, body) = call(&node, Method::POST, path, Some(reason.clone())).await;
        said(&format!("reason {reason}"), status, &body.to_string(), "reason: an object");
    }

    // A negative wait on the payment listings.
    for listing in ["debitNotes", "invoices", "payments"] {
        let (status, body) =
            call(&node, Method::GET, &format!("/payment-api/v1/{listing}?timeout=-1"), None).await;
        said(listing, status, &body.to_string(), "timeout must be a number of seconds");
        let (status, body): (u16, Value) =
            call(&node, Method::GET, &format!("/payment-api/v1/{listing}?timeout=0"), None).await;
        assert_eq!(status, 200, "{listing} with timeout 0: {body}");
    }
}
