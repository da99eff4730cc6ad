//! What the pipeline adds to the trees of the installed system: the dom0
//! payload gets firstboot with its unit enabled, the `qube` command with the
//! qubes' template unit and the sudoers rule letting the qubes group run it,
//! xl's ballooning of dom0, the qubes' disk hotplug script, GRUB's Xen
//! command line for later `update-grub` runs, and no network; the qube
//! template gets a qube's volume layout (fstab and its home unit) and the
//! network backend a netvm runs (files in `iso-builder/template/`). No
//! Debian package carries these.

use crate::rootfs::Extra;

use names::{
    FIRSTBOOT_BIN, FIRSTBOOT_UNIT, QUBE_BIN, QUBE_BLOCK_SCRIPT, QUBE_SUDOERS, QUBE_UNIT,
    VIF_SCRIPT, XEN_CMDLINE,
};

const UNIT_TEXT: &str = include_str!("../../firstboot/systemd/bulkhead-firstboot.service");
const QUBE_UNIT_TEXT: &str = include_str!("../../firstboot/systemd/bulkhead-qube@.service");
const QUBE_SUDOERS_TEXT: &str = include_str!("../../qube/sudoers");
const QUBE_BLOCK_SCRIPT_TEXT: &str = include_str!("../../firstboot/xen/block-bulkhead");

/// Units that would put dom0 on the network; masked so a NIC stays for
/// sys-net even if someone installs the package later.
pub const NETWORK_UNITS: &[&str] = &[
    "systemd-networkd.service",
    "systemd-networkd.socket",
    "systemd-networkd-wait-online.service",
    "NetworkManager.service",
    "networking.service",
    "wpa_supplicant.service",
];

/// Debian's own domain starter: it would start /etc/xen/auto at boot and
/// save every running domain to disk at shutdown, behind the qubes' units
/// (bulkhead-qube@), which start, stop and give back their volumes.
pub const XEN_DOMAIN_UNITS: &[&str] = &["xendomains.service"];

/// Units a qube has no use for, masked in the template: each costs seconds
/// of every qube's boot (a PVH domU under Xen), and most run at every
/// start, since an AppVM's root is a fresh snapshot each time.
/// - Debian's Xen packages: `xen`'s init script starts dom0's daemons and,
///   in a domU, only loads modules (the network backend loads what it
///   needs); `xendomains` starts and saves domains.
/// - e2scrub: `e2scrub_reap` and `e2scrub_all.timer` check LVM snapshots,
///   which a qube's volumes (plain xvda, xvdb) never are.
/// - Hardware a PVH domU has not: a display (`modprobe@drm`), EFI's
///   persistent store (`systemd-pstore`, `modprobe@efi_pstore`), a VT
///   console (`getty@tty1`: a qube's login is on hvc0), device-mapper
///   (`modprobe@dm_mod`; root is xvda).
/// - Kernel file systems only a debugger or tuner mounts (debugfs, tracefs,
///   hugetlbfs, configfs, fusectl); fuse and loop still load on first use
///   of /dev/fuse and /dev/loop-control, as their device nodes exist.
/// - apt's and dpkg's daily timers: an AppVM's root is discarded at
///   shutdown and the template is updated by hand (as in Qubes, where
///   dom0 updates templates), so their runs only cost each start.
pub const TEMPLATE_MASKED_UNITS: &[&str] = &[
    "xen.service",
    "xendomains.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "modprobe@drm.service",
    "systemd-pstore.service",
    "modprobe@efi_pstore.service",
    "getty@tty1.service",
    "modprobe@dm_mod.service",
    "modprobe@loop.service",
    "modprobe@fuse.service",
    "modprobe@configfs.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
];

/// apt's daily timers in dom0, which has no network (the same reason as
/// [`NETWORK_UNITS`]): each run could only fail.
pub const DOM0_MASKED_TIMERS: &[&str] = &["apt-daily.timer", "apt-daily-upgrade.timer"];

