//! The kernel's files, read below discovery's root: /proc/mounts and
//! /proc/swaps (with their octal escapes), /proc/meminfo, the kernel command
//! line (the live medium's label and device), `sys/block` holders and the
//! online CPU list.

use std::path::Path;

/// The ISO9660 label of Bulkhead's live medium (iso-builder's default).
pub const DEFAULT_LIVE_LABEL: &str = "BULKHEAD";

/// Decodes the octal escapes of /proc/mounts (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push((v & 0xff) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (device, mount point, fstype) from /proc/mounts text.
pub fn parse_mounts(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let dev = f.next()?;
            let mnt = f.next()?;
            let fs = f.next().unwrap_or("");
            Some((unescape_mount(dev), unescape_mount(mnt), fs.to_string()))
        })
        .collect()
}

/// Swap device paths from /proc/swaps text (header line skipped).
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(unescape_mount))
        .collect()
}

/// MemTotal in bytes from /proc/meminfo text.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The live medium label from the kernel command line: `bulkhead.label=X`,
/// `root=live:CDLABEL=X` or `root=live:LABEL=X`; the default otherwise.
pub fn live_label_from_cmdline(cmdline: &str) -> String {
    for arg in cmdline.split_whitespace() {
        if let Some(l) = arg.strip_prefix("bulkhead.label=") {
            return l.to_string();
        }
        if let Some(rest) = arg.strip_prefix("root=live:") {
            for p in ["CDLABEL=", "LABEL="] {
                if let Some(l) = rest.strip_prefix(p) {
                    return l.to_string();
                }
            }
        }
    }
    DEFAULT_LIVE_LABEL.to_string()
}

/// Devices named by `bulkhead.medium=/dev/X` on the kernel command line.
pub(super) fn live_devices_from_cmdline(cmdline: &str) -> Vec<String> {
    cmdline
        .split_whitespace()
        .filter_map(|a| a.strip_prefix("bulkhead.medium="))
        .map(str::to_string)
        .collect()
}

pub(super) fn list_dir(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(path)
        .map(|rd| {
            // sysfs has no dot entries; fixtures keep empty directories in
            // git with a `.keep` file.
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Holders of a disk and of its partitions from `sys/block/NAME`.
pub(super) fn sys_holders(root: &Path, name: &str) -> Vec<String> {
    let base = root.join("sys/block").join(name);
    let mut out: Vec<String> = list_dir(&base.join("holders"));
    for sub in list_dir(&base) {
        if sub.starts_with(name) {
            out.extend(list_dir(&base.join(&sub).join("holders")));
        }
    }
    for h in out.iter_mut() {
        // Name dm devices by their mapper name when sysfs says it.
        if let Ok(n) = std::fs::read_to_string(root.join("sys/block").join(&*h).join("dm/name")) {
            *h = format!("{h} ({})", n.trim());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Counts CPUs in a sysfs list like `0-3,6`.
pub(super) fn count_cpus(list: &str) -> u32 {
    list.trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(r.parse::<u32>().is_ok()),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_unescape_spaces() {
        let m = parse_mounts("/dev/sda1 /media/my\\040disk vfat rw 0 0\n");
        assert_eq!(m[0].1, "/media/my disk");
    }

    #[test]
    fn swaps_skip_header() {
        let s = parse_swaps("Filename Type Size Used Priority\n/dev/dm-1 partition 1 0 -2\n");
        assert_eq!(s, vec!["/dev/dm-1".to_string()]);
    }

    #[test]
    fn cmdline_labels() {
        assert_eq!(live_label_from_cmdline("quiet"), "BULKHEAD");
        assert_eq!(live_label_from_cmdline("root=live:CDLABEL=BH_1 x"), "BH_1");
        assert_eq!(live_label_from_cmdline("bulkhead.label=X2"), "X2");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-3,6\n"), 5);
        assert_eq!(count_cpus("0"), 1);
        assert_eq!(count_cpus("junk"), 0);
    }

    #[test]
    fn meminfo() {
        assert_eq!(parse_meminfo("MemTotal:  1024 kB\n"), Some(1024 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }
}
