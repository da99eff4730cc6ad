//! Applying a plan: the only code that writes to a disk.
//!
//! Steps run in order, each followed by an fsync and a record in the
//! on-disk [`journal`]: wipe old signatures, GPT, ESP, /boot, LUKS2, LVM,
//! root file system, swap. A rerun reads the journal, resumes the plan it
//! holds and skips what is recorded done; an interrupted step is redone from
//! its start (each step rewrites its whole structure). Opening LUKS and
//! activating the volume group are not steps: they are ensured whenever a
//! later step needs them, so a rerun after a reboot works too.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::journal::{self, JournalError};
use crate::luks::{self, LuksError, Pbkdf};
use crate::plan::{MIB, Plan, Role};
use crate::refuse::Refusal;
use crate::secret::Passphrase;
use crate::signatures;

/// The steps, in order; the discriminant is the journal index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Wipe = 0,
    Gpt = 1,
    Esp = 2,
    Boot = 3,
    Luks = 4,
    Lvm = 5,
    RootFs = 6,
    Swap = 7,
}

pub const STEPS: [Step; 8] = [
    Step::Wipe,
    Step::Gpt,
    Step::Esp,
    Step::Boot,
    Step::Luks,
    Step::Lvm,
    Step::RootFs,
    Step::Swap,
];

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Wipe => "wipe",
            Step::Gpt => "gpt",
            Step::Esp => "esp",
            Step::Boot => "boot",
            Step::Luks => "luks",
            Step::Lvm => "lvm",
            Step::RootFs => "rootfs",
            Step::Swap => "swap",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Step::Wipe => "erasing old signatures at both ends of the disk and of every partition",
            Step::Gpt => "writing the GPT (primary and backup)",
            Step::Esp => "formatting the EFI system partition (FAT32)",
            Step::Boot => "formatting /boot (ext4)",
            Step::Luks => "formatting LUKS2 (argon2id key slot; this takes a few seconds)",
            Step::Lvm => "creating LVM: qubes_dom0, thin pool root-pool, root, swap",
            Step::RootFs => "formatting the root file system (ext4)",
            Step::Swap => "formatting swap",
        }
    }
    pub fn from_name(s: &str) -> Option<Step> {
        STEPS.into_iter().find(|x| x.name() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("step {step} failed: {message}\n{state}\nRerun the same command to finish the job.")]
    Step {
        step: &'static str,
        message: String,
        state: String,
    },
    #[error(
        "{0}\nRerun with the passphrase of the interrupted run, or with --restart to start over (erases the disk again)."
    )]
    Resume(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Progress reports for front ends.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub step: Step,
    pub index: usize,
    pub total: usize,
    pub event: Event,
}

#[derive(Debug, Clone, Serialize)]
pub enum Event {
    Started,
    Skipped,
    Done { seconds: f64 },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Started => f.write_str("started"),
            Event::Skipped => f.write_str("already done"),
            Event::Done { seconds } => write!(f, "done in {seconds:.1} s"),
        }
    }
}

/// What apply changes besides the plan.
pub struct Options<'a> {
    pub pbkdf: Pbkdf,
    /// Ignore any journal on the disk and start over.
    pub restart: bool,
    /// Stop (cleanly) after this step: host tests without device-mapper.
    pub stop_after: Option<Step>,
    /// Close LVM and LUKS at the end (otherwise left open for the installer).
    pub close: bool,
    pub progress: &'a mut dyn FnMut(&Progress),
}

/// The result of a successful apply.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The plan that was applied (the journal's, when resuming).
    pub plan: Plan,
    pub resumed: bool,
    pub skipped: Vec<Step>,
    pub ran: Vec<Step>,
    pub mapper: String,
    pub root: String,
    pub swap: String,
    pub seconds: f64,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ApplyError {
    let path = path.display().to_string();
    move |source| ApplyError::Io { what, path, source }
}

