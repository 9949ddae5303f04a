use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a folder could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: names must be UTF-8 to be hashed")]
    NotUtf8(PathBuf),
    #[error("{0}: names with a newline cannot be hashed (the hash is line-based)")]
    Newline(PathBuf),
    #[error("{0}: a results folder holds only files and folders, not links or devices")]
    NotAFile(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// The `h1:` hash of a folder: `"h1:" + base64(sha256(lines))`, where `lines` are
/// `"<sha256 hex of the file>  <path relative to dir, with />\n"` for every file, sorted by path.
/// Folders themselves (and so empty folders) do not count, as in Go's `dirhash.Hash1`.
pub fn results_hash(dir: &Path) -> Result<String, Error> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut summary = Sha256::new();
    for (rel, path) in &files {
        summary.update(format!("{}  {rel}\n", file_sha256(path)?).as_bytes());
    }
    Ok(format!("h1:{}", base64::engine::general_purpose::STANDARD.encode(summary.finalize())))
}

/// A folder's digest as hex: the SHA-256 inside its [`results_hash`] (the same value, spelled in
/// hex). Datasets are named by it.
pub fn folder_sha256(dir: &Path) -> Result<String, Error> {
    if !dir.is_dir() {
        return Err(Error::Io { path: dir.to_path_buf(), source: std::io::Error::other("not a folder") });
    }
    let h1 = results_hash(dir)?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(&h1["h1:".len()..])
        .expect("results_hash writes base64");
    Ok(hex::encode(digest))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).map_err(|_| Error::NotAFile(path.clone()))?;
            let rel = rel.to_str().ok_or_else(|| Error::NotUtf8(path.clone()))?;
            if rel.contains('\n') {
                return Err(Error::Newline(path));
            }
            out.push((rel.to_string(), path));
        } else {
            return Err(Error::NotAFile(path));
        }
    }
    Ok(())
}

fn file_sha256(path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    // The expected values were worked out outside this code, with coreutils:
    //   printf '%s  %s\n' "$(printf 'hello\n' | sha256sum | cut -c1-64)" stdout \
    //     | sha256sum | cut -c1-64 | xxd -r -p | base64
    // and likewise for the other folders (lines sorted by path, joined, hashed).

    #[test]
    fn an_empty_folder_hashes_the_empty_input() {
        let dir = folder(&[]);
        // sha256 of no bytes, base64.
        assert_eq!(results_hash(dir.path()).unwrap(), "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn one_file() {
        let dir = folder(&[("stdout", "hello\n")]);
        assert_eq!(results_hash(dir.path()).unwrap(), "h1:vnJV+YNEiNjRnrBG82KFei86R4NTsVz9/ZPIzS0rFks=");
    }

    #[test]
    fn nested_files_sort_by_their_slash_path() {
        let dir = folder(&[
            ("stdout", "hello\n"),
            ("exitCode", "0"),
            ("outputs/b.txt", "b"),
            ("outputs/a/z.csv", "1,2\n"),
            ("stderr", ""),
        ]);
        assert_eq!(results_hash(dir.path()).unwrap(), "h1:WJwt9btba3v7uEWyS5sh0AaQRJFUq6fz2MXgzV/eQDs=");
        // Empty folders do not count.
        std::fs::create_dir_all(dir.path().join("outputs/empty")).unwrap();
        assert_eq!(results_hash(dir.path()).unwrap(), "h1:WJwt9btba3v7uEWyS5sh0AaQRJFUq6fz2MXgzV/eQDs=");
    }

    #[test]
    fn any_change_of_content_or_name_changes_the_hash() {
        let base = results_hash(folder(&[("stdout", "hello\n")]).path()).unwrap();
        assert_ne!(results_hash(folder(&[("stdout", "hello!\n")]).path()).unwrap(), base);
        assert_ne!(results_hash(folder(&[("stdout2", "hello\n")]).path()).unwrap(), base);
    }

    #[test]
    fn links_and_missing_folders_are_errors() {
        let dir = folder(&[("stdout", "x")]);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(matches!(results_hash(dir.path()), Err(Error::NotAFile(_))));
        assert!(matches!(results_hash(&dir.path().join("nope")), Err(Error::Io { .. })));
    }
}
