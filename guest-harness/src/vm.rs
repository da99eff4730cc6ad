//! Runs one QEMU guest under TCG and collects its serial console.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::initramfs::Initramfs;
use crate::kernel::Kernel;
use crate::{HarnessError, io_err};

const EXIT_MARK: &str = "BULKHEAD-GUEST-EXIT=";
const START_MARK: &str = "BULKHEAD-GUEST-START";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Where a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Virtio,
    Nvme,
    Ahci,
    Usb,
    Ide,
}

/// A raw disk image attached to the guest.
#[derive(Debug, Clone)]
pub struct Disk {
    path: PathBuf,
    bus: Bus,
    serial: Option<String>,
    readonly: bool,
}

impl Disk {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            bus: Bus::Virtio,
            serial: None,
            readonly: false,
        }
    }
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = bus;
        self
    }
    pub fn serial(mut self, serial: &str) -> Self {
        self.serial = Some(serial.to_string());
        self
    }
    pub fn readonly(mut self, readonly: bool) -> Self {
        self.readonly = readonly;
        self
    }
}

/// Guest firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// SeaBIOS.
    #[default]
    Bios,
    /// OVMF, with a private copy of the variable store.
    Uefi,
}

/// What a guest run produced.
#[derive(Debug, Clone)]
pub struct GuestResult {
    /// The test script's exit status; `None` when the guest ended (or was
    /// stopped) without reporting one.
    pub exit_code: Option<i32>,
    /// Everything the serial console printed.
    pub serial: String,
    /// Whether the `wait_for` marker appeared.
    pub matched: bool,
    /// Whether the run was cut off by the timeout.
    pub timed_out: bool,
}

impl GuestResult {
    /// What the script printed: the console between the start and exit
    /// markers (kernel messages interleaved there stay in).
    pub fn script_output(&self) -> &str {
        let s = &self.serial;
        let start = s
            .find(START_MARK)
            .map(|i| i + START_MARK.len())
            .unwrap_or(0);
        let end = s[start..]
            .find(EXIT_MARK)
            .map(|i| start + i)
            .unwrap_or(s.len());
        s[start..end].trim_matches(['\r', '\n'])
    }

    /// Panics with the console output unless the script exited 0; for tests.
    pub fn assert_success(&self) {
        assert_eq!(
            self.exit_code,
            Some(0),
            "guest script failed (timed out: {}); console:\n{}",
            self.timed_out,
            self.serial
        );
    }
}

#[derive(Debug, Clone)]
struct KernelBoot {
    vmlinuz: PathBuf,
    initrd: Initramfs,
    cmdline: String,
}

/// A guest to boot: builder, then [`Vm::run`].
#[derive(Debug, Clone)]
pub struct Vm {
    kernel: Option<KernelBoot>,
    memory_mib: u32,
    cpu: String,
    machine: String,
    smp: u32,
    firmware: Firmware,
    amd_iommu: bool,
    vga: bool,
    devices: Vec<String>,
    disks: Vec<Disk>,
    cdroms: Vec<PathBuf>,
    args: Vec<String>,
    wait_for: Option<String>,
    inputs: Vec<(String, Vec<u8>)>,
    serial_log: Option<PathBuf>,
    screen: Option<(u16, u16)>,
    timeout: Duration,
}

impl Default for Vm {
    fn default() -> Self {
        Self::new()
    }
}

impl Vm {
    pub fn new() -> Self {
        Self {
            kernel: None,
            memory_mib: 1024,
            cpu: "max".into(),
            machine: "q35".into(),
            smp: 1,
            firmware: Firmware::Bios,
            amd_iommu: false,
            vga: true,
            devices: Vec::new(),
            disks: Vec::new(),
            cdroms: Vec::new(),
            args: Vec::new(),
            wait_for: None,
            inputs: Vec::new(),
            serial_log: None,
            screen: None,
            timeout: Duration::from_secs(300),
        }
    }

