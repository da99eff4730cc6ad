//! Running the plan: step by step, recording each completed step in
//! `var/lib/bulkhead/firstboot/state.json` (written atomically), so a rerun
//! after a failure or a crash (`firstboot --resume`) continues where it
//! stopped. The state file also keeps the plan itself: a resumed run
//! finishes the plan it started, even if a device or the settings changed
//! in between. When every step is done, the `done` marker is written; the
//! systemd unit does not start again once it exists.
//!
//! Every step runs under a time limit (`limits` in firstboot.toml). A step
//! cannot be cancelled from outside, so a watchdog thread ends the whole
//! process when one overruns: the step stays undone, the failure is
//! recorded and shown at the login prompts ([`crate::notice`]), and the
//! process exits with [`EXIT_TIMED_OUT`]; systemd then stops what the step
//! had started (the unit's control group) and lets logins go ahead.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::backend::{Backend, Ctx, Hooks, Notes};
use crate::facts::Facts;
use crate::offline::{Offline, STATE_DIR};
use crate::plan::{Plan, Step};
use crate::settings::Settings;
use crate::storage::{Lvm, Recorded, Storage};

/// Exit status of a run that stopped because a step overran its limit.
pub const EXIT_TIMED_OUT: i32 = 3;

/// Ends the process if it is not dropped within its limit.
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(limit: Duration, on_expiry: impl FnOnce() + Send + 'static) -> Watchdog {
        let (done, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                on_expiry();
                std::process::exit(EXIT_TIMED_OUT);
            }
        });
        Watchdog {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The limit of `step` under `plan`'s limits.
pub fn time_limit(plan: &Plan, step: &Step) -> Duration {
    Duration::from_secs(match step {
        Step::Template { .. } => plan.limits.template_secs,
        _ => plan.limits.step_secs,
    })
}

/// How storage is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMode {
    /// LVM when the volume group is reachable; with `--root` only, a
    /// recorded volume list otherwise.
    Auto,
    /// LVM, or fail.
    Lvm,
    /// Record only (needs `--root`).
    Record,
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// System root (`/` at first boot).
    pub root: PathBuf,
    /// Continue an interrupted run.
    pub resume: bool,
    /// When resuming, plan again from the current settings instead of
    /// finishing the stored plan (completed steps still count as done).
    pub replan: bool,
    pub storage: StorageMode,
    /// The lvm binary.
    pub lvm: PathBuf,
    pub hooks: Hooks,
}

impl Options {
    pub fn new(root: &Path) -> Options {
        Options {
            root: root.to_path_buf(),
            resume: false,
            replan: false,
            storage: StorageMode::Auto,
            lvm: PathBuf::from("lvm"),
            hooks: Hooks::default(),
        }
    }

    fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// What the console shows while running.
pub trait Progress {
    fn backend(&mut self, _description: &str) {}
    fn warning(&mut self, _message: &str) {}
    fn step_started(&mut self, _index: usize, _total: usize, _description: &str) {}
    fn step_skipped(&mut self, _index: usize, _total: usize, _description: &str) {}
    fn step_done(&mut self, _index: usize, _total: usize, _notes: &Notes, _elapsed: Duration) {}
}

/// Progress that shows nothing (library callers, benchmarks).
pub struct Quiet;
impl Progress for Quiet {}

/// The persisted progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub plan_digest: String,
    pub plan: serde_json::Value,
    pub done: Vec<String>,
}

pub fn state_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("state.json")
}

pub fn done_marker(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("done")
}

fn failure_path(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("last-failure")
}

/// Why first boot is unfinished after its unit stopped with systemd's
/// `result` (`SERVICE_RESULT`: `success`, `timeout`, `signal`, ...): the
/// recorded failure, or what systemd says; `None` when it finished.
pub fn unfinished(root: &Path, result: &str) -> Option<String> {
    if done_marker(root).exists() {
        return None;
    }
    let recorded = std::fs::read_to_string(failure_path(root)).ok();
    match (recorded, result) {
        (Some(r), _) if !r.trim().is_empty() => Some(r.trim().to_string()),
        (_, "success") => None,
        (_, "exit-code") => Some("it failed before its first step".into()),
        (_, "timeout") => Some("it ran longer than its unit allows".into()),
        (_, "") => Some("it stopped before finishing".into()),
        (_, r) => Some(format!("it was stopped ({r})")),
    }
}

