//! The end-to-end install test: the built ISO installs onto a blank disk
//! in a QEMU guest, driven by an answer file or by keystrokes; the disk is
//! then checked from the host with independent tools (sgdisk, cryptsetup,
//! mtools, debugfs, gzip/cpio) and, for the unattended run unless
//! `--no-boot`, booted alone to its login prompt with firstboot complete.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use guest_harness::{Bus, Disk, Vm};

use crate::medium::{Outcome, boot, entry_args, extract};
use crate::output as tool;

const FW_CFG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/bulkhead";
/// systemd in the installed dom0 under TCG: units get 15 minutes to start.
const TCG_DOM0_ARGS: &str = "systemd.default_timeout_start_sec=900";
/// Xen under TCG: a PVH dom0 (TCG cannot run a PV one).
const TCG_XEN_ARGS: &str = "dom0=pvh";
/// systemd 252 gives up on a device after 90 s (DefaultDeviceTimeoutSec,
/// which has no kernel switch before 254), and udev's coldplug in a dom0
/// under TCG takes about that long: whether /boot, the ESP, swap and hvc0
/// appear in time would depend on the machine's load. After the
/// unattended install, the test opens the installed root from the live
/// system's shell and raises that timeout in a drop-in, the only change it
/// makes to the installed system. `$((40+2))` keeps the marker out of the
/// echoed input.
const TCG_TUNING: &str = "shell\r\
    DM_DISABLE_UDEV=1; export DM_DISABLE_UDEV; \
    cryptsetup open --key-file /sys/firmware/qemu_fw_cfg/by_name/opt/bulkhead/passphrase/raw /dev/vda4 e2e && \
    lvm vgchange -ay qubes_dom0 && mkdir -p /mnt/e2e && mount /dev/mapper/qubes_dom0-root /mnt/e2e && \
    mkdir -p /mnt/e2e/etc/systemd/system.conf.d && \
    printf '[Manager]\\nDefaultDeviceTimeoutSec=900s\\n' > /mnt/e2e/etc/systemd/system.conf.d/tcg-e2e.conf && \
    umount /mnt/e2e && lvm vgchange -an qubes_dom0 && cryptsetup close e2e && echo tcg-tuned:$((40+2)) \
    || echo tcg-tuning-failed:$((40+2))\r";
const E2E_PASSPHRASE: &str = "e2e correct horse battery staple";
/// The dom0 user both installs make.
const E2E_USER: &str = "alice";
const E2E_PASSWORD: &str = "e2e-dom0-password";

/// How the install-test drives the installer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// An answer file handed over by QEMU's fw_cfg.
    Unattended,
    /// Keystrokes on the serial console, screen by screen.
    Keystrokes,
}

