//! The installer's answers for first boot: `/etc/bulkhead/firstboot.toml`.
//!
//! These serde structs with their doc comments are the single description of
//! the file (the README's reference is derived from them). A missing file, or
//! a missing key, means Qubes 4.2's initial-setup defaults: system qubes,
//! disposable sys-firewall and sys-usb, the default AppVMs, a `vm-pool` thin
//! pool from 90% of the free space of `qubes_dom0`. The options mirror the
//! check boxes of qubes-anaconda-addon's initial-setup spoke.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use confdoc::{Problem, problem};

use crate::Error;

/// Where the installer writes the settings on the installed system.
pub use names::FIRSTBOOT_SETTINGS as SETTINGS_PATH;

/// Everything first boot may be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Do nothing at all (Qubes' "Do not configure anything"): only the empty
    /// qubes.xml with dom0 is written.
    pub skip_everything: bool,
    /// Create sys-net, sys-firewall and default-dvm.
    pub system_qubes: bool,
    /// Create the default AppVMs work, personal, untrusted and vault.
    pub default_appvms: bool,
    /// Which qube receives the USB controllers.
    pub usb_qube: UsbQube,
    /// sys-firewall and sys-usb are disposables of default-dvm (Qubes 4.2 default).
    pub disposable_sys_firewall_and_usb: bool,
    /// sys-net is a disposable of default-dvm too (off by default).
    pub disposable_sys_net: bool,
    /// The system was installed onto a USB drive: `usb_qube = "auto"` then
    /// means no USB qube (the USB controllers must stay with dom0).
    pub installed_on_usb: bool,
    /// All keyboards are USB keyboards. Unset: detected from sysfs at first
    /// boot. When true, sys-usb is skipped with a warning (it would take the
    /// only keyboard away from dom0).
    pub usb_keyboard_only: Option<bool>,
    /// Templates to register, in order; the first is the default template
    /// unless `default_template` names another.
    pub templates: Vec<TemplateSettings>,
    /// The global default template.
    pub default_template: Option<String>,
    /// The thin pool holding the qubes' volumes.
    pub pool: PoolSettings,
    /// PCI network controllers for sys-net (`BB:DD.F`). Unset: every PCI
    /// device of class 0x02 found in sysfs.
    pub net_pci: Option<Vec<String>>,
    /// PCI USB controllers for the USB qube. Unset: class 0x0c03 in sysfs.
    pub usb_pci: Option<Vec<String>>,
    /// How long one step may take before first boot gives up on it.
    pub limits: LimitSettings,
    /// Words added to every qube's kernel command line, after Qubes' own
    /// (as Qubes' `kernelopts`), e.g. `quiet` or `systemd.log_level=debug`.
    pub qube_kernel_args: String,
}

/// Time limits: a step that does not finish in time stops first boot, so a
/// hung step (a tool waiting on Xen, a stuck device) never keeps the
/// machine from reaching its login prompts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Seconds a template step (copying its root image) may take.
    pub template_secs: u64,
    /// Seconds every other step may take.
    pub step_secs: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            template_secs: 3600,
            step_secs: 600,
        }
    }
}

/// Which qube holds the USB controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UsbQube {
    /// sys-usb, unless the system was installed onto USB.
    Auto,
    /// Always a separate sys-usb.
    SysUsb,
    /// sys-net receives the USB controllers too; no sys-usb.
    SysNet,
    /// No USB qube: dom0 keeps the controllers.
    None,
}

/// One template to register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    /// Qube name, e.g. `debian-12-xfce`.
    pub name: String,
    /// Raw root image copied into the template's root volume. Unset or
    /// missing: the root volume is created empty and a warning says so.
    #[serde(default)]
    pub image: Option<PathBuf>,
    /// Root volume size in bytes (default: Qubes' root_img_size, 10 GiB, or
    /// the image's size when larger).
    #[serde(default)]
    pub root_size: Option<u64>,
    /// The installer already wrote the root volume (`VG/vm-NAME-root` in the
    /// pool, see `pool`): firstboot adopts it, and stops with an error if it
    /// is missing instead of making an empty one. `image` is then unused.
    #[serde(default)]
    pub installed: bool,
}

