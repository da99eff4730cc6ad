//! Thin volumes for the qubes, with the lvm commands qubes-core-admin's
//! `qubes/storage/lvm.py` runs (`lvcreate --thin ... --virtualsize=NB`,
//! `lvcreate --snapshot` of a thin origin, `lvrename`), or, with `--root DIR` and
//! no reachable volume group, a record of the volumes that would exist.
//!
//! Both refuse to create a volume that exists, as `lvcreate` does, so a step
//! that forgot to check first fails instead of silently creating twice, and
//! refuse to remove one that does not. Every change is appended to an action
//! log (one line per volume made, renamed or removed), which the crash tests
//! read to prove nothing was made twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Where volumes are made.
pub trait Storage {
    /// One line for the console: what this storage is.
    fn describe(&self) -> String;
    /// Whether the thin pool `vg/pool` exists.
    fn pool_exists(&mut self, vg: &str, pool: &str) -> Result<bool, Error>;
    /// `lvcreate -l N%FREE --thinpool POOL VG`.
    fn create_pool(&mut self, vg: &str, pool: &str, percent_free: u8) -> Result<(), Error>;
    /// Whether the LV `vg/name` exists.
    fn exists(&mut self, vid: &str) -> Result<bool, Error>;
    /// A new thin volume of `size` bytes in `vg/pool`.
    fn create(&mut self, pool: &str, vid: &str, size: u64) -> Result<(), Error>;
    /// A thin snapshot `vid` of `origin`.
    fn snapshot(&mut self, origin: &str, vid: &str) -> Result<(), Error>;
    /// Writes a raw image into an existing volume (rewriting it is harmless).
    fn import(&mut self, vid: &str, image: &Path) -> Result<(), Error>;
    /// `lvrename` within the VG.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error>;
    /// `lvremove` of an existing volume.
    fn remove(&mut self, vid: &str) -> Result<(), Error>;
    /// Every volume of the VG, as `VG/NAME`, sorted.
    fn list(&mut self, vg: &str) -> Result<Vec<String>, Error>;
}

