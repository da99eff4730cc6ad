//! `firstboot`: creates the qubes at the installed system's first boot,
//! showing progress on the console; `firstboot ls` lists them, `firstboot
//! plan` shows what would be done.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use firstboot::adminapi::AdminApi;
use firstboot::backend::{Backend, Hooks, Notes};
use firstboot::offline::Offline;
use firstboot::run::{self, Options, Progress, StorageMode};
use firstboot::storage::Recorded;

#[derive(Parser)]
#[command(
    name = "firstboot",
    version,
    about = "Creates the templates, service qubes and default qubes at first boot"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// System root to work on (default `/`); with a directory, the offline
    /// backend writes DIR/var/lib/qubes/qubes.xml and, when no volume group
    /// is reachable, records the volumes instead of creating them.
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    /// Finish an interrupted first boot (completed steps are not redone).
    #[arg(long)]
    resume: bool,
    /// With --resume: plan again from the current settings instead of
    /// finishing the interrupted run's plan.
    #[arg(long)]
    replan: bool,
    /// Where the qubes are made: directly (offline, first boot) or through a
    /// running qubesd's Admin API.
    #[arg(long, value_enum, global = true, default_value_t = BackendArg::Offline)]
    backend: BackendArg,
    /// qubesd's socket, for --backend admin-api.
    #[arg(long, global = true, default_value = firstboot::adminapi::QUBESD_SOCKET)]
    socket: PathBuf,
    /// How to make the volumes.
    #[arg(long, value_enum, default_value_t = StorageArg::Auto)]
    storage: StorageArg,
    /// The lvm binary.
    #[arg(long, default_value = "lvm")]
    lvm: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the qubes like qvm-ls: NAME, CLASS, LABEL, TEMPLATE, NETVM, STATE.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show the steps first boot would take, without doing anything.
    Plan {
        #[arg(long)]
        json: bool,
    },
    /// After the unit stopped (its ExecStopPost): when first boot did not
    /// finish, say so at the login prompts with the command that resumes.
    #[command(hide = true)]
    Stopped,
    /// The settings file's reference (Markdown), or with --defaults the
    /// defaults as TOML.
    Settings {
        #[arg(long)]
        defaults: bool,
    },
    /// Time creating the default qubes with the offline backend (JSON report).
    #[cfg(feature = "bench")]
    Bench {
        /// Scratch directory for the benchmark's root.
        #[arg(long, default_value = "/tmp")]
        workdir: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Write qubes.xml, xl configs and volumes directly.
    Offline,
    /// Talk to qubesd over its Admin API socket.
    AdminApi,
}

#[derive(Clone, Copy, ValueEnum)]
enum StorageArg {
    /// LVM when the volume group is reachable, else (with --root) a record.
    Auto,
    /// LVM or fail.
    Lvm,
    /// Only record the volumes (with --root).
    Record,
}

/// Progress lines on stderr (the console under systemd).
struct Console;

impl Progress for Console {
    fn backend(&mut self, d: &str) {
        eprintln!("firstboot: {d}");
    }
    fn warning(&mut self, m: &str) {
        eprintln!("firstboot: warning: {m}");
    }
    fn step_started(&mut self, i: usize, n: usize, d: &str) {
        eprint!("[{i:>2}/{n}] {d} ... ");
        let _ = std::io::stderr().flush();
    }
    fn step_skipped(&mut self, i: usize, n: usize, d: &str) {
        eprintln!("[{i:>2}/{n}] {d} ... already done");
    }
    fn step_done(&mut self, _i: usize, _n: usize, notes: &Notes, t: Duration) {
        eprintln!("done ({:.2} s)", t.as_secs_f64());
        for note in notes {
            eprintln!("        note: {note}");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!();
            eprintln!("firstboot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.cmd {
        Some(Cmd::Ls { json }) => {
            // Listing never creates storage: it reads qubes.xml only.
            let dir = cli.root.join(firstboot::offline::STATE_DIR);
            let mut b = Offline::new(
                &cli.root,
                Box::new(Recorded::new(
                    dir.join("volumes.list"),
                    dir.join("actions.log"),
                )),
            );
            let rows = b.list().context("listing the qubes")?;
            let out = if json {
                firstboot::ls::json(&rows)
            } else {
                firstboot::ls::table(&rows)
            };
            print!("{out}");
            Ok(())
        }
        Some(Cmd::Plan { json }) => {
            let plan = run::plan_for(&cli.root).context("computing the plan")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                for w in &plan.warnings {
                    println!("warning: {w}");
                }
                for (i, s) in plan.steps.iter().enumerate() {
                    println!("{:>2}. {:<28} {}", i + 1, s.id(), s.describe(&plan));
                }
            }
            Ok(())
        }
        Some(Cmd::Stopped) => {
            let result = std::env::var("SERVICE_RESULT").unwrap_or_default();
            if let Some(why) = run::unfinished(&cli.root, &result) {
                let shown = firstboot::notice::publish(&cli.root, &why)?;
                eprint!("firstboot: {shown}");
            }
            Ok(())
        }
        Some(Cmd::Settings { defaults }) => {
            if defaults {
                print!(
                    "{}",
                    toml::to_string(&firstboot::settings::Settings::default())?
                );
            } else {
                print!("{}", firstboot::settings::reference_markdown());
            }
            Ok(())
        }
        #[cfg(feature = "bench")]
        Some(Cmd::Bench { workdir }) => {
            let r = firstboot::bench::offline(&workdir).context("running the benchmark")?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        None => {
            let opts = Options {
                root: cli.root.clone(),
                resume: cli.resume || cli.replan,
                replan: cli.replan,
                storage: match cli.storage {
                    StorageArg::Auto => StorageMode::Auto,
                    StorageArg::Lvm => StorageMode::Lvm,
                    StorageArg::Record => StorageMode::Record,
                },
                lvm: cli.lvm,
                hooks: Hooks::from_env(),
            };
            if run::done_marker(&opts.root).exists() && run::State::load(&opts.root)?.is_some() {
                let (plan, state) = run::prepare(&opts)?;
                if plan.steps.iter().all(|s| state.done.contains(&s.id())) {
                    eprintln!(
                        "firstboot: already complete ({} exists)",
                        run::done_marker(&opts.root).display()
                    );
                    return Ok(());
                }
            }
            let report = match cli.backend {
                BackendArg::Offline => run::run(&opts, &mut Console)?,
                BackendArg::AdminApi => {
                    let (plan, state) = run::prepare(&opts)?;
                    let storage = run::open_storage(&opts, &plan.pool.volume_group)?;
                    let mut b = AdminApi::new(&cli.socket, storage);
                    run::execute(&opts, &plan, state, &mut b, &mut Console)?
                }
            };
            eprintln!(
                "firstboot: complete: {} steps run, {} already done, {:.2} s",
                report.steps_run,
                report.steps_skipped,
                report.elapsed.as_secs_f64()
            );
            Ok(())
        }
    }
}
