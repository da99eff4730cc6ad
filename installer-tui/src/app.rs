//! The installer's state and its one `update` function (the ratatui
//! state/update/view pattern): key presses and engine events become
//! [`Msg`]s; [`update`] changes the [`State`] and returns the one [`Command`]
//! the caller must carry out. Only the erase-confirmation screen can return
//! [`Command::Install`], and only when the disk's name was typed exactly.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use partitioner::discover::DiskInfo;
use partitioner::secret::Passphrase;
use partitioner::{Plan, Refusal};
use zeroize::Zeroizing;

use crate::answers::{
    Answers, DiskAnswers, HardwareAnswers, KEYBOARDS, LANGUAGES, QubesAnswers, SystemAnswers,
    TIMEZONES, UserAnswers, check_hostname, check_user_name,
};
use crate::engine::{Event, MachineData, Stage, needs_consent};
use crate::secrets::{Secrets, hash_password};
use hcl_check::Status;

/// The screens, in the order the person meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Welcome,
    Locale,
    Hardware,
    Disk,
    Passphrase,
    User,
    Timezone,
    Qubes,
    Summary,
    Confirm,
    Progress,
    Done,
    Error,
}

/// The screens before the install, for "step N of M" and going back.
pub const WIZARD: [Screen; 10] = [
    Screen::Welcome,
    Screen::Locale,
    Screen::Hardware,
    Screen::Disk,
    Screen::Passphrase,
    Screen::User,
    Screen::Timezone,
    Screen::Qubes,
    Screen::Summary,
    Screen::Confirm,
];

impl Screen {
    pub fn title(self) -> &'static str {
        match self {
            Screen::Welcome => "Welcome",
            Screen::Locale => "Language and keyboard",
            Screen::Hardware => "Hardware check",
            Screen::Disk => "Installation disk",
            Screen::Passphrase => "Disk encryption passphrase",
            Screen::User => "dom0 user and host name",
            Screen::Timezone => "Time zone",
            Screen::Qubes => "Default qubes",
            Screen::Summary => "Summary",
            Screen::Confirm => "Confirm erasing the disk",
            Screen::Progress => "Installing",
            Screen::Done => "Installation complete",
            Screen::Error => "Installation failed",
        }
    }
    pub fn step(self) -> Option<usize> {
        WIZARD.iter().position(|s| *s == self).map(|i| i + 1)
    }
}

/// Input messages.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Progress(Event),
    /// The engine finished.
    Finished(Result<(), Failure>),
}

/// A failed install as the screens take it: the stage, what failed there,
/// and, when the disk was refused only at apply time, the same [`Refusal`]
/// the disk screen shows for a disk refused at plan time.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub stage: Stage,
    pub message: String,
    pub refusal: Option<Refusal>,
}

impl From<(Stage, String)> for Failure {
    fn from((stage, message): (Stage, String)) -> Self {
        Failure {
            stage,
            message,
            refusal: None,
        }
    }
}

/// What the caller must do after an update.
#[derive(Debug)]
pub enum Command {
    None,
    /// Start the engine with these (validated) answers and secrets.
    Install(Box<(Answers, Secrets)>),
    Quit,
    Reboot,
}

/// One disk as the disk screen shows it.
#[derive(Debug, Clone)]
pub struct DiskChoice {
    pub disk: DiskInfo,
    /// Why it cannot be chosen.
    pub refusal: Option<Refusal>,
}

/// Everything on screen.
pub struct State {
    pub screen: Screen,
    pub machine: MachineData,
    pub dry_run: bool,
    /// Draw with ASCII only (terminals without line drawing, e.g. vt100).
    pub ascii: bool,
    /// Validation message for the current screen.
    pub message: Option<String>,
    /// Focused field or row on the current screen.
    pub focus: usize,
    pub language: usize,
    pub keyboard: usize,
    pub hw_cursor: usize,
    pub accepted: Vec<String>,
    pub disks: Vec<DiskChoice>,
    pub disk_cursor: usize,
    pub pass: [Zeroizing<String>; 2],
    pub user_name: String,
    pub full_name: String,
    pub hostname: String,
    pub password: [Zeroizing<String>; 2],
    pub tz_cursor: usize,
    pub qubes: QubesAnswers,
    pub plan: Option<Plan>,
    pub confirm: String,
    /// Summary scroll offset (lines).
    pub scroll: u16,
    pub percent: u8,
    pub eta_secs: Option<u64>,
    pub stage: Option<Stage>,
    pub log: Vec<String>,
    pub failure: Option<(Stage, String)>,
    pub log_path: String,
    /// Extra Xen arguments (`bulkhead.xen_args=` on the live command line).
    pub xen_args: String,
    /// Extra dom0 kernel arguments (`bulkhead.dom0_args=`).
    pub dom0_args: String,
}

