//! Benchmark for `cargo xtask bench`: time to create the default qubes with
//! the offline backend (qubes.xml, xl configs, recorded volumes; Qubes'
//! defaults, two templates with 1 MiB images). The goal is under
//! 60 s for all of them; the in-guest LVM run (tests/guest_lvm.rs) prints
//! its own total for the real-volume case.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::Error;
use crate::backend::Notes;
use crate::run::{self, Options, Progress, StorageMode};

/// What one benchmark run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Qubes in the resulting qubes.xml (dom0 included).
    pub qubes: usize,
    pub steps: usize,
    /// Wall time of the whole run, seconds.
    pub total_seconds: f64,
    /// Each step's description and time in seconds.
    pub per_step: Vec<(String, f64)>,
}

#[derive(Default)]
struct Timings {
    current: String,
    steps: Vec<(String, Duration)>,
}

impl Progress for Timings {
    fn step_started(&mut self, _i: usize, _n: usize, d: &str) {
        self.current = d.to_string();
    }
    fn step_done(&mut self, _i: usize, _n: usize, _notes: &Notes, t: Duration) {
        self.steps.push((std::mem::take(&mut self.current), t));
    }
}

/// Runs first boot with Qubes' defaults into a fresh root under `workdir`.
pub fn offline(workdir: &Path) -> Result<BenchReport, Error> {
    let root = workdir.join("firstboot-bench-root");
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| Error::io("removing", &root, e))?;
    }
    let kernels = root.join("var/lib/qubes/vm-kernels/6.6.48-1");
    std::fs::create_dir_all(&kernels).map_err(|e| Error::io("creating", &kernels, e))?;
    let images = root.join("usr/share/bulkhead/templates");
    std::fs::create_dir_all(&images).map_err(|e| Error::io("creating", &images, e))?;
    for t in &crate::settings::Settings::default().templates {
        let p = images.join(format!("{}.img", t.name));
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
        std::fs::write(&p, data).map_err(|e| Error::io("writing", &p, e))?;
    }
    // A laptop's controllers: a NIC for sys-net, USB for sys-usb.
    for (dev, class) in [("0000:00:19.0", "0x020000"), ("0000:00:14.0", "0x0c0330")] {
        let d = root.join("sys/bus/pci/devices").join(dev);
        std::fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
        std::fs::write(d.join("class"), format!("{class}\n"))
            .map_err(|e| Error::io("writing", &d, e))?;
    }
    let mut opts = Options::new(&root);
    opts.storage = StorageMode::Record;
    let mut timings = Timings::default();
    let report = run::run(&opts, &mut timings)?;
    let x = crate::qubesxml::QubesXml::load(&root.join(crate::offline::QUBES_XML))?;
    let out = BenchReport {
        qubes: x.domains.len(),
        steps: report.steps_run,
        total_seconds: report.elapsed.as_secs_f64(),
        per_step: timings
            .steps
            .into_iter()
            .map(|(d, t)| (d, t.as_secs_f64()))
            .collect(),
    };
    std::fs::remove_dir_all(&root).map_err(|e| Error::io("removing", &root, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn offline_bench_runs_every_step() {
        let d = tempfile::tempdir().unwrap();
        let r = super::offline(d.path()).unwrap();
        assert_eq!(r.qubes, 11);
        assert_eq!(r.steps, 21);
        assert_eq!(r.per_step.len(), 21);
        assert!(!d.path().join("firstboot-bench-root").exists());
    }
}
