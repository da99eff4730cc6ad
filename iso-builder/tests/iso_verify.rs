//! Images from this crate read back by independent tools: xorriso (El
//! Torito and system area reports, extraction), isoinfo (volume descriptor,
//! Rock Ridge listing), sgdisk (GPT verify and print), fsck.fat and mdir
//! (the ESP cut out of the image at its GPT partition), bsdtar (libarchive's
//! ISO9660 reader, for random trees).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use iso_builder::grub::{self, BootloaderLock};
use iso_builder::inputs::Cache;
use iso_builder::iso9660::{self, Options};
use iso_builder::isotree::Tree;
use iso_builder::master::{MasterOptions, master_dir};
use proptest::prelude::*;

const EPOCH: i64 = 1_700_000_000;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn boot_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::create_dir_all(tree.join("live")).unwrap();
    fs::write(tree.join("boot/vmlinuz"), vec![0x5a; 300_000]).unwrap();
    fs::write(tree.join("boot/initrd.img"), vec![0xa5; 100_000]).unwrap();
    fs::write(tree.join("live/README.txt"), b"hello\n").unwrap();
    tree
}

fn master(tree: &Path, out: &Path) {
    let mut opts = MasterOptions::new("BULKHEAD_VERIFY", EPOCH);
    opts.cmdline = "quiet".into();
    let cache = Cache::new(Cache::default_root(), grub::REFRESH);
    master_dir(tree, out, &opts, &cache).unwrap();
}

fn field<'a>(report: &'a str, key: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix(key))
        .map(|r| r.trim_start_matches([' ', ':']).trim())
        .collect()
}

#[test]
fn bootable_image_passes_every_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let tree = boot_tree(dir.path());
    let iso = dir.path().join("out.iso");
    master(&tree, &iso);

    let report = run(Command::new("xorriso").arg("-indev").arg(&iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]));
    let imgs = field(&report, "El Torito boot img :");
    assert_eq!(imgs.len(), 2, "{report}");
    assert!(imgs[0].starts_with("1  BIOS  y   none"), "{report}");
    assert!(imgs[1].starts_with("2  UEFI  y   none"), "{report}");
    assert!(
        report.contains("boot-info-table grub2-boot-info"),
        "{report}"
    );
    assert_eq!(
        field(&report, "El Torito img path :")[1],
        "2  /boot/grub/efi.img"
    );
    assert!(
        report.contains(
            "System area summary: MBR protective-msdos-label grub2-mbr cyl-align-off GPT"
        ),
        "{report}"
    );
    assert!(
        field(&report, "GPT partition path :").contains(&"2  /boot/grub/efi.img"),
        "{report}"
    );

    let d = run(Command::new("isoinfo").arg("-d").arg("-i").arg(&iso));
    assert!(d.contains("Volume id: BULKHEAD_VERIFY"), "{d}");
    assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
    assert!(d.contains("Joliet with UCS level 3 found"), "{d}");
    assert!(d.contains("Boot media 0 (No Emulation Boot)"), "{d}");
    let l = run(Command::new("isoinfo")
        .arg("-l")
        .arg("-R")
        .arg("-i")
        .arg(&iso));
    assert!(l.contains("README.txt"), "{l}");
    assert!(
        l.contains("vmlinuz") && l.contains("initrd.img") && l.contains("grub.cfg"),
        "{l}"
    );

    let v = run(Command::new("sgdisk").arg("-v").arg(&iso));
    assert!(v.contains("No problems found"), "{v}");
    let p = run(Command::new("sgdisk").arg("-p").arg(&iso));
    let rows: Vec<Vec<&str>> = p
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= 6 && w[0].parse::<u32>().is_ok())
        .collect();
    assert_eq!(rows.len(), 2, "{p}");
    assert_eq!(rows[0][1], "64");
    assert_eq!(rows[1][5], "EF00", "{p}");

    // The ESP, cut out at its GPT partition, is a clean FAT with the loader.
    let first: u64 = rows[1][1].parse().unwrap();
    let last: u64 = rows[1][2].parse().unwrap();
    let bytes = fs::read(&iso).unwrap();
    let esp = dir.path().join("esp.img");
    fs::write(
        &esp,
        &bytes[(first * 512) as usize..((last + 1) * 512) as usize],
    )
    .unwrap();
    run(Command::new("fsck.fat").arg("-n").arg(&esp));
    let m = run(Command::new("mdir").arg("-i").arg(&esp).arg("::/EFI/BOOT"));
    assert!(m.contains("BOOTX64") && m.contains("EFI"), "{m}");
    assert!(m.contains("grub") || m.contains("GRUB"), "{m}");
    let efi = run(Command::new("mtype")
        .arg("-i")
        .arg(&esp)
        .arg("::/EFI/BOOT/grub.cfg"));
    assert!(
        efi.contains("search --no-floppy --fs-uuid --set=root 2023-11-14-22-13-20-00"),
        "{efi}"
    );

    // Extraction gives the tree back, plus the loader files.
    let x = dir.path().join("x");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/"])
        .arg(&x));
    for f in ["boot/vmlinuz", "boot/initrd.img", "live/README.txt"] {
        assert_eq!(
            fs::read(x.join(f)).unwrap(),
            fs::read(tree.join(f)).unwrap(),
            "{f}"
        );
    }
    let menu = fs::read_to_string(x.join("boot/grub/grub.cfg")).unwrap();
    assert!(
        menu.contains("linux /boot/vmlinuz quiet console=tty0 console=ttyS0,115200"),
        "{menu}"
    );
    // The MBR jumps into the El Torito image, as boot_hybrid.img expects.
    let bios_lba = imgs[0]
        .split_whitespace()
        .last()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(
        u64::from_le_bytes(bytes[0x1B0..0x1B8].try_into().unwrap()),
        bios_lba * 4 + 4
    );
}