impl State {
    pub fn new(machine: MachineData, dry_run: bool) -> Self {
        let disks = machine
            .inventory
            .disks
            .iter()
            .map(|d| DiskChoice {
                disk: d.clone(),
                refusal: partitioner::refuse::check_target(&machine.inventory, &d.path).err(),
            })
            .collect::<Vec<_>>();
        let disk_cursor = disks.iter().position(|d| d.refusal.is_none()).unwrap_or(0);
        State {
            screen: Screen::Welcome,
            machine,
            dry_run,
            ascii: false,
            message: None,
            focus: 0,
            language: 0,
            keyboard: 0,
            hw_cursor: 0,
            accepted: Vec::new(),
            disks,
            disk_cursor,
            pass: Default::default(),
            user_name: String::new(),
            full_name: String::new(),
            hostname: "dom0".into(),
            password: Default::default(),
            tz_cursor: 0,
            qubes: QubesAnswers::default(),
            plan: None,
            confirm: String::new(),
            scroll: 0,
            percent: 0,
            eta_secs: None,
            stage: None,
            log: Vec::new(),
            failure: None,
            log_path: "/tmp/bulkhead-install.log".into(),
            xen_args: String::new(),
            dom0_args: String::new(),
        }
    }

    pub fn selected_disk(&self) -> Option<&DiskChoice> {
        self.disks.get(self.disk_cursor)
    }

    /// The answers the screens hold (secrets are separate).
    pub fn answers(&self) -> Answers {
        let dev = self
            .selected_disk()
            .map(|d| d.disk.path.clone())
            .unwrap_or_default();
        Answers {
            disk: DiskAnswers {
                device: dev.clone(),
                erase: if self.confirm == dev {
                    dev
                } else {
                    self.confirm.clone()
                },
                passphrase_file: None,
            },
            system: SystemAnswers {
                language: LANGUAGES[self.language].0.into(),
                keyboard: KEYBOARDS[self.keyboard].0.into(),
                timezone: TIMEZONES[self.tz_cursor].into(),
                hostname: self.hostname.clone(),
                xen_args: self.xen_args.clone(),
                dom0_args: self.dom0_args.clone(),
            },
            user: UserAnswers {
                name: self.user_name.clone(),
                full_name: self.full_name.clone(),
                password_file: None,
            },
            qubes: self.qubes.clone(),
            hardware: HardwareAnswers {
                accept_warnings: self.accepted.clone(),
            },
        }
    }

    /// Whether the hardware allows going on: no fail, every warning accepted.
    pub fn hardware_ok(&self) -> Result<(), String> {
        let r = &self.machine.report;
        if let Some(v) = r.verdicts.iter().find(|v| v.status == Status::Fail) {
            return Err(format!(
                "{} fails: {}. Bulkhead cannot be installed on this machine.",
                v.requirement, v.reason
            ));
        }
        let open: Vec<&str> = needs_consent(r)
            .into_iter()
            .filter(|id| !self.accepted.iter().any(|a| a == id))
            .collect();
        if !open.is_empty() {
            return Err(format!(
                "Accept each warning with Space first (or go back with Esc): {}",
                open.join(", ")
            ));
        }
        Ok(())
    }

    fn go(&mut self, s: Screen) {
        self.screen = s;
        self.scroll = 0;
        self.focus = 0;
        self.message = None;
    }

    fn back(&mut self) {
        if let Some(i) = WIZARD.iter().position(|s| *s == self.screen)
            && i > 0
        {
            self.go(WIZARD[i - 1]);
        }
    }

