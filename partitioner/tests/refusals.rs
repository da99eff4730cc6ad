//! Discovery and every refusal, on recorded machines (tests/fixtures).

use std::path::PathBuf;

use partitioner::plan::{GIB, MIB, Role};
use partitioner::recheck::check_apply;
use partitioner::{Inventory, Plan, Refusal, discover};

fn fixture(name: &str) -> Inventory {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let json = std::fs::read_to_string(dir.join("lsblk.json")).unwrap();
    discover(&dir.join("root"), &json).unwrap()
}

#[test]
fn laptop_lists_nvme_usb_stick_and_live_medium() {
    let inv = fixture("laptop");
    assert_eq!(inv.memory_bytes, 16 * GIB);
    assert_eq!(inv.cpus, 4);
    let paths: Vec<&str> = inv.disks.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/dev/nvme0n1", "/dev/sda", "/dev/sdb"]);
    let nvme = inv.disk("/dev/nvme0n1").unwrap();
    assert_eq!(nvme.transport.to_string(), "nvme");
    assert_eq!(nvme.serial.as_deref(), Some("S5GXNF0R123456A"));
    assert_eq!(nvme.partition_table.as_deref(), Some("gpt"));
    assert!(
        nvme.os_hints.contains(&"Windows".to_string()),
        "{:?}",
        nvme.os_hints
    );
    assert!(!nvme.in_use() && nvme.live_medium.is_none(), "{nvme:?}");
    let stick = inv.disk("sda").unwrap();
    assert!(stick.removable);
    assert_eq!(stick.transport.to_string(), "usb");
    let live = inv.disk("/dev/sdb").unwrap();
    let why = live.live_medium.as_deref().unwrap();
    assert!(
        why.contains("BULKHEAD") || why.contains("/run/bulkhead/medium"),
        "{why}"
    );
    assert!(
        live.mounted
            .iter()
            .any(|m| m.contains("/run/bulkhead/medium"))
    );
    let text = partitioner::present::render_list(&inv);
    assert!(text.contains("LIVE MEDIUM"), "{text}");
    let json = serde_json::to_string(&inv).unwrap();
    let back: Inventory = serde_json::from_str(&json).unwrap();
    assert_eq!(back, inv);
}

#[test]
fn live_medium_found_by_iso_label_when_not_mounted() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/laptop");
    let json = std::fs::read_to_string(dir.join("lsblk.json"))
        .unwrap()
        .replace("\"/run/bulkhead/medium\"", "null");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("proc")).unwrap();
    std::fs::write(
        tmp.path().join("proc/cmdline"),
        "root=live:CDLABEL=BULKHEAD\n",
    )
    .unwrap();
    let inv = discover(tmp.path(), &json).unwrap();
    let why = inv.disk("sdb").unwrap().live_medium.clone().unwrap();
    assert!(why.contains("ISO9660 volume \"BULKHEAD\""), "{why}");
    // Another label on the command line: that stick is no longer the medium.
    std::fs::write(tmp.path().join("proc/cmdline"), "bulkhead.label=OTHER\n").unwrap();
    let inv = discover(tmp.path(), &json).unwrap();
    assert!(inv.disk("sdb").unwrap().live_medium.is_none());
    // ... unless the kernel command line names the device.
    std::fs::write(
        tmp.path().join("proc/cmdline"),
        "bulkhead.label=OTHER bulkhead.medium=/dev/sdb\n",
    )
    .unwrap();
    let inv = discover(tmp.path(), &json).unwrap();
    assert!(inv.disk("sdb").unwrap().live_medium.is_some());
}