fn is_block(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

fn sync(f: &mut File) -> io::Result<()> {
    f.sync_all()
}

/// Asks the kernel to re-read the partition table of a block device.
fn reread_partitions(f: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const BLKRRPART: libc::c_ulong = 0x125f;
    let mut last = io::Error::other("not tried");
    for _ in 0..50 {
        // SAFETY: BLKRRPART takes no argument; the fd is valid for this call.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKRRPART as _, 0) };
        if r == 0 {
            return Ok(());
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EBUSY) {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

/// Tells the kernel about one partition directly (BLKPG), as `partx` does:
/// for kernels that do not parse GPT themselves.
fn blkpg(f: &File, op: libc::c_int, pno: u32, start: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const BLKPG: libc::c_ulong = 0x1269;
    let mut part = BlkpgPartition {
        start: start as libc::c_longlong,
        length: len as libc::c_longlong,
        pno: pno as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: arg and part are valid, properly laid out, and outlive the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), BLKPG as _, &mut arg as *mut BlkpgIoctlArg) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the kernel see the plan's partitions: BLKRRPART, and if the kernel
/// did not parse the GPT, BLKPG for each partition.
fn announce_partitions(f: &File, target: &Path, plan: &Plan) -> Result<(), String> {
    match reread_partitions(f) {
        // EINVAL: a device the kernel does not scan (loop without partscan);
        // BLKPG below still works.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            return Err(format!("re-reading the partition table: {e}"));
        }
        _ => {}
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = Path::new("/sys/block").join(&name);
    let lb = plan.logical_block();
    for p in &plan.partitions {
        let dev = PathBuf::from(p.device_path(&target.to_string_lossy()));
        let pname = dev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if sys.join(&pname).exists() {
            continue;
        }
        blkpg(f, 1, p.number, p.first_lba * lb, p.size_bytes)
            .map_err(|e| format!("adding partition {} to the kernel (BLKPG): {e}", p.number))?;
    }
    for p in &plan.partitions {
        let dev = PathBuf::from(p.device_path(&target.to_string_lossy()));
        if !wait_for(&dev) {
            return Err(format!(
                "{} did not appear after writing the GPT",
                dev.display()
            ));
        }
    }
    Ok(())
}

/// Removes partitions 1..=128 from the kernel's view (BLKPG), ignoring gaps.
fn forget_partitions(f: &File) {
    for pno in 1..=128 {
        let _ = blkpg(f, 2, pno, 0, 0);
    }
}

fn wait_for(path: &Path) -> bool {
    for _ in 0..200 {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Partition `n` of `disk` as the kernel names it.
pub fn partition_path(disk: &Path, role: Role, plan: &Plan) -> PathBuf {
    PathBuf::from(plan.partition(role).device_path(&disk.to_string_lossy()))
}

/// A window `[start, start+len)` onto a file, for formatting a partition in
/// place (fatfs wants a whole volume).
pub struct Slice<'a> {
    f: &'a mut File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Slice<'a> {
    pub fn new(f: &'a mut File, start: u64, len: u64) -> io::Result<Self> {
        f.seek(SeekFrom::Start(start))?;
        Ok(Self {
            f,
            start,
            len,
            pos: 0,
        })
    }
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.f.seek(SeekFrom::Start(self.start + self.pos))?;
        let k = self.f.read(&mut buf[..n])?;
        self.pos += k as u64;
        Ok(k)
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "past the partition's end",
            ));
        }
        self.f.seek(SeekFrom::Start(self.start + self.pos))?;
        let k = self.f.write(&buf[..n])?;
        self.pos += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.f.flush()
    }
}

impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition's start",
            )),
        }
    }
}