/// The whole path a user takes: the ISO's serial-console entry installs
/// onto a blank 40 GiB disk, driven by an answer file (fw_cfg) or by
/// keystrokes; the disk is checked from the host; with `boot_installed`
/// it then boots alone: GRUB, Xen, the dom0 kernel, the initramfs asking
/// for the LUKS passphrase (typed on the serial console), systemd,
/// firstboot, and the login prompt.
pub fn install_test(
    iso: &Path,
    driver: Driver,
    boot_installed: bool,
    keep: Option<&Path>,
) -> Result<()> {
    if !iso.is_file() {
        bail!(
            "{} does not exist: build it with `cargo xtask iso`",
            iso.display()
        );
    }
    let work = tempfile::tempdir()?;
    let w = match keep {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d
        }
        None => work.path(),
    };
    let disk = w.join("target.img");
    guest_harness::sparse_disk(&disk, 40 << 30)?;
    let kernel = w.join("vmlinuz");
    let initrd = w.join("initrd.img");
    extract(iso, "/boot/vmlinuz", &kernel)?;
    extract(iso, "/boot/initrd.img", &initrd)?;
    let serial_entry = entry_args(iso, w, "Install Bulkhead (serial console)")?;
    let vm = |args: &str| {
        Vm::new()
            .memory_mib(4096)
            .smp(2)
            .kernel_files(&kernel, &initrd, args)
            .cdrom(iso)
            .disk(Disk::new(&disk).bus(Bus::Virtio))
            .timeout(Duration::from_secs(2400))
    };
    let install = match driver {
        Driver::Unattended => {
            std::fs::write(w.join("passphrase"), E2E_PASSPHRASE)?;
            std::fs::write(w.join("password"), E2E_PASSWORD)?;
            std::fs::write(
                w.join("answers.toml"),
                format!(
                    "[disk]\ndevice = \"/dev/vda\"\nerase = \"/dev/vda\"\npassphrase_file = \"{FW_CFG}/passphrase/raw\"\n\n\
                     [system]\ntimezone = \"Europe/Berlin\"\nkeyboard = \"us\"\nhostname = \"dom0-e2e\"\n\
                     # TCG cannot run a PV dom0, and udev needs minutes there\n\
                     xen_args = \"{TCG_XEN_ARGS}\"\ndom0_args = \"{TCG_DOM0_ARGS}\"\n\n\
                     [user]\nname = \"{E2E_USER}\"\npassword_file = \"{FW_CFG}/password/raw\"\n\n\
                     [hardware]\naccept_warnings = [\"ram\", \"iommu\", \"keyboard\", \"virtualization\", \"disk\"]\n"
                ),
            )?;
            let mut vm = vm(&format!(
                "{serial_entry} bulkhead.answers={FW_CFG}/answers.toml/raw"
            ));
            vm = if boot_installed {
                vm.send_when("type shell, reboot or poweroff, then Enter.", TCG_TUNING)
                    .wait_for(":42")
            } else {
                vm.wait_for("bulkhead: install finished (exit ")
            };
            for f in ["answers.toml", "passphrase", "password"] {
                vm = vm.arg("-fw_cfg").arg(&format!(
                    "name=opt/bulkhead/{f},file={}",
                    w.join(f).display()
                ));
            }
            let o = boot("unattended install (serial entry)", vm)?;
            if !o.serial.contains("bulkhead: install finished (exit 0)") {
                bail!("the unattended install failed:\n{}", progress_lines(&o));
            }
            if boot_installed && !o.serial.contains("tcg-tuned:42") {
                bail!(
                    "raising systemd's device timeout on the installed root failed; console in target/qemu-logs/"
                );
            }
            o
        }
        Driver::Keystrokes => {
            const DOWN: &str = "\x1b[B";
            let pass = format!("{E2E_PASSPHRASE}\t{E2E_PASSPHRASE}\r");
            let consent = format!(" {DOWN}").repeat(6) + "\r";
            let vm = vm(&format!(
                "{serial_entry} bulkhead.xen_args={} bulkhead.dom0_args={}",
                TCG_XEN_ARGS.replace(' ', ","),
                TCG_DOM0_ARGS.replace(' ', ",")
            ))
            .screen(24, 80)
            .send_when("Enter: start", "\r")
            .send_when("Keyboard layout", "\r")
            .send_when("Requirements (hcl-check)", consent)
            .send_when("What is on it now", "\r")
            .send_when("Disk encryption passphrase", pass)
            .send_when(
                "dom0 user",
                format!("{E2E_USER}\t\t{E2E_PASSWORD}\t{E2E_PASSWORD}\r"),
            )
            .send_when("Time zone (the clock", "\r")
            .send_when("[x] AppVMs", "\r")
            .send_when("Up/Down: scroll", "\r")
            .send_when("EVERYTHING ON THIS DISK WILL BE ERASED", "/dev/vda\r")
            .wait_for("Remove the installation medium");
            let o = boot("interactive install by keystrokes", vm)?;
            if !o.ok {
                bail!("the interactive install did not reach its last screen");
            }
            o
        }
    };
    eprintln!("{}", progress_lines(&install));
    for line in check_installed_disk(&disk, E2E_PASSPHRASE)? {
        eprintln!("      {line}");
    }
    if boot_installed {
        crate::qubes_test::run(&disk, E2E_PASSPHRASE, E2E_USER, E2E_PASSWORD)?;
    }
    Ok(())
}

