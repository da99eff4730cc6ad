//! Shared fixtures: a system root made by first boot (offline backend,
//! volumes recorded), a fake `xl`, `systemctl` and `xenstore-read` on PATH for the control
//! flow only, and helpers to run the real `qube` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_qube");

/// A root with the default qubes, created by firstboot's library (storage
/// recorded in var/lib/bulkhead/firstboot/volumes.list).
pub fn root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let pci = root.join("sys/bus/pci/devices");
    for (bdf, class) in [("0000:00:19.0", "0x020000"), ("0000:00:14.0", "0x0c0330")] {
        std::fs::create_dir_all(pci.join(bdf)).unwrap();
        std::fs::write(pci.join(bdf).join("class"), format!("{class}\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("var/lib/qubes/vm-kernels/6.6.48-1")).unwrap();
    let images = root.join("usr/share/bulkhead/templates");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("fedora-41-xfce.img"), [1u8; 4096]).unwrap();
    std::fs::create_dir_all(root.join("etc/bulkhead")).unwrap();
    std::fs::write(
        root.join("etc/bulkhead/firstboot.toml"),
        "[[templates]]\nname = \"fedora-41-xfce\"\nimage = \"/usr/share/bulkhead/templates/fedora-41-xfce.img\"\n",
    )
    .unwrap();
    let mut opts = firstboot::run::Options::new(root);
    opts.storage = firstboot::run::StorageMode::Record;
    firstboot::run::run(&opts, &mut firstboot::run::Quiet).unwrap();
    d
}

/// Makes the root look like a running Xen dom0 (its capabilities file).
pub fn xen_on(root: &Path) {
    std::fs::create_dir_all(root.join("proc/xen")).unwrap();
    std::fs::write(root.join("proc/xen/capabilities"), "control_d\n").unwrap();
}

/// A fake `xl` (and `systemctl`) for the control flow: domains are files
/// in `state/`; every call is appended to `state/calls`.
pub struct Fakes {
    pub dir: tempfile::TempDir,
}

const XL: &str = r#"#!/bin/sh
S="$FAKE_STATE"
echo "xl $*" >> "$S/calls"
case "$1" in
list)
    echo "Name                                        ID   Mem VCPUs	State	Time(s)"
    echo "Domain-0                                     0  4096     2     r-----      10.0"
    i=1
    for f in "$S"/dom-*; do
        [ -e "$f" ] || continue
        i=$((i + 1))
        echo "${f##*/dom-}  $i  400  2  $(cat "$f")  1.0"
    done
    ;;
domid)
    [ -e "$S/dom-$2" ] && { echo 7; exit 0; }
    echo "Can't get domid of domain name '$2', maybe this domain does not exist." >&2
    exit 1
    ;;
create)
    [ "$2" = -F ] || exit 64
    if [ -n "$FAKE_XL_CREATE_FAILS" ]; then
        echo "libxl: error: the config is broken" >&2
        exit 3
    fi
    name=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$3")
    # built paused, unpaused once its devices are attached
    echo "--p---" > "$S/dom-$name"
    ( sleep 0.5; [ -e "$S/dom-$name" ] && echo "-b----" > "$S/dom-$name" ) &
    echo "Parsing config from $3" >&2
    while [ -e "$S/dom-$name" ]; do sleep 0.05; done
    exit "${FAKE_XL_EXIT:-0}"
    ;;
shutdown)
    [ -n "$FAKE_XL_SHUTDOWN_HANGS" ] && exec sleep 30
    if [ -n "$FAKE_XL_SHUTDOWN_LINGERS" ]; then
        # the guest has shut down; its xl destroys the domain a moment later
        echo "---s--" > "$S/dom-$3"
        ( sleep 1; rm -f "$S/dom-$3" ) &
        exit 0
    fi
    rm -f "$S/dom-$3"
    ;;
destroy)
    rm -f "$S/dom-$2"
    ;;
*)
    exit 64
    ;;
esac
"#;

/// A fake `xenstore-read`: a network backend says it is ready from the
/// third time it is asked.
const XENSTORE_READ: &str = r#"#!/bin/sh
S="$FAKE_STATE"
echo "xenstore-read $*" >> "$S/calls"
n=$(grep -c '^xenstore-read ' "$S/calls")
[ "$n" -ge 3 ] && { echo ready; exit 0; }
echo "xenstore-read: couldn't read path $1" >&2
exit 1
"#;

const SYSTEMCTL: &str = r#"#!/bin/sh
echo "systemctl $*" >> "$FAKE_STATE/calls"
exit "${FAKE_SYSTEMCTL_EXIT:-0}"
"#;

impl Fakes {
    pub fn new() -> Fakes {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::create_dir(dir.path().join("state")).unwrap();
        for (name, text) in [
            ("xl", XL),
            ("systemctl", SYSTEMCTL),
            ("xenstore-read", XENSTORE_READ),
        ] {
            let p = dir.path().join("bin").join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fakes { dir }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Xen has a domain `name` in this `xl list` state.
    pub fn domain(&self, name: &str, flags: &str) {
        std::fs::write(self.state().join(format!("dom-{name}")), flags).unwrap();
    }

    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `qube --root ROOT ARGS` with the fakes first on PATH.
    pub fn qube(&self, root: &Path, args: &[&str]) -> Command {
        let mut c = qube(root, args);
        let path = std::env::var("PATH").unwrap_or_default();
        c.env(
            "PATH",
            format!("{}:{path}", self.dir.path().join("bin").display()),
        )
        .env("FAKE_STATE", self.state());
        c
    }
}

/// `qube --root ROOT ARGS`, no notification socket inherited.
pub fn qube(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("NOTIFY_SOCKET");
    c
}

/// Output, asserting success; returns stderr.
pub fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "qube failed: {}\nstdout:\n{}\nstderr:\n{err}",
        o.status,
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// Output, asserting failure; returns stderr.
pub fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "qube succeeded but should not have\nstdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&o.stdout)
    );
    err
}

/// The recorded volumes (`thin NAME ...`, `snapshot NAME origin=...`).
pub fn volumes(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("var/lib/bulkhead/firstboot/volumes.list"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

pub fn has_volume(root: &Path, prefix: &str) -> bool {
    volumes(root).iter().any(|l| l.starts_with(prefix))
}