#[test]
fn same_inputs_same_bytes_from_anywhere() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ta = boot_tree(a.path());
    let tb = boot_tree(&b.path().join("elsewhere"));
    fs::set_permissions(tb.join("live"), fs::Permissions::from_mode(0o755)).unwrap();
    master(&ta, &a.path().join("1.iso"));
    master(&tb, &b.path().join("2.iso"));
    assert!(fs::read(a.path().join("1.iso")).unwrap() == fs::read(b.path().join("2.iso")).unwrap());
}

#[test]
fn grub_images_are_reproducible() {
    let cache = Cache::new(Cache::default_root(), grub::REFRESH);
    let lock = BootloaderLock::parse(grub::LOCK_TEXT).unwrap();
    let x = grub::build_loader(&cache, &lock, "2023-11-14-22-13-20-00").unwrap();
    let y = grub::build_loader(&cache, &lock, "2023-11-14-22-13-20-00").unwrap();
    assert!(x.eltorito == y.eltorito && x.bootx64 == y.bootx64);
    assert_eq!(x.boot_hybrid.len(), 512);
}

#[test]
fn failed_build_leaves_nothing_under_the_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let tree = boot_tree(dir.path());
    fs::remove_file(tree.join("boot/initrd.img")).unwrap();
    let out = dir.path().join("out").join("x.iso");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let cache = Cache::new(Cache::default_root(), grub::REFRESH);
    let err = master_dir(&tree, &out, &MasterOptions::new("X", EPOCH), &cache).unwrap_err();
    assert!(err.to_string().contains("boot/initrd.img"), "{err}");
    // A write that fails midway (a file shrinks after the layout was made).
    let mut t = Tree::new();
    let victim = dir.path().join("victim");
    fs::write(&victim, vec![1u8; 10_000]).unwrap();
    t.add_host_file("victim", &victim, 0o644).unwrap();
    fs::write(&victim, b"short").unwrap();
    let err = iso9660::write_image(&t, Options::new("X", EPOCH), &out).unwrap_err();
    assert!(
        err.to_string().contains("victim") && err.to_string().contains("changed"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(out.parent().unwrap()).unwrap().count(),
        0,
        "leftovers"
    );
}

