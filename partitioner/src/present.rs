//! Presentation for people: sizes in binary units, the `partitioner list`
//! table and a disk's one-line description. Discovery only gathers facts.

use crate::discover::{DiskInfo, Inventory};

/// 1 decimal place in binary units.
pub fn human_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A table of the disks for people.
pub fn render_list(inv: &Inventory) -> String {
    let mut s = String::new();
    for d in &inv.disks {
        s.push_str(&format!(
            "{}  {}  {}  {}{}\n",
            d.path,
            human_size(d.size_bytes),
            d.transport,
            d.model.as_deref().unwrap_or("unknown model"),
            d.serial
                .as_deref()
                .map(|x| format!(" (serial {x})"))
                .unwrap_or_default()
        ));
        let table = d
            .partition_table
            .clone()
            .or(d.whole_disk_fstype.clone())
            .unwrap_or_else(|| "nothing recognised".into());
        s.push_str(&format!("    contains: {table}"));
        if !d.os_hints.is_empty() {
            s.push_str(&format!(" ({})", d.os_hints.join(", ")));
        }
        s.push('\n');
        for c in &d.contents {
            s.push_str(&format!(
                "      {} {} {} {}{}\n",
                c.path,
                c.kind,
                human_size(c.size_bytes),
                c.fstype.as_deref().unwrap_or("-"),
                c.label
                    .as_deref()
                    .or(c.partlabel.as_deref())
                    .map(|l| format!(" \"{l}\""))
                    .unwrap_or_default()
            ));
        }
        if d.removable {
            s.push_str("    removable\n");
        }
        if let Some(why) = &d.live_medium {
            s.push_str(&format!("    LIVE MEDIUM: {why}\n"));
        }
        for m in &d.mounted {
            s.push_str(&format!("    mounted: {m}\n"));
        }
        for m in &d.swap {
            s.push_str(&format!("    swap: {m}\n"));
        }
        for m in &d.holders {
            s.push_str(&format!("    held by: {m}\n"));
        }
    }
    if inv.disks.is_empty() {
        s.push_str("no disks found\n");
    }
    s
}

// An inherent impl outside discover.rs, so discovery does not depend on
// presentation while `disk.describe()` stays where callers expect it.
impl DiskInfo {
    /// "Model (serial S), 40.0 GiB, /dev/vda" for confirmations.
    pub fn describe(&self) -> String {
        let serial = self
            .serial
            .as_deref()
            .map(|s| format!(" (serial {s})"))
            .unwrap_or_default();
        format!(
            "{}{serial}, {}, {}",
            self.model.as_deref().unwrap_or("unknown model"),
            human_size(self.size_bytes),
            self.path
        )
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(40 << 30), "40.0 GiB");
    }
}
