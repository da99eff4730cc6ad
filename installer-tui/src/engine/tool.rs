//! Running the installer's tools (mount, chroot, unsquashfs, mkfs.ext4):
//! one place that starts them and turns a failure into a
//! [`StageError::Tool`] with the command, its exit status and its stderr.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};

use super::error::StageError;

/// Runs `cmd` to completion and returns its stdout; a failure is `what`
/// and the tool's stderr.
pub fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, StageError> {
    let out = cmd.output().map_err(|error| StageError::Start {
        command: command_line(cmd),
        error,
    })?;
    if !out.status.success() {
        return Err(failed(cmd, what, out.status, &out.stderr));
    }
    Ok(out.stdout)
}

/// Runs `cmd`, handing `line` each line of its stdout as it comes; a
/// failure is `what` and the tool's stderr.
pub fn stream(cmd: &mut Command, what: &str, line: &mut dyn FnMut(&str)) -> Result<(), StageError> {
    let start = |cmd: &Command| {
        let command = command_line(cmd);
        move |error| StageError::Start { command, error }
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(start(cmd))?;
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut t = Vec::new();
            let _ = e.read_to_end(&mut t);
            t
        })
    });
    if let Some(out) = child.stdout.take() {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            line(&l);
        }
    }
    let status = child.wait().map_err(start(cmd))?;
    let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(failed(cmd, what, status, &err));
    }
    Ok(())
}

fn failed(cmd: &Command, what: &str, status: ExitStatus, stderr: &[u8]) -> StageError {
    StageError::Tool {
        what: what.to_string(),
        command: command_line(cmd),
        status,
        stderr: String::from_utf8_lossy(stderr).into_owned(),
    }
}

/// The program and its arguments, as a shell would show them (unquoted).
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
