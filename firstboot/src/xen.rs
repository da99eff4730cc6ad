//! Xen's toolstack as the `qube` command uses it: whether this boot runs
//! Xen (dom0's `/proc/xen/capabilities` says `control_d`), the domains `xl
//! list` shows with their power state, whether a netvm's backend is up
//! (xenstore), `xl shutdown -w` bounded by a limit,
//! `xl destroy`, and systemd's readiness notification for a qube's unit.
//!
//! Paths are under the system root, so a test gives an offline root a
//! capabilities file and puts a fake `xl` on PATH; the real toolstack is
//! what the installed system's own boot test exercises.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::lifecycle::Domains;

/// Where dom0's kernel says what Xen lets it do.
pub const CAPABILITIES: &str = "proc/xen/capabilities";

/// A qube's power state, as qvm-ls names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    Running,
    Paused,
    /// Shutting down or dying.
    Halting,
    Crashed,
    Halted,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => "Running",
            PowerState::Paused => "Paused",
            PowerState::Halting => "Halting",
            PowerState::Crashed => "Crashed",
            PowerState::Halted => "Halted",
        }
    }

    /// From `xl list`'s state column (`rbpscd`, a dash for each flag unset).
    pub fn from_flags(flags: &str) -> PowerState {
        let has = |c| flags.contains(c);
        if has('c') {
            PowerState::Crashed
        } else if has('s') || has('d') {
            PowerState::Halting
        } else if has('p') {
            PowerState::Paused
        } else {
            // `r` on a CPU, `b` blocked, no flag at all: runnable and
            // waiting for a CPU (what a busy machine shows most of the
            // time). Xen builds a domain paused, so none is "new".
            PowerState::Running
        }
    }
}

/// The domains of `xl list`'s output by name.
pub fn parse_list(text: &str) -> BTreeMap<String, PowerState> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Name ID Mem VCPUs State Time(s); the header's ID is not a number.
            f.get(1)?.parse::<u32>().ok()?;
            Some((f.first()?.to_string(), PowerState::from_flags(f.get(4)?)))
        })
        .collect()
}

/// The toolstack of a system root.
pub struct Xen {
    root: PathBuf,
    xl: PathBuf,
}

impl Xen {
    pub fn new(root: &Path) -> Xen {
        Xen {
            root: root.to_path_buf(),
            xl: PathBuf::from("xl"),
        }
    }

    /// An `xl` command.
    pub fn xl(&self) -> Command {
        Command::new(&self.xl)
    }

    /// Whether this boot runs Xen with this system as dom0.
    pub fn running(&self) -> bool {
        std::fs::read_to_string(self.root.join(CAPABILITIES)).is_ok_and(|c| c.contains("control_d"))
    }

    /// Fails, saying what to do, unless Xen runs.
    pub fn require(&self) -> Result<(), Error> {
        if self.running() {
            Ok(())
        } else if self.root == Path::new("/") {
            Err(Error::XenNotRunning)
        } else {
            Err(Error::Usage(format!(
                "{} is not the running system's root (no control_d in its {CAPABILITIES}): \
                 qubes run only on the running system, without --root",
                self.root.display()
            )))
        }
    }

    /// Every domain Xen has, by name; none when Xen does not run.
    pub fn states(&self) -> Result<BTreeMap<String, PowerState>, Error> {
        if !self.running() {
            return Ok(BTreeMap::new());
        }
        let out = sysutil::run(self.xl().arg("list"))?;
        Ok(parse_list(&out))
    }

