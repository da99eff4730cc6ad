//! Verdicts on every recorded machine, through the library and through the
//! real binary (output formats and exit codes).

use hcl_check::{Probe, Status, acpi};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new("tests/fixtures").join(name)
}

fn statuses(name: &str) -> Vec<(&'static str, Status)> {
    let r = Probe::new(fixture(name)).report().unwrap();
    r.verdicts.iter().map(|v| (v.id.id(), v.status)).collect()
}

fn status(name: &str, id: &str) -> Status {
    statuses(name)
        .into_iter()
        .find(|(i, _)| *i == id)
        .unwrap()
        .1
}

fn verdict(name: &str, id: &str) -> hcl_check::Verdict {
    let r = Probe::new(fixture(name)).report().unwrap();
    r.verdicts.into_iter().find(|v| v.id == id).unwrap()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hcl-check"))
}

#[test]
fn intel_with_vtx_ept_vtd_passes_everything() {
    use Status::*;
    assert_eq!(
        statuses("intel-xps13-9370-vtd"),
        vec![
            ("cpu-64bit", Pass),
            ("virtualization", Pass),
            ("iommu", Pass),
            ("ram", Pass),
            ("disk", Pass),
            ("keyboard", Pass)
        ]
    );
    let v = verdict("intel-xps13-9370-vtd", "virtualization");
    assert_eq!(v.measured, "Intel VT-x with EPT");
    let i = verdict("intel-xps13-9370-vtd", "iommu");
    assert!(
        i.measured
            .contains("Intel VT-d, 2 remapping units, interrupt remapping yes"),
        "{}",
        i.measured
    );
}

#[test]
fn amd_with_amdv_rvi_amdvi() {
    assert_eq!(
        status("amd-ryzen5-5600g-amdvi", "virtualization"),
        Status::Pass
    );
    assert_eq!(
        verdict("amd-ryzen5-5600g-amdvi", "virtualization").measured,
        "AMD-V with RVI (NPT)"
    );
    assert!(
        verdict("amd-ryzen5-5600g-amdvi", "iommu")
            .measured
            .starts_with("AMD-Vi")
    );
    // Only a USB keyboard: a warning, not a failure.
    assert_eq!(status("amd-ryzen5-5600g-amdvi", "keyboard"), Status::Warn);
    let r = Probe::new(fixture("amd-ryzen5-5600g-amdvi"))
        .report()
        .unwrap();
    assert_eq!(r.overall, Status::Warn);
    assert_eq!(r.exit_code, 1);
    assert!(
        !r.machine.vm.inside_vm,
        "a bare-metal dump is not a VM: {:?}",
        r.machine.vm
    );
}

#[test]
fn firmware_without_dmar_warns_with_the_consequence() {
    let v = verdict("intel-xps13-9370-no-dmar", "iommu");
    assert_eq!(v.status, Status::Warn);
    assert!(
        v.reason.contains("sys-net and sys-usb give no isolation"),
        "{}",
        v.reason
    );
    assert!(v.remedy.unwrap().contains("enable Intel VT-d"));
    let r = Probe::new(fixture("intel-xps13-9370-no-dmar"))
        .report()
        .unwrap();
    assert_eq!(r.exit_code, 1);
}

#[test]
fn vm_without_vmx_or_svm_fails_and_says_it_is_a_vm() {
    let r = Probe::new(fixture("kvm-guest-no-svm")).report().unwrap();
    assert!(!r.machine.cpu.vmx && !r.machine.cpu.svm);
    assert!(r.machine.vm.inside_vm);
    assert_eq!(r.machine.vm.hypervisor.as_deref(), Some("KVM"));
    let v = r
        .verdicts
        .iter()
        .find(|v| v.id == "virtualization")
        .unwrap();
    assert_eq!(v.status, Status::Fail);
    assert!(
        v.reason.contains("inside a virtual machine"),
        "{}",
        v.reason
    );
    assert!(
        r.notes
            .iter()
            .any(|n| n.starts_with("Running inside a virtual machine (KVM)"))
    );
    assert_eq!(r.exit_code, 2);
}

#[test]
fn qemu_vm_without_npt_and_too_small_fails() {
    use Status::*;
    let s = statuses("qemu-pc-2gib-qemu64");
    assert_eq!(
        s,
        vec![
            ("cpu-64bit", Pass),
            ("virtualization", Fail),
            ("iommu", Warn),
            ("ram", Fail),
            ("disk", Fail),
            ("keyboard", Pass)
        ]
    );
    assert_eq!(
        verdict("qemu-pc-2gib-qemu64", "virtualization").measured,
        "AMD-V without RVI (NPT)"
    );
}

