//! What every crate of ours does around the host, in one place (ripgrep's
//! `grep-cli` is the model): an I/O error that names the file and what was
//! being done to it ([`IoError`]), running a tool and reporting its stderr
//! ([`run`], [`ToolError`]), an `lvm` command as an installer runs it
//! ([`lvm_without_monitoring`]), and ordering version strings
//! ([`natural_cmp`]).
//!
//! Each error prints its cause once: the cause is part of the message and is
//! not also returned by `source()`, so `{:#}` chains do not repeat it.

use std::cmp::Ordering;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// An I/O error on a file: what was being done, to which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {cause}", path.display())]
pub struct IoError {
    pub what: &'static str,
    pub path: PathBuf,
    pub cause: io::Error,
}

impl IoError {
    pub fn new(what: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        IoError {
            what,
            path: path.into(),
            cause,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.cause.kind()
    }
}

/// For `map_err`: `fs::read(p).map_err(io_err("reading", p))?`.
pub fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IoError + use<> {
    let path = path.to_path_buf();
    move |cause| IoError { what, path, cause }
}

/// Lines of a failed tool's stderr kept in its error (the last ones, where
/// tools say what went wrong).
pub const STDERR_LINES: usize = 20;

/// A tool that could not be started or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {command}: {cause}")]
    Spawn { command: String, cause: io::Error },
    #[error("{command} failed ({status}){}", stderr_suffix(stderr))]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl ToolError {
    /// The tool's own words (its stderr tail), empty when it could not start.
    pub fn stderr(&self) -> &str {
        match self {
            ToolError::Spawn { .. } => "",
            ToolError::Failed { stderr, .. } => stderr,
        }
    }
}

/// The command as a person would type it (program and arguments).
/// An `lvm` command (`lvm`: the binary; `args`: the subcommand first) as
/// an installer runs it: without dmeventd monitoring (the installed system
/// monitors its own pools) and, when udev is not running, with
/// device-mapper making its own device nodes.
pub fn lvm_without_monitoring(lvm: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(lvm);
    c.args(args.iter().take(1));
    c.args(["--config", "activation { monitoring = 0 }"]);
    c.args(args.iter().skip(1));
    if !Path::new("/run/udev/control").exists() {
        c.env("DM_DISABLE_UDEV", "1");
    }
    c
}

pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            format!("{a:?}")
        } else {
            a.into_owned()
        }
    }));
    words.join(" ")
}

/// Runs `cmd` to completion with its output captured; returns its stdout.
/// A failure carries the last [`STDERR_LINES`] lines of its stderr.
pub fn run(cmd: &mut Command) -> Result<String, ToolError> {
    let out = cmd.output().map_err(|cause| ToolError::Spawn {
        command: describe(cmd),
        cause,
    })?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            command: describe(cmd),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), STDERR_LINES),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, handing `line` each line of its stdout as it comes (for
/// progress); a failure carries its stderr tail as [`run`]'s does.
pub fn stream(cmd: &mut Command, line: &mut dyn FnMut(&str)) -> Result<(), ToolError> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let spawn = |cmd: &Command| {
        let command = describe(cmd);
        move |cause| ToolError::Spawn { command, cause }
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn(cmd))?;
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
    let status = child.wait().map_err(spawn(cmd))?;
    let err = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    if !status.success() {
        return Err(ToolError::Failed {
            command: describe(cmd),
            status,
            stderr: tail(&String::from_utf8_lossy(&err), STDERR_LINES),
        });
    }
    Ok(())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Orders strings with their digit runs compared by value, so
/// "6.1.0-10-amd64" comes after "6.1.0-9-amd64" and "6.10" after "6.9".
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    Natural(a).cmp(&Natural(b))
}

/// The entry of `names` that sorts last by [`natural_cmp`].
pub fn newest<I, S>(names: I) -> Option<S>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    names
        .into_iter()
        .max_by(|a, b| natural_cmp(a.as_ref(), b.as_ref()))
}

