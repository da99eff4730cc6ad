//! Records hcl-check captures inside QEMU guests (TCG) for the test
//! fixtures: `cargo run -p hcl-check --example record_guest_fixtures -- OUTDIR`.
//! Each guest runs `hcl-check capture`, and the capture comes back over the
//! serial console as a base64 tar, unpacked into OUTDIR/<name>.

use guest_harness::{Bus, Disk, Initramfs, Kernel, Vm, sparse_disk};
use std::path::PathBuf;
use std::process::Command;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: record_guest_fixtures OUTDIR"))?,
    );
    // target/<profile>/examples/this -> target/<profile>/hcl-check (build it first).
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("hcl-check"))
        .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
    anyhow::ensure!(
        bin.is_file(),
        "{} missing: cargo build -p hcl-check first",
        bin.display()
    );
    let k = Kernel::pinned()?;
    let tmp = tempfile::tempdir()?;
    let script = "set -e\nmodprobe msr || true\nhcl-check capture /cap >/dev/null\necho BH-CAP-BEGIN\ntar -C /cap -cf - . | base64\necho BH-CAP-END\n";
    let initrd = Initramfs::new(&k)
        .modules(&["msr"])
        .file("/bin/hcl-check", &bin)
        .script(script);
    type Setup = (
        &'static str,
        &'static str,
        u32,
        &'static [&'static str],
        &'static str,
        u64,
    );
    let only = std::env::args().nth(2);
    let machines: [Setup; 4] = [
        (
            "qemu-q35-intel-iommu",
            "max",
            4096,
            &["intel-iommu,intremap=on"],
            "intel_iommu=on",
            40 << 30,
        ),
        (
            "qemu-q35-amd-iommu",
            "max",
            4096,
            &["amd-iommu,intremap=on"],
            "amd_iommu=on",
            40 << 30,
        ),
        ("qemu-pc-2g-qemu64", "qemu64", 2048, &[], "", 16 << 30),
        (
            "qemu-q35-32gb-disk",
            "max",
            8192,
            &["intel-iommu,intremap=on"],
            "intel_iommu=on",
            32_000_000_000,
        ),
    ];
    for (name, cpu, mem, devices, cmdline, disk_bytes) in machines {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let disk = tmp.path().join(format!("{name}.img"));
        sparse_disk(&disk, disk_bytes)?;
        let mut vm = Vm::new()
            .kernel(&k, &initrd, cmdline)
            .cpu(cpu)
            .memory_mib(mem)
            .machine(if devices.is_empty() {
                "pc"
            } else {
                "q35,kernel-irqchip=split"
            })
            .disk(Disk::new(&disk).bus(Bus::Virtio));
        for d in devices {
            vm = vm.device(d);
        }
        let r = vm.run()?;
        let s = &r.serial;
        let (Some(a), Some(b)) = (s.find("BH-CAP-BEGIN"), s.find("BH-CAP-END")) else {
            anyhow::bail!("{name}: no capture in the console output:\n{s}");
        };
        let b64: String = s[a + 12..b]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('['))
            .collect::<Vec<_>>()
            .join("\n");
        let dir = out.join(name);
        std::fs::create_dir_all(&dir)?;
        let tarball = tmp.path().join(format!("{name}.tar"));
        let decoded = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().map(|mut i| i.write_all(b64.as_bytes()));
                c.wait_with_output()
            })?;
        std::fs::write(&tarball, decoded.stdout)?;
        let st = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-xf")
            .arg(&tarball)
            .status()?;
        anyhow::ensure!(st.success(), "{name}: tar failed");
        println!("{name}: captured into {}", dir.display());
    }
    Ok(())
}