fn zero(f: &mut File, start: u64, len: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let buf = vec![0u8; CHUNK];
    f.seek(SeekFrom::Start(start))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Zeroes the first and last MiB of `[start, start+len)`.
fn zero_ends(f: &mut File, start: u64, len: u64) -> io::Result<()> {
    let n = len.min(MIB);
    zero(f, start, n)?;
    if len > MIB {
        zero(f, start + len - MIB, MIB)?;
    }
    Ok(())
}

fn wipe(f: &mut File, size: u64, plan: &Plan) -> io::Result<Vec<String>> {
    let lb = plan.logical_block();
    let mut report = Vec::new();
    let old = signatures::old_partitions(f, size)?;
    for s in signatures::probe(f, 0, size)? {
        report.push(format!("{} at byte {}", s.kind, s.offset));
    }
    for r in &old {
        for s in signatures::probe(f, r.start, r.len)? {
            report.push(format!("{} at byte {} (old partition)", s.kind, s.offset));
            if s.kind == "luks" {
                // The whole LUKS2 header area, key slots included.
                zero(f, r.start, r.len.min(16 * MIB))?;
            }
        }
        zero_ends(f, r.start, r.len)?;
    }
    zero_ends(f, 0, size)?;
    for p in &plan.partitions {
        let start = p.first_lba * lb;
        zero_ends(f, start, p.size_bytes)?;
    }
    // Whatever signature is still found (e.g. beyond the first MiB of a
    // region) gets its magic bytes zeroed, as wipefs does.
    let mut regions = vec![(0, size)];
    regions.extend(old.iter().map(|r| (r.start, r.len)));
    regions.extend(
        plan.partitions
            .iter()
            .map(|p| (p.first_lba * lb, p.size_bytes)),
    );
    for (start, len) in regions {
        for s in signatures::probe(f, start, len)? {
            zero(f, s.offset, s.len)?;
        }
    }
    sync(f)?;
    Ok(report)
}

fn write_gpt(f: &File, plan: &Plan) -> Result<(), String> {
    use gpt::disk::LogicalBlockSize;
    use gpt::mbr::ProtectiveMBR;
    use gpt::partition::Partition;
    use gpt::partition_types::Type;
    let lb = plan.logical_block();
    let lbs = if lb == 4096 {
        LogicalBlockSize::Lb4096
    } else {
        LogicalBlockSize::Lb512
    };
    let mut dev = f.try_clone().map_err(|e| e.to_string())?;
    let lbas = plan.disk.size_bytes / lb;
    let mbr = ProtectiveMBR::with_lb_size(u32::try_from(lbas - 1).unwrap_or(u32::MAX));
    mbr.overwrite_lba0(&mut dev)
        .map_err(|e| format!("protective MBR: {e}"))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lbs)
        .create_from_device(dev, Some(plan.disk_guid))
        .map_err(|e| format!("GPT: {e}"))?;
    let mut parts = std::collections::BTreeMap::new();
    for p in &plan.partitions {
        parts.insert(
            p.number,
            Partition {
                part_type_guid: Type::from_str(&p.type_guid)
                    .map_err(|e| format!("type {}: {e}", p.type_guid))?,
                part_guid: p.guid,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                flags: 0,
                name: p.name.clone(),
            },
        );
    }
    disk.update_partitions(parts)
        .map_err(|e| format!("GPT: {e}"))?;
    let dev = disk.write().map_err(|e| format!("writing the GPT: {e}"))?;
    dev.sync_all().map_err(|e| e.to_string())?;
    Ok(())
}

/// The FAT volume ID from the ESP's partition GUID (stable across reruns).
pub fn esp_volume_id(plan: &Plan) -> u32 {
    let b = plan.partition(Role::Esp).guid.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn format_esp(f: &mut File, plan: &Plan) -> Result<(), String> {
    let p = plan.partition(Role::Esp);
    let lb = plan.logical_block();
    let start = p.first_lba * lb;
    let mut label = [b' '; 11];
    let l = crate::plan::ESP_LABEL.as_bytes();
    label[..l.len()].copy_from_slice(l);
    {
        let slice = Slice::new(f, start, p.size_bytes).map_err(|e| e.to_string())?;
        let opts = fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_sector(lb as u16)
            .volume_label(label)
            .volume_id(esp_volume_id(plan));
        fatfs::format_volume(slice, opts).map_err(|e| format!("fatfs: {e}"))?;
    }
    sync(f).map_err(|e| e.to_string())?;
    Ok(())
}

fn run_tool(cmd: &mut Command) -> Result<String, String> {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An `lvm` command; without udev running, device-mapper makes its own nodes.
fn lvm(args: &[&str]) -> Command {
    let mut c = Command::new("lvm");
    c.args(args.iter().take(1));
    // No dmeventd in the installer: the installed system monitors its own pools.
    c.args(["--config", "activation { monitoring = 0 }"]);
    c.args(args.iter().skip(1));
    if !Path::new("/run/udev/control").exists() {
        c.env("DM_DISABLE_UDEV", "1");
    }
    c
}

fn lvm_devices_arg(pv: &Path) -> String {
    pv.display().to_string()
}

fn canon(p: &str) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p))
}

