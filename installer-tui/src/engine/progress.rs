//! The install's stages with their share of the time, the progress events
//! front ends show, and the install log (which never holds a secret: only
//! what [`Log::line`] is given, and no caller gives it one).

use std::time::Duration;

/// The stages, in order, with their share of the whole install (percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Hardware,
    Plan,
    Partition,
    Payload,
    Configure,
    Bootloader,
    Firstboot,
    Finish,
}

pub const STAGES: [Stage; 8] = [
    Stage::Hardware,
    Stage::Plan,
    Stage::Partition,
    Stage::Payload,
    Stage::Configure,
    Stage::Bootloader,
    Stage::Firstboot,
    Stage::Finish,
];

impl Stage {
    pub fn title(self) -> &'static str {
        match self {
            Stage::Hardware => "Checking the hardware",
            Stage::Plan => "Planning the disk layout",
            Stage::Partition => "Partitioning and encrypting the disk",
            Stage::Payload => "Copying the system",
            Stage::Configure => "Writing the system configuration",
            Stage::Bootloader => "Installing the bootloader",
            Stage::Firstboot => "Handing over the first-boot settings",
            Stage::Finish => "Unmounting and closing the disk",
        }
    }
    /// Share of the whole install time, in percent (sums to 100).
    pub fn weight(self) -> u32 {
        match self {
            Stage::Hardware => 1,
            Stage::Plan => 1,
            Stage::Partition => 15,
            Stage::Payload => 65,
            Stage::Configure => 3,
            Stage::Bootloader => 12,
            Stage::Firstboot => 1,
            Stage::Finish => 2,
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub stage: Stage,
    /// Overall percent, 0..=100.
    pub percent: u8,
    /// Estimated time left (none before any progress).
    pub eta: Option<Duration>,
    /// A log line for the log pane.
    pub message: String,
}

/// Overall percent when `within` percent of `stage` is done.
pub fn overall_percent(stage: Stage, within: u8) -> u8 {
    let before: u32 = STAGES
        .iter()
        .take_while(|s| **s != stage)
        .map(|s| s.weight())
        .sum();
    let p = before + stage.weight() * u32::from(within.min(100)) / 100;
    p.min(100) as u8
}

/// Time left at `percent` after `elapsed`, assuming the weights hold.
pub fn eta(elapsed: Duration, percent: u8) -> Option<Duration> {
    if percent == 0 {
        return None;
    }
    let p = f64::from(percent.min(100));
    Some(elapsed.mul_f64((100.0 - p) / p))
}

/// Where the install log goes on the target.
pub const LOG_PATH: &str = "var/log/bulkhead/install.log";

/// Collects the install log (no secrets are ever passed in).
#[derive(Debug, Default, Clone)]
pub struct Log {
    pub lines: Vec<String>,
}

impl Log {
    pub fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }
    pub fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        t.push('\n');
        t
    }
}