#[test]
fn nominal_4gib_machine_is_not_refused() {
    // Installed size from SMBIOS.
    let v = verdict("qemu-q35-vtd-4gib", "ram");
    assert_eq!(v.status, Status::Warn, "{v:?}");
    assert!(
        v.measured.starts_with("4.0 GiB installed"),
        "{}",
        v.measured
    );
    // MemTotal only (3.8 GiB): the documented tolerance applies.
    let v = verdict("qemu-q35-4gib-no-smbios", "ram");
    assert_eq!(v.status, Status::Warn, "{v:?}");
    assert!(v.measured.contains("MemTotal"), "{}", v.measured);
    assert!(v.reason.contains("tolerance"), "{}", v.reason);
}

#[test]
fn decimal_32gb_disk_fails_and_says_gib_vs_gb() {
    let v = verdict("qemu-q35-32gb-disk", "disk");
    assert_eq!(v.status, Status::Fail);
    assert!(v.measured.contains("29.8 GiB (32.0 GB)"), "{}", v.measured);
    assert!(v.threshold.contains("32 GiB = 34.4 GB"), "{}", v.threshold);
    assert_eq!(status("qemu-q35-vtd-4gib", "disk"), Status::Pass);
    assert_eq!(
        status("qemu-q35-vtd-4gib", "virtualization"),
        Status::Pass,
        "TCG's max CPU has AMD-V with NPT"
    );
}

#[test]
fn qemu_iommu_tables_parse_and_match_iasl() {
    let dmar = std::fs::read(fixture("qemu-q35-vtd-4gib/sys/firmware/acpi/tables/DMAR")).unwrap();
    let d = acpi::Dmar::parse(&dmar).unwrap();
    assert!(d.header.checksum_valid && d.intr_remap);
    assert_eq!(d.units.len(), 1);
    // QEMU 7.2 lists its devices explicitly: the IOAPIC, then PCI endpoints.
    assert!(!d.units[0].include_pci_all);
    assert_eq!(d.units[0].scopes[0].kind, 3);
    let ivrs = std::fs::read(fixture("qemu-q35-amdvi-4gib/sys/firmware/acpi/tables/IVRS")).unwrap();
    let i = acpi::Ivrs::parse(&ivrs).unwrap();
    assert!(i.header.checksum_valid && i.intr_remap());
    assert_eq!(i.units.len(), 1);
    // A real laptop IVRS: one IOMMU in three IVHD flavours.
    let yoga = std::fs::read(fixture(
        "amd-ryzen5-5600g-amdvi/sys/firmware/acpi/tables/IVRS",
    ))
    .unwrap();
    let y = acpi::Ivrs::parse(&yoga).unwrap();
    assert!(y.header.checksum_valid && y.efr_sup && y.intr_remap());
    assert_eq!(
        y.units.iter().map(|u| u.kind).collect::<Vec<_>>(),
        [0x10, 0x11, 0x40]
    );
    assert_eq!(y.iommu_count(), 1);
    assert!(
        y.units
            .iter()
            .all(|u| u.ioapics() == 2 && u.base_address == 0xfdf0_0000)
    );
    assert_eq!(y.units[0].efr, None);
    assert_eq!(y.units[1].efr, Some(0x206d_73ef_2225_4ade));
    assert_eq!(
        y.units[2].device_entries, 11,
        "4-, 8-byte and ACPI-HID entries"
    );
    let real = std::fs::read(fixture(
        "intel-xps13-9370-vtd/sys/firmware/acpi/tables/DMAR",
    ))
    .unwrap();
    let r = acpi::Dmar::parse(&real).unwrap();
    assert_eq!(r.units.len(), 2);
    assert_eq!(r.units[1].register_base, 0xfed9_1000);
    assert_eq!(r.rmrr_count, 2);
    // Independent decoder: iasl (acpica-tools) must agree on units and flags.
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes, units) in [
        ("DMAR", &dmar, d.units.len()),
        ("real.DMAR", &real, r.units.len()),
    ] {
        let p = tmp.path().join(format!("{name}.dat"));
        std::fs::write(&p, bytes).unwrap();
        let st = Command::new("iasl")
            .arg("-d")
            .arg(&p)
            .current_dir(tmp.path())
            .output()
            .expect("iasl (acpica-tools) is installed");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let dsl = std::fs::read_to_string(tmp.path().join(format!("{name}.dsl"))).unwrap();
        assert_eq!(
            dsl.matches("[Hardware Unit Definition]").count(),
            units,
            "{dsl}"
        );
        assert!(
            dsl.contains("Flags : 01") || dsl.contains("Flags : 05"),
            "{dsl}"
        );
    }
    for (name, bytes, parsed) in [("IVRS", &ivrs, &i), ("yoga.IVRS", &yoga, &y)] {
        let p = tmp.path().join(format!("{name}.dat"));
        std::fs::write(&p, bytes).unwrap();
        let st = Command::new("iasl")
            .arg("-d")
            .arg(&p)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(st.status.success());
        let dsl = std::fs::read_to_string(tmp.path().join(format!("{name}.dsl"))).unwrap();
        assert!(dsl.contains("Signature : \"IVRS\""), "{dsl}");
        // Debian 12's iasl (20200925) does not decode type 0x40 blocks.
        let ioapics: usize = parsed
            .units
            .iter()
            .filter(|u| u.kind != 0x40)
            .map(|u| u.ioapics())
            .sum();
        assert_eq!(dsl.matches("Variety : 01").count(), ioapics, "{dsl}");
    }
}

