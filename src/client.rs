//! A client for a running node's REST API, found through `node.json` in its data dir.

use crate::Error;
use crate::datadir::read_node_file;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;

/// How much of a file one piece of an upload carries.
const STREAM_PIECE: usize = 256 * 1024;
/// The longest a blob upload or download may take as a whole.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The node's refusal, with its message.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("the node answered {status}"));
    Error::Refused { status: status.as_u16(), message }
}

/// Talks to one node with its admin token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// The client of the node running with `data_dir`.
    pub fn for_data_dir(data_dir: &Path) -> Result<Self, Error> {
        let node = read_node_file(data_dir)?;
        Self::new(&node.api_url, &node.admin_token)
    }

    /// The client of the node at `base` (`http://host:port`), with `token` (an app-key).
    pub fn new(base: &str, token: &str) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        Ok(Self { http, base: base.to_string(), token: token.to_string() })
    }

    /// The node's REST API, `http://host:port`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends with the token; the body of a success, or the node's refusal with its message.
    async fn bytes(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, Error> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| Error::Http(format!("{e} (is the node at {} still running?)", self.base)))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Http(e.to_string()))?;
        if !status.is_success() {
            return Err(refusal(status, &bytes));
        }
        Ok(bytes.to_vec())
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<Option<T>, Error> {
        let bytes = self.bytes(req).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Http(format!("unexpected answer: {e}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send(self.http.get(self.url(path))).await?.ok_or_else(|| Error::Http("empty answer".into()))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, Error> {
        self.send(self.http.post(self.url(path)).json(body))
            .await?
            .ok_or_else(|| Error::Http("empty answer".into()))
    }

    /// Posts a file as it is read (a blob of any size), reporting each piece sent to `progress`.
    pub async fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &Path,
        progress: impl FnMut(u64) + Send + Sync + 'static,
    ) -> Result<T, Error> {
        use futures_util::StreamExt;
        let opened = tokio::fs::File::open(file)
            .await
            .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?;
        let size =
            opened.metadata().await.map_err(|e| Error::Input(format!("{}: {e}", file.display())))?.len();
        let progress = std::sync::Mutex::new(progress);
        let stream = tokio_util::io::ReaderStream::with_capacity(opened, STREAM_PIECE).map(move |piece| {
            if let Ok(piece) = &piece
                && let Ok(mut report) = progress.lock()
            {
                report(piece.len() as u64);
            }
            piece
        });
        let request = self
            .http
            .post(self.url(path))
            .timeout(TRANSFER_TIMEOUT)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream));
        self.send(request).await?.ok_or_else(|| Error::Http("empty answer".into()))
    }

    /// Gets a blob into `sink` as it arrives, reporting its size (when the node says it) and each
    /// piece written to `progress`.
    pub async fn get_to(
        &self,
        path: &str,
        sink: &mut (dyn std::io::Write + Send),
        mut progress: impl FnMut(Option<u64>, u64),
    ) -> Result<(), Error> {
        use futures_util::StreamExt;
        let resp = self
            .http
            .get(self.url(path))
            .timeout(TRANSFER_TIMEOUT)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| Error::Http(format!("{e} (is the node at {} still running?)", self.base)))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| Error::Http(e.to_string()))?;
            return Err(refusal(status, &bytes));
        }
        let total = resp.content_length();
        let mut stream = resp.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| Error::Http(format!("the download broke off: {e}")))?;
            sink.write_all(&piece)?;
            progress(total, piece.len() as u64);
        }
        sink.flush()?;
        Ok(())
    }

    pub async fn delete(&self, path: &str) -> Result<(), Error> {
        self.send::<serde_json::Value>(self.http.delete(self.url(path))).await.map(|_| ())
    }
}

/// A path segment (or query value), percent-encoded where it is not a plain name.
pub(crate) fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
