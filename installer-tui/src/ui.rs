//! The view: each screen is a pure function of [`State`]; no I/O happens
//! here, so every screen is a TestBackend snapshot. Laid out for 80×24 and
//! plain terminals (vt100, linux console): ASCII borders' look comes from
//! the terminal, colour is an aid, never the only signal (markers like
//! `[x]`, `FAIL`, `>` carry the meaning).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Gauge, List, ListItem, ListState, Paragraph, Wrap};

use hcl_check::Status;
use partitioner::present::human_size;

use crate::answers::{KEYBOARDS, LANGUAGES, TIMEZONES, strength};
use crate::app::{Screen, State, WIZARD};
use crate::engine::Stage;

const HL: Style = Style::new().add_modifier(Modifier::REVERSED);

fn bold(s: impl Into<String>) -> Span<'static> {
    Span::styled(s.into(), Style::new().add_modifier(Modifier::BOLD))
}

/// Draws the whole screen.
pub fn render(s: &State, f: &mut Frame) {
    let [head, body, msg, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(2),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let step = match s.screen.step() {
        Some(n) => format!(" step {n} of {}", WIZARD.len()),
        None => String::new(),
    };
    let dry = if s.dry_run {
        "  [DRY RUN: nothing is written]"
    } else {
        ""
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            bold(format!("Bulkhead installer: {}", s.screen.title())),
            Span::raw(step),
            Span::styled(dry, Style::new().fg(Color::Yellow)),
        ])),
        head,
    );
    match s.screen {
        Screen::Welcome => welcome(s, f, body),
        Screen::Locale => locale(s, f, body),
        Screen::Hardware => hardware(s, f, body),
        Screen::Disk => disk(s, f, body),
        Screen::Passphrase => passphrase(s, f, body),
        Screen::User => user(s, f, body),
        Screen::Timezone => timezone(s, f, body),
        Screen::Qubes => qubes(s, f, body),
        Screen::Summary => summary(s, f, body),
        Screen::Confirm => confirm(s, f, body),
        Screen::Progress => progress(s, f, body),
        Screen::Done => done(s, f, body),
        Screen::Error => error(s, f, body),
    }
    if let Some(m) = &s.message {
        f.render_widget(
            Paragraph::new(Span::styled(
                m.clone(),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ))
            .wrap(Wrap { trim: true }),
            msg,
        );
    }
    f.render_widget(
        Paragraph::new(Span::styled(
            keys(s.screen),
            Style::new().add_modifier(Modifier::DIM),
        )),
        help,
    );
}

fn keys(screen: Screen) -> &'static str {
    match screen {
        Screen::Welcome => "Enter: start   q: quit",
        Screen::Locale => "Up/Down: choose   Tab: language/keyboard   Enter: next   Esc: back",
        Screen::Hardware => {
            "Up/Down: requirement   Space: accept warning   Enter: next   Esc: back"
        }
        Screen::Disk | Screen::Timezone => "Up/Down: choose   Enter: next   Esc: back",
        Screen::Passphrase | Screen::User => "Tab/Up/Down: field   Enter: next   Esc: back",
        Screen::Qubes => "Up/Down: option   Space: toggle   Enter: next   Esc: back",
        Screen::Summary => {
            "Up/Down: scroll   Enter: continue to the erase confirmation   Esc: back"
        }
        Screen::Confirm => "Type the disk's name, then Enter   Esc: back (nothing is written)",
        Screen::Progress => "Please wait; the install cannot be interrupted safely.",
        Screen::Done => "Enter: reboot",
        Screen::Error => "Enter: retry (asks for confirmation again)   Esc: back to the summary",
    }
}

/// Borders drawn with `+`, `-` and `|` for terminals without line drawing
/// (a vt100 on a serial line).
const ASCII_BORDER: symbols::border::Set = symbols::border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

fn boxed(ascii: bool, title: &str) -> Block<'_> {
    let b = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "));
    if ascii { b.border_set(ASCII_BORDER) } else { b }
}