/// Appends one line to the action log.
fn log_action(log: &Path, line: &str) -> Result<(), Error> {
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io("creating directory", d, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io("opening", log, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io("appending to", log, e))?;
    f.sync_all().map_err(|e| Error::io("syncing", log, e))
}

/// Real LVM through the `lvm` binary.
pub struct Lvm {
    lvm: PathBuf,
    log: PathBuf,
    /// Whether lvm may start dmeventd monitoring (not in an installer).
    monitoring: bool,
    /// name -> lv_attr of the VG, refreshed after each change.
    cache: Option<(String, BTreeMap<String, String>)>,
}

impl Lvm {
    pub fn new(lvm: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        Lvm {
            lvm: lvm.into(),
            log: log.into(),
            monitoring: true,
            cache: None,
        }
    }

    /// As an installer runs lvm: no dmeventd monitoring of what it makes.
    pub fn without_monitoring(mut self) -> Self {
        self.monitoring = false;
        self
    }

    /// Whether the volume group is reachable with this lvm binary.
    pub fn vg_reachable(lvm: &Path, vg: &str) -> bool {
        Command::new(lvm)
            .args(["vgs", "--noheadings", "-o", "vg_name", "--", vg])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn run(&mut self, args: &[&str]) -> Result<String, Error> {
        let mut c = if self.monitoring {
            let mut c = Command::new(&self.lvm);
            c.args(args);
            c
        } else {
            sysutil::lvm_without_monitoring(&self.lvm, args)
        };
        Ok(sysutil::run(&mut c)?)
    }

    fn lvs(&mut self, vg: &str) -> Result<&BTreeMap<String, String>, Error> {
        if self.cache.as_ref().is_none_or(|(v, _)| v != vg) {
            let out = self.run(&[
                "lvs",
                "--noheadings",
                "--separator",
                ",",
                "-o",
                "lv_name,lv_attr",
                "--",
                vg,
            ])?;
            let map = out
                .lines()
                .filter_map(|l| {
                    let (n, a) = l.trim().split_once(',')?;
                    Some((n.to_string(), a.to_string()))
                })
                .collect();
            self.cache = Some((vg.to_string(), map));
        }
        Ok(&self.cache.as_ref().expect("cache filled above").1)
    }

    /// Records a change: the cached listing is updated in place (one `lvs`
    /// per run instead of one per volume; each lvm call costs ~0.1 s, far
    /// more under emulation), then the action is logged.
    fn changed(
        &mut self,
        line: &str,
        added: Option<(&str, &str)>,
        removed: Option<&str>,
    ) -> Result<(), Error> {
        let vg = added
            .map(|a| a.0)
            .or(removed)
            .and_then(|v| v.split_once('/'))
            .map(|(g, _)| g);
        match (&mut self.cache, vg) {
            (Some((cvg, map)), Some(g)) if g == cvg => {
                if let Some((_, name)) = removed.and_then(|r| r.split_once('/')) {
                    map.remove(name);
                }
                if let Some((vid, attr)) = added
                    && let Some((_, name)) = vid.split_once('/')
                {
                    map.insert(name.to_string(), attr.to_string());
                }
            }
            _ => self.cache = None,
        }
        log_action(&self.log, line)
    }
}

fn split_vid(vid: &str) -> Result<(&str, &str), Error> {
    vid.split_once('/')
        .ok_or_else(|| Error::Storage(format!("volume id {vid:?} is not VG/NAME")))
}

impl Storage for Lvm {
    fn describe(&self) -> String {
        format!("LVM thin volumes via {}", self.lvm.display())
    }

    fn pool_exists(&mut self, vg: &str, pool: &str) -> Result<bool, Error> {
        match self.lvs(vg)?.get(pool) {
            None => Ok(false),
            Some(a) if a.starts_with('t') => Ok(true),
            Some(a) => Err(Error::Storage(format!(
                "{vg}/{pool} exists but is not a thin pool (lv_attr {a}); rename or remove it, then rerun"
            ))),
        }
    }

    fn create_pool(&mut self, vg: &str, pool: &str, percent_free: u8) -> Result<(), Error> {
        let extents = format!("{percent_free}%FREE");
        self.run(&[
            "lvcreate",
            &format!("--extents={extents}"),
            &format!("--thinpool={pool}"),
            "--",
            vg,
        ])?;
        let vid = format!("{vg}/{pool}");
        self.changed(
            &format!("create-pool {vid} {extents}"),
            Some((&vid, "twi-a-tz--")),
            None,
        )
    }

    fn exists(&mut self, vid: &str) -> Result<bool, Error> {
        let (vg, name) = split_vid(vid)?;
        Ok(self.lvs(vg)?.contains_key(name))
    }

    fn create(&mut self, pool: &str, vid: &str, size: u64) -> Result<(), Error> {
        let (_, name) = split_vid(vid)?;
        self.run(&[
            "lvcreate",
            "--thin",
            "--setactivationskip=n",
            "--activate=y",
            &format!("--name={name}"),
            &format!("--virtualsize={size}B"),
            "--",
            pool,
        ])?;
        self.changed(
            &format!("create {vid} {size}"),
            Some((vid, "Vwi-a-tz--")),
            None,
        )
    }

    fn snapshot(&mut self, origin: &str, vid: &str) -> Result<(), Error> {
        let (_, name) = split_vid(vid)?;
        self.run(&[
            "lvcreate",
            "--setactivationskip=n",
            "--activate=y",
            // A snapshot of a thin LV is a thin LV. (qubes-core-admin also
            // passes --type=thin; Debian 12's LVM 2.03.16 refuses that
            // together with --snapshot, as the guest test showed.)
            "--snapshot",
            &format!("--name={name}"),
            "--",
            origin,
        ])?;
        self.changed(
            &format!("snapshot {vid} {origin}"),
            Some((vid, "Vwi-a-tz--")),
            None,
        )
    }

    fn import(&mut self, vid: &str, image: &Path) -> Result<(), Error> {
        let dev = PathBuf::from("/dev").join(vid);
        copy_sparse(image, &dev)?;
        log_action(&self.log, &format!("import {vid} {}", image.display()))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        self.run(&["lvrename", "--", from, to])?;
        self.changed(
            &format!("rename {from} {to}"),
            Some((to, "Vwi-a-tz--")),
            Some(from),
        )
    }

    fn remove(&mut self, vid: &str) -> Result<(), Error> {
        split_vid(vid)?;
        self.run(&["lvremove", "-f", "--", vid])?;
        self.changed(&format!("remove {vid}"), None, Some(vid))
    }

    fn list(&mut self, vg: &str) -> Result<Vec<String>, Error> {
        Ok(self.lvs(vg)?.keys().map(|n| format!("{vg}/{n}")).collect())
    }
}

/// Copies an image onto a block device. Only the image's data is read:
/// the file mkfs.ext4 made is mostly holes, found with SEEK_DATA and
/// SEEK_HOLE; within the data, all-zero 1 MiB chunks are skipped too. A
/// fresh thin volume reads as zeros, and unwritten chunks stay unallocated.
fn copy_sparse(image: &Path, dev: &Path) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let src = std::fs::File::open(image).map_err(|e| Error::io("opening image", image, e))?;
    let dst = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(|e| Error::io("opening volume", dev, e))?;
    let len = src
        .metadata()
        .map_err(|e| Error::io("reading the size of", image, e))?
        .len();
    let seek = |off: u64, whence: libc::c_int| -> Result<Option<u64>, Error> {
        let off = libc::off_t::try_from(off).map_err(|_| {
            Error::io(
                "seeking in image",
                image,
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            )
        })?;
        // SAFETY: lseek on a descriptor this function owns; no memory is passed.
        let r = unsafe { libc::lseek(src.as_raw_fd(), off, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        let e = std::io::Error::last_os_error();
        // ENXIO: no data at or after `off`.
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        Err(Error::io("seeking in image", image, e))
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let Some(data) = seek(pos, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(data, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        let mut off = data;
        while off < end {
            let n = usize::try_from(end - off).map_or(buf.len(), |r| r.min(buf.len()));
            src.read_exact_at(&mut buf[..n], off)
                .map_err(|e| Error::io("reading image", image, e))?;
            if buf[..n].iter().any(|&b| b != 0) {
                dst.write_all_at(&buf[..n], off)
                    .map_err(|e| Error::io("writing volume", dev, e))?;
            }
            off += n as u64;
        }
        pos = end;
    }
    dst.sync_all()
        .map_err(|e| Error::io("syncing volume", dev, e))
}

/// `--root DIR` without a volume group: a sorted list of the volumes that
/// would exist (`DIR/var/lib/bulkhead/firstboot/volumes.list`). Creation of
/// real storage is skipped, and `describe` says so.
pub struct Recorded {
    list: PathBuf,
    log: PathBuf,
    root: PathBuf,
}

/// One line of the volume list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Pool {
        percent_free: u8,
    },
    Thin {
        pool: String,
        size: u64,
        image: Option<String>,
    },
    Snapshot {
        origin: String,
    },
}

impl Recorded {
    pub fn new(list: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        Recorded {
            list: list.into(),
            log: log.into(),
            root: PathBuf::from("/"),
        }
    }

    /// Image paths are recorded as the installed system sees them (without `root`).
    pub fn with_root(mut self, root: &Path) -> Self {
        self.root = root.to_path_buf();
        self
    }

    fn system_path(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(rel) if self.root != Path::new("/") => format!("/{}", rel.display()),
            _ => p.display().to_string(),
        }
    }

    fn load(&self) -> Result<BTreeMap<String, Entry>, Error> {
        let text = match std::fs::read_to_string(&self.list) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(Error::io("reading", &self.list, e)),
        };
        let bad = |l: &str| {
            Error::Storage(format!(
                "{}: cannot read line {l:?}; the file was edited or damaged",
                self.list.display()
            ))
        };
        let mut m = BTreeMap::new();
        for l in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let f: Vec<&str> = l.split_whitespace().collect();
            let kv = |k: &str| f.iter().find_map(|x| x.strip_prefix(k)).map(str::to_string);
            let e = match f.first() {
                Some(&"thin-pool") => Entry::Pool {
                    percent_free: kv("size=")
                        .and_then(|s| s.strip_suffix("%FREE").and_then(|p| p.parse().ok()))
                        .ok_or_else(|| bad(l))?,
                },
                Some(&"thin") => Entry::Thin {
                    pool: kv("pool=").ok_or_else(|| bad(l))?,
                    size: kv("size=")
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad(l))?,
                    image: kv("image="),
                },
                Some(&"snapshot") => Entry::Snapshot {
                    origin: kv("origin=").ok_or_else(|| bad(l))?,
                },
                _ => return Err(bad(l)),
            };
            m.insert(f.get(1).ok_or_else(|| bad(l))?.to_string(), e);
        }
        Ok(m)
    }

    fn save(&self, m: &BTreeMap<String, Entry>) -> Result<(), Error> {
        let mut s = String::from(
            "# Volumes bulkhead firstboot would have created (--root without a volume group).\n",
        );
        for (vid, e) in m {
            match e {
                Entry::Pool { percent_free } => {
                    s += &format!("thin-pool {vid} size={percent_free}%FREE\n")
                }
                Entry::Thin { pool, size, image } => {
                    s += &format!("thin {vid} pool={pool} size={size}");
                    if let Some(i) = image {
                        s += &format!(" image={i}");
                    }
                    s += "\n";
                }
                Entry::Snapshot { origin } => s += &format!("snapshot {vid} origin={origin}\n"),
            }
        }
        crate::util::write_atomic(&self.list, s.as_bytes(), 0o644)
    }

    fn add(&mut self, vid: &str, e: Entry, action: String) -> Result<(), Error> {
        let mut m = self.load()?;
        if m.contains_key(vid) {
            return Err(Error::Storage(format!(
                "volume {vid} already exists (recorded in {})",
                self.list.display()
            )));
        }
        m.insert(vid.to_string(), e);
        self.save(&m)?;
        log_action(&self.log, &action)
    }
}

