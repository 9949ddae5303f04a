//! `agora`: the node daemon and its command line. See the `agora` library for the parts.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Golem's SDKs run `gftp server`: a link to this binary named `gftp` is `agora gftp`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called = args.first().map(std::path::Path::new).and_then(|p| p.file_name()).map(|n| n.to_os_string());
    if called.as_deref() == Some(std::ffi::OsStr::new("gftp")) {
        args.splice(0..1, ["agora".into(), "gftp".into()]);
    }
    let cli = agora::cli::Cli::parse_from(args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agora::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