fn welcome(s: &State, f: &mut Frame, a: Rect) {
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

fn locale(s: &State, f: &mut Frame, a: Rect) {
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

fn status_span(st: Status) -> Span<'static> {
    let c = match st {
        Status::Pass => Color::Green,
        Status::Warn | Status::Unknown => Color::Yellow,
        Status::Fail => Color::Red,
    };
    Span::styled(
        format!("{:<7}", st.label()),
        Style::new().fg(c).add_modifier(Modifier::BOLD),
    )
}

fn hardware(s: &State, f: &mut Frame, a: Rect) {
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

fn disk(s: &State, f: &mut Frame, a: Rect) {
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

fn field_line(label: &str, value: String, focused: bool) -> Line<'static> {
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

fn passphrase(s: &State, f: &mut Frame, a: Rect) {
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

fn user(s: &State, f: &mut Frame, a: Rect) {
    let t = vec![
        Line::from("The user who logs in to dom0, the administrative domain. It can"),
        Line::from("administer the system (groups wheel and qubes)."),
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

fn timezone(s: &State, f: &mut Frame, a: Rect) {
    let (w, mut st) = pick_list(
        s.ascii,
        TIMEZONES.iter().map(|z| z.to_string()).collect(),
        s.tz_cursor,
        true,
        "Time zone (the clock is kept in UTC)",
    );
    f.render_stateful_widget(w, a, &mut st);
}

fn qubes(s: &State, f: &mut Frame, a: Rect) {
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

fn summary(s: &State, f: &mut Frame, a: Rect) {
    let an = s.answers();
    let mut t = vec![
        Line::from(format!(
            "Language {}, keyboard {}, time zone {}, host {}",
            an.system.language, an.system.keyboard, an.system.timezone, an.system.hostname
        )),
        Line::from(format!(
            "User {}; qubes: system {}, sys-usb {}, disposable sys-net {}, AppVMs {}",
            an.user.name,
            yes(an.qubes.system_qubes),
            yes(an.qubes.sys_usb),
            yes(an.qubes.disposable_sys_net),
            yes(an.qubes.appvms)
        )),
    ];
    if !s.accepted.is_empty() {
        t.push(Line::from(format!(
            "Accepted hardware warnings: {}",
            s.accepted.join(", ")
        )));
    }
    if let Some(p) = &s.plan {
        let d = &p.disk;
        t.push(Line::from(vec![bold(format!(
            "Disk {}: {}, {}, {}",
            d.path,
            d.model.as_deref().unwrap_or("unknown model"),
            human_size(d.size_bytes),
            d.transport
        ))]));
        for part in &p.partitions {
            t.push(Line::from(format!(
                "  {:<15} {:>10}  {:<10} {}",
                part.device_path(&d.path),
                human_size(part.size_bytes),
                part.name,
                if s.ascii {
                    part.content.replace('→', "->")
                } else {
                    part.content.clone()
                }
            )));
        }
        t.push(Line::from(format!(
            "  encryption: LUKS2 {}, {}-bit key, {}",
            p.luks.cipher, p.luks.key_bits, p.luks.pbkdf
        )));
        let v = &p.lvm;
        t.push(Line::from(format!(
            "  LVM {}: {} {} ({}), {} {}, about {} free for qubes",
            v.vg,
            v.root_lv,
            human_size(v.root_lv_bytes),
            v.root_fs,
            v.swap_lv,
            human_size(v.swap_bytes),
            human_size(v.free_for_vm_pool_bytes)
        )));
        if !p.destroys.is_empty() {
            t.push(Line::from(format!("  ERASES: {}", p.destroys.join("; "))));
        }
        for w in &p.warnings {
            t.push(Line::from(format!("  warning: {w}")));
        }
    }
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .scroll((s.scroll, 0))
            .block(boxed(s.ascii, "The plan (nothing written yet)")),
        a,
    );
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn confirm(s: &State, f: &mut Frame, a: Rect) {
    let dev = s.selected_disk().map(|d| d.disk.clone());
    let mut t = Vec::new();
    if let Some(d) = &dev {
        t.push(Line::from(Span::styled(
            "EVERYTHING ON THIS DISK WILL BE ERASED:",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )));
        t.push(Line::from(bold(format!("  {}", d.describe()))));
        if let Some(p) = &s.plan {
            for x in &p.destroys {
                t.push(Line::from(format!("  {x}")));
            }
        }
        t.push(Line::from(""));
        t.push(Line::from(format!(
            "To erase it and install, type its name: {}",
            d.path
        )));
        t.push(Line::from(""));
        t.push(field_line("Disk name", s.confirm.clone(), true));
        if !s.confirm.is_empty() && s.confirm != d.path {
            t.push(Line::from("  (does not match yet)"));
        }
    }
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .block(boxed(s.ascii, "Last chance")),
        a,
    );
}

fn progress(s: &State, f: &mut Frame, a: Rect) {
    let [g, stages, logp] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Min(3),
    ])
    .areas(a);
    let eta = match s.eta_secs {
        Some(e) => format!(", about {}:{:02} left", e / 60, e % 60),
        None => String::new(),
    };
    let title = s.stage.map(|x| x.title()).unwrap_or("Starting");
    if s.ascii {
        let label = format!(" {}%{eta}", s.percent);
        let width = usize::from(g.width)
            .saturating_sub(4 + label.len())
            .clamp(10, 100);
        let filled = width * usize::from(s.percent.min(100)) / 100;
        let bar = format!(
            "[{}{}]{label}",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        f.render_widget(
            Paragraph::new(bar)
                .wrap(Wrap { trim: true })
                .block(boxed(true, title)),
            g,
        );
    } else {
        f.render_widget(
            Gauge::default()
                .block(boxed(false, title))
                .percent(u16::from(s.percent.min(100)))
                .label(format!("{}%{eta}", s.percent)),
            g,
        );
    }
    let names: Vec<Span> = crate::engine::STAGES
        .iter()
        .map(|st| {
            let done = s.stage.is_some_and(|c| *st < c);
            let cur = s.stage == Some(*st);
            let txt = format!(
                "{}{:?} ",
                if done {
                    "+"
                } else if cur {
                    ">"
                } else {
                    " "
                },
                st
            );
            Span::styled(txt, if cur { HL } else { Style::new() })
        })
        .collect();
    f.render_widget(
        Paragraph::new(Line::from(names))
            .wrap(Wrap { trim: true })
            .block(boxed(s.ascii, "Stages")),
        stages,
    );
    let h = logp.height.saturating_sub(2) as usize;
    let start = s.log.len().saturating_sub(h);
    let lines: Vec<Line> = s.log[start..]
        .iter()
        .map(|l| Line::from(l.clone()))
        .collect();
    f.render_widget(Paragraph::new(lines).block(boxed(s.ascii, "Log")), logp);
}

fn done(s: &State, f: &mut Frame, a: Rect) {
    let mut t = vec![Line::from(bold(if s.dry_run {
        "Dry run finished: nothing was written to any disk."
    } else {
        "Bulkhead is installed."
    }))];
    t.push(Line::from(""));
    if s.dry_run {
        t.push(Line::from(
            "The install would have applied the plan shown on the summary.",
        ));
        t.push(Line::from("Press Enter to leave."));
    } else {
        t.push(Line::from(
            "Remove the installation medium and press Enter to reboot.",
        ));
        t.push(Line::from(
            "At first boot you enter the disk passphrase; the default qubes are",
        ));
        t.push(Line::from(
            "then created. The install log is in /var/log/bulkhead/install.log.",
        ));
    }
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: false })
            .block(boxed(s.ascii, "Done")),
        a,
    );
}

fn error(s: &State, f: &mut Frame, a: Rect) {
    let (stage, msg) = s
        .failure
        .clone()
        .unwrap_or((Stage::Hardware, "unknown failure".into()));
    let [top, logp] = Layout::vertical([Constraint::Length(7), Constraint::Min(3)]).areas(a);
    let t = Text::from(vec![
        Line::from(vec![bold("Failed step: "), Span::raw(stage.title())]),
        Line::from(msg),
        Line::from(format!("Full log: {}", s.log_path)),
    ]);
    f.render_widget(
        Paragraph::new(t)
            .wrap(Wrap { trim: true })
            .block(boxed(s.ascii, "What went wrong")),
        top,
    );
    let h = logp.height.saturating_sub(2) as usize;
    let start = s.log.len().saturating_sub(h);
    let lines: Vec<Line> = s.log[start..]
        .iter()
        .map(|l| Line::from(l.clone()))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(boxed(s.ascii, "Last log lines")),
        logp,
    );
}
