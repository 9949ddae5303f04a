//! `agora gftp server`: the file service Golem's SDKs start as `gftp server` and talk JSON-RPC 2.0
//! to, one message per line on its stdin and stdout. Files are the node's blobs:
//!
//! - `publish {files}`: each file is uploaded to the node's blob store and named
//!   `gftp://<node>/<sha256>`; a provider fetches it from the node over the network and keeps it
//!   only if it hashes to its name.
//! - `receive {output_file}`: a `gftp://` URL the node hands out, standing for a file in the
//!   node's outputs folder (the link's `file`); an output a batch transfers to it is written there
//!   by the node before the command's result is reported, and the SDK copies it on to its
//!   `output_file`. The node names the file: a caller never chooses where the node writes.
//! - `close {urls}`, `version`, `shutdown`.
//!
//! The node is the one Golem's SDKs are pointed at (`YAGNA_API_URL`, `YAGNA_APPKEY`), or else the
//! one running with the data dir. It must run on the node's machine, as a user that can read the
//! node's outputs folder.

use crate::Error;
use crate::client::Client;
use serde_json::{Value, json};
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The SDKs' default node address, when only the app-key is given.
const YAGNA_DEFAULT_URL: &str = "http://127.0.0.1:7465";

/// The node's client: from Golem's environment variables when `YAGNA_APPKEY` is set, else from
/// the node's data dir.
pub fn client(data_dir: impl FnOnce() -> Result<Client, Error>) -> Result<Client, Error> {
    match std::env::var("YAGNA_APPKEY") {
        Ok(key) if !key.is_empty() => {
            let url = std::env::var("YAGNA_API_URL").unwrap_or_else(|_| YAGNA_DEFAULT_URL.into());
            Client::new(url.trim_end_matches('/'), &key)
        }
        _ => data_dir(),
    }
}

/// A JSON-RPC error: the code and the message the SDK shows.
struct Failure(i64, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(-32000, e.to_string())
    }
}

/// Serves requests from stdin until `shutdown` or the end of stdin. Without a node (`client`
/// failed), `version` still answers and the others answer why.
pub async fn serve(client: Result<Client, Error>) -> Result<(), Error> {
    answer(client, tokio::io::BufReader::new(tokio::io::stdin()), tokio::io::stdout()).await
}

/// Answers each request line of `input` with one line on `output`.
async fn answer(
    client: Result<Client, Error>,
    input: impl tokio::io::AsyncBufRead + Unpin,
    mut stdout: impl tokio::io::AsyncWrite + Unpin,
) -> Result<(), Error> {
    let mut lines = input.lines();
    let mut server = Server { client: client.map_err(|e| e.to_string()), node: None };
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let (id, answer, stop) = match serde_json::from_str::<Value>(&line) {
            Ok(request) => {
                let id = request.get("id").cloned().unwrap_or(Value::Null);
                let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
                let params = request.get("params").cloned().unwrap_or(Value::Null);
                (id, server.call(&method, &params).await, method == "shutdown")
            }
            Err(e) => (Value::Null, Err(Failure(-32700, format!("not JSON: {e}"))), false),
        };
        let reply = match answer {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(Failure(code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        };
        stdout.write_all(format!("{reply}\n").as_bytes()).await?;
        stdout.flush().await?;
        if stop {
            break;
        }
    }
    Ok(())
}

struct Server {
    client: Result<Client, String>,
    /// The node's address, asked once.
    node: Option<String>,
}

impl Server {
    async fn call(&mut self, method: &str, params: &Value) -> Result<Value, Failure> {
        match method {
            // A semantic version first, as the SDKs parse it.
            "version" => Ok(json!(format!("{} (agora)", env!("CARGO_PKG_VERSION")))),
            "publish" => {
                let mut links = Vec::new();
                for file in strings(params, "files")? {
                    let path = absolute(&file)?;
                    let stored: Value = self.client()?.post_file("/blobs", &path, |_| {}).await?;
                    let sha256 = answered(&stored, "sha256")?;
                    links.push(
                        json!({"file": file, "url": format!("gftp://{}/{sha256}", self.node().await?)}),
                    );
                }
                Ok(json!(links))
            }
            "receive" => {
                // Where the SDK wants the output in the end: it copies it there from the link's file.
                string(params, "output_file")?;
                let opened: Value = self.client()?.post("/blobs/destinations", &json!({})).await?;
                Ok(json!({"file": answered(&opened, "file")?, "url": answered(&opened, "url")?}))
            }
            // Published files stay blobs of the node (others may name the same content); a
            // destination is used up by the batch that sends an output to it.
            "close" => Ok(json!(strings(params, "urls")?.iter().map(|_| "ok").collect::<Vec<_>>())),
            "shutdown" => Ok(json!("ok")),
            other => Err(Failure(
                -32601,
                format!("no method {other:?}: this gftp has version, publish, receive, close and shutdown"),
            )),
        }
    }

    fn client(&self) -> Result<&Client, Failure> {
        self.client.as_ref().map_err(|e| Failure(-32000, e.clone()))
    }

    async fn node(&mut self) -> Result<String, Failure> {
        if let Some(node) = &self.node {
            return Ok(node.clone());
        }
        let me: Value = self.client()?.get("/me").await?;
        let node = answered(&me, "identity")?;
        self.node = Some(node.clone());
        Ok(node)
    }
}

/// A string field of the node's answer.
fn answered(answer: &Value, field: &str) -> Result<String, Failure> {
    answer[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Failure(-32000, format!("the node's answer has no {field:?}: {answer}")))
}

fn param<'a>(params: &'a Value, name: &str) -> Result<&'a Value, Failure> {
    params.get(name).ok_or_else(|| Failure(-32602, format!("the parameter {name:?} is missing")))
}

