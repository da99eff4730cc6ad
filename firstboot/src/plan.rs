//! The ordered list of first-boot steps, computed from the settings and the
//! machine's facts before anything is written (printable with `firstboot plan`).
//!
//! Order and content follow Qubes 4.2's initial setup (qubes-anaconda-addon
//! `service/tasks.py`): default kernel, `vm-pool` (`lvcreate -l 90%FREE
//! --thinpool vm-pool qubes_dom0`, registered as `lvm_thin` with
//! revisions_to_keep=2 and made `default_pool`), templates, default template,
//! the qubes of the salt states `qvm.sys-net`, `qvm.default-dispvm`,
//! `qvm.sys-firewall`, `qvm.sys-usb`, `qvm.personal`, `qvm.work`,
//! `qvm.untrusted`, `qvm.vault`, then `default_dispvm`, the network globals
//! (`default_netvm`, `updatevm` = sys-firewall, `clockvm` = sys-net), and
//! starting sys-firewall and sys-usb.
//!
//! Where this differs from /work/shared/architecture.md's table, Qubes'
//! sources win: sys-usb has 300 MiB (`mem: 300` in qvm/sys-usb.sls, not 400);
//! default-dvm is made before a disposable sys-firewall (salt's `include`
//! resolves `qvm.default-dispvm` first), so the order is sys-net,
//! default-dvm, sys-firewall, sys-usb, then the AppVMs; the services and
//! features the salt states set (servicevm, clocksync, minimal-netvm,
//! minimal-usbvm, disabled meminfo-writer, ...) are set too, and so is the
//! USB input policy sys-usb.sls writes; templates get the black label as
//! `qvm-template` gives them.
//!
//! Not done, because Bulkhead's first boot has no salt, RPM or GUI: templates
//! come from raw images in the payload instead of `qvm-template install`;
//! default-dvm's app-menu whitelist (`qvm-appmenus`) is not written; the
//! disposable-preload feature on dom0 is not set.

use serde::{Deserialize, Serialize};

use crate::facts::Facts;
use crate::model::{Class, Label, NetVm, QubeSpec, VirtMode};
use crate::settings::{Settings, UsbQube};

/// One unit of work, recorded as done in the state file when it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// qubes.xml with the labels, the file and kernel pools and dom0.
    InitStore,
    /// The global `default_kernel`.
    DefaultKernel { version: String },
    /// The `vm-pool` thin pool and its registration as `default_pool`.
    VmPool,
    /// A template with its root (from the image) and private volumes.
    Template { name: String },
    /// A qube (AppVM or DispVM) with its volumes and Xen config.
    Qube { name: String },
    /// A global property (`qubes-prefs`).
    GlobalProperty { property: String, value: String },
    /// Starting a qube.
    Start { name: String },
}

impl Step {
    /// Stable identifier used in the state file, messages and test hooks.
    pub fn id(&self) -> String {
        match self {
            Step::InitStore => "init-store".into(),
            Step::DefaultKernel { .. } => "default-kernel".into(),
            Step::VmPool => "vm-pool".into(),
            Step::Template { name } => format!("template:{name}"),
            Step::Qube { name } => format!("qube:{name}"),
            Step::GlobalProperty { property, .. } => format!("prefs:{property}"),
            Step::Start { name } => format!("start:{name}"),
        }
    }

    /// What the console shows.
    pub fn describe(&self, plan: &Plan) -> String {
        match self {
            Step::InitStore => "Initialising qubes.xml (labels, pools, dom0)".into(),
            Step::DefaultKernel { version } => format!("Setting default kernel {version}"),
            Step::VmPool => format!(
                "Creating thin pool {}/{} from {}% of the free space",
                plan.pool.volume_group, plan.pool.name, plan.pool.percent_free
            ),
            Step::Template { name } => format!("Installing template {name}"),
            Step::Qube { name } => match plan.qube(name) {
                Some(q) => format!(
                    "Creating {} {} ({})",
                    q.class.as_str(),
                    name,
                    q.label.name()
                ),
                None => format!("Creating {name}"),
            },
            Step::GlobalProperty { property, value } => format!("Setting {property} = {value}"),
            Step::Start { name } => format!("Starting {name}"),
        }
    }
}

