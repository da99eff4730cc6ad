//! The template's fstab read by systemd's own fstab generator (the host's
//! systemd 252, as the template's): the mounts a qube gets, and how long
//! each waits for its volume.

use std::process::Command;

const FSTAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/template/fstab");
const GENERATOR: &str = "/lib/systemd/system-generators/systemd-fstab-generator";

#[test]
fn the_qube_volumes_are_mounted_and_waited_for_long() {
    assert!(
        std::path::Path::new(GENERATOR).exists(),
        "{GENERATOR} is needed (Debian's systemd package)"
    );
    let d = tempfile::tempdir().unwrap();
    let out = d.path();
    let o = Command::new(GENERATOR)
        .args([out, out, out])
        .env("SYSTEMD_FSTAB", FSTAB)
        .env("SYSTEMD_PROC_CMDLINE", "root=/dev/xvda ro")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read =
        |rel: &str| std::fs::read_to_string(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let rw = read("rw.mount");
    assert!(
        rw.contains("What=/dev/xvdb\n") && rw.contains("Type=ext4\n"),
        "{rw}"
    );
    assert!(read("systemd-makefs@dev-xvdb.service").contains("ext4"));
    let home = read("home.mount");
    assert!(home.contains("What=/rw/home\n"), "{home}");
    assert!(home.contains("bulkhead-qube-home.service"), "{home}");
    let wait = read("dev-xvdb.device.d/50-device-timeout.conf");
    assert!(wait.contains("JobRunningTimeoutSec=10min\n"), "{wait}");
}
