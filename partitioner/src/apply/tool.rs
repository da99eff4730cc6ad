//! Running the external tools apply needs (mke2fs, mkswap, lvm), their
//! failure typed: the command line, its exit status and its stderr.

use std::io;
use std::process::{Command, ExitStatus};

/// An external tool that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {command}: {source}")]
    Start { command: String, source: io::Error },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// Runs `cmd` to completion and returns its standard output.
pub(super) fn run_tool(cmd: &mut Command) -> Result<String, ToolError> {
    let command = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = match cmd.output() {
        Ok(out) => out,
        Err(source) => return Err(ToolError::Start { command, source }),
    };
    if !out.status.success() {
        return Err(ToolError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