impl State {
    pub fn load(root: &Path) -> Result<Option<State>, Error> {
        let p = state_path(root);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::State(format!(
                    "{} is damaged ({e}); move it away and rerun firstboot (every step checks what exists)",
                    p.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &p, e)),
        }
    }

    fn save(&self, root: &Path) -> Result<(), Error> {
        let mut b = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::State(format!("serialising state: {e}")))?;
        b.push(b'\n');
        crate::util::write_atomic(&state_path(root), &b, 0o644)
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub steps_run: usize,
    pub steps_skipped: usize,
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

/// Chooses the storage for these options.
pub fn open_storage(opts: &Options, vg: &str) -> Result<Box<dyn Storage>, Error> {
    let dir = opts.root.join(STATE_DIR);
    let log = dir.join("actions.log");
    let record = || {
        Box::new(
            Recorded::new(dir.join("volumes.list"), dir.join("actions.log")).with_root(&opts.root),
        )
    };
    match opts.storage {
        StorageMode::Record if opts.is_real_root() => Err(Error::Usage(
            "recording volumes instead of creating them is only allowed with --root DIR".into(),
        )),
        StorageMode::Record => Ok(record()),
        StorageMode::Lvm => {
            if Lvm::vg_reachable(&opts.lvm, vg) {
                Ok(Box::new(Lvm::new(&opts.lvm, log)))
            } else {
                Err(Error::Storage(format!(
                    "volume group {vg} is not reachable with {} (is the LUKS volume unlocked and the VG active? try `vgchange -ay {vg}`)",
                    opts.lvm.display()
                )))
            }
        }
        StorageMode::Auto => {
            if Lvm::vg_reachable(&opts.lvm, vg) {
                Ok(Box::new(Lvm::new(&opts.lvm, log)))
            } else if opts.is_real_root() {
                Err(Error::Storage(format!(
                    "volume group {vg} is not reachable; first boot needs it to create the qubes' volumes \
                     (unlock the disk, `vgchange -ay {vg}`, then run firstboot --resume)"
                )))
            } else {
                Ok(record())
            }
        }
    }
}

/// Computes the plan for a root from its settings and facts.
pub fn plan_for(root: &Path) -> Result<Plan, Error> {
    let settings = Settings::load(root)?;
    Ok(Plan::new(&settings, &Facts::probe(root)))
}

/// Runs first boot with the offline backend.
pub fn run(opts: &Options, progress: &mut dyn Progress) -> Result<Report, Error> {
    let (plan, state) = prepare(opts)?;
    let storage = open_storage(opts, &plan.pool.volume_group)?;
    let mut backend = Offline::new(&opts.root, storage);
    execute(opts, &plan, state, &mut backend, progress)
}

/// Loads the plan to run: the one in the state file when resuming.
pub fn prepare(opts: &Options) -> Result<(Plan, State), Error> {
    let fresh = plan_for(&opts.root)?;
    match State::load(&opts.root)? {
        None => Ok((
            fresh.clone(),
            State {
                plan_digest: fresh.digest(),
                plan: serde_json::to_value(&fresh)
                    .map_err(|e| Error::State(format!("serialising plan: {e}")))?,
                done: Vec::new(),
            },
        )),
        Some(mut state) if opts.replan => {
            state
                .done
                .retain(|id| fresh.steps.iter().any(|s| &s.id() == id));
            state.plan_digest = fresh.digest();
            state.plan = serde_json::to_value(&fresh)
                .map_err(|e| Error::State(format!("serialising plan: {e}")))?;
            Ok((fresh, state))
        }
        Some(state) => {
            let mut plan: Plan = serde_json::from_value(state.plan.clone()).map_err(|e| {
                Error::State(format!(
                    "{}: the stored plan is unreadable ({e}); move the file away and rerun",
                    state_path(&opts.root).display()
                ))
            })?;
            let complete = plan.steps.iter().all(|s| state.done.contains(&s.id()));
            if !complete && !opts.resume {
                let next = plan
                    .steps
                    .iter()
                    .find(|s| !state.done.contains(&s.id()))
                    .map(Step::id)
                    .unwrap_or_default();
                return Err(Error::Interrupted(next));
            }
            if !complete && fresh.digest() != state.plan_digest {
                plan.warnings.push(
                    "the settings or the machine changed since the interrupted run; finishing the \
                     plan it started (rerun with --resume --replan to plan again)"
                        .into(),
                );
            }
            Ok((plan, state))
        }
    }
}

