//! The one interface both backends implement: the offline backend writing
//! the state directly (what first boot uses) and the Admin API client of a
//! running qubesd. Every method is idempotent: it checks what exists and
//! does only what is missing, so a step can be rerun after any crash.

use serde::Serialize;

use crate::Error;
use crate::model::QubeSpec;
use crate::plan::Plan;
use crate::settings::PoolSettings;

/// Test hooks: named points inside steps where a test can inject a failure
/// (`BULKHEAD_FIRSTBOOT_FAIL_AT=POINT`), have the process SIGKILLed
/// (`BULKHEAD_FIRSTBOOT_KILL_AT=POINT`) or hang there for good
/// (`BULKHEAD_FIRSTBOOT_HANG_AT=POINT`); `BULKHEAD_FIRSTBOOT_POINTS=FILE`
/// appends every point reached, so tests enumerate them instead of
/// guessing. Points are `STEP-ID:begin`, `STEP-ID:<phase>`, `STEP-ID:end`
/// (after the work, before completion is recorded).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub fail_at: Option<String>,
    pub kill_at: Option<String>,
    /// Never returns from this point (a step that hangs).
    pub hang_at: Option<String>,
    pub log: Option<std::path::PathBuf>,
}

impl Hooks {
    pub fn from_env() -> Hooks {
        Hooks {
            fail_at: std::env::var("BULKHEAD_FIRSTBOOT_FAIL_AT").ok(),
            kill_at: std::env::var("BULKHEAD_FIRSTBOOT_KILL_AT").ok(),
            hang_at: std::env::var("BULKHEAD_FIRSTBOOT_HANG_AT").ok(),
            log: std::env::var_os("BULKHEAD_FIRSTBOOT_POINTS").map(Into::into),
        }
    }

    /// Passes the named point.
    pub fn point(&self, name: &str) -> Result<(), Error> {
        if let Some(log) = &self.log {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| Error::io("opening", log, e))?;
            writeln!(f, "{name}").map_err(|e| Error::io("writing", log, e))?;
        }
        if self.fail_at.as_deref() == Some(name) {
            return Err(Error::Injected(name.into()));
        }
        if self.hang_at.as_deref() == Some(name) {
            loop {
                std::thread::park();
            }
        }
        if self.kill_at.as_deref() == Some(name) {
            // A real SIGKILL, as a power cut or the OOM killer would deliver.
            // SAFETY: kill(2) on our own pid; no memory is touched.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            std::process::abort();
        }
        Ok(())
    }
}

/// What a step method gets: the plan, the hooks and the step's id.
pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub hooks: &'a Hooks,
    pub step: String,
}

impl Ctx<'_> {
    pub fn point(&self, phase: &str) -> Result<(), Error> {
        self.hooks.point(&format!("{}:{phase}", self.step))
    }
}

/// Messages for the console from a step (what was skipped and why).
pub type Notes = Vec<String>;

/// One line of `firstboot ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QubeRow {
    pub name: String,
    pub class: String,
    pub label: String,
    pub template: Option<String>,
    pub netvm: Option<String>,
    pub state: String,
}

/// Creating the qubes' state.
pub trait Backend {
    /// One line for the console: where the state goes.
    fn describe(&self) -> String;
    /// The empty store with labels, the default pools and dom0.
    fn init_store(&mut self, ctx: &Ctx<'_>) -> Result<Notes, Error>;
    /// The thin pool, registered as a Qubes pool and made `default_pool`.
    fn ensure_pool(&mut self, ctx: &Ctx<'_>, pool: &PoolSettings) -> Result<Notes, Error>;
    /// A qube (templates included) with its volumes and config.
    fn ensure_qube(&mut self, ctx: &Ctx<'_>, spec: &QubeSpec) -> Result<Notes, Error>;
    /// A global property (`qubes-prefs NAME VALUE`).
    fn set_global(&mut self, ctx: &Ctx<'_>, property: &str, value: &str) -> Result<Notes, Error>;
    /// Starts a qube, or says why it cannot now.
    fn start(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<Notes, Error>;
    /// The qubes, as `qvm-ls` shows them.
    fn list(&mut self) -> Result<Vec<QubeRow>, Error>;
}
