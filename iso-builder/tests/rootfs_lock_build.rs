//! Lock a tiny tree against the Debian archive, build it twice from two
//! empty image caches (shared downloads), and compare the squashfs bytes.

use std::process::Command;

use iso_builder::inputs::{Cache, InputError};
use iso_builder::lock::Lock;
use iso_builder::origins::Origins;
use iso_builder::recipe::Recipe;
use iso_builder::rootfs::{self, BuildEnv, Extra, RootfsError};

const RECIPE: &str = r#"
[release]
name = "tiny"
version = "1"
source_date_epoch = 1700000000

[debian]
suite = "bookworm"
sources = ["deb http://deb.debian.org/debian bookworm main"]

[trees.live]
variant = "essential"
packages = ["busybox-static"]
remove = ["usr/share/info"]

[boot]
volume_label = "TINY"
"#;

#[test]
#[ignore = "assembles Debian trees with mmdebstrap (minutes); run by cargo xtask test"]
fn lock_then_build_twice_gives_identical_images() {
    let recipe = Recipe::parse(RECIPE, "tiny.toml").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let lock = Lock::resolve(&recipe, scratch.path(), |_| {}).unwrap();
    lock.check(&recipe, "inputs.lock".as_ref()).unwrap();
    let pins = &lock.trees["live"];
    assert!(pins.iter().any(|p| p.package == "busybox-static"));
    assert!(pins.iter().any(|p| p.package == "dpkg"));
    assert!(pins.iter().all(|p| p.sha256.len() == 64 && p.size > 0));

    // The lock survives a write/read round trip.
    let lock_path = scratch.path().join("inputs.lock");
    lock.write(&lock_path).unwrap();
    assert_eq!(Lock::read(&lock_path).unwrap(), lock);

    let downloads = tempfile::tempdir().unwrap();
    let origins = Origins::new(
        downloads.path(),
        &recipe.debian.sources,
        "amd64",
        &recipe.debian.snapshot,
        None,
    )
    .unwrap();
    let t = &recipe.trees["live"];
    let extras = [
        Extra::file("usr/lib/bulkhead/hello", "echo hi\n", 0o755),
        Extra::symlink("sbin/init", "/usr/bin/busybox"),
    ];
    let mut images = Vec::new();
    for threads in [1, 2] {
        // A fresh image cache each time, sharing the verified downloads.
        let images_root = tempfile::tempdir().unwrap();
        let sha = images_root.path().join("sha256");
        std::os::unix::fs::symlink(downloads.path().join("sha256"), &sha).ok();
        std::fs::create_dir_all(downloads.path().join("sha256")).unwrap();
        let cache =
            Cache::new(images_root.path(), "cargo xtask lock").with_origins(origins.clone());
        let img = rootfs::build(
            "live",
            t,
            pins,
            BuildEnv {
                suite: "bookworm",
                extras: &extras,
                cache: &cache,
                sources: &recipe.debian.sources,
                source_date_epoch: 1_700_000_000,
                threads,
            },
        )
        .unwrap();
        assert!(!img.cached);
        let again = rootfs::build(
            "live",
            t,
            pins,
            BuildEnv {
                suite: "bookworm",
                extras: &extras,
                cache: &cache,
                sources: &recipe.debian.sources,
                source_date_epoch: 1_700_000_000,
                threads,
            },
        )
        .unwrap();
        assert!(again.cached);
        images.push((std::fs::read(&img.path).unwrap(), images_root));
    }
    assert!(
        images[0].0 == images[1].0,
        "two builds of the same locked tree differ"
    );
    let image = images[0]
        .1
        .path()
        .join("images")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "squashfs"))
        .expect("an image in the cache");
    // Beside it, the hash recorded when it was made.
    let record = std::fs::read_to_string(image.with_extension("squashfs.sha256")).unwrap();
    assert_eq!(
        record.trim(),
        iso_builder::inputs::sha256_file(&image).unwrap()
    );
    // The long listing: every path, with its type and a symlink's target.
    let list = Command::new("unsquashfs")
        .arg("-lls")
        .arg(&image)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("squashfs-root/usr/bin/busybox"), "{list}");
    assert!(
        list.contains("squashfs-root/usr/lib/bulkhead/hello"),
        "extra file missing"
    );
    // sbin is merged into usr/sbin: the link lands there, pointing at busybox.
    assert!(
        list.lines()
            .any(|l| l.starts_with('l') && l.ends_with("sbin/init -> /usr/bin/busybox")),
        "extra symlink missing:\n{list}"
    );
    // Nothing of the build host: its hostname and resolver stay out.
    assert!(!list.contains("squashfs-root/etc/resolv.conf"), "{list}");
    let hostname = Command::new("unsquashfs")
        .arg("-cat")
        .arg(&image)
        .arg("etc/hostname")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hostname.stdout), "localhost\n");
    assert!(
        !list.contains("squashfs-root/usr/share/info/"),
        "remove glob ignored"
    );

    // A pin whose sha256 is wrong is refused and nothing is cached.
    let mut bad = pins.clone();
    let victim = bad
        .iter_mut()
        .find(|p| p.package == "busybox-static")
        .unwrap();
    victim.sha256 = "0".repeat(64);
    let fresh = tempfile::tempdir().unwrap();
    let cache = Cache::new(fresh.path(), "cargo xtask lock").with_origins(origins.clone());
    let err = rootfs::build(
        "live",
        t,
        &bad,
        BuildEnv {
            suite: "bookworm",
            extras: &[],
            cache: &cache,
            sources: &recipe.debian.sources,
            source_date_epoch: 1_700_000_000,
            threads: 2,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, RootfsError::Input(InputError::HashMismatch { .. })),
        "{err}"
    );
    assert!(!fresh.path().join("images").read_dir().unwrap().any(|e| {
        e.unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "squashfs")
    }));

    // A version the archive does not serve names itself and the refresh command.
    let mut gone = pins.clone();
    let victim = gone
        .iter_mut()
        .find(|p| p.package == "busybox-static")
        .unwrap();
    victim.version = "1:0.0-bulkhead-gone".into();
    victim.sha256 = "1".repeat(64);
    let fresh = tempfile::tempdir().unwrap();
    let cache = Cache::new(fresh.path(), "cargo xtask lock").with_origins(origins.clone());
    let err = rootfs::build(
        "live",
        t,
        &gone,
        BuildEnv {
            suite: "bookworm",
            extras: &[],
            cache: &cache,
            sources: &recipe.debian.sources,
            source_date_epoch: 1_700_000_000,
            threads: 2,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("busybox-static 1:0.0-bulkhead-gone"), "{err}");
    assert!(err.contains("cargo xtask lock"), "{err}");
}

#[test]
fn stale_lock_is_refused() {
    let recipe = Recipe::parse(RECIPE, "tiny.toml").unwrap();
    let lock = Lock {
        format: iso_builder::lock::FORMAT,
        recipe_sha256: "0".repeat(64),
        resolved_at: "2026-12-01T00:00:00Z".into(),
        trees: Default::default(),
    };
    let err = lock
        .check(&recipe, "inputs.lock".as_ref())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cargo xtask lock"), "{err}");
}
