//! The cpio writer read back by GNU cpio, the independent reader.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use iso_builder::cpio::Archive;
use proptest::prelude::*;

fn extract(archive: &[u8], dir: &std::path::Path) -> String {
    let mut child = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cpio (apt-get install cpio)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), archive).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn listing(archive: &[u8]) -> String {
    let mut child = Command::new("cpio")
        .args(["-itv", "--quiet"])
        .env("TZ", "UTC")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), archive).unwrap();
    drop(child.stdin.take());
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn owners_times_and_kinds_as_gnu_cpio_sees_them() {
    let mut a = Archive::new();
    a.file_bytes("etc/hostname", b"bulkhead\n".to_vec(), 0o644)
        .unwrap();
    a.symlink("bin/sh", "busybox").unwrap();
    a.char_dev("dev/console", 0o600, 5, 1).unwrap();
    let mut v = Vec::new();
    a.write_to(&mut v, 1_700_000_000).unwrap();
    let l = listing(&v);
    for line in l.lines() {
        let cols: Vec<_> = line.split_whitespace().collect();
        assert_eq!((cols[2], cols[3]), ("root", "root"), "{line}");
    }
    assert!(l.contains("lrwxrwxrwx"), "{l}");
    assert!(l.contains("crw-------"), "{l}");
    assert!(l.contains("bin/sh -> busybox"), "{l}");
    assert!(l.contains("Nov 14  2023"), "{l}");
}

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, u32),
    Link(String),
}

fn tree() -> impl Strategy<Value = BTreeMap<String, Node>> {
    let name = "[a-zA-Z0-9._-]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..");
    let path = prop::collection::vec(name, 1..4).prop_map(|v| v.join("/"));
    let node = prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..300), 0o400u32..0o1000)
            .prop_map(|(d, m)| Node::File(d, m)),
        "[a-z/]{1,20}".prop_map(Node::Link),
    ];
    prop::collection::btree_map(path, node, 1..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_trees_extract_identically(t in tree()) {
        let mut a = Archive::new();
        let mut expect = BTreeMap::new();
        for (p, n) in &t {
            let r = match n {
                Node::File(d, m) => a.file_bytes(p, d.clone(), *m),
                Node::Link(target) => a.symlink(p, target),
            };
            // A path under an earlier file is a conflict; the writer refuses it.
            if r.is_ok() {
                expect.insert(p.clone(), n.clone());
            }
        }
        let mut v = Vec::new();
        a.write_to(&mut v, 0).unwrap();
        let mut v2 = Vec::new();
        a.write_to(&mut v2, 0).unwrap();
        prop_assert_eq!(&v, &v2);
        let dir = tempfile::tempdir().unwrap();
        extract(&v, dir.path());
        for (p, n) in &expect {
            let host = dir.path().join(p);
            let meta = fs::symlink_metadata(&host).unwrap();
            match n {
                Node::File(d, m) => {
                    prop_assert!(meta.is_file(), "{} is not a file", p);
                    prop_assert_eq!(&fs::read(&host).unwrap(), d);
                    prop_assert_eq!(meta.permissions().mode() & 0o7777, *m);
                }
                Node::Link(target) => {
                    prop_assert!(meta.file_type().is_symlink(), "{} is not a link", p);
                    let got = fs::read_link(&host).unwrap().to_string_lossy().into_owned();
                    prop_assert_eq!(got.as_str(), target.as_str());
                }
            }
        }
    }
}
