//! What a qube is, as qubes-core-admin sees it: class, label, template, netvm,
//! properties, features, PCI devices, and the volume configuration that
//! `qubes/vm/{templatevm,appvm,dispvm}.py` give each class.
//!
//! Volume naming follows `qubes/storage/lvm.py`: the volume's vid is
//! `VG/vm-NAME-VOLUME`; a running qube uses `VID-snap` for root and private
//! (a thin snapshot of the template's root for `snap_on_start` volumes, of the
//! committed volume for `save_on_stop` ones) and a fresh `VID` for volatile.
//! Like core-admin, creating a qube creates only its `save_on_stop` volumes
//! (a template's root and private, an AppVM's private); the snapshots and the
//! volatile volume are made when a qube starts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Qubes' default private volume size (qubes/config.py).
pub const PRIVATE_IMG_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// Qubes' default root (and volatile) volume size.
pub const ROOT_IMG_SIZE: u64 = 10 * 1024 * 1024 * 1024;
/// Default memory of a qube without PCI devices (MiB).
pub const DEFAULT_MEMORY: u32 = 400;
/// Default virtual CPUs.
pub const DEFAULT_VCPUS: u32 = 2;

/// Qubes' eight built-in labels (qubes/app.py `load_initial_values`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Red = 1,
    Orange = 2,
    Yellow = 3,
    Green = 4,
    Gray = 5,
    Blue = 6,
    Purple = 7,
    Black = 8,
}

impl Label {
    pub const ALL: [Label; 8] = [
        Label::Red,
        Label::Orange,
        Label::Yellow,
        Label::Green,
        Label::Gray,
        Label::Blue,
        Label::Purple,
        Label::Black,
    ];

    pub fn index(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Label::Red => "red",
            Label::Orange => "orange",
            Label::Yellow => "yellow",
            Label::Green => "green",
            Label::Gray => "gray",
            Label::Blue => "blue",
            Label::Purple => "purple",
            Label::Black => "black",
        }
    }

    pub fn color(self) -> &'static str {
        match self {
            Label::Red => "0xcc0000",
            Label::Orange => "0xf57900",
            Label::Yellow => "0xedd400",
            Label::Green => "0x73d216",
            Label::Gray => "0x555555",
            Label::Blue => "0x3465a4",
            Label::Purple => "0x75507b",
            Label::Black => "0x000000",
        }
    }

    pub fn from_name(name: &str) -> Option<Label> {
        Label::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// The qube classes first boot creates (qubes.vm entry points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Class {
    AdminVM,
    TemplateVM,
    AppVM,
    DispVM,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::AdminVM => "AdminVM",
            Class::TemplateVM => "TemplateVM",
            Class::AppVM => "AppVM",
            Class::DispVM => "DispVM",
        }
    }
}

/// Xen virtualisation mode (`virt_mode` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtMode {
    Hvm,
    Pvh,
}

impl VirtMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VirtMode::Hvm => "hvm",
            VirtMode::Pvh => "pvh",
        }
    }
}

/// A qube's `netvm` property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetVm {
    /// Not set: follows the global `default_netvm` (the template's, for a DispVM).
    Default,
    /// Explicitly no network (saved as an empty property).
    None,
    /// Explicitly this qube.
    Qube(String),
}

/// Everything needed to create one qube.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QubeSpec {
    pub name: String,
    pub class: Class,
    pub label: Label,
    /// TemplateVM for an AppVM, the disposable template for a DispVM.
    pub template: Option<String>,
    pub netvm: NetVm,
    /// Set explicitly only where Qubes' salt states set it.
    pub virt_mode: Option<VirtMode>,
    pub memory: Option<u32>,
    pub provides_network: bool,
    pub autostart: bool,
    pub template_for_dispvms: bool,
    /// Features, `service.*` included (`"1"` enabled, `""` disabled).
    pub features: BTreeMap<String, String>,
    /// PCI devices (`BB:DD.F`) assigned to the qube.
    pub pci: Vec<String>,
    /// PCI devices need `no-strict-reset` (USB controllers, as sys-usb.sls sets).
    pub pci_no_strict_reset: bool,
    /// Root image size (templates only).
    pub root_size: u64,
    /// Holds the USB controllers: gets the input-proxy policy sys-usb.sls writes.
    #[serde(default)]
    pub usb_qube: bool,
}

impl QubeSpec {
    pub fn new(name: &str, class: Class, label: Label) -> Self {
        QubeSpec {
            name: name.into(),
            class,
            label,
            template: None,
            netvm: NetVm::Default,
            virt_mode: None,
            memory: None,
            provides_network: false,
            autostart: false,
            template_for_dispvms: false,
            features: BTreeMap::new(),
            pci: Vec::new(),
            pci_no_strict_reset: false,
            root_size: ROOT_IMG_SIZE,
            usb_qube: false,
        }
    }

    pub fn feature(mut self, name: &str, on: bool) -> Self {
        self.features
            .insert(name.into(), if on { "1" } else { "" }.into());
        self
    }
}

/// One entry of a qube's `<volume-config>`, in core-admin's attribute order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeConfig {
    pub name: &'static str,
    pub pool: String,
    pub vid: String,
    pub revisions_to_keep: u32,
    pub rw: bool,
    pub save_on_stop: bool,
    pub snap_on_start: bool,
    pub size: Option<u64>,
    pub source: Option<String>,
}