impl Storage for Recorded {
    fn describe(&self) -> String {
        format!(
            "no volume group reachable: storage creation SKIPPED, volumes recorded in {}",
            self.list.display()
        )
    }

    fn pool_exists(&mut self, vg: &str, pool: &str) -> Result<bool, Error> {
        Ok(matches!(
            self.load()?.get(&format!("{vg}/{pool}")),
            Some(Entry::Pool { .. })
        ))
    }

    fn create_pool(&mut self, vg: &str, pool: &str, percent_free: u8) -> Result<(), Error> {
        let vid = format!("{vg}/{pool}");
        self.add(
            &vid,
            Entry::Pool { percent_free },
            format!("create-pool {vid} {percent_free}%FREE"),
        )
    }

    fn exists(&mut self, vid: &str) -> Result<bool, Error> {
        Ok(self.load()?.contains_key(vid))
    }

    fn create(&mut self, pool: &str, vid: &str, size: u64) -> Result<(), Error> {
        if !self.pool_exists_vid(pool)? {
            return Err(Error::Storage(format!("thin pool {pool} does not exist")));
        }
        self.add(
            vid,
            Entry::Thin {
                pool: pool.into(),
                size,
                image: None,
            },
            format!("create {vid} {size}"),
        )
    }

    fn snapshot(&mut self, origin: &str, vid: &str) -> Result<(), Error> {
        if !self.exists(origin)? {
            return Err(Error::Storage(format!(
                "cannot snapshot {origin}: it does not exist"
            )));
        }
        self.add(
            vid,
            Entry::Snapshot {
                origin: origin.into(),
            },
            format!("snapshot {vid} {origin}"),
        )
    }

