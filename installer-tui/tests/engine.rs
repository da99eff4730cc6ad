//! The install engine on a target directory: every file it writes is read
//! back (firstboot.toml by firstboot's own parser, the shadow hash by
//! libxcrypt (read back by Python's crypt), the payload copy compared with the source, a squashfs payload
//! unpacked by the real unsquashfs). Partitioning and the bootloader's
//! commands need a real disk and the ISO's payload: here the target records
//! the commands instead of running them (see the report on issue 8).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use firstboot::settings::PoolSettings;
use installer_tui::engine::{
    self, Event, InstallError, Log, Payload, Stage, StageError, Target, TargetFacts,
    overall_percent,
};
use installer_tui::secrets::Secrets;
use partitioner::Plan;

/// A target that is a plain directory: `prepare` only creates it.
struct DirTarget {
    root: PathBuf,
    prepared: bool,
    commands: Vec<Vec<String>>,
    uefi: bool,
    finished: bool,
    /// Pretend the partitioner resumed an earlier run with this LUKS UUID.
    resumed_luks: Option<uuid::Uuid>,
    /// The thin pools made (`VG/POOL`).
    pools: Vec<String>,
}

impl DirTarget {
    fn new(root: &Path) -> Self {
        DirTarget {
            root: root.to_path_buf(),
            prepared: false,
            commands: vec![],
            uefi: false,
            finished: false,
            resumed_luks: None,
            pools: vec![],
        }
    }

    /// The file standing in for the thin volume `VG/NAME`, beside the root.
    fn volume(&self, vid: &str) -> PathBuf {
        self.root.with_file_name("volumes").join(vid)
    }
}

impl Target for DirTarget {
    fn prepare(
        &mut self,
        plan: &Plan,
        erase: &str,
        _s: &Secrets,
        progress: &mut dyn FnMut(u8, String),
    ) -> Result<(PathBuf, Plan), StageError> {
        // the consent check the disk target makes before its first write
        partitioner::recheck::check_apply(plan, &machine("laptop").inventory, erase)?;
        std::fs::create_dir_all(&self.root).map_err(StageError::io("creating", &self.root))?;
        self.prepared = true;
        progress(50, "target directory ready".into());
        let mut applied = plan.clone();
        if let Some(u) = self.resumed_luks {
            applied.luks.uuid = u;
            applied.luks.mapper_name = format!("luks-{u}");
        }
        Ok((self.root.clone(), applied))
    }
    fn run_in_target(
        &mut self,
        _root: &Path,
        argv: &[String],
        _log: &mut Log,
    ) -> Result<(), StageError> {
        self.commands.push(argv.to_vec());
        Ok(())
    }
    fn thin_volume(
        &mut self,
        pool: &PoolSettings,
        vid: &str,
        size: u64,
    ) -> Result<PathBuf, StageError> {
        let pool = format!("{}/{}", pool.volume_group, pool.name);
        if !self.pools.contains(&pool) {
            self.pools.push(pool);
        }
        let dev = self.volume(vid);
        fs::create_dir_all(dev.parent().unwrap()).map_err(StageError::io("creating", &dev))?;
        // a new, sparse file: reads as zeros, like a fresh thin volume
        let _ = fs::remove_file(&dev);
        let f = fs::File::create(&dev).map_err(StageError::io("creating", &dev))?;
        f.set_len(size).map_err(StageError::io("sizing", &dev))?;
        Ok(dev)
    }
    fn rename_volume(&mut self, from: &str, to: &str) -> Result<(), StageError> {
        let to = self.volume(to);
        fs::rename(self.volume(from), &to).map_err(StageError::io("renaming to", &to))
    }
    fn uefi_booted(&self) -> bool {
        self.uefi
    }
    fn finish(&mut self, _log: &mut Log) -> Result<(), StageError> {
        self.finished = true;
        Ok(())
    }
}

fn run(
    answers: &installer_tui::answers::Answers,
    machine_name: &str,
    payload: &Payload,
    target: &mut DirTarget,
) -> (Result<Log, (InstallError, Log)>, Vec<Event>) {
    let mut events = Vec::new();
    let r = engine::install(
        answers,
        &secrets(),
        &machine(machine_name),
        payload,
        None,
        target,
        &mut |e| events.push(e),
    );
    (r, events)
}

