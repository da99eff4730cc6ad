//! The install configuration and the unattended answer file.
//!
//! [`Answers`] is the answer file (`installer-tui --answers FILE`, TOML). Its
//! serde structs and doc comments are the single source of truth: parsing,
//! validation and the reference in `ANSWERS.md` ([`reference_markdown`]) all
//! derive from them. Secrets never live in the file: the disk passphrase and
//! the dom0 user's password are read from files it names, or asked at the
//! terminal ([`crate::secrets`]). The TUI builds the same [`Answers`] value, so both
//! paths go through one [`Answers::problems`] check.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An unattended install: every answer the installer's screens ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    /// The target disk and the consent to erase it.
    pub disk: DiskAnswers,
    /// Language, keyboard, time zone and host name of dom0.
    #[serde(default)]
    pub system: SystemAnswers,
    /// The dom0 user.
    pub user: UserAnswers,
    /// Which default qubes first boot creates.
    #[serde(default)]
    pub qubes: QubesAnswers,
    /// Consent to hardware warnings.
    #[serde(default)]
    pub hardware: HardwareAnswers,
}

/// The target disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskAnswers {
    /// Whole disk to install onto, e.g. `/dev/nvme0n1` (see `partitioner list`).
    pub device: String,
    /// Consent to erase everything on the disk: must repeat `device` exactly.
    pub erase: String,
    /// File holding the LUKS2 passphrase (one trailing newline is ignored).
    /// Unset: asked twice at the terminal. Never put the passphrase itself here.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
}

/// Locale and identity of dom0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SystemAnswers {
    /// Language (glibc locale), one of the installer's list, e.g. `en_US.UTF-8`.
    pub language: String,
    /// Console and X keyboard layout, one of the installer's list, e.g. `us`, `de`.
    pub keyboard: String,
    /// Time zone from the tz database, e.g. `Europe/Berlin` or `UTC`.
    pub timezone: String,
    /// Host name of dom0 (letters, digits and `-`, at most 63 characters).
    pub hostname: String,
    /// Words appended to Xen's command line after Qubes' defaults, e.g.
    /// `dom0=pvh` (a PVH dom0: QEMU's TCG emulation cannot run a PV one).
    /// Empty by default.
    pub xen_args: String,
    /// Words appended to the dom0 kernel's command line, e.g.
    /// `systemd.default_timeout_start_sec=600` for a very slow machine.
    /// Empty by default.
    pub dom0_args: String,
}

impl Default for SystemAnswers {
    fn default() -> Self {
        SystemAnswers {
            language: "en_US.UTF-8".into(),
            keyboard: "us".into(),
            timezone: "UTC".into(),
            hostname: "dom0".into(),
            xen_args: String::new(),
            dom0_args: String::new(),
        }
    }
}

/// The dom0 user (member of `sudo` and `qubes`: it administers dom0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAnswers {
    /// Login name: lowercase letters, digits, `_` and `-`, starting with a letter.
    pub name: String,
    /// Full name shown at login.
    #[serde(default)]
    pub full_name: String,
    /// File holding the user's password. Unset: asked twice at the terminal.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// The default qubes (handed to first boot as `/etc/bulkhead/firstboot.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QubesAnswers {
    /// Create sys-net, sys-firewall and default-dvm.
    pub system_qubes: bool,
    /// A separate sys-usb for the USB controllers (skipped automatically when
    /// installing onto a USB disk: dom0 then keeps the controllers).
    pub sys_usb: bool,
    /// sys-net is a disposable of default-dvm.
    pub disposable_sys_net: bool,
    /// Create the default AppVMs work, personal, untrusted and vault
    /// (first boot creates all four or none).
    pub appvms: bool,
    /// Words added to every qube's kernel command line (firstboot's
    /// `qube_kernel_args`), e.g. `quiet` or `systemd.log_level=debug`.
    pub kernel_args: String,
}

