//! What the `qube` command does on a system root (dom0's qvm-ls, qvm-start,
//! qvm-shutdown, qvm-kill and qvm-console for Bulkhead, which has no
//! qubesd): list the qubes with their state from Xen; start and shut them
//! down through their systemd units ([`crate::units`]), netvms first and
//! never a netvm under its running clients unless forced; kill one and
//! attach its console with xl. And the unit's own entry points: `run`
//! (prepare the volumes, run the domain under `xl create -F`, tell systemd
//! once Xen has it, exit with xl's status), `halt` (shut it down within a
//! limit, then destroy it) and `release` (give the volumes back).
//!
//! Every refusal says what to do.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Error;
use crate::backend::QubeRow;
use crate::lifecycle::{self, Domains};
use crate::offline::{QUBES_XML, STATE_DIR, XL_DIR, effective_netvm, netvm_chain};
use crate::qubesxml::{Domain, QubesXml};
use crate::storage::{Lvm, Recorded, Storage};
use crate::units::unit;
use crate::xen::{PowerState, Xen};
use crate::{qubenet, xlcfg};

/// How long a qube's `halt` waits for its shutdown before destroying it
/// (the unit gives ExecStop 3 minutes).
pub const HALT_SECS: u64 = 150;

/// Where progress lines go (the terminal, or the unit's journal).
pub type Say<'a> = &'a mut dyn FnMut(&str);

/// How often `qube run` looks at a starting domain.
const POLL: Duration = Duration::from_secs(1);

/// The qubes of one system root.
pub struct Control {
    root: PathBuf,
    xen: Xen,
    lvm: PathBuf,
    systemctl: PathBuf,
}

impl Control {
    pub fn new(root: &Path) -> Control {
        Control {
            root: root.to_path_buf(),
            xen: Xen::new(root),
            lvm: PathBuf::from("lvm"),
            systemctl: PathBuf::from("systemctl"),
        }
    }

    fn load(&self) -> Result<QubesXml, Error> {
        let p = self.root.join(QUBES_XML);
        if !p.exists() {
            return Err(Error::Missing(format!(
                "{} does not exist: first boot has not run on this system, so there are no qubes yet \
                 (`systemctl status bulkhead-firstboot` says why; `sudo firstboot --resume` runs it)",
                p.display()
            )));
        }
        QubesXml::load(&p)
    }

