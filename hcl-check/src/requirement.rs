//! The hardware requirements, one variant each: the id that reports, answer
//! files and tests use, the title a report shows, and what a person accepts
//! when they install despite a warning on it. Adding a requirement is
//! adding a variant here and its check in `verdict`.

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    Cpu64Bit,
    Virtualization,
    Iommu,
    Ram,
    Disk,
    Keyboard,
}

impl Requirement {
    /// In the order reports list them.
    pub const ALL: [Requirement; 6] = [
        Requirement::Cpu64Bit,
        Requirement::Virtualization,
        Requirement::Iommu,
        Requirement::Ram,
        Requirement::Disk,
        Requirement::Keyboard,
    ];

    /// The stable identifier (reports, `hardware.accept_warnings`).
    pub fn id(self) -> &'static str {
        match self {
            Requirement::Cpu64Bit => "cpu-64bit",
            Requirement::Virtualization => "virtualization",
            Requirement::Iommu => "iommu",
            Requirement::Ram => "ram",
            Requirement::Disk => "disk",
            Requirement::Keyboard => "keyboard",
        }
    }

    /// What is required, as a report's heading says it.
    pub fn title(self) -> &'static str {
        match self {
            Requirement::Cpu64Bit => "64-bit x86 CPU",
            Requirement::Virtualization => "CPU virtualization with SLAT",
            Requirement::Iommu => "IOMMU (device isolation)",
            Requirement::Ram => "memory",
            Requirement::Disk => "disk",
            Requirement::Keyboard => "keyboard not only on USB",
        }
    }

    /// What the person accepts by installing despite a warning on it.
    pub fn consequence(self) -> &'static str {
        match self {
            Requirement::Iommu => {
                "Without a working IOMMU, sys-net and sys-usb cannot be isolated: a compromised network or USB device can reach dom0's memory."
            }
            Requirement::Virtualization => {
                "Without hardware virtualization, qubes run slowly or not at all (no HVM qubes)."
            }
            Requirement::Ram => {
                "With this little memory only a few qubes fit at once; the system will be slow."
            }
            Requirement::Disk => "The disk may be too small for templates and qubes.",
            Requirement::Keyboard => {
                "Only USB keyboards were found: with sys-usb, dom0 could lose its keyboard; sys-usb is then skipped."
            }
            Requirement::Cpu64Bit => "The CPU may not be able to run Xen at all.",
        }
    }

    pub fn from_id(id: &str) -> Option<Requirement> {
        Requirement::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Every id, comma-separated, for messages and references.
    pub fn ids() -> String {
        Requirement::ALL.map(Requirement::id).join(", ")
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Requirement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl PartialEq<str> for Requirement {
    fn eq(&self, other: &str) -> bool {
        self.id() == other
    }
}

impl PartialEq<&str> for Requirement {
    fn eq(&self, other: &&str) -> bool {
        self.id() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for r in Requirement::ALL {
            assert_eq!(Requirement::from_id(r.id()), Some(r));
        }
        let mut ids: Vec<_> = Requirement::ALL.map(Requirement::id).to_vec();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Requirement::ALL.len());
        assert_eq!(Requirement::from_id("iommmu"), None);
    }

    #[test]
    fn serializes_as_its_id() {
        assert_eq!(
            serde_json::to_string(&Requirement::Iommu).unwrap(),
            "\"iommu\""
        );
    }
}
