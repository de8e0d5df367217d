//! The `rolewatch` binary: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap prints its own usage errors and exits with status 2.
    let cli = rolewatch::cli::Cli::parse();
    match rolewatch::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("rolewatch: {err:#}");
            ExitCode::from(rolewatch::exit_code(&err))
        }
    }
}
