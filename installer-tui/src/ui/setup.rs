//! The screens that gather the answers: welcome, language and keyboard,
//! hardware, disk, passphrase, user, time zone, qubes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{List, ListItem, ListState, Paragraph, Wrap};

use hcl_check::Status;
use partitioner::present::human_size;

use super::{HL, bold, boxed, status_span};
use crate::answers::{KEYBOARDS, LANGUAGES, TIMEZONES};
use crate::app::State;
use crate::secrets::strength;

pub(super) fn welcome(s: &State, f: &mut Frame, a: Rect) {
    let t = vec![
        Line::from(bold("Welcome to Bulkhead.")),
        Line::from(""),
        Line::from("Bulkhead is a security-oriented system built on the Xen hypervisor: your"),
        Line::from("work runs in isolated virtual machines called qubes."),
        Line::from(""),
        Line::from("This installer will:"),
        Line::from("  * check that this machine can run Bulkhead,"),
        Line::from("  * ERASE one whole disk of your choice and encrypt it (LUKS2),"),
        Line::from("  * install the system and the default qubes' settings."),
        Line::from(""),
        Line::from("Nothing is written before you confirm by typing the disk's name."),
        Line::from(format!(
            "Disks found: {}.  Memory: {}.",
            s.disks.len(),
            human_size(s.machine.inventory.memory_bytes)
        )),
    ];
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .block(boxed(s.ascii, "Welcome")),
        a,
    );
}

fn pick_list<'a>(
    ascii: bool,
    items: Vec<String>,
    selected: usize,
    focused: bool,
    title: &'a str,
) -> (List<'a>, ListState) {
    let items: Vec<ListItem> = items.into_iter().map(ListItem::new).collect();
    let mut st = ListState::default();
    st.select(Some(selected));
    let block = boxed(ascii, title).border_style(if focused {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new().add_modifier(Modifier::DIM)
    });
    (
        List::new(items)
            .block(block)
            .highlight_style(HL)
            .highlight_symbol("> "),
        st,
    )
}

pub(super) fn locale(s: &State, f: &mut Frame, a: Rect) {
    let [l, k] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(a);
    let (w, mut st) = pick_list(
        s.ascii,
        LANGUAGES
            .iter()
            .map(|(c, n)| format!("{:<6} {n}", c.trim_end_matches(".UTF-8")))
            .collect(),
        s.language,
        s.focus == 0,
        "Language",
    );
    f.render_stateful_widget(w, l, &mut st);
    let (w, mut st) = pick_list(
        s.ascii,
        KEYBOARDS
            .iter()
            .map(|(c, n)| format!("{c:<6} {n}"))
            .collect(),
        s.keyboard,
        s.focus == 1,
        "Keyboard layout",
    );
    f.render_stateful_widget(w, k, &mut st);
}

pub(super) fn hardware(s: &State, f: &mut Frame, a: Rect) {
    let vs = &s.machine.report.verdicts;
    let [top, bottom] =
        Layout::vertical([Constraint::Length(vs.len() as u16 + 2), Constraint::Min(3)]).areas(a);
    let items: Vec<ListItem> = vs
        .iter()
        .map(|v| {
            let mark = match v.status {
                Status::Warn | Status::Unknown if s.accepted.iter().any(|x| v.id == x.as_str()) => {
                    "[x] accepted"
                }
                Status::Warn | Status::Unknown => "[ ] accept? ",
                _ => "            ",
            };
            ListItem::new(Line::from(vec![
                status_span(v.status),
                Span::raw(format!("{:<24} ", truncate(v.requirement, 24))),
                Span::raw(format!("{mark} ")),
                Span::raw(v.measured.clone()),
            ]))
        })
        .collect();
    let mut st = ListState::default();
    st.select(Some(s.hw_cursor));
    f.render_stateful_widget(
        List::new(items)
            .block(boxed(s.ascii, "Requirements (hcl-check)"))
            .highlight_style(HL),
        top,
        &mut st,
    );
    let mut t = Vec::new();
    if let Some(v) = vs.get(s.hw_cursor) {
        t.push(Line::from(vec![
            bold(v.requirement.to_string()),
            Span::raw(format!(" (needs {})", v.threshold)),
        ]));
        t.push(Line::from(v.reason.clone()));
        if let Some(r) = &v.remedy {
            t.push(Line::from(format!("What to do: {r}")));
        }
        match v.status {
            Status::Warn | Status::Unknown => t.push(Line::from(vec![
                bold("If you accept: "),
                Span::raw(v.id.consequence()),
            ])),
            Status::Fail => t.push(Line::from(bold("This blocks the install."))),
            Status::Pass => {}
        }
    }
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: true })
            .block(boxed(s.ascii, "Details")),
        bottom,
    );
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('~');
        t
    }
}

