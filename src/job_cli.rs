//! `agora job …`: jobs the node runs on several providers, verifies, and pays only where
//! verified. `run` uploads local files (the module, inputs) to the node's blobs first.

use crate::Error;
use crate::client::Client;
use crate::output::{json, table};
use clap::{Args, Subcommand};
use serde_json::{Value, json as j};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job: MODULE_OR_IMAGE is a local .wasm file, a blob:sha256:… or http(s):// URL, or
    /// (with --engine docker) docker:<name>@sha256:…; ARGS follow `--`.
    Run(Box<RunArgs>),
    /// Submit the job spec in FILE, YAML or JSON (as `POST /jobs` takes it); a `module` or input
    /// `src` that is a local file is uploaded first.
    Submit {
        file: PathBuf,
        /// Wait for the end, showing each step.
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// Jobs, newest first.
    List {
        /// Only jobs in these states (labels or codes, separated by commas).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One job: its state, replicas, verdict, payments and steps.
    Describe {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a job's steps until it ends.
    Watch { id: String },
    /// Write a completed job's verified stdout and outputs to DIR. Ids may be shortened to any
    /// unique start, as `list` shows them.
    Results { id: String, dir: PathBuf },
    /// Cancel a job: its activities stop and its agreements end.
    Cancel { id: String },
}

/// `agora job run`: the job spec, as flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    pub module: String,
    #[arg(long, default_value = "wasm", value_parser = ["wasm", "docker"])]
    pub engine: String,
    /// The WASM export or the container's program.
    #[arg(long = "entry-point", default_value = "_start")]
    pub entry_point: String,
    /// Providers to run on at first.
    #[arg(long, default_value_t = 3)]
    pub concurrency: usize,
    /// Results that must agree (0: a majority of at least two).
    #[arg(long, default_value_t = 0)]
    pub confidence: usize,
    /// Bids to wait for before choosing [default: the concurrency].
    #[arg(long = "min-bids")]
    pub min_bids: Option<usize>,
    /// The most the job may cost, replicas included.
    #[arg(long, default_value = "1")]
    pub budget: String,
    /// SRC:DST: a local file, blob: or http(s):// URL, placed at /input/DST (repeatable).
    #[arg(long = "input", value_name = "SRC:DST")]
    pub inputs: Vec<String>,
    /// NAME:PATH: keep /output/PATH as NAME (repeatable).
    #[arg(long = "output", value_name = "NAME:PATH")]
    pub outputs: Vec<String>,
    /// Seconds a run may take.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// `deterministic` (commit and reveal) or `none` (one provider, unverified).
    #[arg(long, default_value = "deterministic", value_parser = ["deterministic", "none"])]
    pub verifier: String,
    /// WASM jobs: `local` (this node runs every job too, and the winners' result must be its
    /// own) or a probability from 0 to 1 (a spot check on that share of jobs).
    #[arg(long, value_name = "local|P")]
    pub referee: Option<String>,
    /// Only providers of this subnet.
    #[arg(long)]
    pub subnet: Option<String>,
    /// Only this provider, by node address (repeatable).
    #[arg(long = "provider", value_name = "ADDRESS")]
    pub providers: Vec<String>,
    /// Wait for the end, showing each step.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(last = true)]
    pub args: Vec<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(id: &str) -> String {
    id.chars().take(10).collect()
}

/// A local file becomes a blob on the node; URLs are kept.
async fn source(client: &Client, src: &str) -> Result<String, Error> {
    if src.starts_with("blob:")
        || src.starts_with("http://")
        || src.starts_with("https://")
        || src.starts_with("docker:")
    {
        return Ok(src.to_string());
    }
    let path = Path::new(src);
    if !path.is_file() {
        return Err(Error::Input(format!(
            "{src}: no such file, and not a blob:, http(s):// or docker: source"
        )));
    }
    let stored: Value = client.post_file("/blobs", path, |_| {}).await?;
    Ok(text(&stored["url"]))
}

fn split_pair<'a>(flag: &str, value: &'a str) -> Result<(&'a str, &'a str), Error> {
    value
        .rsplit_once(':')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| Error::Input(format!("{flag} {value}: expected A:B")))
}