/// A string ordered by [`natural_cmp`] (for `sort_by_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Natural<'a>(pub &'a str);

impl Ord for Natural<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let (mut a, mut b) = (self.0, other.0);
        loop {
            match (a.is_empty(), b.is_empty()) {
                (true, true) => return Ordering::Equal,
                (true, false) => return Ordering::Less,
                (false, true) => return Ordering::Greater,
                _ => {}
            }
            let (ra, rest_a) = run_of(a);
            let (rb, rest_b) = run_of(b);
            let ord = match (ra, rb) {
                (Run::Digits(x), Run::Digits(y)) => {
                    let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                }
                // Digits before text, as "6.1.0-9" before "6.1.0-a".
                (Run::Digits(_), Run::Text(_)) => Ordering::Less,
                (Run::Text(_), Run::Digits(_)) => Ordering::Greater,
                (Run::Text(x), Run::Text(y)) => x.cmp(y),
            };
            if ord != Ordering::Equal {
                return ord;
            }
            (a, b) = (rest_a, rest_b);
        }
    }
}

impl PartialOrd for Natural<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Natural<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

enum Run<'a> {
    Digits(&'a str),
    Text(&'a str),
}

fn run_of(s: &str) -> (Run<'_>, &str) {
    let digits = s.starts_with(|c: char| c.is_ascii_digit());
    let end = s
        .find(|c: char| c.is_ascii_digit() != digits)
        .unwrap_or(s.len());
    let (head, rest) = s.split_at(end);
    if digits {
        (Run::Digits(head), rest)
    } else {
        (Run::Text(head), rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_the_value_of_their_numbers() {
        let mut v = vec![
            "6.1.0-10-amd64",
            "6.1.0-9-amd64",
            "6.10.1",
            "6.9.12",
            "6.1.0-57-amd64",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "6.1.0-9-amd64",
                "6.1.0-10-amd64",
                "6.1.0-57-amd64",
                "6.9.12",
                "6.10.1"
            ]
        );
        assert_eq!(natural_cmp("007", "7"), Ordering::Equal);
        assert_eq!(natural_cmp("6.1", "6.1.0"), Ordering::Less);
        assert_eq!(
            newest(["vmlinuz-6.1.0-9", "vmlinuz-6.1.0-10"]),
            Some("vmlinuz-6.1.0-10")
        );
        assert_eq!(newest(Vec::<String>::new()), None);
        // Digit runs longer than u64 still order.
        assert_eq!(
            natural_cmp("1-99999999999999999999999", "1-100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn a_failed_tool_reports_status_and_stderr_tail_once() {
        let e =
            run(Command::new("sh")
                .args(["-c", "for i in $(seq 30); do echo l$i >&2; done; exit 3"]))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("sh -c "), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(
            text.contains("l30") && text.contains("l11") && !text.contains("l10\n"),
            "{text}"
        );
        assert!(std::error::Error::source(&e).is_none());
        let e = run(&mut Command::new("/nonexistent/tool")).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot run /nonexistent/tool: "),
            "{e}"
        );
        assert_eq!(run(Command::new("echo").arg("hi")).unwrap(), "hi\n");
        let mut seen = Vec::new();
        stream(Command::new("printf").arg("a\\nb\\n"), &mut |l| {
            seen.push(l.to_string())
        })
        .unwrap();
        assert_eq!(seen, ["a", "b"]);
        let e = stream(
            Command::new("sh").args(["-c", "echo oops >&2; exit 1"]),
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(e.stderr(), "oops");
    }

    #[test]
    fn io_errors_name_the_file_and_print_the_cause_once() {
        let p = Path::new("/nonexistent/x");
        let e = std::fs::read(p).map_err(io_err("reading", p)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let text = e.to_string();
        assert!(text.starts_with("reading /nonexistent/x: "), "{text}");
        assert!(std::error::Error::source(&e).is_none());
    }
}
