//! What the built ISO carries and how it boots: the payload and template
//! trees checked against iso-builder's lists, and the medium booted under
//! QEMU TCG to the installer's first screen (SeaBIOS/OVMF × CD/USB, and as
//! an NVMe disk), its "Check hardware only" and "Verify this medium"
//! entries, and the template's root booted with its own kernel.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use guest_harness::{Bus, Disk, Firmware, Initramfs, Kernel, Vm};
use iso_builder::installed;
use iso_builder::lock::Lock;

use crate::{output, run};

/// What the installer's welcome screen shows first.
const WELCOME: &str = "Welcome to Bulkhead";

/// Copies `inner` (a path on the ISO) to `dest` with xorriso.
pub(crate) fn extract(iso: &Path, inner: &str, dest: &Path) -> Result<()> {
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", inner])
        .arg(dest)
        .stderr(std::process::Stdio::null()))
    .with_context(|| format!("extracting {inner} from {}", iso.display()))
}

/// Paths in a squashfs image, relative to its root.
fn listing(img: &Path) -> Result<Vec<String>> {
    Ok(
        output(Command::new("unsquashfs").args(["-l", "-d", "R"]).arg(img))?
            .lines()
            .filter_map(|l| l.strip_prefix("R/"))
            .map(str::to_string)
            .collect(),
    )
}

/// Checks the payload and the template on the ISO; prints their sizes.
pub fn contents(iso: &Path) -> Result<()> {
    let work = tempfile::tempdir()?;
    for (tree, required, forbidden) in [
        (
            "payload",
            installed::PAYLOAD_REQUIRED,
            installed::PAYLOAD_FORBIDDEN,
        ),
        ("template", installed::TEMPLATE_REQUIRED, &[][..]),
    ] {
        let img = work.path().join(format!("{tree}.squashfs"));
        extract(iso, &format!("/live/{tree}.squashfs"), &img)?;
        let list = listing(&img)?;
        installed::check_listing(&list, required, forbidden)
            .map_err(|e| anyhow::anyhow!("{tree} tree on {}: {e}", iso.display()))?;
        eprintln!(
            "  {tree:<9} {:>4} MiB compressed, {} paths: every required path present",
            std::fs::metadata(&img)?.len() >> 20,
            list.len()
        );
    }
    Ok(())
}

pub(crate) struct Outcome {
    pub how: String,
    pub secs: f64,
    pub ok: bool,
    pub serial: String,
}

/// Where a guest's serial console is written as it runs
/// (`target/qemu-logs/`), to follow it with `tail -f`.
fn serial_log(how: &str) -> Result<std::path::PathBuf> {
    let dir = guest_harness::workspace_root().join("target/qemu-logs");
    std::fs::create_dir_all(&dir)?;
    let name: String = how
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Ok(dir.join(format!("{name}.log")))
}

pub(crate) fn boot(how: &str, vm: Vm) -> Result<Outcome> {
    let t = Instant::now();
    let log = serial_log(how)?;
    let out = vm.serial_log(&log).run()?;
    let o = Outcome {
        how: how.to_string(),
        secs: t.elapsed().as_secs_f64(),
        ok: out.matched,
        serial: out.serial,
    };
    if o.ok {
        eprintln!("  {:<34} ok in {:>5.1} s", o.how, o.secs);
    } else {
        eprintln!("  {:<34} FAILED after {:.1} s; console:", o.how, o.secs);
        let tail: Vec<&str> = o.serial.lines().rev().take(40).collect();
        for l in tail.into_iter().rev() {
            eprintln!("    | {l}");
        }
    }
    Ok(o)
}

/// The kernel command line of the GRUB menu entry `title` on the ISO.
pub(crate) fn entry_args(iso: &Path, work: &Path, title: &str) -> Result<String> {
    let cfg = work.join("grub.cfg");
    extract(iso, "/boot/grub/grub.cfg", &cfg)?;
    let text = std::fs::read_to_string(&cfg)?;
    let start = text
        .find(&format!("menuentry '{title}'"))
        .with_context(|| format!("the ISO's menu has no entry {title:?}"))?;
    let line = text[start..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("linux /boot/vmlinuz"))
        .with_context(|| format!("entry {title:?} boots no kernel"))?;
    Ok(line.trim().to_string())
}