    /// Boots `kernel` directly with `initrd`; the guest's console is ttyS0.
    pub fn kernel(mut self, kernel: &Kernel, initrd: &Initramfs, cmdline: &str) -> Self {
        self.kernel = Some(KernelBoot {
            vmlinuz: kernel.vmlinuz.clone(),
            initrd: initrd.clone(),
            cmdline: cmdline.to_string(),
        });
        self
    }
    /// Boots a kernel and an initramfs given as files (e.g. taken from an
    /// ISO) directly, with `cmdline` as the kernel's command line.
    pub fn kernel_files(self, vmlinuz: &Path, initrd: &Path, cmdline: &str) -> Self {
        self.arg("-kernel")
            .arg(&vmlinuz.display().to_string())
            .arg("-initrd")
            .arg(&initrd.display().to_string())
            .arg("-append")
            .arg(cmdline)
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }
    pub fn cpu(mut self, cpu: &str) -> Self {
        self.cpu = cpu.to_string();
        self
    }
    pub fn machine(mut self, machine: &str) -> Self {
        self.machine = machine.to_string();
        self
    }
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n;
        self
    }
    pub fn firmware(mut self, fw: Firmware) -> Self {
        self.firmware = fw;
        self
    }
    /// Gives the guest an AMD IOMMU (what Xen needs for a PVH dom0 under
    /// TCG). Virtio disks then go through it too (`iommu_platform=on`):
    /// without that, QEMU's virtio bypasses the IOMMU and a dom0 whose
    /// guest-physical addresses are not machine addresses never sees its
    /// disk requests complete.
    pub fn amd_iommu(mut self) -> Self {
        self.amd_iommu = true;
        self
    }
    /// No display adapter: a headless server. Under TCG a framebuffer
    /// console draws every kernel message pixel by pixel.
    pub fn no_vga(mut self) -> Self {
        self.vga = false;
        self
    }
    /// Adds `-device SPEC`, e.g. `intel-iommu,intremap=on`.
    pub fn device(mut self, spec: &str) -> Self {
        self.devices.push(spec.to_string());
        self
    }
    pub fn disk(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
        self
    }
    pub fn cdrom(mut self, iso: impl Into<PathBuf>) -> Self {
        self.cdroms.push(iso.into());
        self
    }
    /// Any further QEMU argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }
    /// Stop as soon as the console shows `marker`.
    pub fn wait_for(mut self, marker: &str) -> Self {
        self.wait_for = Some(marker.to_string());
        self
    }
    /// Types `input` on the serial console once `marker` has appeared
    /// (after the previous input's marker): keystrokes for a TUI, a
    /// passphrase at a prompt. Inputs are sent in the order given.
    pub fn send_when(mut self, marker: &str, input: impl Into<Vec<u8>>) -> Self {
        self.inputs.push((marker.to_string(), input.into()));
        self
    }

    /// Also writes the serial console to `path` as it arrives, for
    /// following a long guest with `tail -f`.
    pub fn serial_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.serial_log = Some(path.into());
        self
    }

    /// Also matches markers against the screen a terminal of `rows` ×
    /// `cols` would show for the serial output (a vt100 emulator), so a full
    /// screen program's text is found however it was drawn.
    pub fn screen(mut self, rows: u16, cols: u16) -> Self {
        self.screen = Some((rows, cols));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn command(&self, work: &Path) -> Result<Command, HarnessError> {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-accel", "tcg", "-nodefaults", "-no-user-config"]);
        c.args(["-display", "none", "-monitor", "none", "-serial", "stdio"]);
        c.arg("-no-reboot");
        if self.vga {
            c.args(["-device", "VGA"]);
        }
        c.arg("-machine").arg(&self.machine);
        c.arg("-cpu").arg(&self.cpu);
        c.arg("-m").arg(self.memory_mib.to_string());
        c.arg("-smp").arg(self.smp.to_string());
        if self.firmware == Firmware::Uefi {
            for p in [OVMF_CODE, OVMF_VARS] {
                if !Path::new(p).is_file() {
                    return Err(HarnessError::Setup(format!(
                        "{p} is missing: apt-get install ovmf"
                    )));
                }
            }
            let vars = work.join("OVMF_VARS.fd");
            std::fs::copy(OVMF_VARS, &vars).map_err(io_err("copying", OVMF_VARS))?;
            c.arg("-drive").arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ));
            c.arg("-drive").arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
        }
        if let Some(k) = &self.kernel {
            let initrd = work.join("initrd.cpio");
            k.initrd.write(&initrd)?;
            c.arg("-kernel").arg(&k.vmlinuz);
            c.arg("-initrd").arg(&initrd);
            c.arg("-append").arg(format!(
                "console=ttyS0,115200 panic=-1 loglevel=4 {}",
                k.cmdline
            ));
        }
        if self.amd_iommu {
            c.args(["-device", "amd-iommu"]);
        }
        let virtio_dma = if self.amd_iommu {
            ",iommu_platform=on,disable-legacy=on"
        } else {
            ""
        };
        let mut usb = false;
        for (i, d) in self.disks.iter().enumerate() {
            let mut drive = format!("if=none,id=disk{i},format=raw,file={}", d.path.display());
            if d.readonly {
                drive.push_str(",readonly=on");
            }
            c.arg("-drive").arg(drive);
            let serial = d
                .serial
                .as_ref()
                .map(|s| format!(",serial={s}"))
                .unwrap_or_default();
            let dev = match d.bus {
                Bus::Virtio => format!("virtio-blk-pci,drive=disk{i}{serial}{virtio_dma}"),
                Bus::Nvme => format!(
                    "nvme,drive=disk{i},serial={}",
                    d.serial.clone().unwrap_or_else(|| format!("BHNVME{i}"))
                ),
                Bus::Ahci => {
                    c.arg("-device").arg(format!("ahci,id=ahci{i}"));
                    format!("ide-hd,drive=disk{i},bus=ahci{i}.0{serial}")
                }
                Bus::Ide => format!("ide-hd,drive=disk{i}{serial}"),
                Bus::Usb => {
                    if !usb {
                        c.args(["-device", "qemu-xhci,id=xhci"]);
                        usb = true;
                    }
                    format!("usb-storage,bus=xhci.0,drive=disk{i},removable=on{serial}")
                }
            };
            c.arg("-device").arg(dev);
        }
        for (i, iso) in self.cdroms.iter().enumerate() {
            c.arg("-drive").arg(format!(
                "if=none,id=cd{i},format=raw,media=cdrom,readonly=on,file={}",
                iso.display()
            ));
            c.arg("-device").arg(format!("ide-cd,drive=cd{i}"));
        }
        for d in &self.devices {
            c.arg("-device").arg(d);
        }
        c.args(&self.args);
        Ok(c)
    }

    /// The QEMU command line this VM would run, for logs.
    pub fn describe(&self) -> Result<String, HarnessError> {
        let work = tempfile::tempdir().map_err(io_err("creating temp dir", "/tmp"))?;
        Ok(format!("{:?}", self.command(work.path())?))
    }

    /// Boots the guest and waits until the test script reports, the marker
    /// appears, QEMU exits, or the timeout passes. QEMU is always killed.
    pub fn run(&self) -> Result<GuestResult, HarnessError> {
        let work = tempfile::tempdir().map_err(io_err("creating temp dir", "/tmp"))?;
        let mut cmd = self.command(work.path())?;
        cmd.stdin(if self.inputs.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| {
            HarnessError::Setup(format!(
                "cannot start qemu-system-x86_64 ({e}): apt-get install qemu-system-x86"
            ))
        })?;
        let mut guard = KillOnDrop(child);
        let serial = Arc::new(Mutex::new(Vec::<u8>::new()));
        let mut stdout = guard
            .0
            .stdout
            .take()
            .ok_or_else(|| HarnessError::Setup("qemu's stdout was not captured".into()))?;
        let sink = Arc::clone(&serial);
        let mut log = match &self.serial_log {
            Some(p) => Some(std::fs::File::create(p).map_err(io_err("creating", p))?),
            None => None,
        };
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(f) = log.as_mut() {
                    use std::io::Write;
                    let _ = f.write_all(&buf[..n]);
                }
                if let Ok(mut s) = sink.lock() {
                    s.extend_from_slice(&buf[..n]);
                }
            }
        });
        let mut stderr = guard.0.stderr.take();
        let mut stdin = guard.0.stdin.take();
        let mut pending = self.inputs.iter();
        let mut next_input = pending.next();
        let mut seen_upto = 0usize;
        let mut on_screen = false;
        let mut term = self
            .screen
            .map(|(r, c)| (vt100::Parser::new(r, c, 0), 0usize));
        let start = Instant::now();
        let mut timed_out = false;
        let mut exited = None;
        loop {
            let text = serial
                .lock()
                .map(|s| String::from_utf8_lossy(&s).into_owned())
                .unwrap_or_default();
            let screen = match term.as_mut() {
                Some((parser, fed)) => {
                    if let Ok(bytes) = serial.lock() {
                        parser.process(&bytes[*fed..]);
                        *fed = bytes.len();
                    }
                    parser.screen().contents()
                }
                None => String::new(),
            };
            while let Some((marker, input)) = next_input {
                if !screen.is_empty() && screen.contains(marker.as_str()) {
                    type_keys(stdin.as_mut(), input);
                    seen_upto = text.len();
                    next_input = pending.next();
                    // the screen changes only after the keys are read
                    break;
                }
                let mut from = seen_upto.min(text.len());
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let Some(at) = text[from..].find(marker.as_str()) else {
                    break;
                };
                seen_upto = from + at + marker.len();
                type_keys(stdin.as_mut(), input);
                next_input = pending.next();
            }
            if parse_exit(&text).is_some() {
                // Let poweroff finish, then stop.
                let _ = wait_timeout(&mut guard.0, Duration::from_secs(10));
                break;
            }
            if let Some(m) = &self.wait_for
                && (text.contains(m.as_str()) || screen.contains(m.as_str()))
            {
                on_screen = screen.contains(m.as_str());
                break;
            }
            if let Ok(Some(status)) = guard.0.try_wait() {
                exited = Some(status);
                break;
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = guard.0.kill();
        let status = guard.0.wait().ok().or(exited);
        let _ = reader.join();
        let text = serial
            .lock()
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default();
        let mut err_text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut err_text);
        }
        if let Some(st) = status
            && !st.success()
            && text.is_empty()
            && !err_text.trim().is_empty()
        {
            return Err(HarnessError::Setup(format!(
                "qemu failed to start: {}",
                err_text.trim()
            )));
        }
        let matched = on_screen
            || self
                .wait_for
                .as_ref()
                .is_some_and(|m| text.contains(m.as_str()));
        Ok(GuestResult {
            exit_code: parse_exit(&text),
            serial: text,
            matched,
            timed_out,
        })
    }
}

