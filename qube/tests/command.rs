//! The `qube` command on an offline root made by first boot: the listing,
//! the refusals and what each says to do, and the way to root through sudo.

mod common;

use common::*;

#[test]
fn list_shows_every_qube_halted_without_xen() {
    let d = root();
    let o = qube(d.path(), &["list"]).output().unwrap();
    let err = ok(&o);
    assert!(err.contains("Xen is not running"), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "CLASS", "LABEL", "TEMPLATE", "NETVM", "STATE"]
    );
    let find = |n: &str| rows.iter().find(|r| r[0] == n).unwrap().clone();
    assert_eq!(
        find("dom0"),
        ["dom0", "AdminVM", "black", "-", "-", "Running"]
    );
    assert_eq!(
        find("work"),
        [
            "work",
            "AppVM",
            "blue",
            "fedora-41-xfce",
            "sys-firewall",
            "Halted"
        ]
    );
    assert_eq!(rows.len(), 1 + 10, "{out}");

    let o = qube(d.path(), &["ls", "--json"]).output().unwrap();
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fw = j
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "sys-firewall")
        .unwrap();
    assert_eq!(fw["netvm"], "sys-net");
    assert_eq!(fw["class"], "DispVM");
}

#[test]
fn list_takes_states_from_xl_list() {
    let d = root();
    xen_on(d.path());
    let f = Fakes::new();
    f.domain("sys-net", "-b----");
    f.domain("work", "--p---");
    f.domain("vault", "----c-");
    let o = f.qube(d.path(), &["list"]).output().unwrap();
    let err = ok(&o);
    assert!(!err.contains("Xen is not running"), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    let state = |n: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .and_then(|l| l.split_whitespace().last())
            .unwrap()
            .to_string()
    };
    assert_eq!(state("sys-net"), "Running");
    assert_eq!(state("work"), "Paused");
    assert_eq!(state("vault"), "Crashed");
    assert_eq!(state("sys-firewall"), "Halted");
    assert_eq!(state("dom0"), "Running");
}

#[test]
fn refusals_say_what_to_do() {
    let d = root();
    let err = fails(&qube(d.path(), &["start", "nope"]).output().unwrap());
    assert!(
        err.contains("no qube named nope (`qube list` shows them)"),
        "{err}"
    );
    let err = fails(&qube(d.path(), &["kill", "dom0"]).output().unwrap());
    assert!(err.contains("dom0 is the admin qube"), "{err}");
    // An offline root has no Xen: nothing starts there.
    let err = fails(&qube(d.path(), &["start", "work"]).output().unwrap());
    assert!(
        err.contains("not the running system's root") && err.contains("without --root"),
        "{err}"
    );
    let err = fails(&qube(d.path(), &["console", "work"]).output().unwrap());
    assert!(err.contains("not the running system's root"), "{err}");

    // No qubes.xml: first boot has not run.
    let empty = tempfile::tempdir().unwrap();
    for args in [&["list"][..], &["start", "work"], &["release", "work"]] {
        let err = fails(&qube(empty.path(), args).output().unwrap());
        assert!(
            err.contains("first boot has not run") && err.contains("firstboot --resume"),
            "{args:?}: {err}"
        );
    }
}

/// A fake sudo: `check-root` is refused with sudo's words when
/// FAKE_SUDO_REFUSES is set; anything else is echoed.
const SUDO: &str = r#"#!/bin/sh
if [ "$3" = check-root ]; then
    [ -n "$FAKE_SUDO_REFUSES" ] && { echo "sudo: a password is required" >&2; exit 1; }
    exit 0
fi
echo "sudo $*"
"#;

#[test]
fn another_user_goes_through_sudo() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sudo = d.path().join("sudo");
    std::fs::write(&sudo, SUDO).unwrap();
    std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |refuse: bool| {
        let mut c = std::process::Command::new(BIN);
        c.args(["shutdown", "--force", "work"])
            .env("PATH", format!("{}:/usr/bin:/bin", d.path().display()));
        if refuse {
            c.env("FAKE_SUDO_REFUSES", "1");
        }
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            c.uid(65534).gid(65534);
        }
        c.output().unwrap()
    };
    let o = run(false);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out.trim(), "sudo -n /usr/bin/qube shutdown --force work");
    let err = fails(&run(true));
    assert!(
        err.contains("qube needs root: add your user to the qubes group or run it with sudo")
            && err.contains("a password is required"),
        "{err}"
    );
}