#[test]
fn unrepresentable_input_is_named() {
    let mut t = Tree::new();
    let err = t
        .add_bytes(&format!("a/{}", "n".repeat(256)), b"x".to_vec(), 0o644)
        .unwrap_err();
    assert!(err.to_string().contains("longer than 255"), "{err}");
    let mut t = Tree::new();
    t.add_symlink("deep/link", &"x/".repeat(1500)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err =
        iso9660::write_image(&t, Options::new("X", EPOCH), &dir.path().join("i.iso")).unwrap_err();
    assert!(err.to_string().contains("deep/link"), "{err}");
}

#[test]
fn hard_links_share_one_extent_and_big_files_span_extents() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"linked data").unwrap();
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("big"), &big).unwrap();
    let long_target = (0..120)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join("/./");
    symlink(&long_target, src.join("long")).unwrap();
    let tree = Tree::from_dir(&src).unwrap();
    let mut opts = Options::new("LINKS", EPOCH);
    opts.max_extent = 64 << 10;
    let iso = dir.path().join("l.iso");
    iso9660::write_image(&tree, opts, &iso).unwrap();
    let l = run(Command::new("isoinfo")
        .arg("-l")
        .arg("-R")
        .arg("-i")
        .arg(&iso));
    let extent = |name: &str| {
        l.lines()
            .find(|x| x.trim_end().ends_with(&format!(" {name}")))
            .and_then(|x| x.split('[').nth(1))
            .map(|x| x.split_whitespace().next().unwrap().to_string())
            .unwrap_or_else(|| panic!("{name} not in\n{l}"))
    };
    assert_eq!(extent("a"), extent("b"));
    for name in ["a", "b"] {
        let line = l
            .lines()
            .find(|x| x.trim_end().ends_with(&format!(" {name}")))
            .unwrap();
        assert_eq!(
            line.split_whitespace().nth(1),
            Some("2"),
            "link count of {name}: {line}"
        );
    }
    let x = dir.path().join("x");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/"])
        .arg(&x));
    assert_eq!(fs::read(x.join("big")).unwrap(), big);
    assert_eq!(fs::read(x.join("b")).unwrap(), b"linked data");
    assert_eq!(
        fs::read_link(x.join("long")).unwrap().to_string_lossy(),
        long_target
    );
}

#[derive(Debug, Clone)]
enum Entry {
    File(Vec<u8>, u32),
    Link(String),
    Dir(u32),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,12}",
        "[A-Za-z0-9._-]{1,40}",
        "[a-z]{200,255}",
        "[a-zA-Z ]{1,8}\\.[a-z]{1,12}",
    ]
    .prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn entries() -> impl Strategy<Value = BTreeMap<String, Entry>> {
    let entry = prop_oneof![
        (
            prop::collection::vec(any::<u8>(), 0..5000),
            prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o444])
        )
            .prop_map(|(d, m)| Entry::File(d, m)),
        // Up to one SL entry: libarchive 3.6 drops the `/` where a target
        // continues into the next SL entry (xorriso's own images too);
        // long targets are checked with xorriso below.
        "[a-z/.]{1,200}".prop_map(Entry::Link),
        prop::sample::select(vec![0o755u32, 0o700, 0o555]).prop_map(Entry::Dir),
    ];
    prop::collection::btree_map(
        prop::collection::vec(name(), 1..4).prop_map(|v| v.join("/")),
        entry,
        1..40,
    )
}

/// Materializes entries on the host; entries whose parent became a file or
/// symlink are dropped.
fn materialize(root: &Path, entries: &BTreeMap<String, Entry>) {
    let mut dirs = Vec::new();
    for (path, e) in entries {
        let p = root.join(path);
        let parent = p.parent().unwrap();
        if fs::create_dir_all(parent).is_err() || p.symlink_metadata().is_ok() {
            continue;
        }
        match e {
            Entry::File(d, m) => {
                fs::write(&p, d).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(*m)).unwrap();
            }
            Entry::Link(t) => symlink(t, &p).unwrap(),
            Entry::Dir(m) => {
                fs::create_dir(&p).unwrap();
                dirs.push((p, *m));
            }
        }
    }
    for (p, m) in dirs.into_iter().rev() {
        fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
    }
}