/// A unit file at `path` and its link in multi-user.target.wants.
fn enabled(path: &str, text: &str) -> [Extra; 2] {
    let name = path.rsplit('/').next().unwrap_or(path);
    [
        Extra::file(path, text, 0o644),
        Extra::symlink(
            &format!("etc/systemd/system/multi-user.target.wants/{name}"),
            &format!("/{path}"),
        ),
    ]
}

/// `units` masked: linked to /dev/null in /etc/systemd/system.
fn masked<'a>(units: impl IntoIterator<Item = &'a &'a str>) -> impl Iterator<Item = Extra> {
    units
        .into_iter()
        .map(|u| Extra::symlink(&format!("etc/systemd/system/{u}"), "/dev/null"))
}

/// The files added to the `payload` tree; `firstboot` and `qube` are the
/// binaries. The qubes' units are enabled per qube by firstboot.
pub fn payload_files(firstboot: Vec<u8>, qube: Vec<u8>) -> Vec<Extra> {
    let mut v = vec![Extra::file(FIRSTBOOT_BIN, firstboot, 0o755)];
    v.extend(enabled(FIRSTBOOT_UNIT, UNIT_TEXT));
    v.extend([
        Extra::file(QUBE_BIN, qube, 0o755),
        Extra::file(QUBE_UNIT, QUBE_UNIT_TEXT, 0o644),
        // sudo ignores a sudoers file that is writable or not 0440-like.
        Extra::file(QUBE_SUDOERS, QUBE_SUDOERS_TEXT, 0o440),
        Extra::file(QUBE_BLOCK_SCRIPT, QUBE_BLOCK_SCRIPT_TEXT, 0o755),
        Extra::file(
            "etc/default/grub.d/bulkhead.cfg",
            format!(
                "# Written by the Bulkhead ISO build: Qubes' Xen command line, kept by update-grub.\n\
                 GRUB_CMDLINE_XEN_DEFAULT=\"{XEN_CMDLINE}\"\n\
                 GRUB_DISABLE_OS_PROBER=true\n"
            ),
            0o644,
        ),
        Extra::file(
            "etc/xen/xl.conf",
            "# Written by the Bulkhead ISO build (xl.conf(5)).\n\
             # Xen's command line sets dom0_mem, which turns xl's \"auto\" ballooning\n\
             # off: then no qube could get memory. Qubes balloons dom0 with qmemman;\n\
             # here xl takes what a qube needs from dom0 when it starts it.\n\
             autoballoon=\"on\"\n",
            0o644,
        ),
        Extra::file(
            "etc/systemd/network/README.bulkhead",
            "dom0 has no network: its NICs are left for sys-net, and the units that\n\
             would configure them are masked in /etc/systemd/system.\n",
            0o644,
        ),
    ]);
    v.extend(masked(
        NETWORK_UNITS
            .iter()
            .chain(XEN_DOMAIN_UNITS)
            .chain(DOM0_MASKED_TIMERS),
    ));
    v
}