/// Runs the steps not yet done, with any backend.
pub fn execute(
    opts: &Options,
    plan: &Plan,
    mut state: State,
    backend: &mut dyn Backend,
    progress: &mut dyn Progress,
) -> Result<Report, Error> {
    let t0 = Instant::now();
    progress.backend(&backend.describe());
    for w in &plan.warnings {
        progress.warning(w);
    }
    let total = plan.steps.len();
    let mut report = Report {
        steps_run: 0,
        steps_skipped: 0,
        warnings: plan.warnings.clone(),
        elapsed: Duration::ZERO,
    };
    for (i, step) in plan.steps.iter().enumerate() {
        let id = step.id();
        let desc = step.describe(plan);
        if state.done.contains(&id) {
            progress.step_skipped(i + 1, total, &desc);
            report.steps_skipped += 1;
            continue;
        }
        progress.step_started(i + 1, total, &desc);
        let t = Instant::now();
        let ctx = Ctx {
            plan,
            hooks: &opts.hooks,
            step: id.clone(),
        };
        let limit = time_limit(plan, step);
        let watchdog = {
            let (root, what) = (opts.root.clone(), format!("step {id} ({desc})"));
            Watchdog::start(limit, move || {
                let why = format!("{what} did not finish within {} s", limit.as_secs());
                let _ = crate::util::write_atomic(
                    &failure_path(&root),
                    format!("{why}\n").as_bytes(),
                    0o644,
                );
                let shown = crate::notice::publish(&root, &why).unwrap_or_else(|_| why.clone());
                eprintln!("\nfirstboot: {shown}");
            })
        };
        let result = ctx
            .point("begin")
            .and_then(|()| run_step(backend, &ctx, step))
            .and_then(|notes| ctx.point("end").map(|()| notes));
        drop(watchdog);
        let notes = match result {
            Ok(n) => n,
            Err(e) => {
                let msg = format!("step {id} ({desc}) failed: {e}\n");
                let _ = crate::util::write_atomic(&failure_path(&opts.root), msg.as_bytes(), 0o644);
                let _ =
                    crate::notice::publish(&opts.root, &format!("step {id} ({desc}) failed: {e}"));
                let _ = state.save(&opts.root);
                return Err(Error::StepFailed {
                    step: id,
                    what: desc,
                    cause: Box::new(e),
                });
            }
        };
        for n in &notes {
            report.warnings.push(n.clone());
        }
        state.done.push(id);
        state.save(&opts.root)?;
        report.steps_run += 1;
        progress.step_done(i + 1, total, &notes, t.elapsed());
    }
    let fail = failure_path(&opts.root);
    if fail.exists() {
        std::fs::remove_file(&fail).map_err(|e| Error::io("removing", &fail, e))?;
    }
    crate::notice::clear(&opts.root)?;
    crate::util::write_atomic(
        &done_marker(&opts.root),
        format!("{}\n", state.plan_digest).as_bytes(),
        0o644,
    )?;
    report.elapsed = t0.elapsed();
    Ok(report)
}

fn run_step(backend: &mut dyn Backend, ctx: &Ctx<'_>, step: &Step) -> Result<Notes, Error> {
    match step {
        Step::InitStore => backend.init_store(ctx),
        Step::DefaultKernel { version } => backend.set_global(ctx, "default_kernel", version),
        Step::VmPool => backend.ensure_pool(ctx, &ctx.plan.pool),
        Step::Template { name } | Step::Qube { name } => {
            let spec = ctx
                .plan
                .qube(name)
                .ok_or_else(|| Error::State(format!("the plan has no qube {name}")))?;
            backend.ensure_qube(ctx, spec)
        }
        Step::GlobalProperty { property, value } => backend.set_global(ctx, property, value),
        Step::Start { name } => backend.start(ctx, name),
    }
}
