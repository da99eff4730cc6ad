//! The configure and first-boot stages: the system files (fstab, crypttab,
//! hostname, machine ID, locale, keyboard, time zone) and the dom0 user,
//! then firstboot's settings, all built as [`Entry`] data and written by
//! the one writer.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use names::TEMPLATE_NAME;
use partitioner::DiskInfo;
use partitioner::discover::Transport;

use super::error::{At, InstallError, StageError};
use super::files::{self, Entry};
use super::progress::Stage;
use super::run::Emitter;
use super::target::TargetFacts;
use crate::answers::Answers;
use crate::secrets::Secrets;

/// The dom0 user's groups besides its own: Debian's `sudo` (sudoers lets
/// it administer dom0) and `qubes` (Qubes' group for the qubes' files).
pub const USER_GROUPS: [&str; 2] = ["sudo", "qubes"];

/// What configure writes: the files and the user's edits, in order, and
/// the uid the user gets.
pub struct Configuration {
    pub entries: Vec<Entry>,
    pub uid: u32,
}

/// The configure stage.
pub fn stage(
    out: &mut Emitter,
    root: &Path,
    answers: &Answers,
    secrets: &Secrets,
    facts: &TargetFacts,
) -> Result<(), InstallError> {
    out.emit(
        Stage::Configure,
        0,
        "fstab, crypttab, hostname, locale, user",
    );
    let c = configure(root, answers, secrets, facts).at(Stage::Configure)?;
    files::write_all(root, &c.entries).at(Stage::Configure)?;
    let (s, u) = (&answers.system, &answers.user);
    out.log.line(format!(
        "configured hostname {}, {}, keyboard {}, time zone {}, user {} (uid {}, groups {})",
        s.hostname,
        s.language,
        s.keyboard,
        s.timezone,
        u.name,
        c.uid,
        USER_GROUPS.join(", ")
    ));
    Ok(())
}

/// The system files and the dom0 user for the mounted target `root`, which
/// is only read: its time zones, and its /etc/passwd for a free uid and a
/// name clash.
pub fn configure(
    root: &Path,
    answers: &Answers,
    secrets: &Secrets,
    facts: &TargetFacts,
) -> Result<Configuration, StageError> {
    let s = &answers.system;
    let zones = root.join("usr/share/zoneinfo");
    if !zones.join(&s.timezone).is_file() {
        return Err(StageError::NoTimeZone {
            zone: s.timezone.clone(),
            dir: zones,
        });
    }
    let u = &answers.user;
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    if passwd
        .lines()
        .any(|l| l.split(':').next() == Some(u.name.as_str()))
    {
        return Err(StageError::UserExists(u.name.clone()));
    }
    let uid = next_uid(&passwd);
    // Set now, as Debian's installer and Anaconda do: with the payload's
    // empty one, systemd boots with a transient ID and must commit it once
    // the root is writable, and treats that boot as a "first boot".
    let id = machine_id().map_err(StageError::io("reading", Path::new("/dev/urandom")))?;
    let mut entries = vec![
        Entry::file(
            "etc/fstab",
            format!(
                "# Written by the Bulkhead installer.\n\
                 {root_dev} / ext4 defaults,x-systemd.device-timeout=0 1 1\n\
                 UUID={boot} /boot ext4 defaults 1 2\n\
                 UUID={esp} /boot/efi vfat umask=0077,shortname=winnt 0 2\n\
                 {swap} none swap defaults 0 0\n",
                root_dev = facts.root_dev,
                boot = facts.boot_uuid,
                esp = facts.esp_uuid,
                swap = facts.swap_dev,
            ),
            0o644,
        ),
        Entry::file(
            "etc/crypttab",
            format!(
                "{} UUID={} none luks,discard\n",
                facts.mapper, facts.luks_uuid
            ),
            0o600,
        ),
        Entry::file("etc/hostname", format!("{}\n", s.hostname), 0o644),
        Entry::file("etc/machine-id", format!("{id}\n"), 0o444),
        Entry::file(
            "etc/hosts",
            format!(
                "127.0.0.1 localhost {h}\n::1 localhost {h}\n",
                h = s.hostname
            ),
            0o644,
        ),
        Entry::file("etc/locale.conf", format!("LANG={}\n", s.language), 0o644),
        Entry::file(
            "etc/default/locale",
            format!("LANG={}\n", s.language),
            0o644,
        ),
        Entry::file(
            "etc/vconsole.conf",
            format!("KEYMAP={}\n", s.keyboard),
            0o644,
        ),
        Entry::file(
            "etc/default/keyboard",
            format!(
                "XKBMODEL=\"pc105\"\nXKBLAYOUT=\"{}\"\nXKBVARIANT=\"\"\nXKBOPTIONS=\"\"\n",
                s.keyboard
            ),
            0o644,
        ),
        Entry::Symlink {
            path: "etc/localtime".into(),
            target: format!("../usr/share/zoneinfo/{}", s.timezone),
        },
        Entry::file("etc/timezone", format!("{}\n", s.timezone), 0o644),
    ];
    entries.extend(account(
        &u.name,
        &u.full_name,
        uid,
        &secrets.password_hash,
        &USER_GROUPS,
    ));
    entries.push(Entry::Home {
        path: format!("home/{}", u.name),
        uid,
    });
    Ok(Configuration { entries, uid })
}