/// Sets up LVM on `pv`; a partial VG of an interrupted run is removed first.
fn create_lvm(plan: &Plan, pv: &Path) -> Result<(), String> {
    let v = &plan.lvm;
    // Read-only scan of every disk: a VG of the same name elsewhere would
    // clash at boot; refuse rather than touch it.
    let pvs = run_tool(&mut lvm(&["pvs", "--noheadings", "-o", "pv_name,vg_name"]))?;
    let ours = canon(&pv.to_string_lossy());
    for line in pvs.lines() {
        let mut it = line.split_whitespace();
        if let (Some(dev), Some(vg)) = (it.next(), it.next())
            && vg == v.vg
            && canon(dev) != ours
        {
            return Err(format!(
                "another disk ({dev}) already has a volume group named {}; disconnect it or remove that VG, then rerun",
                v.vg
            ));
        }
    }
    let dev = lvm_devices_arg(pv);
    let exists = pvs
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(v.vg.as_str()));
    if exists {
        run_tool(&mut lvm(&[
            "vgremove",
            "--devices",
            &dev,
            "-ff",
            "-y",
            &v.vg,
        ]))?;
    }
    run_tool(&mut lvm(&[
        "pvcreate",
        "--devices",
        &dev,
        "-ff",
        "-y",
        &dev,
    ]))?;
    run_tool(&mut lvm(&["vgcreate", "--devices", &dev, &v.vg, &dev]))?;
    let pool = format!("{}b", v.thin_pool_bytes);
    run_tool(&mut lvm(&[
        "lvcreate",
        "--devices",
        &dev,
        "-y",
        "--type",
        "thin-pool",
        "-L",
        &pool,
        "-n",
        &v.thin_pool,
        &v.vg,
    ]))?;
    let root = format!("{}b", v.root_lv_bytes);
    let pool_path = format!("{}/{}", v.vg, v.thin_pool);
    run_tool(&mut lvm(&[
        "lvcreate",
        "--devices",
        &dev,
        "-y",
        "--type",
        "thin",
        "-V",
        &root,
        "-n",
        &v.root_lv,
        "--thinpool",
        &pool_path,
    ]))?;
    let swap = format!("{}b", v.swap_bytes);
    run_tool(&mut lvm(&[
        "lvcreate",
        "--devices",
        &dev,
        "-y",
        "-L",
        &swap,
        "-n",
        &v.swap_lv,
        &v.vg,
    ]))?;
    Ok(())
}

fn lv_path(plan: &Plan, lv: &str) -> String {
    names::lv_mapper_path(&plan.lvm.vg, lv)
}

fn activate_vg(plan: &Plan, pv: &Path) -> Result<(), String> {
    let dev = lvm_devices_arg(pv);
    run_tool(&mut lvm(&[
        "vgchange",
        "--devices",
        &dev,
        "-ay",
        &plan.lvm.vg,
    ]))
    .map(|_| ())
}

fn deactivate_vg(plan: &Plan, pv: &Path) -> Result<(), String> {
    let dev = lvm_devices_arg(pv);
    run_tool(&mut lvm(&[
        "vgchange",
        "--devices",
        &dev,
        "-an",
        &plan.lvm.vg,
    ]))
    .map(|_| ())
}

/// What the journal says is done, for messages.
pub fn describe_state(done: &[u32]) -> String {
    let mut s = String::from("State of the disk:");
    for st in STEPS {
        let d = done.contains(&(st as u32));
        s.push_str(&format!(
            "\n  {:<7} {}",
            st.name(),
            if d { "done" } else { "not done" }
        ));
    }
    s
}