    /// Leaves the current wizard screen forward if its input is valid.
    fn next(&mut self) -> Command {
        match self.screen {
            Screen::Welcome => self.go(Screen::Locale),
            Screen::Locale => self.go(Screen::Hardware),
            Screen::Hardware => match self.hardware_ok() {
                Ok(()) => self.go(Screen::Disk),
                Err(m) => self.message = Some(m),
            },
            Screen::Disk => match self.selected_disk() {
                Some(DiskChoice { refusal: None, .. }) => self.go(Screen::Passphrase),
                Some(DiskChoice {
                    refusal: Some(r), ..
                }) => self.message = Some(format!("This disk cannot be used: {r}")),
                None => self.message = Some("No disk found to install onto.".into()),
            },
            Screen::Passphrase => {
                if self.pass[0].is_empty() {
                    self.message = Some(
                        "Enter a passphrase: an empty one would leave the disk unprotected.".into(),
                    );
                } else if *self.pass[0] != *self.pass[1] {
                    self.message =
                        Some("The two passphrases differ; type the same one twice.".into());
                    self.focus = 1;
                } else {
                    self.go(Screen::User)
                }
            }
            Screen::User => {
                if let Err(m) = check_user_name(&self.user_name) {
                    self.message = Some(format!("User name: {m}"));
                    self.focus = 0;
                } else if self.full_name.contains(':') {
                    self.message = Some("Full name: must not contain ':'".into());
                    self.focus = 1;
                } else if self.password[0].is_empty() {
                    self.message = Some("Enter a password for the user.".into());
                    self.focus = 2;
                } else if *self.password[0] != *self.password[1] {
                    self.message =
                        Some("The two passwords differ; type the same one twice.".into());
                    self.focus = 3;
                } else if let Err(m) = check_hostname(&self.hostname) {
                    self.message = Some(format!("Host name: {m}"));
                    self.focus = 4;
                } else {
                    self.go(Screen::Timezone)
                }
            }
            Screen::Timezone => self.go(Screen::Qubes),
            Screen::Qubes => {
                let dev = self.answers().disk.device;
                match Plan::new(&self.machine.inventory, &dev) {
                    Ok(p) => {
                        self.plan = Some(p);
                        self.go(Screen::Summary)
                    }
                    Err(r) => self.message = Some(r.to_string()),
                }
            }
            Screen::Summary => {
                self.confirm.clear();
                self.go(Screen::Confirm)
            }
            Screen::Confirm => return self.confirmed(),
            Screen::Progress => {}
            Screen::Done => {
                return if self.dry_run {
                    Command::Quit
                } else {
                    Command::Reboot
                };
            }
            Screen::Error => {
                if let Some(r) = self.selected_disk().and_then(|d| d.refusal.clone()) {
                    // The disk was refused while installing: choose again.
                    self.go(Screen::Disk);
                    self.message = Some(r.to_string());
                } else {
                    // Retry: through the confirmation again.
                    self.confirm.clear();
                    self.go(Screen::Confirm)
                }
            }
        }
        Command::None
    }

    /// Enter on the confirmation screen.
    fn confirmed(&mut self) -> Command {
        let dev = self.answers().disk.device;
        if self.confirm != dev {
            self.message = Some(format!(
                "Type {dev} exactly to erase it, or press Esc to go back."
            ));
            return Command::None;
        }
        let answers = self.answers();
        if let Some(p) = answers.problems().into_iter().next() {
            self.message = Some(format!("{}: {}", p.field, p.message));
            return Command::None;
        }
        let passphrase = match Passphrase::confirmed(
            Zeroizing::new(self.pass[0].as_bytes().to_vec()),
            Zeroizing::new(self.pass[1].as_bytes().to_vec()),
        ) {
            Ok(p) => p,
            Err(e) => {
                self.message = Some(e.to_string());
                return Command::None;
            }
        };
        let password_hash = match hash_password(self.password[0].as_bytes()) {
            Ok(h) => h,
            Err(e) => {
                self.message = Some(format!("password: {e}"));
                return Command::None;
            }
        };
        self.log.clear();
        self.percent = 0;
        self.failure = None;
        self.go(Screen::Progress);
        Command::Install(Box::new((
            answers,
            Secrets {
                passphrase,
                password_hash,
            },
        )))
    }

    /// The text field in focus, if the screen has one there.
    fn field(&mut self) -> Option<&mut String> {
        match (self.screen, self.focus) {
            (Screen::Passphrase, 0) => Some(&mut self.pass[0]),
            (Screen::Passphrase, 1) => Some(&mut self.pass[1]),
            (Screen::User, 0) => Some(&mut self.user_name),
            (Screen::User, 1) => Some(&mut self.full_name),
            (Screen::User, 2) => Some(&mut self.password[0]),
            (Screen::User, 3) => Some(&mut self.password[1]),
            (Screen::User, 4) => Some(&mut self.hostname),
            (Screen::Confirm, _) => Some(&mut self.confirm),
            _ => None,
        }
    }

    fn fields(&self) -> usize {
        match self.screen {
            Screen::Locale => 2,
            Screen::Passphrase => 2,
            Screen::User => 5,
            Screen::Qubes => 4,
            _ => 1,
        }
    }

