//! Apply on a 40 GiB sparse image through a loop device (no device-mapper on
//! the host, so up to and including the LUKS2 format), every structure read
//! back by an independent tool: sgdisk, fsck.fat, e2fsck, cryptsetup, wipefs.

use std::path::{Path, PathBuf};
use std::process::Command;

use partitioner::apply::{self, Options, Step};
use partitioner::discover::{DiskInfo, Transport};
use partitioner::luks::Pbkdf;
use partitioner::plan::{GIB, MIB, Plan};
use partitioner::secret::Passphrase;
use zeroize::Zeroizing;

/// Low PBKDF cost: tests only (the real default is benchmarked, up to 1 GiB).
const TEST_PBKDF: Pbkdf = Pbkdf::Fixed {
    iterations: 4,
    memory_kib: 8192,
    parallel_threads: 1,
};

struct Loop(String);

impl Loop {
    fn attach(img: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn disk_info(path: &str, size: u64) -> DiskInfo {
    DiskInfo {
        path: path.into(),
        name: path.trim_start_matches("/dev/").into(),
        model: Some("loop".into()),
        vendor: None,
        serial: None,
        wwn: None,
        size_bytes: size,
        logical_sector: 512,
        physical_sector: 512,
        transport: Transport::Unknown,
        removable: false,
        read_only: false,
        rotational: false,
        partition_table: None,
        whole_disk_fstype: None,
        contents: vec![],
        os_hints: vec![],
        mounted: vec![],
        swap: vec![],
        holders: vec![],
        live_medium: None,
    }
}

/// `apply::run` without progress, neither restarting nor closing.
fn run_quietly(
    plan: &Plan,
    target: &Path,
    pass: &Passphrase,
    stop_after: Option<Step>,
) -> Result<apply::Outcome, apply::ApplyError> {
    let mut noop = |_: &apply::Progress| {};
    apply::run(
        plan,
        target,
        pass,
        Options {
            pbkdf: TEST_PBKDF,
            restart: false,
            stop_after,
            close: false,
            progress: &mut noop,
        },
    )
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(Zeroizing::new(s.as_bytes().to_vec())).unwrap()
}

/// Old content an earlier system left: a GPT with other partitions, an
/// LVM PV and md superblock inside them, ext4 where our LUKS will start.
fn dirty(img: &Path) {
    let (ok, o) = sh(Command::new("sgdisk")
        .args(["-n1:2048:+300M", "-n2:0:+5G", "-n3:0:0", "-t3:fd00"])
        .arg(img));
    assert!(ok, "{o}");
    let write_at = |off: u64, data: &[u8]| {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(data).unwrap();
    };
    let p2 = (2048 + 300 * 2048) * 512u64;
    write_at(
        p2 + 512,
        b"LABELONE\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0LVM2 001",
    );
    write_at(p2 + 4096, &0xa92b_4efcu32.to_le_bytes());
    // ext4 superblock magic where partition 4 (LUKS) will start: 2 GiB + 602 MiB + 1 MiB...
    let p4 = (1 + 1 + 600 + 1024) * MIB;
    write_at(p4 + 1080, &[0x53, 0xef]);
    write_at(p4 + 65536 + 64, b"_BHRfS_M");
}

#[test]
fn apply_up_to_luks_on_a_loop_device_reads_back_with_real_tools() {
    let dir = tempfile::tempdir().unwrap();
    let img: PathBuf = dir.path().join("disk.img");
    let size = 40 * GIB;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    dirty(&img);
    // The planted signatures are there to be found before the apply.
    let kinds = |start: u64, len: u64| -> Vec<&'static str> {
        let mut f = std::fs::File::open(&img).unwrap();
        partitioner::signatures::probe(&mut f, start, len)
            .unwrap()
            .iter()
            .map(|s| s.kind)
            .collect()
    };
    let old_p2 = (2048 + 300 * 2048) * 512u64;
    assert!(kinds(old_p2, 5 * GIB).contains(&"lvm2"));
    assert!(kinds(old_p2, 5 * GIB).contains(&"md-1.2"));
    let p4 = (1 + 1 + 600 + 1024) * MIB;
    assert!(kinds(p4, GIB).contains(&"ext2/3/4") && kinds(p4, GIB).contains(&"btrfs"));
    let lo = Loop::attach(&img);
    let plan = Plan::for_disk(&disk_info(&lo.0, size), 4 * GIB).unwrap();
    let mut events = Vec::new();
    let mut progress =
        |p: &apply::Progress| events.push(format!("{}:{:?}", p.step.name(), p.event));
    let out = apply::run(
        &plan,
        Path::new(&lo.0),
        &pass("correct horse"),
        Options {
            pbkdf: TEST_PBKDF,
            restart: false,
            stop_after: Some(Step::Luks),
            close: false,
            progress: &mut progress,
        },
    )
    .unwrap();
    assert_eq!(
        out.ran,
        [Step::Wipe, Step::Gpt, Step::Esp, Step::Boot, Step::Luks]
    );
    assert!(
        events.iter().any(|e| e.starts_with("esp:Done")),
        "{events:?}"
    );

    // GPT: sgdisk verifies it and sees our four partitions, types and names.
    let (ok, v) = sh(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(ok && v.contains("No problems found"), "{v}");
    let (_, p) = sh(Command::new("sgdisk").arg("-p").arg(&img));
    for (n, code, name) in [
        (1, "EF02", "BIOS boot"),
        (2, "EF00", "EFI System"),
        (3, "8300", "boot"),
        (4, "8309", "luks"),
    ] {
        let line = p
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("{p}"));
        assert!(line.contains(code) && line.contains(name), "{line}");
    }
    assert!(
        p.contains(&plan.disk_guid.to_string().to_uppercase()),
        "{p}"
    );
    assert!(
        p.contains("Partitions will be aligned on 2048-sector boundaries"),
        "{p}"
    );
    // Only our signatures are left on the whole disk.
    assert_eq!(kinds(old_p2, 5 * GIB), Vec::<&str>::new());
    assert_eq!(kinds(p4, GIB), ["luks", "luks2-secondary"]);
    let (_, w) = sh(Command::new("wipefs").arg("--no-act").arg(&img));
    let kinds: Vec<&str> = w
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(
        kinds.contains(&"gpt") && kinds.iter().all(|k| *k == "gpt" || *k == "PMBR"),
        "{w}"
    );

    let part = |n: u32| format!("{}p{n}", lo.0);
    // Inside the new partitions, the old LVM/md/ext4/btrfs signatures are gone.
    for (n, only) in [
        (1, None),
        (2, Some("vfat")),
        (3, Some("ext4")),
        (4, Some("crypto_LUKS")),
    ] {
        let (_, w) = sh(Command::new("wipefs").arg("--no-act").arg(part(n)));
        let kinds: Vec<&str> = w
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        match only {
            None => assert!(kinds.is_empty(), "p{n}: {w}"),
            Some(k) => assert!(
                kinds.iter().all(|x| *x == k) && !kinds.is_empty(),
                "p{n}: {w}"
            ),
        }
    }
    let (ok, f) = sh(Command::new("fsck.fat").arg("-n").arg(part(2)));
    assert!(ok, "fsck.fat: {f}");
    let (_, b) = sh(Command::new("file").arg("-s").arg(part(2)));
    assert!(
        b.contains("FAT (32 bit)") || b.contains("FAT32") || b.contains("data"),
        "{b}"
    );
    let (ok, e) = sh(Command::new("e2fsck").args(["-fn"]).arg(part(3)));
    assert!(ok, "e2fsck: {e}");
    let (_, blk) = sh(Command::new("blkid").arg("-p").arg(part(3)));
    assert!(
        blk.contains("LABEL=\"boot\"") && blk.contains("TYPE=\"ext4\""),
        "{blk}"
    );
    assert!(blk.contains(&plan.partitions[2].guid.to_string()), "{blk}");

    let (ok, d) = sh(Command::new("cryptsetup").arg("luksDump").arg(part(4)));
    assert!(ok, "{d}");
    for want in [
        "Version:       \t2",
        "aes-xts-plain64",
        "argon2id",
        "sector: 512 [bytes]",
        "bulkhead-luks",
        "512 bits",
    ] {
        assert!(
            d.replace(' ', "").contains(&want.replace(' ', "")),
            "missing {want:?} in\n{d}"
        );
    }
    assert!(d.contains(&plan.luks.uuid.to_string()), "{d}");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse").unwrap();
    let (ok, o) = sh(Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&pw)
        .arg(part(4)));
    assert!(ok, "right passphrase rejected: {o}");
    std::fs::write(&pw, "wrong horse").unwrap();
    let (ok, _) = sh(Command::new("cryptsetup")
        .args(["open", "--test-passphrase", "--key-file"])
        .arg(&pw)
        .arg(part(4)));
    assert!(!ok, "wrong passphrase accepted");
    assert!(partitioner::luks::test_passphrase(Path::new(&part(4)), b"correct horse").unwrap());
    assert!(!partitioner::luks::test_passphrase(Path::new(&part(4)), b"wrong horse").unwrap());

