//! `qube`: dom0's command for the qubes, what qvm-ls, qvm-start,
//! qvm-shutdown, qvm-kill and qvm-console are in Qubes, plus the hidden
//! entry points of the qubes' systemd unit (`run`, `halt`, `release`). The
//! work is firstboot's library ([`firstboot::control`]); this is its
//! command line.
//!
//! It runs as root: started by another user on the real root, it
//! re-executes itself through `sudo -n /usr/bin/qube`, which the installed
//! system allows the qubes group without a password.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

use firstboot::control::{Control, HALT_SECS};

/// Where the installed system has this program (the sudoers rule names it).
const INSTALLED: &str = "/usr/bin/qube";

#[derive(Parser, Debug)]
#[command(
    name = "qube",
    version,
    about = "Lists, starts and stops the qubes (dom0's qvm-* commands for Bulkhead)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// System root whose qubes these are (default `/`, the running system;
    /// another directory is an offline root, for tests).
    #[arg(long, global = true, default_value = "/", hide = true)]
    root: PathBuf,
}

#[derive(Subcommand, Debug, PartialEq, Eq)]
enum Cmd {
    /// The qubes like qvm-ls: NAME, CLASS, LABEL, TEMPLATE, NETVM, STATE.
    #[command(visible_alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Start qubes (and first the netvms they need).
    Start {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Shut qubes down; a netvm whose clients run is refused unless --force.
    Shutdown {
        /// Shut a netvm down even though qubes using it run (they stop too).
        #[arg(long)]
        force: bool,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// End a qube at once (xl destroy); its unit then ends and releases it.
    Kill { name: String },
    /// Attach this terminal to a qube's console (xl console; Ctrl-] leaves).
    Console { name: String },
    /// The unit's ExecStart: prepare the volumes, run the domain, notify.
    #[command(hide = true)]
    Run { name: String },
    /// The unit's ExecStop: shut the domain down, destroy it past the limit.
    #[command(hide = true)]
    Halt {
        name: String,
        #[arg(long, default_value_t = HALT_SECS, value_name = "SECS")]
        timeout: u64,
    },
    /// The unit's ExecStopPost: give the volumes back (commit, discard).
    #[command(hide = true)]
    Release { name: String },
    /// Only make the volumes a run uses (what `run` does before xl).
    #[command(hide = true)]
    Prepare { name: String },
    /// Exits 0 when running as root (how `qube` asks sudo whether it may).
    #[command(hide = true)]
    CheckRoot,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    if cli.cmd == Cmd::CheckRoot {
        return if root_user {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if !root_user && cli.root == Path::new("/") {
        let e = via_sudo();
        eprintln!("qube: error: {e:#}");
        return ExitCode::FAILURE;
    }
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qube: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Re-executes `qube` as root through `sudo -n`; returns only on failure.
/// sudo is asked first (`check-root`) so that its refusal is told apart
/// from the command's own failure.
fn via_sudo() -> anyhow::Error {
    let needs_root = "qube needs root: add your user to the qubes group or run it with sudo";
    let probe = Command::new("sudo")
        .args(["-n", INSTALLED, "check-root"])
        .stdin(std::process::Stdio::null())
        .output();
    match probe {
        Err(e) => return anyhow!("{needs_root} (sudo could not be run: {e})"),
        Ok(o) if !o.status.success() => {
            let said = String::from_utf8_lossy(&o.stderr).trim().to_string();
            return if said.is_empty() {
                anyhow!("{needs_root}")
            } else {
                anyhow!("{needs_root} (sudo said: {said})")
            };
        }
        Ok(_) => {}
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let e = Command::new("sudo")
        .arg("-n")
        .arg(INSTALLED)
        .args(args)
        .exec();
    anyhow!("{needs_root} (running sudo: {e})")
}

fn say(line: &str) {
    eprintln!("qube: {line}");
}

fn real_main(cli: Cli) -> Result<u8> {
    let mut c = Control::new(&cli.root);
    match cli.cmd {
        Cmd::List { json } => {
            let rows = c.list().context("listing the qubes")?;
            if !c.xen_running() {
                say("Xen is not running: no qube runs (boot Bulkhead's Xen entry to run them)");
            }
            if json {
                print!("{}", firstboot::ls::json(&rows));
            } else {
                print!("{}", firstboot::ls::table(&rows));
            }
        }
        Cmd::Start { names } => c.start(&names, &mut say)?,
        Cmd::Shutdown { force, names } => c.shutdown(&names, force, &mut say)?,
        Cmd::Kill { name } => c.kill(&name, &mut say)?,
        Cmd::Console { name } => {
            let mut cmd = c.console(&name)?;
            let e = cmd.exec();
            return Err(anyhow!("cannot run xl console {name}: {e}"));
        }
        Cmd::Run { name } => {
            let code = c
                .run(&name, &mut say)
                .with_context(|| format!("running {name}"))?;
            return Ok(u8::try_from(code).unwrap_or(1));
        }
        Cmd::Halt { name, timeout } => c
            .halt(&name, Duration::from_secs(timeout), &mut say)
            .with_context(|| format!("halting {name}"))?,
        Cmd::Release { name } => c
            .release(&name, &mut say)
            .with_context(|| format!("releasing the volumes of {name}"))?,
        Cmd::Prepare { name } => c
            .prepare(&name, &mut say)
            .with_context(|| format!("preparing the volumes of {name}"))?,
        Cmd::CheckRoot => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("qube").chain(args.iter().copied()))
    }

    #[test]
    fn arguments_parse_as_documented() {
        assert_eq!(parse(&["ls"]).unwrap().cmd, Cmd::List { json: false });
        assert_eq!(
            parse(&["start", "work", "vault"]).unwrap().cmd,
            Cmd::Start {
                names: vec!["work".into(), "vault".into()]
            }
        );
        assert_eq!(
            parse(&["shutdown", "--force", "sys-net"]).unwrap().cmd,
            Cmd::Shutdown {
                force: true,
                names: vec!["sys-net".into()]
            }
        );
        assert_eq!(
            parse(&["halt", "work"]).unwrap().cmd,
            Cmd::Halt {
                name: "work".into(),
                timeout: HALT_SECS
            }
        );
        let c = parse(&["--root", "/x", "release", "work"]).unwrap();
        assert_eq!(c.root, Path::new("/x"));
        for bad in [
            &["start"][..],
            &["shutdown", "--force"],
            &["kill"],
            &["frob"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn unit_entry_points_are_hidden_from_help() {
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        for shown in ["list", "start", "shutdown", "kill", "console"] {
            assert!(help.contains(shown), "{help}");
        }
        for hidden in ["run", "halt", "release", "prepare", "check-root"] {
            assert!(
                !help.lines().any(|l| l.trim_start().starts_with(hidden)),
                "{hidden} is in the help:\n{help}"
            );
        }
    }
}
