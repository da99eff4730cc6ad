//! `cargo xtask bench`: each of our tools against the standard one on the
//! same input in the same run; the ratios go to bench/RESULTS.md.
//!
//! A crate of its own because it links every library (the LUKS benchmark
//! needs libcryptsetup): xtask installs the host packages first and then runs
//! it with `cargo run --release -p bench`, so xtask itself needs no system
//! library.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Best of `n` timings of `f`.
fn best(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

/// liblzma's multithreaded encoder vs `xz -6 -T0` on the same bytes.
fn xz_vs_cli(scratch: &Path) -> Result<(f64, f64, usize)> {
    // A compressible, non-trivial 64 MiB input (text-like).
    let mut data = Vec::with_capacity(64 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < 64 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = writeln!(data, "{:x} {} bulkhead {}", x >> 40, x % 1000, x % 7);
    }
    let input = scratch.join("xz-input");
    std::fs::write(&input, &data)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    let ours = best(2, || {
        let mut out = Vec::new();
        iso_builder::compress::xz(&data[..], &mut out, 6, threads)?;
        Ok(())
    })?;
    let cli = best(2, || {
        let st = Command::new("xz")
            .args(["-6", "-T0", "--check=crc32", "-c", "-k"])
            .arg(format!(
                "--block-size={}",
                iso_builder::compress::BLOCK_SIZE
            ))
            .arg(&input)
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("xz failed");
        }
        Ok(())
    })?;
    Ok((secs(ours), secs(cli), data.len()))
}

fn main() -> Result<()> {
    if cfg!(debug_assertions) {
        bail!("run it optimised: `cargo xtask bench` (or `cargo run --release -p bench`)");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has no parent directory")?;
    let scratch = root.join("target/bench");
    std::fs::create_dir_all(&scratch)?;
    let mut md = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench` on this machine; each line measures our tool and the standard one on the same input in the same run.\n\n| what | ours | standard | ratio (ours/standard) | notes |\n|---|---|---|---|---|\n",
    );

    eprintln!("==> hcl-check full probe");
    let mut t = hcl_check::bench(50);
    t.sort();
    let median = t[t.len() / 2];
    let _ = writeln!(
        md,
        "| hcl-check full probe (50 runs) | {:.2} ms median | goal 100 ms | {:.3} | min {:.2} ms, max {:.2} ms |",
        median.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3 / 100.0,
        t[0].as_secs_f64() * 1e3,
        t[t.len() - 1].as_secs_f64() * 1e3
    );

    eprintln!("==> ISO mastering vs xorriso -as mkisofs -R -J (1 GiB tree)");
    let r =
        iso_builder::bench::run(&scratch.join("iso"), 1024).map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!("{r}");
    let _ = writeln!(
        md,
        "| ISO mastering, {} files, {:.0} MiB | {:.2} s, {} KiB RSS | {:.2} s, {} KiB RSS (`xorriso -as mkisofs -R -J`) | {:.2} | best of 2 each, warm page cache |",
        r.files,
        r.tree_bytes as f64 / 1048576.0,
        secs(r.ours),
        r.ours_max_rss_kib,
        secs(r.xorriso),
        r.xorriso_max_rss_kib,
        r.ratio()
    );

    eprintln!("==> xz: liblzma multithreaded vs the xz CLI");
    let (ours, cli, n) = xz_vs_cli(&scratch)?;
    let _ = writeln!(
        md,
        "| xz -6, {} MiB, all cores | {ours:.2} s | {cli:.2} s (`xz -6 -T0`) | {:.2} | same block size, byte-identical output |",
        n >> 20,
        ours / cli
    );

    eprintln!("==> LUKS2 format vs cryptsetup luksFormat");
    let l = partitioner::bench::luks_format(&scratch, 3, 65536, 4)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("LUKS benchmark")?;
    let _ = writeln!(
        md,
        "| LUKS2 format (aes-xts-plain64, 512-bit, argon2id {} KiB x{}) | {:.3} s | {:.3} s (`cryptsetup luksFormat`) | {:.2} | median of {} |",
        l.argon2_memory_kib,
        l.argon2_iterations,
        l.ours_seconds,
        l.cryptsetup_seconds,
        l.ratio,
        l.runs
    );

    eprintln!("==> firstboot: default qubes (offline backend)");
    let f = firstboot::bench::offline(&scratch).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = writeln!(
        md,
        "| firstboot, {} qubes in {} steps (offline backend) | {:.2} s | goal 60 s (Qubes' initial setup: minutes) | {:.3} | qubes.xml, xl configs, recorded volumes |",
        f.qubes,
        f.steps,
        f.total_seconds,
        f.total_seconds / 60.0
    );

    let out = root.join("bench/RESULTS.md");
    std::fs::create_dir_all(out.parent().context("bench dir")?)?;
    std::fs::write(&out, &md)?;
    eprintln!("\n{md}\nwritten to {}", out.display());
    Ok(())
}