/// The files added to the `template` tree: a qube's volumes in its fstab
/// (root, private on /rw with /home on it, volatile as swap) and the unit
/// that puts the homes on the private volume; the network backend of a
/// qube that serves clients (its unit, enabled, and the vif hotplug
/// script) with the clients' vifs left out of NetworkManager's hands; the
/// qube's own network from its kernel line (`qube-net`: address, routes,
/// DNS, and forwarding, NAT and DNS redirection in a netvm), NetworkManager
/// only in sys-net; the
/// units in [`TEMPLATE_MASKED_UNITS`] masked. The template's systemd does
/// the rest: `x-systemd.makefs` gives a blank
/// private volume its file system and the fresh volatile its swap
/// signature.
pub fn template_files() -> Vec<Extra> {
    let mut v = vec![
        Extra::file("etc/fstab", QUBE_FSTAB, 0o644),
        Extra::file(QUBE_HOME_UNIT, QUBE_HOME_UNIT_TEXT, 0o644),
        Extra::file(QUBE_HOME_SCRIPT, QUBE_HOME_SCRIPT_TEXT, 0o755),
    ];
    v.extend(enabled(NETBACK_UNIT, NETBACK_UNIT_TEXT));
    v.extend([
        Extra::file(VIF_SCRIPT, VIF_SCRIPT_TEXT, 0o755),
        Extra::file(QUBE_NET_SCRIPT, QUBE_NET_SCRIPT_TEXT, 0o755),
    ]);
    v.extend(enabled(QUBE_NET_UNIT, QUBE_NET_UNIT_TEXT));
    v.extend(enabled(QUBE_DNS_PATH, QUBE_DNS_PATH_TEXT));
    v.extend([
        // started by its path unit only
        Extra::file(QUBE_DNS_UNIT, QUBE_DNS_UNIT_TEXT, 0o644),
        Extra::file(NM_DROPIN, NM_DROPIN_TEXT, 0o644),
        Extra::file(HVC0_DROPIN, HVC0_DROPIN_TEXT, 0o644),
        Extra::file(
            "etc/NetworkManager/conf.d/30-bulkhead-vif.conf",
            NM_VIF_TEXT,
            0o644,
        ),
    ]);
    v.extend(masked(TEMPLATE_MASKED_UNITS));
    v
}

const QUBE_FSTAB: &str = include_str!("../template/fstab");
const HVC0_DROPIN: &str = "etc/systemd/system/dev-hvc0.device.d/bulkhead-wait.conf";
const HVC0_DROPIN_TEXT: &str = include_str!("../template/hvc0-wait.conf");
pub const QUBE_HOME_UNIT: &str = "usr/lib/systemd/system/bulkhead-qube-home.service";
const QUBE_HOME_UNIT_TEXT: &str = include_str!("../template/bulkhead-qube-home.service");
pub const QUBE_HOME_SCRIPT: &str = "usr/lib/bulkhead/qube-home";
const QUBE_HOME_SCRIPT_TEXT: &str = include_str!("../template/qube-home");
pub const NETBACK_UNIT: &str = "usr/lib/systemd/system/bulkhead-netback.service";
const NETBACK_UNIT_TEXT: &str = include_str!("../template/bulkhead-netback.service");
const VIF_SCRIPT_TEXT: &str = include_str!("../template/vif-route-qubes");
const NM_VIF_TEXT: &str = include_str!("../template/nm-unmanaged-vif.conf");
pub const QUBE_NET_SCRIPT: &str = "usr/lib/bulkhead/qube-net";
const QUBE_NET_SCRIPT_TEXT: &str = include_str!("../template/qube-net");
pub const QUBE_NET_UNIT: &str = "usr/lib/systemd/system/bulkhead-qube-net.service";
const QUBE_NET_UNIT_TEXT: &str = include_str!("../template/bulkhead-qube-net.service");
pub const QUBE_DNS_PATH: &str = "usr/lib/systemd/system/bulkhead-qube-dns.path";
const QUBE_DNS_PATH_TEXT: &str = include_str!("../template/bulkhead-qube-dns.path");
pub const QUBE_DNS_UNIT: &str = "usr/lib/systemd/system/bulkhead-qube-dns.service";
const QUBE_DNS_UNIT_TEXT: &str = include_str!("../template/bulkhead-qube-dns.service");
const NM_DROPIN: &str = "etc/systemd/system/NetworkManager.service.d/50-bulkhead-sys-net-only.conf";
const NM_DROPIN_TEXT: &str = include_str!("../template/nm-only-in-sys-net.conf");

