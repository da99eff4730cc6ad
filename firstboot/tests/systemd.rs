//! The unit file: accepted by `systemd-analyze verify`, runs once (its
//! condition is the marker firstboot writes when complete), resumes.

use std::path::Path;

const UNIT: &str = include_str!("../systemd/bulkhead-firstboot.service");

#[test]
fn unit_verifies_and_runs_once() {
    let marker = firstboot::run::done_marker(Path::new("/"));
    assert!(
        UNIT.contains(&format!("ConditionPathExists=!{}\n", marker.display())),
        "the unit's condition must be the done marker {}",
        marker.display()
    );
    assert!(UNIT.contains("ExecStart=/usr/bin/firstboot --resume\n"));
    assert!(UNIT.contains("After=cryptsetup.target local-fs.target"));
    // After Xen's toolstack: its start steps need xenstored and xenconsoled.
    assert!(
        UNIT.contains(" xen.service\n") && UNIT.contains("Wants=cryptsetup.target xen.service\n")
    );
    // A run that did not finish is shown at the login prompts.
    assert!(UNIT.contains("ExecStopPost=/usr/bin/firstboot stopped\n"));
    assert!(UNIT.contains("Type=oneshot"));
    // No login, on any console, before the qubes exist.
    assert!(
        UNIT.contains(
            "Before=qubesd.service display-manager.service systemd-user-sessions.service\n"
        )
    );

    // systemd-analyze checks ExecStart's binary exists: point it at ours.
    let d = tempfile::tempdir().unwrap();
    let unit = d.path().join("bulkhead-firstboot.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/bin/firstboot", env!("CARGO_BIN_EXE_firstboot")),
    )
    .unwrap();
    let o = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd) is needed");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("bulkhead-firstboot.service"),
        "systemd-analyze complains about the unit:\n{err}"
    );
}