    fn import(&mut self, vid: &str, image: &Path) -> Result<(), Error> {
        let mut m = self.load()?;
        let shown = self.system_path(image);
        match m.get_mut(vid) {
            Some(Entry::Thin { image: i, .. }) => *i = Some(shown.clone()),
            _ => {
                return Err(Error::Storage(format!(
                    "cannot import into {vid}: no such thin volume"
                )));
            }
        }
        self.save(&m)?;
        log_action(&self.log, &format!("import {vid} {shown}"))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        let mut m = self.load()?;
        if m.contains_key(to) {
            return Err(Error::Storage(format!(
                "cannot rename {from} to {to}: {to} exists"
            )));
        }
        let e = m
            .remove(from)
            .ok_or_else(|| Error::Storage(format!("cannot rename {from}: it does not exist")))?;
        m.insert(to.into(), e);
        // LVM knows an origin by its id: a snapshot's origin follows the rename.
        for e in m.values_mut() {
            if let Entry::Snapshot { origin } = e
                && origin == from
            {
                *origin = to.into();
            }
        }
        self.save(&m)?;
        log_action(&self.log, &format!("rename {from} {to}"))
    }

    fn remove(&mut self, vid: &str) -> Result<(), Error> {
        let mut m = self.load()?;
        if m.remove(vid).is_none() {
            return Err(Error::Storage(format!(
                "cannot remove {vid}: it does not exist"
            )));
        }
        self.save(&m)?;
        log_action(&self.log, &format!("remove {vid}"))
    }

    fn list(&mut self, vg: &str) -> Result<Vec<String>, Error> {
        let prefix = format!("{vg}/");
        Ok(self
            .load()?
            .into_keys()
            .filter(|k| k.starts_with(&prefix))
            .collect())
    }
}

