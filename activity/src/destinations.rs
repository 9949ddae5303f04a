//! Where outputs land on the requestor's machine: a `gftp://` URL stands for a file, and an
//! output a batch transfers to that URL is written there once it is fetched back, before its
//! result is reported. This is what Golem's `gftp receive` gives its SDKs: the file is in place
//! when the command's result arrives.

use crate::exescript::Command;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// How long a destination is kept for an output that does not come.
const KEEP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A command of a batch: (activity, batch, index).
type CommandKey = (String, String, usize);

/// Destinations handed out and not yet used, and those a running batch will fill, each with
/// when it was opened.
#[derive(Debug, Default)]
pub(crate) struct Destinations {
    /// `gftp://…` URL → the file it stands for.
    open: Mutex<HashMap<String, (PathBuf, Instant)>>,
    /// (activity, batch, command index) → the file that command's output goes to.
    expected: Mutex<HashMap<CommandKey, (PathBuf, Instant)>>,
}

impl Destinations {
    /// A new URL, on the node `node`, standing for `file`: an absolute path whose folder exists,
    /// and not a folder itself. What is there is replaced when an output arrives.
    pub(crate) fn open(&self, node: &str, file: &Path) -> Result<String> {
        if !file.is_absolute() {
            return Err(Error::BadInput(format!("{}: an output's file is an absolute path", file.display())));
        }
        if file.is_dir() {
            return Err(Error::BadInput(format!("{}: a folder is there", file.display())));
        }
        if !file.parent().is_some_and(Path::is_dir) {
            return Err(Error::BadInput(format!("{}: its folder does not exist", file.display())));
        }
        let url = format!("gftp://{node}/{}", crate::service::new_id());
        let mut open = self.open.lock().expect("destinations");
        // Those a day old will not be used: their client is gone.
        open.retain(|_, (_, opened)| opened.elapsed() < KEEP);
        self.expected.lock().expect("destinations").retain(|_, (_, opened)| opened.elapsed() < KEEP);
        open.insert(url.clone(), (file.to_path_buf(), Instant::now()));
        Ok(url)
    }

    /// The commands of a batch that send an output to an open destination, and its file. The
    /// destinations are used up by the batch.
    pub(crate) fn claim(&self, commands: &[Command]) -> Vec<(usize, PathBuf)> {
        let mut open = self.open.lock().expect("destinations");
        commands
            .iter()
            .enumerate()
            .filter_map(|(index, command)| match command {
                Command::Transfer(t) => open.remove(&t.to).map(|(file, _)| (index, file)),
                _ => None,
            })
            .collect()
    }

    /// Gives back what [`Self::claim`] took, when the batch did not start.
    pub(crate) fn reopen(&self, commands: &[Command], claimed: Vec<(usize, PathBuf)>) {
        let mut open = self.open.lock().expect("destinations");
        for (index, file) in claimed {
            if let Some(Command::Transfer(t)) = commands.get(index) {
                open.insert(t.to.clone(), (file, Instant::now()));
            }
        }
    }

    /// Records where the outputs of batch `batch` of `activity` go.
    pub(crate) fn expect(&self, activity: &str, batch: &str, claimed: Vec<(usize, PathBuf)>) {
        let mut expected = self.expected.lock().expect("destinations");
        for (index, file) in claimed {
            expected.insert((activity.to_string(), batch.to_string(), index), (file, Instant::now()));
        }
    }

    /// The file command `index`'s output goes to, if it goes to one.
    pub(crate) fn file_for(&self, activity: &str, batch: &str, index: usize) -> Option<PathBuf> {
        let key = (activity.to_string(), batch.to_string(), index);
        self.expected.lock().expect("destinations").get(&key).map(|(file, _)| file.clone())
    }

    /// Writes the blob at `blob` to `file`, whole or not at all: a copy beside it, renamed over
    /// it. Then the command's destination is used.
    pub(crate) fn deliver(
        &self,
        activity: &str,
        batch: &str,
        index: usize,
        blob: &Path,
        file: &Path,
    ) -> Result<()> {
        let io = |e: std::io::Error| Error::Io(format!("writing an output to {}: {e}", file.display()));
        let folder = file.parent().unwrap_or(Path::new("/"));
        let tmp = tempfile::Builder::new()
            .prefix(".agora-output")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(folder)
            .map_err(io)?;
        std::fs::copy(blob, tmp.path()).map_err(io)?;
        tmp.persist(file).map_err(|e| io(e.error))?;
        let key = (activity.to_string(), batch.to_string(), index);
        self.expected.lock().expect("destinations").remove(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exescript::parse;

    #[test]
    fn an_output_lands_once_at_the_file_its_destination_stands_for() {
        let dir = tempfile::tempdir().unwrap();
        let destinations = Destinations::default();
        let file = dir.path().join("out.txt");
        std::fs::write(&file, b"").unwrap();
        let url = destinations.open("0xab", &file).unwrap();
        assert!(url.starts_with("gftp://0xab/"), "{url}");
        let script = format!(
            r#"[{{"run": {{"entry_point": "main"}}}}, {{"transfer": {{"from": "container:/output/o", "to": "{url}"}}}}]"#
        );
        let commands = parse(&script).unwrap();
        let claimed = destinations.claim(&commands);
        assert_eq!(claimed, [(1, file.clone())]);
        // A batch the provider refused gives its destinations back; one that ran uses them up.
        destinations.reopen(&commands, claimed);
        let claimed = destinations.claim(&commands);
        assert_eq!(claimed.len(), 1);
        assert!(destinations.claim(&commands).is_empty(), "used by the first batch");
        destinations.expect("act", "batch", claimed);
        assert_eq!(destinations.file_for("act", "batch", 1), Some(file.clone()));
        assert_eq!(destinations.file_for("act", "batch", 0), None);

        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"the output\n").unwrap();
        destinations.deliver("act", "batch", 1, &blob, &file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"the output\n");
        assert_eq!(destinations.file_for("act", "batch", 1), None, "delivered once");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");

        for (bad, why) in [
            (PathBuf::from("relative.txt"), "absolute"),
            (dir.path().to_path_buf(), "a folder is there"),
            (dir.path().join("missing/out.txt"), "folder does not exist"),
        ] {
            let error = destinations.open("0xab", &bad).unwrap_err();
            assert!(matches!(&error, Error::BadInput(m) if m.contains(why)), "{error}");
        }
    }
}
