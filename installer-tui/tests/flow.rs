//! The installer's state machine: every transition, every validation rule,
//! and (property-tested) that no key sequence reaches an install without
//! the disk's name typed on the confirmation screen.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use hcl_check::Status;
use installer_tui::app::{Command, Msg, Screen, State, WIZARD, update};
use installer_tui::engine::{Event, Stage};
use proptest::prelude::*;

fn k(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn press(s: &mut State, code: KeyCode) -> Command {
    update(s, k(code))
}

fn typ(s: &mut State, text: &str) {
    for c in text.chars() {
        assert!(matches!(press(s, KeyCode::Char(c)), Command::None));
    }
}

fn state(name: &str) -> State {
    State::new(machine(name), true)
}

/// Fills every screen validly up to `until`.
fn walk_to(s: &mut State, until: Screen) {
    while s.screen != until {
        match s.screen {
            Screen::Hardware => {
                let ids: Vec<usize> = (0..s.machine.report.verdicts.len())
                    .filter(|i| {
                        matches!(
                            s.machine.report.verdicts[*i].status,
                            Status::Warn | Status::Unknown
                        )
                    })
                    .collect();
                for i in ids {
                    s.hw_cursor = i;
                    press(s, KeyCode::Char(' '));
                }
            }
            Screen::Passphrase => {
                typ(s, PASSPHRASE);
                press(s, KeyCode::Tab);
                typ(s, PASSPHRASE);
            }
            Screen::User => {
                typ(s, "alice");
                press(s, KeyCode::Tab);
                typ(s, "Alice Example");
                press(s, KeyCode::Tab);
                typ(s, PASSWORD);
                press(s, KeyCode::Tab);
                typ(s, PASSWORD);
            }
            Screen::Confirm => {
                let dev = s.selected_disk().unwrap().disk.path.clone();
                typ(s, &dev);
            }
            _ => {}
        }
        let before = s.screen;
        let c = press(s, KeyCode::Enter);
        assert!(matches!(c, Command::None), "{before:?}");
        assert_ne!(s.screen, before, "stuck on {before:?}: {:?}", s.message);
    }
}

#[test]
fn the_whole_wizard_produces_the_answers_and_secrets() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Locale);
    press(&mut s, KeyCode::Down); // English (UK)
    press(&mut s, KeyCode::Tab);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Down); // de
    press(&mut s, KeyCode::Enter);
    walk_to(&mut s, Screen::Timezone);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Down); // Europe/Berlin
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Qubes);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Char(' ')); // sys-usb off
    walk_to(&mut s, Screen::Confirm);
    assert!(s.plan.is_some());
    typ(&mut s, "/dev/nvme0n1");
    let Command::Install(b) = press(&mut s, KeyCode::Enter) else {
        panic!("no install: {:?}", s.message)
    };
    let (a, secrets) = *b;
    assert_eq!(s.screen, Screen::Progress);
    assert_eq!(
        (a.disk.device.as_str(), a.disk.erase.as_str()),
        ("/dev/nvme0n1", "/dev/nvme0n1")
    );
    assert_eq!(a.system.language, "en_GB.UTF-8");
    assert_eq!(a.system.keyboard, "de");
    assert_eq!(a.system.timezone, "Europe/Berlin");
    assert_eq!(a.system.hostname, "dom0");
    assert_eq!(
        (a.user.name.as_str(), a.user.full_name.as_str()),
        ("alice", "Alice Example")
    );
    assert!(!a.qubes.sys_usb && a.qubes.appvms && a.qubes.system_qubes);
    assert!(a.problems().is_empty());
    assert_eq!(secrets.passphrase.expose(), PASSPHRASE.as_bytes());
    let h = &secrets.password_hash;
    assert!(h.starts_with("$y$") && xcrypt::crypt(PASSWORD, h).unwrap() == *h);
    assert!(!format!("{secrets:?}").contains(PASSPHRASE));
    assert!(!format!("{secrets:?}").contains(&secrets.password_hash[4..]));
}