/// An account as Debian's useradd writes it: its passwd, shadow (the
/// password last changed today, no minimum age, login.defs' maximum and
/// warning), group and gshadow lines, and its memberships.
fn account(name: &str, full_name: &str, uid: u32, hash: &str, groups: &[&str]) -> Vec<Entry> {
    let mut v = vec![
        Entry::line(
            "etc/passwd",
            format!("{name}:x:{uid}:{uid}:{full_name}:/home/{name}:/bin/bash"),
            0o644,
        ),
        Entry::line(
            "etc/shadow",
            format!("{name}:{hash}:{}:0:99999:7:::", days_since_epoch()),
            0o640,
        ),
        Entry::line("etc/group", format!("{name}:x:{uid}:"), 0o644),
        Entry::line("etc/gshadow", format!("{name}:!::"), 0o640),
    ];
    v.extend(groups.iter().map(|group| Entry::Member {
        group: group.to_string(),
        user: name.to_string(),
    }));
    v
}

/// The dom0 user's account inside the qubes, added to the template's root
/// (`template_root`, unpacked) before its image is made: as in Qubes, the
/// qube's user has no password (its console is reached only from dom0,
/// through `xl console`) and sudo without one (Qubes' /etc/sudoers.d/qubes).
/// Its home is made on each qube's private volume at the first start.
pub fn qube_user(template_root: &Path, name: &str, full_name: &str) -> Vec<Entry> {
    let passwd = fs::read_to_string(template_root.join("etc/passwd")).unwrap_or_default();
    let uid = next_uid(&passwd);
    let mut v = account(name, full_name, uid, "", &["sudo"]);
    v.push(Entry::file(
        "etc/sudoers.d/bulkhead-qube-user",
        format!("# The qube's user administers the qube, as in Qubes.\n{name} ALL=(ALL:ALL) NOPASSWD: ALL\n"),
        0o440,
    ));
    v
}

/// Today, as /etc/shadow counts: whole days since 1970-01-01 (UTC).
fn days_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// The first free uid from 1000 in the text of /etc/passwd.
fn next_uid(passwd: &str) -> u32 {
    let used: Vec<u32> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    (1000..60000).find(|u| !used.contains(u)).unwrap_or(1000)
}

