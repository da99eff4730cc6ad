//! The unattended path through the real binary: answer files validated
//! completely (errors name file, line and field), --dry-run prints the
//! partitioner's plan and writes nothing; the shipped example and the
//! generated reference stay current.

use std::path::Path;
use std::process::Command;

use installer_tui::answers::{Answers, reference_markdown};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_installer-tui"))
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The example with its secret files pointed into `dir`.
fn answers_in(dir: &Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/answers.toml"),
    )
    .unwrap();
    let pass = dir.join("passphrase");
    let pw = dir.join("password");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    std::fs::write(&pw, "pw\n").unwrap();
    let text = example
        .replace("/run/bulkhead/passphrase", &pass.display().to_string())
        .replace("/run/bulkhead/user-password", &pw.display().to_string());
    let p = dir.join("answers.toml");
    std::fs::write(&p, edit(text)).unwrap();
    p
}

#[test]
fn answers_reference_file_is_current() {
    let md =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ANSWERS.md")).unwrap();
    assert_eq!(
        md,
        reference_markdown(),
        "ANSWERS.md is out of date: run `installer-tui --answers-reference > installer-tui/ANSWERS.md`"
    );
    let out = bin().arg("--answers-reference").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), md);
    for key in [
        "disk.erase",
        "disk.passphrase_file",
        "hardware.accept_warnings",
        "qubes.sys_usb",
        "user.password_file",
        "system.timezone",
    ] {
        assert!(md.contains(&format!("`{key}`")), "{key}");
    }
}

#[test]
fn the_example_parses() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/answers.toml"),
    )
    .unwrap();
    let a = Answers::parse(&text, "answers.toml").unwrap();
    assert_eq!(a.disk.device, a.disk.erase);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = answers_in(tmp.path(), |t| t);
    let before: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = bin()
        .args(["--fixture", &fixture("laptop"), "--dry-run", "--answers"])
        .arg(&a)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Disk /dev/nvme0n1: Samsung SSD 980 PRO 512GB"),
        "{stdout}"
    );
    assert!(
        stdout.contains("LUKS2 aes-xts-plain64") && stdout.contains("ERASES everything"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was written"), "{stdout}");
    assert!(!stdout.contains("correct horse"));
    let after: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn invalid_answers_name_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str); 4] = [
        (
            "erase = \"/dev/nvme0n1\"",
            "erase = \"/dev/sda\"",
            ":9: `disk.erase`",
        ),
        (
            "timezone = \"Europe/Berlin\"",
            "timezone = \"Mars/Olympus Mons\"",
            ":15: `system.timezone`",
        ),
        ("name = \"user\"", "name = \"root\"", ":19: `user.name`"),
        (
            "appvms = true",
            "appvms = true\nsys_firewall = true",
            "sys_firewall",
        ),
    ];
    for (from, to, needle) in cases {
        let a = answers_in(tmp.path(), |t| t.replace(from, to));
        let out = bin()
            .args(["--fixture", &fixture("laptop"), "--answers"])
            .arg(&a)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.contains("Nothing was written"), "{err}");
    }
}

#[test]
fn secrets_are_not_accepted_inside_the_file_and_files_must_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let a = answers_in(tmp.path(), |t| {
        t.replace("[disk]\n", "[disk]\npassphrase = \"hunter2\"\n")
    });
    let out = bin()
        .args(["--fixture", &fixture("laptop"), "--answers"])
        .arg(&a)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("passphrase"), "{err}");
    let a = answers_in(tmp.path(), |t| t.replace("passphrase\"", "nope\""));
    let out = bin()
        .args(["--fixture", &fixture("laptop"), "--answers"])
        .arg(&a)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nope does not exist"),
        "{err}"
    );
}

#[test]
fn hardware_warning_needs_consent_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = answers_in(tmp.path(), |t| t);
    let out = bin()
        .args(["--fixture", &fixture("laptop-no-iommu"), "--answers"])
        .arg(&a)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("warnings not accepted: iommu"),
        "{err}"
    );
    let a = answers_in(tmp.path(), |t| {
        t.replace("accept_warnings = []", "accept_warnings = [\"iommu\"]")
    });
    let out = bin()
        .args(["--fixture", &fixture("laptop-no-iommu"), "--answers"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refused_disk_in_the_file_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let a = answers_in(tmp.path(), |t| t.replace("/dev/nvme0n1", "/dev/sdb"));
    let out = bin()
        .args(["--fixture", &fixture("laptop"), "--answers"])
        .arg(&a)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("live medium"),
        "{err}"
    );
}

#[test]
fn interactive_mode_needs_a_terminal() {
    let out = bin()
        .args(["--fixture", &fixture("laptop")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("needs a terminal"),
        "{err}"
    );
}

#[test]
fn answers_found_on_the_kernel_command_line_or_the_medium() {
    use installer_tui::answers::find_answers;
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        find_answers("quiet bulkhead.answers=/run/a.toml", tmp.path()),
        Some("/run/a.toml".into())
    );
    assert_eq!(find_answers("quiet", tmp.path()), None);
    std::fs::write(tmp.path().join("answers.toml"), "").unwrap();
    assert_eq!(
        find_answers("quiet", tmp.path()),
        Some(tmp.path().join("answers.toml"))
    );
}