#[test]
fn full_install_into_a_directory_writes_every_file_correctly() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("payload");
    fake_payload(&src);
    let root = tmp.path().join("target");
    let a = answers("[qubes]\nsys_usb = false\ndisposable_sys_net = true\n");
    let mut t = DirTarget::new(&root);
    let (r, events) = run(&a, "laptop", &Payload::Dir(src.clone()), &mut t);
    let log = r.map_err(|(e, l)| format!("{e}\n{}", l.text())).unwrap();
    assert!(t.prepared && t.finished);

    // payload copied with modes and symlinks
    let m = std::fs::metadata(root.join("usr/bin/hello")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(root.join("bin/hello")).unwrap(),
        Path::new("../usr/bin/hello")
    );

    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let machine = machine("laptop");
    let plan = Plan::new(&machine.inventory, "/dev/nvme0n1").unwrap();
    // UUIDs are random per plan: check the shapes and the fixed parts.
    let fstab = read("etc/fstab");
    assert!(
        fstab.contains("/dev/mapper/qubes_dom0-root / ext4"),
        "{fstab}"
    );
    assert!(
        fstab.contains("/dev/mapper/qubes_dom0-swap none swap"),
        "{fstab}"
    );
    let boot_line = fstab.lines().find(|l| l.contains(" /boot ext4")).unwrap();
    assert_eq!(
        boot_line.split_whitespace().next().unwrap().len(),
        "UUID=".len() + 36
    );
    let esp_line = fstab
        .lines()
        .find(|l| l.contains(" /boot/efi vfat"))
        .unwrap();
    let esp = esp_line
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches("UUID=");
    assert!(esp.len() == 9 && esp.as_bytes()[4] == b'-', "{esp}");
    let crypttab = read("etc/crypttab");
    let f: Vec<&str> = crypttab.split_whitespace().collect();
    assert!(
        f[0].starts_with("luks-") && f[1] == format!("UUID={}", &f[0][5..]),
        "{crypttab}"
    );
    assert_eq!(
        std::fs::metadata(root.join("etc/crypttab"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(plan.luks.mapper_name.len(), f[0].len());

    assert_eq!(read("etc/hostname"), "work-laptop\n");
    let id = read("etc/machine-id");
    let id = id.trim_end();
    assert!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "machine-id(5) is 32 lower-case hex digits: {id:?}"
    );
    assert_ne!(id, engine::machine_id().unwrap(), "a new ID per install");
    assert!(read("etc/hosts").contains("127.0.0.1 localhost work-laptop"));
    assert_eq!(read("etc/locale.conf"), "LANG=en_US.UTF-8\n");
    assert_eq!(read("etc/vconsole.conf"), "KEYMAP=de\n");
    assert!(read("etc/default/keyboard").contains("XKBLAYOUT=\"de\""));
    assert_eq!(
        std::fs::read_link(root.join("etc/localtime")).unwrap(),
        Path::new("../usr/share/zoneinfo/Europe/Berlin")
    );
    assert_eq!(read("etc/localtime"), "TZif2 fake zone data\n");
    assert_eq!(read("etc/timezone"), "Europe/Berlin\n");

    // the user: next free uid, groups, password hash that verifies
    let passwd = read("etc/passwd");
    assert!(
        passwd.contains("alice:x:1001:1001:Alice Example:/home/alice:/bin/bash"),
        "{passwd}"
    );
    assert!(passwd.starts_with("root:x:0:0"), "{passwd}");
    let group = read("etc/group");
    assert!(group.contains("sudo:x:27:alice"), "{group}");
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("qubes:x:") && l.ends_with(":alice")),
        "{group}"
    );
    assert!(group.contains("alice:x:1001:"), "{group}");
    let shadow = read("etc/shadow");
    let hash = shadow
        .lines()
        .find(|l| l.starts_with("alice:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap();
    crypt_check(hash);
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let changed: u64 = shadow
        .lines()
        .find(|l| l.starts_with("alice:"))
        .and_then(|l| l.split(':').nth(2)?.parse().ok())
        .unwrap();
    assert!(
        changed.abs_diff(today) <= 1,
        "last change {changed}, today {today}"
    );
    let gshadow = read("etc/gshadow");
    assert!(gshadow.contains("sudo:*::alice\n"), "{gshadow}");
    assert!(gshadow.contains("alice:!::\n"), "{gshadow}");
    assert!(gshadow.lines().any(|l| l == "qubes:!::alice"), "{gshadow}");
    // Debian's own checkers (chrooted into the target) find the four
    // files consistent.
    for tool in ["grpck", "pwck"] {
        let out = std::process::Command::new(tool)
            .args(["-r", "-q", "-R"])
            .arg(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::metadata(root.join("home/alice"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // firstboot reads back what the installer meant
    let s = firstboot::settings::Settings::load(&root).unwrap();
    assert_eq!(s.usb_qube, firstboot::settings::UsbQube::None);
    assert!(s.disposable_sys_net && s.system_qubes && s.default_appvms && !s.installed_on_usb);

    // GRUB: Xen multiboot2 entry, LUKS unlock, LVM root
    let grub = read("boot/grub/grub.cfg");
    assert!(
        grub.contains(&format!(
            "multiboot2 /xen-4.17-amd64.gz placeholder {}\n",
            names::XEN_CMDLINE
        )),
        "{grub}"
    );
    assert!(
        grub.contains(
            "module2 /vmlinuz-6.1.0-10-amd64 placeholder root=/dev/mapper/qubes_dom0-root ro\n"
        ),
        "{grub}"
    );
    assert!(
        grub.contains("module2 --nounzip /initrd.img-6.1.0-10-amd64\n"),
        "{grub}"
    );
    assert!(!grub.contains("serial"), "no serial console asked: {grub}");
    assert!(
        grub.contains(&format!(
            "search --no-floppy --fs-uuid --set=root {}",
            &boot_line[5..41]
        )),
        "{grub}"
    );
    let cmds: Vec<String> = t.commands.iter().map(|c| c.join(" ")).collect();
    assert_eq!(
        cmds[0],
        "grub-install --target=i386-pc --recheck /dev/nvme0n1"
    );
    assert!(cmds[1].contains("--target=x86_64-efi") && cmds[1].contains("--removable"));
    assert!(
        !cmds.iter().any(|c| c.starts_with("efibootmgr")),
        "BIOS boot: no NVRAM entry"
    );
    assert_eq!(
        cmds.last().unwrap(),
        "update-initramfs -c -k 6.1.0-10-amd64"
    );

    // the log: on the target, no secrets
    let installed_log = read(engine::LOG_PATH);
    assert_eq!(
        std::fs::metadata(root.join(engine::LOG_PATH))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    for l in [&installed_log, &log.text()] {
        assert!(
            !l.contains(PASSPHRASE) && !l.contains(PASSWORD) && !l.contains(hash),
            "secret in log:\n{l}"
        );
        assert!(l.contains("[Partition]") && l.contains("LUKS2"), "{l}");
    }

    let copied: Vec<u8> = events
        .iter()
        .filter(|e| e.stage == Stage::Payload && e.message.ends_with("% copied"))
        .map(|e| e.percent)
        .collect();
    assert!(copied.len() >= 2, "payload progress: {copied:?}");
    assert_eq!(
        *copied.last().unwrap(),
        overall_percent(Stage::Payload, 100)
    );
    // progress: every stage in order, percent never falls, ends at 100
    let stages: Vec<Stage> = events.iter().map(|e| e.stage).collect();
    let mut dedup = stages.clone();
    dedup.dedup();
    assert_eq!(dedup, engine::STAGES.to_vec());
    assert!(events.windows(2).all(|w| w[0].percent <= w[1].percent));
    assert_eq!(events.last().unwrap().percent, 100);
    assert_eq!(events.last().unwrap().eta, Some(std::time::Duration::ZERO));
}

/// Checks `hash` with an independent reader: Python's crypt(3) binding.
fn crypt_check(hash: &str) {
    assert!(hash.starts_with("$y$"), "{hash}");
    let check = |pw: &str| {
        let out = std::process::Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt,sys; print(crypt.crypt(sys.argv[1], sys.argv[2]) == sys.argv[2])",
                pw,
                hash,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "True"
    };
    assert!(check(PASSWORD) && !check("wrong"));
}

#[test]
fn uefi_boot_adds_the_nvram_entry_and_usb_target_tells_firstboot() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("payload");
    fake_payload(&src);
    // sda is the 64 GB USB stick in the laptop fixture
    let mut a = answers("");
    a.disk.device = "/dev/sda".into();
    a.disk.erase = "/dev/sda".into();
    let mut t = DirTarget::new(&tmp.path().join("t"));
    t.uefi = true;
    let (r, _) = run(&a, "laptop", &Payload::Dir(src), &mut t);
    r.map_err(|(e, _)| e.to_string()).unwrap();
    let efi: Vec<_> = t.commands.iter().filter(|c| c[0] == "efibootmgr").collect();
    assert_eq!(efi.len(), 1);
    assert!(
        efi[0].join(" ").contains("--disk /dev/sda --part 2")
            && efi[0].join(" ").contains("\\EFI\\BOOT\\BOOTX64.EFI")
    );
    let s = firstboot::settings::Settings::load(&tmp.path().join("t")).unwrap();
    assert!(s.installed_on_usb);
}

#[test]
fn squashfs_payload_is_unpacked_by_unsquashfs() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("payload");
    fake_payload(&src);
    let img = tmp.path().join("payload.squashfs");
    squash(&src, &img);
    assert_eq!(Payload::at(&img), Payload::Squashfs(img.clone()));
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let (r, events) = run(&answers(""), "laptop", &Payload::Squashfs(img), &mut t);
    let log = r.map_err(|(e, _)| e.to_string()).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.stage == Stage::Payload && e.message == "100% copied"),
        "{events:#?}"
    );
    assert!(
        log.text().contains("(21 of 21 inodes named)"),
        "{}",
        log.text()
    );
    let root = tmp.path().join("t");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/bin/hello")).unwrap(),
        "#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        std::fs::metadata(root.join("usr/bin/hello"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert!(
        std::fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("alice:x:1001")
    );
}

/// A payload and a medium with a small template (accounts, a kernel) and,
/// with `kit`, the qubes' boot kit beside it, as iso-builder lays it out;
/// returns the payload directory and the template image.
fn template_medium(dir: &Path, kit: bool) -> (PathBuf, PathBuf) {
    let src = dir.join("payload");
    fake_payload(&src);
    let tsrc = dir.join("template");
    for (rel, text) in [
        ("etc/hostname", "template\n"),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
        ("etc/shadow", "root:*:20000:0:99999:7:::\n"),
        ("etc/group", "root:x:0:\nsudo:x:27:\n"),
        ("etc/gshadow", "root:*::\nsudo:*::\n"),
        ("boot/vmlinuz-6.1.0-10-amd64", "vm kernel"),
        ("usr/sbin/init", "#!/bin/sh\n"),
    ] {
        let p = tsrc.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    let medium = dir.join("medium");
    let img = medium.join("template.squashfs");
    fs::create_dir_all(&medium).unwrap();
    squash(&tsrc, &img);
    if kit {
        let k = medium.join("vm-kernels/6.1.0-10-amd64");
        fs::create_dir_all(&k).unwrap();
        fs::write(k.join("vmlinuz"), "vm kernel").unwrap();
        fs::write(k.join("initramfs"), "vm initramfs").unwrap();
    }
    (src, img)
}

#[test]
fn the_template_is_written_into_its_root_volume_which_firstboot_adopts() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = template_medium(tmp.path(), true);
    let kit = tmp.path().join("medium/vm-kernels/6.1.0-10-amd64");
    let root = tmp.path().join("t");
    let mut t = DirTarget::new(&root);
    let mut events = Vec::new();
    let r = engine::install(
        &answers(""),
        &secrets(),
        &machine("laptop"),
        &Payload::Dir(src),
        Some(&img),
        &mut t,
        &mut |e| events.push(e),
    );
    let log = r.map_err(|(e, l)| format!("{e}\n{}", l.text())).unwrap();
    assert!(log.text().contains("template debian-12:"), "{}", log.text());
    let ext4 = t.volume("qubes_dom0/vm-debian-12-root");
    assert_eq!(t.pools, ["qubes_dom0/vm-pool"]);
    assert!(
        !t.volume("qubes_dom0/vm-debian-12-root-import").exists(),
        "the partial name is gone once the volume is whole"
    );
    // Qubes' root_img_size, and ext4 fills the whole volume
    assert_eq!(fs::metadata(&ext4).unwrap().len(), 10 << 30);
    let dumpe2fs = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(&ext4)
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&dumpe2fs.stdout);
    assert!(
        header.contains("Block count:              2621440"),
        "{header}"
    );
    // inode tables marked zeroed: no lazy init in every qube's first mount
    let groups = std::process::Command::new("dumpe2fs")
        .arg(&ext4)
        .output()
        .unwrap();
    let groups = String::from_utf8_lossy(&groups.stdout);
    let group_lines: Vec<&str> = groups
        .lines()
        .filter(|l| l.starts_with("Group ") && l.contains("(Blocks "))
        .collect();
    assert_eq!(group_lines.len(), 80, "{groups}");
    assert!(
        group_lines.iter().all(|l| l.contains("ITABLE_ZEROED")),
        "{groups}"
    );
    // e2fsprogs reads the image back: clean, and the files are inside.
    let fsck = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&ext4)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let cat = std::process::Command::new("debugfs")
        .args(["-R", "cat /etc/hostname"])
        .arg(&ext4)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "template\n");
    let inside = |path: &str| {
        let o = std::process::Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(&ext4)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // the dom0 user's qube account: no password, sudo without one
    assert!(
        inside("/etc/passwd").contains("\nalice:x:1000:1000:"),
        "{}",
        inside("/etc/passwd")
    );
    assert!(
        inside("/etc/shadow").contains("\nalice::"),
        "{}",
        inside("/etc/shadow")
    );
    assert!(
        inside("/etc/group").contains("sudo:x:27:alice\n"),
        "{}",
        inside("/etc/group")
    );
    assert!(
        inside("/etc/gshadow").contains("\nalice:!::"),
        "{}",
        inside("/etc/gshadow")
    );
    assert!(
        inside("/etc/sudoers.d/bulkhead-qube-user").contains("alice ALL=(ALL:ALL) NOPASSWD: ALL"),
        "{}",
        inside("/etc/sudoers.d/bulkhead-qube-user")
    );
    let visudo = std::process::Command::new("debugfs")
        .args(["-R", "stat /etc/sudoers.d/bulkhead-qube-user"])
        .arg(&ext4)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&visudo.stdout).contains("Mode:  0440"));
    // every file the xl configs name for the kernel is installed
    for f in ["vmlinuz", "initramfs"] {
        assert_eq!(
            fs::read(root.join("var/lib/qubes/vm-kernels/6.1.0-10-amd64").join(f)).unwrap(),
            fs::read(kit.join(f)).unwrap()
        );
    }
    assert!(!root.join("var/tmp/bulkhead-template").exists());
    let s = firstboot::settings::Settings::load(&root).unwrap();
    assert_eq!(s.templates.len(), 1);
    assert_eq!(s.templates[0].name, "debian-12");
    assert!(s.templates[0].installed);
    assert_eq!(s.templates[0].image, None);
    assert_eq!(s.templates[0].root_size, Some(10 << 30));
    // firstboot's own facts find the VM kernel the template brought.
    assert_eq!(
        firstboot::facts::Facts::probe(&root).kernel.as_deref(),
        Some("6.1.0-10-amd64")
    );
}