/// Everything first boot will do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub pool: crate::settings::PoolSettings,
    pub kernel: Option<String>,
    pub templates: Vec<crate::settings::TemplateSettings>,
    /// Every qube to create (templates included), by creation order.
    pub qubes: Vec<QubeSpec>,
    pub steps: Vec<Step>,
    /// Things the person should know (skipped qubes and why).
    pub warnings: Vec<String>,
    /// The steps' time limits (plans stored before limits existed get the
    /// defaults).
    #[serde(default)]
    pub limits: crate::settings::LimitSettings,
    /// Virtual CPUs of each qube: Qubes' default, but never more than the
    /// machine's CPUs (on one CPU, a second vCPU only spins: two made a
    /// qube's boot about three times slower than one on a one-CPU Xen).
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Words added to every qube's kernel command line.
    #[serde(default)]
    pub qube_kernel_args: String,
}

fn default_vcpus() -> u32 {
    crate::model::DEFAULT_VCPUS
}

const DVM: &str = "default-dvm";

impl Plan {
    /// Computes the plan. Pure: reads nothing, writes nothing.
    pub fn new(s: &Settings, facts: &Facts) -> Plan {
        let mut p = Plan {
            pool: s.pool.clone(),
            kernel: facts.kernel.clone(),
            templates: s.templates.clone(),
            qubes: Vec::new(),
            steps: vec![Step::InitStore],
            warnings: Vec::new(),
            limits: s.limits.clone(),
            vcpus: facts.cpus.map_or(crate::model::DEFAULT_VCPUS, |c| {
                c.clamp(1, crate::model::DEFAULT_VCPUS)
            }),
            qube_kernel_args: s.qube_kernel_args.clone(),
        };
        if s.skip_everything {
            p.templates.clear();
            p.warnings
                .push("skip_everything is set: only qubes.xml with dom0 is written".into());
            return p;
        }
        if let Some(version) = &facts.kernel {
            p.steps.push(Step::DefaultKernel {
                version: version.clone(),
            });
        } else {
            p.warnings.push(
                "no VM kernel in /var/lib/qubes/vm-kernels: default_kernel stays unset".into(),
            );
        }
        p.steps.push(Step::VmPool);
        for t in &s.templates {
            let mut q = QubeSpec::new(&t.name, Class::TemplateVM, Label::Black);
            if let Some(size) = t.root_size {
                q.root_size = size;
            }
            p.qubes.push(q);
            p.steps.push(Step::Template {
                name: t.name.clone(),
            });
        }
        let Some(template) = s.default_template_name().map(str::to_string) else {
            return p;
        };
        p.global("default_template", &template);

        let net_pci = s.net_pci.clone().unwrap_or_else(|| facts.net_pci.clone());
        let usb_pci = s.usb_pci.clone().unwrap_or_else(|| facts.usb_pci.clone());
        let keyboard_usb_only = s.usb_keyboard_only.unwrap_or(facts.usb_keyboard_only);
        let usb = p.usb_choice(s, keyboard_usb_only);
        let disp = s.disposable_sys_firewall_and_usb;

        if s.system_qubes {
            if s.disposable_sys_net {
                p.add(default_dvm(&template));
            }
            let mut net = service_qube("sys-net", Label::Red, &template, s.disposable_sys_net);
            net.netvm = NetVm::None;
            net.autostart = true;
            net.provides_network = true;
            net.memory = Some(300);
            net.pci = net_pci;
            net = net
                .feature("servicevm", true)
                .feature("service.clocksync", true)
                .feature("service.minimal-netvm", true)
                .feature("service.meminfo-writer", false)
                .feature("service.qubes-update-check", false);
            if usb == UsbQube::SysNet {
                net.pci.extend(usb_pci.iter().cloned());
                net.pci_no_strict_reset = true;
                net.usb_qube = true;
            }
            // PCI passthrough needs HVM; otherwise Qubes' default, PVH.
            if !net.pci.is_empty() {
                net.virt_mode = Some(VirtMode::Hvm);
            }
            p.add(net);
            if !s.disposable_sys_net {
                p.add(default_dvm(&template));
            }
            let mut fw = service_qube("sys-firewall", Label::Green, &template, disp);
            fw.netvm = NetVm::Qube("sys-net".into());
            fw.autostart = true;
            fw.provides_network = true;
            fw.memory = Some(500);
            p.add(fw.feature("servicevm", true));
            if usb == UsbQube::SysUsb && usb_pci.is_empty() {
                // As Qubes' initial setup: no controller, nothing for sys-usb to hold.
                p.warnings
                    .push("no USB controller found: sys-usb is not created".into());
            } else if usb == UsbQube::SysUsb {
                let mut u = service_qube("sys-usb", Label::Red, &template, disp);
                u.netvm = NetVm::None;
                u.virt_mode = Some(VirtMode::Hvm);
                u.autostart = true;
                u.memory = Some(300);
                u.pci = usb_pci;
                u.pci_no_strict_reset = true;
                u.usb_qube = true;
                p.add(
                    u.feature("service.network-manager", false)
                        .feature("service.meminfo-writer", false)
                        .feature("service.qubes-update-check", false)
                        .feature("service.minimal-usbvm", true),
                );
            }
        } else if usb != UsbQube::None {
            p.warnings
                .push("system_qubes is off: no USB qube is made (dom0 keeps USB)".into());
        }
        if s.default_appvms {
            for (name, label) in [
                ("personal", Label::Yellow),
                ("work", Label::Blue),
                ("untrusted", Label::Red),
                ("vault", Label::Black),
            ] {
                let mut q = QubeSpec::new(name, Class::AppVM, label);
                q.template = Some(template.clone());
                if name == "vault" {
                    q.netvm = NetVm::None;
                }
                p.add(q);
            }
        }
        if s.system_qubes {
            p.global("default_dispvm", DVM);
            p.global("default_netvm", "sys-firewall");
            p.global("updatevm", "sys-firewall");
            p.global("clockvm", "sys-net");
            // One step per qube started, each with its own time limit:
            // starting sys-firewall would start sys-net first anyway.
            for name in ["sys-net", "sys-firewall"] {
                p.steps.push(Step::Start { name: name.into() });
            }
            if p.qube("sys-usb").is_some() {
                p.steps.push(Step::Start {
                    name: "sys-usb".into(),
                });
            }
        }
        p
    }

