//! The systemd side of the qubes: one template unit,
//! `bulkhead-qube@.service`, runs a qube (its instance is the qube's name);
//! a networked qube's drop-in makes its unit require and follow its netvm's
//! (so systemd starts the chain in netvm order and, at poweroff, stops the
//! clients before their netvm); an autostart qube's unit is enabled in
//! multi-user.target. Everything is rewritten byte for byte the same on a
//! rerun.

use std::path::{Path, PathBuf};

use crate::Error;

pub use names::QUBE_UNIT;

/// The unit running `qube`.
pub fn unit(qube: &str) -> String {
    format!("bulkhead-qube@{qube}.service")
}

/// The drop-in tying a qube's unit to its netvm's.
pub fn netvm_dropin_path(root: &Path, qube: &str) -> PathBuf {
    root.join("etc/systemd/system")
        .join(format!("{}.d", unit(qube)))
        .join("50-netvm.conf")
}

pub fn netvm_dropin(qube: &str, netvm: &str) -> String {
    let n = unit(netvm);
    format!(
        "# Written by bulkhead firstboot: {qube}'s network comes from {netvm}, so\n\
         # {netvm} starts first and {qube} stops before it.\n\
         [Unit]\n\
         Requires={n}\n\
         After={n}\n"
    )
}

/// The link enabling a qube's unit at boot.
pub fn wants_link(root: &Path, qube: &str) -> PathBuf {
    root.join("etc/systemd/system/multi-user.target.wants")
        .join(unit(qube))
}

/// Writes a qube's drop-in (removing a stale one when it has no netvm) and,
/// for an autostart qube, its enablement link.
pub fn write(root: &Path, qube: &str, netvm: Option<&str>, autostart: bool) -> Result<(), Error> {
    let dropin = netvm_dropin_path(root, qube);
    match netvm {
        Some(n) => crate::util::write_atomic(&dropin, netvm_dropin(qube, n).as_bytes(), 0o644)?,
        None => match std::fs::remove_file(&dropin) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing", &dropin, e));
            }
            _ => {}
        },
    }
    if autostart {
        crate::util::symlink_atomic(&wants_link(root, qube), &format!("/{QUBE_UNIT}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropin_and_link_are_written_once_and_follow_the_netvm() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "work", Some("sys-firewall"), true).unwrap();
        let p = netvm_dropin_path(d.path(), "work");
        assert!(p.ends_with("etc/systemd/system/bulkhead-qube@work.service.d/50-netvm.conf"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("[Unit]\nRequires=bulkhead-qube@sys-firewall.service\nAfter=bulkhead-qube@sys-firewall.service\n"), "{text}");
        let link = wants_link(d.path(), "work");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/usr/lib/systemd/system/bulkhead-qube@.service")
        );
        // A rerun leaves the same files (same inode: nothing rewritten).
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&p).unwrap().ino();
        let lino = std::fs::symlink_metadata(&link).unwrap().ino();
        write(d.path(), "work", Some("sys-firewall"), true).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
        assert_eq!(std::fs::symlink_metadata(&link).unwrap().ino(), lino);
        // No netvm any more: the drop-in goes; a non-autostart qube gets no link.
        write(d.path(), "vault", None, false).unwrap();
        write(d.path(), "work", None, false).unwrap();
        assert!(!p.exists());
        assert!(!wants_link(d.path(), "vault").exists());
    }
}
