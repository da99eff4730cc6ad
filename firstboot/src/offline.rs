//! The offline backend: writes qubes.xml, the xl configs and the volumes
//! directly, with no qubesd running (as at first boot, before dom0's Qubes
//! services have a store to serve).
//!
//! Each qube is made in the order volumes, xl config, systemd units,
//! qubes.xml entry: a qube appears in qubes.xml only when everything it
//! needs exists, and a rerun after a crash finds the volumes (skipped),
//! rewrites the identical config and units and adds the entry with the same
//! qid (the lowest unused, as core-admin picks it, computed from the
//! unchanged store). Only the volumes kept across runs are made here; the
//! snapshots and the volatile volume are made when a qube starts
//! ([`crate::lifecycle`]), and starting one goes through its unit.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::backend::{Backend, Ctx, Notes, QubeRow};
use crate::model::{self, Class, NetVm, QubeSpec, StorageCtx, VirtMode};
use crate::qubesxml::{Device, Devices, Domain, Property, QubesXml};
use crate::settings::PoolSettings;
use crate::storage::Storage;
use crate::xlcfg;

/// Paths under the system root.
pub use names::QUBES_XML;
pub const XL_DIR: &str = "var/lib/qubes/xl";
pub const STATE_DIR: &str = "var/lib/bulkhead/firstboot";
/// The qrexec policy for USB input devices (qvm/sys-usb.sls's defaults:
/// mouse on request, keyboard denied, tablet denied).
pub const INPUT_POLICY: &str = "etc/qubes/policy.d/50-config-input.policy";

fn input_policy(usb_qube: &str) -> String {
    format!(
        "# Written by bulkhead firstboot, as Qubes' qvm.sys-usb state writes it.\n\
         qubes.InputMouse * {usb_qube} dom0 ask default_target=dom0\n\
         qubes.InputKeyboard * {usb_qube} dom0 deny\n\
         qubes.InputTablet * {usb_qube} dom0 deny\n"
    )
}

pub struct Offline {
    root: PathBuf,
    storage: Box<dyn Storage>,
}

impl Offline {
    pub fn new(root: &Path, storage: Box<dyn Storage>) -> Offline {
        Offline {
            root: root.to_path_buf(),
            storage,
        }
    }

    fn xml_path(&self) -> PathBuf {
        self.root.join(QUBES_XML)
    }

    fn load(&self) -> Result<QubesXml, Error> {
        let p = self.xml_path();
        if !p.exists() {
            return Err(Error::Missing(format!(
                "{} does not exist: first boot has not initialised the store yet (run `firstboot`, or `firstboot --resume` after an interruption)",
                p.display()
            )));
        }
        QubesXml::load(&p)
    }

    /// Whether qubes can be started here: the real root with Xen running.
    fn xen_running(&self) -> bool {
        self.root == Path::new("/") && crate::xen::Xen::new(&self.root).running()
    }

    fn default_netvm(ctx: &Ctx<'_>) -> Option<String> {
        ctx.plan.steps.iter().find_map(|s| match s {
            crate::plan::Step::GlobalProperty { property, value }
                if property == "default_netvm" =>
            {
                Some(value.clone())
            }
            _ => None,
        })
    }

    /// The netvm the qube ends up with once the plan is complete.
    fn resolved_netvm(ctx: &Ctx<'_>, spec: &QubeSpec) -> Option<String> {
        match &spec.netvm {
            NetVm::None => None,
            NetVm::Qube(q) => Some(q.clone()),
            NetVm::Default if spec.class == Class::TemplateVM => None,
            NetVm::Default if spec.class == Class::DispVM => spec
                .template
                .as_deref()
                .and_then(|t| ctx.plan.qube(t))
                .and_then(|t| Self::resolved_netvm(ctx, t)),
            NetVm::Default => Self::default_netvm(ctx),
        }
    }

