//! Configuration problems: each names its key; together they name the file.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `source[1].region`.
    pub key: String,
    pub message: String,
}

/// Every problem found in a configuration, or why it could not be read.
#[derive(Debug)]
pub struct ConfigError {
    /// `None` for the built-in defaults and environment.
    pub file: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().map_or_else(
            || "the built-in configuration".to_owned(),
            |p| p.display().to_string(),
        );
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration in {file} ({n} problem{})",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {file}: {}: ", p.key)?;
            // Multi-line messages (a pattern with its caret) stay aligned under the key.
            let mut lines = p.message.lines();
            if let Some(first) = lines.next() {
                f.write_str(first)?;
            }
            for l in lines {
                write!(f, "\n      {l}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
