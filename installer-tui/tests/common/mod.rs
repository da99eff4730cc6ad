//! Shared test helpers: recorded machines, a fake payload tree, secrets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use installer_tui::answers::Answers;
use installer_tui::engine::MachineData;
use installer_tui::secrets::{Secrets, hash_password};
use partitioner::secret::Passphrase;
use zeroize::Zeroizing;

pub const PASSPHRASE: &str = "correct horse battery staple";
pub const PASSWORD: &str = "hunter2-dom0";

pub fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn machine(name: &str) -> MachineData {
    MachineData::fixture(&fixture_dir(name)).unwrap()
}

pub fn answers(extra: &str) -> Answers {
    let text = format!(
        "[disk]\ndevice = \"/dev/nvme0n1\"\nerase = \"/dev/nvme0n1\"\n\n[system]\ntimezone = \"Europe/Berlin\"\nkeyboard = \"de\"\nhostname = \"work-laptop\"\n\n[user]\nname = \"alice\"\nfull_name = \"Alice Example\"\n{extra}"
    );
    Answers::parse(&text, "test.toml").unwrap()
}

pub fn secrets() -> Secrets {
    Secrets {
        passphrase: Passphrase::new(Zeroizing::new(PASSPHRASE.as_bytes().to_vec())).unwrap(),
        password_hash: hash_password(PASSWORD.as_bytes()).unwrap(),
    }
}

/// A small payload tree shaped like a Debian root: passwd/group/shadow with
/// system accounts, a zoneinfo file, a binary and a symlink.
pub fn fake_payload(dir: &Path) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nuser1:x:1000:1000::/home/user1:/bin/sh\n",
    );
    // Debian's base: sudo is gid 27, shadow 42; gshadow beside group.
    w(
        "etc/group",
        "root:x:0:\nsudo:x:27:\nshadow:x:42:\nuser1:x:1000:\n",
    );
    w("etc/gshadow", "root:*::\nsudo:*::\nshadow:*::\nuser1:!::\n");
    w(
        "etc/shadow",
        "root:*:19000:0:99999:7:::\nuser1:!:19000:0:99999:7:::\n",
    );
    w("usr/share/zoneinfo/Europe/Berlin", "TZif2 fake zone data\n");
    w("usr/share/zoneinfo/UTC", "TZif2 fake zone data\n");
    w("usr/bin/hello", "#!/bin/sh\necho hello\n");
    std::fs::set_permissions(
        dir.join("usr/bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    symlink("../usr/bin/hello", dir.join("bin/hello")).unwrap();
    std::fs::create_dir_all(dir.join("boot")).unwrap();
    // Xen and two dom0 kernels: the newest (by version, not by text) boots.
    w("boot/xen-4.17-amd64.gz", "xen");
    w("boot/xen-4.17-amd64.config", "config");
    w("boot/vmlinuz-6.1.0-9-amd64", "kernel 9");
    w("boot/vmlinuz-6.1.0-10-amd64", "kernel 10");
}

/// `mksquashfs SRC IMG`: a squashfs image as the medium carries one.
pub fn squash(src: &Path, img: &Path) {
    let st = std::process::Command::new("mksquashfs")
        .arg(src)
        .arg(img)
        .args(["-noappend", "-quiet", "-no-progress"])
        .status()
        .unwrap();
    assert!(st.success(), "mksquashfs {}", src.display());
}
