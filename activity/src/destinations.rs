//! Where outputs land on the requestor's machine: a `gftp://` URL stands for a file in the node's
//! outputs folder, and an output a batch transfers to that URL is written there once it is
//! fetched back, before its result is reported. This is what Golem's `gftp receive` gives its
//! SDKs: the file is in place when the command's result arrives (the SDK copies it on from there).
//! The node names the file itself: a caller never chooses where the node writes.

use crate::exescript::Command;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a destination, and its file, are kept.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How often the outputs folder is swept of files a day old: a sweep reads the whole folder.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// The most destinations open at once; more are refused until some are used or expire.
const MAX_OPEN: usize = 10_000;

/// A command of a batch: (activity, batch, index).
type CommandKey = (String, String, usize);

/// Destinations handed out and not yet used, and those a running batch will fill, each with
/// when it was opened.
#[derive(Debug, Default)]
pub(crate) struct Destinations {
    /// The outputs folder; none means this node keeps no outputs for `gftp`.
    dir: Option<PathBuf>,
    /// `gftp://…` URL → the file it stands for.
    open: Mutex<HashMap<String, (PathBuf, Instant)>>,
    /// A batch's command → the file its output goes to.
    expected: Mutex<HashMap<CommandKey, (PathBuf, Instant)>>,
    /// When the outputs folder was last swept; never, at first.
    swept: Mutex<Option<Instant>>,
}

impl Destinations {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        Self { dir, ..Self::default() }
    }

    /// A new URL, on the node `node`, and the (empty) file in the outputs folder it stands for.
    pub(crate) fn open(&self, node: &str) -> Result<(String, PathBuf)> {
        let Some(dir) = &self.dir else {
            return Err(Error::Conflict("this node keeps no outputs folder for gftp destinations".into()));
        };
        let mut open = self.open.lock().expect("destinations");
        self.forget_old(&mut open, dir);
        if open.len() >= MAX_OPEN {
            return Err(Error::Busy(format!(
                "{MAX_OPEN} destinations are open and unused; use or let some expire (a day) first"
            )));
        }
        let io = |e: std::io::Error| Error::Io(format!("outputs folder {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let id = crate::new_id();
        let file = dir.join(&id);
        // Made now, so the folder is known to be writable, and readable by the caller.
        std::fs::File::create(&file).map_err(io)?;
        let url = format!("gftp://{node}/{id}");
        open.insert(url.clone(), (file.clone(), Instant::now()));
        Ok((url, file))
    }

    /// Forgets destinations a day old, and (once an hour, not on every call) removes files a day
    /// old from the outputs folder: their clients are gone.
    fn forget_old(&self, open: &mut HashMap<String, (PathBuf, Instant)>, dir: &Path) {
        open.retain(|_, (_, opened)| opened.elapsed() < KEEP);
        self.expected.lock().expect("destinations").retain(|_, (_, opened)| opened.elapsed() < KEEP);
        {
            let mut swept = self.swept.lock().expect("destinations");
            if swept.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return;
            }
            *swept = Some(Instant::now());
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > KEEP));
            if old {
                let _gone_already = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The commands of a batch that send an output to a destination, and its file; the
    /// destinations are used up by the batch. A `gftp://` target this node did not hand out, or
    /// that another batch used, is refused: its output would land nowhere.
    pub(crate) fn claim(&self, commands: &[Command]) -> Result<Vec<(usize, PathBuf)>> {
        let mut open = self.open.lock().expect("destinations");
        let mut claimed = Vec::new();
        for (index, command) in commands.iter().enumerate() {
            let Command::Transfer(t) = command else { continue };
            if !t.to.starts_with("gftp://") {
                continue;
            }
            let Some((file, _)) = open.get(&t.to) else {
                // Nothing is taken from a batch that is refused.
                for (i, file) in claimed {
                    if let Some(Command::Transfer(t)) = commands.get(i) {
                        open.insert(t.to.clone(), (file, Instant::now()));
                    }
                }
                return Err(Error::BadInput(format!(
                    "command {index}: {} is not a destination this node handed out, or another batch used it; \
                     ask for one with POST /blobs/destinations",
                    t.to
                )));
            };
            claimed.push((index, file.clone()));
            open.remove(&t.to);
        }
        Ok(claimed)
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

    fn transfer_to(url: &str) -> Vec<Command> {
        let script = format!(
            r#"[{{"run": {{"entry_point": "main"}}}}, {{"transfer": {{"from": "container:/output/o", "to": "{url}"}}}}]"#
        );
        parse(&script).unwrap()
    }

    #[test]
    fn an_output_lands_once_in_the_file_its_destination_stands_for() {
        let dir = tempfile::tempdir().unwrap();
        let destinations = Destinations::new(Some(dir.path().join("outputs")));
        let (url, file) = destinations.open("0xab").unwrap();
        assert!(url.starts_with("gftp://0xab/"), "{url}");
        assert!(file.starts_with(dir.path().join("outputs")) && file.is_file(), "{}", file.display());
        let commands = transfer_to(&url);
        let claimed = destinations.claim(&commands).unwrap();
        assert_eq!(claimed, [(1, file.clone())]);
        // A batch the provider refused gives its destinations back; one that ran uses them up.
        destinations.reopen(&commands, claimed);
        let claimed = destinations.claim(&commands).unwrap();
        assert_eq!(claimed.len(), 1);
        let error = destinations.claim(&commands).unwrap_err();
        assert!(matches!(&error, Error::BadInput(m) if m.contains("another batch used it")), "{error}");
        destinations.expect("act", "batch", claimed);
        assert_eq!(destinations.file_for("act", "batch", 1), Some(file.clone()));
        assert_eq!(destinations.file_for("act", "batch", 0), None);

        let blob = dir.path().join("blob");
        std::fs::write(&blob, b"the output\n").unwrap();
        destinations.deliver("act", "batch", 1, &blob, &file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"the output\n");
        assert_eq!(destinations.file_for("act", "batch", 1), None, "delivered once");
        assert_eq!(
            std::fs::read_dir(dir.path().join("outputs")).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_target_the_node_did_not_hand_out_is_refused_and_nothing_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let destinations = Destinations::new(Some(dir.path().to_path_buf()));
        let (url, _) = destinations.open("0xab").unwrap();
        let script = format!(
            r#"[{{"transfer": {{"from": "container:/output/a", "to": "{url}"}}}},
                {{"transfer": {{"from": "container:/output/b", "to": "gftp://0xab/made-up"}}}}]"#
        );
        let error = destinations.claim(&parse(&script).unwrap()).unwrap_err();
        assert!(
            matches!(&error, Error::BadInput(m) if m.contains("command 1: gftp://0xab/made-up")),
            "{error}"
        );
        assert_eq!(destinations.claim(&transfer_to(&url)).unwrap().len(), 1, "the first was given back");
        // `blob:` targets are not destinations.
        assert!(destinations.claim(&transfer_to("blob:")).unwrap().is_empty());
        // A node without an outputs folder hands out none.
        let error = Destinations::new(None).open("0xab").unwrap_err();
        assert!(matches!(&error, Error::Conflict(m) if m.contains("no outputs folder")), "{error}");
    }
}