/// Opens the target for writing, refusing when another user holds it.
fn open_target(target: &Path) -> Result<File, ApplyError> {
    if is_block(target) {
        use std::os::unix::fs::OpenOptionsExt;
        // O_EXCL on a block device fails while anything (a mount, dm, md)
        // holds it: the kernel's own "in use" check.
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_EXCL)
            .open(target)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    ApplyError::Refused(Refusal::InUse {
                        disk: target.display().to_string(),
                        details: vec!["the kernel reports it busy (O_EXCL)".into()],
                    })
                } else {
                    ApplyError::Io {
                        what: "opening",
                        path: target.display().to_string(),
                        source: e,
                    }
                }
            })?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(io_err("opening", target))
}

/// Applies `plan` to `target` (a block device, or an image file for tests).
/// The caller has run [`crate::recheck::check_apply`]; this checks the size.
pub fn run(
    plan: &Plan,
    target: &Path,
    pass: &Passphrase,
    opts: Options<'_>,
) -> Result<Outcome, ApplyError> {
    let started = Instant::now();
    plan.validate()
        .map_err(|m| ApplyError::Resume(format!("the plan is not valid: {m}")))?;
    // Read-only first: size and journal, before claiming the device.
    let mut ro = File::open(target).map_err(io_err("opening", target))?;
    let size = ro
        .seek(SeekFrom::End(0))
        .map_err(io_err("sizing", target))?;
    if size != plan.disk.size_bytes {
        return Err(Refusal::Changed {
            disk: target.display().to_string(),
            differences: vec![format!(
                "size {size} bytes, planned {}",
                plan.disk.size_bytes
            )],
        }
        .into());
    }
    let block = is_block(target);
    let existing = if opts.restart {
        None
    } else {
        journal::read(&mut ro).map_err(io_err("reading the journal on", target))?
    };
    drop(ro);
    let (plan, mut done, resumed) = match existing {
        Some(j) if j.plan.disk.size_bytes == size && j.plan.disk.serial == plan.disk.serial => {
            (j.plan, j.done, true)
        }
        _ => (plan.clone(), Vec::new(), false),
    };
    if resumed && block && luks::is_active(&plan.luks.mapper_name) {
        // The interrupted run's own mappings: close them so the device can
        // be claimed exclusively; they are reopened when a step needs them.
        let mapper = PathBuf::from("/dev/mapper").join(&plan.luks.mapper_name);
        // The VG may not exist yet (killed during the LVM step).
        let vg = deactivate_vg(&plan, &mapper);
        let close = luks::close(&plan.luks.mapper_name).map_err(|e| match &vg {
            Err(m) => format!("{e} (after: {m})"),
            Ok(()) => e.to_string(),
        });
        if let Err(m) = close {
            return Err(ApplyError::Resume(format!(
                "cannot close {} left open by the interrupted run: {m}",
                mapper.display()
            )));
        }
    }
    let mut f = open_target(target)?;
    plan.validate()
        .map_err(|m| ApplyError::Resume(format!("the journal's plan is not valid: {m}")))?;
    let sha = journal::plan_sha256(&plan)?;
    let lb = plan.logical_block();
    let luks_part = partition_path(target, Role::Luks, &plan);
    let boot_part = partition_path(target, Role::Boot, &plan);
    let mapper = PathBuf::from("/dev/mapper").join(&plan.luks.mapper_name);
    let mut skipped = Vec::new();
    let mut ran = Vec::new();
    let total = STEPS.len();
    let state_err =
        |step: Step, message: String, done: &[u32]| match message.strip_prefix(RESUME_MARK) {
            Some(m) => ApplyError::Resume(format!("{m}\n{}", describe_state(done))),
            None => ApplyError::Step {
                step: step.name(),
                message,
                state: describe_state(done),
            },
        };
    for (i, step) in STEPS.into_iter().enumerate() {
        let report = |event: Event, progress: &mut dyn FnMut(&Progress)| {
            progress(&Progress {
                step,
                index: i + 1,
                total,
                event,
            })
        };
        if done.contains(&(step as u32)) {
            report(Event::Skipped, opts.progress);
            skipped.push(step);
        } else {
            report(Event::Started, opts.progress);
            let t = Instant::now();
            if block && (step as u32) > (Step::Gpt as u32) && !luks_part.exists() {
                announce_partitions(&f, target, &plan).map_err(|m| state_err(step, m, &done))?;
            }
            let res: Result<(), String> = match step {
                Step::Wipe => wipe(&mut f, size, &plan)
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        journal::init(&mut f, &plan, &mut sync).map_err(|e| e.to_string())
                    }),
                Step::Gpt => write_gpt(&f, &plan).and_then(|_| {
                    if block {
                        forget_partitions(&f);
                        announce_partitions(&f, target, &plan)?;
                    }
                    Ok(())
                }),
                Step::Esp => format_esp(&mut f, &plan),
                Step::Boot => run_tool(
                    Command::new("mke2fs")
                        .args([
                            "-t",
                            "ext4",
                            "-F",
                            "-q",
                            "-L",
                            crate::plan::BOOT_LABEL,
                            "-U",
                        ])
                        .arg(plan.partition(Role::Boot).guid.to_string())
                        .arg(if block {
                            boot_part.clone().into_os_string()
                        } else {
                            target.as_os_str().to_owned()
                        })
                        .args(if block {
                            vec![]
                        } else {
                            vec![
                                "-E".to_string(),
                                format!("offset={}", plan.partition(Role::Boot).first_lba * lb),
                                format!("{}k", plan.partition(Role::Boot).size_bytes / 1024),
                            ]
                        }),
                )
                .map(|_| ()),
                Step::Luks => {
                    if block {
                        luks::format(&luks_part, &plan.luks, pass.expose(), opts.pbkdf)
                            .map_err(|e| e.to_string())
                    } else {
                        Err("LUKS needs a block device (use a loop device for image files)".into())
                    }
                }
                Step::Lvm => {
                    ensure_open(&luks_part, &plan, pass).and_then(|_| create_lvm(&plan, &mapper))
                }
                Step::RootFs => ensure_open(&luks_part, &plan, pass)
                    .and_then(|_| activate_vg(&plan, &mapper))
                    .and_then(|_| {
                        run_tool(
                            Command::new("mke2fs")
                                .args(["-t", "ext4", "-F", "-q", "-L", crate::plan::ROOT_LABEL])
                                .arg(lv_path(&plan, &plan.lvm.root_lv)),
                        )
                        .map(|_| ())
                    }),
                Step::Swap => ensure_open(&luks_part, &plan, pass)
                    .and_then(|_| activate_vg(&plan, &mapper))
                    .and_then(|_| {
                        run_tool(
                            Command::new("mkswap")
                                .args(["-L", "swap"])
                                .arg(lv_path(&plan, &plan.lvm.swap_lv)),
                        )
                        .map(|_| ())
                    }),
            };
            if let Err(m) = res {
                return Err(state_err(step, m, &done));
            }
            sync(&mut f).map_err(io_err("syncing", target))?;
            journal::mark(&mut f, &sha, step as u32, step.name(), &mut sync)?;
            done.push(step as u32);
            ran.push(step);
            report(
                Event::Done {
                    seconds: t.elapsed().as_secs_f64(),
                },
                opts.progress,
            );
        }
        if opts.stop_after == Some(step) {
            break;
        }
    }
    let all_done = STEPS.iter().all(|s| done.contains(&(*s as u32)));
    if all_done && block {
        if opts.close {
            if luks::is_active(&plan.luks.mapper_name) {
                deactivate_vg(&plan, &mapper).map_err(|m| state_err(Step::Swap, m, &done))?;
                luks::close(&plan.luks.mapper_name)
                    .map_err(|e| state_err(Step::Swap, e.to_string(), &done))?;
            }
        } else {
            ensure_open(&luks_part, &plan, pass)
                .and_then(|_| activate_vg(&plan, &mapper))
                .map_err(|m| state_err(Step::Swap, m, &done))?;
        }
    }
    Ok(Outcome {
        mapper: mapper.display().to_string(),
        root: lv_path(&plan, &plan.lvm.root_lv),
        swap: lv_path(&plan, &plan.lvm.swap_lv),
        plan,
        resumed,
        skipped,
        ran,
        seconds: started.elapsed().as_secs_f64(),
    })
}

