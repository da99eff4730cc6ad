//! The `partitioner` binary on this machine: listing works, and planning
//! onto the disk holding `/` or onto a missing disk is refused (no writes).

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_partitioner"))
}

#[test]
fn list_json_and_refusals_on_the_host() {
    let out = bin().args(["list", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inv: partitioner::Inventory = serde_json::from_slice(&out.stdout).unwrap();
    assert!(inv.memory_bytes > 0);
    if let Some(root) = inv
        .disks
        .iter()
        .find(|d| d.mounted.iter().any(|m| m.ends_with(" on /")))
    {
        let out = bin().args(["plan", "--disk", &root.path]).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is in use") && err.contains(&root.path),
            "{err}"
        );
        // apply refuses the same way, before asking for a passphrase.
        let out = bin()
            .args([
                "apply",
                "--disk",
                &root.path,
                "--erase",
                &root.path,
                "--passphrase-file",
                "/nonexistent",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("is in use"));
    }
    let out = bin()
        .args(["plan", "--disk", "/dev/bulkhead-no-such-disk"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let text = bin().arg("list").output().unwrap();
    assert!(text.status.success());
}

#[test]
fn no_passphrase_option_exists() {
    let out = bin().args(["apply", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--passphrase-file") && help.contains("--erase"),
        "{help}"
    );
    assert!(
        !help.contains("--passphrase ") && !help.contains("--passphrase="),
        "{help}"
    );
}
