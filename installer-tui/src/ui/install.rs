//! The screens of the install itself: summary, confirmation, progress,
//! the end, and an error.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Gauge, Paragraph, Wrap};

use partitioner::present::human_size;

use super::setup::field_line;
use super::{HL, bold, boxed};
use crate::app::State;
use crate::engine::Stage;

pub(super) fn summary(s: &State, f: &mut Frame, a: Rect) {
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

pub(super) fn confirm(s: &State, f: &mut Frame, a: Rect) {
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

pub(super) fn progress(s: &State, f: &mut Frame, a: Rect) {
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
    let lines = log_tail(s, logp);
    f.render_widget(Paragraph::new(lines).block(boxed(s.ascii, "Log")), logp);
}

pub(super) fn done(s: &State, f: &mut Frame, a: Rect) {
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

pub(super) fn error(s: &State, f: &mut Frame, a: Rect) {
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
    let lines = log_tail(s, logp);
    f.render_widget(
        Paragraph::new(lines).block(boxed(s.ascii, "Last log lines")),
        logp,
    );
}

/// The last log lines that fit inside `area`'s border.
fn log_tail(s: &State, area: Rect) -> Vec<Line<'static>> {
    let h = area.height.saturating_sub(2) as usize;
    let start = s.log.len().saturating_sub(h);
    s.log[start..]
        .iter()
        .map(|l| Line::from(l.clone()))
        .collect()
}
