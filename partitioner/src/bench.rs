//! Benchmark for `cargo xtask bench`: LUKS2 format through our code
//! (libcryptsetup-rs) against `cryptsetup luksFormat` with the same
//! parameters on the same file, median of a few runs each, as a ratio.
//! Both use a fixed argon2id cost so the comparison measures everything but
//! the (by design identical) key-derivation time budget.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::luks::{self, Pbkdf};
use crate::plan::LuksPlan;

#[derive(Debug, Clone, Serialize)]
pub struct FormatBench {
    pub runs: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub ours_seconds: f64,
    pub cryptsetup_seconds: f64,
    /// ours / cryptsetup (below 1: we are faster).
    pub ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the format benchmark in `dir` (a 64 MiB file is made there).
pub fn luks_format(
    dir: &Path,
    runs: usize,
    memory_kib: u32,
    iterations: u32,
) -> Result<FormatBench, String> {
    let runs = runs.max(1);
    let file = dir.join("bench-luks.img");
    let pw = dir.join("bench-luks.pw");
    let pass = b"benchmark passphrase";
    std::fs::write(&pw, pass).map_err(|e| format!("writing {}: {e}", pw.display()))?;
    let uuid = uuid::Uuid::new_v4();
    let plan = LuksPlan {
        cipher: "aes-xts-plain64".into(),
        key_bits: 512,
        pbkdf: "argon2id".into(),
        sector_size: 512,
        label: crate::plan::LUKS_LABEL.into(),
        uuid,
        mapper_name: names::luks_mapper(&uuid),
    };
    let pbkdf = Pbkdf::Fixed {
        iterations,
        memory_kib,
        parallel_threads: 1,
    };
    let fresh = || -> Result<(), String> {
        let f = std::fs::File::create(&file).map_err(|e| e.to_string())?;
        f.set_len(64 << 20).map_err(|e| e.to_string())
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs {
        fresh()?;
        let t = Instant::now();
        luks::format(&file, &plan, pass, pbkdf).map_err(|e| e.to_string())?;
        ours.push(t.elapsed().as_secs_f64());
        fresh()?;
        let t = Instant::now();
        let out = Command::new("cryptsetup")
            .args([
                "luksFormat",
                "--batch-mode",
                "--type",
                "luks2",
                "--cipher",
                "aes-xts-plain64",
            ])
            .args([
                "--key-size",
                "512",
                "--sector-size",
                "512",
                "--pbkdf",
                "argon2id",
            ])
            .args(["--pbkdf-memory", &memory_kib.to_string()])
            .args(["--pbkdf-force-iterations", &iterations.to_string()])
            .args([
                "--pbkdf-parallel",
                "1",
                "--label",
                &plan.label,
                "--uuid",
                &uuid.to_string(),
            ])
            .arg("--key-file")
            .arg(&pw)
            .arg(&file)
            .output()
            .map_err(|e| format!("running cryptsetup: {e}"))?;
        theirs.push(t.elapsed().as_secs_f64());
        if !out.status.success() {
            return Err(format!(
                "cryptsetup luksFormat: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&pw);
    let (o, c) = (median(ours), median(theirs));
    Ok(FormatBench {
        runs,
        argon2_memory_kib: memory_kib,
        argon2_iterations: iterations,
        ours_seconds: o,
        cryptsetup_seconds: c,
        ratio: o / c,
    })
}