const RESUME_MARK: &str = "\u{1}resume:";

fn ensure_open(luks_part: &Path, plan: &Plan, pass: &Passphrase) -> Result<(), String> {
    if luks::is_active(&plan.luks.mapper_name) {
        return Ok(());
    }
    match luks::open(luks_part, &plan.luks.mapper_name, pass.expose()) {
        Ok(()) => Ok(()),
        Err(LuksError::WrongPassphrase(d)) => Err(format!(
            "{RESUME_MARK}the LUKS2 volume on {d}, made by an earlier run of this plan, does not open with this passphrase"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads the journal of `target`, for `partitioner status`.
pub fn status(target: &Path) -> Result<Option<journal::Journal>, ApplyError> {
    let mut f = File::open(target).map_err(io_err("opening", target))?;
    journal::read(&mut f).map_err(io_err("reading the journal on", target))
}

/// The LUKS partition and mapper name of an installed disk: partition 4
/// (the plan's layout), mapped as `luks-UUID` like anaconda.
fn installed_luks(disk: &Path) -> Result<(PathBuf, String), ApplyError> {
    let s = disk.to_string_lossy();
    let sep = if s.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    let part = PathBuf::from(format!("{s}{sep}4"));
    let uuid = luks::uuid(&part).ok_or_else(|| ApplyError::Io {
        what: "finding a LUKS2 header on",
        path: part.display().to_string(),
        source: io::Error::new(io::ErrorKind::NotFound, "no LUKS2 header"),
    })?;
    Ok((part, names::luks_mapper(&uuid)))
}

/// Opens an installed disk: LUKS2 (unless open) and the volume group.
pub fn open_installed(disk: &Path, pass: &Passphrase) -> Result<String, ApplyError> {
    let (part, name) = installed_luks(disk)?;
    if !luks::is_active(&name) {
        luks::open(&part, &name, pass.expose()).map_err(|e| ApplyError::Resume(e.to_string()))?;
    }
    let mapper = PathBuf::from("/dev/mapper").join(&name);
    let dev = lvm_devices_arg(&mapper);
    run_tool(&mut lvm(&["vgchange", "--devices", &dev, "-ay", names::VG])).map_err(|m| {
        ApplyError::Step {
            step: "open",
            message: m,
            state: String::new(),
        }
    })?;
    Ok(mapper.display().to_string())
}

/// Deactivates the volume group and closes LUKS2 of an installed disk.
pub fn close_installed(disk: &Path) -> Result<(), ApplyError> {
    let (_, name) = installed_luks(disk)?;
    if !luks::is_active(&name) {
        return Ok(());
    }
    let mapper = PathBuf::from("/dev/mapper").join(&name);
    let dev = lvm_devices_arg(&mapper);
    let fail = |m: String| ApplyError::Step {
        step: "close",
        message: m,
        state: String::new(),
    };
    run_tool(&mut lvm(&["vgchange", "--devices", &dev, "-an", names::VG])).map_err(fail)?;
    luks::close(&name).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_events_read_as_words() {
        assert_eq!(Event::Started.to_string(), "started");
        assert_eq!(Event::Skipped.to_string(), "already done");
        assert_eq!(Event::Done { seconds: 18.47 }.to_string(), "done in 18.5 s");
    }
    use proptest::prelude::*;

    proptest! {
        /// A partition window never reads or writes outside itself.
        #[test]
        fn slice_stays_inside_its_window(start in 0u64..4096, len in 0u64..4096, ops in proptest::collection::vec((0u8..3, 0u64..9000, 0usize..600), 0..20)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("f");
            std::fs::write(&p, vec![0xAAu8; 9000]).unwrap();
            let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
            {
                let mut s = Slice::new(&mut f, start, len).unwrap();
                for (op, off, n) in ops {
                    match op {
                        0 => { let _ = s.seek(SeekFrom::Start(off)); }
                        1 => { let _ = s.write(&vec![0x55u8; n]); }
                        _ => { let mut b = vec![0u8; n]; let _ = s.read(&mut b); }
                    }
                }
            }
            let data = std::fs::read(&p).unwrap();
            for (i, b) in data.iter().enumerate() {
                let inside = (i as u64) >= start && (i as u64) < start + len;
                if !inside {
                    prop_assert_eq!(*b, 0xAA, "byte {} outside [{}, {}) changed", i, start, start + len);
                }
            }
        }
    }
}
