//! Host packages: `ci/host-packages.txt` is the one list; missing ones are
//! installed with apt-get (root) or named with the command to run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

pub fn wanted(root: &Path) -> Result<Vec<String>> {
    let path = root.join("ci/host-packages.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs whatever of the list is missing; a no-op when all are there.
pub fn ensure_packages(root: &Path) -> Result<()> {
    let missing: Vec<String> = wanted(root)?
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        eprintln!("host packages: all present");
        return Ok(());
    }
    eprintln!("host packages missing: {}", missing.join(" "));
    if !is_root() {
        bail!(
            "run as root, or install them first: sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}
