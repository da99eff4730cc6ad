//! A qube's volumes across a run, as qubes-core-admin's
//! `qubes/storage/lvm.py` (`ThinVolume.start`/`stop`) handles them, read
//! from the qube's `<volume-config>` in qubes.xml.
//!
//! Start: a `snap_on_start` volume without `save_on_stop` (an AppVM's root)
//! gets a fresh `VID-snap` of its source (the template's root), any stale
//! one removed first; a `save_on_stop` volume (private, a template's root)
//! reuses a `VID-snap` left by an unclean stop, else snapshots its vid; a
//! volume with neither (volatile) is made anew. Release (after the domain
//! ended): a `save_on_stop` volume is committed (the current vid becomes the
//! revision `VID-<unix-secs>-back`, `VID-snap` becomes the vid, revisions
//! beyond `revisions_to_keep` are removed), a `snap_on_start` one's snapshot
//! is removed, a volatile one removed. Why: the qube gets its template's
//! current root on every start, and its private data survives a restart.
//!
//! Both are idempotent and every step is one storage change (logged by the
//! [`Storage`]), so a run cut at any point is finished by running it again;
//! neither touches the volumes of a domain Xen still has.

use crate::Error;
use crate::backend::Notes;
use crate::model::ROOT_IMG_SIZE;
use crate::qubesxml::QubesXml;
use crate::storage::Storage;

/// Whether Xen has a domain of that name (running, paused or dying alike:
/// its disks are in use until it is gone).
pub trait Domains {
    fn present(&mut self, name: &str) -> Result<bool, Error>;
}

/// One LVM volume of a qube, from qubes.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// `root`, `private`, `volatile`.
    pub name: String,
    /// `VG/vm-QUBE-VOLUME`.
    pub vid: String,
    /// The thin pool, `VG/POOL`.
    pub pool: String,
    pub snap_on_start: bool,
    pub save_on_stop: bool,
    /// The volume a `snap_on_start` volume is a snapshot of.
    pub source: Option<String>,
    pub size: u64,
    pub revisions_to_keep: u32,
}

impl Volume {
    /// The volume the running qube uses for a snapshot volume.
    pub fn snap(&self) -> String {
        format!("{}-snap", self.vid)
    }

    fn vg(&self) -> &str {
        self.vid.split_once('/').map_or("", |(vg, _)| vg)
    }
}

/// `vg/thin_pool` of a Qubes pool in qubes.xml.
pub(crate) fn lvm_pool(x: &QubesXml, name: &str) -> Result<(String, String), Error> {
    let p = x
        .pool(name)
        .ok_or_else(|| Error::Missing(format!("storage pool {name} is not in qubes.xml")))?;
    let get = |k: &str| {
        p.iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Missing(format!("pool {name} has no {k} in qubes.xml")))
    };
    Ok((get("volume_group")?, get("thin_pool")?))
}

/// The qube's LVM volumes (the kernel's, in the `linux-kernel` pool, are
/// files and not ours to manage).
pub fn volumes(x: &QubesXml, qube: &str) -> Result<Vec<Volume>, Error> {
    let d = x
        .domain(qube)
        .ok_or_else(|| Error::NoSuchQube(qube.to_string()))?;
    let mut out = Vec::new();
    for v in &d.volumes {
        let get = |k: &str| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.as_str());
        let Some(pool) = get("pool") else { continue };
        if pool == "linux-kernel" {
            continue;
        }
        let name = get("name").unwrap_or("?").to_string();
        let bad = |what: &str| {
            Error::State(format!(
                "qubes.xml: volume {name} of {qube} {what}; the store was edited or damaged (restore it, or recreate the qube)"
            ))
        };
        let (vg, thin) = lvm_pool(x, pool)?;
        let vid = get("vid").ok_or_else(|| bad("has no vid"))?.to_string();
        if vid.split_once('/').map(|(g, _)| g) != Some(vg.as_str()) {
            return Err(bad(&format!("has vid {vid}, not in volume group {vg}")));
        }
        let snap_on_start = get("snap_on_start") == Some("True");
        let source = get("source").map(str::to_string);
        if snap_on_start && source.is_none() && get("save_on_stop") != Some("True") {
            return Err(bad("is snap_on_start but has no source"));
        }
        let pool_keep = x
            .pool(pool)
            .and_then(|p| p.iter().find(|(a, _)| a == "revisions_to_keep"))
            .and_then(|(_, v)| v.parse().ok());
        out.push(Volume {
            pool: format!("{vg}/{thin}"),
            snap_on_start,
            save_on_stop: get("save_on_stop") == Some("True"),
            source,
            size: match get("size") {
                None => ROOT_IMG_SIZE,
                Some(s) => s.parse().map_err(|_| bad(&format!("has size {s:?}")))?,
            },
            revisions_to_keep: get("revisions_to_keep")
                .and_then(|v| v.parse().ok())
                .or(pool_keep)
                .unwrap_or(1),
            vid,
            name,
        });
    }
    Ok(out)
}