    // The journal says what is done; a rerun skips it all and writes nothing.
    let j = apply::status(Path::new(&lo.0)).unwrap().unwrap();
    assert_eq!(j.done, [0, 1, 2, 3, 4]);
    assert_eq!(j.plan, plan);
    let before = std::fs::read(part(3)).ok().map(|b| b.len());
    let again = run_quietly(
        &plan,
        Path::new(&lo.0),
        &pass("correct horse"),
        Some(Step::Luks),
    )
    .unwrap();
    assert!(again.ran.is_empty(), "{:?}", again.ran);
    assert!(again.resumed);
    assert_eq!(before, std::fs::read(part(3)).ok().map(|b| b.len()));
    let text = apply::describe_state(&j.done);
    assert!(
        text.contains("luks    done") && text.contains("lvm     not done"),
        "{text}"
    );
}

#[test]
fn a_plan_for_another_size_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(33 * GIB)
        .unwrap();
    let plan = Plan::for_disk(&disk_info(&img.display().to_string(), 34 * GIB), 4 * GIB).unwrap();
    let err = run_quietly(&plan, &img, &pass("x"), None).unwrap_err();
    assert!(err.to_string().contains("changed since the plan"), "{err}");
    // Nothing was written: the sparse file has no data blocks.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&img).unwrap().blocks(), 0);
}

