//! `cargo xtask lock`, `iso` and `repro`: thin drivers of iso-builder's
//! pipeline, plus building our own binaries for the medium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use iso_builder::inputs::Cache;
use iso_builder::lock::{self, Lock};
use iso_builder::pipeline::{self, BuildOptions, BuildReport, Progress};
use iso_builder::recipe::Recipe;

use crate::run;

/// Our programs that go onto the medium, when their crates build them.
const BINARIES: &[&str] = &[
    "bulkhead-iso",
    "hcl-check",
    "partitioner",
    "installer-tui",
    "firstboot",
    "qube",
];

struct Bars {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Bars {
    fn new() -> Self {
        Self {
            bar: None,
            started: Instant::now(),
        }
    }
}

impl Progress for Bars {
    fn start(&mut self, stage: &str) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(stage.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
        self.started = Instant::now();
    }
    fn finish(&mut self, stage: &str, note: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        eprintln!(
            "  {stage:<24} {:>7.1} s  {note}",
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `cargo build --release` of the programs the medium carries, with the
/// workspace path remapped so the binaries do not depend on where the
/// checkout lives. Returns the built ones.
pub fn build_binaries(root: &Path) -> Result<Vec<PathBuf>> {
    let mut flags = format!("--remap-path-prefix={}=/bulkhead", root.display());
    if let Some(home) = std::env::var_os("CARGO_HOME").or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo").into_os_string())
    }) {
        flags.push_str(&format!(
            "\x1f--remap-path-prefix={}=/cargo",
            PathBuf::from(home).display()
        ));
    }
    run(Command::new("cargo")
        .args([
            "build",
            "--release",
            "--locked",
            "--bins",
            "--workspace",
            "--exclude",
            "xtask",
            "--exclude",
            "bench",
        ])
        .env("CARGO_ENCODED_RUSTFLAGS", flags))?;
    let dir = crate::target_dir(root).join("release");
    BINARIES
        .iter()
        .map(|b| dir.join(b))
        .map(|p| {
            if p.is_file() {
                Ok(p)
            } else {
                bail!("cargo build did not leave {} behind", p.display())
            }
        })
        .collect()
}

pub fn recipe_paths(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("iso.toml"), root.join("inputs.lock"))
}

/// `rustc -vV` of the toolchain that builds the medium's programs.
pub fn toolchain() -> Result<String> {
    crate::output(Command::new("rustc").arg("-vV"))
}

/// How a build treats its lock.
#[derive(Debug, Clone)]
pub struct LockUse {
    /// The lock to build from.
    pub path: PathBuf,
    /// Refuse instead of refreshing pins nothing serves.
    pub locked: bool,
}

/// `cargo xtask lock`.
pub fn lock(root: &Path) -> Result<()> {
    crate::host::ensure_packages(root)?;
    let (recipe_path, lock_path) = recipe_paths(root);
    let text = std::fs::read_to_string(&recipe_path)
        .with_context(|| format!("reading {}", recipe_path.display()))?;
    let recipe = Recipe::parse(&text, "iso.toml")?;
    let scratch = tempfile::tempdir()?;
    let t = Instant::now();
    let lock = Lock::resolve(&recipe, scratch.path(), |tree| {
        eprintln!(
            "resolving tree `{tree}` against {:?}",
            recipe.debian.sources
        );
    })?;
    lock.write(&lock_path)?;
    let n: usize = lock.trees.values().map(Vec::len).sum();
    eprintln!(
        "wrote {} ({n} packages in {} trees, {:.0} s)",
        lock_path.display(),
        lock.trees.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_report(r: &BuildReport, total: Duration) {
    eprintln!(
        "\nbuilt {} in {:.1} s",
        r.iso.display(),
        total.as_secs_f64()
    );
    eprintln!("  sha256 {}", r.manifest.output.sha256);
    eprintln!("  size   {} MiB", r.manifest.output.size >> 20);
    for a in &r.manifest.images {
        eprintln!("  {:<32} {:>6} MiB", a.name, a.size >> 20);
    }
}

/// Builds the ISO from `iso.toml` + `inputs.lock` into `out`.
pub fn build_iso(
    root: &Path,
    out: &Path,
    cache: &Path,
    binaries: Vec<PathBuf>,
    offline: bool,
    lock: &LockUse,
    toolchain: Option<String>,
) -> Result<BuildReport> {
    let (recipe, _) = recipe_paths(root);
    let toolchain = match toolchain {
        Some(t) => t,
        None => self::toolchain()?,
    };
    let opts = BuildOptions {
        recipe,
        lock: lock.path.clone(),
        out_dir: out.to_path_buf(),
        cache: Cache::new(cache, lock::REFRESH).offline(offline),
        binaries,
        threads: threads(),
        locked: lock.locked,
        toolchain: Some(toolchain),
    };
    let t = Instant::now();
    let r = pipeline::build(&opts, &mut Bars::new())?;
    print_report(&r, t.elapsed());
    Ok(r)
}

/// `cargo xtask iso`.
pub fn iso(root: &Path, out: &Path, offline: bool, lock: &LockUse) -> Result<BuildReport> {
    crate::host::ensure_packages(root)?;
    let t = Instant::now();
    let bins = build_binaries(root)?;
    eprintln!(
        "  {:<24} {:>7.1} s  {} programs",
        "our binaries",
        t.elapsed().as_secs_f64(),
        bins.len()
    );
    build_iso(root, out, &Cache::default_root(), bins, offline, lock, None)
}

/// `cargo xtask repro`: two builds from the same cache in different
/// directories, with a different TZ, umask, LANG, user and clock, compared
/// byte for byte. Both build `--locked` from `lock` (the lock a release
/// ships: out/inputs.lock after `cargo xtask iso`).
pub fn repro(root: &Path, lock: &Path) -> Result<()> {
    crate::host::ensure_packages(root)?;
    let lock = std::path::absolute(lock)?;
    let bins = build_binaries(root)?;
    let cache = Cache::default_root();
    let base = root.join("target/repro");
    let _ = std::fs::remove_dir_all(&base);
    let (a, b) = (base.join("a"), base.join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let exe = std::env::current_exe()?;
    // Build B runs as another user, who may not reach rustup's toolchain.
    let rustc = toolchain()?;
    let bin_args: Vec<String> = bins
        .iter()
        .flat_map(|p| ["--bin".to_string(), p.display().to_string()])
        .collect();

    eprintln!(
        "==> build A in {} (TZ=UTC, umask 022, LANG=C.UTF-8)",
        a.display()
    );
    run(Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(&exe)
        .arg("build-iso")
        .arg("--toolchain")
        .arg(&rustc)
        .arg("--locked")
        .arg("--lock")
        .arg(&lock)
        .arg("--out")
        .arg(&a)
        .arg("--cache")
        .arg(&cache)
        .args(&bin_args)
        .env("TZ", "UTC")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8"))?;

    let mut needed: Vec<PathBuf> = vec![exe.clone(), lock.clone(), cache.join("sha256")];
    needed.push(recipe_paths(root).0);
    needed.extend(bins.iter().cloned());
    let other_user = other_user_for(&needed, &b);
    eprintln!(
        "==> build B in {} (TZ=Pacific/Kiritimati, umask 077, LANG=de_DE.UTF-8, clock +3 days{})",
        b.display(),
        match &other_user {
            Some(u) => format!(", uid {u}"),
            None => ", USER/HOME changed: another user cannot reach the checkout, the programs or the cache (e.g. a checkout under /root)".into(),
        }
    );
    let mut cmd = Command::new("faketime");
    cmd.arg("-f").arg("+3d");
    if let Some(u) = &other_user {
        cmd.args([
            "setpriv",
            "--reuid",
            u,
            "--regid",
            u,
            "--clear-groups",
            "--",
        ]);
    }
    cmd.args(["sh", "-c", "umask 077; exec \"$@\"", "sh"])
        .arg(&exe)
        .arg("build-iso")
        .arg("--toolchain")
        .arg(&rustc)
        .arg("--locked")
        .arg("--lock")
        .arg(&lock)
        .arg("--offline")
        .arg("--out")
        .arg(&b)
        .arg("--cache")
        .arg(&cache)
        .args(&bin_args)
        .env("TZ", "Pacific/Kiritimati")
        .env("LANG", "de_DE.UTF-8")
        .env("LC_ALL", "de_DE.UTF-8")
        .env("USER", "repro")
        .env("LOGNAME", "repro")
        .env("HOME", &b)
        .env("TMPDIR", &b);
    run(&mut cmd)?;

    let name = std::fs::read_dir(&a)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".iso"))
        .context("build A produced no .iso")?;
    let mut same = true;
    for f in [name.as_str(), "manifest.json", "SHA256SUMS"] {
        let x = std::fs::read(a.join(f)).with_context(|| format!("reading A/{f}"))?;
        let y = std::fs::read(b.join(f)).with_context(|| format!("reading B/{f}"))?;
        if x == y {
            eprintln!("identical: {f} ({} bytes)", x.len());
        } else {
            same = false;
            eprintln!("DIFFERENT: {f}");
        }
    }
    if same {
        eprintln!("repro: the two builds are byte-for-byte identical");
        return Ok(());
    }
    explain_difference(&a.join(&name), &b.join(&name))?;
    bail!("repro: the two builds differ (see above)")
}

/// When we are root: `nobody`'s uid, if it can read the cache.
/// The uid build B runs as: nobody (65534 on Debian) when this runs as
/// root and nobody can read every path in `needed` and write `out` (which
/// is handed to it first); `None` otherwise, and B then differs from A in
/// USER and HOME only.
fn other_user_for(needed: &[PathBuf], out: &Path) -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return None;
    }
    let _ = Command::new("chown")
        .arg("-R")
        .arg("65534:65534")
        .arg(out)
        .status();
    let reachable = Command::new("setpriv")
        .args([
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            "w=$1; shift; test -w \"$w\" || exit 1; for p; do test -r \"$p\" || exit 1; done",
            "sh",
        ])
        .arg(out)
        .args(needed)
        .status()
        .is_ok_and(|s| s.success());
    if !reachable {
        let _ = Command::new("chown").arg("-R").arg("0:0").arg(out).status();
    }
    reachable.then(|| "65534".to_string())
}

/// Names the first differing file (extracting both images with xorriso) and
/// runs diffoscope when it is installed.
fn explain_difference(a: &Path, b: &Path) -> Result<()> {
    let x = std::fs::read(a).with_context(|| format!("reading {}", a.display()))?;
    let y = std::fs::read(b).with_context(|| format!("reading {}", b.display()))?;
    if let Some(off) = x.iter().zip(&y).position(|(p, q)| p != q) {
        eprintln!(
            "first differing byte at offset {off} (sector {})",
            off / 2048
        );
    } else {
        eprintln!("sizes differ: {} vs {} bytes", x.len(), y.len());
    }
    let tmp = tempfile::tempdir()?;
    for (img, dir) in [(a, "a"), (b, "b")] {
        let _ = Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(img)
            .arg("-extract")
            .arg("/")
            .arg(tmp.path().join(dir))
            .output();
    }
    let out = Command::new("diff")
        .arg("-rq")
        .arg(tmp.path().join("a"))
        .arg(tmp.path().join("b"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next() {
        Some(first) => eprintln!("first differing file: {first}"),
        None => {
            eprintln!("the files inside are identical: the difference is in the image structure")
        }
    }
    if Command::new("diffoscope")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("installing diffoscope-minimal to explain the difference");
        let _ = Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "diffoscope-minimal",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    let _ = Command::new("diffoscope")
        .args(["--text", "-", "--max-report-size", "200000"])
        .arg(a)
        .arg(b)
        .status();
    Ok(())
}