/// The installed-system session on a disk an earlier install left.
pub fn qubes_test(disk: &Path) -> Result<()> {
    if !disk.is_file() {
        bail!(
            "{} does not exist: make it with `cargo xtask install-test --no-boot --keep DIR`",
            disk.display()
        );
    }
    crate::qubes_test::run(disk, E2E_PASSPHRASE, E2E_USER, E2E_PASSWORD)
}

/// A partition of the installed disk as `sgdisk -p` lists it.
struct Part {
    start: u64,
    end: u64,
    code: String,
}

/// A read-only loop device over one partition, detached on drop.
struct Loop(String);

impl Loop {
    fn over(disk: &Path, p: &Part) -> Result<Loop> {
        let dev = tool(
            Command::new("losetup")
                .args(["--find", "--show", "--read-only", "--offset"])
                .arg((p.start * 512).to_string())
                .arg("--sizelimit")
                .arg(((p.end + 1 - p.start) * 512).to_string())
                .arg(disk),
        )?;
        Ok(Loop(dev.trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Reads the installed disk from the host with tools that share no code
/// with ours: the GPT (sgdisk), GRUB's boot code in the MBR and the BIOS
/// boot partition, the ESP's fallback loader (mtools), /boot's GRUB menu,
/// Xen, kernel and initramfs (debugfs), what that initramfs needs to
/// unlock the root (gzip, cpio), and the LUKS2 header, which must
/// take the passphrase and refuse another (cryptsetup, no device-mapper
/// needed). Returns one line per finding.
pub fn check_installed_disk(disk: &Path, passphrase: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let verify = tool(Command::new("sgdisk").arg("-v").arg(disk))?;
    if !verify.contains("No problems found") {
        bail!("sgdisk -v finds problems on the installed disk:\n{verify}");
    }
    let table = tool(Command::new("sgdisk").arg("-p").arg(disk))?;
    let parts: Vec<Part> = table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Number"))
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some(Part {
                start: w.get(1)?.parse().ok()?,
                end: w.get(2)?.parse().ok()?,
                code: w.get(5)?.to_string(),
            })
        })
        .collect();
    let codes: Vec<&str> = parts.iter().map(|p| p.code.as_str()).collect();
    if codes != ["EF02", "EF00", "8300", "8309"] {
        bail!("expected BIOS boot, ESP, /boot and LUKS partitions; sgdisk lists:\n{table}");
    }
    found.push("GPT: sgdisk -v finds no problems; BIOS boot, ESP, /boot, LUKS".to_string());

    let mut head = vec![0u8; 512];
    let mut core = vec![0u8; 512];
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(disk)?;
        f.read_exact(&mut head)?;
        f.seek(SeekFrom::Start(parts[0].start * 512))?;
        f.read_exact(&mut core)?;
    }
    if !head.windows(4).any(|w| w == b"GRUB") {
        bail!("the MBR holds no GRUB boot code");
    }
    if core.iter().all(|b| *b == 0) {
        bail!("the BIOS boot partition is empty: no GRUB core image");
    }
    found.push(
        "BIOS: GRUB's boot code in the MBR, its core image in the BIOS boot partition".into(),
    );

    let esp = tool(
        Command::new("mdir")
            .arg("-b")
            .arg("-i")
            .arg(format!("{}@@{}", disk.display(), parts[1].start * 512))
            .arg("::/EFI/BOOT"),
    )?;
    if !esp.to_ascii_uppercase().contains("BOOTX64.EFI") {
        bail!("the ESP has no EFI/BOOT/BOOTX64.EFI:\n{esp}");
    }
    found.push("UEFI: EFI/BOOT/BOOTX64.EFI on the ESP (mtools)".into());

    let boot = Loop::over(disk, &parts[2])?;
    let listing = tool(Command::new("debugfs").args(["-R", "ls -p /", &boot.0]))?;
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .collect();
    for (what, prefix) in [
        ("Xen", "xen-"),
        ("kernel", "vmlinuz-"),
        ("initramfs", "initrd.img-"),
    ] {
        if !names.iter().any(|n| n.starts_with(prefix)) {
            bail!("/boot has no {what} ({prefix}*): {names:?}");
        }
    }
    let grub = tool(Command::new("debugfs").args(["-R", "cat /grub/grub.cfg", &boot.0]))?;
    for needle in [
        "multiboot2 /xen-",
        "module2 /vmlinuz-",
        "module2 --nounzip /initrd.img-",
    ] {
        if !grub.contains(needle) {
            bail!("/boot/grub/grub.cfg lacks {needle:?}:\n{grub}");
        }
    }
    found.push("/boot: Xen, kernel, initramfs and a multiboot2 menu entry (debugfs)".into());

    // The initramfs GRUB loads must unlock the root: initramfs-tools'
    // cryptroot script and its crypttab naming this disk's LUKS UUID, with
    // cryptsetup, LVM and dm-crypt beside it.
    let initrd = grub
        .lines()
        .find_map(|l| l.trim().strip_prefix("module2 --nounzip /"))
        .map(str::trim)
        .context("grub.cfg names no initramfs")?;
    let tmp = tempfile::tempdir()?;
    let local = tmp.path().join("initrd.img");
    tool(Command::new("debugfs").args([
        "-R",
        &format!("dump /{initrd} {}", local.display()),
        &boot.0,
    ]))?;
    let shell = |script: &str| tool(Command::new("sh").args(["-c", script, "sh"]).arg(&local));
    let files = shell("gzip -dc \"$1\" | cpio -t --quiet")
        .with_context(|| format!("{initrd} is not a gzip'd cpio archive"))?;
    for needle in [
        "scripts/local-top/cryptroot",
        "sbin/cryptsetup",
        "sbin/lvm",
        "dm-crypt.ko",
    ] {
        if !files.lines().any(|l| l.ends_with(needle)) {
            bail!("{initrd} has no {needle}: it could not unlock the root at boot");
        }
    }
    let luks = Loop::over(disk, &parts[3])?;
    let crypttab = shell("gzip -dc \"$1\" | cpio -i --to-stdout --quiet cryptroot/crypttab")?;
    let uuid = tool(Command::new("cryptsetup").args(["luksUUID", &luks.0]))?;
    let uuid = uuid.trim();
    if !crypttab.contains(&format!("UUID={uuid}")) {
        bail!("{initrd}'s crypttab does not name the LUKS volume {uuid}: {crypttab:?}");
    }
    found.push(format!(
        "initramfs {initrd}: cryptroot with crypttab for LUKS {uuid}, cryptsetup, lvm, dm-crypt"
    ));

    let dump = tool(Command::new("cryptsetup").args(["luksDump", &luks.0]))?;
    let version = dump
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(str::trim);
    if version != Some("2") || !dump.contains("aes-xts-plain64") || !dump.contains("argon2id") {
        bail!("expected a LUKS2 header with aes-xts-plain64 and argon2id:\n{dump}");
    }
    let opens = |key: &str| -> Result<bool> {
        use std::io::Write;
        let mut child = Command::new("cryptsetup")
            .args(["open", "--test-passphrase", "--key-file", "-", &luks.0])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run cryptsetup")?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(key.as_bytes())?;
        }
        Ok(child.wait()?.success())
    };
    if !opens(passphrase)? {
        bail!("the LUKS volume does not take the passphrase given to the installer");
    }
    if opens("not the passphrase")? {
        bail!("the LUKS volume takes a wrong passphrase");
    }
    found
        .push("LUKS2: aes-xts-plain64, argon2id; the passphrase opens it, another does not".into());
    Ok(found)
}

/// The installer's progress lines (`[ NN%] stage: message`).
fn progress_lines(o: &Outcome) -> String {
    o.serial
        .lines()
        .filter(|l| l.starts_with("[ ") && l.contains("%]") || l.contains("bulkhead:"))
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