/// The LVM thin pool for the qubes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Qubes storage pool name (also the thin pool's LV name).
    pub name: String,
    /// Volume group made by the installer.
    pub volume_group: String,
    /// Percentage of the VG's free space given to the pool (`-l N%FREE`).
    pub percent_free: u8,
    /// Old revisions kept per volume.
    pub revisions_to_keep: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            name: names::VM_POOL.into(),
            volume_group: names::VG.into(),
            percent_free: 90,
            revisions_to_keep: 2,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            skip_everything: false,
            system_qubes: true,
            default_appvms: true,
            usb_qube: UsbQube::Auto,
            disposable_sys_firewall_and_usb: true,
            disposable_sys_net: false,
            installed_on_usb: false,
            usb_keyboard_only: None,
            templates: vec![
                TemplateSettings {
                    name: "fedora-41-xfce".into(),
                    image: Some("/usr/share/bulkhead/templates/fedora-41-xfce.img".into()),
                    root_size: None,
                    installed: false,
                },
                TemplateSettings {
                    name: "debian-12-xfce".into(),
                    image: Some("/usr/share/bulkhead/templates/debian-12-xfce.img".into()),
                    root_size: None,
                    installed: false,
                },
            ],
            default_template: None,
            pool: PoolSettings::default(),
            net_pci: None,
            usb_pci: None,
            limits: LimitSettings::default(),
            qube_kernel_args: String::new(),
        }
    }
}

impl Settings {
    /// Parses settings text; unknown keys are refused so typos are not
    /// ignored, and a broken rule names its key and line.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, Error> {
        confdoc::parse(text, &origin.display().to_string()).map_err(Error::Settings)
    }

    /// Reads `ROOT/etc/bulkhead/firstboot.toml`; a missing file gives the defaults.
    pub fn load(root: &Path) -> Result<Self, Error> {
        let path = root.join(SETTINGS_PATH);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// The template that becomes `default_template`.
    pub fn default_template_name(&self) -> Option<&str> {
        self.default_template
            .as_deref()
            .or_else(|| self.templates.first().map(|t| t.name.as_str()))
    }

    /// Every problem, in file order (empty: valid).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if !(1..=100).contains(&self.pool.percent_free) {
            out.push(problem(
                "pool.percent_free",
                format!(
                    "is {}; give a percentage from 1 to 100",
                    self.pool.percent_free
                ),
            ));
        }
        for (key, name) in [
            ("pool.name", &self.pool.name),
            ("pool.volume_group", &self.pool.volume_group),
        ] {
            if let Err(m) = check_lvm_name(name) {
                out.push(problem(key, m));
            }
        }
        for (i, t) in self.templates.iter().enumerate() {
            if let Err(m) = crate::model::check_name(&t.name) {
                out.push(problem(format!("templates[{i}].name"), m));
            }
        }
        if let Some(d) = &self.default_template
            && !self.templates.iter().any(|t| &t.name == d)
        {
            out.push(problem(
                "default_template",
                format!("{d:?} is not among the templates listed"),
            ));
        }
        if !self.skip_everything
            && (self.system_qubes || self.default_appvms)
            && self.templates.is_empty()
        {
            out.push(problem(
                "templates",
                "qubes are to be created but no template is listed; add a [[templates]] entry",
            ));
        }
        if let Some(c) = self
            .qube_kernel_args
            .chars()
            .find(|c| c.is_control() || !c.is_ascii() || "\"'\\".contains(*c))
        {
            out.push(problem(
                "qube_kernel_args",
                format!("{c:?} cannot be on a qube's kernel command line; give plain words"),
            ));
        }
        for (key, secs) in [
            ("limits.template_secs", self.limits.template_secs),
            ("limits.step_secs", self.limits.step_secs),
        ] {
            if secs == 0 {
                out.push(problem(key, "give a time limit of at least 1 second"));
            }
        }
        for (key, list) in [("net_pci", &self.net_pci), ("usb_pci", &self.usb_pci)] {
            for (i, bdf) in list.iter().flatten().enumerate() {
                if let Err(m) = crate::facts::check_bdf(bdf) {
                    out.push(problem(format!("{key}[{i}]"), m));
                }
            }
        }
        out
    }
}

