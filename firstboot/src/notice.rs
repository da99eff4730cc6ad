//! What a person meets at the login prompt when first boot did not finish:
//! a note in `/run/issue.d` (agetty shows it above every console's login
//! prompt) and `/run/motd.d` (pam_motd shows it after login), saying what
//! failed and the command that resumes. Both live in /run, so a later boot
//! that finishes leaves none behind; a boot that finishes removes them.

use std::path::{Path, PathBuf};

use crate::Error;

/// The command that resumes an interrupted first boot, as the dom0 user
/// types it.
pub const RESUME: &str = "sudo firstboot --resume";

fn paths(root: &Path) -> [PathBuf; 2] {
    [
        root.join("run/issue.d/bulkhead-firstboot.issue"),
        root.join("run/motd.d/bulkhead-firstboot"),
    ]
}

/// The text shown for `what` (one line: the step and why it stopped).
pub fn text(what: &str) -> String {
    format!(
        "Bulkhead: the first boot did not finish: {what}\n\
         The qubes it had still to create are missing. Log in as the dom0 user and run\n\
         `{RESUME}` (finished steps are not redone); details: \
         `journalctl -b -u bulkhead-firstboot`.\n\n"
    )
}

/// Shows `what` at the login prompts and after login; also returns it.
pub fn publish(root: &Path, what: &str) -> Result<String, Error> {
    let t = text(what);
    for p in paths(root) {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        crate::util::write_atomic(&p, t.as_bytes(), 0o644)?;
    }
    Ok(t)
}

/// Removes the notes after a first boot that finished.
pub fn clear(root: &Path) -> Result<(), Error> {
    for p in paths(root) {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &p, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_appear_for_getty_and_login_and_go_when_cleared() {
        let d = tempfile::tempdir().unwrap();
        let t = publish(d.path(), "step start:sys-net timed out after 600 s").unwrap();
        for p in paths(d.path()) {
            assert_eq!(std::fs::read_to_string(&p).unwrap(), t);
        }
        assert!(t.contains("start:sys-net") && t.contains(RESUME), "{t}");
        clear(d.path()).unwrap();
        clear(d.path()).unwrap();
        assert!(paths(d.path()).iter().all(|p| !p.exists()));
    }
}