/// (relative path, kind, mode, content or target) for every entry.
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let (kind, data) = if m.is_dir() {
                stack.push(p.clone());
                ('d', Vec::new())
            } else if m.is_symlink() {
                (
                    'l',
                    fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes(),
                )
            } else {
                ('f', fs::read(&p).unwrap())
            };
            let mtime = if kind == 'l' { 0 } else { m.mtime() };
            out.insert(rel, (kind, m.mode() & 0o7777, data, mtime));
        }
    }
    out
}

fn normalize_link(t: &[u8]) -> Vec<u8> {
    // Rock Ridge stores components: repeated and trailing slashes vanish.
    let s = String::from_utf8_lossy(t);
    let abs = s.starts_with('/');
    let parts: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
    let mut r = parts.join("/");
    if abs {
        r.insert(0, '/');
    }
    if r.is_empty() {
        r.push('.');
    }
    r.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_read_back_identically_with_bsdtar(entries in entries(), max_extent in prop::sample::select(vec![2048u64, 8192, iso9660::MAX_EXTENT])) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        materialize(&src, &entries);
        let tree = Tree::from_dir(&src).unwrap();
        let mut opts = Options::new("PROP", EPOCH);
        opts.max_extent = max_extent;
        let iso = dir.path().join("p.iso");
        iso9660::write_image(&tree, opts.clone(), &iso).unwrap();
        let again = dir.path().join("q.iso");
        iso9660::write_image(&tree, opts, &again).unwrap();
        prop_assert!(fs::read(&iso).unwrap() == fs::read(&again).unwrap());

        let x = dir.path().join("x");
        fs::create_dir(&x).unwrap();
        run(Command::new("bsdtar").arg("-x").arg("-p").arg("-f").arg(&iso).arg("-C").arg(&x));
        let want = snapshot(&src);
        let got = snapshot(&x);
        prop_assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
        for (k, (kind, mode, data, _)) in &want {
            let (gk, gm, gd, gt) = &got[k];
            prop_assert_eq!(kind, gk, "{}", k);
            if *kind == 'l' {
                prop_assert_eq!(normalize_link(data), gd.clone(), "{}", k);
            } else {
                prop_assert_eq!(mode, gm, "{}", k);
                prop_assert!(data == gd, "content of {}", k);
                prop_assert_eq!(*gt, EPOCH, "mtime of {}", k);
            }
        }
    }
}

#[test]
fn cli_masters_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = boot_tree(dir.path());
    let out = dir.path().join("cli.iso");
    let bin = env!("CARGO_BIN_EXE_bulkhead-iso");
    let ok = Command::new(bin)
        .arg("master")
        .arg(&tree)
        .arg("-o")
        .arg(&out)
        .args(["--label", "CLI", "--cmdline", "quiet splash"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Another time zone, locale and umask give the same bytes.
    let again = dir.path().join("cli2.iso");
    let ok2 = Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$0\" \"$@\"")
        .arg(bin)
        .arg("master")
        .arg(&tree)
        .arg("-o")
        .arg(&again)
        .args(["--label", "CLI", "--cmdline", "quiet splash"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("TZ", "Pacific/Kiritimati")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(
        ok2.status.success(),
        "{}",
        String::from_utf8_lossy(&ok2.stderr)
    );
    assert!(fs::read(&out).unwrap() == fs::read(&again).unwrap());
    let x = dir.path().join("x");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&out)
        .args(["-extract", "/boot/grub/grub.cfg"])
        .arg(&x));
    let menu = fs::read_to_string(&x).unwrap();
    assert!(
        menu.contains("linux /boot/vmlinuz quiet splash\n"),
        "{menu}"
    );

    fs::remove_file(tree.join("boot/vmlinuz")).unwrap();
    let bad = Command::new(bin)
        .arg("master")
        .arg(&tree)
        .arg("-o")
        .arg(dir.path().join("bad.iso"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("boot/vmlinuz"), "{err}");
    assert!(!dir.path().join("bad.iso").exists());

    let no_epoch = Command::new(bin)
        .arg("master")
        .arg(&tree)
        .arg("-o")
        .arg(dir.path().join("bad.iso"))
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_epoch.stderr).contains("SOURCE_DATE_EPOCH"));
}