fn string(params: &Value, name: &str) -> Result<String, Failure> {
    param(params, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Failure(-32602, format!("the parameter {name:?} is a string")))
}

fn strings(params: &Value, name: &str) -> Result<Vec<String>, Failure> {
    let bad = || Failure(-32602, format!("the parameter {name:?} is a list of strings"));
    param(params, name)?
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

/// A path given relative to where this server runs, made absolute for the node.
fn absolute(file: &str) -> Result<PathBuf, Failure> {
    std::path::absolute(file).map_err(|e| Failure(-32602, format!("{file}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers to `requests`, one per line, from a server without a node.
    async fn answers(requests: &[&str]) -> Vec<Value> {
        let input = requests.join("\n") + "\n";
        let mut output = Vec::new();
        let no_node = Err(Error::Http("no node here".into()));
        answer(no_node, input.as_bytes(), &mut output).await.unwrap();
        String::from_utf8(output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[tokio::test]
    async fn each_request_has_one_answer_line_with_its_id_and_shutdown_ends_the_server() {
        let got = answers(&[
            r#"{"jsonrpc": "2.0", "id": 1, "method": "version", "params": {}}"#,
            r#"{"jsonrpc": "2.0", "id": 2, "method": "publish", "params": {"files": ["a.txt"]}}"#,
            r#"{"jsonrpc": "2.0", "id": 3, "method": "publish", "params": {"files": "a.txt"}}"#,
            r#"{"jsonrpc": "2.0", "id": 4, "method": "receive", "params": {}}"#,
            r#"{"jsonrpc": "2.0", "id": 5, "method": "upload", "params": {}}"#,
            "not json",
            r#"{"jsonrpc": "2.0", "id": 6, "method": "close", "params": {"urls": ["gftp://x/y"]}}"#,
            r#"{"jsonrpc": "2.0", "id": 7, "method": "shutdown", "params": {}}"#,
            r#"{"jsonrpc": "2.0", "id": 8, "method": "version", "params": {}}"#,
        ])
        .await;
        assert_eq!(got.len(), 8, "nothing after shutdown: {got:#?}");
        // A semantic version first: the SDK parses it.
        assert!(got[0]["result"].as_str().unwrap().starts_with(env!("CARGO_PKG_VERSION")), "{}", got[0]);
        let error = |i: usize| (got[i]["id"].clone(), got[i]["error"]["code"].as_i64().unwrap());
        assert_eq!(error(1), (json!(2), -32000));
        assert!(got[1]["error"]["message"].as_str().unwrap().contains("no node here"), "{}", got[1]);
        assert_eq!(error(2), (json!(3), -32602));
        assert_eq!(error(3), (json!(4), -32602));
        assert!(got[3]["error"]["message"].as_str().unwrap().contains("output_file"), "{}", got[3]);
        assert_eq!(error(4), (json!(5), -32601));
        assert_eq!(error(5), (Value::Null, -32700));
        assert_eq!(got[6]["result"], json!(["ok"]));
        assert_eq!((got[7]["id"].clone(), got[7]["result"].clone()), (json!(7), json!("ok")));
        assert!(got.iter().all(|a| a["jsonrpc"] == "2.0"));
    }
}