#[test]
fn a_medium_without_the_qubes_boot_kit_is_refused_before_the_template_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, img) = template_medium(tmp.path(), false);
    let root = tmp.path().join("t");
    let mut t = DirTarget::new(&root);
    let (e, _) = engine::install(
        &answers(""),
        &secrets(),
        &machine("laptop"),
        &Payload::Dir(src),
        Some(&img),
        &mut t,
        &mut |_| {},
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("has no boot kit for the qubes"), "{msg}");
    assert!(msg.contains("cargo xtask iso"), "{msg}");
    assert!(!t.volume("qubes_dom0/vm-debian-12-root").exists());
    assert!(!t.volume("qubes_dom0/vm-debian-12-root-import").exists());
}

#[test]
fn hardware_warning_without_consent_stops_before_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let (r, events) = run(
        &answers(""),
        "laptop-no-iommu",
        &Payload::Dir(tmp.path().into()),
        &mut t,
    );
    let (e, log) = r.unwrap_err();
    assert_eq!(e.stage(), Stage::Hardware);
    assert!(e.to_string().contains("iommu"), "{e}");
    assert!(
        !t.prepared,
        "nothing may be prepared after a refused hardware check"
    );
    assert!(events.iter().all(|e| e.stage == Stage::Hardware));
    assert!(log.text().contains("FAILED"));
    // with consent it goes on
    let src = tmp.path().join("payload");
    fake_payload(&src);
    let mut t = DirTarget::new(&tmp.path().join("t2"));
    let (r, _) = run(
        &answers("[hardware]\naccept_warnings = [\"iommu\"]\n"),
        "laptop-no-iommu",
        &Payload::Dir(src),
        &mut t,
    );
    r.map_err(|(e, _)| e.to_string()).unwrap();
    assert!(t.prepared);
}