#[test]
fn cli_exit_codes_follow_the_verdicts() {
    let code = |name: &str| {
        bin()
            .arg("--root")
            .arg(fixture(name))
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(code("intel-xps13-9370-vtd"), Some(0));
    assert_eq!(code("intel-xps13-9370-no-dmar"), Some(1));
    assert_eq!(code("qemu-pc-2gib-qemu64"), Some(2));
    let missing = bin()
        .args(["--root", "/nonexistent/capture"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
}

#[test]
fn malformed_dump_is_exit_3_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.txt");
    std::fs::write(&p, "CPU:\n   0x00000000 0x00: eax=0x0000000d ebx=0x68747541 ecx=0x444d4163 edx=0x69746e65\n   0x00000001 0x00 eax=0x1\n").unwrap();
    let out = bin()
        .arg("--root")
        .arg(fixture("intel-xps13-9370-vtd"))
        .arg("--cpuid-dump")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn cpuid_dump_overrides_the_capture() {
    // The Intel machine's files with the AMD CPU's dump: the CPU facts follow the dump.
    let out = bin()
        .arg("--root")
        .arg(fixture("intel-xps13-9370-vtd"))
        .arg("--cpuid-dump")
        .arg(fixture("amd-ryzen5-5600g-amdvi/cpuid.txt"))
        .arg("--json")
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["machine"]["cpu"]["vendor"], "AuthenticAMD");
}

#[test]
fn json_follows_the_schema() {
    let out = bin()
        .arg("--root")
        .arg(fixture("qemu-q35-vtd-4gib"))
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["schema"], "bulkhead.hcl/1");
    assert_eq!(j["overall"], "warn");
    assert_eq!(j["exit_code"], 1);
    let ids: Vec<&str> = j["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "cpu-64bit",
            "virtualization",
            "iommu",
            "ram",
            "disk",
            "keyboard"
        ]
    );
    for v in j["verdicts"].as_array().unwrap() {
        for k in [
            "requirement",
            "status",
            "measured",
            "threshold",
            "reason",
            "remedy",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
    }
    assert_eq!(j["machine"]["iommu"]["dmar"]["state"], "present");
    assert_eq!(j["machine"]["iommu"]["ivrs"]["state"], "absent");
    assert!(j["machine"]["memory"]["installed"]["value"].is_u64());
}

#[test]
fn yaml_is_a_qubes_hcl_report() {
    let out = bin()
        .arg("--root")
        .arg(fixture("intel-xps13-9370-vtd"))
        .arg("--yaml")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for k in [
        "layout",
        "type",
        "hvm",
        "iommu",
        "slat",
        "tpm",
        "remap",
        "brand",
        "model",
        "bios",
        "cpu",
        "cpu-short",
        "chipset",
        "chipset-short",
        "gpu",
        "gpu-short",
        "network",
        "memory",
        "scsi",
        "nvme",
        "usb",
        "certified",
        "versions",
    ] {
        assert!(y.get(k).is_some(), "key {k} missing:\n{text}");
    }
    assert_eq!(y["layout"], "hcl");
    assert_eq!(y["type"], "Notebook");
    assert_eq!(y["hvm"], "yes");
    assert_eq!(y["iommu"], "yes");
    assert_eq!(y["slat"], "yes");
    assert_eq!(y["remap"], "yes");
    assert_eq!(y["tpm"], "unknown");
    assert_eq!(y["brand"].as_str().unwrap().trim(), "Dell Inc.");
    assert_eq!(y["model"].as_str().unwrap().trim(), "XPS 13 9370");
    assert_eq!(y["bios"].as_str().unwrap().trim(), "1.21.0");
    assert_eq!(
        y["nvme"].as_str().unwrap().trim(),
        "PM961 NVMe SAMSUNG 512GB"
    );
    assert_eq!(y["memory"].as_str().unwrap().trim(), "15842");
    let amd = bin()
        .arg("--root")
        .arg(fixture("amd-ryzen5-5600g-amdvi"))
        .arg("--yaml")
        .output()
        .unwrap();
    let y: serde_yaml::Value = serde_yaml::from_slice(&amd.stdout).unwrap();
    // "To Be Filled By O.E.M." system strings fall back to the board, as qubes-hcl-report does.
    assert_eq!(y["brand"].as_str().unwrap().trim(), "ASRock");
    assert_eq!(y["type"], "Desktop");
}

#[test]
fn no_identifiers_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let src = fixture("qemu-q35-vtd-4gib");
    copy_tree(&src, &root);
    // Give the DIMM a serial number and check it stays out of the output.
    let raw_path = root.join("sys/firmware/dmi/entries/17-0/raw");
    let mut raw = std::fs::read(&raw_path).unwrap();
    let len = raw[1] as usize;
    let nstrings = raw[len..]
        .split(|b| *b == 0)
        .take_while(|s| !s.is_empty())
        .count();
    raw.truncate(raw.len() - 1);
    raw.extend_from_slice(b"SN-SECRET-42\0\0");
    raw[0x18] = (nstrings + 1) as u8;
    std::fs::write(&raw_path, &raw).unwrap();
    let plain = bin()
        .arg("--root")
        .arg(&root)
        .arg("--json")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("SN-SECRET-42"));
    let with = bin()
        .arg("--root")
        .arg(&root)
        .arg("--json")
        .arg("--include-identifiers")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&with.stdout).contains("SN-SECRET-42"));
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