/// A journal planted on the disk (the previous system can write there)
/// whose plan weakens LUKS2 or moves the layout is not adopted: the run
/// stops before writing, says why, and the caller's plan is never replaced.
#[test]
fn a_planted_journal_with_another_plan_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(34 * GIB)
        .unwrap();
    let plan = Plan::for_disk(&disk_info(&img.display().to_string(), 34 * GIB), 4 * GIB).unwrap();
    let weak = {
        let mut p = plan.clone();
        p.luks.cipher = "aes-ecb".into();
        p.luks.key_bits = 128;
        p
    };
    let moved = {
        let mut p = plan.clone();
        p.lvm.root_lv = "evil".into();
        p
    };
    for (planted, says) in [(&weak, "aes-ecb"), (&moved, "evil")] {
        let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        partitioner::journal::init(&mut f, planted, &mut |_| Ok(())).unwrap();
        drop(f);
        use std::os::unix::fs::MetadataExt;
        let before = std::fs::metadata(&img).unwrap().blocks();
        let err = run_quietly(&plan, &img, &pass("x"), None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(says) && text.contains("--restart"), "{text}");
        // Only the planted journal is on the disk: no GPT was written.
        let (ok, out) = sh(Command::new("sgdisk").arg("-p").arg(&img));
        assert!(!ok || !out.contains("EFI"), "a GPT was written:\n{out}");
        assert_eq!(std::fs::metadata(&img).unwrap().blocks(), before);
    }
}

#[test]
fn image_file_steps_before_luks_work_without_a_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let size = 32 * GIB + 7 * MIB;
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let plan = Plan::for_disk(&disk_info(&img.display().to_string(), size), 2 * GIB).unwrap();
    let out = run_quietly(&plan, &img, &pass("x"), Some(Step::Boot)).unwrap();
    assert_eq!(out.ran.len(), 4);
    let (ok, v) = sh(Command::new("sgdisk").arg("-v").arg(&img));
    assert!(ok && v.contains("No problems found"), "{v}");
    // /boot checked in place with e2fsck's offset support via a copy of the partition.
    let boot = &plan.partitions[2];
    let (ok, o) = sh(Command::new("sh").arg("-c").arg(format!(
        "dd if={} of={}/boot.img bs=1M skip={} count={} status=none && e2fsck -fn {}/boot.img",
        img.display(),
        dir.path().display(),
        boot.first_lba * 512 / MIB,
        boot.size_bytes / MIB,
        dir.path().display()
    )));
    assert!(ok, "{o}");
    let esp = &plan.partitions[1];
    let (ok, o) = sh(Command::new("sh").arg("-c").arg(format!(
        "dd if={} of={}/esp.img bs=1M skip={} count={} status=none && fsck.fat -n {}/esp.img",
        img.display(),
        dir.path().display(),
        esp.first_lba * 512 / MIB,
        esp.size_bytes / MIB,
        dir.path().display()
    )));
    assert!(ok, "{o}");
    // The LUKS step needs a block device and says so, with the state.
    let err = run_quietly(&plan, &img, &pass("x"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("step luks failed") && err.contains("boot    done") && err.contains("Rerun"),
        "{err}"
    );
}