#[test]
fn refused_disks_stop_at_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    for (dev, needle) in [
        ("/dev/sdb", "live medium"),
        ("/dev/nvme0n1p1", "not a whole disk"),
        ("/dev/vdz", "not found"),
    ] {
        let mut a = answers("");
        a.disk.device = dev.into();
        a.disk.erase = dev.into();
        let mut t = DirTarget::new(&tmp.path().join("t"));
        let (r, _) = run(&a, "laptop", &Payload::Dir(tmp.path().into()), &mut t);
        let (e, _) = r.unwrap_err();
        assert_eq!(e.stage(), Stage::Plan, "{dev}: {e}");
        assert!(e.to_string().contains(needle), "{dev}: {e}");
        assert!(!t.prepared);
    }
}

#[test]
fn missing_time_zone_and_existing_user_fail_in_configure_naming_the_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("payload");
    fake_payload(&src);
    let mut a = answers("");
    a.system.timezone = "Asia/Tokyo".into();
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let (r, _) = run(&a, "laptop", &Payload::Dir(src.clone()), &mut t);
    let (e, _) = r.unwrap_err();
    assert_eq!(e.stage(), Stage::Configure);
    assert!(e.to_string().contains("Asia/Tokyo"), "{e}");
    assert!(
        t.finished,
        "a failure after partitioning still unmounts and closes"
    );
    let mut a = answers("");
    a.user.name = "user1".into();
    let mut t = DirTarget::new(&tmp.path().join("t2"));
    let (r, _) = run(&a, "laptop", &Payload::Dir(src), &mut t);
    let (e, _) = r.unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