impl VolumeConfig {
    /// The attributes as qubes.xml writes them (`_sanitize_config`).
    pub fn attrs(&self) -> Vec<(String, String)> {
        let b = |v: bool| if v { "True" } else { "False" }.to_string();
        let mut a = vec![
            ("name".into(), self.name.to_string()),
            ("pool".into(), self.pool.clone()),
            ("vid".into(), self.vid.clone()),
            (
                "revisions_to_keep".into(),
                self.revisions_to_keep.to_string(),
            ),
            ("rw".into(), b(self.rw)),
            ("save_on_stop".into(), b(self.save_on_stop)),
            ("snap_on_start".into(), b(self.snap_on_start)),
        ];
        if let Some(s) = self.size {
            a.push(("size".into(), s.to_string()));
        }
        if let Some(s) = &self.source {
            a.push(("source".into(), s.clone()));
        }
        a
    }

    /// Whether the volume lives in the LVM thin pool (the kernel one does not).
    pub fn is_lvm(&self) -> bool {
        self.name != "kernel"
    }

    /// The LV a running qube uses for this volume (lvm.py's `-snap` rule).
    pub fn running_vid(&self) -> String {
        if self.snap_on_start || self.save_on_stop {
            format!("{}-snap", self.vid)
        } else {
            self.vid.clone()
        }
    }
}

/// The volume of `name` in the pool: `VG/vm-NAME-VOLUME`.
pub fn vid(vg: &str, qube: &str, volume: &str) -> String {
    format!("{vg}/vm-{qube}-{volume}")
}

/// The storage context a volume config needs.
pub struct StorageCtx<'a> {
    pub pool: &'a str,
    pub vg: &'a str,
    pub revisions_to_keep: u32,
    pub kernel: Option<&'a str>,
}

/// The volume configuration core-admin gives a new qube of this class.
/// `template_root`/`template_private` are the vids of the template's volumes.
pub fn volume_config(
    spec: &QubeSpec,
    ctx: &StorageCtx<'_>,
    template_root: Option<&str>,
    template_private: Option<&str>,
) -> Vec<VolumeConfig> {
    let v = |name: &'static str, rw, save, snap, size, source: Option<&str>| VolumeConfig {
        name,
        pool: ctx.pool.into(),
        vid: vid(ctx.vg, &spec.name, name),
        revisions_to_keep: ctx.revisions_to_keep,
        rw,
        save_on_stop: save,
        snap_on_start: snap,
        size,
        source: source.map(str::to_string),
    };
    let mut out = match spec.class {
        Class::AdminVM => return Vec::new(),
        Class::TemplateVM => vec![
            v("root", true, true, false, Some(spec.root_size), None),
            v("private", true, true, false, Some(PRIVATE_IMG_SIZE), None),
            v("volatile", true, false, false, Some(ROOT_IMG_SIZE), None),
        ],
        Class::AppVM => vec![
            v("root", true, false, true, None, template_root),
            v("private", true, true, false, Some(PRIVATE_IMG_SIZE), None),
            v("volatile", true, false, false, Some(ROOT_IMG_SIZE), None),
        ],
        Class::DispVM => vec![
            v("root", true, false, true, None, template_root),
            v("private", true, false, true, None, template_private),
            v(
                "volatile",
                true,
                false,
                false,
                Some(ROOT_IMG_SIZE + PRIVATE_IMG_SIZE),
                None,
            ),
        ],
    };
    if let Some(k) = ctx.kernel {
        out.push(VolumeConfig {
            name: "kernel",
            pool: "linux-kernel".into(),
            vid: k.into(),
            revisions_to_keep: 0,
            rw: false,
            save_on_stop: false,
            snap_on_start: false,
            size: None,
            source: None,
        });
    }
    out
}

/// Qubes' name rule (qubes/utils.py `validate_name`): a letter first, then
/// letters, digits, `_.-`, at most 31 characters, not a reserved word.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let first_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if name.is_empty() || name.len() > 31 || !ok_chars || !first_letter {
        return Err(format!(
            "{name:?} is not a valid qube name (a letter, then letters, digits, '_', '.', '-'; at most 31 characters)"
        ));
    }
    if matches!(name, "none" | "default") || name.ends_with("-dm") {
        return Err(format!("{name:?} is a reserved name"));
    }
    Ok(())
}

/// Deterministic UUID for a qube: first boot must write the same qubes.xml
/// whether or not it was interrupted, so the UUID cannot be random. It is a
/// version-8 (custom) UUID from SHA-256 of a fixed prefix and the name.
pub fn qube_uuid(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("bulkhead-firstboot-qube:{name}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_qubes_rules() {
        assert!(check_name("sys-net").is_ok());
        assert!(check_name("fedora-41-xfce").is_ok());
        for bad in ["", "1abc", "a b", "none", "x-dm", &"a".repeat(32)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let u = qube_uuid("work");
        assert_eq!(u, qube_uuid("work"));
        assert_ne!(u, qube_uuid("vault"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "8");
    }

    #[test]
    fn appvm_volumes_follow_core_admin() {
        let ctx = StorageCtx {
            pool: names::VM_POOL,
            vg: names::VG,
            revisions_to_keep: 2,
            kernel: Some("6.6.1"),
        };
        let spec = QubeSpec::new("work", Class::AppVM, Label::Blue);
        let v = volume_config(&spec, &ctx, Some("qubes_dom0/vm-t-root"), None);
        assert_eq!(v[0].vid, "qubes_dom0/vm-work-root");
        assert!(v[0].snap_on_start && !v[0].save_on_stop);
        assert_eq!(v[0].source.as_deref(), Some("qubes_dom0/vm-t-root"));
        assert_eq!(v[0].running_vid(), "qubes_dom0/vm-work-root-snap");
        assert_eq!(v[1].size, Some(PRIVATE_IMG_SIZE));
        assert_eq!(v[2].running_vid(), "qubes_dom0/vm-work-volatile");
        assert_eq!(v[3].pool, "linux-kernel");
    }
}