fn refuse_if_present(qube: &str, xen: &mut dyn Domains, doing: &str) -> Result<(), Error> {
    if xen.present(qube)? {
        return Err(Error::Conflict(format!(
            "cannot {doing} the volumes of {qube}: Xen still has the domain {qube}, which uses them; \
             stop it first (`qube shutdown {qube}`, or `qube kill {qube}`)"
        )));
    }
    Ok(())
}

/// Makes the volumes a starting qube uses (lvm.py's `start`).
pub fn start(
    storage: &mut dyn Storage,
    qube: &str,
    vols: &[Volume],
    xen: &mut dyn Domains,
) -> Result<Notes, Error> {
    refuse_if_present(qube, xen, "prepare")?;
    let mut notes = Vec::new();
    for v in vols {
        let snap = v.snap();
        if v.save_on_stop {
            if storage.exists(&snap)? {
                notes.push(format!(
                    "{snap} kept from a stop that did not commit it: reused (its changes are committed at the next stop)"
                ));
                continue;
            }
            let origin = match (&v.source, v.snap_on_start) {
                (Some(s), true) => s.as_str(),
                _ => v.vid.as_str(),
            };
            need(storage, origin, qube, &v.name)?;
            storage.snapshot(origin, &snap)?;
        } else if v.snap_on_start {
            if storage.exists(&snap)? {
                storage.remove(&snap)?;
            }
            let origin = v.source.as_deref().unwrap_or(&v.vid);
            need(storage, origin, qube, &v.name)?;
            storage.snapshot(origin, &snap)?;
        } else {
            if storage.exists(&v.vid)? {
                storage.remove(&v.vid)?;
            }
            storage.create(&v.pool, &v.vid, v.size)?;
        }
    }
    Ok(notes)
}

fn need(storage: &mut dyn Storage, vid: &str, qube: &str, volume: &str) -> Result<(), Error> {
    if storage.exists(vid)? {
        return Ok(());
    }
    Err(Error::Missing(format!(
        "cannot start {qube}: its {volume} volume comes from {vid}, which does not exist \
         (was its template removed? `lvs` lists the volumes; restore it or recreate the qube)"
    )))
}

/// Gives back the volumes of a qube whose domain has ended (lvm.py's
/// `stop`); `now` (Unix seconds) names the revision a commit keeps.
pub fn release(
    storage: &mut dyn Storage,
    qube: &str,
    vols: &[Volume],
    xen: &mut dyn Domains,
    now: u64,
) -> Result<Notes, Error> {
    refuse_if_present(qube, xen, "release")?;
    let mut notes = Vec::new();
    for v in vols {
        if v.save_on_stop {
            commit(storage, v, now, &mut notes)?;
        } else if v.snap_on_start {
            if storage.exists(&v.snap())? {
                storage.remove(&v.snap())?;
            }
        } else if storage.exists(&v.vid)? {
            storage.remove(&v.vid)?;
        }
    }
    Ok(notes)
}

/// The revisions of a volume, oldest first: (seconds, `VID-SECS-back`).
pub fn revisions(storage: &mut dyn Storage, v: &Volume) -> Result<Vec<(u64, String)>, Error> {
    let prefix = format!("{}-", v.vid);
    let mut revs: Vec<(u64, String)> = storage
        .list(v.vg())?
        .into_iter()
        .filter_map(|name| {
            let secs = name.strip_prefix(&prefix)?.strip_suffix("-back")?;
            // Another qube's volume may share the prefix (vm-a-private-x-1-back).
            let secs = secs
                .parse()
                .ok()
                .filter(|_| secs.bytes().all(|b| b.is_ascii_digit()))?;
            Some((secs, name))
        })
        .collect();
    revs.sort();
    Ok(revs)
}