pub async fn run(cmd: JobCommand, client: &Client) -> Result<(), Error> {
    match cmd {
        JobCommand::Run(run_args) => {
            let RunArgs {
                module,
                engine,
                entry_point,
                concurrency,
                confidence,
                min_bids,
                budget,
                inputs,
                outputs,
                timeout,
                verifier,
                subnet,
                referee,
                providers,
                wait,
                json: as_json,
                args,
            } = *run_args;
            let module = source(client, &module).await?;
            let mut input_list = Vec::new();
            for input in &inputs {
                let (src, dst) = split_pair("--input", input)?;
                input_list.push(j!({"src": source(client, src).await?, "dst": dst}));
            }
            let mut output_list = Vec::new();
            for output in &outputs {
                let (name, path) = split_pair("--output", output)?;
                output_list.push(j!({"name": name, "path": path}));
            }
            let referee = match referee.as_deref() {
                None => Value::Null,
                Some("local") => j!("local"),
                Some(p) => match p.parse::<f64>() {
                    Ok(p) if (0.0..=1.0).contains(&p) => j!({"spotCheck": p}),
                    _ => {
                        return Err(Error::Input(format!(
                            "--referee {p}: `local`, or a probability from 0 to 1"
                        )));
                    }
                },
            };
            let mut spec = j!({
                "engine": engine, "module": module, "entry_point": entry_point, "args": args,
                "inputs": input_list, "outputs": output_list, "concurrency": concurrency,
                "confidence": confidence, "min_bids": min_bids, "budget": budget, "timeout": timeout,
                "verifier": verifier, "subnet": subnet, "providers": providers,
            });
            if !referee.is_null() {
                spec["referee"] = referee;
            }
            submit_spec(client, &spec, wait, as_json).await?;
        }
        JobCommand::Submit { file, wait, json: as_json } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::Input(format!("{}: {e}", file.display())))?;
            // YAML is a superset of JSON, so one parser reads both.
            let mut spec: Value = yaml_serde::from_str(&text)
                .map_err(|e| Error::Input(format!("{}: not a YAML or JSON job spec: {e}", file.display())))?;
            if !spec.is_object() {
                return Err(Error::Input(format!("{}: a job spec is a mapping of fields", file.display())));
            }
            // YAML reads `budget: 1`, `args: [1]` or `X: yes` as numbers and booleans; the spec
            // takes them as text.
            as_text(spec.get_mut("budget"));
            for field in ["args", "env"] {
                match spec.get_mut(field) {
                    Some(Value::Array(items)) => items.iter_mut().for_each(|v| as_text(Some(v))),
                    Some(Value::Object(items)) => items.values_mut().for_each(|v| as_text(Some(v))),
                    _ => {}
                }
            }
            // Local files are named from the spec file's folder.
            let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let local = |src: &str| {
                let path = base.join(src);
                if Path::new(src).is_relative() && path.is_file() {
                    path.display().to_string()
                } else {
                    src.to_string()
                }
            };
            if let Some(module) = spec["module"].as_str().map(local) {
                spec["module"] = Value::String(source(client, &module).await?);
            }
            if let Some(inputs) = spec.get_mut("inputs").and_then(Value::as_array_mut) {
                for input in inputs {
                    if let Some(src) = input["src"].as_str().map(local) {
                        input["src"] = Value::String(source(client, &src).await?);
                    }
                }
            }
            submit_spec(client, &spec, wait, as_json).await?;
        }
        JobCommand::List { state, json: as_json } => {
            // Every page, newest first.
            let mut rows: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut query = vec![("limit", "500".to_string())];
                query.extend(state.clone().map(|s| ("state", s)));
                query.extend(cursor.clone().map(|c| ("cursor", c)));
                let query: Vec<String> =
                    query.iter().map(|(k, v)| format!("{k}={}", crate::client::segment(v))).collect();
                let page: Value = client.get(&format!("/jobs?{}", query.join("&"))).await?;
                rows.extend(page["jobs"].as_array().cloned().unwrap_or_default());
                match page["nextCursor"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break,
                }
            }
            if as_json {
                json(&rows);
                return Ok(());
            }
            let lines: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        short(&text(&r["jobId"])),
                        text(&r["state"]),
                        text(&r["spec"]["concurrency"]),
                        text(&r["createdAt"]),
                        text(&r["message"]),
                    ]
                })
                .collect();
            table(&["JOB", "STATE", "REPLICAS", "CREATED", "MESSAGE"], &lines);
        }
        JobCommand::Describe { id, json: as_json } => {
            let job: Value = client.get(&format!("/jobs/{id}")).await?;
            if as_json {
                json(&job);
            } else {
                summary(&job);
                println!();
                for e in job["events"].as_array().into_iter().flatten() {
                    println!("{}  {:<17} {}", text(&e["at"]), text(&e["state"]), text(&e["message"]));
                }
            }
        }
        JobCommand::Watch { id } => {
            let job = follow(client, &id, true).await?;
            summary(&job);
        }
        JobCommand::Results { id, dir } => {
            let job: Value = client.get(&format!("/jobs/{id}")).await?;
            let results = &job["results"];
            if results.is_null() {
                return Err(Error::Input(format!(
                    "job {id} has no results ({}): `agora job describe {id}` says why",
                    text(&job["state"])
                )));
            }
            std::fs::create_dir_all(&dir).map_err(|e| Error::Input(format!("{}: {e}", dir.display())))?;
            std::fs::write(dir.join("stdout"), text(&results["stdout"]))?;
            for (name, blob) in results["outputs"].as_object().into_iter().flatten() {
                let sha = text(blob);
                let sha = sha.strip_prefix("blob:sha256:").unwrap_or(&sha).to_string();
                let target = dir.join(name);
                let mut file = std::fs::File::create(&target)
                    .map_err(|e| Error::Input(format!("{}: {e}", target.display())))?;
                client.get_to(&format!("/blobs/{sha}"), &mut file, |_, _| {}).await?;
            }
            if results["checked"] == true {
                println!("verified results ({}) written to {}", text(&results["digest"]), dir.display());
            } else if results["digest"].is_null() {
                println!("results (not verified: the job has no verifier) written to {}", dir.display());
            } else {
                eprintln!(
                    "warning: what came back could not be checked against the verified hash {}: {}",
                    text(&results["digest"]),
                    text(&results["unchecked"])
                );
                println!("results written to {}", dir.display());
            }
        }
        JobCommand::Cancel { id } => {
            client.delete(&format!("/jobs/{id}")).await?;
            println!("job {id} is being cancelled; `agora job describe {id}` shows its end");
        }
    }
    Ok(())
}

