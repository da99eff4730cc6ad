//! A hung step does not hold the machine: with the real binary, a step that
//! never returns is ended by its time limit, the failure and the resume
//! command are put where the login prompts show them, and a resumed run
//! finishes and clears them. (No timing is asserted: the limit is 1 s so
//! the test ends, and only the outcome is checked.)

mod common;

use common::*;

const ISSUE: &str = "run/issue.d/bulkhead-firstboot.issue";
const MOTD: &str = "run/motd.d/bulkhead-firstboot";

#[test]
fn a_hung_step_times_out_says_so_at_the_login_prompt_and_resumes() {
    let d = tempdir();
    machine(d.path(), "[limits]\nstep_secs = 1\n");
    let hung = firstboot(
        d.path(),
        &[],
        &[("BULKHEAD_FIRSTBOOT_HANG_AT", "vm-pool:begin")],
    );
    assert_eq!(
        hung.status.code(),
        Some(firstboot::run::EXIT_TIMED_OUT),
        "{}",
        String::from_utf8_lossy(&hung.stderr)
    );
    let err = String::from_utf8_lossy(&hung.stderr);
    assert!(err.contains("did not finish within 1 s"), "{err}");
    for rel in [ISSUE, MOTD] {
        let note = read(d.path(), rel);
        assert!(
            note.contains("step vm-pool") && note.contains(firstboot::notice::RESUME),
            "{rel}: {note}"
        );
    }
    assert!(!firstboot::run::done_marker(d.path()).exists());
    // What the unit's ExecStopPost shows after such a run.
    let stopped = firstboot(d.path(), &["stopped"], &[("SERVICE_RESULT", "exit-code")]);
    let err = ok(&stopped);
    assert!(err.contains("did not finish within 1 s"), "{err}");

    let resumed = firstboot(d.path(), &["--resume"], &[]);
    let err = ok(&resumed);
    assert!(err.contains("already done"), "{err}");
    assert!(firstboot::run::done_marker(d.path()).exists());
    for rel in [ISSUE, MOTD] {
        assert!(!d.path().join(rel).exists(), "{rel} left behind");
    }
    // After a finished run the unit's ExecStopPost shows nothing.
    let stopped = firstboot(d.path(), &["stopped"], &[("SERVICE_RESULT", "success")]);
    assert_eq!(ok(&stopped), "");
    assert!(!d.path().join(ISSUE).exists());
}

#[test]
fn a_failed_step_is_shown_at_the_login_prompt_too() {
    let d = tempdir();
    machine(d.path(), "");
    let failed = firstboot(
        d.path(),
        &[],
        &[("BULKHEAD_FIRSTBOOT_FAIL_AT", "vm-pool:begin")],
    );
    assert!(!failed.status.success());
    let note = read(d.path(), ISSUE);
    assert!(
        note.contains("step vm-pool") && note.contains("failed"),
        "{note}"
    );
    ok(&firstboot(d.path(), &["--resume"], &[]));
    assert!(!d.path().join(ISSUE).exists());
}

#[test]
fn systemd_stopping_it_before_any_step_is_shown_as_well() {
    let d = tempdir();
    machine(d.path(), "");
    let err = ok(&firstboot(
        d.path(),
        &["stopped"],
        &[("SERVICE_RESULT", "timeout")],
    ));
    assert!(err.contains("ran longer than its unit allows"), "{err}");
    assert!(read(d.path(), MOTD).contains(firstboot::notice::RESUME));
}