impl Default for QubesAnswers {
    fn default() -> Self {
        QubesAnswers {
            system_qubes: true,
            sys_usb: true,
            disposable_sys_net: false,
            appvms: true,
            kernel_args: String::new(),
        }
    }
}

/// Hardware requirements that may be accepted despite a warning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HardwareAnswers {
    /// hcl-check requirement ids whose warning (or unknown result) you accept,
    /// e.g. `["iommu", "ram"]` (the ids are listed below). A failed
    /// requirement cannot be accepted.
    pub accept_warnings: Vec<String>,
}

/// Languages offered (glibc locale names).
/// Languages offered (glibc locale names). Names are ASCII so they show on
/// a serial console and the Linux text console alike.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en_US.UTF-8", "English (United States)"),
    ("en_GB.UTF-8", "English (United Kingdom)"),
    ("de_DE.UTF-8", "German"),
    ("fr_FR.UTF-8", "French"),
    ("es_ES.UTF-8", "Spanish"),
    ("it_IT.UTF-8", "Italian"),
    ("nl_NL.UTF-8", "Dutch"),
    ("pl_PL.UTF-8", "Polish"),
    ("pt_BR.UTF-8", "Portuguese (Brazil)"),
    ("ru_RU.UTF-8", "Russian"),
    ("ja_JP.UTF-8", "Japanese"),
    ("zh_CN.UTF-8", "Chinese (Simplified)"),
];

/// Keyboard layouts offered (console keymap = X layout names).
pub const KEYBOARDS: &[(&str, &str)] = &[
    ("us", "English (US)"),
    ("gb", "English (UK)"),
    ("de", "German"),
    ("ch", "Swiss German"),
    ("fr", "French"),
    ("es", "Spanish"),
    ("it", "Italian"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("br", "Portuguese (Brazil)"),
    ("ru", "Russian"),
    ("jp", "Japanese"),
    ("dvorak", "English (Dvorak)"),
];

/// Time zones offered on the screen (the answer file takes any tz name).
pub const TIMEZONES: &[&str] = &[
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Warsaw",
    "Europe/Moscow",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Kolkata",
    "Australia/Sydney",
];

/// Names a dom0 user may not take (system accounts of the payload).
const RESERVED_USERS: &[&str] = &[
    "root", "bin", "daemon", "adm", "lp", "sync", "shutdown", "halt", "mail", "operator", "games",
    "ftp", "nobody", "qubes", "wheel", "dbus", "polkitd", "systemd",
];

/// An answer file that could not be used (nothing was written): the key
/// and line of the first problem.
pub type AnswersError = confdoc::ConfigError;

pub use confdoc::Problem;

fn problem(field: &str, message: impl Into<String>) -> Problem {
    confdoc::problem(field, message)
}

/// Checks a host name (RFC 1123 label).
pub fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() || h.len() > 63 {
        return Err("give 1 to 63 characters".into());
    }
    if !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || h.starts_with('-')
        || h.ends_with('-')
    {
        return Err(format!(
            "{h:?}: use letters, digits and '-' only, not at the start or end"
        ));
    }
    Ok(())
}

/// Checks a login name.
pub fn check_user_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 32 {
        return Err("give 1 to 32 characters".into());
    }
    let mut cs = n.chars();
    let first_ok = cs.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(format!(
            "{n:?}: start with a lowercase letter, then lowercase letters, digits, '_' or '-'"
        ));
    }
    if RESERVED_USERS.contains(&n) {
        return Err(format!("{n:?} is a system account; choose another name"));
    }
    Ok(())
}

/// Checks a tz database name's form (its existence is checked against the
/// payload's zoneinfo at install time).
pub fn check_timezone(tz: &str) -> Result<(), String> {
    let ok = !tz.is_empty()
        && !tz.starts_with('/')
        && tz.split('/').all(|p| {
            !p.is_empty()
                && p != ".."
                && p != "."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tz:?} is not a tz database name such as \"Europe/Berlin\" or \"UTC\""
        ))
    }
}