/// Paths the payload must hold (`*` matches within one path component):
/// Xen, the dom0 kernel, the toolstack, LVM thin provisioning, LUKS unlock
/// in the initramfs, GRUB for both firmwares, systemd, sudo, firstboot and
/// qube with its unit and sudoers rule.
pub const PAYLOAD_REQUIRED: &[&str] = &[
    "boot/xen-*.gz",
    "boot/vmlinuz-*-amd64",
    "usr/sbin/xl",
    "usr/sbin/lvcreate",
    "usr/sbin/thin_check",
    "usr/sbin/cryptsetup",
    "usr/share/initramfs-tools/hooks/cryptroot",
    "usr/sbin/update-initramfs",
    "usr/sbin/grub-install",
    "usr/lib/grub/i386-pc/modinfo.sh",
    "usr/lib/grub/x86_64-efi/modinfo.sh",
    "usr/bin/efibootmgr",
    "usr/lib/systemd/systemd",
    "usr/sbin/init",
    // oxenstored does not start without it
    "var/log/xen",
    "usr/bin/sudo",
    FIRSTBOOT_BIN,
    FIRSTBOOT_UNIT,
    QUBE_BIN,
    QUBE_UNIT,
    QUBE_SUDOERS,
    QUBE_BLOCK_SCRIPT,
    // the block script's tools
    "usr/bin/xenstore-write",
    "usr/bin/stat",
];

/// What must not be in the payload: anything that would put dom0 on the
/// network.
pub const PAYLOAD_FORBIDDEN: &[&str] = &[
    "usr/sbin/NetworkManager",
    "usr/sbin/dhclient",
    "usr/sbin/dhcpcd",
    "usr/sbin/ifup",
    "usr/sbin/wpa_supplicant",
    "usr/sbin/connmand",
];

/// Paths the template must hold: a root that boots by itself (systemd, its
/// own kernel and modules) and the service roles' tools.
pub const TEMPLATE_REQUIRED: &[&str] = &[
    "usr/sbin/init",
    "usr/lib/systemd/systemd",
    "boot/vmlinuz-*-amd64",
    "usr/lib/modules/*/modules.dep",
    "usr/lib/modules/*/kernel/drivers/block/xen-blkfront.ko",
    "usr/lib/modules/*/kernel/drivers/net/xen-netfront.ko",
    "usr/sbin/NetworkManager",
    "usr/sbin/nft",
    "usr/bin/ip",
    "usr/bin/ping",
    "usr/sbin/mkfs.ext4",
    "usr/sbin/mkswap",
    "usr/bin/getent",
    "etc/fstab",
    QUBE_HOME_UNIT,
    QUBE_HOME_SCRIPT,
    HVC0_DROPIN,
    // the network backend: netback, xl devd and what its scripts use
    "usr/lib/modules/*/kernel/drivers/net/xen-netback/xen-netback.ko",
    "usr/sbin/xl",
    "usr/bin/xenstore-write",
    "usr/bin/xenstore-read",
    "usr/lib/x86_64-linux-gnu/libnss_myhostname.so.2",
    NETBACK_UNIT,
    VIF_SCRIPT,
    // the qube's own network (qube-net) and what it uses
    QUBE_NET_SCRIPT,
    QUBE_NET_UNIT,
    "usr/bin/udevadm",
    "usr/sbin/modprobe",
];

/// Whether `path` matches `pattern`, where `*` stands for any run of
/// characters other than `/`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), path.as_bytes());
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| go(&p[1..], &s[i..])),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(p, s)
}