#[test]
fn capture_reproduces_the_live_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let out = bin().arg("capture").arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("cpuid.txt").is_file());
    let live = Probe::default().report().unwrap();
    let replay = Probe::new(&dir).report().unwrap();
    assert_eq!(live.verdicts, replay.verdicts);
    assert_eq!(live.machine.cpu, replay.machine.cpu);
    assert_eq!(live.machine.disks, replay.machine.disks);
    assert_eq!(live.machine.pci, replay.machine.pci);
    assert_eq!(
        live.machine.memory.mem_total,
        replay.machine.memory.mem_total
    );
    // The dump is in the format the `cpuid` tool reads back.
    let dec = Command::new("cpuid")
        .arg("-f")
        .arg(dir.join("cpuid.txt"))
        .output()
        .expect("cpuid is installed");
    assert!(dec.status.success());
    assert!(String::from_utf8_lossy(&dec.stdout).contains("vendor_id"));
}

#[test]
fn table_snapshot() {
    let out = bin()
        .arg("--root")
        .arg(fixture("intel-xps13-9370-no-dmar"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "no colour when not on a terminal");
    insta::assert_snapshot!(text);
}

#[test]
fn yaml_snapshot() {
    let out = bin()
        .arg("--root")
        .arg(fixture("qemu-q35-vtd-4gib"))
        .arg("--yaml")
        .output()
        .unwrap();
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

#[test]
fn json_snapshot() {
    let out = bin()
        .arg("--root")
        .arg(fixture("intel-xps13-9370-vtd"))
        .arg("--json")
        .output()
        .unwrap();
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

/// The live dump covers the same leaf numbers as Debian's `cpuid -r -1`, with
/// the same vendor and brand values.
#[cfg(target_arch = "x86_64")]
#[test]
fn live_dump_matches_the_cpuid_tool() {
    let out = Command::new("cpuid")
        .args(["-r", "-1"])
        .output()
        .expect("cpuid is installed");
    assert!(out.status.success());
    let theirs = hcl_check::CpuidDump::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let ours = hcl_check::CpuidDump::record_live();
    // Leaf numbers must agree; which subleaves each tool walks may differ
    // on CPUs with leaves this machine lacks.
    let keys = |d: &hcl_check::CpuidDump| {
        let mut l: Vec<u32> = d.leaves.keys().map(|(leaf, _)| *leaf).collect();
        l.dedup();
        l
    };
    assert_eq!(keys(&ours), keys(&theirs));
    for k in [(0, 0), (0x8000_0002, 0), (0x8000_0003, 0), (0x8000_0004, 0)] {
        assert_eq!(ours.leaves.get(&k), theirs.leaves.get(&k), "leaf {k:x?}");
    }
}

/// Colour on a terminal (util-linux `script` gives the binary a pty), not with NO_COLOR.
#[test]
fn colour_only_on_a_terminal() {
    let cmd = format!(
        "{} --root {}",
        env!("CARGO_BIN_EXE_hcl-check"),
        fixture("amd-ryzen5-5600g-amdvi").display()
    );
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux)");
    assert!(String::from_utf8_lossy(&tty.stdout).contains("\x1b[33mWARN"));
    let no = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&no.stdout);
    assert!(text.contains("WARN") && !text.contains('\x1b'), "{text}");
}
