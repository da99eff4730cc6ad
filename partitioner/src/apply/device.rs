//! The target device: claiming it, the kernel's view of its partitions
//! (BLKRRPART, BLKPG), and byte ranges of it (zeroing, a window onto one
//! partition for fatfs).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plan::{MIB, Plan, Role};
use crate::refuse::Refusal;

use super::error::{ApplyError, StepError, io_err};

pub(super) fn is_block(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

pub(super) fn sync(f: &mut File) -> io::Result<()> {
    f.sync_all()
}

/// Opens the target for writing, refusing when another user holds it.
pub(super) fn open_target(target: &Path) -> Result<File, ApplyError> {
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
                    io_err("opening", target)(e)
                }
            })?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(io_err("opening", target))
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
pub(super) fn announce_partitions(f: &File, target: &Path, plan: &Plan) -> Result<(), StepError> {
    match reread_partitions(f) {
        // EINVAL: a device the kernel does not scan (loop without partscan);
        // BLKPG below still works.
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
            return Err(StepError::Reread(e));
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
        blkpg(f, 1, p.number, p.first_lba * lb, p.size_bytes).map_err(|source| {
            StepError::Blkpg {
                number: p.number,
                source,
            }
        })?;
    }
    for p in &plan.partitions {
        let dev = PathBuf::from(p.device_path(&target.to_string_lossy()));
        if !wait_for(&dev) {
            return Err(StepError::NoPartition(dev));
        }
    }
    Ok(())
}

/// Removes partitions 1..=128 from the kernel's view (BLKPG), ignoring gaps.
pub(super) fn forget_partitions(f: &File) {
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

/// Writes `len` zero bytes at `start`.
pub(super) fn zero(f: &mut File, start: u64, len: u64) -> io::Result<()> {
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
pub(super) fn zero_ends(f: &mut File, start: u64, len: u64) -> io::Result<()> {
    let n = len.min(MIB);
    zero(f, start, n)?;
    if len > MIB {
        zero(f, start + len - MIB, MIB)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
