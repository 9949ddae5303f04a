//! A client for a running node's REST API, found through `node.json` in its data dir.

use crate::Error;
use crate::datadir::read_node_file;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;

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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        Ok(Self { http, base: node.api_url, token: node.admin_token })
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
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| format!("the node answered {status}"));
            return Err(Error::Refused { status: status.as_u16(), message });
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

    /// Posts raw bytes (a blob).
    pub async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T, Error> {
        self.send(self.http.post(self.url(path)).body(body))
            .await?
            .ok_or_else(|| Error::Http("empty answer".into()))
    }

    /// Gets raw bytes (a blob).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.bytes(self.http.get(self.url(path))).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), Error> {
        self.send::<serde_json::Value>(self.http.delete(self.url(path))).await.map(|_| ())
    }
}