#[test]
fn refuses_the_live_medium() {
    let inv = fixture("laptop");
    match Plan::new(&inv, "/dev/sdb") {
        Err(Refusal::LiveMedium { disk, .. }) => assert_eq!(disk, "/dev/sdb"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn usb_target_allowed_with_a_warning() {
    let inv = fixture("laptop");
    let plan = Plan::new(&inv, "/dev/sda").unwrap();
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("USB") && w.contains("slower")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn refuses_mounted_swap_lvm_md_and_small_disks() {
    let inv = fixture("busy");
    let err = |d: &str| Plan::new(&inv, d).unwrap_err();
    match err("/dev/sda") {
        Refusal::InUse { details, .. } => assert!(
            details.iter().any(|d| d.contains("/dev/sda2 on /")),
            "{details:?}"
        ),
        e => panic!("{e:?}"),
    }
    match err("/dev/sdb") {
        Refusal::InUse { details, .. } => {
            assert!(
                details.iter().any(|d| d.contains("dm-0 (data-vol)")),
                "{details:?}"
            );
            assert!(details.iter().any(|d| d.contains("/srv")), "{details:?}");
        }
        e => panic!("{e:?}"),
    }
    match err("/dev/sdc") {
        Refusal::InUse { details, .. } => assert!(
            details.iter().any(|d| d == "swap: /dev/sdc1"),
            "{details:?}"
        ),
        e => panic!("{e:?}"),
    }
    match err("/dev/sdd") {
        Refusal::TooSmall { size, .. } => assert_eq!(size, 16013942784),
        e => panic!("{e:?}"),
    }
    match err("/dev/sde") {
        Refusal::InUse { details, .. } => {
            assert!(details.iter().any(|d| d.contains("md0")), "{details:?}")
        }
        e => panic!("{e:?}"),
    }
    assert!(matches!(err("/dev/sdf1"), Refusal::NotWholeDisk { .. }));
    assert!(matches!(err("/dev/sdz"), Refusal::NotFound { .. }));
    let msg = err("/dev/sdd").to_string();
    assert!(
        msg.contains("/dev/sdd") && msg.contains("32.0 GiB"),
        "{msg}"
    );
    // The one free disk plans, and the plan lists what it destroys.
    let plan = Plan::new(&inv, "/dev/sdf").unwrap();
    assert!(
        plan.destroys.iter().any(|d| d.contains("/dev/sdf1")),
        "{:?}",
        plan.destroys
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

#[test]
fn read_only_disks_are_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest");
    let json = std::fs::read_to_string(dir.join("lsblk.json"))
        .unwrap()
        .replacen("\"ro\": false", "\"ro\": true", 1);
    let inv = discover(&dir.join("root"), &json).unwrap();
    assert!(matches!(
        Plan::new(&inv, "/dev/vda"),
        Err(Refusal::ReadOnly { .. })
    ));
}

#[test]
fn plan_layout_for_a_40_gib_disk() {
    let inv = fixture("guest");
    let plan = Plan::new(&inv, "/dev/vda").unwrap();
    plan.validate().unwrap();
    let p = &plan.partitions;
    assert_eq!(p.len(), 4);
    assert_eq!(
        (p[0].role, p[0].first_lba, p[0].size_bytes),
        (Role::BiosBoot, 2048, MIB)
    );
    assert_eq!(
        (p[1].role, p[1].first_lba, p[1].size_bytes),
        (Role::Esp, 4096, 600 * MIB)
    );
    assert_eq!((p[2].role, p[2].size_bytes), (Role::Boot, GIB));
    assert_eq!(p[3].role, Role::Luks);
    for x in p {
        assert_eq!(x.first_lba % 2048, 0);
        assert_eq!((x.last_lba + 1) % 2048, 0);
    }
    assert_eq!(p[3].last_lba + 1, 40 * GIB / 512 - 2048);
    assert_eq!(p[0].type_guid, "21686148-6449-6E6F-744E-656564454649");
    assert_eq!(p[1].type_guid, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(plan.disk.serial.as_deref(), Some("BH0001"));
    assert_eq!(plan.disk.size_bytes, 40 * GIB);
    assert_eq!(plan.lvm.vg, "qubes_dom0");
    assert_eq!(plan.lvm.thin_pool, "root-pool");
    assert_eq!(plan.lvm.swap_bytes, 2 * GIB); // 2 GiB RAM -> RAM
    assert!(plan.lvm.free_for_vm_pool_bytes > 14 * GIB);
    assert_eq!(
        (
            plan.luks.cipher.as_str(),
            plan.luks.key_bits,
            plan.luks.sector_size
        ),
        ("aes-xts-plain64", 512, 512)
    );
    let text = plan.to_string();
    assert!(
        text.contains("/dev/vda4") && text.contains("qubes_dom0") && text.contains("BH0001"),
        "{text}"
    );
    let back: Plan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
    assert_eq!(back, plan);
}

#[test]
fn apply_checks_consent_and_identity() {
    let inv = fixture("guest");
    let plan = Plan::new(&inv, "/dev/vda").unwrap();
    assert!(check_apply(&plan, &inv, "/dev/vda").is_ok());
    assert!(check_apply(&plan, &inv, "vda").is_ok());
    assert!(matches!(
        check_apply(&plan, &inv, "/dev/vdb"),
        Err(Refusal::ConsentMismatch { .. })
    ));
    // Another disk now answers to the same name (serial and size differ).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest");
    let json = std::fs::read_to_string(dir.join("lsblk.json")).unwrap();
    let swapped = json
        .replace("BH0001", "OTHER1")
        .replace("42949672960", "42949672448");
    let inv2 = discover(&dir.join("root"), &swapped).unwrap();
    match check_apply(&plan, &inv2, "/dev/vda") {
        Err(Refusal::Changed { differences, .. }) => {
            assert!(
                differences.iter().any(|d| d.contains("serial")),
                "{differences:?}"
            );
            assert!(
                differences.iter().any(|d| d.contains("size")),
                "{differences:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The disk vanished.
    let gone = discover(
        &dir.join("root"),
        &json
            .replace("\"vda\"", "\"vdx\"")
            .replace("/dev/vda", "/dev/vdx"),
    )
    .unwrap();
    assert!(matches!(
        check_apply(&plan, &gone, "/dev/vda"),
        Err(Refusal::Changed { .. })
    ));
    // Mounted after planning.
    let mounted = json.replacen("\"mountpoint\": null", "\"mountpoint\": \"/mnt\"", 1);
    assert_ne!(mounted, json);
    let inv3 = discover(&dir.join("root"), &mounted).unwrap();
    assert!(matches!(
        check_apply(&plan, &inv3, "/dev/vda"),
        Err(Refusal::InUse { .. })
    ));
}

#[test]
fn serial_and_model_from_sysfs_when_lsblk_has_none() {
    // What lsblk prints without udev (the live system's initramfs).
    let json = r#"{"blockdevices":[{"name":"vda","kname":"vda","path":"/dev/vda","type":"disk","size":42949672960,"serial":null,"model":null,"rota":true,"subsystems":"block:virtio:pci"}]}"#;
    let tmp = tempfile::tempdir().unwrap();
    let sys = tmp.path().join("sys/block/vda");
    std::fs::create_dir_all(sys.join("device")).unwrap();
    std::fs::write(sys.join("serial"), "BH0001\n").unwrap();
    std::fs::write(sys.join("device/model"), "QEMU HARDDISK   \n").unwrap();
    let inv = discover(tmp.path(), json).unwrap();
    let d = inv.disk("vda").unwrap();
    assert_eq!(d.serial.as_deref(), Some("BH0001"));
    assert_eq!(d.model.as_deref(), Some("QEMU HARDDISK"));
    assert_eq!(d.transport.to_string(), "virtio");
    assert!(d.rotational);
    assert_eq!(
        d.describe(),
        "QEMU HARDDISK (serial BH0001), 40.0 GiB, /dev/vda"
    );
}

#[test]
fn damaged_lsblk_json_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(discover(tmp.path(), "{").is_err());
    assert!(discover(tmp.path(), r#"{"blockdevices":[{"type":"disk"}]}"#).is_ok());
    assert!(discover(tmp.path(), r#"{"blockdevices":[{"type":"disk","size":"12","rm":"1","children":[{"type":"part"}]}]}"#).is_ok());
}

proptest::proptest! {
    #[test]
    fn discovery_never_panics_on_arbitrary_json_values(size in proptest::prelude::any::<i64>(), name in "[a-z0-9/]{0,12}", rm in 0u8..3, mp in "[ -~]{0,20}") {
        let tmp = tempfile::tempdir().unwrap();
        let rmv = match rm { 0 => "true".to_string(), 1 => "\"1\"".to_string(), _ => "null".to_string() };
        let json = format!(
            r#"{{"blockdevices":[{{"name":{n:?},"type":"disk","size":{size},"rm":{rmv},"mountpoints":[{mp:?},null],"children":[{{"name":{n:?},"type":"crypt","mountpoint":{mp:?}}}]}}]}}"#,
            n = name
        );
        let _ = discover(tmp.path(), &json);
        if let Ok(inv) = discover(tmp.path(), &json) {
            for d in &inv.disks {
                let _ = Plan::new(&inv, &d.path);
            }
        }
    }
}

#[test]
fn without_udev_the_device_is_probed_and_the_live_iso_found() {
    // lsblk in a bare initramfs reports no file systems; discovery reads
    // the device node itself.
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), "x").unwrap();
    std::fs::create_dir(tmp.path().join("dev")).unwrap();
    let st = std::process::Command::new("genisoimage")
        .args(["-quiet", "-V", "BULKHEAD", "-o"])
        .arg(tmp.path().join("dev/sdb"))
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(tmp.path().join("dev/vda"), vec![0u8; 1 << 20]).unwrap();
    let json = r#"{"blockdevices":[
        {"name":"sdb","path":"/dev/sdb","type":"disk","size":40000000000,"tran":"usb","fstype":null,"pttype":null},
        {"name":"vda","path":"/dev/vda","type":"disk","size":40000000000,"fstype":null,"pttype":null}]}"#;
    let inv = discover(tmp.path(), json).unwrap();
    let sdb = inv.disk("sdb").unwrap();
    assert_eq!(sdb.whole_disk_fstype.as_deref(), Some("iso9660"));
    assert!(sdb.live_medium.as_deref().unwrap().contains("BULKHEAD"));
    assert!(matches!(
        Plan::new(&inv, "/dev/sdb"),
        Err(Refusal::LiveMedium { .. })
    ));
    let vda = inv.disk("vda").unwrap();
    assert_eq!(
        (
            vda.whole_disk_fstype.as_deref(),
            vda.partition_table.as_deref()
        ),
        (None, None)
    );
}

#[test]
fn recorded_guest_after_apply_shows_our_luks_and_lvm_as_holders() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guest-recorded");
    let blank = std::fs::read_to_string(dir.join("lsblk-blank.json")).unwrap();
    let inv = discover(&dir.join("root"), &blank).unwrap();
    assert_eq!(inv.disks.len(), 4);
    let open = std::fs::read_to_string(dir.join("lsblk-open.json")).unwrap();
    let inv = discover(&dir.join("root"), &open).unwrap();
    let vda = inv.disk("/dev/vda").unwrap();
    assert_eq!(vda.serial.as_deref(), Some("BH0001"));
    assert_eq!(vda.contents.iter().filter(|c| c.kind == "part").count(), 4);
    assert!(
        vda.os_hints.contains(&"Qubes OS".to_string()),
        "{:?}",
        vda.os_hints
    );
    match Plan::new(&inv, "/dev/vda") {
        Err(Refusal::InUse { details, .. }) => {
            assert!(
                details.iter().any(|d| d.starts_with("held by dm-0 (luks-")),
                "{details:?}"
            );
            assert!(
                details.iter().any(|d| d.contains("qubes_dom0-swap")),
                "{details:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let plan = Plan::new(&inv, "/dev/vdb").unwrap();
    assert_eq!(plan.disk.serial.as_deref(), Some("BH0002"));
    assert_eq!(plan.lvm.swap_bytes, 3932 * MIB); // anaconda: 2 x RAM below 2 GiB, whole extents
    assert!(matches!(
        Plan::new(&inv, "/dev/vdc"),
        Err(Refusal::TooSmall { .. })
    ));
}
