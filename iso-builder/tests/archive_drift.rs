//! Debian moving on, replayed against a local archive: a signed repository
//! (apt-ftparchive, a throw-away gpg key) and a "snapshot" of it, served over
//! HTTP on 127.0.0.1 by this test. A tiny tree is locked from real Debian
//! packages, its pinned busybox-static is then superseded in the archive, and
//! the builder must: fetch the pin from the snapshot and give the same image
//! bytes; refuse under `--locked` when no snapshot serves it, naming it; and
//! by default refresh just that pin, naming the change.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use iso_builder::inputs::Cache;
use iso_builder::lock::{self, Lock};
use iso_builder::origins::Origins;
use iso_builder::pipeline::{self, BuildError, Quiet, TreeOptions};
use iso_builder::recipe::Recipe;

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A static file server on 127.0.0.1: `/snapshot/debian/STAMP/REST` is
/// served from `snap/REST` (any stamp), everything else from `root`. Every
/// requested path is recorded.
struct Server {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

fn serve(root: PathBuf, snap: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let mut words = line.split_whitespace();
            let method = words.next().unwrap_or("").to_string();
            let path = words.next().unwrap_or("/").to_string();
            seen.lock().unwrap().push(path.clone());
            let file = match path.strip_prefix("/snapshot/debian/") {
                Some(rest) => rest.split_once('/').map(|(_, r)| snap.join(r)),
                None => Some(root.join(path.trim_start_matches('/'))),
            };
            let body = file
                .filter(|f| !f.components().any(|c| c.as_os_str() == ".."))
                .and_then(|f| std::fs::read(f).ok());
            let _ = match body {
                Some(b) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    if method == "GET" {
                        conn.write_all(&b)
                    } else {
                        Ok(())
                    }
                }
                None => conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    Server { port, log }
}

/// Writes `dir/dists/bookworm/{Packages,Release,InRelease}` for the .debs in
/// `dir/pool`, signed with the key in `gnupg`.
fn index(dir: &Path, gnupg: &Path) {
    let dists = dir.join("dists/bookworm/main/binary-amd64");
    std::fs::create_dir_all(&dists).unwrap();
    let packages = sh(Command::new("apt-ftparchive")
        .args(["packages", "pool"])
        .current_dir(dir));
    std::fs::write(dists.join("Packages"), packages).unwrap();
    let release = sh(Command::new("apt-ftparchive")
        .args([
            "-oAPT::FTPArchive::Release::Suite=bookworm",
            "-oAPT::FTPArchive::Release::Codename=bookworm",
            "-oAPT::FTPArchive::Release::Architectures=amd64",
            "-oAPT::FTPArchive::Release::Components=main",
            "release",
            "dists/bookworm",
        ])
        .current_dir(dir));
    let rel = dir.join("dists/bookworm/Release");
    std::fs::write(&rel, release).unwrap();
    let inrel = dir.join("dists/bookworm/InRelease");
    let _ = std::fs::remove_file(&inrel);
    sh(Command::new("gpg")
        .arg("--homedir")
        .arg(gnupg)
        .args(["--batch", "--yes", "--clearsign", "-o"])
        .arg(&inrel)
        .arg(&rel));
}

/// Rebuilds `deb` with `version` in its control file (a "security update"
/// of the same package).
fn rebuild_with_version(deb: &Path, version: &str, dest: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let x = tmp.path().join("x");
    sh(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&x));
    let control = x.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, text).unwrap();
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&x)
        .arg(dest));
}

const RECIPE: &str = r#"
[release]
name = "drift"
version = "1"
source_date_epoch = 1700000000

[debian]
suite = "bookworm"
sources = ["deb http://deb.debian.org/debian bookworm main"]

[trees.live]
variant = "essential"
packages = ["busybox-static"]

[boot]
volume_label = "DRIFT"
"#;

fn options() -> TreeOptions<'static> {
    TreeOptions {
        binaries: &[],
        threads: 2,
        locked: false,
        source_date_epoch: 1_700_000_000,
    }
}

