//! Running the external tools apply needs (mke2fs, mkswap, lvm) through
//! sysutil: the command line, its exit status and its stderr on failure.

use std::process::Command;

pub use sysutil::ToolError;

/// Runs `cmd` to completion and returns its standard output.
pub(super) fn run_tool(cmd: &mut Command) -> Result<String, ToolError> {
    sysutil::run(cmd)
}
