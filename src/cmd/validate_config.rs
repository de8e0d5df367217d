//! `rolewatch validate-config`: the effective configuration on stdout (itself a valid file),
//! the pattern lint on stderr; exit 78 when the configuration is invalid.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::RunArgs;

/// Loads and validates the configuration, prints it back and lints its patterns.
///
/// # Errors
///
/// An invalid configuration (exit 78) or an output that cannot be written (a closed pipe is
/// not an error).
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let cfg = crate::config::load(args.config.as_deref())?;
    let from = cfg.file.as_deref().map_or_else(
        || "the built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    let mut out = std::io::stdout().lock();
    match write!(
        out,
        "# The configuration in {from} is valid. The effective configuration follows:\n\
         # defaults filled in, ROLEWATCH__SECTION__KEY overrides applied; passwords are\n\
         # never shown, only the variable or file that holds them. It is itself a valid\n\
         # configuration file.\n\n{}",
        crate::config::effective::to_toml(&cfg)
    )
    .and_then(|()| {
        // Pattern lint goes to stderr: the stdout stays a valid configuration file.
        let mut err = std::io::stderr().lock();
        for (what, finding) in cfg.lint() {
            writeln!(err, "rolewatch: {what}: {finding}")?;
        }
        Ok(())
    }) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