#[test]
fn percent_and_eta_arithmetic() {
    assert_eq!(overall_percent(Stage::Hardware, 0), 0);
    assert_eq!(overall_percent(Stage::Payload, 0), 17);
    assert_eq!(overall_percent(Stage::Payload, 100), 82);
    assert_eq!(overall_percent(Stage::Finish, 100), 100);
    assert_eq!(
        engine::eta(std::time::Duration::from_secs(60), 25),
        Some(std::time::Duration::from_secs(180))
    );
    assert_eq!(engine::eta(std::time::Duration::from_secs(60), 0), None);
    let total: u32 = engine::STAGES.iter().map(|s| s.weight()).sum();
    assert_eq!(total, 100);
}

#[test]
fn target_facts_follow_the_plan() {
    let m = machine("laptop");
    let plan = Plan::new(&m.inventory, "/dev/nvme0n1").unwrap();
    let f = TargetFacts::of(&plan);
    assert_eq!(f.luks_uuid, plan.luks.uuid.to_string());
    assert_eq!(f.mapper, plan.luks.mapper_name);
    assert_eq!(
        f.boot_uuid,
        plan.partition(partitioner::plan::Role::Boot)
            .guid
            .to_string()
    );
    let vid = partitioner::apply::esp_volume_id(&plan);
    assert_eq!(
        f.esp_uuid,
        format!("{:04X}-{:04X}", vid >> 16, vid & 0xffff)
    );
}

