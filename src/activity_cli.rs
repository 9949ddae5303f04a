//! `agora activity …` and `agora blob …`: a requestor's scripts driving activities through the
//! node's `/activity-api/v1` and `/blobs`.

use crate::Error;
use crate::client::Client;
use crate::output::{json, table};
use agora_activity::wire::{ActivityState, ActivityUsage, CommandResult, USAGE_VECTOR};
use clap::Subcommand;
use serde_json::{Value, json as j};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum ActivityCommand {
    /// Create an activity on an Approved agreement's provider; prints its id.
    Create { agreement: String },
    /// Run an ExeScript batch from FILE (`[{"deploy": {}}, …]`) and wait for it: one line per
    /// command. Exits 1 when a command fails.
    Exec {
        activity: String,
        file: PathBuf,
        /// Give up waiting after this many seconds (the batch goes on).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// The activity's state.
    State {
        activity: String,
        #[arg(long)]
        json: bool,
    },
    /// The activity's usage counters.
    Usage {
        activity: String,
        #[arg(long)]
        json: bool,
    },
    /// End the activity on the provider.
    Destroy { activity: String },
}

#[derive(Debug, Subcommand)]
pub enum BlobCommand {
    /// Store FILE; prints its `blob:sha256:…` for a transfer or a package.
    Put { file: PathBuf },
    /// Write a blob (an output fetched back) to FILE, or to stdout.
    Get {
        sha256: String,
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// How long one results request waits on the node.
const POLL: u64 = 30;

pub async fn activity(cmd: ActivityCommand, client: &Client) -> Result<(), Error> {
    match cmd {
        ActivityCommand::Create { agreement } => {
            let created: Value =
                client.post("/activity-api/v1/activity", &j!({"agreementId": agreement})).await?;
            println!("{}", created["activityId"].as_str().unwrap_or_default());
        }
        ActivityCommand::Exec { activity, file, timeout, json: as_json } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?;
            // Checked here too, so a mistake is reported with the file's name before anything is sent.
            agora_activity::exescript::parse(&text)
                .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?;
            let batch: String = client
                .post(&format!("/activity-api/v1/activity/{activity}/exec"), &j!({"text": text}))
                .await?;
            let deadline = Instant::now() + Duration::from_secs(timeout);
            let mut shown = 0;
            let results = loop {
                let path = format!("/activity-api/v1/activity/{activity}/exec/{batch}?timeout={POLL}");
                let results: Vec<CommandResult> = client.get(&path).await?;
                // Progress on stderr, a line per command as it finishes.
                for r in results.iter().skip(shown) {
                    eprintln!(
                        "command {}: {}{}",
                        r.index,
                        r.result,
                        r.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                    );
                }
                shown = results.len();
                if results.last().is_some_and(|r| r.is_batch_finished) {
                    break results;
                }
                if Instant::now() >= deadline {
                    return Err(Error::WorkFailed(format!(
                        "batch {batch} is still running after {timeout} s; see it with GET /activity-api/v1/activity/{activity}/exec/{batch}"
                    )));
                }
            };
            if as_json {
                json(&results);
            } else {
                let rows: Vec<Vec<String>> = results
                    .iter()
                    .map(|r| {
                        vec![
                            r.index.to_string(),
                            r.result.clone(),
                            r.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                            r.results_hash.clone().or_else(|| r.blob.clone()).unwrap_or_else(|| "-".into()),
                            r.message.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(&["COMMAND", "RESULT", "EXIT", "RESULTS HASH / BLOB", "MESSAGE"], &rows);
                for r in results.iter().filter(|r| r.stdout.as_deref().is_some_and(|s| !s.is_empty())) {
                    println!("--- stdout of command {}", r.index);
                    print!("{}", r.stdout.as_deref().unwrap_or_default());
                }
            }
            if let Some(failed) = results.iter().find(|r| r.result != "Ok") {
                return Err(Error::WorkFailed(format!(
                    "command {} failed: {}",
                    failed.index,
                    failed.message.as_deref().unwrap_or("no message")
                )));
            }
        }
        ActivityCommand::State { activity, json: as_json } => {
            let state: ActivityState =
                client.get(&format!("/activity-api/v1/activity/{activity}/state")).await?;
            if as_json {
                json(&state);
            } else {
                let reason = state.reason.or(state.error_message).unwrap_or_default();
                table(&["ACTIVITY", "STATE", "REASON"], &[vec![activity, state.state.0, reason]]);
            }
        }
        ActivityCommand::Usage { activity, json: as_json } => {
            let usage: ActivityUsage =
                client.get(&format!("/activity-api/v1/activity/{activity}/usage")).await?;
            if as_json {
                json(&usage);
            } else {
                let rows: Vec<Vec<String>> = USAGE_VECTOR
                    .iter()
                    .zip(&usage.current_usage)
                    .map(|(name, value)| vec![name.to_string(), value.to_string()])
                    .collect();
                table(&["COUNTER", "VALUE"], &rows);
            }
        }
        ActivityCommand::Destroy { activity } => {
            client.delete(&format!("/activity-api/v1/activity/{activity}")).await?;
        }
    }
    Ok(())
}

/// Transfer progress on stderr (bytes, rate, time left), only when stderr is a terminal.
struct Progress {
    total: Option<u64>,
    done: u64,
    started: Instant,
    shown: Option<Instant>,
    on_terminal: bool,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        use std::io::IsTerminal;
        Self {
            total,
            done: 0,
            started: Instant::now(),
            shown: None,
            on_terminal: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.on_terminal || self.shown.is_some_and(|at| at.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.shown = Some(Instant::now());
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let rate = mib(self.done) / self.started.elapsed().as_secs_f64().max(1e-3);
        let line = match self.total {
            Some(total) => {
                let left = mib(total.saturating_sub(self.done)) / rate.max(1e-9);
                format!("{:.1} of {:.1} MiB, {rate:.1} MiB/s, {left:.0} s left", mib(self.done), mib(total))
            }
            None => format!("{:.1} MiB, {rate:.1} MiB/s", mib(self.done)),
        };
        eprint!("\r{line:<60}");
    }

    /// Ends the progress line, if one was shown.
    fn done() {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}

pub async fn blob(cmd: BlobCommand, client: &Client) -> Result<(), Error> {
    match cmd {
        BlobCommand::Put { file } => {
            let size =
                std::fs::metadata(&file).map_err(|e| Error::Input(format!("{}: {e}", file.display())))?.len();
            let mut shown = Progress::new(Some(size));
            let stored: Value = client.post_file("/blobs", &file, move |n| shown.add(n)).await?;
            Progress::done();
            println!("{}", stored["url"].as_str().unwrap_or_default());
        }
        BlobCommand::Get { sha256, output } => {
            let sha256 = sha256.strip_prefix("blob:sha256:").unwrap_or(&sha256).to_string();
            let path = format!("/blobs/{sha256}");
            let mut shown = Progress::new(None);
            let report = |total: Option<u64>, n: u64| {
                shown.total = shown.total.or(total);
                shown.add(n);
            };
            match output {
                Some(target) => {
                    // Written beside the target and renamed when whole, so a download that
                    // breaks off leaves nothing under the target's name.
                    let folder = target
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new("."));
                    let mut tmp = tempfile::NamedTempFile::new_in(folder)
                        .map_err(|e| Error::Input(format!("{}: {e}", target.display())))?;
                    client.get_to(&path, tmp.as_file_mut(), report).await?;
                    tmp.persist(&target)
                        .map_err(|e| Error::Input(format!("{}: {}", target.display(), e.error)))?;
                }
                None => client.get_to(&path, &mut std::io::stdout(), report).await?,
            }
            Progress::done();
        }
    }
    Ok(())
}