    /// The domain's id, if `xl domid NAME` knows the domain.
    pub fn domid(&self, name: &str) -> Option<u32> {
        let out = self
            .xl()
            .args(["domid", name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Whether `xl domid NAME` knows the domain.
    pub fn has_domid(&self, name: &str) -> bool {
        self.domid(name).is_some()
    }

    /// Whether the network backend of domain `domid` says it serves
    /// clients (the key its `bulkhead-netback` unit writes in its own
    /// xenstore directory).
    pub fn netback_ready(&self, domid: u32) -> bool {
        let key = format!("/local/domain/{domid}/{}", names::NETBACK_READY_KEY);
        sysutil::run(Command::new("xenstore-read").arg(key)).is_ok_and(|v| v.trim() == "ready")
    }

    /// `xl destroy NAME`.
    pub fn destroy(&self, name: &str) -> Result<(), Error> {
        sysutil::run(self.xl().args(["destroy", name]))?;
        Ok(())
    }

    /// `xl shutdown -w NAME`, destroying the domain when it has not ended
    /// within `limit` (or when xl cannot ask it to). Returns what happened.
    pub fn shutdown(&self, name: &str, limit: Duration) -> Result<String, Error> {
        let mut cmd = self.xl();
        cmd.args(["shutdown", "-w", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|cause| {
            Error::Tool(sysutil::ToolError::Spawn {
                command: sysutil::describe(&cmd),
                cause,
            })
        })?;
        let deadline = Instant::now() + limit;
        let why = 'wait: loop {
            match child.try_wait() {
                // xl returns once the guest has shut down; the domain is
                // gone only when its xl has destroyed it and its backends
                // let go. Stopping before then would kill that xl midway
                // and leave a paused, shut-down domain holding the volumes.
                Ok(Some(s)) if s.success() => loop {
                    if !self.has_domid(name) {
                        return Ok(format!("{name} shut down"));
                    }
                    if Instant::now() >= deadline {
                        break 'wait format!(
                            "it shut down but was still there after {} s",
                            limit.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(200));
                },
                Ok(Some(s)) => {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut err);
                    }
                    break format!("xl shutdown failed ({s}): {}", err.trim());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break format!("it did not shut down within {} s", limit.as_secs());
                }
                Err(e) => break format!("waiting for xl shutdown: {e}"),
            }
        };
        if !self.has_domid(name) {
            return Ok(format!("{name} shut down"));
        }
        self.destroy(name)?;
        Ok(format!("{name} destroyed: {why}"))
    }
}

impl Domains for Xen {
    fn present(&mut self, name: &str) -> Result<bool, Error> {
        Ok(self.states()?.contains_key(name))
    }
}

/// Sends `state` (`READY=1`, ...) to systemd's `$NOTIFY_SOCKET`, a unix
/// datagram socket (`@NAME` for an abstract one). Returns false when the
/// process was not started by systemd with notification (no socket).
pub fn notify(state: &str) -> Result<bool, Error> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => notify_to(&path, state).map(|()| true),
        None => Ok(false),
    }
}

/// Sends `state` to the notification socket `path`.
pub fn notify_to(path: &std::ffi::OsStr, state: &str) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let shown = PathBuf::from(&path);
    let io = |e| Error::io("notifying systemd through", &shown, e);
    let sock = UnixDatagram::unbound().map_err(io)?;
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).map_err(io)?;
            sock.send_to_addr(state.as_bytes(), &addr).map_err(io)?;
        }
        None => {
            sock.send_to(state.as_bytes(), path).map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xl_list_states_map_to_qvm_ls_names() {
        let out = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
                   Domain-0                                     0  4096     2     r-----      52.1\n\
                   sys-net                                      1   300     2     -b----       3.0\n\
                   work                                         4   400     2     --p---       1.0\n\
                   gone                                         5   400     2     ---s--       1.0\n\
                   bad                                          6   400     2     ----c-       1.0\n\
                   waiting                                      7   400     2     ------       0.0\n";
        let m = parse_list(out);
        assert_eq!(m.len(), 6, "{m:?}");
        assert_eq!(m["Domain-0"], PowerState::Running);
        assert_eq!(m["sys-net"], PowerState::Running);
        assert_eq!(m["work"], PowerState::Paused);
        assert_eq!(m["gone"], PowerState::Halting);
        assert_eq!(m["bad"], PowerState::Crashed);
        assert_eq!(m["waiting"], PowerState::Running);
        assert!(parse_list("Name ID Mem VCPUs State Time(s)\n").is_empty());
    }

    #[test]
    fn xen_runs_only_with_control_d() {
        let d = tempfile::tempdir().unwrap();
        let x = Xen::new(d.path());
        assert!(!x.running());
        let e = x.require().unwrap_err().to_string();
        assert!(e.contains("without --root"), "{e}");
        assert!(x.states().unwrap().is_empty(), "no Xen, no domains");
        std::fs::create_dir_all(d.path().join("proc/xen")).unwrap();
        std::fs::write(d.path().join(CAPABILITIES), "").unwrap();
        assert!(!x.running(), "a domU's capabilities file is empty");
        std::fs::write(d.path().join(CAPABILITIES), "control_d\n").unwrap();
        assert!(x.running() && x.require().is_ok());
    }

    #[test]
    fn the_real_root_without_xen_says_to_boot_its_entry() {
        let x = Xen::new(Path::new("/"));
        match x.require() {
            Ok(()) => assert!(x.running(), "require passed without control_d"),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("Xen is not running") && e.contains("Bulkhead's Xen entry"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn notify_reaches_the_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // An abstract socket (`@NAME`).
        use std::os::linux::net::SocketAddrExt;
        let name = format!("bulkhead-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let abs = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        let gone = d.path().join("nobody-listens");
        let e = notify_to(gone.as_os_str(), "READY=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nobody-listens"), "{e}");
    }
}