pub(super) fn disk(s: &State, f: &mut Frame, a: Rect) {
    let [top, bottom] = Layout::vertical([
        Constraint::Length(s.disks.len().min(8) as u16 + 2),
        Constraint::Min(3),
    ])
    .areas(a);
    let items: Vec<ListItem> = s
        .disks
        .iter()
        .map(|c| {
            let d = &c.disk;
            let label = format!(
                "{:<14} {:<26} {:>10} {:<6} {}",
                truncate(&d.path, 14),
                truncate(d.model.as_deref().unwrap_or("unknown model"), 26),
                human_size(d.size_bytes),
                d.transport.to_string(),
                if c.refusal.is_some() {
                    "CANNOT USE"
                } else {
                    ""
                }
            );
            let style = if c.refusal.is_some() {
                Style::new().add_modifier(Modifier::DIM)
            } else {
                Style::new()
            };
            ListItem::new(Span::styled(label, style))
        })
        .collect();
    let mut st = ListState::default();
    st.select(Some(s.disk_cursor));
    f.render_stateful_widget(
        List::new(items)
            .block(boxed(
                s.ascii,
                "Disks (the chosen disk is erased completely)",
            ))
            .highlight_style(HL)
            .highlight_symbol("> "),
        top,
        &mut st,
    );
    let mut t = Vec::new();
    if let Some(c) = s.selected_disk() {
        let d = &c.disk;
        t.push(Line::from(vec![bold(d.describe())]));
        if let Some(r) = &c.refusal {
            t.push(Line::from(Span::styled(
                format!("Cannot install here: {r}"),
                Style::new().fg(Color::Red),
            )));
        }
        if !d.os_hints.is_empty() {
            t.push(Line::from(format!(
                "Systems found: {}",
                d.os_hints.join(", ")
            )));
        }
        if d.contents.is_empty() {
            t.push(Line::from(match &d.partition_table {
                Some(pt) => format!("Partition table {pt}, no partitions."),
                None => "Empty: no partition table found.".to_string(),
            }));
        } else {
            t.push(Line::from(format!(
                "Now on it ({} partition table):",
                d.partition_table.as_deref().unwrap_or("no")
            )));
            for p in &d.contents {
                t.push(Line::from(format!(
                    "  {:<16} {:>10} {:<10} {}{}",
                    truncate(&p.path, 16),
                    human_size(p.size_bytes),
                    p.fstype.as_deref().unwrap_or("-"),
                    p.label.as_deref().or(p.partlabel.as_deref()).unwrap_or(""),
                    if p.mountpoints.is_empty() {
                        String::new()
                    } else {
                        format!(" mounted on {}", p.mountpoints.join(", "))
                    }
                )));
            }
        }
    }
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .block(boxed(s.ascii, "What is on it now")),
        bottom,
    );
}

pub(super) fn field_line(label: &str, value: String, focused: bool) -> Line<'static> {
    let v = if focused { format!("{value}_") } else { value };
    Line::from(vec![
        Span::raw(format!("{}{label:<22}", if focused { "> " } else { "  " })),
        Span::styled(
            format!("[{v:<30}]"),
            if focused { HL } else { Style::new() },
        ),
    ])
}