/// Stopped after each step (as after a crash between steps), the next run
/// resumes from the journal, redoes nothing done, and the result verifies.
#[test]
fn resumes_after_every_step_boundary() {
    for stop in [Step::Wipe, Step::Gpt, Step::Esp, Step::Boot] {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let size = 32 * GIB;
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let lo = Loop::attach(&img);
        let plan = Plan::for_disk(&disk_info(&lo.0, size), 8 * GIB).unwrap();
        let first = run_quietly(&plan, Path::new(&lo.0), &pass("pw"), Some(stop)).unwrap();
        assert_eq!(*first.ran.last().unwrap(), stop);
        // A fresh plan (new GUIDs) is handed in, as a rerun of the CLI does
        // without --plan; the journal's plan wins.
        let other = Plan::for_disk(&disk_info(&lo.0, size), 8 * GIB).unwrap();
        let second = run_quietly(&other, Path::new(&lo.0), &pass("pw"), Some(Step::Luks)).unwrap();
        assert!(second.resumed, "{stop:?}");
        assert_eq!(second.plan, plan);
        assert_eq!(
            first.ran.len() + second.ran.len(),
            5,
            "{stop:?}: {:?} then {:?}",
            first.ran,
            second.ran
        );
        let (ok, v) = sh(Command::new("sgdisk").arg("-v").arg(&img));
        assert!(ok && v.contains("No problems found"), "{stop:?}: {v}");
        let (ok, e) = sh(Command::new("e2fsck")
            .args(["-fn"])
            .arg(format!("{}p3", lo.0)));
        assert!(ok, "{stop:?}: {e}");
        let (ok, f) = sh(Command::new("fsck.fat")
            .arg("-n")
            .arg(format!("{}p2", lo.0)));
        assert!(ok, "{stop:?}: {f}");
        assert!(
            partitioner::luks::test_passphrase(Path::new(&format!("{}p4", lo.0)), b"pw").unwrap()
        );
        // --restart ignores the journal: a new plan, everything redone.
        let mut noop = |_: &apply::Progress| {};
        let third = apply::run(
            &other,
            Path::new(&lo.0),
            &pass("pw"),
            Options {
                pbkdf: TEST_PBKDF,
                restart: true,
                stop_after: Some(Step::Gpt),
                close: false,
                progress: &mut noop,
            },
        )
        .unwrap();
        assert!(!third.resumed);
        assert_eq!(third.ran, [Step::Wipe, Step::Gpt]);
        let (_, p) = sh(Command::new("sgdisk").arg("-p").arg(&img));
        assert!(
            p.contains(&other.disk_guid.to_string().to_uppercase()),
            "{p}"
        );
    }
}

/// The production PBKDF path: argon2id benchmarked by libcryptsetup within
/// the memory cap (here a short time budget and 64 MiB so the test is quick).
#[test]
fn benchmarked_argon2id_on_a_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("luks.img");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let plan = Plan::for_disk(&disk_info("/dev/x", 40 * GIB), 4 * GIB).unwrap();
    let pbkdf = Pbkdf::Benchmarked {
        time_ms: 300,
        max_memory_kib: 65536,
        parallel_threads: 2,
    };
    partitioner::luks::format(&f, &plan.luks, b"pw", pbkdf).unwrap();
    let (ok, d) = sh(Command::new("cryptsetup").arg("luksDump").arg(&f));
    assert!(ok, "{d}");
    let mem: u64 = d
        .lines()
        .find_map(|l| l.trim().strip_prefix("Memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((32..=65536).contains(&mem), "{d}");
    assert!(d.contains("argon2id") && d.contains("Threads:    2"), "{d}");
    assert!(partitioner::luks::test_passphrase(&f, b"pw").unwrap());
    assert!(!partitioner::luks::test_passphrase(&f, b"pW").unwrap());
    assert_eq!(partitioner::luks::uuid(&f), Some(plan.luks.uuid));
}

#[test]
fn pbkdf_sized_for_the_machine_like_cryptsetup() {
    let p = |mem_gib: u64, cpus: u32| Pbkdf::for_machine(mem_gib * GIB, cpus);
    assert_eq!(
        p(24, 2),
        Pbkdf::Benchmarked {
            time_ms: 2000,
            max_memory_kib: 1 << 20,
            parallel_threads: 2
        }
    );
    assert_eq!(
        p(1, 8),
        Pbkdf::Benchmarked {
            time_ms: 2000,
            max_memory_kib: 512 * 1024,
            parallel_threads: 4
        }
    );
}
