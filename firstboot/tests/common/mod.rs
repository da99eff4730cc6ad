//! Shared test fixtures: a system root with sysfs-like PCI devices, a VM
//! kernel directory and template images, and helpers to run the real binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_firstboot");

/// Writes a machine under `root`: one network and one USB controller, a VM
/// kernel, a PS/2 keyboard, the template images and the given settings.
pub fn machine(root: &Path, settings: &str) {
    let pci = root.join("sys/bus/pci/devices");
    for (bdf, class) in [
        ("0000:00:19.0", "0x020000"),
        ("0000:00:14.0", "0x0c0330"),
        ("0000:00:02.0", "0x030000"),
    ] {
        std::fs::create_dir_all(pci.join(bdf)).unwrap();
        std::fs::write(pci.join(bdf).join("class"), format!("{class}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("var/lib/qubes/vm-kernels/6.6.48-1")).unwrap();
    let images = root.join("usr/share/bulkhead/templates");
    std::fs::create_dir_all(&images).unwrap();
    for (name, len) in [
        ("fedora-41-xfce", 3 << 20),
        ("debian-12-xfce", (1 << 20) + 17),
    ] {
        let mut data = vec![0u8; len];
        for (i, b) in data.iter_mut().enumerate().step_by(4093) {
            *b = (i % 251) as u8 | 1;
        }
        std::fs::write(images.join(format!("{name}.img")), data).unwrap();
    }
    std::fs::create_dir_all(root.join("etc/bulkhead")).unwrap();
    std::fs::write(root.join("etc/bulkhead/firstboot.toml"), settings).unwrap();
}

/// A temporary root in memory when /dev/shm exists (hundreds of runs fsync).
pub fn tempdir() -> tempfile::TempDir {
    match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

pub fn firstboot(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("--root").arg(root).args(args);
    c.env_remove("BULKHEAD_FIRSTBOOT_FAIL_AT")
        .env_remove("BULKHEAD_FIRSTBOOT_KILL_AT")
        .env_remove("BULKHEAD_FIRSTBOOT_HANG_AT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "firstboot failed: {}\nstdout:\n{}\nstderr:\n{err}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// Every file (a symlink as its target) under the state directories, by
/// relative path.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                let mut v = b"symlink -> ".to_vec();
                v.extend_from_slice(target.as_os_str().as_encoded_bytes());
                out.insert(p.strip_prefix(base).unwrap().to_path_buf(), v);
            } else if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &root.join("var/lib"), &mut out);
    walk(root, &root.join("etc/qubes"), &mut out);
    walk(root, &root.join("etc/systemd"), &mut out);
    out
}

pub fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