/// Checks a tree's listing (paths relative to its root): every `required`
/// pattern matches something and no `forbidden` one does. The error names
/// each miss.
pub fn check_listing(
    listing: &[String],
    required: &[&str],
    forbidden: &[&str],
) -> Result<(), String> {
    let mut problems = Vec::new();
    for r in required {
        if !listing.iter().any(|p| path_matches(r, p)) {
            problems.push(format!("missing {r}"));
        }
    }
    for f in forbidden {
        if let Some(p) = listing.iter().find(|p| path_matches(f, p)) {
            problems.push(format!("must not hold {p}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_within_one_component() {
        assert!(path_matches("boot/xen-*.gz", "boot/xen-4.17-amd64.gz"));
        assert!(!path_matches("boot/xen-*.gz", "boot/xen-4.17/x.gz"));
        assert!(path_matches(
            "usr/lib/modules/*/modules.dep",
            "usr/lib/modules/6.1.0-9-amd64/modules.dep"
        ));
        assert!(path_matches("a", "a") && !path_matches("a", "ab") && !path_matches("ab", "a"));
        assert!(path_matches("*", "") && path_matches("x*", "x"));
    }

    #[test]
    fn listing_check_names_what_is_missing_and_what_is_forbidden() {
        let l: Vec<String> = ["usr/sbin/xl", "usr/sbin/NetworkManager"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(check_listing(&l, &["usr/sbin/xl"], &[]).is_ok());
        let e =
            check_listing(&l, &["usr/sbin/xl", "boot/xen-*.gz"], PAYLOAD_FORBIDDEN).unwrap_err();
        assert!(e.contains("missing boot/xen-*.gz"), "{e}");
        assert!(e.contains("must not hold usr/sbin/NetworkManager"), "{e}");
    }

    #[test]
    fn payload_enables_firstboot_and_masks_the_network() {
        let files = payload_files(b"\x7fELF".to_vec(), b"\x7fELF qube".to_vec());
        let has = |p: &str| {
            files.iter().any(|e| match e {
                Extra::File { path, .. } | Extra::Symlink { path, .. } => path == p,
            })
        };
        assert!(has(FIRSTBOOT_BIN) && has(FIRSTBOOT_UNIT));
        assert!(has(
            "etc/systemd/system/multi-user.target.wants/bulkhead-firstboot.service"
        ));
        assert!(UNIT_TEXT.contains("ExecStart=/usr/bin/firstboot"));
        let file = |p: &str| {
            files.iter().find_map(|e| match e {
                Extra::File { path, data, mode } if path == p => Some((data.clone(), *mode)),
                _ => None,
            })
        };
        // qube, its unit (enabled per qube by firstboot, not here) and sudoers.
        assert_eq!(file(QUBE_BIN), Some((b"\x7fELF qube".to_vec(), 0o755)));
        let (unit, mode) = file(QUBE_UNIT).unwrap();
        assert_eq!(mode, 0o644);
        assert!(String::from_utf8_lossy(&unit).contains("ExecStart=/usr/bin/qube run %i\n"));
        assert!(!has(
            "etc/systemd/system/multi-user.target.wants/bulkhead-qube@.service"
        ));
        let (rule, mode) = file(QUBE_SUDOERS).unwrap();
        assert_eq!(mode, 0o440);
        assert!(
            String::from_utf8_lossy(&rule)
                .contains("\n%qubes ALL=(root) NOPASSWD: /usr/bin/qube\n")
        );
        // The installed paths are the ones the unit and the rule name.
        assert!(String::from_utf8_lossy(&unit).contains(&format!("/{QUBE_BIN} ")));
        assert!(String::from_utf8_lossy(&rule).contains(&format!("/{QUBE_BIN}\n")));
        for p in [QUBE_BIN, QUBE_UNIT, QUBE_SUDOERS] {
            assert!(PAYLOAD_REQUIRED.contains(&p), "{p} not required");
        }
        for u in NETWORK_UNITS
            .iter()
            .chain(XEN_DOMAIN_UNITS)
            .chain(DOM0_MASKED_TIMERS)
        {
            assert!(files.contains(&Extra::symlink(
                &format!("etc/systemd/system/{u}"),
                "/dev/null"
            )));
        }
        let grub = files
            .iter()
            .find_map(|e| match e {
                Extra::File { path, data, .. } if path.ends_with("bulkhead.cfg") => {
                    Some(String::from_utf8_lossy(data).into_owned())
                }
                _ => None,
            })
            .unwrap();
        assert!(grub.contains(&format!("GRUB_CMDLINE_XEN_DEFAULT=\"{XEN_CMDLINE}\"")));
        // The qubes' disk hotplug script, executable, where xl looks for it.
        let (script, mode) = file(QUBE_BLOCK_SCRIPT).unwrap();
        assert_eq!(mode, 0o755);
        assert!(script.starts_with(b"#!/bin/sh\n"));
        assert!(PAYLOAD_REQUIRED.contains(&QUBE_BLOCK_SCRIPT));
    }

    #[test]
    fn the_template_carries_an_enabled_network_backend() {
        let files = template_files();
        let file = |p: &str| {
            files.iter().find_map(|e| match e {
                Extra::File { path, data, mode } if path == p => {
                    Some((String::from_utf8_lossy(data).into_owned(), *mode))
                }
                _ => None,
            })
        };
        let (unit, _) = file(NETBACK_UNIT).unwrap();
        assert!(unit.contains("ExecStart=/usr/sbin/xl devd -F\n"));
        // what dom0's `qube run` waits for
        assert!(unit.contains(&format!(
            "ExecStartPost=/usr/bin/xenstore-write {} ready\n",
            names::NETBACK_READY_KEY
        )));
        assert!(files.contains(&Extra::symlink(
            "etc/systemd/system/multi-user.target.wants/bulkhead-netback.service",
            &format!("/{NETBACK_UNIT}"),
        )));
        let (vif, mode) = file(VIF_SCRIPT).unwrap();
        assert_eq!(mode, 0o755);
        assert!(vif.contains("hotplug-status\" connected"));
        let (nm, _) = file("etc/NetworkManager/conf.d/30-bulkhead-vif.conf").unwrap();
        assert!(nm.contains("unmanaged-devices=interface-name:vif*"));
        for p in [NETBACK_UNIT, VIF_SCRIPT, QUBE_NET_SCRIPT, QUBE_NET_UNIT] {
            assert!(TEMPLATE_REQUIRED.contains(&p), "{p} not required");
        }
        for u in TEMPLATE_MASKED_UNITS {
            assert!(files.contains(&Extra::symlink(
                &format!("etc/systemd/system/{u}"),
                "/dev/null"
            )));
        }
        // Only a netvm serves clients, and only once it forwards.
        assert!(unit.contains("ConditionKernelCommandLine=bulkhead.netvm=1\n"));
        assert!(unit.contains("After=") && unit.contains(" bulkhead-qube-net.service\n"));
        // The qube's own network, enabled, from the words `qube run` writes.
        let (net, _) = file(QUBE_NET_UNIT).unwrap();
        assert!(net.contains("ExecStart=/usr/lib/bulkhead/qube-net up\n"));
        assert!(net.contains(&format!("ExecStart=/{QUBE_NET_SCRIPT} up\n")));
        assert!(net.contains("Before=") && net.contains(" bulkhead-netback.service\n"));
        for (link, target) in [
            ("bulkhead-qube-net.service", QUBE_NET_UNIT),
            ("bulkhead-qube-dns.path", QUBE_DNS_PATH),
        ] {
            assert!(files.contains(&Extra::symlink(
                &format!("etc/systemd/system/multi-user.target.wants/{link}"),
                &format!("/{target}"),
            )));
        }
        let (script, mode) = file(QUBE_NET_SCRIPT).unwrap();
        assert_eq!(mode, 0o755);
        for w in ["ip", "gateway", "dns", "netvm"] {
            assert!(script.contains(&format!("$(word {w}")), "{w}");
        }
        let (nm, _) = file(NM_DROPIN).unwrap();
        assert!(nm.contains("ConditionKernelCommandLine=!bulkhead.gateway\n"));
    }
}