    fn usb_choice(&mut self, s: &Settings, keyboard_usb_only: bool) -> UsbQube {
        let want = match s.usb_qube {
            UsbQube::Auto if s.installed_on_usb => {
                self.warnings.push(
                    "installed onto a USB drive: no sys-usb (dom0 keeps the USB controllers)"
                        .into(),
                );
                UsbQube::None
            }
            UsbQube::Auto => UsbQube::SysUsb,
            other => other,
        };
        if want != UsbQube::None && keyboard_usb_only {
            self.warnings.push(format!(
                "every keyboard is a USB keyboard: {} would take it away from dom0, so no USB qube is made; \
                 add a non-USB keyboard and create sys-usb later",
                if want == UsbQube::SysNet { "sys-net as USB qube" } else { "sys-usb" }
            ));
            return UsbQube::None;
        }
        want
    }

    fn add(&mut self, q: QubeSpec) {
        self.steps.push(Step::Qube {
            name: q.name.clone(),
        });
        self.qubes.push(q);
    }

    fn global(&mut self, property: &str, value: &str) {
        self.steps.push(Step::GlobalProperty {
            property: property.into(),
            value: value.into(),
        });
    }

    pub fn qube(&self, name: &str) -> Option<&QubeSpec> {
        self.qubes.iter().find(|q| q.name == name)
    }