/// lvm.py's `_commit`: the current vid is kept as a revision, the snapshot
/// the qube wrote becomes the vid, old revisions go. Each step leaves a
/// state the next run of this finishes.
fn commit(storage: &mut dyn Storage, v: &Volume, now: u64, notes: &mut Notes) -> Result<(), Error> {
    let snap = v.snap();
    if storage.exists(&snap)? {
        if storage.exists(&v.vid)? {
            // Two commits within a second must not collide.
            let newest = revisions(storage, v)?.last().map(|r| r.0 + 1);
            let secs = newest.map_or(now, |n| n.max(now));
            storage.rename(&v.vid, &format!("{}-{secs}-back", v.vid))?;
        }
        storage.rename(&snap, &v.vid)?;
        notes.push(format!("{} committed", v.vid));
    }
    let revs = revisions(storage, v)?;
    let keep = v.revisions_to_keep as usize;
    for (_, old) in &revs[..revs.len().saturating_sub(keep)] {
        storage.remove(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Recorded;

    struct Xen(bool);
    impl Domains for Xen {
        fn present(&mut self, _: &str) -> Result<bool, Error> {
            Ok(self.0)
        }
    }

    fn vol(name: &str, snap: bool, save: bool, source: Option<&str>, keep: u32) -> Volume {
        Volume {
            name: name.into(),
            vid: format!("vg/vm-q-{name}"),
            pool: "vg/pool".into(),
            snap_on_start: snap,
            save_on_stop: save,
            source: source.map(str::to_string),
            size: 7,
            revisions_to_keep: keep,
        }
    }

    /// An AppVM's volumes (root from the template t) in a recorded pool
    /// holding the template's root and the AppVM's private.
    fn appvm(keep: u32) -> (tempfile::TempDir, Recorded, Vec<Volume>) {
        let d = tempfile::tempdir().unwrap();
        let mut s = Recorded::new(d.path().join("v.list"), d.path().join("a.log"));
        s.create_pool("vg", "pool", 90).unwrap();
        s.create("vg/pool", "vg/vm-t-root", 10).unwrap();
        s.create("vg/pool", "vg/vm-q-private", 2).unwrap();
        let vols = vec![
            vol("root", true, false, Some("vg/vm-t-root"), keep),
            vol("private", false, true, None, keep),
            vol("volatile", false, false, None, keep),
        ];
        (d, s, vols)
    }

    fn lines(d: &tempfile::TempDir) -> Vec<String> {
        std::fs::read_to_string(d.path().join("v.list"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    fn log(d: &tempfile::TempDir) -> Vec<String> {
        let text = std::fs::read_to_string(d.path().join("a.log")).unwrap();
        text.lines().skip(3).map(str::to_string).collect()
    }

    #[test]
    fn start_snapshots_root_and_private_and_makes_volatile() {
        let (d, mut s, vols) = appvm(2);
        let notes = start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            log(&d),
            [
                "snapshot vg/vm-q-root-snap vg/vm-t-root",
                "snapshot vg/vm-q-private-snap vg/vm-q-private",
                "create vg/vm-q-volatile 7",
            ]
        );
    }

    #[test]
    fn restart_discards_the_root_snapshot_and_commits_private() {
        let (d, mut s, vols) = appvm(2);
        start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        let notes = release(&mut s, "q", &vols, &mut Xen(false), 1000).unwrap();
        assert_eq!(notes, ["vg/vm-q-private committed"]);
        assert_eq!(
            lines(&d),
            [
                "thin-pool vg/pool size=90%FREE",
                // The committed private is the snapshot the qube wrote.
                "snapshot vg/vm-q-private origin=vg/vm-q-private-1000-back",
                "thin vg/vm-q-private-1000-back pool=vg/pool size=2",
                "thin vg/vm-t-root pool=vg/pool size=10",
            ]
        );
        // Started again: a fresh root snapshot of the template, not the old one.
        start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        assert!(lines(&d).contains(&"snapshot vg/vm-q-root-snap origin=vg/vm-t-root".into()));
        assert!(lines(&d).contains(&"snapshot vg/vm-q-private-snap origin=vg/vm-q-private".into()));
    }

    #[test]
    fn start_replaces_a_stale_root_snapshot_and_reuses_a_dirty_private() {
        let (d, mut s, vols) = appvm(2);
        start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        // The domain ended without a release (power cut): start again.
        let notes = start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("vg/vm-q-private-snap kept"), "{notes:?}");
        assert_eq!(
            log(&d)[3..],
            [
                "remove vg/vm-q-root-snap",
                "snapshot vg/vm-q-root-snap vg/vm-t-root",
                "remove vg/vm-q-volatile",
                "create vg/vm-q-volatile 7",
            ]
        );
    }

    #[test]
    fn revisions_beyond_the_limit_are_removed() {
        let (d, mut s, vols) = appvm(2);
        for t in [100, 200, 300, 300] {
            start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
            release(&mut s, "q", &vols, &mut Xen(false), t).unwrap();
        }
        let priv_vol = &vols[1];
        let revs: Vec<String> = revisions(&mut s, priv_vol)
            .unwrap()
            .into_iter()
            .map(|r| r.1)
            .collect();
        // The second commit at 300 got 301; 100 and 200 are gone.
        assert_eq!(
            revs,
            ["vg/vm-q-private-300-back", "vg/vm-q-private-301-back"]
        );
        assert!(log(&d).contains(&"remove vg/vm-q-private-100-back".into()));
        // Nothing of a run is left: no snapshots, no volatile.
        assert!(
            lines(&d)
                .iter()
                .all(|l| !l.contains("-snap") && !l.contains("volatile"))
        );
    }

    #[test]
    fn no_revisions_kept_means_the_old_volume_is_removed() {
        let (d, mut s, vols) = appvm(0);
        start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        release(&mut s, "q", &vols, &mut Xen(false), 5).unwrap();
        assert!(revisions(&mut s, &vols[1]).unwrap().is_empty());
        let want = [
            "rename vg/vm-q-private vg/vm-q-private-5-back".to_string(),
            "rename vg/vm-q-private-snap vg/vm-q-private".to_string(),
            "remove vg/vm-q-private-5-back".to_string(),
        ];
        let log = log(&d);
        assert!(log.windows(3).any(|w| w == want), "{log:#?}");
    }

    #[test]
    fn a_release_cut_between_its_renames_is_finished_by_the_next() {
        let (d, mut s, vols) = appvm(1);
        start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        // As if the release died after its first rename.
        s.rename("vg/vm-q-private", "vg/vm-q-private-9-back")
            .unwrap();
        release(&mut s, "q", &vols, &mut Xen(false), 10).unwrap();
        assert_eq!(
            revisions(&mut s, &vols[1]).unwrap(),
            [(9, "vg/vm-q-private-9-back".to_string())]
        );
        assert!(s.exists("vg/vm-q-private").unwrap());
        assert!(!s.exists("vg/vm-q-private-snap").unwrap());
        // And a second release changes nothing.
        let before = lines(&d);
        release(&mut s, "q", &vols, &mut Xen(false), 11).unwrap();
        assert_eq!(lines(&d), before);
    }

    #[test]
    fn template_root_is_saved_like_private() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Recorded::new(d.path().join("v.list"), d.path().join("a.log"));
        s.create_pool("vg", "pool", 90).unwrap();
        s.create("vg/pool", "vg/vm-q-root", 10).unwrap();
        let vols = [vol("root", false, true, None, 1)];
        start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        assert!(lines(&d).contains(&"snapshot vg/vm-q-root-snap origin=vg/vm-q-root".into()));
        release(&mut s, "q", &vols, &mut Xen(false), 3).unwrap();
        assert_eq!(revisions(&mut s, &vols[0]).unwrap().len(), 1);
    }

    #[test]
    fn volumes_of_a_running_domain_are_left_alone() {
        let (d, mut s, vols) = appvm(2);
        start(&mut s, "q", &vols, &mut Xen(false)).unwrap();
        let before = lines(&d);
        for e in [
            release(&mut s, "q", &vols, &mut Xen(true), 1).unwrap_err(),
            start(&mut s, "q", &vols, &mut Xen(true)).unwrap_err(),
        ] {
            let e = e.to_string();
            assert!(
                e.contains("Xen still has the domain q") && e.contains("qube shutdown q"),
                "{e}"
            );
        }
        assert_eq!(lines(&d), before);
    }

    #[test]
    fn a_missing_template_root_is_named() {
        let (_d, mut s, mut vols) = appvm(2);
        vols[0].source = Some("vg/vm-gone-root".into());
        let e = start(&mut s, "q", &vols, &mut Xen(false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vg/vm-gone-root, which does not exist"), "{e}");
    }

    #[test]
    fn revisions_ignore_other_volumes_sharing_the_prefix() {
        let (_d, mut s, vols) = appvm(2);
        s.create("vg/pool", "vg/vm-q-private-x-1-back", 1).unwrap();
        s.create("vg/pool", "vg/vm-q-private-2-back", 1).unwrap();
        assert_eq!(
            revisions(&mut s, &vols[1]).unwrap(),
            [(2, "vg/vm-q-private-2-back".to_string())]
        );
    }
}
