//! `hcl-check`: will Bulkhead run on this machine?

use anyhow::Context;
use clap::{Parser, Subcommand};
use hcl_check::{Probe, capture, report};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_DOC: &str = "\
Exit status:
  0  every requirement passes
  1  warnings only (or facts that could not be read): installable with consent
  2  a requirement fails: Bulkhead cannot be installed
  3  could not probe (bad --root, unreadable or malformed --cpuid-dump, capture error)

JSON output follows schema \"bulkhead.hcl/1\" (described in hcl-check/README.md).
Run as root for the ACPI tables, SMBIOS and MSRs (modprobe msr).";

#[derive(Parser)]
#[command(name = "hcl-check", version, about = "Checks whether this machine can run Bulkhead (a Qubes-style system) and writes a hardware compatibility report", after_help = EXIT_DOC)]
struct Cli {
    /// Read /proc, /sys and the ACPI tables from this captured directory instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Read CPUID from the raw output of `cpuid -r` (Debian package cpuid) instead of the live CPU.
    /// Default with --root: DIR/cpuid.txt when it exists.
    #[arg(long, value_name = "FILE")]
    cpuid_dump: Option<PathBuf>,
    /// Print the report as JSON (schema bulkhead.hcl/1).
    #[arg(long, conflicts_with = "yaml")]
    json: bool,
    /// Print a Qubes HCL report (YAML, the format qubes-hcl-report writes).
    #[arg(long)]
    yaml: bool,
    /// Keep serial numbers in the facts and captures (left out by default).
    #[arg(long, global = true)]
    include_identifiers: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Copy this machine's relevant /proc, /sys and ACPI files and a CPUID dump into DIR,
    /// for `hcl-check --root DIR` elsewhere.
    Capture {
        /// Directory to write (created if missing).
        dir: PathBuf,
    },
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Some(Cmd::Capture { dir }) = cli.command {
        capture::capture(&dir, cli.include_identifiers)
            .with_context(|| format!("capturing this machine into {}", dir.display()))?;
        println!(
            "Captured into {}. Analyse with: hcl-check --root {}",
            dir.display(),
            dir.display()
        );
        return Ok(0);
    }
    let probe = Probe {
        root: cli.root.clone(),
        cpuid_dump: cli.cpuid_dump.clone(),
        include_identifiers: cli.include_identifiers,
    };
    let r = probe
        .report()
        .with_context(|| format!("probing the machine at {}", cli.root.display()))?;
    let out = if cli.json {
        report::json(&r)
    } else if cli.yaml {
        report::yaml(&r)
    } else {
        // Colour only on a terminal, and never with NO_COLOR set.
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        report::table(&r, colour)
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    Ok(r.exit_code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("hcl-check: error: {e:#}");
            ExitCode::from(3)
        }
    }
}