#[test]
fn consent_must_name_the_planned_disk_and_answers_must_be_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("payload");
    fake_payload(&src);
    // bypassing the answer-file check: the engine checks again
    let mut a = answers("");
    a.disk.erase = "/dev/sda".into();
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let (r, events) = run(&a, "laptop", &Payload::Dir(src.clone()), &mut t);
    let (e, _) = r.unwrap_err();
    assert!(matches!(e, InstallError::Answers(_)), "{e}");
    assert!(e.to_string().contains("disk.erase"), "{e}");
    assert!(events.is_empty() && !t.prepared);
    // the target's own consent check (as partitioner's check_apply)
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let a = answers("");
    let plan_disk = "/dev/nvme0n1";
    let mut events = Vec::new();
    let r = engine::install(
        &a,
        &secrets(),
        &machine("laptop"),
        &Payload::Dir(src),
        None,
        &mut t,
        &mut |e| events.push(e),
    );
    r.map_err(|(e, _)| e.to_string()).unwrap();
    let part: Vec<&Event> = events
        .iter()
        .filter(|e| e.stage == Stage::Partition)
        .collect();
    assert_eq!(part.len(), 2, "start and the target's own progress line");
    assert!(part[0].message.contains(plan_disk) && part[1].message == "target directory ready");
    assert_eq!(part[1].percent, overall_percent(Stage::Partition, 50));
}

