//! dom0's disk hotplug script for the qubes (firstboot/xen/block-bulkhead),
//! run as libxl runs it (`XENBUS_PATH`, `add`/`remove`) with a xenstore
//! kept in files (fake `xenstore-read`/`xenstore-write` on PATH) and a real
//! block device of this machine. That blkback then serves the device is
//! the installed system's boot test.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/xen/block-bulkhead");
const BE: &str = "/local/domain/0/backend/vbd/7/51712";

const READ: &str = r#"#!/bin/sh
f="$FAKE_XS$1"
[ -f "$f" ] || { echo "xenstore-read: couldn't read path $1" >&2; exit 1; }
cat "$f"
"#;
const WRITE: &str = r#"#!/bin/sh
while [ $# -ge 2 ]; do
    mkdir -p "$(dirname "$FAKE_XS$1")"
    printf '%s' "$2" > "$FAKE_XS$1"
    shift 2
done
"#;

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        for (n, t) in [("xenstore-read", READ), ("xenstore-write", WRITE)] {
            let p = dir.path().join("bin").join(n);
            std::fs::write(&p, t).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Store { dir }
    }

    fn key(&self, k: &str) -> PathBuf {
        self.dir.path().join("xs").join(k.trim_start_matches('/'))
    }

    fn set(&self, k: &str, v: &str) {
        let p = self.key(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }

    fn get(&self, k: &str) -> Option<String> {
        std::fs::read_to_string(self.key(k)).ok()
    }

    fn run(&self, arg: &str) -> Output {
        let path = std::env::var("PATH").unwrap_or_default();
        Command::new("sh")
            .arg(SCRIPT)
            .arg(arg)
            .env("XENBUS_PATH", BE)
            .env("FAKE_XS", self.dir.path().join("xs"))
            .env(
                "PATH",
                format!("{}:{path}", self.dir.path().join("bin").display()),
            )
            .output()
            .unwrap()
    }
}

/// Some block device this machine has.
fn a_block_device() -> PathBuf {
    std::fs::read_dir("/sys/class/block")
        .unwrap()
        .filter_map(|e| Some(Path::new("/dev").join(e.ok()?.file_name())))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        .expect("this machine has no block device in /dev")
}

#[test]
fn add_names_the_device_blkback_serves_and_reports_connected() {
    let s = Store::new();
    let dev = a_block_device();
    s.set(&format!("{BE}/params"), &dev.display().to_string());
    let o = s.run("add");
    assert!(o.status.success(), "{o:?}");
    let rdev = std::fs::metadata(&dev).unwrap().rdev();
    // glibc's gnu_dev_major/minor
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    assert_eq!(
        s.get(&format!("{BE}/physical-device")),
        Some(format!("{major:x}:{minor:x}"))
    );
    assert_eq!(
        s.get(&format!("{BE}/physical-device-path")),
        Some(dev.display().to_string())
    );
    assert_eq!(
        s.get(&format!("{BE}/hotplug-status")).as_deref(),
        Some("connected")
    );
    assert!(s.run("remove").status.success());
}

#[test]
fn a_target_that_is_not_a_block_device_is_an_error_libxl_reports() {
    let s = Store::new();
    s.set(&format!("{BE}/params"), "/dev/null");
    let o = s.run("add");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/dev/null is not a block device"));
    assert_eq!(
        s.get(&format!("{BE}/hotplug-status")).as_deref(),
        Some("error")
    );
    assert!(s.get(&format!("{BE}/physical-device")).is_none());
    assert!(
        s.get(&format!("{BE}/hotplug-error"))
            .is_some_and(|e| e.contains("not a block device"))
    );
}

#[test]
fn an_unknown_command_is_refused() {
    let s = Store::new();
    let o = s.run("online");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown command 'online'"));
}
