//! `transfer` commands: where data may come from and go to, checked before a batch runs.

use crate::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// How long an `http(s)://` transfer may take to connect, and to bring its next bytes.
const HTTP_CONNECT: std::time::Duration = std::time::Duration::from_secs(20);
const HTTP_READ: std::time::Duration = std::time::Duration::from_secs(60);

/// The client of `http(s)://` transfers: rustls, trusting the system's certificate authorities
/// and those in `ca_certs` (PEM files: a private registry's, or a test's). A file that cannot be
/// read or holds no certificate is an error naming it.
pub fn http_client(ca_certs: &[PathBuf]) -> Result<reqwest::Client> {
    let mut roots = Vec::new();
    for path in ca_certs {
        let bad = |why: String| Error::BadInput(format!("CA certificate file {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(explain(&e)))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        roots.extend(certs);
    }
    reqwest::Client::builder()
        .connect_timeout(HTTP_CONNECT)
        .read_timeout(HTTP_READ)
        .tls_certs_merge(roots)
        .build()
        .map_err(|e| Error::Io(format!("HTTP client: {}", explain(&e))))
}

/// An error with its causes, outermost first: what went wrong under a failed request (an
/// untrusted certificate, a refused connection) is in the causes.
pub fn explain(error: &dyn std::error::Error) -> String {
    let mut said = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !said.contains(&text) {
            said = format!("{said}: {text}");
        }
        cause = inner.source();
    }
    said
}

/// A transfer, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum Transfer {
    /// Into the activity's `/input` folder, at `to` (relative).
    In { from: Source, to: PathBuf },
    /// From the last run's `/output` folder, at `from` (relative), into a blob.
    OutToBlob { from: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Http(String),
    /// A file under one of the provider's transfer folders (checked, canonical).
    File(PathBuf),
    /// A blob on the requestor's node.
    Blob(String),
}

/// A path inside the activity: relative, without `..`.
fn inside(path: &str, folder: &str, url: &str) -> Result<PathBuf> {
    let relative = Path::new(path);
    if path.is_empty() || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Error::BadInput(format!("{url}: a path under {folder}/ without '..' is needed")));
    }
    Ok(relative.to_path_buf())
}

/// Checks one `transfer {from, to}` against what the provider allows.
pub fn check(from: &str, to: &str, allowed: &[PathBuf]) -> Result<Transfer> {
    if let Some(rest) = to.strip_prefix("container:/input/") {
        let to = inside(rest, "/input", to)?;
        let source = if from.starts_with("http://") || from.starts_with("https://") {
            Source::Http(from.to_string())
        } else if let Some(path) = from.strip_prefix("file://") {
            let canonical =
                std::fs::canonicalize(path).map_err(|e| Error::BadInput(format!("{from}: {e}")))?;
            let permitted = allowed
                .iter()
                .filter_map(|dir| std::fs::canonicalize(dir).ok())
                .any(|dir| canonical.starts_with(&dir));
            if !permitted {
                // The folders themselves are the provider's own paths: its operator says them.
                return Err(Error::Forbidden(format!(
                    "{from} is outside the folders this provider allows transfers from"
                )));
            }
            Source::File(canonical)
        } else if let Some(hex) = crate::blobs::parse_blob_url(from) {
            Source::Blob(hex)
        } else {
            return Err(Error::BadInput(format!(
                "{from}: a transfer comes from http(s)://, file:// (allowed folders) or blob:sha256:<hex>"
            )));
        };
        return Ok(Transfer::In { from: source, to });
    }
    if let Some(rest) = from.strip_prefix("container:/output/") {
        let from_path = inside(rest, "/output", from)?;
        if to == "blob:" {
            return Ok(Transfer::OutToBlob { from: from_path });
        }
        return Err(Error::BadInput(format!(
            "{to}: outputs go to \"blob:\" (fetched back by the requestor's node)"
        )));
    }
    Err(Error::BadInput(format!(
        "transfer from {from} to {to}: one side must be container:/input/… (in) or container:/output/… (out)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_allowed_and_what_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.csv"), "a,b\n").unwrap();
        let allowed = vec![dir.path().to_path_buf()];
        let file = format!("file://{}", dir.path().join("data.csv").display());
        assert!(matches!(check(&file, "container:/input/data.csv", &allowed), Ok(Transfer::In { .. })));
        assert!(matches!(
            check("http://127.0.0.1:9/x", "container:/input/x", &allowed),
            Ok(Transfer::In { from: Source::Http(_), .. })
        ));
        assert_eq!(
            check("container:/output/r.txt", "blob:", &allowed).unwrap(),
            Transfer::OutToBlob { from: "r.txt".into() }
        );
        let refused = check("file:///etc/passwd", "container:/input/p", &allowed).unwrap_err();
        assert!(
            matches!(&refused, Error::Forbidden(m) if m.contains("outside the folders this provider allows"))
        );
        let bad = |from: &str, to: &str| matches!(check(from, to, &allowed), Err(Error::BadInput(_)));
        assert!(bad(&file, "container:/input/../escape"));
        assert!(bad("ftp://x/y", "container:/input/y"));
        assert!(bad("blob:sha256:abc", "container:/input/y"));
    }
}