fn stars(s: &str) -> String {
    "*".repeat(s.chars().count())
}

pub(super) fn passphrase(s: &State, f: &mut Frame, a: Rect) {
    let (score, advice) = strength(s.pass[0].as_bytes());
    let bar = format!(
        "[{}{}]",
        "#".repeat(usize::from(score) * 5),
        ".".repeat(20 - usize::from(score) * 5)
    );
    let matches = if s.pass[1].is_empty() {
        ""
    } else if *s.pass[0] == *s.pass[1] {
        "the two entries match"
    } else {
        "the two entries differ"
    };
    let t = vec![
        Line::from("The whole disk except /boot is encrypted with LUKS2. You type this"),
        Line::from("passphrase at every boot. If you lose it, your data cannot be recovered."),
        Line::from(""),
        field_line("Passphrase", stars(&s.pass[0]), s.focus == 0),
        field_line("Again, to confirm", stars(&s.pass[1]), s.focus == 1),
        Line::from(""),
        Line::from(format!(
            "  Strength: {bar} {}",
            if s.pass[0].is_empty() {
                "enter a passphrase"
            } else {
                advice
            }
        )),
        Line::from(format!("  {matches}")),
    ];
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .block(boxed(s.ascii, "Encryption")),
        a,
    );
}

pub(super) fn user(s: &State, f: &mut Frame, a: Rect) {
    let t = vec![
        Line::from("The user who logs in to dom0, the administrative domain. It can"),
        Line::from("administer the system (groups sudo and qubes)."),
        Line::from(""),
        field_line("User name", s.user_name.clone(), s.focus == 0),
        field_line("Full name (optional)", s.full_name.clone(), s.focus == 1),
        field_line("Password", stars(&s.password[0]), s.focus == 2),
        field_line("Password again", stars(&s.password[1]), s.focus == 3),
        field_line("Host name", s.hostname.clone(), s.focus == 4),
    ];
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .block(boxed(s.ascii, "dom0 user")),
        a,
    );
}

pub(super) fn timezone(s: &State, f: &mut Frame, a: Rect) {
    let (w, mut st) = pick_list(
        s.ascii,
        TIMEZONES.iter().map(|z| z.to_string()).collect(),
        s.tz_cursor,
        true,
        "Time zone (the clock is kept in UTC)",
    );
    f.render_stateful_widget(w, a, &mut st);
}

pub(super) fn qubes(s: &State, f: &mut Frame, a: Rect) {
    let q = &s.qubes;
    let on_usb = s
        .selected_disk()
        .is_some_and(|d| d.disk.transport == partitioner::discover::Transport::Usb);
    let opts = [
        (
            q.system_qubes,
            "System qubes: sys-net, sys-firewall, default-dvm",
        ),
        (
            q.sys_usb,
            if on_usb {
                "sys-usb for the USB controllers (skipped: installing onto USB)"
            } else {
                "sys-usb for the USB controllers"
            },
        ),
        (
            q.disposable_sys_net,
            "sys-net as a disposable (fresh at every start)",
        ),
        (q.appvms, "AppVMs work, personal, untrusted and vault"),
    ];
    let mut t = vec![
        Line::from("Created at first boot (like Qubes' initial setup). You can change this"),
        Line::from("later with the qubes tools."),
        Line::from(""),
    ];
    for (i, (on, label)) in opts.iter().enumerate() {
        let line = format!("[{}] {label}", if *on { "x" } else { " " });
        t.push(Line::from(vec![
            Span::raw(if s.focus == i { "> " } else { "  " }),
            Span::styled(line, if s.focus == i { HL } else { Style::new() }),
        ]));
    }
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .block(boxed(s.ascii, "Default qubes")),
        a,
    );
}