    fn domain_for(spec: &QubeSpec, qid: u32, volumes: &[model::VolumeConfig]) -> Domain {
        let mut d = Domain {
            id: format!("domain-{qid}"),
            class: spec.class.as_str().into(),
            ..Domain::default()
        };
        let b = |v: bool| if v { "True" } else { "False" };
        d.set_prop("qid", &qid.to_string());
        d.set_prop("name", &spec.name);
        d.set_prop("label", spec.label.name());
        d.set_prop("uuid", &model::qube_uuid(&spec.name));
        if let Some(t) = &spec.template {
            d.set_prop("template", t);
        }
        match &spec.netvm {
            NetVm::Default => {}
            NetVm::None => d.set_prop("netvm", ""),
            NetVm::Qube(q) => d.set_prop("netvm", q),
        }
        if let Some(v) = spec.virt_mode {
            d.set_prop("virt_mode", v.as_str());
        }
        if let Some(m) = spec.memory {
            d.set_prop("memory", &m.to_string());
        }
        if spec.provides_network {
            d.set_prop("provides_network", b(true));
        }
        if spec.autostart {
            d.set_prop("autostart", b(true));
        }
        if spec.template_for_dispvms {
            d.set_prop("template_for_dispvms", b(true));
        }
        if spec.class == Class::DispVM {
            d.set_prop("dispid", &qid.to_string());
            d.set_prop("auto_cleanup", b(false));
        }
        d.features = spec
            .features
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        d.tags = vec!["created-by-dom0".into()];
        if !spec.pci.is_empty() {
            d.devices.push(Devices {
                class: "pci".into(),
                devices: spec
                    .pci
                    .iter()
                    .map(|bdf| Device {
                        attrs: vec![
                            ("backend-domain".into(), "dom0".into()),
                            ("id".into(), bdf.replace(':', "_")),
                        ],
                        options: if spec.pci_no_strict_reset {
                            vec![("no-strict-reset".into(), "True".into())]
                        } else {
                            Vec::new()
                        },
                    })
                    .collect(),
            });
        }
        d.volumes = volumes.iter().map(model::VolumeConfig::attrs).collect();
        d
    }

    /// Template root: imported through `VID-import` and renamed, as
    /// core-admin's lvm driver imports, so a half-written image is never
    /// taken for a finished root volume.
    fn make_root_from_image(
        &mut self,
        ctx: &Ctx<'_>,
        pool: &str,
        vid: &str,
        size: u64,
        image: &Path,
    ) -> Result<(), Error> {
        let import = format!("{vid}-import");
        if !self.storage.exists(&import)? {
            self.storage.create(pool, &import, size)?;
        }
        ctx.point("import-volume")?;
        self.storage.import(&import, image)?;
        ctx.point("imported")?;
        self.storage.rename(&import, vid)
    }
}

/// The qube a domain's network comes from: its own `netvm`, else (a
/// DispVM) its template's, else the global `default_netvm`; templates and
/// dom0 have none by default.
pub fn effective_netvm(x: &QubesXml, d: &Domain) -> Option<String> {
    let nonempty = |v: &str| (!v.is_empty()).then(|| v.to_string());
    match d.prop("netvm") {
        Some(n) => nonempty(n),
        None if d.class == "AdminVM" || d.class == "TemplateVM" => None,
        None if d.class == "DispVM" => d
            .prop("template")
            .and_then(|t| x.domain(t))
            .and_then(|t| effective_netvm(x, t)),
        None => x.global("default_netvm").and_then(nonempty),
    }
}

/// The qubes `name` needs running, netvm of netvm first, `name` last.
pub fn netvm_chain(x: &QubesXml, name: &str) -> Result<Vec<String>, Error> {
    let mut chain = vec![name.to_string()];
    while let Some(d) = chain.last().and_then(|q| x.domain(q))
        && let Some(net) = effective_netvm(x, d)
    {
        if chain.contains(&net) {
            return Err(Error::Conflict(format!(
                "netvm loop while starting {name}: {} -> {net}; give one of them another netvm",
                chain.join(" -> ")
            )));
        }
        if x.domain(&net).is_none() {
            return Err(Error::Missing(format!(
                "{}'s netvm {net} is not in qubes.xml; give it an existing netvm",
                chain.last().map_or(name, String::as_str)
            )));
        }
        chain.push(net);
    }
    chain.reverse();
    Ok(chain)
}

impl Backend for Offline {
    fn describe(&self) -> String {
        format!(
            "offline backend: {} ({})",
            self.xml_path().display(),
            self.storage.describe()
        )
    }

    fn init_store(&mut self, ctx: &Ctx<'_>) -> Result<Notes, Error> {
        let p = self.xml_path();
        if p.exists() {
            let x = QubesXml::load(&p)?;
            if x.domain("dom0").is_none() {
                return Err(Error::Conflict(format!(
                    "{} exists but has no dom0; move it away and rerun",
                    p.display()
                )));
            }
            return Ok(vec![format!("{} exists; kept", p.display())]);
        }
        ctx.point("write")?;
        QubesXml::initial().save(&p)?;
        Ok(Vec::new())
    }

