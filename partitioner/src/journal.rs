//! The apply journal: which steps of which plan are done, kept on the target
//! disk itself inside the BIOS boot partition (1 MiB at byte offset 1 MiB,
//! ours from the first write and unused until GRUB is installed there).
//!
//! Sector 0 holds a header (magic, the plan's SHA-256, its length), the plan
//! JSON follows, and step `i` is recorded by writing one 512-byte record at
//! sector `STEP_BASE + i`. Each write is a single sector followed by fsync,
//! so a power cut leaves either the old or the new state. A rerun reads the
//! journal, resumes the plan it holds, and can say exactly what is done.

use std::io::{self, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use crate::plan::{MIB, Plan};

const MAGIC: &[u8; 8] = b"BHJRNL01";
const STEP_MAGIC: &[u8; 8] = b"BHSTEP01";
/// Byte offset of the journal on the disk (the BIOS boot partition).
pub const OFFSET: u64 = MIB;
const SECTOR: u64 = 512;
const STEP_BASE: u64 = 1024;
const MAX_PLAN: usize = 900 * 512;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] io::Error),
    #[error("the plan is too large for the journal ({0} bytes)")]
    TooLarge(usize),
    #[error("plan JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// What a journal on disk says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub plan: Plan,
    pub plan_sha256: [u8; 32],
    /// Indices of completed steps.
    pub done: Vec<u32>,
}

fn plan_bytes(plan: &Plan) -> Result<(Vec<u8>, [u8; 32]), JournalError> {
    let json = serde_json::to_vec(plan)?;
    if json.len() > MAX_PLAN {
        return Err(JournalError::TooLarge(json.len()));
    }
    let sha: [u8; 32] = Sha256::digest(&json).into();
    Ok((json, sha))
}

fn write_sync<D: Write + Seek>(
    dev: &mut D,
    off: u64,
    data: &[u8],
    sync: &mut dyn FnMut(&mut D) -> io::Result<()>,
) -> io::Result<()> {
    dev.seek(SeekFrom::Start(off))?;
    dev.write_all(data)?;
    dev.flush()?;
    sync(dev)
}

/// Starts a journal for `plan`: the plan first, the header last.
pub fn init<D: Write + Seek>(
    dev: &mut D,
    plan: &Plan,
    sync: &mut dyn FnMut(&mut D) -> io::Result<()>,
) -> Result<(), JournalError> {
    let (json, sha) = plan_bytes(plan)?;
    // Clear old step records first, so no record of another plan survives.
    write_sync(
        dev,
        OFFSET + STEP_BASE * SECTOR,
        &vec![0u8; (64 * SECTOR) as usize],
        sync,
    )?;
    let mut body = json.clone();
    body.resize(json.len().div_ceil(512) * 512, 0);
    write_sync(dev, OFFSET + SECTOR, &body, sync)?;
    let mut h = [0u8; 512];
    h[0..8].copy_from_slice(MAGIC);
    h[8..40].copy_from_slice(&sha);
    h[40..44].copy_from_slice(&(json.len() as u32).to_le_bytes());
    let hsum: [u8; 32] = Sha256::digest(&h[0..44]).into();
    h[64..96].copy_from_slice(&hsum);
    write_sync(dev, OFFSET, &h, sync)?;
    Ok(())
}

fn step_record(sha: &[u8; 32], step: u32, name: &str) -> [u8; 512] {
    let mut r = [0u8; 512];
    r[0..8].copy_from_slice(STEP_MAGIC);
    r[8..12].copy_from_slice(&step.to_le_bytes());
    r[12..44].copy_from_slice(sha);
    let n = name.as_bytes();
    let k = n.len().min(32);
    r[44..44 + k].copy_from_slice(&n[..k]);
    let sum: [u8; 32] = Sha256::digest(&r[0..76]).into();
    r[96..128].copy_from_slice(&sum);
    r
}

/// Records step `step` (named `name`) of the plan with hash `sha` as done.
pub fn mark<D: Write + Seek>(
    dev: &mut D,
    sha: &[u8; 32],
    step: u32,
    name: &str,
    sync: &mut dyn FnMut(&mut D) -> io::Result<()>,
) -> Result<(), JournalError> {
    let r = step_record(sha, step, name);
    write_sync(
        dev,
        OFFSET + (STEP_BASE + u64::from(step)) * SECTOR,
        &r,
        sync,
    )?;
    Ok(())
}

