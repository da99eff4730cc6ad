//! The mastering benchmark: the same tree (many small files and a few large
//! ones) written by this crate's writer and by `xorriso -as mkisofs -R -J`
//! in the same run; each twice, alternating, the faster run counts (both
//! then read from a warm page cache). `cargo xtask bench` calls [`run`];
//! `bulkhead-iso bench` is the same from the command line.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::iso9660::{self, Options};
use crate::isotree::Tree;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error("writing with bulkhead: {0}")]
    Ours(String),
    #[error("xorriso failed ({0}); apt-get install xorriso")]
    Xorriso(String),
}

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub files: u64,
    pub tree_bytes: u64,
    pub ours: Duration,
    pub xorriso: Duration,
    /// Peak resident memory of this process after our runs, KiB (an upper
    /// bound for the writer: it includes everything the process did before).
    pub ours_max_rss_kib: u64,
    /// Peak resident memory of the xorriso child, KiB.
    pub xorriso_max_rss_kib: u64,
    pub ours_image: u64,
    pub xorriso_image: u64,
}

impl BenchResult {
    /// Our time over xorriso's (below 1 is faster).
    pub fn ratio(&self) -> f64 {
        self.ours.as_secs_f64() / self.xorriso.as_secs_f64()
    }
}

impl fmt::Display for BenchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tree: {} files, {:.1} MiB\nbulkhead-iso: {:.3} s, image {:.1} MiB, peak RSS <= {} KiB (whole process)\nxorriso -as mkisofs -R -J: {:.3} s, image {:.1} MiB, peak RSS {} KiB\nratio bulkhead/xorriso: {:.2}",
            self.files,
            self.tree_bytes as f64 / 1048576.0,
            self.ours.as_secs_f64(),
            self.ours_image as f64 / 1048576.0,
            self.ours_max_rss_kib,
            self.xorriso.as_secs_f64(),
            self.xorriso_image as f64 / 1048576.0,
            self.xorriso_max_rss_kib,
            self.ratio()
        )
    }
}

use sysutil::io_err;

/// Deterministic filler bytes (xorshift), so compression-free and stable.
fn fill(buf: &mut [u8], mut state: u64) {
    for chunk in buf.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Creates the benchmark tree under `dir` (once; reused when its marker
/// file exists): 20,000 files of 1-20 KiB in 200 directories, plus four
/// large files making up the rest of `size_mib`.
pub fn make_tree(dir: &Path, size_mib: u64) -> Result<(u64, u64), BenchError> {
    let marker = dir.join(".complete");
    let small = 20_000u64;
    let mut total = 0u64;
    let mut count = 0u64;
    let mut buf = vec![0u8; 20 << 10];
    let fresh = !marker.exists();
    if fresh {
        let _ = fs::remove_dir_all(dir);
    }
    for i in 0..small {
        let size = 1024 + (i * 7919) % (19 << 10);
        let d = dir.join(format!("d{:03}", i % 200));
        let p = d.join(format!("file-{i:05}.dat"));
        if fresh {
            fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
            fill(&mut buf[..size as usize], i + 1);
            fs::write(&p, &buf[..size as usize]).map_err(io_err("writing", &p))?;
        }
        total += size;
        count += 1;
    }
    let rest = (size_mib << 20).saturating_sub(total);
    let big = rest / 4;
    let mut chunk = vec![0u8; 1 << 20];
    for j in 0..4u64 {
        let p = dir.join(format!("large-{j}.bin"));
        if fresh {
            let mut f = fs::File::create(&p).map_err(io_err("creating", &p))?;
            let mut left = big;
            let mut k = 0u64;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                fill(&mut chunk[..n], (j + 1) << 32 | k);
                f.write_all(&chunk[..n]).map_err(io_err("writing", &p))?;
                left -= n as u64;
                k += 1;
            }
        }
        total += big;
        count += 1;
    }
    if fresh {
        fs::write(&marker, b"").map_err(io_err("writing", &marker))?;
    }
    Ok((count, total))
}

fn ours(tree_dir: &Path, out: &Path) -> Result<Duration, BenchError> {
    let t = Instant::now();
    let tree = Tree::from_dir(tree_dir).map_err(|e| BenchError::Ours(e.to_string()))?;
    iso9660::write_image(&tree, Options::new("BENCH", 1_700_000_000), out)
        .map_err(|e| BenchError::Ours(e.to_string()))?;
    Ok(t.elapsed())
}

fn xorriso(tree_dir: &Path, out: &Path) -> Result<(Duration, u64), BenchError> {
    let t = Instant::now();
    let child = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", "BENCH", "-o"])
        .arg(out)
        .arg(tree_dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .spawn()
        .map_err(|e| BenchError::Xorriso(e.to_string()))?;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waiting for the child we spawned, with valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let elapsed = t.elapsed();
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(BenchError::Xorriso(format!("wait status {status}")));
    }
    Ok((elapsed, ru.ru_maxrss as u64))
}

fn self_max_rss() -> u64 {
    // SAFETY: getrusage fills a plain struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to our own rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as u64
}

/// Builds (or reuses) the tree under `scratch/tree` and times both writers.
pub fn run(scratch: &Path, size_mib: u64) -> Result<BenchResult, BenchError> {
    fs::create_dir_all(scratch).map_err(io_err("creating", scratch))?;
    let tree = scratch.join("tree");
    let (files, tree_bytes) = make_tree(&tree, size_mib)?;
    let a = scratch.join("bulkhead.iso");
    let b = scratch.join("xorriso.iso");
    let mut best_ours = Duration::MAX;
    let mut best_x = Duration::MAX;
    let mut x_rss = 0;
    for _ in 0..2 {
        best_ours = best_ours.min(ours(&tree, &a)?);
        let _ = fs::remove_file(&b);
        let (t, rss) = xorriso(&tree, &b)?;
        best_x = best_x.min(t);
        x_rss = x_rss.max(rss);
    }
    let size = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.len())
            .map_err(io_err("reading", p))
    };
    let r = BenchResult {
        files,
        tree_bytes,
        ours: best_ours,
        xorriso: best_x,
        ours_max_rss_kib: self_max_rss(),
        xorriso_max_rss_kib: x_rss,
        ours_image: size(&a)?,
        xorriso_image: size(&b)?,
    };
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
    Ok(r)
}
