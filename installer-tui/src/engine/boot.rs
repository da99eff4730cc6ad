//! The bootloader stage: the payload's Xen and dom0 kernel, GRUB's menu,
//! the initramfs settings, and the commands run inside the target that
//! install GRUB for BIOS and UEFI and rebuild the initramfs.

use std::fs;
use std::path::Path;

use names::XEN_CMDLINE;
use partitioner::discover::Transport;
use partitioner::{DiskInfo, Plan};

use super::error::{At, InstallError, StageError};
use super::files::{self, Entry};
use super::progress::Stage;
use super::run::Run;
use super::target::TargetFacts;
use crate::answers::SystemAnswers;

/// The stage: GRUB's menu and the initramfs settings written, then the
/// bootloader commands run in the target.
pub fn stage(
    run: &mut Run,
    root: &Path,
    plan: &Plan,
    disk: &DiskInfo,
    facts: &TargetFacts,
    system: &SystemAnswers,
) -> Result<(), InstallError> {
    run.out
        .emit(Stage::Bootloader, 0, "GRUB for BIOS and UEFI, initramfs");
    let found = boot_files(root).at(Stage::Bootloader)?;
    let serial = run.target.serial_console();
    run.out.log.line(format!(
        "  Xen {}, dom0 kernel {}, serial console {}",
        found.xen,
        found.kernel,
        if serial { "kept" } else { "none" }
    ));
    let portable = disk.transport == Transport::Usb;
    files::write_all(root, &entries(facts, &found, serial, system, portable))
        .at(Stage::Bootloader)?;
    let cmds = bootloader_commands(&plan.disk.path, run.target.uefi_booted(), &found.release);
    for (i, cmd) in cmds.iter().enumerate() {
        run.out.emit(
            Stage::Bootloader,
            (i * 100 / cmds.len()) as u8,
            format!("running {}", cmd.join(" ")),
        );
        run.target
            .run_in_target(root, cmd, &mut run.out.log)
            .at(Stage::Bootloader)?;
    }
    Ok(())
}

/// GRUB's menu and the initramfs settings, as files for the target.
pub fn entries(
    facts: &TargetFacts,
    found: &BootFiles,
    serial: bool,
    system: &SystemAnswers,
    portable: bool,
) -> Vec<Entry> {
    let (conf, extra_modules) = initramfs_settings(portable);
    let mut v = vec![
        Entry::file(
            "boot/grub/grub.cfg",
            grub_cfg(facts, found, serial, system),
            0o644,
        ),
        Entry::file("etc/initramfs-tools/conf.d/bulkhead.conf", conf, 0o644),
    ];
    v.extend(
        extra_modules
            .iter()
            .map(|m| Entry::line("etc/initramfs-tools/modules", *m, 0o644)),
    );
    v
}

/// The files the payload put in /boot: Xen, the dom0 kernel (the newest,
/// when several) and that kernel's release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub xen: String,
    pub kernel: String,
    pub release: String,
}

impl BootFiles {
    /// The initramfs `update-initramfs -c` makes for the kernel.
    pub fn initrd(&self) -> String {
        format!("initrd.img-{}", self.release)
    }
}

/// Finds Xen and the dom0 kernel in the target's /boot.
pub fn boot_files(root: &Path) -> Result<BootFiles, StageError> {
    let boot = root.join("boot");
    fs::read_dir(&boot).map_err(StageError::io("listing", &boot))?;
    let xen = newest(&boot, "xen-", ".gz")
        .ok_or(StageError::Incomplete("Xen hypervisor (/boot/xen-*.gz)"))?;
    let (kernel, release) =
        newest_kernel(root).ok_or(StageError::Incomplete("dom0 kernel (/boot/vmlinuz-*)"))?;
    Ok(BootFiles {
        xen,
        kernel,
        release,
    })
}

/// The newest `vmlinuz-RELEASE` in `root/boot`, with its release.
pub fn newest_kernel(root: &Path) -> Option<(String, String)> {
    let k = newest(&root.join("boot"), "vmlinuz-", "")?;
    let release = k.trim_start_matches("vmlinuz-").to_string();
    Some((k, release))
}

/// The name in `dir` with `prefix` and `suffix` that sorts last by version.
fn newest(dir: &Path, prefix: &str, suffix: &str) -> Option<String> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .max_by(|a, b| sysutil::natural_cmp(a, b))
}

/// GRUB's menu on the target: Xen (multiboot2) with Qubes' command line and
/// the dom0 kernel, whose initramfs unlocks the LUKS2 volume (crypttab) and
/// activates the LVM root. With `serial`, GRUB, Xen (com1) and dom0 (hvc0)
/// also use the first serial port. `system`'s extra Xen and dom0 arguments
/// come last.
pub fn grub_cfg(
    facts: &TargetFacts,
    files: &BootFiles,
    serial: bool,
    system: &SystemAnswers,
) -> String {
    let (terminal, xen_cmdline, dom0_console) = if serial {
        (
            "serial --unit=0 --speed=115200\n\
             terminal_input console serial\n\
             terminal_output console serial\n",
            XEN_CMDLINE.replace("console=none", "console=com1,vga com1=115200,8n1"),
            " console=hvc0",
        )
    } else {
        ("", XEN_CMDLINE.to_string(), "")
    };
    let with = |base: &str, extra: &str| match extra.trim() {
        "" => base.to_string(),
        extra => format!("{base} {extra}"),
    };
    let xen_cmdline = with(&xen_cmdline, &system.xen_args);
    let dom0_cmdline = with(
        &format!("root={} ro{dom0_console}", facts.root_dev),
        &system.dom0_args,
    );
    format!(
        "# Written by the Bulkhead installer.\n\
         set timeout=5\n\
         set default=0\n\
         {terminal}\
         insmod part_gpt\n\
         insmod ext2\n\
         search --no-floppy --fs-uuid --set=root {boot}\n\
         menuentry 'Bulkhead (Xen)' {{\n\
         \tinsmod multiboot2\n\
         \techo 'Loading Xen {xen}'\n\
         \tmultiboot2 /{xen} placeholder {xen_cmdline}\n\
         \techo 'Loading Linux {kernel}'\n\
         \tmodule2 /{kernel} placeholder {dom0_cmdline}\n\
         \tmodule2 --nounzip /{initrd}\n\
         }}\n",
        boot = facts.boot_uuid,
        xen = files.xen,
        kernel = files.kernel,
        initrd = files.initrd(),
    )
}