/// Writes `input` a key at a time: an escape sequence (an arrow key) in one
/// write, so the program does not read its ESC as the Esc key.
fn type_keys(stdin: Option<&mut std::process::ChildStdin>, input: &[u8]) {
    use std::io::Write;
    let Some(w) = stdin else { return };
    let mut i = 0;
    while i < input.len() {
        let mut end = i + 1;
        if input[i] == 0x1b && input.get(i + 1) == Some(&b'[') {
            end = i + 2;
            while end < input.len() && !input[end].is_ascii_alphabetic() && input[end] != b'~' {
                end += 1;
            }
            end = (end + 1).min(input.len());
        }
        let _ = w.write_all(&input[i..end]);
        let _ = w.flush();
        std::thread::sleep(Duration::from_millis(30));
        i = end;
    }
}

fn parse_exit(text: &str) -> Option<i32> {
    let i = text.find(EXIT_MARK)?;
    let rest = &text[i + EXIT_MARK.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if rest.len() == digits.len() {
        return None; // line not complete yet
    }
    digits.parse().ok()
}

fn wait_timeout(child: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < t {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_marker_parsing() {
        assert_eq!(parse_exit("x\nBULKHEAD-GUEST-EXIT=0\r\n"), Some(0));
        assert_eq!(parse_exit("BULKHEAD-GUEST-EXIT=17\n"), Some(17));
        assert_eq!(parse_exit("BULKHEAD-GUEST-EXIT=1"), None);
        assert_eq!(parse_exit("nothing"), None);
    }

    #[test]
    fn script_output_is_between_markers() {
        let r = GuestResult {
            exit_code: Some(0),
            serial: "boot\nBULKHEAD-GUEST-START\r\nhello\r\nBULKHEAD-GUEST-EXIT=0\r\n".into(),
            matched: false,
            timed_out: false,
        };
        assert_eq!(r.script_output(), "hello");
    }

    #[test]
    fn command_line_has_tcg_and_buses() {
        let vm = Vm::new()
            .disk(Disk::new("/tmp/a.img").bus(Bus::Nvme))
            .disk(Disk::new("/tmp/b.img").bus(Bus::Usb).serial("S1"))
            .cdrom("/tmp/c.iso")
            .device("intel-iommu");
        let d = vm.describe().unwrap();
        assert!(d.contains("\"tcg\""), "{d}");
        assert!(!d.contains("kvm"), "{d}");
        assert!(d.contains("nvme,drive=disk0"), "{d}");
        assert!(d.contains("usb-storage,bus=xhci.0,drive=disk1"), "{d}");
        assert!(d.contains("ide-cd,drive=cd0"), "{d}");
        assert!(d.contains("intel-iommu"), "{d}");
    }

    #[test]
    fn an_amd_iommu_comes_first_and_virtio_disks_go_through_it() {
        let plain = Vm::new().disk(Disk::new("/tmp/a.img")).describe().unwrap();
        assert!(!plain.contains("iommu"), "{plain}");
        assert!(plain.contains("\"VGA\""), "{plain}");
        let headless = Vm::new().no_vga().describe().unwrap();
        assert!(!headless.contains("VGA"), "{headless}");
        let d = Vm::new()
            .disk(Disk::new("/tmp/a.img"))
            .amd_iommu()
            .describe()
            .unwrap();
        let iommu = d.find("amd-iommu").expect("the IOMMU device");
        let disk = d.find("virtio-blk-pci").expect("the disk");
        assert!(iommu < disk, "{d}");
        assert!(
            d.contains("virtio-blk-pci,drive=disk0,iommu_platform=on,disable-legacy=on"),
            "{d}"
        );
    }
}