    fn move_cursor(&mut self, down: bool) {
        let step = |v: &mut usize, n: usize| {
            if n == 0 {
                return;
            }
            *v = if down {
                (*v + 1).min(n - 1)
            } else {
                v.saturating_sub(1)
            };
        };
        match self.screen {
            Screen::Locale if self.focus == 0 => step(&mut self.language, LANGUAGES.len()),
            Screen::Locale => step(&mut self.keyboard, KEYBOARDS.len()),
            Screen::Hardware => step(&mut self.hw_cursor, self.machine.report.verdicts.len()),
            Screen::Disk => step(&mut self.disk_cursor, self.disks.len()),
            Screen::Timezone => step(&mut self.tz_cursor, TIMEZONES.len()),
            Screen::Summary => {
                self.scroll = if down {
                    self.scroll.saturating_add(1).min(40)
                } else {
                    self.scroll.saturating_sub(1)
                }
            }
            Screen::Passphrase | Screen::User | Screen::Qubes => {
                let n = self.fields();
                step(&mut self.focus, n)
            }
            _ => {}
        }
    }

    fn toggle(&mut self) {
        match self.screen {
            Screen::Hardware => {
                let Some(v) = self.machine.report.verdicts.get(self.hw_cursor) else {
                    return;
                };
                if !matches!(v.status, Status::Warn | Status::Unknown) {
                    self.message = Some(match v.status {
                        Status::Fail => "A failed requirement cannot be accepted.".into(),
                        _ => "This requirement passed; there is nothing to accept.".into(),
                    });
                    return;
                }
                let id = v.id.to_string();
                if let Some(i) = self.accepted.iter().position(|a| *a == id) {
                    self.accepted.remove(i);
                } else {
                    self.accepted.push(id);
                }
                self.message = None;
            }
            Screen::Qubes => {
                let q = &mut self.qubes;
                match self.focus {
                    0 => {
                        q.system_qubes = !q.system_qubes;
                        if !q.system_qubes {
                            q.disposable_sys_net = false;
                        }
                    }
                    1 => q.sys_usb = !q.sys_usb,
                    2 => {
                        if q.system_qubes {
                            q.disposable_sys_net = !q.disposable_sys_net
                        } else {
                            self.message =
                                Some("sys-net is created only with the system qubes.".into());
                        }
                    }
                    _ => q.appvms = !q.appvms,
                }
            }
            _ => {}
        }
    }
}

/// Whether a terminal type needs ASCII-only drawing.
pub fn ascii_terminal(term: &str) -> bool {
    matches!(term, "vt100" | "vt102" | "vt220" | "dumb" | "ansi")
}

/// The one place state changes.
pub fn update(s: &mut State, msg: Msg) -> Command {
    match msg {
        Msg::Progress(e) => {
            s.percent = e.percent;
            s.eta_secs = e.eta.map(|d| d.as_secs());
            s.stage = Some(e.stage);
            s.log.push(e.message);
            Command::None
        }
        Msg::Finished(Ok(())) => {
            if s.screen == Screen::Progress {
                s.percent = 100;
                s.go(Screen::Done);
            }
            Command::None
        }
        Msg::Finished(Err(f)) => {
            if s.screen == Screen::Progress {
                // A disk refused at apply time is refused on the disk
                // screen too, as if the plan had found it.
                if let Some(r) = f.refusal {
                    let cursor = s.disk_cursor;
                    if let Some(d) = s.disks.get_mut(cursor) {
                        d.refusal = Some(r);
                    }
                }
                s.failure = Some((f.stage, f.message));
                s.go(Screen::Error);
            }
            Command::None
        }
        Msg::Key(k) => key(s, k),
    }
}

fn key(s: &mut State, k: KeyEvent) -> Command {
    if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
        return if s.screen == Screen::Progress {
            s.message = Some("The install is running; wait for it to finish.".into());
            Command::None
        } else {
            Command::Quit
        };
    }
    if s.screen == Screen::Progress {
        return Command::None;
    }
    match k.code {
        KeyCode::Esc => {
            match s.screen {
                Screen::Done => {}
                Screen::Error => s.go(Screen::Summary),
                _ => s.back(),
            }
            Command::None
        }
        KeyCode::Enter => s.next(),
        KeyCode::Tab => {
            let n = s.fields();
            s.focus = (s.focus + 1) % n;
            Command::None
        }
        KeyCode::BackTab => {
            let n = s.fields();
            s.focus = (s.focus + n - 1) % n;
            Command::None
        }
        KeyCode::Up => {
            s.move_cursor(false);
            Command::None
        }
        KeyCode::Down => {
            s.move_cursor(true);
            Command::None
        }
        KeyCode::Backspace => {
            if let Some(f) = s.field() {
                f.pop();
            }
            Command::None
        }
        KeyCode::Char(c) => {
            if let Some(f) = s.field() {
                if f.len() < 256 {
                    f.push(c);
                }
                s.message = None;
            } else if c == ' ' {
                s.toggle();
            } else if s.screen == Screen::Welcome && c == 'q' {
                return Command::Quit;
            }
            Command::None
        }
        _ => Command::None,
    }
}
