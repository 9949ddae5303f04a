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
    /// An `http(s)://` download; with a digest (Golem's `hash:<algorithm>:<hex>:<url>`), its
    /// content must hash to it.
    Http { url: String, digest: Option<Digest> },
    /// A file under one of the provider's transfer folders (checked, canonical).
    File(PathBuf),
    /// A blob on the requestor's node.
    Blob(String),
}

/// What a downloaded package must hash to: Golem names its packages `hash:sha3:<hex>:<url>`
/// (SHA3-224 in its image registry; the other SHA3 sizes by the hex's length) or
/// `hash:sha256:<hex>:<url>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub algorithm: Algorithm,
    /// Lowercase hex.
    pub hex: String,
}

impl Digest {
    /// A hasher for this digest's algorithm.
    pub fn hasher(&self) -> Box<dyn sha2::digest::DynDigest + Send> {
        use sha2::Digest as _;
        match self.algorithm {
            Algorithm::Sha3_224 => Box::new(sha3::Sha3_224::new()),
            Algorithm::Sha3_256 => Box::new(sha3::Sha3_256::new()),
            Algorithm::Sha3_384 => Box::new(sha3::Sha3_384::new()),
            Algorithm::Sha3_512 => Box::new(sha3::Sha3_512::new()),
            Algorithm::Sha256 => Box::new(sha2::Sha256::new()),
        }
    }
}

/// `hash:<algorithm>:<hex>:<url>` (or `hash://…`, as Golem also writes it) → the URL and its
/// digest; `None` when `from` is not a hash URL at all.
fn hashed(from: &str) -> Option<Result<(String, Digest)>> {
    let rest = from.strip_prefix("hash://").or_else(|| from.strip_prefix("hash:"))?;
    let bad = |why: &str| Some(Err(Error::BadInput(format!("{from}: {why}"))));
    let mut parts = rest.splitn(3, ':');
    let (Some(name), Some(hex), Some(url)) = (parts.next(), parts.next(), parts.next()) else {
        return bad("a hash URL is hash:<sha3|sha256>:<hex digest>:<http(s) URL>");
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("the digest is not hex");
    }
    let algorithm = match (name.to_ascii_lowercase().as_str(), hex.len()) {
        ("sha3", 56) => Algorithm::Sha3_224,
        ("sha3", 64) => Algorithm::Sha3_256,
        ("sha3", 96) => Algorithm::Sha3_384,
        ("sha3", 128) => Algorithm::Sha3_512,
        ("sha256", 64) => Algorithm::Sha256,
        ("sha3" | "sha256", _) => return bad("the digest's length fits no SHA3 size or SHA-256"),
        _ => return bad("the algorithm is sha3 or sha256"),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return bad("the package itself comes from an http(s):// URL");
    }
    Some(Ok((url.to_string(), Digest { algorithm, hex: hex.to_ascii_lowercase() })))
}

/// `gftp://<node>/<sha256 hex>`: a file the requestor's node published for its activities, a
/// blob on that node (what `agora gftp server` answers a `publish` with).
pub fn parse_gftp_blob(url: &str) -> Option<String> {
    let (_node, name) = url.strip_prefix("gftp://")?.split_once('/')?;
    crate::blobs::parse_blob_url(&format!("blob:sha256:{name}"))
}

/// Whether `to` is an output's destination on the requestor's node: `blob:`, or a `gftp://` URL
/// its `agora gftp server` handed out for a `receive`.
fn is_output_destination(to: &str) -> bool {
    to == "blob:" || to.strip_prefix("gftp://").is_some_and(|rest| rest.contains('/'))
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
            Source::Http { url: from.to_string(), digest: None }
        } else if let Some(checked) = hashed(from) {
            let (url, digest) = checked?;
            Source::Http { url, digest: Some(digest) }
        } else if let Some(hex) = parse_gftp_blob(from) {
            Source::Blob(hex)
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
                "{from}: a transfer comes from http(s)://, hash:<sha3|sha256>:<hex>:<http(s) URL>, \
                 file:// (allowed folders), blob:sha256:<hex> or gftp://<node>/<sha256 hex>"
            )));
        };
        return Ok(Transfer::In { from: source, to });
    }
    if let Some(rest) = from.strip_prefix("container:/output/") {
        let from_path = inside(rest, "/output", from)?;
        if is_output_destination(to) {
            return Ok(Transfer::OutToBlob { from: from_path });
        }
        return Err(Error::BadInput(format!(
            "{to}: outputs go to \"blob:\" or a gftp:// URL (fetched back by the requestor's node)"
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
            Ok(Transfer::In { from: Source::Http { digest: None, .. }, .. })
        ));
        let gftp = format!("gftp://0xab/{}", "Cd".repeat(32));
        assert_eq!(
            check(&gftp, "container:/input/in.txt", &allowed).unwrap(),
            Transfer::In { from: Source::Blob("cd".repeat(32)), to: "in.txt".into() }
        );
        assert_eq!(
            check("container:/output/r.txt", "gftp://0xab/receive-1", &allowed).unwrap(),
            Transfer::OutToBlob { from: "r.txt".into() }
        );
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
        assert!(bad("gftp://0xab/not-a-digest", "container:/input/y"));
        assert!(bad("container:/output/r.txt", "gftp://no-name"));
    }

    #[test]
    fn golem_hash_urls_name_their_digest_and_an_http_source() {
        let url = "http://127.0.0.1:9/m.wasm";
        let source = |from: &str| match check(from, "container:/input/package", &[]) {
            Ok(Transfer::In { from: Source::Http { url, digest: Some(d) }, .. }) => {
                Ok((url, d.algorithm, d.hex))
            }
            other => Err(format!("{other:?}")),
        };
        let sha3_224 = "AB".repeat(28);
        assert_eq!(
            source(&format!("hash:sha3:{sha3_224}:{url}")).unwrap(),
            (url.to_string(), Algorithm::Sha3_224, sha3_224.to_ascii_lowercase())
        );
        let hex64 = "0f".repeat(32);
        assert_eq!(source(&format!("hash://sha3:{hex64}:{url}")).unwrap().1, Algorithm::Sha3_256);
        assert_eq!(source(&format!("hash:sha256:{hex64}:https://x/m")).unwrap().1, Algorithm::Sha256);
        for (from, why) in [
            (format!("hash:sha3:{}:{url}", "ab".repeat(30)), "length fits no SHA3"),
            (format!("hash:md5:{hex64}:{url}"), "sha3 or sha256"),
            (format!("hash:sha3:{}:{url}", "zz".repeat(28)), "not hex"),
            (format!("hash:sha3:{sha3_224}:file:///etc/passwd"), "http(s)://"),
            ("hash:sha3".to_string(), "hash:<sha3|sha256>"),
        ] {
            let error = check(&from, "container:/input/package", &[]).unwrap_err();
            assert!(matches!(&error, Error::BadInput(m) if m.contains(why)), "{from}: {error}");
        }
        // The hasher is the algorithm named: SHA3-224 of nothing.
        let digest = Digest { algorithm: Algorithm::Sha3_224, hex: String::new() };
        assert_eq!(
            hex::encode(digest.hasher().finalize()),
            "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"
        );
    }
}