#[test]
fn esc_goes_back_from_every_wizard_screen() {
    for (i, target) in WIZARD.iter().enumerate().skip(1) {
        let mut s = state("laptop");
        walk_to(&mut s, *target);
        press(&mut s, KeyCode::Esc);
        assert_eq!(s.screen, WIZARD[i - 1], "Esc on {target:?}");
    }
    let mut s = state("laptop");
    press(&mut s, KeyCode::Esc);
    assert_eq!(s.screen, Screen::Welcome);
}

#[test]
fn hardware_fail_blocks_and_warning_needs_consent() {
    let mut s = state("laptop-no-iommu");
    walk_to(&mut s, Screen::Hardware);
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Hardware);
    assert!(
        s.message.as_deref().unwrap().contains("iommu"),
        "{:?}",
        s.message
    );
    // Space on a passing requirement accepts nothing
    s.hw_cursor = 0;
    press(&mut s, KeyCode::Char(' '));
    assert!(s.accepted.is_empty());
    let iommu = s
        .machine
        .report
        .verdicts
        .iter()
        .position(|v| v.id == "iommu")
        .unwrap();
    for _ in 0..iommu {
        press(&mut s, KeyCode::Down);
    }
    press(&mut s, KeyCode::Char(' '));
    assert_eq!(s.accepted, ["iommu"]);
    press(&mut s, KeyCode::Char(' '));
    assert!(s.accepted.is_empty(), "Space toggles the consent off again");
    press(&mut s, KeyCode::Char(' '));
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Disk);

    let mut s = state("laptop");
    s.machine.report.verdicts[3].status = Status::Fail;
    walk_to(&mut s, Screen::Hardware);
    s.hw_cursor = 3;
    press(&mut s, KeyCode::Char(' '));
    assert!(s.accepted.is_empty());
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Hardware);
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("cannot be installed")
    );
}

#[test]
fn refused_disks_cannot_be_chosen() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Disk);
    assert_eq!(s.selected_disk().unwrap().disk.path, "/dev/nvme0n1");
    let live = s
        .disks
        .iter()
        .position(|d| d.disk.path == "/dev/sdb")
        .unwrap();
    assert!(s.disks[live].refusal.is_some());
    for _ in 0..5 {
        press(&mut s, KeyCode::Down);
    }
    assert_eq!(
        s.disk_cursor,
        s.disks.len() - 1,
        "cursor stops at the last disk"
    );
    s.disk_cursor = live;
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Disk);
    assert!(
        s.message.as_deref().unwrap().contains("live medium"),
        "{:?}",
        s.message
    );
}

#[test]
fn passphrase_rules() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Passphrase);
    press(&mut s, KeyCode::Enter);
    assert!(s.message.as_deref().unwrap().contains("empty"));
    typ(&mut s, "abc");
    press(&mut s, KeyCode::Down);
    typ(&mut s, "abd");
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Passphrase);
    assert!(s.message.as_deref().unwrap().contains("differ"));
    press(&mut s, KeyCode::Backspace);
    typ(&mut s, "c");
    press(&mut s, KeyCode::Enter);
    assert_eq!(
        s.screen,
        Screen::User,
        "a weak passphrase is allowed, only advised against"
    );
}

#[test]
fn user_rules() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::User);
    let cases: [(&str, &str, &str, &str, &str, &str); 5] = [
        ("", "", "pw", "pw", "dom0", "User name"),
        ("root", "", "pw", "pw", "dom0", "system account"),
        ("bob", "a:b", "pw", "pw", "dom0", "Full name"),
        ("bob", "", "pw", "px", "dom0", "passwords differ"),
        ("bob", "", "pw", "pw", "-bad", "Host name"),
    ];
    for (name, full, p1, p2, host, needle) in cases {
        s.user_name = name.into();
        s.full_name = full.into();
        *s.password[0] = p1.into();
        *s.password[1] = p2.into();
        s.hostname = host.into();
        press(&mut s, KeyCode::Enter);
        assert_eq!(s.screen, Screen::User, "{needle}");
        assert!(
            s.message.as_deref().unwrap().contains(needle),
            "{needle}: {:?}",
            s.message
        );
    }
    *s.password[0] = String::new();
    s.hostname = "dom0".into();
    press(&mut s, KeyCode::Enter);
    assert!(s.message.as_deref().unwrap().contains("password"));
    *s.password[0] = "pw".into();
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Timezone);
}

