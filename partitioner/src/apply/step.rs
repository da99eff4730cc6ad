//! The steps of an apply, in order: their names (as the journal and the
//! progress reports give them), what each does for people, and what must be
//! open before it runs.

use serde::Serialize;

/// The steps, in order; the discriminant is the journal index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Wipe = 0,
    Gpt = 1,
    Esp = 2,
    Boot = 3,
    Luks = 4,
    Lvm = 5,
    RootFs = 6,
    Swap = 7,
}

pub const STEPS: [Step; 8] = [
    Step::Wipe,
    Step::Gpt,
    Step::Esp,
    Step::Boot,
    Step::Luks,
    Step::Lvm,
    Step::RootFs,
    Step::Swap,
];

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Wipe => "wipe",
            Step::Gpt => "gpt",
            Step::Esp => "esp",
            Step::Boot => "boot",
            Step::Luks => "luks",
            Step::Lvm => "lvm",
            Step::RootFs => "rootfs",
            Step::Swap => "swap",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Step::Wipe => "erasing old signatures at both ends of the disk and of every partition",
            Step::Gpt => "writing the GPT (primary and backup)",
            Step::Esp => "formatting the EFI system partition (FAT32)",
            Step::Boot => "formatting /boot (ext4)",
            Step::Luks => "formatting LUKS2 (argon2id key slot; this takes a few seconds)",
            Step::Lvm => "creating LVM: qubes_dom0, thin pool root-pool, root, swap",
            Step::RootFs => "formatting the root file system (ext4)",
            Step::Swap => "formatting swap",
        }
    }
    pub fn from_name(s: &str) -> Option<Step> {
        STEPS.into_iter().find(|x| x.name() == s)
    }
    /// The step's index in the journal.
    pub fn index(self) -> u32 {
        self as u32
    }
    /// Whether the step writes inside LUKS2, which must be open first.
    pub(super) fn inside_luks(self) -> bool {
        matches!(self, Step::Lvm | Step::RootFs | Step::Swap)
    }
    /// Whether the step writes to a logical volume of the active VG.
    pub(super) fn on_lvm(self) -> bool {
        matches!(self, Step::RootFs | Step::Swap)
    }
}

/// What the journal says is done, for messages.
pub fn describe_state(done: &[u32]) -> String {
    let mut s = String::from("State of the disk:");
    for st in STEPS {
        let d = done.contains(&st.index());
        s.push_str(&format!(
            "\n  {:<7} {}",
            st.name(),
            if d { "done" } else { "not done" }
        ));
    }
    s
}