/// A number or a boolean as the text YAML read it from.
fn as_text(value: Option<&mut Value>) {
    if let Some(v) = value
        && (v.is_number() || v.is_boolean())
    {
        *v = Value::String(v.to_string());
    }
}

/// Submits a spec; with `wait`, follows the job to its end and fails unless it completed.
async fn submit_spec(client: &Client, spec: &Value, wait: bool, as_json: bool) -> Result<(), Error> {
    let created: Value = client.post("/jobs", spec).await?;
    let id = text(&created["jobId"]);
    if !wait {
        if as_json {
            json(&created);
        } else {
            println!("job {id} submitted");
            println!("follow it with: agora job watch {}", short(&id));
        }
        return Ok(());
    }
    let job = follow(client, &id, !as_json).await?;
    if as_json {
        json(&job);
    } else {
        summary(&job);
    }
    if job["state"] != "completed" {
        return Err(Error::Input(format!("job {id} {}: {}", text(&job["state"]), text(&job["message"]))));
    }
    Ok(())
}

/// Prints a job's steps as they happen until it ends; returns the job.
async fn follow(client: &Client, id: &str, show: bool) -> Result<Value, Error> {
    let mut after = 0i64;
    loop {
        let events: Vec<Value> = client.get(&format!("/jobs/{id}/events?after={after}&timeout=30")).await?;
        for e in &events {
            after = e["id"].as_i64().unwrap_or(after);
            if show {
                println!("[{}] {}", text(&e["state"]), text(&e["message"]));
            }
        }
        if events.is_empty() {
            let job: Value = client.get(&format!("/jobs/{id}")).await?;
            if job["stateCode"].as_i64().is_some_and(|c| c >= 6) {
                return Ok(job);
            }
        }
    }
}

fn summary(job: &Value) {
    let id = text(&job["jobId"]);
    println!("job {id}: {} — {}", text(&job["state"]), text(&job["message"]));
    let lines: Vec<Vec<String>> = job["executions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(&e["provider"]),
                text(&e["state"]),
                text(&e["amount"]),
                text(&e["txHash"]),
                text(&e["reason"]),
            ]
        })
        .collect();
    if !lines.is_empty() {
        table(&["PROVIDER", "STATE", "PAID", "TRANSACTION", "REASON"], &lines);
    }
    if job["state"] == "completed" {
        println!("results: agora job results {id} DIR");
    }
}
