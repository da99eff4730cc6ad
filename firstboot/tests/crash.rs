//! Crash and rerun at every point of every step, with the real binary:
//! an injected failure (the run stops with an error) and a SIGKILL (the
//! process dies mid-run). After `firstboot --resume` the state must be byte
//! for byte the state of an uninterrupted run, and the action log must show
//! every volume made exactly once.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::*;

const SETTINGS: &str = "";
const ACTIONS: &str = "var/lib/bulkhead/firstboot/actions.log";

struct Reference {
    tree: BTreeMap<std::path::PathBuf, Vec<u8>>,
    actions: Vec<String>,
    points: Vec<String>,
}

fn reference() -> Reference {
    let d = tempdir();
    machine(d.path(), SETTINGS);
    let log = d.path().join("points.log");
    ok(&firstboot(
        d.path(),
        &[],
        &[("BULKHEAD_FIRSTBOOT_POINTS", log.to_str().unwrap())],
    ));
    let points: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    Reference {
        tree: comparable(d.path()),
        actions: actions(d.path()),
        points,
    }
}

/// The whole state except the action log (compared separately: a resumed
/// import legitimately rewrites an image into the same volume).
fn comparable(root: &Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut t = tree(root);
    t.remove(Path::new(ACTIONS));
    t
}

fn actions(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join(ACTIONS))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every creating action (pool, volume, snapshot, rename) appears once, and
/// the set equals the uninterrupted run's.
fn check_actions(point: &str, got: &[String], want: &[String]) {
    let creating = |v: &[String]| -> Vec<String> {
        let mut c: Vec<String> = v
            .iter()
            .filter(|l| !l.starts_with("import "))
            .cloned()
            .collect();
        c.sort();
        c
    };
    let g = creating(got);
    let mut dedup = g.clone();
    dedup.dedup();
    assert_eq!(
        g, dedup,
        "after a crash at {point}, something was created twice: {got:#?}"
    );
    assert_eq!(
        g,
        creating(want),
        "after a crash at {point}, different volumes were made"
    );
}

fn diff(
    point: &str,
    got: &BTreeMap<std::path::PathBuf, Vec<u8>>,
    want: &BTreeMap<std::path::PathBuf, Vec<u8>>,
) {
    for (p, w) in want {
        match got.get(p) {
            None => panic!("after a crash at {point}: {} is missing", p.display()),
            Some(g) if g != w => panic!(
                "after a crash at {point}: {} differs:\n--- got\n{}\n--- want\n{}",
                p.display(),
                String::from_utf8_lossy(g),
                String::from_utf8_lossy(w)
            ),
            _ => {}
        }
    }
    for p in got.keys() {
        assert!(
            want.contains_key(p),
            "after a crash at {point}: extra file {}",
            p.display()
        );
    }
}

#[test]
fn every_point_is_covered() {
    let r = reference();
    // Every step has begin and end points, and the phases inside are there.
    for want in [
        "init-store:begin",
        "init-store:write",
        "vm-pool:lvm",
        "template:fedora-41-xfce:import-volume",
        "template:fedora-41-xfce:imported",
        "template:fedora-41-xfce:volumes",
        "qube:sys-firewall:xl-config",
        "prefs:clockvm:write",
        "qube:work:units",
        "start:sys-net:checked",
        "start:sys-net:end",
        "start:sys-usb:checked",
        "start:sys-usb:end",
    ] {
        assert!(
            r.points.contains(&want.to_string()),
            "{want} not reached: {:?}",
            r.points
        );
    }
    assert_eq!(
        r.points.iter().filter(|p| p.ends_with(":begin")).count(),
        21
    );
    assert!(r.points.len() > 70, "{}", r.points.len());
}

#[test]
fn injected_failure_at_every_point_then_resume() {
    let r = reference();
    for point in &r.points {
        let d = tempdir();
        let root = d.path();
        machine(root, SETTINGS);
        let o = firstboot(root, &[], &[("BULKHEAD_FIRSTBOOT_FAIL_AT", point)]);
        assert!(
            !o.status.success(),
            "{point}: the injected failure did not fail the run"
        );
        let err = String::from_utf8_lossy(&o.stderr);
        let step = point.rsplit_once(':').unwrap().0;
        assert!(
            err.contains(&format!("step {step} did not complete"))
                && err.contains("firstboot --resume"),
            "{point}: the failure message does not say what failed and how to rerun:\n{err}"
        );
        assert!(
            root.join("var/lib/bulkhead/firstboot/last-failure")
                .exists()
        );
        // A plain rerun refuses and points to --resume.
        let o = firstboot(root, &[], &[]);
        assert!(!o.status.success(), "{point}: a plain rerun went ahead");
        assert!(String::from_utf8_lossy(&o.stderr).contains("run `firstboot --resume`"));
        ok(&firstboot(root, &["--resume"], &[]));
        diff(point, &comparable(root), &r.tree);
        check_actions(point, &actions(root), &r.actions);
    }
}

#[test]
fn sigkill_at_every_point_then_resume() {
    let r = reference();
    for point in &r.points {
        let d = tempdir();
        let root = d.path();
        machine(root, SETTINGS);
        let o = firstboot(root, &[], &[("BULKHEAD_FIRSTBOOT_KILL_AT", point)]);
        assert_eq!(
            o.status.signal(),
            Some(9),
            "{point}: not killed: {}",
            o.status
        );
        ok(&firstboot(root, &["--resume"], &[]));
        diff(point, &comparable(root), &r.tree);
        check_actions(point, &actions(root), &r.actions);
    }
}

#[test]
fn two_crashes_in_a_row() {
    let r = reference();
    let d = tempdir();
    let root = d.path();
    machine(root, SETTINGS);
    let o = firstboot(
        root,
        &[],
        &[("BULKHEAD_FIRSTBOOT_KILL_AT", "qube:work:volumes")],
    );
    assert_eq!(o.status.signal(), Some(9));
    let o = firstboot(
        root,
        &["--resume"],
        &[("BULKHEAD_FIRSTBOOT_KILL_AT", "start:sys-firewall:checked")],
    );
    assert_eq!(o.status.signal(), Some(9));
    let err = ok(&firstboot(root, &["--resume"], &[]));
    assert!(err.contains("already done"), "{err}");
    diff("two points", &comparable(root), &r.tree);
    check_actions("two points", &actions(root), &r.actions);
}