#[test]
fn qubes_options_stay_consistent() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Qubes);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Char(' '));
    assert!(s.qubes.disposable_sys_net);
    press(&mut s, KeyCode::Up);
    press(&mut s, KeyCode::Up);
    press(&mut s, KeyCode::Char(' ')); // system qubes off turns disposable sys-net off
    assert!(!s.qubes.system_qubes && !s.qubes.disposable_sys_net);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Char(' '));
    assert!(!s.qubes.disposable_sys_net);
    assert!(s.message.is_some());
    press(&mut s, KeyCode::Down);
    press(&mut s, KeyCode::Char(' '));
    assert!(!s.qubes.appvms);
}

#[test]
fn confirmation_needs_the_exact_disk_name() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Confirm);
    for wrong in ["", "/dev/nvme0n", "/dev/nvme0n1 ", "nvme0n1", "/dev/sda"] {
        s.confirm = wrong.into();
        assert!(
            matches!(press(&mut s, KeyCode::Enter), Command::None),
            "{wrong:?}"
        );
        assert_eq!(s.screen, Screen::Confirm);
    }
    s.confirm.clear();
    typ(&mut s, "/dev/nvme0n1x");
    press(&mut s, KeyCode::Backspace);
    assert!(matches!(press(&mut s, KeyCode::Enter), Command::Install(_)));
}

#[test]
fn progress_ignores_keys_then_done_or_error_with_retry() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Confirm);
    typ(&mut s, "/dev/nvme0n1");
    assert!(matches!(press(&mut s, KeyCode::Enter), Command::Install(_)));
    for c in [KeyCode::Esc, KeyCode::Enter, KeyCode::Char('q')] {
        press(&mut s, c);
        assert_eq!(s.screen, Screen::Progress);
    }
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(matches!(update(&mut s, ctrl_c), Command::None));
    update(
        &mut s,
        Msg::Progress(Event {
            stage: Stage::Payload,
            percent: 40,
            eta: Some(std::time::Duration::from_secs(90)),
            message: "copying".into(),
        }),
    );
    assert_eq!(
        (s.percent, s.eta_secs, s.stage),
        (40, Some(90), Some(Stage::Payload))
    );
    update(
        &mut s,
        Msg::Finished(Err((Stage::Bootloader, "grub-install failed".into()).into())),
    );
    assert_eq!(s.screen, Screen::Error);
    assert_eq!(s.failure.as_ref().unwrap().0, Stage::Bootloader);
    // retry goes through the confirmation again
    assert!(matches!(press(&mut s, KeyCode::Enter), Command::None));
    assert_eq!(s.screen, Screen::Confirm);
    assert!(s.confirm.is_empty());
    typ(&mut s, "/dev/nvme0n1");
    assert!(matches!(press(&mut s, KeyCode::Enter), Command::Install(_)));
    update(
        &mut s,
        Msg::Finished(Err((Stage::Payload, "x".into()).into())),
    );
    press(&mut s, KeyCode::Esc);
    assert_eq!(s.screen, Screen::Summary);
    // success
    press(&mut s, KeyCode::Enter);
    typ(&mut s, "/dev/nvme0n1");
    press(&mut s, KeyCode::Enter);
    update(&mut s, Msg::Finished(Ok(())));
    assert_eq!(s.screen, Screen::Done);
    press(&mut s, KeyCode::Esc);
    assert_eq!(s.screen, Screen::Done);
    assert!(
        matches!(press(&mut s, KeyCode::Enter), Command::Quit),
        "dry run: leave, no reboot"
    );
    let mut live = State::new(machine("laptop"), false);
    live.screen = Screen::Done;
    assert!(matches!(press(&mut live, KeyCode::Enter), Command::Reboot));
}

