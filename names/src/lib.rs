//! The names of the installed system that more than one crate must agree
//! on: the volume group and its volumes, the device-mapper naming rules,
//! where firstboot and Qubes' state live, and Xen's command line.
//!
//! One home so that renaming the volume group, or moving a path, is one
//! edit; it has no dependencies so every crate (and the installer, which
//! must not link the ISO builder) can reach it. Paths are relative to the
//! installed root (no leading `/`) unless their name says `ABS`.

/// The LVM volume group on the LUKS2 device (Qubes' name).
pub const VG: &str = "qubes_dom0";
/// dom0's thin pool and the volumes in it.
pub const ROOT_POOL: &str = "root-pool";
pub const ROOT_LV: &str = "root";
pub const SWAP_LV: &str = "swap";
/// The thin pool firstboot creates for the qubes' volumes.
pub const VM_POOL: &str = "vm-pool";

/// The dm-crypt mapping of the LUKS2 device while open (`luks-UUID`, as
/// Anaconda names it).
pub fn luks_mapper(uuid: &impl std::fmt::Display) -> String {
    format!("luks-{uuid}")
}

/// `/dev/mapper/VG-LV`, with each `-` inside a name doubled as
/// device-mapper does.
pub fn lv_mapper_path(vg: &str, lv: &str) -> String {
    format!(
        "/dev/mapper/{}-{}",
        vg.replace('-', "--"),
        lv.replace('-', "--")
    )
}

/// The device-mapper name prefix of every volume in `vg` (`VG-`).
pub fn vg_mapper_prefix(vg: &str) -> String {
    format!("{}-", vg.replace('-', "--"))
}

/// The installer's answers for first boot.
pub const FIRSTBOOT_SETTINGS: &str = "etc/bulkhead/firstboot.toml";
/// firstboot's binary and unit in the payload.
pub const FIRSTBOOT_BIN: &str = "usr/bin/firstboot";
pub const FIRSTBOOT_UNIT: &str = "usr/lib/systemd/system/bulkhead-firstboot.service";
/// The `qube` command, the template unit that runs one qube (instance = the
/// qube's name) and the sudoers rule letting the dom0 user (group qubes)
/// run `qube` as root without a password.
pub const QUBE_BIN: &str = "usr/bin/qube";
pub const QUBE_UNIT: &str = "usr/lib/systemd/system/bulkhead-qube@.service";
pub const QUBE_SUDOERS: &str = "etc/sudoers.d/bulkhead-qube";

/// The hotplug script of the qubes' disks in dom0, which each disk of an
/// xl config names (`script=NAME`, looked up in /etc/xen/scripts).
pub const QUBE_BLOCK_SCRIPT: &str = "etc/xen/scripts/block-bulkhead";
pub const QUBE_BLOCK_SCRIPT_NAME: &str = "block-bulkhead";
/// The hotplug script of a client's vif in the qube serving its network
/// (in the template), which each vif of an xl config names.
pub const VIF_SCRIPT: &str = "etc/xen/scripts/vif-route-qubes";
pub const VIF_SCRIPT_NAME: &str = "vif-route-qubes";
/// The xenstore key, in a qube's own directory, that its network backend
/// (`xl devd`) writes once it serves clients.
pub const NETBACK_READY_KEY: &str = "data/bulkhead-netback";

/// The template qube the installer makes.
pub const TEMPLATE_NAME: &str = "debian-12";

/// Qubes' state: the file pool, qubes.xml and the VM kernels, one
/// directory per kernel release.
pub const QUBES_DIR_ABS: &str = "/var/lib/qubes";
pub const QUBES_XML: &str = "var/lib/qubes/qubes.xml";
pub const VM_KERNELS: &str = "var/lib/qubes/vm-kernels";
pub const VM_KERNELS_ABS: &str = "/var/lib/qubes/vm-kernels";

/// Qubes' Xen command line (qubes-anaconda, shared/architecture.md), for
/// the installed system's GRUB.
pub const XEN_CMDLINE: &str = "console=none dom0_mem=min:1024M dom0_mem=max:4096M ucode=scan smt=off gnttab_max_frames=2048 gnttab_max_maptrack_frames=4096";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hotplug_scripts_are_found_by_their_names() {
        assert_eq!(
            QUBE_BLOCK_SCRIPT.rsplit_once('/'),
            Some(("etc/xen/scripts", QUBE_BLOCK_SCRIPT_NAME))
        );
        assert_eq!(
            VIF_SCRIPT.rsplit_once('/'),
            Some(("etc/xen/scripts", VIF_SCRIPT_NAME))
        );
    }

    #[test]
    fn mapper_paths_double_dashes() {
        assert_eq!(lv_mapper_path(VG, ROOT_LV), "/dev/mapper/qubes_dom0-root");
        assert_eq!(
            lv_mapper_path("my-vg", "vm-pool"),
            "/dev/mapper/my--vg-vm--pool"
        );
        assert_eq!(vg_mapper_prefix("a-b"), "a--b-");
        assert_eq!(luks_mapper(&"u"), "luks-u");
    }

    #[test]
    fn absolute_and_relative_forms_agree() {
        assert_eq!(format!("/{VM_KERNELS}"), VM_KERNELS_ABS);
        assert!(QUBES_XML.starts_with(&QUBES_DIR_ABS[1..]));
        assert!(VM_KERNELS.starts_with(&QUBES_DIR_ABS[1..]));
    }
}