    fn ensure_pool(&mut self, ctx: &Ctx<'_>, pool: &PoolSettings) -> Result<Notes, Error> {
        let mut notes = Vec::new();
        if self.storage.pool_exists(&pool.volume_group, &pool.name)? {
            notes.push(format!(
                "thin pool {}/{} exists",
                pool.volume_group, pool.name
            ));
        } else {
            self.storage
                .create_pool(&pool.volume_group, &pool.name, pool.percent_free)?;
        }
        ctx.point("lvm")?;
        let mut x = self.load()?;
        let before = x.clone();
        if x.pool(&pool.name).is_none() {
            x.pools.push(vec![
                ("name".into(), pool.name.clone()),
                ("volume_group".into(), pool.volume_group.clone()),
                ("thin_pool".into(), pool.name.clone()),
                ("driver".into(), "lvm_thin".into()),
                (
                    "revisions_to_keep".into(),
                    pool.revisions_to_keep.to_string(),
                ),
                ("ephemeral_volatile".into(), "False".into()),
            ]);
        }
        x.set_global("default_pool", &pool.name);
        if x != before {
            x.save(&self.xml_path())?;
        }
        Ok(notes)
    }

    fn ensure_qube(&mut self, ctx: &Ctx<'_>, spec: &QubeSpec) -> Result<Notes, Error> {
        let mut notes = Vec::new();
        let x = self.load()?;
        let existing = x.domain(&spec.name).cloned();
        if let Some(d) = &existing
            && d.class != spec.class.as_str()
        {
            return Err(Error::Conflict(format!(
                "a qube named {} already exists as {} (wanted {}); remove or rename it, then rerun firstboot --resume",
                spec.name,
                d.class,
                spec.class.as_str()
            )));
        }
        let qid = existing
            .as_ref()
            .and_then(Domain::qid)
            .unwrap_or_else(|| x.next_qid());
        let pool_name = x
            .global("default_pool")
            .unwrap_or(&ctx.plan.pool.name)
            .to_string();
        let (vg, thin) = crate::lifecycle::lvm_pool(&x, &pool_name)?;
        let pool_vid = format!("{vg}/{thin}");
        let need = |name: &str| {
            x.domain(name).cloned().ok_or_else(|| {
                Error::Missing(format!(
                    "{} needs {name}, which is not in qubes.xml yet (its step must come first)",
                    spec.name
                ))
            })
        };
        let (troot, tpriv) = match spec.class {
            Class::AppVM => {
                let t = need(spec.template.as_deref().unwrap_or_default())?;
                if t.class != "TemplateVM" {
                    return Err(Error::Conflict(format!(
                        "{} is to be based on {}, which is a {}, not a TemplateVM",
                        spec.name,
                        t.name(),
                        t.class
                    )));
                }
                (t.volume_attr("root", "vid").map(str::to_string), None)
            }
            Class::DispVM => {
                let t = need(spec.template.as_deref().unwrap_or_default())?;
                if t.prop("template_for_dispvms") != Some("True") {
                    return Err(Error::Conflict(format!(
                        "template for disposable ({}) needs to be an AppVM with template_for_dispvms=True",
                        t.name()
                    )));
                }
                (
                    t.volume_attr("root", "source").map(str::to_string),
                    t.volume_attr("private", "vid").map(str::to_string),
                )
            }
            _ => (None, None),
        };
        let kernel = x.global("default_kernel").map(str::to_string);
        let sctx = StorageCtx {
            pool: &pool_name,
            vg: &vg,
            revisions_to_keep: ctx.plan.pool.revisions_to_keep,
            kernel: kernel.as_deref(),
        };
        let volumes = model::volume_config(spec, &sctx, troot.as_deref(), tpriv.as_deref());

        // 1. Volumes made at creation: those kept across restarts that are not snapshots.
        let template = ctx.plan.templates.iter().find(|t| t.name == spec.name);
        let installed = template.is_some_and(|t| t.installed);
        let image = template.and_then(|t| t.image.clone()).map(|p| {
            if p.is_absolute() {
                self.root.join(p.strip_prefix("/").unwrap_or(&p))
            } else {
                p
            }
        });
        for v in volumes
            .iter()
            .filter(|v| v.is_lvm() && v.save_on_stop && !v.snap_on_start)
        {
            let size = v.size.unwrap_or(model::ROOT_IMG_SIZE);
            if self.storage.exists(&v.vid)? {
                continue;
            }
            if installed && v.name == "root" {
                return Err(Error::Missing(format!(
                    "the root volume of template {} ({}), which the installer wrote, is missing; \
                     the installed system is damaged: reinstall, or restore the volume and run `firstboot --resume`",
                    spec.name, v.vid
                )));
            }
            match (&image, v.name) {
                (Some(img), "root") if img.is_file() => {
                    let len = std::fs::metadata(img).map(|m| m.len()).unwrap_or(0);
                    self.make_root_from_image(ctx, &pool_vid, &v.vid, size.max(len), img)?;
                }
                (img, "root") if spec.class == Class::TemplateVM => {
                    if let Some(img) = img {
                        notes.push(format!(
                            "template image {} not found: root volume of {} left empty",
                            img.display(),
                            spec.name
                        ));
                    }
                    self.storage.create(&pool_vid, &v.vid, size)?;
                }
                _ => self.storage.create(&pool_vid, &v.vid, size)?,
            }
        }
        ctx.point("volumes")?;

        // 2. The xl config.
        let memory = spec
            .memory
            .or_else(|| {
                spec.template
                    .as_deref()
                    .and_then(|t| ctx.plan.qube(t))
                    .and_then(|t| t.memory)
            })
            .unwrap_or(model::DEFAULT_MEMORY);
        let virt_mode = spec.virt_mode.unwrap_or(if spec.pci.is_empty() {
            VirtMode::Pvh
        } else {
            VirtMode::Hvm
        });
        let netvm = Self::resolved_netvm(ctx, spec);
        let uuid = model::qube_uuid(&spec.name);
        let cfg = xlcfg::render(&xlcfg::XlInput {
            name: &spec.name,
            class: spec.class,
            label: spec.label.name(),
            uuid: &uuid,
            qid,
            dispid: (spec.class == Class::DispVM).then_some(qid),
            virt_mode,
            memory,
            vcpus: ctx.plan.vcpus,
            kernel: kernel.as_deref(),
            volumes: &volumes,
            netvm: netvm.as_deref(),
            pci: &spec.pci,
            kernel_args: &ctx.plan.qube_kernel_args,
        });
        crate::util::write_atomic(
            &self.root.join(XL_DIR).join(format!("{}.cfg", spec.name)),
            cfg.as_bytes(),
            0o644,
        )?;
        ctx.point("xl-config")?;
        crate::units::write(&self.root, &spec.name, netvm.as_deref(), spec.autostart)?;
        ctx.point("units")?;
        if spec.usb_qube {
            crate::util::write_atomic(
                &self.root.join(INPUT_POLICY),
                input_policy(&spec.name).as_bytes(),
                0o644,
            )?;
        }

        // 3. The qubes.xml entry.
        if existing.is_none() {
            let mut x = x;
            x.add_domain(Self::domain_for(spec, qid, &volumes));
            x.save(&self.xml_path())?;
        } else {
            notes.push(format!("{} is already in qubes.xml", spec.name));
        }
        Ok(notes)
    }

