//! First boot of an installed Bulkhead system: the `vm-pool` thin pool, the
//! templates, the service qubes (sys-net, sys-firewall, sys-usb), default-dvm,
//! the default AppVMs and the global preferences, as Qubes 4.2's initial
//! setup makes them, but idempotent and resumable.
//!
//! [`settings`] reads the installer's answers, [`plan`] turns them into an
//! ordered list of steps before anything is written, [`run`] executes the
//! steps through a [`backend::Backend`] (the [`offline`] one writing
//! qubes.xml, xl configs and LVM volumes directly, or [`adminapi`] talking to
//! a running qubesd), recording each completed step.
//!
//! After first boot, the `qube` command runs the qubes through [`control`]:
//! one systemd unit per qube ([`units`]), its volumes started and released
//! as qubes-core-admin's lvm driver does ([`lifecycle`]), the domain run by
//! Xen's `xl` ([`xen`]), with the network settings Qubes gives through
//! qubesdb on its kernel line ([`qubenet`]).

pub mod adminapi;
pub mod backend;
#[cfg(feature = "bench")]
pub mod bench;
pub mod control;
pub mod facts;
pub mod lifecycle;
pub mod ls;
pub mod model;
pub mod notice;
pub mod offline;
pub mod plan;
pub mod qubenet;
pub mod qubesxml;
pub mod run;
pub mod settings;
pub mod storage;
pub mod units;
mod util;
pub mod xen;
pub mod xlcfg;

use std::path::Path;

/// Everything that can go wrong; each message says what, to what, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error("settings {0}")]
    Settings(confdoc::ConfigError),
    #[error("qubes.xml: {0}")]
    Xml(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Tool(#[from] sysutil::ToolError),
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Conflict(String),
    #[error("state: {0}")]
    State(String),
    #[error("{0}")]
    Usage(String),
    #[error("failure injected at {0} (test hook BULKHEAD_FIRSTBOOT_FAIL_AT)")]
    Injected(String),
    #[error("a previous first boot stopped before step {0}; run `firstboot --resume` to finish it")]
    Interrupted(String),
    #[error(
        "{what} failed: {cause}\nstep {step} did not complete; fix the cause and run `firstboot --resume` (finished steps are not redone)"
    )]
    StepFailed {
        step: String,
        what: String,
        cause: Box<Error>,
    },
    #[error("no qube named {0} (`qube list` shows them)")]
    NoSuchQube(String),
    #[error(
        "Xen is not running (/proc/xen/capabilities has no control_d): qubes run only when the machine boots Bulkhead's Xen entry; reboot and choose it in the boot menu"
    )]
    XenNotRunning,
    #[error("{0}")]
    Domain(String),
    #[error("Admin API: {0}")]
    Api(String),
    #[error("qubesd refused {call}: {exc_type}: {message}")]
    ApiException {
        call: String,
        exc_type: String,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io(sysutil::IoError::new(what, path, source))
    }
}