#[test]
#[ignore = "assembles Debian trees with mmdebstrap (minutes); run by cargo xtask test"]
fn a_superseded_pin_comes_from_the_snapshot_or_is_refreshed_or_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // Real Debian packages for the tree, as the archive serves them today.
    let upstream = Recipe::parse(RECIPE, "drift.toml").unwrap();
    let real = Lock::resolve(&upstream, w, |_| {}).unwrap();
    let pins = real.trees["live"].clone();
    let downloads = Cache::new(w.join("downloads"), lock::REFRESH).with_origins(
        Origins::new(
            &w.join("downloads"),
            &upstream.debian.sources,
            "amd64",
            &upstream.debian.snapshot,
            None,
        )
        .unwrap(),
    );
    let debs = downloads.debs(&pins).unwrap();

    // A local archive holding exactly them, signed with a throw-away key.
    let gnupg = w.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    sh(Command::new("gpg").arg("--homedir").arg(&gnupg).args([
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Bulkhead test archive <test@invalid>",
        "ed25519",
        "sign",
        "never",
    ]));
    let key = w.join("archive-key.gpg");
    let exported = Command::new("gpg")
        .arg("--homedir")
        .arg(&gnupg)
        .arg("--export")
        .output()
        .unwrap();
    std::fs::write(&key, exported.stdout).unwrap();
    let archive = w.join("www/debian");
    let pool = archive.join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    for (p, deb) in pins.iter().zip(&debs) {
        // Plain file names: apt quotes what a URL must not hold.
        let name = format!("{}_{}.deb", p.package, &p.sha256[..16]);
        std::fs::copy(deb, pool.join(name)).unwrap();
    }
    index(&archive, &gnupg);
    // The snapshot keeps the archive as it was when the lock was made.
    let snap = w.join("snapshot");
    sh(Command::new("cp").arg("-a").arg(&archive).arg(&snap));
    let server = serve(w.join("www"), snap.clone());
    let base = format!("http://127.0.0.1:{}", server.port);

    let recipe_with = |snapshot: &str| {
        let text = RECIPE
            .replace(
                "deb http://deb.debian.org/debian bookworm main",
                &format!(
                    "deb [signed-by={}] {base}/debian bookworm main",
                    key.display()
                ),
            )
            .replace(
                "suite = \"bookworm\"",
                &format!("suite = \"bookworm\"\nsnapshot = \"{snapshot}\""),
            );
        Recipe::parse(&text, "drift.toml").unwrap()
    };
    let recipe = recipe_with(&format!("{base}/snapshot"));
    let mut locked_at = BTreeMap::new();
    locked_at.insert("live".to_string(), pins.clone());
    let lock0 = Lock {
        format: lock::FORMAT,
        recipe_sha256: lock::recipe_hash(&recipe),
        resolved_at: lock::now(),
        trees: locked_at,
    };

    // Before Debian moves: the image, built from the archive.
    let c1 = Cache::new(w.join("c1"), lock::REFRESH);
    let c1 = pipeline::with_origins(&c1, &recipe, &lock0).unwrap();
    let mut l1 = lock0.clone();
    let (before, moved) =
        pipeline::build_trees(&recipe, &mut l1, &c1, &options(), &mut Quiet).unwrap();
    assert!(moved.is_empty());
    let before = std::fs::read(&before[0].path).unwrap();

    // Debian supersedes busybox-static: the old file leaves the archive.
    let old = pins.iter().find(|p| p.package == "busybox-static").unwrap();
    let old_file = std::fs::read_dir(&pool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("busybox-static_")
        })
        .unwrap();
    let new_version = format!("{}+bulkhead1", old.version);
    rebuild_with_version(
        &old_file,
        &new_version,
        &pool.join("busybox-static_superseding.deb"),
    );
    std::fs::remove_file(&old_file).unwrap();
    index(&archive, &gnupg);
    server.log.lock().unwrap().clear();

    // 1. The snapshot serves the pin: same lock, same image bytes.
    let c2 = Cache::new(w.join("c2"), lock::REFRESH);
    let c2 = pipeline::with_origins(&c2, &recipe, &lock0).unwrap();
    let mut l2 = lock0.clone();
    let strict = TreeOptions {
        locked: true,
        ..options()
    };
    let (again, moved) = pipeline::build_trees(&recipe, &mut l2, &c2, &strict, &mut Quiet).unwrap();
    assert!(moved.is_empty());
    assert_eq!(
        l2, lock0,
        "the snapshot served the pin: the lock must not move"
    );
    assert!(
        std::fs::read(&again[0].path).unwrap() == before,
        "the image built from the snapshot's file differs from the one built before"
    );
    let stamp = iso_builder::origins::snapshot_stamp(
        iso_builder::origins::parse_rfc3339(&lock0.resolved_at).unwrap(),
    );
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.iter()
            .any(|p| p.starts_with(&format!("/snapshot/debian/{stamp}/pool/busybox-static_"))),
        "busybox-static was not fetched from the snapshot at {stamp}: {log:?}"
    );

    // 2. No snapshot serves it: --locked refuses and names it.
    let nowhere = recipe_with(&format!("{base}/no-snapshot-here"));
    let lock_nowhere = Lock {
        recipe_sha256: lock::recipe_hash(&nowhere),
        ..lock0.clone()
    };
    let c3 = Cache::new(w.join("c3"), lock::REFRESH);
    let c3 = pipeline::with_origins(&c3, &nowhere, &lock_nowhere).unwrap();
    let mut l3 = lock_nowhere.clone();
    let err = pipeline::build_trees(&nowhere, &mut l3, &c3, &strict, &mut Quiet).unwrap_err();
    assert!(matches!(err, BuildError::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("tree live: busybox-static {}", old.version)),
        "{msg}"
    );
    assert!(msg.contains("--locked"), "{msg}");
    assert_eq!(
        l3, lock_nowhere,
        "a refused build must leave the lock as it was"
    );

    // 3. By default the gone pin is refreshed, and nothing else moves.
    struct Notices(Vec<String>);
    impl pipeline::Progress for Notices {
        fn start(&mut self, _: &str) {}
        fn finish(&mut self, _: &str, _: &str) {}
        fn notice(&mut self, text: &str) {
            self.0.push(text.to_string());
        }
    }
    let mut notices = Notices(Vec::new());
    let mut l4 = lock_nowhere.clone();
    let (fresh, moved) =
        pipeline::build_trees(&nowhere, &mut l4, &c3, &options(), &mut notices).unwrap();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0].package, "busybox-static");
    assert_eq!(moved[0].old.as_deref(), Some(old.version.as_str()));
    assert_eq!(moved[0].new.as_deref(), Some(new_version.as_str()));
    assert!(
        notices
            .0
            .iter()
            .any(|n| n.contains(&format!("busybox-static {} → {new_version}", old.version))),
        "{:?}",
        notices.0
    );
    let kept: Vec<_> = l4.trees["live"]
        .iter()
        .filter(|p| p.package != "busybox-static")
        .collect();
    let was: Vec<_> = pins
        .iter()
        .filter(|p| p.package != "busybox-static")
        .collect();
    assert_eq!(kept, was, "a refresh must keep every pin still served");
    assert!(l4.resolved_at >= lock0.resolved_at);
    let list = sh(Command::new("unsquashfs").arg("-lls").arg(&fresh[0].path));
    assert!(list.contains("squashfs-root/usr/bin/busybox"), "{list}");
}
