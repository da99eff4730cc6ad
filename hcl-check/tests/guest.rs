//! hcl-check inside QEMU guests: the verdicts must follow the machine.
//! Three boots vary the IOMMU (intel-iommu, amd-iommu, none), the memory
//! (2, 4 and 6 GiB), the disk (16 and 40 GiB) and the CPU (qemu64 without
//! NPT, max with AMD-V and NPT under TCG).

use guest_harness::{Bus, Disk, Firmware, Initramfs, Kernel, Vm, sparse_disk};
use serde_json::Value;

struct Boot {
    machine: &'static str,
    devices: &'static [&'static str],
    firmware: Firmware,
    cmdline: &'static str,
    cpu: &'static str,
    mem_mib: u32,
    disk_bytes: u64,
}

fn run(b: &Boot) -> (Value, i32) {
    let k = Kernel::pinned().unwrap();
    // USB keyboards enumerate after boot: wait up to 15 s for one when asked.
    let script = "if [ -d /sys/firmware/efi/efivars ] && [ -z \"$(ls /sys/firmware/efi/efivars)\" ]; then mount -t efivarfs efivarfs /sys/firmware/efi/efivars; fi\nif [ -n \"$(ls /sys/bus/usb/devices 2>/dev/null)\" ]; then for i in $(seq 15); do grep -q 'Bus=0003' /proc/bus/input/devices && break; sleep 1; done; fi\nhcl-check --json > /r.json; echo \"BH-STATUS=$?\"\necho BH-JSON-BEGIN\ncat /r.json\necho BH-JSON-END\n";
    let initrd = Initramfs::new(&k)
        .modules(&["usbhid", "hid-generic", "e1000", "efivarfs"])
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
        .firmware(b.firmware)
        .disk(Disk::new(&disk).bus(Bus::Virtio));
    for d in b.devices {
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
        devices: &["intel-iommu,intremap=on", "e1000"],
        firmware: Firmware::Bios,
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
    assert_eq!(good["machine"]["firmware"]["boot_mode"], "bios");
    let nics: Vec<&Value> = good["machine"]["pci"]["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"].as_u64().unwrap() >> 16 == 0x02)
        .collect();
    assert_eq!(
        nics.len(),
        1,
        "the e1000 is what sys-net would receive: {good:#}"
    );
    assert_eq!(nics[0]["vendor_id"], 0x8086);
    assert!(good["notes"].as_array().unwrap().iter().any(|n| {
        n.as_str()
            .unwrap()
            .starts_with("sys-net would receive: 0000:")
    }));
    assert_eq!(code, 1);

    // Small, no IOMMU, qemu64 (AMD-V without NPT).
    let (bad, code) = run(&Boot {
        machine: "pc",
        devices: &["qemu-xhci", "usb-kbd"],
        firmware: Firmware::Bios,
        cmdline: "i8042.nokbd",
        cpu: "qemu64",
        mem_mib: 2048,
        disk_bytes: 16 << 30,
    });
    assert_eq!(status(&bad, "iommu"), "warn", "{bad:#}");
    assert_eq!(status(&bad, "virtualization"), "fail", "{bad:#}");
    assert_eq!(status(&bad, "ram"), "fail");
    assert_eq!(status(&bad, "disk"), "fail");
    assert!(measured(&bad, "disk").contains("16.0 GiB (17.2 GB)"));
    assert_eq!(
        status(&bad, "keyboard"),
        "warn",
        "only the USB keyboard (i8042.nokbd): {bad:#}"
    );
    assert!(
        bad["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("sys-usb would receive: 0000:")),
        "{bad:#}"
    );
    assert_eq!(code, 2);

    // AMD IOMMU and 6 GiB: RAM passes, IOMMU found through IVRS.
    let (amd, _) = run(&Boot {
        machine: "q35,kernel-irqchip=split",
        devices: &["amd-iommu,intremap=on"],
        firmware: Firmware::Uefi,
        cmdline: "amd_iommu=on",
        cpu: "max",
        mem_mib: 6144,
        disk_bytes: 40 << 30,
    });
    assert_eq!(status(&amd, "iommu"), "pass", "{amd:#}");
    assert!(measured(&amd, "iommu").starts_with("AMD-Vi"), "{amd:#}");
    assert_eq!(status(&amd, "ram"), "pass", "{amd:#}");
    assert_eq!(amd["machine"]["firmware"]["boot_mode"], "uefi");
    assert_eq!(
        amd["machine"]["firmware"]["secure_boot"]["value"], false,
        "OVMF without enrolled keys: {amd:#}"
    );
}