#[test]
fn a_disk_refused_at_apply_time_is_refused_on_the_disk_screen_too() {
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Confirm);
    typ(&mut s, "/dev/nvme0n1");
    assert!(matches!(press(&mut s, KeyCode::Enter), Command::Install(_)));
    let refusal = partitioner::Refusal::InUse {
        disk: "/dev/nvme0n1".into(),
        details: vec!["/dev/nvme0n1p2 is mounted at /mnt".into()],
    };
    let failure = installer_tui::app::Failure {
        stage: Stage::Partition,
        message: refusal.to_string(),
        refusal: Some(refusal.clone()),
    };
    update(&mut s, Msg::Finished(Err(failure)));
    assert_eq!(s.screen, Screen::Error);
    assert_eq!(s.selected_disk().unwrap().refusal, Some(refusal.clone()));
    // No retry onto that disk: Enter leads back to choosing one.
    assert!(matches!(press(&mut s, KeyCode::Enter), Command::None));
    assert_eq!(s.screen, Screen::Disk);
    assert_eq!(s.message.as_deref(), Some(refusal.to_string().as_str()));
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Disk, "a refused disk cannot be chosen");
}

#[test]
fn engine_messages_outside_progress_change_no_screen() {
    let mut s = state("laptop");
    update(&mut s, Msg::Finished(Ok(())));
    assert_eq!(s.screen, Screen::Welcome);
    update(&mut s, Msg::Finished(Err((Stage::Plan, "x".into()).into())));
    assert_eq!(s.screen, Screen::Welcome);
}

#[test]
fn quit_keys() {
    let mut s = state("laptop");
    assert!(matches!(press(&mut s, KeyCode::Char('q')), Command::Quit));
    let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    let mut s = state("laptop");
    walk_to(&mut s, Screen::Disk);
    assert!(matches!(update(&mut s, ctrl_c), Command::Quit));
}

fn any_key() -> impl Strategy<Value = KeyCode> {
    prop_oneof![
        Just(KeyCode::Enter),
        Just(KeyCode::Esc),
        Just(KeyCode::Tab),
        Just(KeyCode::BackTab),
        Just(KeyCode::Up),
        Just(KeyCode::Down),
        Just(KeyCode::Backspace),
        Just(KeyCode::Char(' ')),
        prop::sample::select(vec!['/', 'd', 'e', 'v', 'n', 'm', '0', '1', 's', 'a', 'x'])
            .prop_map(KeyCode::Char),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// From any screen reached by any keys, Install happens only on the
    /// confirmation screen with the selected disk's exact name typed.
    #[test]
    fn no_key_sequence_installs_without_confirmation(start in 0usize..10, keys in prop::collection::vec(any_key(), 0..200)) {
        let mut s = state("laptop-no-iommu");
        walk_to(&mut s, WIZARD[start]);
        for code in keys {
            let screen = s.screen;
            let typed = s.confirm.clone();
            let dev = s.selected_disk().map(|d| d.disk.path.clone()).unwrap_or_default();
            let cmd = press(&mut s, code);
            if let Command::Install(b) = cmd {
                prop_assert_eq!(screen, Screen::Confirm);
                prop_assert_eq!(&typed, &dev);
                prop_assert!(s.selected_disk().unwrap().refusal.is_none());
                prop_assert_eq!(&b.0.disk.erase, &dev);
                prop_assert!(b.0.problems().is_empty());
                prop_assert_eq!(s.screen, Screen::Progress);
            } else if s.screen == Screen::Progress {
                prop_assert!(false, "reached Progress without Install");
            }
        }
    }
}

#[test]
fn an_unknown_result_needs_consent_like_a_warning() {
    let mut s = state("laptop");
    let i = s
        .machine
        .report
        .verdicts
        .iter()
        .position(|v| v.id == "keyboard")
        .unwrap();
    s.machine.report.verdicts[i].status = Status::Unknown;
    walk_to(&mut s, Screen::Locale);
    press(&mut s, KeyCode::Enter);
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Hardware);
    assert!(s.message.as_deref().unwrap().contains("keyboard"));
    s.hw_cursor = i;
    press(&mut s, KeyCode::Char(' '));
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Disk);
    assert_eq!(s.answers().hardware.accept_warnings, ["keyboard"]);
}