#[test]
fn files_follow_the_plan_the_partitioner_applied_when_it_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("payload");
    fake_payload(&src);
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let u = uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
    t.resumed_luks = Some(u);
    let (r, _) = run(&answers(""), "laptop", &Payload::Dir(src), &mut t);
    r.map_err(|(e, _)| e.to_string()).unwrap();
    let crypttab = std::fs::read_to_string(tmp.path().join("t/etc/crypttab")).unwrap();
    assert_eq!(crypttab, format!("luks-{u} UUID={u} none luks,discard\n"));
}

#[test]
fn launch_dry_runs_or_installs_under_the_lock_and_saves_a_failed_log() {
    use installer_tui::launch::{
        Install, InstallLock, LaunchError, LockError, Mode, Outcome, SavedLog, launch,
    };
    let tmp = tempfile::tempdir().unwrap();
    let m = machine("laptop");
    let mut events = Vec::new();
    let r = launch(&answers(""), &m, Mode::DryRun, &mut |e| events.push(e));
    assert!(matches!(r, Ok(Outcome::Planned(_))), "{r:?}");
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e.stage == Stage::Plan && e.message.starts_with("dry run: "))
    );

    let src = tmp.path().join("payload");
    fake_payload(&src);
    let payload = Payload::Dir(src);
    let lock = tmp.path().join("lock");
    let log = tmp.path().join("install.log");
    let held = InstallLock::acquire(&lock).unwrap();
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let mut asked = false;
    let install = Install {
        secrets: Box::new(|| {
            asked = true;
            Ok(secrets())
        }),
        payload: &payload,
        template: None,
        target: &mut t,
        lock: &lock,
        log: &log,
    };
    let r = launch(&answers(""), &m, Mode::Install(install), &mut |_| {});
    assert!(
        matches!(r, Err(LaunchError::Locked(LockError::Held))),
        "{r:?}"
    );
    assert!(
        !asked && !t.prepared,
        "nothing asked or opened without the lock"
    );
    drop(held);

    let mut a = answers("");
    a.system.timezone = "Asia/Tokyo".into();
    let mut t = DirTarget::new(&tmp.path().join("t"));
    let install = Install {
        secrets: Box::new(|| Ok(secrets())),
        payload: &payload,
        template: None,
        target: &mut t,
        lock: &lock,
        log: &log,
    };
    let e = launch(&a, &m, Mode::Install(install), &mut |_| {}).unwrap_err();
    let LaunchError::Install { error, saved } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(error.stage(), Stage::Configure);
    assert!(matches!(saved, SavedLog::At(p) if p == &log), "{saved:?}");
    assert!(fs::read_to_string(&log).unwrap().contains("FAILED"));
    assert!(
        e.to_string()
            .ends_with(&format!("The log is in {}", log.display()))
    );
    assert_eq!(e.for_screen(), (Stage::Configure, error.to_string()));
    assert!(t.finished);
}
