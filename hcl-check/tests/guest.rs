//! hcl-check inside QEMU guests: the verdicts must follow the machine.
//! Three boots vary the IOMMU (intel-iommu, amd-iommu, none), the memory
//! (2, 4 and 6 GiB), the disk (16 and 40 GiB) and the CPU (qemu64 without
//! NPT, max with AMD-V and NPT under TCG).

use guest_harness::{Bus, Disk, Initramfs, Kernel, Vm, sparse_disk};
use serde_json::Value;

struct Boot {
    machine: &'static str,
    device: Option<&'static str>,
    cmdline: &'static str,
    cpu: &'static str,
    mem_mib: u32,
    disk_bytes: u64,
}

fn run(b: &Boot) -> (Value, i32) {
    let k = Kernel::pinned().unwrap();
    let script = "hcl-check --json > /r.json; echo \"BH-STATUS=$?\"\necho BH-JSON-BEGIN\ncat /r.json\necho BH-JSON-END\n";
    let initrd = Initramfs::new(&k)
        .file("/bin/hcl-check", env!("CARGO_BIN_EXE_hcl-check"))
        .script(script);
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    sparse_disk(&disk, b.disk_bytes).unwrap();
    let mut vm = Vm::new()
        .kernel(&k, &initrd, b.cmdline)
        .machine(b.machine)
        .cpu(b.cpu)
        .memory_mib(b.mem_mib)
        .disk(Disk::new(&disk).bus(Bus::Virtio));
    if let Some(d) = b.device {
        vm = vm.device(d);
    }
    let out = vm.run().unwrap();
    out.assert_success();
    let s = out.script_output();
    let status: i32 = s
        .split("BH-STATUS=")
        .nth(1)
        .and_then(|r| r.lines().next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no status in {s}"));
    let a = s.find("BH-JSON-BEGIN").unwrap() + "BH-JSON-BEGIN".len();
    let e = s.find("BH-JSON-END").unwrap();
    let json: Value =
        serde_json::from_str(s[a..e].trim()).unwrap_or_else(|err| panic!("{err}: {s}"));
    (json, status)
}

fn status<'a>(j: &'a Value, id: &str) -> &'a str {
    j["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .and_then(|v| v["status"].as_str())
        .unwrap()
}

fn measured<'a>(j: &'a Value, id: &str) -> &'a str {
    j["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .unwrap()["measured"]
        .as_str()
        .unwrap()
}

#[test]
#[ignore = "boots a QEMU guest; run by cargo xtask test"]
fn verdicts_follow_the_machine() {
    // Big enough, Intel IOMMU with interrupt remapping, CPU with AMD-V+NPT.
    let (good, code) = run(&Boot {
        machine: "q35,kernel-irqchip=split",
        device: Some("intel-iommu,intremap=on"),
        cmdline: "intel_iommu=on",
        cpu: "max",
        mem_mib: 4096,
        disk_bytes: 40 << 30,
    });
    assert_eq!(status(&good, "iommu"), "pass", "{good:#}");
    assert!(
        measured(&good, "iommu").starts_with("Intel VT-d"),
        "{good:#}"
    );
    assert_eq!(
        good["machine"]["iommu"]["kernel_units"]["value"][0], "dmar0",
        "intel_iommu=on enabled it"
    );
    assert_eq!(status(&good, "virtualization"), "pass", "{good:#}");
    assert_eq!(status(&good, "disk"), "pass");
    assert_eq!(
        status(&good, "ram"),
        "warn",
        "4 GiB: the minimum, under the 6 GiB warning line"
    );
    assert_eq!(good["machine"]["vm"]["inside_vm"], true);
    assert_eq!(code, 1);

    // Small, no IOMMU, qemu64 (AMD-V without NPT).
    let (bad, code) = run(&Boot {
        machine: "pc",
        device: None,
        cmdline: "",
        cpu: "qemu64",
        mem_mib: 2048,
        disk_bytes: 16 << 30,
    });
    assert_eq!(status(&bad, "iommu"), "warn", "{bad:#}");
    assert_eq!(status(&bad, "virtualization"), "fail", "{bad:#}");
    assert_eq!(status(&bad, "ram"), "fail");
    assert_eq!(status(&bad, "disk"), "fail");
    assert!(measured(&bad, "disk").contains("16.0 GiB (17.2 GB)"));
    assert_eq!(code, 2);

    // AMD IOMMU and 6 GiB: RAM passes, IOMMU found through IVRS.
    let (amd, _) = run(&Boot {
        machine: "q35,kernel-irqchip=split",
        device: Some("amd-iommu,intremap=on"),
        cmdline: "amd_iommu=on",
        cpu: "max",
        mem_mib: 6144,
        disk_bytes: 40 << 30,
    });
    assert_eq!(status(&amd, "iommu"), "pass", "{amd:#}");
    assert!(measured(&amd, "iommu").starts_with("AMD-Vi"), "{amd:#}");
    assert_eq!(status(&amd, "ram"), "pass", "{amd:#}");
}