    /// A qube that has a unit (not dom0).
    fn qube<'a>(x: &'a QubesXml, name: &str) -> Result<&'a Domain, Error> {
        let d = x
            .domain(name)
            .ok_or_else(|| Error::NoSuchQube(name.to_string()))?;
        if d.class == "AdminVM" {
            return Err(Error::Usage(format!(
                "{name} is the admin qube (this system): it is always running and is not started or stopped with `qube`"
            )));
        }
        Ok(d)
    }

    fn systemd(&self, args: &[&str], units: &[String]) -> Result<(), Error> {
        sysutil::run(Command::new(&self.systemctl).args(args).args(units))?;
        Ok(())
    }

    /// LVM when the qube's volume group is reachable; on an offline root
    /// without it, the volume record first boot kept.
    fn storage(&self, x: &QubesXml, vols: &[lifecycle::Volume]) -> Result<Box<dyn Storage>, Error> {
        let dir = self.root.join(STATE_DIR);
        let log = dir.join("actions.log");
        let vg = match vols.first() {
            Some(v) => v.vid.split_once('/').map_or("", |(g, _)| g).to_string(),
            None => {
                let pool = x.global("default_pool").unwrap_or(names::VM_POOL);
                lifecycle::lvm_pool(x, pool)?.0
            }
        };
        if Lvm::vg_reachable(&self.lvm, &vg) {
            Ok(Box::new(Lvm::new(&self.lvm, log)))
        } else if self.root == Path::new("/") {
            Err(Error::Storage(format!(
                "volume group {vg} is not reachable with {}, so the qube's volumes cannot be made \
                 (is the disk unlocked and the group active? `vgchange -ay {vg}`)",
                self.lvm.display()
            )))
        } else {
            Ok(Box::new(
                Recorded::new(dir.join("volumes.list"), log).with_root(&self.root),
            ))
        }
    }

    /// Every qube with its state from Xen.
    pub fn list(&self) -> Result<Vec<QubeRow>, Error> {
        let x = self.load()?;
        Ok(crate::ls::rows(&x, &self.xen.states()?))
    }

    /// Whether Xen runs here (a listing then shows real states).
    pub fn xen_running(&self) -> bool {
        self.xen.running()
    }

    /// Starts qubes through their units, their netvms first.
    pub fn start(&self, names: &[String], say: Say<'_>) -> Result<(), Error> {
        let x = self.load()?;
        for n in names {
            Self::qube(&x, n)?;
        }
        self.xen.require()?;
        let states = self.xen.states()?;
        let up = |q: &str| {
            matches!(
                states.get(q),
                Some(PowerState::Running | PowerState::Paused)
            )
        };
        let mut started: Vec<String> = Vec::new();
        for n in names {
            if up(n) || started.contains(n) {
                say(&format!("{n} is already running"));
                continue;
            }
            let chain = netvm_chain(&x, n)?;
            let (netvms, _) = chain.split_at(chain.len().saturating_sub(1));
            let first: Vec<&String> = netvms
                .iter()
                .filter(|q| !up(q) && !started.contains(q))
                .collect();
            if !first.is_empty() {
                let shown: Vec<&str> = first.iter().map(|s| s.as_str()).collect();
                say(&format!(
                    "{n}'s network comes through {}: starting {} first",
                    netvms.join(" -> "),
                    shown.join(", ")
                ));
            }
            for q in first.into_iter().chain(std::iter::once(n)) {
                say(&format!("starting {q}"));
                self.systemd(&["start"], &[unit(q)]).map_err(|e| {
                    Error::Domain(format!(
                        "{q} did not start: {e}\n`journalctl -u {}` shows why",
                        unit(q)
                    ))
                })?;
                started.push(q.clone());
                say(&format!("{q} is running"));
            }
        }
        Ok(())
    }

    /// Shuts qubes down through their units; refuses a netvm whose clients
    /// run (and are not shut down with it) unless `force`.
    pub fn shutdown(&self, names: &[String], force: bool, say: Say<'_>) -> Result<(), Error> {
        let x = self.load()?;
        for n in names {
            Self::qube(&x, n)?;
        }
        self.xen.require()?;
        let states = self.xen.states()?;
        let mut clients: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for d in &x.domains {
            if !states.contains_key(d.name()) || names.iter().any(|n| n == d.name()) {
                continue;
            }
            if let Some(net) = effective_netvm(&x, d)
                && let Some(n) = names.iter().find(|n| **n == net)
            {
                clients.entry(n.as_str()).or_default().push(d.name());
            }
        }
        for (netvm, users) in &clients {
            let users = users.join(", ");
            if !force {
                return Err(Error::Conflict(format!(
                    "{netvm} is the netvm of the running qubes {users}: shut them down first \
                     (`qube shutdown {} {netvm}`), or add --force, which stops them too \
                     (their units require {netvm}'s)",
                    users.replace(", ", " ")
                )));
            }
            say(&format!(
                "--force: {users} stop too (their units require {netvm}'s)"
            ));
        }
        for n in names {
            if states.contains_key(n) {
                say(&format!("shutting down {n}"));
            } else {
                say(&format!("{n} is not running"));
            }
        }
        let units: Vec<String> = names.iter().map(|n| unit(n)).collect();
        self.systemd(&["stop"], &units).map_err(|e| {
            Error::Domain(format!(
                "stopping {} failed: {e}\n`journalctl -u {}` shows why; `qube kill NAME` ends a qube at once",
                names.join(", "),
                units.join(" -u ")
            ))
        })?;
        Ok(())
    }

    /// `xl destroy`: the qube ends at once; its unit then ends and releases
    /// the volumes.
    pub fn kill(&self, name: &str, say: Say<'_>) -> Result<(), Error> {
        let x = self.load()?;
        Self::qube(&x, name)?;
        self.xen.require()?;
        if !self.xen.states()?.contains_key(name) {
            say(&format!("{name} is not running; nothing to kill"));
            return Ok(());
        }
        self.xen.destroy(name)?;
        say(&format!(
            "{name} killed; {} ends and releases its volumes",
            unit(name)
        ));
        Ok(())
    }

    /// The `xl console NAME` to run in this terminal.
    pub fn console(&self, name: &str) -> Result<Command, Error> {
        let x = self.load()?;
        Self::qube(&x, name)?;
        self.xen.require()?;
        if !self.xen.states()?.contains_key(name) {
            return Err(Error::Conflict(format!(
                "{name} is not running: `qube start {name}` first"
            )));
        }
        let mut c = self.xen.xl();
        c.args(["console", name]);
        Ok(c)
    }

    /// The unit's ExecStart: volumes, the domain under `xl create -F`,
    /// READY=1 once Xen has it; returns xl's exit status for the process.
    pub fn run(&mut self, name: &str, say: Say<'_>) -> Result<i32, Error> {
        let x = self.load()?;
        Self::qube(&x, name)?;
        self.xen.require()?;
        let cfg = self.root.join(XL_DIR).join(format!("{name}.cfg"));
        if !cfg.is_file() {
            return Err(Error::Missing(format!(
                "{} does not exist: {name} was not completely created (`sudo firstboot --resume` finishes it)",
                cfg.display()
            )));
        }
        if self.xen.present(name)? {
            return Err(Error::Conflict(format!(
                "Xen already has a domain {name}, not started by its unit: `qube kill {name}` ends it, then start it again"
            )));
        }
        // The qube's network, as it is now in qubes.xml, on its kernel line.
        let kernel_line = match qubenet::of(&x, Self::qube(&x, name)?)? {
            Some(net) => {
                let text =
                    std::fs::read_to_string(&cfg).map_err(|e| Error::io("reading", &cfg, e))?;
                match xlcfg::extra_of(&text) {
                    Some(extra) => Some(format!("{extra} {}", net.kernel_args())),
                    None => {
                        say(&format!(
                            "{} names no kernel line: {name} starts without its network settings",
                            cfg.display()
                        ));
                        None
                    }
                }
            }
            None => None,
        };
        self.prepare_loaded(&x, name, say)?;
        let mut cmd = self.xen.xl();
        cmd.arg("create").arg("-F").arg(&cfg);
        if let Some(line) = &kernel_line {
            cmd.arg(xlcfg::setting("extra", line));
        }
        cmd.stdin(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("NOTIFY_SOCKET");
        let shown = sysutil::describe(&cmd);
        let mut child = cmd.spawn().map_err(|cause| {
            Error::Tool(sysutil::ToolError::Spawn {
                command: shown.clone(),
                cause,
            })
        })?;
        let tail = Arc::new(Mutex::new(Vec::<u8>::new()));
        if let Some(mut e) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            // xl's messages go on to the journal; the last ones are kept
            // for the error when it fails.
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = std::io::stderr().write_all(&buf[..n]);
                    if let Ok(mut t) = tail.lock() {
                        t.extend_from_slice(&buf[..n]);
                        let excess = t.len().saturating_sub(8192);
                        t.drain(..excess);
                    }
                }
            });
        }
        let wait_err = |e| Error::io("waiting for", Path::new("xl"), e);
        let serves_network = Self::qube(&x, name)?.prop("provides_network") == Some("True");
        let mut told = false;
        let mut unpaused = false;
        // The domain's id does not change while this xl runs it.
        let mut domid = None;
        loop {
            if let Some(status) = child.try_wait().map_err(wait_err)? {
                // Let the reader take xl's last words.
                std::thread::sleep(Duration::from_millis(200));
                let words = tail
                    .lock()
                    .map(|t| String::from_utf8_lossy(&t).trim().to_string())
                    .unwrap_or_default();
                return Err(Error::Domain(format!(
                    "{shown} ended ({status}) before Xen had {name} running: {words}\n\
                     The unit's stop gives the volumes back; fix the cause and `qube start {name}` again"
                )));
            }
            // Xen builds the domain paused and xl unpauses it once its
            // devices are attached: only then can its console be opened.
            // A qube that provides network is ready once its backend
            // serves clients, so that their vifs find it; from then on
            // only that key is read.
            if !unpaused {
                unpaused = self
                    .xen
                    .states()
                    .ok()
                    .and_then(|m| m.get(name).copied())
                    .is_some_and(|s| s != PowerState::Paused);
            }
            if unpaused {
                if !serves_network {
                    break;
                }
                if domid.is_none() {
                    domid = self.xen.domid(name);
                }
                if domid.is_some_and(|d| self.xen.netback_ready(d)) {
                    break;
                }
                if !told {
                    say(&format!("waiting for {name}'s network backend"));
                    told = true;
                }
            }
            // Once a second: each poll starts xl (or xenstore-read), which
            // where CPUs are few takes time from the very domain it waits for.
            std::thread::sleep(POLL);
        }
        crate::xen::notify(&format!("READY=1\nSTATUS={name} is running"))?;
        say(&format!("{name} is running"));
        let status = child.wait().map_err(wait_err)?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// The volumes a run uses, made as lvm.py's start makes them.
    pub fn prepare(&mut self, name: &str, say: Say<'_>) -> Result<(), Error> {
        let x = self.load()?;
        Self::qube(&x, name)?;
        self.prepare_loaded(&x, name, say)
    }

    fn prepare_loaded(&mut self, x: &QubesXml, name: &str, say: Say<'_>) -> Result<(), Error> {
        let vols = lifecycle::volumes(x, name)?;
        let mut st = self.storage(x, &vols)?;
        for note in lifecycle::start(st.as_mut(), name, &vols, &mut self.xen)? {
            say(&note);
        }
        Ok(())
    }

    /// The unit's ExecStop: `xl shutdown -w` within `limit`, then destroy;
    /// nothing when the qube does not run.
    pub fn halt(&self, name: &str, limit: Duration, say: Say<'_>) -> Result<(), Error> {
        let x = self.load()?;
        Self::qube(&x, name)?;
        if !self.xen.states()?.contains_key(name) {
            say(&format!("{name} is not running"));
            return Ok(());
        }
        say(&self.xen.shutdown(name, limit)?);
        Ok(())
    }

    /// The unit's ExecStopPost: the volumes given back as lvm.py's stop
    /// does (refused while Xen still has the domain).
    pub fn release(&mut self, name: &str, say: Say<'_>) -> Result<(), Error> {
        let x = self.load()?;
        Self::qube(&x, name)?;
        let vols = lifecycle::volumes(&x, name)?;
        let mut st = self.storage(&x, &vols)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for note in lifecycle::release(st.as_mut(), name, &vols, &mut self.xen, now)? {
            say(&note);
        }
        Ok(())
    }
}
