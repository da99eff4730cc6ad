//! Running the installer's tools (mount, chroot, unsquashfs, mkfs.ext4)
//! through sysutil, each failure a [`StageError::Tool`] that says what the
//! installer was doing.

use std::process::Command;

use super::error::StageError;

fn tool(what: &str) -> impl FnOnce(sysutil::ToolError) -> StageError + use<> {
    let what = what.to_string();
    move |error| StageError::Tool { what, error }
}

/// Runs `cmd` to completion and returns its stdout; a failure is `what`
/// and the tool's stderr.
pub fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, StageError> {
    sysutil::run(cmd)
        .map(String::into_bytes)
        .map_err(tool(what))
}

/// Runs `cmd`, handing `line` each line of its stdout as it comes; a
/// failure is `what` and the tool's stderr.
pub fn stream(cmd: &mut Command, what: &str, line: &mut dyn FnMut(&str)) -> Result<(), StageError> {
    sysutil::stream(cmd, line).map_err(tool(what))
}
