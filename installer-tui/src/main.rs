//! `installer-tui`: the interactive installer, or with `--answers FILE` an
//! unattended install. Argument parsing, terminal handling and printing
//! only; the work is in the library.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use crossterm::ExecutableCommand;
use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use zeroize::Zeroizing;

use installer_tui::answers::{Answers, find_answers, reference_markdown};
use installer_tui::app::{self, Command, Msg, State};
use installer_tui::engine::{self, DiskTarget, MachineData, Payload};
use installer_tui::launch::{self, Install, LOCK_PATH, Mode, Outcome, launch};
use installer_tui::secrets::{Secrets, hash_password};
use partitioner::secret::Passphrase;

#[derive(Parser)]
#[command(name = "installer-tui", about = "Install Bulkhead onto a whole disk")]
struct Cli {
    /// Unattended install from this answer file (TOML; see ANSWERS.md).
    /// Without it, `bulkhead.answers=PATH` on the kernel command line or
    /// answers.toml on the boot medium is used when present.
    #[arg(long, value_name = "FILE")]
    answers: Option<PathBuf>,
    /// Check everything and print the plan; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Read the machine from a recorded fixture instead (DIR/hcl: an
    /// hcl-check capture; DIR/disks/root and DIR/disks/lsblk.json: the
    /// partitioner's discovery). Implies --dry-run.
    #[arg(long, value_name = "DIR")]
    fixture: Option<PathBuf>,
    /// The system to install: a directory or a squashfs image.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/bulkhead/medium/live/payload.squashfs"
    )]
    payload: PathBuf,
    /// The qube template image (squashfs) firstboot clones for every qube.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/bulkhead/medium/live/template.squashfs"
    )]
    template: PathBuf,
    /// Install without a qube template (firstboot then creates empty root
    /// volumes and says so).
    #[arg(long, conflicts_with = "template")]
    no_template: bool,
    /// Where the boot medium is mounted (looked at for answers.toml).
    #[arg(long, value_name = "DIR", default_value = "/run/bulkhead/medium")]
    medium: PathBuf,
    /// Where the target is mounted during the install.
    #[arg(long, value_name = "DIR", default_value = "/mnt/bulkhead")]
    mountpoint: PathBuf,
    /// Fixed argon2id memory in KiB instead of cryptsetup's benchmark (tests
    /// and very small machines; weakens the key slot).
    #[arg(long, value_name = "KIB", requires = "pbkdf_iterations", hide = true)]
    pbkdf_memory: Option<u32>,
    /// Fixed argon2id iterations (with --pbkdf-memory).
    #[arg(long, value_name = "N", requires = "pbkdf_memory", hide = true)]
    pbkdf_iterations: Option<u32>,
    /// Print the answer-file reference (Markdown) and exit.
    #[arg(long)]
    answers_reference: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("installer-tui: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    if cli.answers_reference {
        print!("{}", reference_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    let dry_run = cli.dry_run || cli.fixture.is_some();
    let answers_path = cli.answers.clone().or_else(|| {
        if cli.fixture.is_some() {
            return None;
        }
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        find_answers(&cmdline, &cli.medium)
    });
    let machine = || -> Result<MachineData> {
        Ok(match &cli.fixture {
            Some(d) => MachineData::fixture(d)?,
            None => MachineData::live()?,
        })
    };
    match answers_path {
        Some(p) => unattended(&cli, &p, machine()?, dry_run),
        None => interactive(&cli, machine()?, dry_run),
    }
}

/// The template to install, checked before anything is written.
fn template(cli: &Cli) -> Result<Option<PathBuf>> {
    if cli.no_template {
        return Ok(None);
    }
    if !cli.template.is_file() {
        bail!(
            "the qube template {} is missing; give its path with --template PATH, or install without one with --no-template; nothing was written",
            cli.template.display()
        );
    }
    Ok(Some(cli.template.clone()))
}

fn pbkdf(cli: &Cli, machine: &MachineData) -> partitioner::luks::Pbkdf {
    match (cli.pbkdf_memory, cli.pbkdf_iterations) {
        (Some(memory_kib), Some(iterations)) => partitioner::luks::Pbkdf::Fixed {
            iterations,
            memory_kib,
            parallel_threads: 1,
        },
        _ => partitioner::luks::Pbkdf::for_machine(
            machine.inventory.memory_bytes,
            machine.inventory.cpus,
        ),
    }
}

fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let buf =
        partitioner::secret::read_secret(path).with_context(|| format!("reading the {what}"))?;
    if buf.is_empty() {
        bail!("{} is empty: give a {what}", path.display());
    }
    Ok(buf)
}

fn secrets(a: &Answers) -> Result<Secrets> {
    let passphrase = match &a.disk.passphrase_file {
        Some(p) => Passphrase::new(read_secret_file(p, "passphrase")?)?,
        None => Passphrase::from_tty(&a.disk.device)?,
    };
    let password = match &a.user.password_file {
        Some(p) => read_secret_file(p, "password")?,
        None => {
            let one = Zeroizing::new(
                rpassword::prompt_password(format!("Password for {}: ", a.user.name))?.into_bytes(),
            );
            let two = Zeroizing::new(
                rpassword::prompt_password("The same password again: ")?.into_bytes(),
            );
            if one.is_empty() || *one != *two {
                bail!("the two passwords differ or are empty; nothing was written");
            }
            one
        }
    };
    let password_hash = hash_password(&password)?;
    Ok(Secrets {
        passphrase,
        password_hash,
    })
}

