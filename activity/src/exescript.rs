//! ExeScript: Golem's JSON batch of commands, `[{"deploy": {}}, {"run": {...}}, ...]`.
//!
//! Parsing checks the whole batch before anything runs, and names the command and field that is
//! wrong: a batch is accepted whole or not at all.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One command of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Deploy(DeployBody),
    Start(StartBody),
    Run(RunBody),
    Transfer(TransferBody),
    Terminate(TerminateBody),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Deploy(_) => "deploy",
            Command::Start(_) => "start",
            Command::Run(_) => "run",
            Command::Transfer(_) => "transfer",
            Command::Terminate(_) => "terminate",
        }
    }
}

/// The command names, in the order Golem's scripts use them.
pub const COMMANDS: [&str; 5] = ["deploy", "start", "run", "transfer", "terminate"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployBody {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartBody {
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TerminateBody {}

/// `run`: Golem's `entry_point`, `args` and `capture`, plus agora's `env` (passed sorted by name)
/// and `datasets` (names or `sha256:` digests of the provider's datasets, mounted read-only under
/// `/datasets/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunBody {
    pub entry_point: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// How the caller wants output captured; agora always keeps stdout and stderr whole, in the
    /// results folder, and returns them in the command's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
}

/// `transfer {from, to}`: a URL and a place in the activity (`container:/input/...`), or back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferBody {
    pub from: String,
    pub to: String,
}

/// What is wrong with a batch.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScriptError {
    #[error("the ExeScript is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "the ExeScript must be a JSON array of commands, like [{{\"deploy\": {{}}}}, {{\"start\": {{}}}}]"
    )]
    NotAnArray,
    #[error("the ExeScript has no commands")]
    Empty,
    #[error("command {index}: {message}")]
    Command { index: usize, message: String },
}

/// Parses and checks a batch.
pub fn parse(text: &str) -> Result<Vec<Command>, ScriptError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ScriptError::NotJson(format!("line {}, column {}: {e}", e.line(), e.column())))?;
    let serde_json::Value::Array(items) = value else { return Err(ScriptError::NotAnArray) };
    if items.is_empty() {
        return Err(ScriptError::Empty);
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let fail = |message: String| ScriptError::Command { index, message };
            let serde_json::Value::Object(map) = &item else {
                return Err(fail(format!("expected an object like {{\"run\": {{...}}}}, found {item}")));
            };
            let mut keys = map.keys();
            let (Some(name), None) = (keys.next(), keys.next()) else {
                return Err(fail("a command is an object with exactly one key, its name".into()));
            };
            if !COMMANDS.contains(&name.as_str()) {
                return Err(fail(format!(
                    "unknown command \"{name}\"; expected one of {}",
                    COMMANDS.join(", ")
                )));
            }
            let name = name.clone();
            serde_json::from_value(item).map_err(|e| fail(format!("{name}: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golem_batches_parse() {
        let script = r#"[{"deploy": {}}, {"start": {"args": []}},
            {"transfer": {"from": "http://127.0.0.1:1/in.txt", "to": "container:/input/in.txt"}},
            {"run": {"entry_point": "cat", "args": ["/input/in.txt"], "capture": {"stdout": {"atEnd": {}}}}},
            {"terminate": {}}]"#;
        let commands = parse(script).unwrap();
        assert_eq!(
            commands.iter().map(Command::name).collect::<Vec<_>>(),
            COMMANDS[..2].iter().chain(&["transfer", "run", "terminate"]).copied().collect::<Vec<_>>()
        );
        let Command::Run(run) = &commands[3] else { panic!("run") };
        assert_eq!(run.args, ["/input/in.txt"]);
    }

    #[test]
    fn bad_batches_say_what_and_where() {
        let cases = [
            ("[{\"run\": ", "not valid JSON: line 1, column 9"),
            ("{\"run\": {}}", "must be a JSON array"),
            ("[]", "no commands"),
            (
                "[{\"deploy\": {}}, {\"explode\": {}}]",
                "command 1: unknown command \"explode\"; expected one of deploy",
            ),
            ("[{\"run\": {\"args\": []}}]", "command 0: run: missing field `entry_point`"),
            ("[{\"deploy\": {}, \"start\": {}}]", "command 0: a command is an object with exactly one key"),
            ("[42]", "command 0: expected an object"),
        ];
        for (script, expected) in cases {
            let error = parse(script).unwrap_err().to_string();
            assert!(error.contains(expected), "{script}: {error}");
        }
    }
}
