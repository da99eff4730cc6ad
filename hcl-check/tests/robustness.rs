//! Missing, unreadable and garbage machine data: "unknown" with a reason,
//! never a panic; and the firmware-disabled cases of VT-x.

use hcl_check::{Probe, Status, report};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new("tests/fixtures").join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &t).unwrap();
        } else if ft.is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            files(&e.path(), out);
        } else if ft.is_file() && e.file_name() != "cpuid.txt" {
            out.push(e.path());
        }
    }
}

fn verdict(root: &Path, id: &str) -> hcl_check::Verdict {
    Probe::new(root)
        .report()
        .unwrap()
        .verdicts
        .into_iter()
        .find(|v| v.id == id)
        .unwrap()
}

#[test]
fn an_empty_root_gives_unknowns_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = Probe::new(tmp.path());
    p.cpuid_dump = Some(fixture("intel-xps13-9370-vtd/cpuid.txt"));
    let r = p.report().unwrap();
    let get = |id: &str| r.verdicts.iter().find(|v| v.id == id).unwrap().clone();
    assert_eq!(get("cpu-64bit").status, Status::Pass);
    assert_eq!(get("iommu").status, Status::Unknown);
    assert!(
        get("iommu").reason.contains("/sys/firmware/acpi/tables"),
        "{:?}",
        get("iommu")
    );
    assert_eq!(get("ram").status, Status::Unknown);
    assert_eq!(get("disk").status, Status::Unknown);
    assert_eq!(get("keyboard").status, Status::Unknown);
    assert_eq!(
        get("virtualization").status,
        Status::Unknown,
        "EPT cannot be known without cpuinfo or MSRs"
    );
    for text in [report::table(&r, false), report::json(&r), report::yaml(&r)] {
        assert!(!text.is_empty());
    }
}

#[test]
fn files_recorded_unreadable_at_capture_stay_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    copy_tree(&fixture("intel-xps13-9370-no-dmar"), &root);
    std::fs::write(
        root.join("unreadable.txt"),
        "/sys/firmware/acpi/tables/DMAR\tpermission denied (run as root)\n",
    )
    .unwrap();
    let v = verdict(&root, "iommu");
    assert_eq!(v.status, Status::Unknown, "{v:?}");
    assert!(v.reason.contains("recorded at capture"), "{}", v.reason);
}

#[test]
fn vtx_locked_off_by_firmware_fails_with_the_remedy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    copy_tree(&fixture("intel-xps13-9370-vtd"), &root);
    // IA32_FEATURE_CONTROL locked (bit 0) with VMX outside SMX (bit 2) clear.
    std::fs::write(root.join("msr.txt"), "0x3a=0x1\n").unwrap();
    let v = verdict(&root, "virtualization");
    assert_eq!(v.status, Status::Fail);
    assert!(
        v.measured.contains("disabled by the firmware"),
        "{}",
        v.measured
    );
    assert!(v.remedy.unwrap().contains("enable Intel VT-x"));

    // Without MSRs: the kernel dropped `vmx` from the flags, as it does for a firmware lock.
    std::fs::remove_file(root.join("msr.txt")).unwrap();
    let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap();
    let stripped: String = cpuinfo
        .lines()
        .filter(|l| !l.starts_with("vmx flags"))
        .map(|l| if l.starts_with("flags") { l.replace(" vmx ", " ") } else { l.to_string() } + "\n")
        .collect();
    std::fs::write(root.join("proc/cpuinfo"), stripped).unwrap();
    let v = verdict(&root, "virtualization");
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert!(v.reason.contains("no 'vmx'"), "{}", v.reason);
}

#[test]
fn ept_unknown_without_vmx_flags_or_msr() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    copy_tree(&fixture("intel-xps13-9370-vtd"), &root);
    std::fs::remove_file(root.join("msr.txt")).unwrap();
    let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap();
    let old_kernel: String = cpuinfo
        .lines()
        .filter(|l| !l.starts_with("vmx flags"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(root.join("proc/cpuinfo"), old_kernel).unwrap();
    let v = verdict(&root, "virtualization");
    assert_eq!(v.status, Status::Unknown, "{v:?}");
    // The capability MSR answers it when the cpuinfo line is missing.
    std::fs::write(
        root.join("msr.txt"),
        "0x48b=0x00000002_00000000\n".replace('_', ""),
    )
    .unwrap();
    assert_eq!(verdict(&root, "virtualization").status, Status::Pass);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every file of a capture replaced by arbitrary bytes: the probe and
    /// all three outputs still complete.
    #[test]
    fn garbage_files_never_panic(seed in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8), which in 0usize..4) {
        let name = ["qemu-q35-vtd-4gib", "qemu-q35-amdvi-4gib", "amd-ryzen5-5600g-amdvi", "intel-xps13-9370-vtd"][which];
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("r");
        copy_tree(&fixture(name), &root);
        let mut all = Vec::new();
        files(&root, &mut all);
        all.sort();
        for (i, f) in all.iter().enumerate() {
            std::fs::write(f, &seed[i % seed.len()]).unwrap();
        }
        let r = Probe::new(&root).report().unwrap();
        let _ = (report::table(&r, true), report::json(&r), report::yaml(&r));
    }
}

#[test]
fn amdv_disabled_by_firmware_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    copy_tree(&fixture("amd-ryzen5-5600g-amdvi"), &root);
    // VM_CR with SVMDIS (bit 4) set.
    std::fs::write(root.join("msr.txt"), "0xc0010114=0x18\n").unwrap();
    let v = verdict(&root, "virtualization");
    assert_eq!(v.status, Status::Fail, "{v:?}");
    assert!(v.reason.contains("SVMDIS"), "{}", v.reason);
    assert!(v.remedy.unwrap().contains("SVM Mode"));
}