impl Recorded {
    fn pool_exists_vid(&mut self, pool: &str) -> Result<bool, Error> {
        let (vg, p) = split_vid(pool)?;
        self.pool_exists(vg, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_copied_by_its_data_and_its_holes_stay_unwritten() {
        use std::os::unix::fs::{FileExt, MetadataExt};
        const MIB: u64 = 1 << 20;
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("root.img");
        let dev = d.path().join("volume");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(64 * MIB).unwrap();
        // data at the start, a lone byte mid-chunk, a zero-filled (not
        // sparse) MiB, and data running up to the very end
        f.write_all_at(&[0xa5; 4096], 0).unwrap();
        f.write_all_at(b"x", 20 * MIB + 12345).unwrap();
        f.write_all_at(&vec![0u8; MIB as usize], 30 * MIB).unwrap();
        f.write_all_at(&[7; 3000], 64 * MIB - 3000).unwrap();
        drop(f);
        std::fs::File::create(&dev)
            .unwrap()
            .set_len(64 * MIB)
            .unwrap();
        copy_sparse(&img, &dev).unwrap();
        assert!(std::fs::read(&img).unwrap() == std::fs::read(&dev).unwrap());
        // three MiB chunks at most were written: not the zeros, not the holes
        let written = std::fs::metadata(&dev).unwrap().blocks() * 512;
        assert!(written <= 3 * MIB, "{written} bytes allocated");
        // an image that is all hole writes nothing
        let empty = d.path().join("empty.img");
        std::fs::File::create(&empty)
            .unwrap()
            .set_len(8 * MIB)
            .unwrap();
        let dev2 = d.path().join("volume2");
        std::fs::File::create(&dev2)
            .unwrap()
            .set_len(8 * MIB)
            .unwrap();
        copy_sparse(&empty, &dev2).unwrap();
        assert_eq!(std::fs::metadata(&dev2).unwrap().blocks(), 0);
    }

    #[test]
    fn recorded_refuses_duplicates_and_missing_origins() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Recorded::new(d.path().join("v.list"), d.path().join("a.log"));
        assert!(s.create("vg/pool", "vg/a", 1).is_err(), "no pool yet");
        s.create_pool("vg", "pool", 90).unwrap();
        assert!(s.pool_exists("vg", "pool").unwrap());
        s.create("vg/pool", "vg/a-import", 10).unwrap();
        s.import("vg/a-import", Path::new("/img")).unwrap();
        s.rename("vg/a-import", "vg/a").unwrap();
        assert!(s.create("vg/pool", "vg/a", 10).is_err());
        assert!(s.snapshot("vg/nope", "vg/b").is_err());
        s.snapshot("vg/a", "vg/b").unwrap();
        let list = std::fs::read_to_string(d.path().join("v.list")).unwrap();
        assert!(
            list.contains("thin vg/a pool=vg/pool size=10 image=/img\n"),
            "{list}"
        );
        assert!(list.contains("snapshot vg/b origin=vg/a\n"), "{list}");
        // Reloaded from the file, the same entries.
        let mut again = Recorded::new(d.path().join("v.list"), d.path().join("a.log"));
        assert!(again.exists("vg/b").unwrap() && !again.exists("vg/a-import").unwrap());
    }

    #[test]
    fn recorded_removes_lists_and_follows_renamed_origins() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Recorded::new(d.path().join("v.list"), d.path().join("a.log"));
        s.create_pool("vg", "pool", 90).unwrap();
        s.create("vg/pool", "vg/a", 10).unwrap();
        s.snapshot("vg/a", "vg/a-snap").unwrap();
        s.rename("vg/a", "vg/a-1-back").unwrap();
        let list = std::fs::read_to_string(d.path().join("v.list")).unwrap();
        assert!(
            list.contains("snapshot vg/a-snap origin=vg/a-1-back\n"),
            "{list}"
        );
        assert_eq!(
            s.list("vg").unwrap(),
            ["vg/a-1-back", "vg/a-snap", "vg/pool"]
        );
        assert!(
            s.list("v").unwrap().is_empty(),
            "vg v is not a prefix match"
        );
        s.remove("vg/a-1-back").unwrap();
        assert!(s.remove("vg/a-1-back").is_err(), "removing twice must fail");
        assert!(!s.exists("vg/a-1-back").unwrap());
        let log = std::fs::read_to_string(d.path().join("a.log")).unwrap();
        assert!(
            log.ends_with("rename vg/a vg/a-1-back\nremove vg/a-1-back\n"),
            "{log}"
        );
    }
}
