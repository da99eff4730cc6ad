//! `partitioner`: list disks, print a plan, apply it, show an apply's state.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use partitioner::apply::{self, Event, Options, Progress};
use partitioner::luks::Pbkdf;
use partitioner::recheck::check_apply_resuming;
use partitioner::secret::Passphrase;
use partitioner::{Plan, discover_system};

#[derive(Parser)]
#[command(
    name = "partitioner",
    about = "Bulkhead's whole-disk installer partitioning"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show every whole disk, what is on it and whether it is in use.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Compute and print the layout for DISK; writes nothing.
    Plan {
        #[arg(long, value_name = "DEV")]
        disk: String,
        #[arg(long)]
        json: bool,
    },
    /// Erase DISK and apply the plan (resumes an interrupted run).
    Apply {
        #[arg(long, value_name = "DEV")]
        disk: String,
        /// Consent: must name the same disk as --disk.
        #[arg(long, value_name = "DEV")]
        erase: String,
        /// A plan saved with `plan --json` (default: plan now).
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Read the passphrase from FILE (`-` = stdin) instead of the terminal.
        #[arg(long, value_name = "PATH")]
        passphrase_file: Option<PathBuf>,
        /// Ignore the journal of an interrupted run and start over.
        #[arg(long)]
        restart: bool,
        /// Close LVM and LUKS when done (default: leave open for the installer).
        #[arg(long)]
        close: bool,
        /// Fixed argon2id memory in KiB instead of cryptsetup's benchmark
        /// (for tests and very small machines; weakens the key slot).
        #[arg(long, value_name = "KIB", requires = "pbkdf_iterations")]
        pbkdf_memory: Option<u32>,
        /// Fixed argon2id iterations (with --pbkdf-memory).
        #[arg(long, value_name = "N", requires = "pbkdf_memory")]
        pbkdf_iterations: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Open an installed disk: unlock LUKS2 and activate qubes_dom0.
    Open {
        #[arg(long, value_name = "DEV")]
        disk: String,
        #[arg(long, value_name = "PATH")]
        passphrase_file: Option<PathBuf>,
    },
    /// Deactivate qubes_dom0 and close LUKS2 of an installed disk.
    Close {
        #[arg(long, value_name = "DEV")]
        disk: String,
    },
    /// Benchmark LUKS2 format: ours vs `cryptsetup luksFormat` (for `cargo xtask bench`).
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    BenchFormat {
        /// Directory for the scratch file (64 MiB).
        #[arg(long, default_value = "/tmp")]
        dir: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 65536)]
        memory_kib: u32,
        #[arg(long, default_value_t = 4)]
        iterations: u32,
    },
    /// Open one LUKS2 device as /dev/mapper/NAME, nothing else (benchmarks).
    #[command(hide = true)]
    LuksOpen {
        #[arg(long)]
        device: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "PATH")]
        passphrase_file: PathBuf,
    },
    /// What an apply did to DISK so far (reads its journal).
    Status {
        #[arg(long, value_name = "DEV")]
        disk: String,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("partitioner: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress(p: &Progress) {
    match &p.event {
        Event::Started => eprintln!(
            "[{}/{}] {}: {} ...",
            p.index,
            p.total,
            p.step.name(),
            p.step.describe()
        ),
        Event::Skipped | Event::Done { .. } => {
            eprintln!("[{}/{}] {}: {}", p.index, p.total, p.step.name(), p.event)
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List { json } => {
            let inv = discover_system().context("discovering disks")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inv)?);
            } else {
                print!("{}", partitioner::present::render_list(&inv));
            }
        }
        Cmd::Plan { disk, json } => {
            let inv = discover_system().context("discovering disks")?;
            let plan = Plan::new(&inv, &disk)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{plan}");
            }
        }
        Cmd::Open {
            disk,
            passphrase_file,
        } => {
            let pass = match &passphrase_file {
                Some(p) => Passphrase::from_file(p)?,
                None => Passphrase::from_tty_once(&disk)?,
            };
            let mapper = apply::open_installed(Path::new(&disk), &pass)?;
            println!("{disk}: open as {mapper}, volume group qubes_dom0 active");
        }
        Cmd::Close { disk } => {
            apply::close_installed(Path::new(&disk))?;
            println!("{disk}: closed");
        }
        #[cfg(feature = "bench")]
        Cmd::BenchFormat {
            dir,
            runs,
            memory_kib,
            iterations,
        } => {
            let r = partitioner::bench::luks_format(&dir, runs, memory_kib, iterations)
                .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Cmd::LuksOpen {
            device,
            name,
            passphrase_file,
        } => {
            let pass = Passphrase::from_file(&passphrase_file)?;
            partitioner::luks::open(&device, &name, pass.expose())?;
        }
        Cmd::Status { disk } => match apply::status(Path::new(&disk))? {
            None => println!(
                "{disk}: no apply journal (never applied, or GRUB has since been installed)"
            ),
            Some(j) => {
                println!("{disk}: plan for disk GUID {}", j.plan.disk_guid);
                println!("{}", apply::describe_state(&j.done));
            }
        },
        Cmd::Apply {
            disk,
            erase,
            plan,
            passphrase_file,
            restart,
            close,
            pbkdf_memory,
            pbkdf_iterations,
            json,
        } => {
            let inv = discover_system().context("discovering disks")?;
            let journal = if restart {
                None
            } else {
                apply::status(Path::new(&disk)).ok().flatten()
            };
            let plan = match (&plan, &journal) {
                (_, Some(j)) => {
                    eprintln!(
                        "{disk} holds the journal of an earlier apply ({} of {} steps done): resuming its plan",
                        j.done.len(),
                        apply::STEPS.len()
                    );
                    j.plan.clone()
                }
                (Some(p), None) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    let plan = serde_json::from_str::<Plan>(&text)
                        .with_context(|| format!("parsing the plan {}", p.display()))?;
                    plan.validate().map_err(|m| {
                        anyhow::anyhow!("the plan {} is not valid: {m}", p.display())
                    })?;
                    plan
                }
                (None, None) => Plan::new(&inv, &disk)?,
            };
            if plan.disk.path.trim_start_matches("/dev/") != disk.trim_start_matches("/dev/") {
                bail!(
                    "the plan is for {}, not {disk}; make a plan for {disk}",
                    plan.disk.path
                );
            }
            let own = journal.as_ref().map(|j| j.plan.luks.mapper_name.as_str());
            let target = check_apply_resuming(&plan, &inv, &erase, own)?;
            eprint!("{plan}");
            if journal.is_some() {
                eprintln!("Resuming on {}", target.describe());
            } else {
                eprintln!("Erasing {}", target.describe());
            }
            let pass = match &passphrase_file {
                Some(p) => Passphrase::from_file(p)?,
                None => Passphrase::from_tty(&target.path)?,
            };
            let pbkdf = match (pbkdf_memory, pbkdf_iterations) {
                (Some(m), Some(i)) => Pbkdf::Fixed {
                    iterations: i,
                    memory_kib: m,
                    parallel_threads: 1,
                },
                _ => Pbkdf::for_machine(inv.memory_bytes, inv.cpus),
            };
            let mut report = progress;
            let out = apply::run(
                &plan,
                Path::new(&target.path),
                &pass,
                Options {
                    pbkdf,
                    restart,
                    stop_after: None,
                    close,
                    progress: &mut report,
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{} is ready in {:.1} s{}: LUKS2 {} open as {}, root {}, swap {}",
                    target.path,
                    out.seconds,
                    if out.resumed { " (resumed)" } else { "" },
                    out.plan.luks.uuid,
                    out.mapper,
                    out.root,
                    out.swap
                );
            }
        }
    }
    Ok(())
}