/// A new machine ID (machine-id(5)): 128 random bits as a version 4 UUID,
/// in 32 lower-case hex digits, as systemd-machine-id-setup makes it.
pub fn machine_id() -> io::Result<String> {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The first-boot stage: firstboot's settings from the answers, with the
/// medium's template (`template`: the size of the root volume the
/// installer wrote for it) in place of firstboot's defaults, whose images a
/// Bulkhead medium does not carry.
pub fn handover(
    out: &mut Emitter,
    root: &Path,
    answers: &Answers,
    disk: &DiskInfo,
    template: Option<u64>,
) -> Result<(), InstallError> {
    out.emit(
        Stage::Firstboot,
        0,
        format!("writing /{}", names::FIRSTBOOT_SETTINGS),
    );
    let entry = firstboot_settings(answers, disk.transport == Transport::Usb, template)
        .at(Stage::Firstboot)?;
    files::write_all(root, &[entry]).at(Stage::Firstboot)
}

/// firstboot's settings file.
pub fn firstboot_settings(
    answers: &Answers,
    on_usb: bool,
    template: Option<u64>,
) -> Result<Entry, StageError> {
    let mut settings = answers.firstboot_settings(on_usb);
    if let Some(size) = template {
        settings.templates = vec![firstboot::settings::TemplateSettings {
            name: TEMPLATE_NAME.to_string(),
            image: None,
            root_size: Some(size),
            installed: true,
        }];
        settings.default_template = None;
    }
    Ok(Entry::file(
        names::FIRSTBOOT_SETTINGS,
        toml::to_string(&settings)?,
        0o644,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_are_version_4_uuids_in_hex() {
        let a = machine_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(&a[12..13], "4", "{a}");
        assert!("89ab".contains(&a[16..17]), "{a}");
        assert_ne!(a, machine_id().unwrap());
    }

    fn answers() -> Answers {
        Answers::parse(
            "[disk]\ndevice = \"/dev/vda\"\nerase = \"/dev/vda\"\n\n[system]\ntimezone = \"UTC\"\nhostname = \"h\"\n\n[user]\nname = \"alice\"\n",
            "test.toml",
        )
        .unwrap()
    }

    fn secrets() -> Secrets {
        Secrets {
            passphrase: partitioner::secret::Passphrase::new(zeroize::Zeroizing::new(
                b"correct horse".to_vec(),
            ))
            .unwrap(),
            password_hash: "$6$salt$hash".into(),
        }
    }

    fn facts() -> TargetFacts {
        TargetFacts::sample()
    }

    #[test]
    fn configure_only_reads_the_target_and_names_every_change() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/share/zoneinfo")).unwrap();
        fs::write(root.join("usr/share/zoneinfo/UTC"), "TZif2").unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let c = configure(root, &answers(), &secrets(), &facts()).unwrap();
        assert_eq!(c.uid, 1000);
        let paths: Vec<&str> = c.entries.iter().map(Entry::path).collect();
        assert_eq!(
            paths,
            [
                "etc/fstab",
                "etc/crypttab",
                "etc/hostname",
                "etc/machine-id",
                "etc/hosts",
                "etc/locale.conf",
                "etc/default/locale",
                "etc/vconsole.conf",
                "etc/default/keyboard",
                "etc/localtime",
                "etc/timezone",
                "etc/passwd",
                "etc/shadow",
                "etc/group",
                "etc/gshadow",
                "etc/group",
                "etc/group",
                "home/alice",
            ]
        );
        let names: Vec<_> = fs::read_dir(root.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["passwd"], "nothing written before the writer runs");
        let mut a = answers();
        a.system.timezone = "Mars/Olympus".into();
        let e = configure(root, &a, &secrets(), &facts()).err().unwrap();
        assert!(matches!(e, StageError::NoTimeZone { .. }), "{e}");
        let mut a = answers();
        a.user.name = "root".into();
        let e = configure(root, &a, &secrets(), &facts()).err().unwrap();
        assert!(matches!(e, StageError::UserExists(_)), "{e}");
    }

    #[test]
    fn uids_start_at_1000_and_skip_those_taken() {
        assert_eq!(next_uid(""), 1000);
        assert_eq!(
            next_uid("root:x:0:0::/root:/bin/sh\nuser1:x:1000:1000::/home/user1:/bin/sh\n"),
            1001
        );
    }
}
