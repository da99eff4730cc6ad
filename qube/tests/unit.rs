//! The qubes' template unit and the sudoers rule: accepted by their own
//! checkers (`systemd-analyze verify`, `visudo -c`), and saying what the
//! lifecycle needs (notify type, the three entry points, Xen first, no
//! wait on first boot, sane limits).

const UNIT: &str = include_str!("../../firstboot/systemd/bulkhead-qube@.service");
const SUDOERS: &str = include_str!("../sudoers");

#[test]
fn unit_runs_a_qube_through_qube_and_verifies() {
    for line in [
        "After=xen.service\n",
        "Requires=xen.service\n",
        "Type=notify\n",
        "NotifyAccess=main\n",
        "ExecStart=/usr/bin/qube run %i\n",
        "ExecStop=/usr/bin/qube halt %i\n",
        "ExecStopPost=/usr/bin/qube release %i\n",
        "TimeoutStartSec=10min\n",
        "TimeoutStopSec=3min\n",
        "WantedBy=multi-user.target\n",
    ] {
        assert!(UNIT.contains(line), "the unit lacks {line:?}");
    }
    // First boot starts qubes from inside its own run: waiting for it would deadlock.
    let ordering: Vec<&str> = UNIT
        .lines()
        .filter(|l| {
            l.starts_with("After=") || l.starts_with("Requires=") || l.starts_with("Wants=")
        })
        .collect();
    assert!(
        ordering.iter().all(|l| !l.contains("firstboot")),
        "{ordering:?}"
    );
    // halt's own limit ends within the stop limit, leaving time to destroy.
    const { assert!(firstboot::control::HALT_SECS < 180) };

    // systemd-analyze checks that the programs exist: point them at ours.
    // It verifies an instance of the template in the same directory, with
    // firstboot's netvm drop-in, and a stand-in for Debian's generated
    // xen.service (the sysv script's unit).
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::write(
        dir.join("bulkhead-qube@.service"),
        UNIT.replace("/usr/bin/qube", env!("CARGO_BIN_EXE_qube")),
    )
    .unwrap();
    std::fs::write(
        dir.join("xen.service"),
        "[Unit]\nDescription=stand-in for xen.service\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
    )
    .unwrap();
    // The drop-in firstboot writes, next to the template where
    // systemd-analyze looks (on a system: etc/systemd/system).
    let local = dir.join("bulkhead-qube@work.service.d");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(
        local.join("50-netvm.conf"),
        firstboot::units::netvm_dropin("work", "sys-net"),
    )
    .unwrap();
    let o = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("bulkhead-qube@work.service"))
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .output()
        .expect("systemd-analyze (package systemd) is needed");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let complaints: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.contains("bulkhead-qube")
                && (l.contains("rror") || l.contains("arning") || l.contains("nknown"))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze complains about the unit:\n{err}"
    );
    // The drop-in is read: it pulls in the netvm's unit.
    assert!(
        err.contains("Installed new job bulkhead-qube@sys-net.service/start"),
        "{err}"
    );

    // And it can say no: a broken copy is refused.
    let bad = dir.join("broken@bad.service");
    std::fs::write(&bad, UNIT.replace("Type=notify", "Type=notifyy")).unwrap();
    let o = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("notifyy"),
        "systemd-analyze accepted a broken unit:\n{err}"
    );
}

#[test]
fn sudoers_lets_the_qubes_group_run_qube_as_root() {
    let rule = SUDOERS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect::<Vec<_>>();
    assert_eq!(rule, ["%qubes ALL=(root) NOPASSWD: /usr/bin/qube"]);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bulkhead-qube");
    std::fs::write(&p, SUDOERS).unwrap();
    let check = |p: &std::path::Path| {
        std::process::Command::new("visudo")
            .args(["-c", "-q", "-f"])
            .arg(p)
            .output()
            .expect("visudo (package sudo, in ci/host-packages.txt) is needed")
    };
    let o = check(&p);
    assert!(o.status.success(), "visudo refuses the rule: {o:?}");
    std::fs::write(&p, SUDOERS.replace("NOPASSWD:", "NOPASSWD")).unwrap();
    assert!(!check(&p).status.success(), "visudo accepted a broken rule");
}