/// Boots the medium every way; fails naming every way that did not reach
/// its marker.
pub fn boot_test(iso: &Path, root: &Path) -> Result<()> {
    if !iso.is_file() {
        bail!(
            "{} does not exist: build it with `cargo xtask iso`",
            iso.display()
        );
    }
    let work = tempfile::tempdir()?;
    let mut results = Vec::new();
    let medium = |vm: Vm, how: &str| -> Vm {
        match how {
            "CD" => vm.cdrom(iso),
            "USB" => vm.disk(Disk::new(iso).bus(Bus::Usb).readonly(true)),
            _ => vm.disk(Disk::new(iso).bus(Bus::Nvme).readonly(true)),
        }
    };
    let ways = [
        (Firmware::Bios, "CD"),
        (Firmware::Bios, "USB"),
        (Firmware::Uefi, "CD"),
        (Firmware::Uefi, "USB"),
        (Firmware::Uefi, "NVMe"),
    ];
    for (fw, how) in ways {
        let vm = Vm::new()
            .memory_mib(2048)
            .firmware(fw)
            .wait_for(WELCOME)
            .timeout(Duration::from_secs(300));
        let label = format!(
            "installer screen, {} {how}",
            if fw == Firmware::Bios { "BIOS" } else { "UEFI" }
        );
        results.push(boot(&label, medium(vm, how))?);
    }

    // The other menu entries, booted with exactly their command lines.
    let kernel = work.path().join("vmlinuz");
    let initrd = work.path().join("initrd.img");
    extract(iso, "/boot/vmlinuz", &kernel)?;
    extract(iso, "/boot/initrd.img", &initrd)?;
    for (title, marker) in [
        ("Check hardware only", "hardware verdict:"),
        ("Verify this medium", "medium verdict: INTACT"),
    ] {
        let args = entry_args(iso, work.path(), title)?;
        let vm = Vm::new()
            .memory_mib(2048)
            .kernel_files(&kernel, &initrd, &args)
            .cdrom(iso)
            .wait_for(marker)
            .timeout(Duration::from_secs(300));
        let o = boot(&format!("menu entry {title:?}"), vm)?;
        if let Some(l) = o.serial.lines().find(|l| l.contains(marker)) {
            eprintln!("      {}", l.trim());
        }
        results.push(o);
    }

    results.push(check_on_writable_medium(
        iso,
        work.path(),
        &kernel,
        &initrd,
    )?);
    results.push(template_boot(iso, root, work.path())?);

    let failed: Vec<&str> = results
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.how.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("the image did not boot: {}", failed.join(", "));
    }
    Ok(())
}