    /// SHA-256 of the plan: a resumed run refuses a plan that changed.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}

fn default_dvm(template: &str) -> QubeSpec {
    let mut q = QubeSpec::new(DVM, Class::AppVM, Label::Red);
    q.template = Some(template.into());
    q.template_for_dispvms = true;
    q.feature("appmenus-dispvm", true)
}

fn service_qube(name: &str, label: Label, template: &str, disposable: bool) -> QubeSpec {
    let mut q = if disposable {
        let mut q = QubeSpec::new(name, Class::DispVM, label);
        q.template = Some(DVM.into());
        q
    } else {
        let mut q = QubeSpec::new(name, Class::AppVM, label);
        q.template = Some(template.into());
        q
    };
    q.root_size = crate::model::ROOT_IMG_SIZE;
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(p: &Plan) -> Vec<String> {
        p.steps.iter().map(Step::id).collect()
    }

    fn facts() -> Facts {
        Facts {
            net_pci: vec!["00:19.0".into()],
            usb_pci: vec!["00:14.0".into()],
            usb_keyboard_only: false,
            kernel: Some("6.6.48-1".into()),
            cpus: Some(4),
        }
    }

    #[test]
    fn default_plan_follows_qubes_initial_setup() {
        let p = Plan::new(&Settings::default(), &facts());
        assert_eq!(
            ids(&p),
            [
                "init-store",
                "default-kernel",
                "vm-pool",
                "template:fedora-41-xfce",
                "template:debian-12-xfce",
                "prefs:default_template",
                "qube:sys-net",
                "qube:default-dvm",
                "qube:sys-firewall",
                "qube:sys-usb",
                "qube:personal",
                "qube:work",
                "qube:untrusted",
                "qube:vault",
                "prefs:default_dispvm",
                "prefs:default_netvm",
                "prefs:updatevm",
                "prefs:clockvm",
                "start:sys-net",
                "start:sys-firewall",
                "start:sys-usb",
            ]
        );
        let net = p.qube("sys-net").unwrap();
        assert_eq!(
            (net.class, net.label, net.memory),
            (Class::AppVM, Label::Red, Some(300))
        );
        assert_eq!(net.virt_mode, Some(VirtMode::Hvm));
        assert!(net.provides_network && net.autostart);
        assert_eq!(net.pci, ["00:19.0"]);
        let fw = p.qube("sys-firewall").unwrap();
        assert_eq!(fw.class, Class::DispVM);
        assert_eq!(fw.template.as_deref(), Some("default-dvm"));
        assert_eq!(fw.netvm, NetVm::Qube("sys-net".into()));
        let usb = p.qube("sys-usb").unwrap();
        assert_eq!(
            (usb.class, usb.pci.as_slice()),
            (Class::DispVM, &["00:14.0".to_string()][..])
        );
        assert!(p.qube("default-dvm").unwrap().template_for_dispvms);
        assert_eq!(p.qube("vault").unwrap().netvm, NetVm::None);
        assert_eq!(p.qube("work").unwrap().label, Label::Blue);
        assert_eq!(p.qube("personal").unwrap().label, Label::Yellow);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn usb_install_has_no_sys_usb() {
        let s = Settings {
            installed_on_usb: true,
            ..Settings::default()
        };
        let p = Plan::new(&s, &facts());
        assert!(p.qube("sys-usb").is_none());
        assert!(!ids(&p).contains(&"start:sys-usb".to_string()));
        assert!(p.warnings[0].contains("USB drive"));
    }

    #[test]
    fn qubes_get_two_vcpus_but_never_more_than_the_machine_has() {
        for (cpus, vcpus) in [(Some(1), 1), (Some(2), 2), (Some(16), 2), (None, 2)] {
            let f = Facts { cpus, ..facts() };
            assert_eq!(Plan::new(&Settings::default(), &f).vcpus, vcpus, "{cpus:?}");
        }
    }

    #[test]
    fn usb_only_keyboard_skips_sys_usb_with_a_warning() {
        let f = Facts {
            usb_keyboard_only: true,
            ..facts()
        };
        let p = Plan::new(&Settings::default(), &f);
        assert!(p.qube("sys-usb").is_none());
        assert!(
            p.warnings.iter().any(|w| w.contains("USB keyboard")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn sys_net_as_usb_qube_and_disposable_sys_net() {
        let s = Settings {
            usb_qube: UsbQube::SysNet,
            disposable_sys_net: true,
            ..Settings::default()
        };
        let p = Plan::new(&s, &facts());
        assert!(p.qube("sys-usb").is_none());
        let net = p.qube("sys-net").unwrap();
        assert_eq!(net.pci, ["00:19.0", "00:14.0"]);
        assert_eq!(net.class, Class::DispVM);
        let i = |id: &str| ids(&p).iter().position(|x| x == id).unwrap();
        assert!(i("qube:default-dvm") < i("qube:sys-net"));
    }

    #[test]
    fn no_appvms_and_nothing_at_all() {
        let s = Settings {
            default_appvms: false,
            ..Settings::default()
        };
        let p = Plan::new(&s, &facts());
        assert!(p.qube("work").is_none() && p.qube("sys-firewall").is_some());
        let s = Settings {
            skip_everything: true,
            ..Settings::default()
        };
        assert_eq!(ids(&Plan::new(&s, &facts())), ["init-store"]);
    }

    #[test]
    fn digest_changes_with_the_plan() {
        let a = Plan::new(&Settings::default(), &facts());
        let b = Plan::new(
            &Settings {
                default_appvms: false,
                ..Settings::default()
            },
            &facts(),
        );
        assert_eq!(
            a.digest(),
            Plan::new(&Settings::default(), &facts()).digest()
        );
        assert_ne!(a.digest(), b.digest());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn usb() -> impl Strategy<Value = UsbQube> {
        prop_oneof![
            Just(UsbQube::Auto),
            Just(UsbQube::SysUsb),
            Just(UsbQube::SysNet),
            Just(UsbQube::None)
        ]
    }

    proptest! {
        /// Whatever the options, every step only refers to qubes made by an
        /// earlier step, and nothing is made twice.
        #[test]
        fn steps_only_refer_to_earlier_qubes(
            skip in any::<bool>(), system in any::<bool>(), appvms in any::<bool>(),
            usb in usb(), disp in any::<bool>(), disp_net in any::<bool>(),
            on_usb in any::<bool>(), kbd in any::<bool>(), kernel in any::<bool>(),
        ) {
            let s = Settings {
                skip_everything: skip,
                system_qubes: system,
                default_appvms: appvms,
                usb_qube: usb,
                disposable_sys_firewall_and_usb: disp,
                disposable_sys_net: disp_net,
                installed_on_usb: on_usb,
                usb_keyboard_only: Some(kbd),
                ..Settings::default()
            };
            let f = Facts {
                net_pci: vec!["00:19.0".into()],
                usb_pci: vec!["00:14.0".into()],
                usb_keyboard_only: false,
                kernel: kernel.then(|| "6.6.48-1".to_string()),
                cpus: None,
            };
            let p = Plan::new(&s, &f);
            let mut made: Vec<String> = vec!["dom0".into()];
            for step in &p.steps {
                match step {
                    Step::Template { name } | Step::Qube { name } => {
                        prop_assert!(!made.contains(name), "{} made twice", name);
                        let q = p.qube(name).unwrap();
                        if let Some(t) = &q.template {
                            prop_assert!(made.contains(t), "{} before its template {}", name, t);
                        }
                        if let NetVm::Qube(n) = &q.netvm {
                            prop_assert!(made.contains(n), "{} before its netvm {}", name, n);
                        }
                        made.push(name.clone());
                    }
                    Step::GlobalProperty { property, value } if property != "default_kernel" => {
                        prop_assert!(made.contains(value), "{} = {} before it exists", property, value);
                    }
                    Step::Start { name } => prop_assert!(made.contains(name)),
                    _ => {}
                }
            }
            prop_assert_eq!(made.len() - 1, p.qubes.len());
            if kbd || on_usb && usb == UsbQube::Auto {
                prop_assert!(p.qube("sys-usb").is_none());
            }
        }
    }
}