    fn set_global(&mut self, ctx: &Ctx<'_>, property: &str, value: &str) -> Result<Notes, Error> {
        let mut x = self.load()?;
        let names_qube = matches!(
            property,
            "default_template" | "default_netvm" | "updatevm" | "clockvm" | "default_dispvm"
        );
        if names_qube && !value.is_empty() && x.domain(value).is_none() {
            return Err(Error::Missing(format!(
                "{property} is to be {value}, which is not in qubes.xml"
            )));
        }
        ctx.point("write")?;
        if x.global(property) == Some(value) {
            return Ok(vec![format!("{property} is already {value}")]);
        }
        x.set_global(property, value);
        x.save(&self.xml_path())?;
        Ok(Vec::new())
    }

    fn start(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Notes, Error> {
        let x = self.load()?;
        // As qvm-start does, the netvm chain starts first (sys-net before
        // sys-firewall): a vif needs its backend running.
        let chain = netvm_chain(&x, name)?;
        ctx.point("checked")?;
        let shown = chain.join(", ");
        if !self.xen_running() {
            // Their volumes are made when they start (`qube run`, lvm.py's start).
            return Ok(vec![format!(
                "{shown}: not started now ({}); {} starts them at boot (autostart)",
                if self.root == Path::new("/") {
                    "Xen is not running"
                } else {
                    "offline root"
                },
                crate::units::unit(name),
            )]);
        }
        // firstboot has just written the units' drop-ins; systemd starts the
        // netvm chain itself (each drop-in requires the netvm's unit).
        sysutil::run(std::process::Command::new("systemctl").arg("daemon-reload"))?;
        let unit = crate::units::unit(name);
        sysutil::run(
            std::process::Command::new("systemctl")
                .arg("start")
                .arg(&unit),
        )
        .map_err(|e| {
            Error::Domain(format!(
                "{e}\n`journalctl -u {unit}` (and the units of its netvms) shows why"
            ))
        })?;
        Ok(vec![format!("started {shown}")])
    }

    fn list(&mut self) -> Result<Vec<QubeRow>, Error> {
        let x = self.load()?;
        let states = if self.xen_running() {
            crate::xen::Xen::new(&self.root).states()?
        } else {
            Default::default()
        };
        Ok(crate::ls::rows(&x, &states))
    }
}

/// Reads a domain's property list as (name, text) pairs (for tests and `ls`).
pub fn props(d: &Domain) -> Vec<(&str, &str)> {
    d.properties
        .iter()
        .map(|p: &Property| (p.name.as_str(), p.text.as_str()))
        .collect()
}