/// An LVM volume group or volume name (lvm(8) "VALID NAMES"): it reaches
/// lvm's command line, so it may never look like an option.
fn check_lvm_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an LVM name: use letters, digits and + _ . -, not starting with -"
        ))
    }
}

impl confdoc::Config for Settings {
    fn problems(&self) -> Vec<Problem> {
        Settings::problems(self)
    }
}

/// The settings reference (Markdown), generated from the doc comments above
/// through their JSON schema, with each key's default.
pub fn reference_markdown() -> String {
    confdoc::reference_table::<Settings>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_qubes_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::load(dir.path()).unwrap();
        assert_eq!(s, Settings::default());
        assert!(s.system_qubes && s.default_appvms && s.disposable_sys_firewall_and_usb);
        assert!(!s.disposable_sys_net);
        assert_eq!(s.pool.percent_free, 90);
        assert_eq!(s.default_template_name(), Some("fedora-41-xfce"));
    }

    #[test]
    fn options_parse_and_unknown_keys_are_refused() {
        let p = Path::new("x.toml");
        let s = Settings::from_toml(
            "usb_qube = \"sys-net\"\ndisposable_sys_net = true\ndefault_appvms = false\n",
            p,
        )
        .unwrap();
        assert_eq!(s.usb_qube, UsbQube::SysNet);
        assert!(s.disposable_sys_net && !s.default_appvms);
        let e = Settings::from_toml("sys_usb = false\n", p).unwrap_err();
        assert!(e.to_string().contains("sys_usb"), "{e}");
        let e = Settings::from_toml("[pool]\npercent_free = 0\n", p).unwrap_err();
        assert!(e.to_string().contains("percent_free"), "{e}");
        let e = Settings::from_toml("default_template = \"nope\"\n", p).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn pool_and_volume_group_names_cannot_be_options() {
        for bad in ["--help", "-x", "a b", "", "..", "vg/lv"] {
            let text = format!("[pool]\nvolume_group = {bad:?}\n");
            let e = Settings::from_toml(&text, Path::new("f.toml")).unwrap_err();
            assert!(e.to_string().contains("pool.volume_group"), "{bad}: {e}");
        }
        let e = Settings::from_toml("[pool]\nname = \"-rf\"\n", Path::new("f.toml")).unwrap_err();
        assert!(e.to_string().contains("pool.name"), "{e}");
        assert!(
            Settings::from_toml(
                "[pool]\nvolume_group = \"qubes_dom0\"\nname = \"vm-pool\"\n",
                Path::new("f.toml")
            )
            .is_ok()
        );
    }

    #[test]
    fn a_broken_rule_names_its_key_and_line() {
        let text = "system_qubes = true\n\n[[templates]]\nname = \"ok\"\n\n[[templates]]\nname = \"bad name\"\n";
        let e = Settings::from_toml(text, Path::new("/etc/bulkhead/firstboot.toml")).unwrap_err();
        let Error::Settings(confdoc::ConfigError::Invalid { line, field, .. }) = &e else {
            panic!("not a rule error: {e}");
        };
        assert_eq!((field.as_str(), *line), ("templates[1].name", 7), "{e}");
        assert!(
            e.to_string()
                .starts_with("settings /etc/bulkhead/firstboot.toml:7: `templates[1].name`: "),
            "{e}"
        );
    }

    #[test]
    fn reference_lists_every_key_with_its_doc() {
        let r = reference_markdown();
        for key in [
            "`skip_everything`",
            "`usb_qube`",
            "`pool.percent_free`",
            "`templates[].image`",
            "`net_pci`",
        ] {
            let line = r
                .lines()
                .find(|l| l.contains(key))
                .unwrap_or_else(|| panic!("{key} missing:\n{r}"));
            let doc = line.rsplit('|').nth(1).unwrap_or("").trim();
            assert!(doc.len() > 10, "{key} has no description: {line}");
        }
        assert!(
            r.contains("| `pool.percent_free` | integer | `90` |"),
            "{r}"
        );
        assert!(r.contains("`sys-net`"), "{r}");
    }

    #[test]
    fn defaults_roundtrip_through_toml() {
        let text = toml::to_string(&Settings::default()).unwrap();
        assert_eq!(
            Settings::from_toml(&text, Path::new("t")).unwrap(),
            Settings::default()
        );
    }
}