/// Reads the journal; `None` when there is none or it is damaged.
pub fn read<D: Read + Seek>(dev: &mut D) -> io::Result<Option<Journal>> {
    let mut h = [0u8; 512];
    dev.seek(SeekFrom::Start(OFFSET))?;
    if dev.read_exact(&mut h).is_err() {
        return Ok(None);
    }
    if &h[0..8] != MAGIC {
        return Ok(None);
    }
    let hsum: [u8; 32] = Sha256::digest(&h[0..44]).into();
    if h[64..96] != hsum {
        return Ok(None);
    }
    let mut sha = [0u8; 32];
    sha.copy_from_slice(&h[8..40]);
    let len = u32::from_le_bytes([h[40], h[41], h[42], h[43]]) as usize;
    if len == 0 || len > MAX_PLAN {
        return Ok(None);
    }
    let mut json = vec![0u8; len];
    dev.seek(SeekFrom::Start(OFFSET + SECTOR))?;
    if dev.read_exact(&mut json).is_err() {
        return Ok(None);
    }
    let got: [u8; 32] = Sha256::digest(&json).into();
    if got != sha {
        return Ok(None);
    }
    let Ok(plan) = serde_json::from_slice::<Plan>(&json) else {
        return Ok(None);
    };
    let mut done = Vec::new();
    for step in 0..64u32 {
        let mut r = [0u8; 512];
        dev.seek(SeekFrom::Start(
            OFFSET + (STEP_BASE + u64::from(step)) * SECTOR,
        ))?;
        if dev.read_exact(&mut r).is_err() {
            break;
        }
        let sum: [u8; 32] = Sha256::digest(&r[0..76]).into();
        if &r[0..8] == STEP_MAGIC
            && r[96..128] == sum
            && r[12..44] == sha
            && u32::from_le_bytes([r[8], r[9], r[10], r[11]]) == step
        {
            done.push(step);
        }
    }
    Ok(Some(Journal {
        plan,
        plan_sha256: sha,
        done,
    }))
}

/// The hash a journal records for `plan`.
pub fn plan_sha256(plan: &Plan) -> Result<[u8; 32], JournalError> {
    Ok(plan_bytes(plan)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn plan() -> Plan {
        let inv = crate::discover::discover(
            std::path::Path::new("/nonexistent"),
            r#"{"blockdevices":[{"name":"vda","type":"disk","size":42949672960,"serial":"S"}]}"#,
        )
        .unwrap();
        Plan::new(&inv, "/dev/vda").unwrap()
    }

    #[test]
    fn round_trip_and_steps() {
        let mut dev = Cursor::new(vec![0u8; 3 << 20]);
        assert_eq!(read(&mut dev).unwrap(), None);
        let p = plan();
        let mut nosync = |_: &mut Cursor<Vec<u8>>| Ok(());
        init(&mut dev, &p, &mut nosync).unwrap();
        let sha = plan_sha256(&p).unwrap();
        mark(&mut dev, &sha, 1, "gpt", &mut nosync).unwrap();
        mark(&mut dev, &sha, 3, "boot", &mut nosync).unwrap();
        let j = read(&mut dev).unwrap().unwrap();
        assert_eq!(j.plan, p);
        assert_eq!(j.done, vec![1, 3]);
        // A new plan's journal forgets the old steps.
        let p2 = plan();
        init(&mut dev, &p2, &mut nosync).unwrap();
        assert_eq!(read(&mut dev).unwrap().unwrap().done, Vec::<u32>::new());
        // A record of another plan does not count.
        mark(&mut dev, &sha, 2, "esp", &mut nosync).unwrap();
        assert!(read(&mut dev).unwrap().unwrap().done.is_empty());
    }

    proptest! {
        #[test]
        fn damaged_journals_read_as_none_or_valid(noise in proptest::collection::vec(any::<u8>(), 0..4096), at in 0usize..4096) {
            let mut dev = Cursor::new(vec![0u8; 3 << 20]);
            let p = plan();
            init(&mut dev, &p, &mut |_: &mut Cursor<Vec<u8>>| Ok(())).unwrap();
            let buf = dev.get_mut();
            let start = (1 << 20) + at;
            for (i, b) in noise.iter().enumerate() {
                buf[start + i] ^= b;
            }
            if let Some(j) = read(&mut dev).unwrap() {
                prop_assert_eq!(j.plan, p);
            }
        }
    }
}