fn unattended(cli: &Cli, path: &Path, machine: MachineData, dry_run: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the answer file {}", path.display()))?;
    let answers = Answers::parse(&text, &path.display().to_string())?;
    for f in [&answers.disk.passphrase_file, &answers.user.password_file]
        .into_iter()
        .flatten()
    {
        if !f.is_file() {
            bail!(
                "{}: the file {} does not exist; nothing was written",
                path.display(),
                f.display()
            );
        }
    }
    if let Outcome::Planned(plan) = launch(&answers, &machine, Mode::DryRun, &mut |_| {})? {
        println!("{plan}");
    }
    if dry_run {
        println!(
            "Dry run: the answer file is valid and the plan above would be applied; nothing was written."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let template = template(cli)?;
    let pbkdf = pbkdf(cli, &machine);
    let mut target = DiskTarget::new(cli.mountpoint.clone(), pbkdf);
    let payload = Payload::at(&cli.payload);
    let log = launch::log_path();
    let started = std::time::Instant::now();
    let mut print = |e: engine::Event| {
        let eta = e
            .eta
            .map(|d| format!(", about {} s left", d.as_secs()))
            .unwrap_or_default();
        eprintln!(
            "[{:>3}%] {}: {} ({} s{eta})",
            e.percent,
            e.stage.title(),
            e.message,
            started.elapsed().as_secs()
        );
    };
    let install = Install {
        secrets: Box::new(|| secrets(&answers).map_err(Into::into)),
        payload: &payload,
        template: template.as_deref(),
        target: &mut target,
        lock: Path::new(LOCK_PATH),
        log: &log,
    };
    launch(&answers, &machine, Mode::Install(install), &mut print)?;
    println!("Bulkhead is installed on {}.", answers.disk.device);
    Ok(ExitCode::SUCCESS)
}

fn interactive(cli: &Cli, machine: MachineData, dry_run: bool) -> Result<ExitCode> {
    if !io::stdout().is_terminal() {
        bail!(
            "the interactive installer needs a terminal; for unattended installs use --answers FILE"
        );
    }
    if !dry_run {
        template(cli)?;
    }
    let mut state = State::new(machine, dry_run);
    state.ascii = app::ascii_terminal(&std::env::var("TERM").unwrap_or_default());
    if cli.fixture.is_none() {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        state.xen_args = installer_tui::answers::boot_args_from_cmdline(&cmdline, "xen_args");
        state.dom0_args = installer_tui::answers::boot_args_from_cmdline(&cmdline, "dom0_args");
    }
    state.log_path = launch::log_path().display().to_string();
    enable_raw_mode().context("switching the terminal to raw mode")?;
    io::stdout().execute(EnterAlternateScreen)?;
    // A panic must not leave the console raw and on the alternate screen:
    // restore it first, then report as usual.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        disable_raw_mode().ok();
        io::stdout().execute(LeaveAlternateScreen).ok();
        report(info);
    }));
    let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let res = event_loop(cli, &mut term, &mut state);
    disable_raw_mode().ok();
    io::stdout().execute(LeaveAlternateScreen).ok();
    let cmd = res?;
    if let Command::Reboot = cmd {
        let by_systemd = std::process::Command::new("systemctl")
            .arg("reboot")
            .status()
            .is_ok_and(|s| s.success());
        if !by_systemd {
            std::process::Command::new("reboot").status().context(
                "rebooting: neither `systemctl reboot` nor `reboot` worked; reboot by hand",
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn event_loop(
    cli: &Cli,
    term: &mut Terminal<CrosstermBackend<io::Stdout>>,
    state: &mut State,
) -> Result<Command> {
    let (tx, rx) = mpsc::channel::<Msg>();
    loop {
        term.draw(|f| installer_tui::ui::render(state, f))?;
        while let Ok(m) = rx.try_recv() {
            app::update(state, m);
        }
        if !event::poll(Duration::from_millis(100))? {
            continue;
        }
        let TermEvent::Key(k) = event::read()? else {
            continue;
        };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        match app::update(state, Msg::Key(k)) {
            Command::None => {}
            Command::Quit => return Ok(Command::Quit),
            Command::Reboot => return Ok(Command::Reboot),
            Command::Install(b) => {
                let (answers, secrets) = *b;
                let machine = state.machine.clone();
                let pbkdf = pbkdf(cli, &machine);
                let tx = tx.clone();
                let payload = Payload::at(&cli.payload);
                let template = template(cli).ok().flatten();
                let mountpoint = cli.mountpoint.clone();
                let dry = state.dry_run;
                let log_path = PathBuf::from(&state.log_path);
                std::thread::spawn(move || {
                    let mut target = (!dry).then(|| DiskTarget::new(mountpoint, pbkdf));
                    let mode = match &mut target {
                        None => Mode::DryRun,
                        Some(target) => Mode::Install(Install {
                            secrets: Box::new(move || Ok(secrets)),
                            payload: &payload,
                            template: template.as_deref(),
                            target,
                            lock: Path::new(LOCK_PATH),
                            log: &log_path,
                        }),
                    };
                    let mut send = |e: engine::Event| {
                        let _ = tx.send(Msg::Progress(e));
                    };
                    let result = launch(&answers, &machine, mode, &mut send)
                        .map(|_| ())
                        .map_err(|e| e.failure());
                    let _ = tx.send(Msg::Finished(result));
                });
            }
        }
    }
}