impl Answers {
    /// Parses and validates an answer file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, AnswersError> {
        confdoc::parse(text, file)
    }

    /// Every problem, in file order (empty: valid).
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let d = &self.disk;
        if !d.device.starts_with("/dev/") || d.device.len() <= 5 {
            out.push(problem(
                "disk.device",
                format!(
                    "{:?}: name a whole disk such as \"/dev/nvme0n1\" (see `partitioner list`)",
                    d.device
                ),
            ));
        }
        if d.erase != d.device {
            out.push(problem(
                "disk.erase",
                format!(
                    "{:?} does not repeat disk.device {:?}; to consent to erasing it, write erase = {:?}",
                    d.erase, d.device, d.device
                ),
            ));
        }
        if let Some(p) = &d.passphrase_file
            && !p.is_absolute()
        {
            out.push(problem(
                "disk.passphrase_file",
                format!("{}: give an absolute path", p.display()),
            ));
        }
        let s = &self.system;
        if !LANGUAGES.iter().any(|(l, _)| *l == s.language) {
            out.push(problem(
                "system.language",
                format!(
                    "{:?} is not offered; use one of {}",
                    s.language,
                    LANGUAGES.iter().map(|l| l.0).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if !KEYBOARDS.iter().any(|(k, _)| *k == s.keyboard) {
            out.push(problem(
                "system.keyboard",
                format!(
                    "{:?} is not offered; use one of {}",
                    s.keyboard,
                    KEYBOARDS.iter().map(|l| l.0).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for (field, value) in [
            ("system.xen_args", &s.xen_args),
            ("system.dom0_args", &s.dom0_args),
        ] {
            if let Some(c) = value.chars().find(|c| "\"'\\$;{}|&<>#`\n\r".contains(*c)) {
                out.push(problem(
                    field,
                    format!(
                        "{value:?} holds {c:?}, which GRUB's menu syntax would interpret; leave it out"
                    ),
                ));
            }
        }
        for p in self.firstboot_settings(false).problems() {
            if p.field == "qube_kernel_args" {
                out.push(problem("qubes.kernel_args", p.message));
            }
        }
        if let Err(m) = check_timezone(&s.timezone) {
            out.push(problem("system.timezone", m));
        }
        if let Err(m) = check_hostname(&s.hostname) {
            out.push(problem("system.hostname", m));
        }
        if let Err(m) = check_user_name(&self.user.name) {
            out.push(problem("user.name", m));
        }
        if self
            .user
            .full_name
            .chars()
            .any(|c| c == ':' || c.is_control())
        {
            out.push(problem(
                "user.full_name",
                "must not contain ':', a newline or another control character",
            ));
        }
        if let Some(p) = &self.user.password_file
            && !p.is_absolute()
        {
            out.push(problem(
                "user.password_file",
                format!("{}: give an absolute path", p.display()),
            ));
        }
        if self.qubes.disposable_sys_net && !self.qubes.system_qubes {
            out.push(problem(
                "qubes.disposable_sys_net",
                "needs system_qubes = true (there is no sys-net otherwise)",
            ));
        }
        for id in &self.hardware.accept_warnings {
            if hcl_check::Requirement::from_id(id).is_none() {
                out.push(problem(
                    "hardware.accept_warnings",
                    format!(
                        "{id:?} is not a requirement; use {}",
                        hcl_check::Requirement::ids()
                    ),
                ));
            }
        }
        out
    }

    /// The settings first boot reads, from these answers.
    pub fn firstboot_settings(&self, installed_on_usb: bool) -> firstboot::settings::Settings {
        use firstboot::settings::{Settings, UsbQube};
        Settings {
            system_qubes: self.qubes.system_qubes,
            default_appvms: self.qubes.appvms,
            usb_qube: if self.qubes.sys_usb {
                UsbQube::Auto
            } else {
                UsbQube::None
            },
            disposable_sys_net: self.qubes.disposable_sys_net,
            installed_on_usb,
            qube_kernel_args: self.qubes.kernel_args.clone(),
            ..Settings::default()
        }
    }
}

/// Extra boot arguments for an interactive install from the live command
/// line: `bulkhead.xen_args=a,b` (or `bulkhead.dom0_args=`) gives `a b` (a
/// kernel argument holds no spaces). `key` is `xen_args` or `dom0_args`.
pub fn boot_args_from_cmdline(cmdline: &str, key: &str) -> String {
    let prefix = format!("bulkhead.{key}=");
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Where an unattended install's answer file is, when `--answers` is not
/// given: `bulkhead.answers=PATH` on the kernel command line, else
/// `answers.toml` at the top of the boot medium (mounted at `medium`).
pub fn find_answers(cmdline: &str, medium: &std::path::Path) -> Option<PathBuf> {
    if let Some(p) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("bulkhead.answers="))
    {
        return Some(PathBuf::from(p));
    }
    let on_medium = medium.join("answers.toml");
    on_medium.is_file().then_some(on_medium)
}

/// The answer-file reference, a Markdown table derived from the structs'
/// doc comments (kept in ANSWERS.md; a test checks it is current).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# installer-tui answer file reference\n\n\
         Generated from `installer-tui/src/answers.rs` by `installer-tui --answers-reference`; \
         a test keeps it current. See `examples/answers.toml`.\n\n",
    );
    out.push_str(&confdoc::reference_table::<Answers>());
    out.push_str("\n## Values offered\n\n`system.language`: ");
    out.push_str(
        &LANGUAGES
            .iter()
            .map(|(c, n)| format!("`{c}` ({n})"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(".\n\n`system.keyboard`: ");
    out.push_str(
        &KEYBOARDS
            .iter()
            .map(|(c, n)| format!("`{c}` ({n})"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(".\n\n`hardware.accept_warnings`: ");
    out.push_str(
        &hcl_check::Requirement::ALL
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(".\n");
    out
}

impl confdoc::Config for Answers {
    fn problems(&self) -> Vec<Problem> {
        Answers::problems(self)
    }
    const AFTER_ERROR: &'static str = "\nNothing was written; fix the answer file and run again.";
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GOOD: &str = r#"[disk]
device = "/dev/nvme0n1"
erase = "/dev/nvme0n1"
passphrase_file = "/run/pass"

[system]
timezone = "Europe/Berlin"
keyboard = "de"

[user]
name = "alice"

[hardware]
accept_warnings = ["iommu"]
"#;

    #[test]
    fn good_answers_parse_with_defaults() {
        let a = Answers::parse(GOOD, "a.toml").unwrap();
        assert_eq!(a.system.language, "en_US.UTF-8");
        assert_eq!(a.system.hostname, "dom0");
        assert!(a.qubes.sys_usb && a.qubes.appvms && !a.qubes.disposable_sys_net);
        assert_eq!(a.hardware.accept_warnings, ["iommu"]);
    }

    #[test]
    fn unknown_key_and_missing_section_are_syntax_errors_with_line() {
        let e = Answers::parse(
            &GOOD.replace("[user]\n", "[user]\npassword = \"x\"\n"),
            "a.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("password") && e.contains("line 11"), "{e}");
        let e = Answers::parse(&GOOD.replace("[user]\nname = \"alice\"\n", ""), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("user"), "{e}");
    }

    #[test]
    fn every_rule_names_field_and_line() {
        let cases = [
            (
                GOOD.replace("erase = \"/dev/nvme0n1\"", "erase = \"/dev/sda\""),
                "disk.erase",
                3,
            ),
            (
                GOOD.replace(
                    "device = \"/dev/nvme0n1\"\nerase = \"/dev/nvme0n1\"",
                    "device = \"nvme\"\nerase = \"nvme\"",
                ),
                "disk.device",
                2,
            ),
            (
                GOOD.replace("\"/run/pass\"", "\"pass.txt\""),
                "disk.passphrase_file",
                4,
            ),
            (GOOD.replace("\"de\"", "\"klingon\""), "system.keyboard", 8),
            (
                GOOD.replace("\"Europe/Berlin\"", "\"../etc/passwd\""),
                "system.timezone",
                7,
            ),
            (
                GOOD.replace("keyboard", "hostname = \"-x\"\nkeyboard"),
                "system.hostname",
                8,
            ),
            (
                GOOD.replace("keyboard", "language = \"xx\"\nkeyboard"),
                "system.language",
                8,
            ),
            (GOOD.replace("\"alice\"", "\"root\""), "user.name", 11),
            (GOOD.replace("\"alice\"", "\"Alice\""), "user.name", 11),
            (
                GOOD.replace(
                    "name = \"alice\"",
                    "name = \"alice\"\npassword_file = \"p\"",
                ),
                "user.password_file",
                12,
            ),
            (
                GOOD.replace("name = \"alice\"", "name = \"alice\"\nfull_name = \"a:b\""),
                "user.full_name",
                12,
            ),
            (
                GOOD.replace(
                    "name = \"alice\"",
                    "name = \"alice\"\nfull_name = \"a\\u001bb\\u0000\"",
                ),
                "user.full_name",
                12,
            ),
            (
                GOOD.replace("[\"iommu\"]", "[\"iommmu\"]"),
                "hardware.accept_warnings",
                14,
            ),
            (
                format!("{GOOD}[qubes]\nsystem_qubes = false\ndisposable_sys_net = true\n"),
                "qubes.disposable_sys_net",
                17,
            ),
        ];
        for (text, field, line) in cases {
            match Answers::parse(&text, "a.toml") {
                Err(AnswersError::Invalid {
                    field: f, line: l, ..
                }) => {
                    assert_eq!((f.as_str(), l), (field, line), "{text}")
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn firstboot_settings_follow_the_answers_and_parse_back() {
        let mut a = Answers::parse(GOOD, "a").unwrap();
        a.qubes.sys_usb = false;
        a.qubes.disposable_sys_net = true;
        a.qubes.appvms = false;
        a.qubes.kernel_args = "systemd.default_timeout_start_sec=900".into();
        let s = a.firstboot_settings(true);
        let text = toml::to_string(&s).unwrap();
        let back =
            firstboot::settings::Settings::from_toml(&text, std::path::Path::new("t")).unwrap();
        assert_eq!(back.usb_qube, firstboot::settings::UsbQube::None);
        assert!(back.disposable_sys_net && !back.default_appvms && back.installed_on_usb);
        assert_eq!(
            back.qube_kernel_args,
            "systemd.default_timeout_start_sec=900"
        );
        a.qubes.kernel_args = "a\" b".into();
        let p = a.problems();
        assert!(p.iter().any(|p| p.field == "qubes.kernel_args"), "{p:?}");
    }

    #[test]
    fn boot_args_come_from_the_live_command_line() {
        let cmdline = "quiet bulkhead.xen_args=dom0=pvh,loglvl=all bulkhead.dom0_args=a=1 x";
        assert_eq!(
            boot_args_from_cmdline(cmdline, "xen_args"),
            "dom0=pvh loglvl=all"
        );
        assert_eq!(boot_args_from_cmdline(cmdline, "dom0_args"), "a=1");
        assert_eq!(boot_args_from_cmdline("quiet", "xen_args"), "");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = Answers::parse(&s, "x");
        }
        #[test]
        fn parse_never_panics_on_near_valid(cut in 0usize..300, junk in "[\\[\\]=\" a-z\n]{0,20}") {
            let mut t = GOOD.to_string();
            let at = cut.min(t.len());
            t.insert_str(at, &junk);
            let _ = Answers::parse(&t, "x");
        }
    }
}