#[test]
fn joliet_tree_names_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("Docs")).unwrap();
    fs::write(src.join("Docs/Read Me.txt"), b"joliet data").unwrap();
    fs::write(src.join("x".repeat(100)), b"long").unwrap();
    symlink("Docs", src.join("link")).unwrap();
    let iso = dir.path().join("j.iso");
    iso9660::write_image(
        &Tree::from_dir(&src).unwrap(),
        Options::new("JOLIET", EPOCH),
        &iso,
    )
    .unwrap();
    let l = run(Command::new("isoinfo")
        .arg("-l")
        .arg("-J")
        .arg("-i")
        .arg(&iso));
    assert!(l.contains("Read Me.txt;1"), "{l}");
    assert!(l.contains(&format!(" {};1", "x".repeat(64))), "{l}");
    assert!(!l.contains("link"), "{l}");
    let out = Command::new("isoinfo")
        .args(["-J", "-x", "/Docs/Read Me.txt;1", "-i"])
        .arg(&iso)
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"joliet data");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any sizes of tree, BIOS image and ESP give a GPT that sgdisk accepts
    /// and an El Torito catalog xorriso reads back at the files' places.
    #[test]
    fn hybrid_tables_hold_for_any_sizes(
        files in prop::collection::vec(0usize..300_000, 0..6),
        bios_len in 2048usize..40_000,
        esp_sectors in 1u64..6000,
    ) {
        let mut tree = Tree::new();
        for (i, n) in files.iter().enumerate() {
            tree.add_bytes(&format!("data/f{i}"), vec![i as u8; *n], 0o644).unwrap();
        }
        tree.add_bytes("boot/bios.img", vec![0x11; bios_len], 0o444).unwrap();
        tree.add_bytes("boot/esp.img", vec![0x22; (esp_sectors * 512) as usize], 0o444).unwrap();
        let mut opts = Options::new("HYBRID", EPOCH);
        opts.bios = Some(iso9660::BiosBoot {
            image: "boot/bios.img".into(),
            load_sectors: 4,
            boot_info_table: true,
            grub2_boot_info: true,
        });
        opts.efi_image = Some("boot/esp.img".into());
        opts.hybrid = Some(iso9660::HybridBoot { mbr_code: vec![0x90; 512], grub2_mbr: true });
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("h.iso");
        let layout = iso9660::write_image(&tree, opts, &iso).unwrap();
        prop_assert_eq!(fs::metadata(&iso).unwrap().len(), layout.image_size());
        let v = run(Command::new("sgdisk").arg("-v").arg(&iso));
        prop_assert!(v.contains("No problems found"), "{}", v);
        let report = run(Command::new("xorriso").arg("-indev").arg(&iso).args([
            "-report_el_torito", "plain", "-report_system_area", "plain",
        ]));
        let imgs = field(&report, "El Torito boot img :");
        let lba = |s: &str| s.split_whitespace().last().unwrap().parse::<u64>().unwrap();
        prop_assert_eq!(lba(imgs[0]), layout.file_lba("boot/bios.img").unwrap());
        prop_assert_eq!(lba(imgs[1]), layout.file_lba("boot/esp.img").unwrap());
        let esp = field(&report, "GPT start and size :");
        prop_assert_eq!(
            esp[1].to_string(),
            format!("2  {}  {}", layout.file_lba("boot/esp.img").unwrap() * 4, esp_sectors)
        );
    }
}
