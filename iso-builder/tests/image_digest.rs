//! Pinned digests of two small images built from in-memory trees (no host
//! files, so the bytes depend on nothing but this crate): every structure
//! the writer emits is in them (system area with MBR and GPT, boot record,
//! Joliet, boot catalog, path tables over several blocks, directories over
//! several blocks with Rock Ridge continuation areas, hard links, symlinks,
//! multi-extent files, deep directories, the backup GPT). A change to any
//! byte of the output fails here; if it is meant, say why in the commit and
//! pin the new digests.

use std::sync::Arc;

use iso_builder::checksum;
use iso_builder::inputs::sha256_file;
use iso_builder::iso9660::{self, BiosBoot, HybridBoot, Options};
use iso_builder::isotree::{File, Kind, Node, Source, Tree};

const EPOCH: i64 = 1_700_000_000;

fn tree() -> Tree {
    let mut t = Tree::new();
    let mut deep = String::from("deep");
    for i in 0..11 {
        deep.push_str(&format!("/level{i}"));
    }
    t.add_bytes(&format!("{deep}/bottom.txt"), b"bottom\n".to_vec(), 0o644)
        .unwrap();
    for n in [
        "README.md",
        "readme.md",
        "ReadMe.MD",
        "a very long file name that goes on and on.tar.gz",
        "a very long file name that goes on and on.tar.xz",
        "no_ext",
        ".hidden",
        "many.dots.in.name.x",
        "\u{fc}n\u{ef}c\u{f6}d\u{e9} name.txt",
        "x;y*z?.txt",
    ] {
        t.add_bytes(&format!("names/{n}"), n.as_bytes().to_vec(), 0o644)
            .unwrap();
    }
    t.add_bytes(
        &format!("names/{}", "n".repeat(255)),
        b"255".to_vec(),
        0o600,
    )
    .unwrap();
    t.add_bytes(
        &format!("names/{}.txt", "j".repeat(70)),
        b"70".to_vec(),
        0o644,
    )
    .unwrap();
    t.add_bytes(
        &format!("names/{}.txz", "j".repeat(70)),
        b"7b".to_vec(),
        0o644,
    )
    .unwrap();
    t.add_symlink("link_short", "names/README.md").unwrap();
    t.add_symlink("link_abs", "/abs/./../x").unwrap();
    let long = (0..120)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join("/./");
    t.add_symlink("link_long", &long).unwrap();
    t.add_symlink(&format!("names/{}_l", "q".repeat(200)), &long)
        .unwrap();
    let shared = Arc::new(b"linked data".to_vec());
    for p in ["hl/a", "hl/b", "hl/sub/c"] {
        t.insert(
            p,
            Node {
                perm: 0o644,
                uid: 0,
                gid: 0,
                kind: Kind::File(File {
                    source: Source::Bytes(shared.clone()),
                    size: shared.len() as u64,
                    link_group: Some(7),
                }),
            },
        )
        .unwrap();
    }
    t.add_bytes("empty", Vec::new(), 0o644).unwrap();
    t.add_bytes(
        "big",
        (0..30_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        0o644,
    )
    .unwrap();
    for i in 0..120 {
        t.add_bytes(
            &format!("many/file-number-{i:04}-with-a-longish-name.data"),
            format!("{i}").into_bytes(),
            0o644,
        )
        .unwrap();
        t.insert(
            &format!("dirs/directory_with_long_name_{i:03}"),
            Node::dir(0o700),
        )
        .unwrap();
    }
    t.add_bytes(
        "boot/bios.img",
        (0..5000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>(),
        0o444,
    )
    .unwrap();
    t.add_bytes("boot/esp.img", vec![0x22; 300 * 512], 0o444)
        .unwrap();
    t
}

fn digest(opts: Options) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("d.iso");
    iso9660::write_image(&tree(), opts, &iso).unwrap();
    (
        std::fs::metadata(&iso).unwrap().len(),
        sha256_file(&iso).unwrap(),
    )
}

#[test]
fn hybrid_joliet_image_is_pinned() {
    let mut o = Options::new("PINNED", EPOCH);
    o.publisher = "PUBLISHER".into();
    o.application = "APPLICATION".into();
    o.max_extent = 8192;
    o.bios = Some(BiosBoot {
        image: "boot/bios.img".into(),
        load_sectors: 4,
        boot_info_table: true,
        grub2_boot_info: true,
    });
    o.efi_image = Some("boot/esp.img".into());
    o.hybrid = Some(HybridBoot {
        mbr_code: (0..512u32).map(|i| i as u8).collect(),
        grub2_mbr: true,
    });
    assert_eq!(
        digest(o),
        (
            1_198_080,
            "ac788831a9adc74c52bd27162776b21d3f4225f66c65b982eaea7f86e0480732".into()
        )
    );
}

#[test]
fn plain_image_without_joliet_is_pinned() {
    let mut o = Options::new("PLAIN", EPOCH);
    o.joliet = false;
    assert_eq!(
        digest(o),
        (
            845_824,
            "069a29d7fc9624b40839b350e97ad8c8f6fc58c642631b0a909a17e9cbf0f526".into()
        )
    );
}

/// Embedding the checksum while writing gives the bytes of writing without
/// it and implanting it afterwards (which reads the image whole), and the
/// digests returned are the embedded record and the file's own sha256.
#[test]
fn checksum_embedded_while_writing_is_the_implanted_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new("EMBED", EPOCH);
    o.efi_image = Some("boot/esp.img".into());
    let plain = dir.path().join("plain.iso");
    iso9660::write_image(&tree(), o.clone(), &plain).unwrap();
    let implanted = checksum::implant(&plain).unwrap();
    o.embed_checksum = true;
    let embedded = dir.path().join("embedded.iso");
    let image = iso9660::write_image(&tree(), o, &embedded).unwrap();
    let d = image.digests.clone().unwrap();
    assert_eq!(d.embedded, implanted);
    assert!(std::fs::read(&plain).unwrap() == std::fs::read(&embedded).unwrap());
    assert_eq!(d.sha256, sha256_file(&embedded).unwrap());
    assert_eq!(
        checksum::verify(&embedded, &mut |_, _| {}).unwrap(),
        d.embedded
    );
    assert_eq!(d.embedded.size, image.image_size());
}
