//! The view: each screen is a pure function of [`State`]; no I/O happens
//! here, so every screen is a TestBackend snapshot. Laid out for 80×24 and
//! plain terminals (vt100, linux console): ASCII borders' look comes from
//! the terminal, colour is an aid, never the only signal (markers like
//! `[x]`, `FAIL`, `>` carry the meaning).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use hcl_check::Status;

use crate::app::{Screen, State, WIZARD};

mod install;
mod setup;

use install::{confirm, done, error, progress, summary};
use setup::{disk, hardware, locale, passphrase, qubes, timezone, user, welcome};

pub(super) const HL: Style = Style::new().add_modifier(Modifier::REVERSED);

pub(super) fn bold(s: impl Into<String>) -> Span<'static> {
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

pub(super) fn boxed(ascii: bool, title: &str) -> Block<'_> {
    let b = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "));
    if ascii { b.border_set(ASCII_BORDER) } else { b }
}

pub(super) fn status_span(st: Status) -> Span<'static> {
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