/// "Check hardware only" from a writable medium: the live system's files
/// copied onto a FAT disk (as a user copies an ISO onto a FAT stick); the
/// reports must land on it, read back with mtools.
fn check_on_writable_medium(
    iso: &Path,
    work: &Path,
    kernel: &Path,
    initrd: &Path,
) -> Result<Outcome> {
    let fat = work.join("fat-medium.img");
    guest_harness::sparse_disk(&fat, 256 << 20)?;
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-n", "BULKHEAD"])
        .arg(&fat))?;
    let files = work.join("fat-files");
    std::fs::create_dir_all(&files)?;
    let mcopy = |host: &Path, inner: &str| {
        run(Command::new("mcopy")
            .args(["-s", "-i"])
            .arg(&fat)
            .arg(host)
            .arg(format!("::{inner}")))
    };
    run(Command::new("mmd")
        .arg("-i")
        .arg(&fat)
        .args(["::bulkhead", "::live"]))?;
    for inner in ["bulkhead/medium.id", "live/live.squashfs"] {
        let host = files.join(inner.replace('/', "_"));
        extract(iso, &format!("/{inner}"), &host)?;
        mcopy(&host, &format!("/{inner}"))?;
    }
    let bin = files.join("bin");
    extract(iso, "/bulkhead/bin", &bin)?;
    mcopy(&bin, "/bulkhead/bin")?;
    let vm = Vm::new()
        .memory_mib(2048)
        .kernel_files(
            kernel,
            initrd,
            &entry_args(iso, work, "Check hardware only")?,
        )
        .disk(Disk::new(&fat).bus(Bus::Virtio))
        .wait_for("bulkhead: check finished")
        .timeout(Duration::from_secs(300));
    let mut o = boot("hardware check, writable FAT medium", vm)?;
    let read = |inner: &str| -> String {
        Command::new("mtype")
            .arg("-i")
            .arg(&fat)
            .arg(format!("::hcl-reports/{inner}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let json = read("hcl-report.json");
    let yaml = read("hcl-report.yaml");
    if !json.contains("bulkhead.hcl/1")
        || yaml.trim().is_empty()
        || !o.serial.contains("reports saved on the boot medium")
    {
        eprintln!(
            "      the reports are not on the FAT medium (json {} bytes, yaml {} bytes)",
            json.len(),
            yaml.len()
        );
        o.ok = false;
    } else {
        eprintln!(
            "      reports read back from the FAT medium: hcl-report.json ({} bytes), hcl-report.yaml ({} bytes)",
            json.len(),
            yaml.len()
        );
    }
    Ok(o)
}

/// Boots the template's root with the template's own kernel: a test
/// initramfs mounts the squashfs under a tmpfs overlay and hands over to
/// its systemd, which must reach the multi-user target.
fn template_boot(iso: &Path, root: &Path, work: &Path) -> Result<Outcome> {
    let img = work.join("template.squashfs");
    extract(iso, "/live/template.squashfs", &img)?;
    let troot = work.join("template");
    run(Command::new("unsquashfs")
        .args(["-q", "-n", "-d"])
        .arg(&troot)
        .arg(&img)
        .args(["boot", "usr/lib/modules"]))?;
    let lock = Lock::read(&root.join("inputs.lock"))?;
    let pin = lock
        .trees
        .get("template")
        .and_then(|pins| {
            pins.iter().find(|p| {
                p.package
                    .strip_prefix("linux-image-")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
            })
        })
        .cloned()
        .context("inputs.lock's template tree has no linux-image-VERSION package")?;
    let release = pin.package.trim_start_matches("linux-image-").to_string();
    let kernel = Kernel {
        vmlinuz: troot.join(format!("boot/vmlinuz-{release}")),
        root: troot.join("usr"),
        release,
        pin,
    };
    if !kernel.vmlinuz.is_file() {
        bail!("the template has no {}", kernel.vmlinuz.display());
    }
    let initrd_path = work.join("template-initrd.cpio");
    Initramfs::new(&kernel)
        .script(
            "wait-dev /dev/vda\n\
             mkdir -p /lower /rw /newroot\n\
             mount -r -t squashfs /dev/vda /lower\n\
             mount -t tmpfs tmpfs /rw\n\
             mkdir -p /rw/u /rw/w\n\
             mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/u,workdir=/rw/w /newroot\n\
             umount /proc /sys /run /tmp 2>/dev/null\n\
             exec switch_root /newroot /sbin/init\n",
        )
        .script_as_init()
        .write(&initrd_path)?;
    let vm = Vm::new()
        .memory_mib(1024)
        .kernel_files(
            &kernel.vmlinuz,
            &initrd_path,
            "console=ttyS0,115200 fstab=0 systemd.show_status=1",
        )
        .disk(Disk::new(&img).bus(Bus::Virtio).readonly(true))
        .wait_for(" login: ")
        .timeout(Duration::from_secs(300));
    let mut o = boot("template root (its own kernel)", vm)?;
    // Every unit the template starts, with those it masks, comes up.
    let failed: Vec<&str> = o
        .serial
        .lines()
        .filter(|l| l.contains("FAILED") || l.contains("Dependency failed"))
        .collect();
    if o.ok && !failed.is_empty() {
        eprintln!("  template root: units failed:");
        for l in &failed {
            eprintln!("    | {l}");
        }
        o.ok = false;
    }
    Ok(o)
}
