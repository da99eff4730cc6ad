//! What the install writes into the target, as data: the stages build
//! [`Entry`] lists and [`write_all`] is the one writer, so what a stage
//! would write can be checked without a target.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;

use super::error::StageError;

/// One change to the target; paths are relative to its root.
#[derive(Clone, PartialEq, Eq)]
pub enum Entry {
    /// A file with these contents and mode, replacing any old one.
    File {
        path: String,
        contents: String,
        mode: u32,
    },
    /// A symbolic link, replacing whatever is at `path`.
    Symlink { path: String, target: String },
    /// A line appended to a file (created if absent), which then gets `mode`.
    Line {
        path: String,
        line: String,
        mode: u32,
    },
    /// `user` added to `group` in /etc/group (the group created if absent).
    Member { group: String, user: String },
    /// A home directory: mode 0700, owned by `uid` and the group `uid`.
    Home { path: String, uid: u32 },
}

impl Entry {
    pub fn file(path: &str, contents: impl Into<String>, mode: u32) -> Self {
        Entry::File {
            path: path.to_string(),
            contents: contents.into(),
            mode,
        }
    }

    pub fn line(path: &str, line: impl Into<String>, mode: u32) -> Self {
        Entry::Line {
            path: path.to_string(),
            line: line.into(),
            mode,
        }
    }

    /// The path the entry changes.
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Line { path, .. }
            | Entry::Home { path, .. } => path,
            Entry::Member { .. } => "etc/group",
        }
    }
}

/// Applies `entries` to the target `root`, in order.
pub fn write_all(root: &Path, entries: &[Entry]) -> Result<(), StageError> {
    for e in entries {
        match e {
            Entry::File {
                path,
                contents,
                mode,
            } => write(root, path, contents, *mode)?,
            Entry::Symlink { path, target } => {
                let p = root.join(path);
                let _ = fs::remove_file(&p);
                symlink(target, &p).map_err(StageError::io("linking", &p))?;
            }
            Entry::Line { path, line, mode } => append_line(root, path, line, *mode)?,
            Entry::Member { group, user } => add_to_group(root, group, user)?,
            Entry::Home { path, uid } => {
                let p = root.join(path);
                fs::create_dir_all(&p).map_err(StageError::io("creating", &p))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                    .map_err(StageError::io("setting the mode of", &p))?;
                chown(&p, Some(*uid), Some(*uid)).map_err(StageError::io("chown", &p))?;
            }
        }
    }
    Ok(())
}

fn write(root: &Path, rel: &str, text: &str, mode: u32) -> Result<(), StageError> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(StageError::io("creating", parent))?;
    }
    fs::write(&p, text).map_err(StageError::io("writing", &p))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))
        .map_err(StageError::io("setting the mode of", &p))
}

fn append_line(root: &Path, rel: &str, line: &str, mode: u32) -> Result<(), StageError> {
    let mut text = fs::read_to_string(root.join(rel)).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    write(root, rel, &text, mode)
}

/// Adds `user` to `group` in /etc/group, creating the group (with the
/// next gid after the highest below 60000, from 1000) if absent.
fn add_to_group(root: &Path, group: &str, user: &str) -> Result<(), StageError> {
    let text = fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    write(root, "etc/group", &with_member(&text, group, user), 0o644)?;
    let shadow = fs::read_to_string(root.join("etc/gshadow")).unwrap_or_default();
    write(
        root,
        "etc/gshadow",
        &with_shadow_member(&shadow, group, user),
        0o640,
    )
}

/// `text`, a group-shaped file (four fields, members last: /etc/group and
/// /etc/gshadow), with `user` among `group`'s members, and whether a line
/// named `group`; every line ends in a newline.
fn joined(text: &str, group: &str, user: &str) -> (String, bool) {
    let mut found = false;
    let mut out = String::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&group) && f.len() == 4 {
            found = true;
            let mut m: Vec<&str> = f[3].split(',').filter(|m| !m.is_empty()).collect();
            if !m.contains(&user) {
                m.push(user);
            }
            out.push_str(&format!("{}:{}:{}:{}\n", f[0], f[1], f[2], m.join(",")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    (out, found)
}

/// The same membership in /etc/gshadow, which Debian's tools keep beside
/// /etc/group; a group it lacks gets a line with no password, as groupadd
/// writes it.
fn with_shadow_member(text: &str, group: &str, user: &str) -> String {
    let (mut out, found) = joined(text, group, user);
    if !found {
        out.push_str(&format!("{group}:!::{user}\n"));
    }
    out
}

fn with_member(text: &str, group: &str, user: &str) -> String {
    let (mut out, found) = joined(text, group, user);
    if !found {
        let max_gid = text
            .lines()
            .filter_map(|l| l.split(':').nth(2)?.parse::<u32>().ok())
            .filter(|g| *g < 60000)
            .fold(999, u32::max);
        out.push_str(&format!("{group}:x:{}:{user}\n", max_gid + 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gshadow_keeps_the_same_memberships() {
        let g = "root:*::\nsudo:*::bob\n";
        let once = with_shadow_member(g, "sudo", "alice");
        assert_eq!(once, "root:*::\nsudo:*::bob,alice\n");
        assert_eq!(with_shadow_member(&once, "sudo", "alice"), once);
        assert_eq!(
            with_shadow_member(&once, "qubes", "alice"),
            format!("{once}qubes:!::alice\n")
        );
    }

    #[test]
    fn members_join_existing_groups_once_and_new_groups_get_the_next_gid() {
        let g = "root:x:0:\nwheel:x:10:bob\nuser1:x:1000:\n";
        let g = with_member(g, "wheel", "alice");
        assert!(g.contains("wheel:x:10:bob,alice\n"), "{g}");
        assert_eq!(with_member(&g, "wheel", "alice"), g);
        let g = with_member(&g, "qubes", "alice");
        assert!(g.ends_with("qubes:x:1001:alice\n"), "{g}");
    }
}
