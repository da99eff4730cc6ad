//! Developer and CI entry points: `cargo xtask test`, `pin-kernel`, `bench`.

mod host;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Bulkhead's developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install or check the host packages, then run fmt, clippy and every
    /// test, the QEMU guest tests included.
    Test {
        /// Skip the tests that boot QEMU guests.
        #[arg(long)]
        no_guest: bool,
        /// Only these packages' tests (fmt and clippy still cover everything).
        #[arg(short, long)]
        package: Vec<String>,
    },
    /// Re-pin the guest tests' kernel to Debian's current linux-image-amd64
    /// (run when the pinned version is no longer served).
    PinKernel,
    /// Install the host packages listed in ci/host-packages.txt.
    HostPackages,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Test { no_guest, package } => test(&root, no_guest, &package),
        Cmd::PinKernel => pin_kernel(),
        Cmd::HostPackages => host::ensure_packages(&root),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// Runs a command, echoing it, and fails with its name when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn test(root: &Path, no_guest: bool, packages: &[String]) -> Result<()> {
    let mut times = Vec::new();
    let mut step = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        eprintln!("==> {name}");
        let t = Instant::now();
        f().with_context(|| format!("step failed: {name}"))?;
        times.push((name.to_string(), t.elapsed()));
        Ok(())
    };
    step("host packages", &mut || host::ensure_packages(root))?;
    step("cargo fmt --check", &mut || {
        run(Command::new("cargo").args(["fmt", "--all", "--check"]))
    })?;
    step("cargo clippy", &mut || {
        run(Command::new("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    if !no_guest {
        step("guest kernel", &mut || {
            let k = guest_harness::Kernel::pinned()?;
            eprintln!("guest kernel {} {}", k.pin.package, k.pin.version);
            Ok(())
        })?;
    }
    step("tests", &mut || {
        let mut cmd = Command::new("cargo");
        let scope: Vec<String> = if packages.is_empty() {
            vec!["--workspace".into()]
        } else {
            packages
                .iter()
                .flat_map(|p| ["-p".into(), p.clone()])
                .collect()
        };
        if has_nextest() {
            cmd.args(["nextest", "run", "--no-fail-fast"]).args(&scope);
            cmd.args(["--run-ignored", if no_guest { "default" } else { "all" }]);
            if std::env::var_os("CI").is_some() {
                cmd.args(["--profile", "ci"]);
            }
        } else {
            cmd.args(["test", "--no-fail-fast"]).args(&scope).arg("--");
            if !no_guest {
                cmd.arg("--include-ignored");
            }
        }
        run(&mut cmd)
    })?;
    eprintln!("\nxtask test: every step passed");
    for (name, t) in &times {
        eprintln!("  {name:<20} {:>7.1} s", t.as_secs_f64());
    }
    Ok(())
}

fn pin_kernel() -> Result<()> {
    use iso_builder::inputs;
    let image = inputs::first_dependency("linux-image-amd64", None)
        .context("resolving linux-image-amd64 (run `apt-get update` first)")?;
    let pin = inputs::resolve(&image, None)?;
    let path = guest_harness::Kernel::lock_path();
    let mut text = format!(
        "# The Debian kernel the guest tests boot. Refresh with `cargo xtask pin-kernel`\n\
         # (Debian drops superseded versions from its archive at point releases).\n{}",
        toml::to_string(&pin)?
    );
    if !text.ends_with('\n') {
        text.push('\n');
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "pinned {} {} (sha256 {}) in {}",
        pin.package,
        pin.version,
        pin.sha256,
        path.display()
    );
    Ok(())
}