/// initramfs-tools' settings for the target. An internal disk gets a
/// host-only image (`MODULES=dep`, as Fedora's and Qubes' dracut do): this
/// machine's drivers, plus the device-mapper targets of the root and the
/// keyboard drivers the passphrase is typed with. An install onto a USB
/// drive gets every driver (`MODULES=most`), so it boots on other machines.
/// Returns the conf.d file and the lines for `/etc/initramfs-tools/modules`.
pub fn initramfs_settings(portable: bool) -> (String, &'static [&'static str]) {
    const HOST_ONLY_EXTRA: &[&str] = &[
        "dm_mod",
        "dm_crypt",
        "dm_thin_pool",
        "usbhid",
        "hid_generic",
        "xhci_pci",
        "ehci_pci",
        "ohci_pci",
        "uhci_hcd",
    ];
    let modules = if portable { "most" } else { "dep" };
    let conf = format!(
        "# Written by the Bulkhead installer: {}.\nMODULES={modules}\nCOMPRESS=gzip\n",
        if portable {
            "every driver, so this USB drive boots on other machines"
        } else {
            "this machine's drivers (host-only), plus those in ../modules"
        }
    );
    (conf, if portable { &[] } else { HOST_ONLY_EXTRA })
}

/// The commands, run inside the target (chroot), that install GRUB for BIOS
/// (core image in the BIOS boot partition) and UEFI (the removable fallback
/// path EFI/BOOT/BOOTX64.EFI; an NVRAM entry only when booted by UEFI) and
/// rebuild the initramfs with the LUKS/LVM unlock.
pub fn bootloader_commands(disk: &str, uefi_booted: bool, release: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut c = vec![
        v(&["grub-install", "--target=i386-pc", "--recheck", disk]),
        v(&[
            "grub-install",
            "--target=x86_64-efi",
            "--efi-directory=/boot/efi",
            "--bootloader-id=bulkhead",
            "--removable",
            "--no-nvram",
        ]),
    ];
    if uefi_booted {
        c.push(v(&[
            "efibootmgr",
            "--create",
            "--disk",
            disk,
            "--part",
            "2",
            "--label",
            "Bulkhead",
            "--loader",
            "\\EFI\\BOOT\\BOOTX64.EFI",
        ]));
    }
    c.push(v(&["update-initramfs", "-c", "-k", release]));
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::target::serial_console;

    #[test]
    fn internal_disks_get_a_host_only_initramfs_usb_drives_a_portable_one() {
        let (conf, extra) = initramfs_settings(false);
        assert!(conf.contains("MODULES=dep\n"), "{conf}");
        assert!(extra.contains(&"dm_thin_pool") && extra.contains(&"usbhid"));
        let (conf, extra) = initramfs_settings(true);
        assert!(conf.contains("MODULES=most\n"), "{conf}");
        assert!(extra.is_empty());
    }

    fn facts() -> TargetFacts {
        TargetFacts::sample()
    }

    #[test]
    fn serial_install_keeps_the_serial_console_in_grub_xen_and_dom0() {
        assert!(serial_console("quiet console=tty0 console=ttyS0,115200"));
        assert!(!serial_console("quiet console=tty0"));
        let files = BootFiles {
            xen: "xen-4.17-amd64.gz".into(),
            kernel: "vmlinuz-6.1.0-1-amd64".into(),
            release: "6.1.0-1-amd64".into(),
        };
        let system = SystemAnswers {
            xen_args: "dom0=pvh".into(),
            dom0_args: "systemd.default_timeout_start_sec=600".into(),
            ..SystemAnswers::default()
        };
        let cfg = grub_cfg(&facts(), &files, true, &system);
        assert!(cfg.contains("terminal_output console serial\n"), "{cfg}");
        assert!(
            cfg.contains("console=com1,vga com1=115200,8n1 dom0_mem=min:1024M"),
            "{cfg}"
        );
        assert!(
            cfg.contains("root=/dev/mapper/qubes_dom0-root ro console=hvc0 systemd.default_timeout_start_sec=600\n"),
            "{cfg}"
        );
        assert!(cfg.contains(" dom0=pvh\n"), "{cfg}");
        let plain = grub_cfg(&facts(), &files, false, &SystemAnswers::default());
        assert!(
            plain.contains(&format!("placeholder {XEN_CMDLINE}\n")),
            "{plain}"
        );
    }

    #[test]
    fn boot_files_pick_xen_and_the_newest_kernel_or_say_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("boot")).unwrap();
        let e = boot_files(d.path()).unwrap_err().to_string();
        assert!(e.contains("no Xen hypervisor"), "{e}");
        for f in [
            "xen-4.17-amd64.gz",
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
        ] {
            fs::write(d.path().join("boot").join(f), "x").unwrap();
        }
        let b = boot_files(d.path()).unwrap();
        assert_eq!(b.kernel, "vmlinuz-6.1.0-10-amd64");
        assert_eq!(b.initrd(), "initrd.img-6.1.0-10-amd64");
        assert_eq!(b.xen, "xen-4.17-amd64.gz");
    }
}
