//! Every screen as a TestBackend snapshot at 80x24 and at 120x40. The plan's
//! random GUIDs are replaced by fixed ones so the snapshots are stable.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use installer_tui::app::{Msg, Screen, State, update};
use installer_tui::engine::{Event, Stage};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn press(s: &mut State, code: KeyCode) {
    update(s, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn typ(s: &mut State, t: &str) {
    for c in t.chars() {
        press(s, KeyCode::Char(c));
    }
}

fn fix_plan(s: &mut State) {
    if let Some(p) = &mut s.plan {
        let u = |n: u128| uuid::Uuid::from_u128(n);
        p.disk_guid = u(0x1111_1111_1111_4111_8111_1111_1111_1111);
        for (i, part) in p.partitions.iter_mut().enumerate() {
            part.guid = u(0x2222_2222_2222_4222_8222_2222_2222_2220 + i as u128);
        }
        p.luks.uuid = u(0x3333_3333_3333_4333_8333_3333_3333_3333);
        p.luks.mapper_name = format!("luks-{}", p.luks.uuid);
    }
}

fn draw(s: &State, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| installer_tui::ui::render(s, f)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Reaches `screen` with typical input, then snapshots it at both sizes.
fn shot(name: &str, s: &State) {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), draw(s, w, h));
    }
}

fn to(s: &mut State, screen: Screen) {
    while s.screen != screen {
        match s.screen {
            Screen::Hardware => {
                for (i, v) in s.machine.report.verdicts.clone().iter().enumerate() {
                    if matches!(
                        v.status,
                        hcl_check::Status::Warn | hcl_check::Status::Unknown
                    ) {
                        s.hw_cursor = i;
                        press(s, KeyCode::Char(' '));
                    }
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
            _ => {}
        }
        press(s, KeyCode::Enter);
        fix_plan(s);
    }
}

#[test]
fn wizard_screens() {
    let mut s = State::new(machine("laptop"), false);
    for (name, screen) in [
        ("welcome", Screen::Welcome),
        ("locale", Screen::Locale),
        ("hardware_pass", Screen::Hardware),
        ("disk", Screen::Disk),
        ("passphrase_empty", Screen::Passphrase),
        ("user_empty", Screen::User),
        ("timezone", Screen::Timezone),
        ("qubes", Screen::Qubes),
        ("summary", Screen::Summary),
        ("confirm_empty", Screen::Confirm),
    ] {
        to(&mut s, screen);
        shot(name, &s);
    }
    typ(&mut s, "/dev/nvme");
    press(&mut s, KeyCode::Enter);
    shot("confirm_mismatch", &s);
}

#[test]
fn hardware_warning_consent_and_block() {
    let mut s = State::new(machine("laptop-no-iommu"), false);
    s.screen = Screen::Hardware;
    let i = s
        .machine
        .report
        .verdicts
        .iter()
        .position(|v| v.id == "iommu")
        .unwrap();
    s.hw_cursor = i;
    press(&mut s, KeyCode::Enter);
    shot("hardware_warning_unaccepted", &s);
    press(&mut s, KeyCode::Char(' '));
    shot("hardware_warning_accepted", &s);
    let mut f = State::new(machine("laptop"), false);
    f.machine.report.verdicts[3].status = hcl_check::Status::Fail;
    f.screen = Screen::Hardware;
    f.hw_cursor = 3;
    press(&mut f, KeyCode::Enter);
    shot("hardware_fail", &f);
}

#[test]
fn refused_disk_and_filled_fields() {
    let mut s = State::new(machine("laptop"), false);
    to(&mut s, Screen::Disk);
    s.disk_cursor = s
        .disks
        .iter()
        .position(|d| d.disk.path == "/dev/sdb")
        .unwrap();
    press(&mut s, KeyCode::Enter);
    shot("disk_refused", &s);
    s.disk_cursor = 0;
    press(&mut s, KeyCode::Enter);
    typ(&mut s, "Tr0ub4dor&3");
    press(&mut s, KeyCode::Tab);
    typ(&mut s, "Tr0ub4dor&");
    press(&mut s, KeyCode::Enter);
    shot("passphrase_mismatch", &s);
    typ(&mut s, "3");
    press(&mut s, KeyCode::Enter);
    typ(&mut s, "Root");
    press(&mut s, KeyCode::Enter);
    shot("user_invalid", &s);
}

#[test]
fn progress_done_and_error() {
    let mut s = State::new(machine("laptop"), false);
    to(&mut s, Screen::Confirm);
    typ(&mut s, "/dev/nvme0n1");
    press(&mut s, KeyCode::Enter);
    assert_eq!(s.screen, Screen::Progress);
    shot("progress_start", &s);
    let msgs = [
        (Stage::Hardware, 0, "checking requirements"),
        (Stage::Plan, 1, "planning /dev/nvme0n1"),
        (
            Stage::Partition,
            2,
            "erasing Samsung SSD 980 PRO 512GB, 476.9 GiB, /dev/nvme0n1",
        ),
        (Stage::Partition, 10, "partitioner 5/8 luks: Started"),
        (Stage::Payload, 17, "copying the system"),
        (Stage::Payload, 50, "copied 120000 entries"),
    ];
    for (stage, p, m) in msgs {
        update(
            &mut s,
            Msg::Progress(Event {
                stage,
                percent: p,
                eta: Some(std::time::Duration::from_secs(200)),
                message: m.into(),
            }),
        );
    }
    shot("progress_payload", &s);
    update(&mut s, Msg::Finished(Err((Stage::Bootloader, "grub-install --target=i386-pc --recheck /dev/nvme0n1 failed: cannot find a GRUB drive for /dev/nvme0n1".into()).into())));
    shot("error", &s);
    press(&mut s, KeyCode::Enter);
    typ(&mut s, "/dev/nvme0n1");
    press(&mut s, KeyCode::Enter);
    update(&mut s, Msg::Finished(Ok(())));
    shot("done", &s);
    let mut d = State::new(machine("laptop"), true);
    d.screen = Screen::Done;
    shot("done_dry_run", &d);
}

/// With TERM=vt100 every screen is drawn in ASCII only.
#[test]
fn ascii_mode_draws_every_screen_in_ascii() {
    let check = |s: &State, what: &str| {
        for (w, h) in [(80u16, 24u16), (120, 40)] {
            let text = draw(s, w, h);
            assert!(text.is_ascii(), "{what} at {w}x{h} is not ASCII:\n{text}");
        }
    };
    let mut s = State::new(machine("laptop-no-iommu"), false);
    s.ascii = true;
    for screen in [
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
    ] {
        to(&mut s, screen);
        check(&s, &format!("{screen:?}"));
    }
    shot("ascii_summary", &s);
    typ(&mut s, "/dev/nvme0n1");
    press(&mut s, KeyCode::Enter);
    update(
        &mut s,
        Msg::Progress(Event {
            stage: Stage::Payload,
            percent: 40,
            eta: Some(std::time::Duration::from_secs(75)),
            message: "40% copied".into(),
        }),
    );
    check(&s, "Progress");
    shot("ascii_progress", &s);
    update(
        &mut s,
        Msg::Finished(Err((Stage::Payload, "unsquashfs failed".into()).into())),
    );
    check(&s, "Error");
    press(&mut s, KeyCode::Enter);
    typ(&mut s, "/dev/nvme0n1");
    press(&mut s, KeyCode::Enter);
    update(&mut s, Msg::Finished(Ok(())));
    check(&s, "Done");
    assert!(
        installer_tui::app::ascii_terminal("vt100") && !installer_tui::app::ascii_terminal("linux")
    );
}
