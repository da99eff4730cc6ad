//! Media self-check: the image's own sha256, stored inside it.
//!
//! The 512-byte Application Use field of the Primary Volume Descriptor
//! (bytes 883..1395 of sector 16) holds `BULKHEAD-SHA256;SIZE=n;SHA256=h;`
//! padded with spaces, where `h` is the sha256 of the first `n` bytes of the
//! image with that field read as 512 spaces. So a DVD, an image file or a USB
//! stick with anything after the image verifies the same way, and a flipped
//! byte anywhere in the image, or a stick that was written short, is caught.
//! The same idea as isomd5sum's implantisomd5/checkisomd5, with sha256.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Offset of the PVD's Application Use field.
pub const FIELD_OFFSET: u64 = 16 * 2048 + 883;
pub const FIELD_LEN: usize = 512;
const TAG: &str = "BULKHEAD-SHA256;";

#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error("{path} is not an ISO9660 image (no CD001 primary volume descriptor at sector 16)")]
    NotIso { path: String },
    #[error(
        "{path} carries no embedded checksum (it was not built by bulkhead-iso, or its volume descriptor is damaged)"
    )]
    NoChecksum { path: String },
    #[error(
        "{path} is {have} bytes but the image is {want}: the copy is truncated; write the image again"
    )]
    Truncated { path: String, have: u64, want: u64 },
    #[error(
        "{path} is corrupt: its sha256 is {actual} but the image says {expected}; write or burn the image again, or download it again"
    )]
    Mismatch {
        path: String,
        expected: String,
        actual: String,
    },
}

/// The embedded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    pub size: u64,
    pub sha256: String,
}

/// Every file operation here is on the image itself.
fn ioe(path: &Path) -> impl FnOnce(io::Error) -> sysutil::IoError + use<> {
    sysutil::io_err("reading or writing the image", path)
}

fn check_pvd(f: &mut File, path: &Path) -> Result<(), ChecksumError> {
    let mut pvd = [0u8; 6];
    f.seek(SeekFrom::Start(16 * 2048)).map_err(ioe(path))?;
    f.read_exact(&mut pvd).map_err(|_| ChecksumError::NotIso {
        path: path.display().to_string(),
    })?;
    if &pvd != b"\x01CD001" {
        return Err(ChecksumError::NotIso {
            path: path.display().to_string(),
        });
    }
    Ok(())
}

/// sha256 of the first `size` bytes of `f`, the field read as spaces.
fn digest(
    f: &mut File,
    size: u64,
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<String, ChecksumError> {
    f.seek(SeekFrom::Start(0)).map_err(ioe(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0u64;
    let field = FIELD_OFFSET..FIELD_OFFSET + FIELD_LEN as u64;
    while pos < size {
        let want = buf.len().min((size - pos) as usize);
        let n = f.read(&mut buf[..want]).map_err(ioe(path))?;
        if n == 0 {
            return Err(ChecksumError::Truncated {
                path: path.display().to_string(),
                have: pos,
                want: size,
            });
        }
        let chunk = &mut buf[..n];
        for (i, b) in chunk.iter_mut().enumerate() {
            if field.contains(&(pos + i as u64)) {
                *b = b' ';
            }
        }
        h.update(&chunk[..]);
        pos += n as u64;
        progress(pos, size);
    }
    Ok(hex::encode(h.finalize()))
}

/// Computes the checksum of an image written without one (reading it
/// whole) and writes it into its PVD. The writer embeds it while writing
/// instead (`iso9660::Options::embed_checksum`).
pub fn implant(path: &Path) -> Result<Embedded, ChecksumError> {
    let mut f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(ioe(path))?;
    check_pvd(&mut f, path)?;
    let size = f.metadata().map_err(ioe(path))?.len();
    let sha256 = digest(&mut f, size, path, &mut |_, _| {})?;
    let e = Embedded { size, sha256 };
    f.seek(SeekFrom::Start(FIELD_OFFSET)).map_err(ioe(path))?;
    f.write_all(&field(&e)).map_err(ioe(path))?;
    f.sync_all().map_err(ioe(path))?;
    Ok(e)
}

/// The field holding `e`: the record, then spaces.
pub fn field(e: &Embedded) -> [u8; FIELD_LEN] {
    let mut field = [b' '; FIELD_LEN];
    let text = format!("{TAG}SIZE={};SHA256={};", e.size, e.sha256);
    field[..text.len()].copy_from_slice(text.as_bytes());
    field
}

/// Reads the embedded record.
pub fn embedded(path: &Path) -> Result<Embedded, ChecksumError> {
    let mut f = File::open(path).map_err(ioe(path))?;
    check_pvd(&mut f, path)?;
    read_field(&mut f, path)
}

fn read_field(f: &mut File, path: &Path) -> Result<Embedded, ChecksumError> {
    let none = || ChecksumError::NoChecksum {
        path: path.display().to_string(),
    };
    let mut field = [0u8; FIELD_LEN];
    f.seek(SeekFrom::Start(FIELD_OFFSET)).map_err(ioe(path))?;
    f.read_exact(&mut field).map_err(ioe(path))?;
    let text = std::str::from_utf8(&field).map_err(|_| none())?;
    let rest = text.strip_prefix(TAG).ok_or_else(none)?;
    let mut size = None;
    let mut sha = None;
    for part in rest.split(';') {
        if let Some(v) = part.strip_prefix("SIZE=") {
            size = v.parse::<u64>().ok();
        } else if let Some(v) = part.strip_prefix("SHA256=")
            && v.len() == 64
            && v.bytes().all(|b| b.is_ascii_hexdigit())
        {
            sha = Some(v.to_ascii_lowercase());
        }
    }
    match (size, sha) {
        (Some(size), Some(sha256)) => Ok(Embedded { size, sha256 }),
        _ => Err(none()),
    }
}

/// Verifies an image file or a device holding one (trailing bytes past the
/// image are ignored). `progress(done, total)` is called as it reads.
pub fn verify(path: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Embedded, ChecksumError> {
    let mut f = File::open(path).map_err(ioe(path))?;
    check_pvd(&mut f, path)?;
    let e = read_field(&mut f, path)?;
    let actual = digest(&mut f, e.size, path, progress)?;
    if actual != e.sha256 {
        return Err(ChecksumError::Mismatch {
            path: path.display().to_string(),
            expected: e.sha256,
            actual,
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_iso(dir: &Path, len: usize) -> std::path::PathBuf {
        let mut v = vec![0u8; len];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        v[16 * 2048..16 * 2048 + 6].copy_from_slice(b"\x01CD001");
        let p = dir.join("x.iso");
        std::fs::write(&p, v).unwrap();
        p
    }

    #[test]
    fn implant_then_verify_and_padding_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let p = fake_iso(d.path(), 300 * 2048);
        let e = implant(&p).unwrap();
        assert_eq!(verify(&p, &mut |_, _| {}).unwrap(), e);
        // Implanting again gives the same bytes.
        let before = std::fs::read(&p).unwrap();
        implant(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), before);
        // A stick is bigger than the image: trailing garbage does not matter.
        let mut f = File::options().append(true).open(&p).unwrap();
        f.write_all(&[0xAB; 100_000]).unwrap();
        assert_eq!(verify(&p, &mut |_, _| {}).unwrap(), e);
    }

    #[test]
    fn every_flipped_region_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let p = fake_iso(d.path(), 64 * 2048);
        implant(&p).unwrap();
        let clean = std::fs::read(&p).unwrap();
        for off in [0usize, 511, 16 * 2048 + 100, 40 * 2048, clean.len() - 1] {
            let mut v = clean.clone();
            v[off] ^= 0x01;
            std::fs::write(&p, &v).unwrap();
            let err = verify(&p, &mut |_, _| {}).unwrap_err();
            assert!(
                matches!(err, ChecksumError::Mismatch { .. }),
                "offset {off}: {err}"
            );
        }
    }

    #[test]
    fn truncated_copy_and_foreign_images_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = fake_iso(d.path(), 64 * 2048);
        implant(&p).unwrap();
        let v = std::fs::read(&p).unwrap();
        std::fs::write(&p, &v[..40 * 2048]).unwrap();
        assert!(matches!(
            verify(&p, &mut |_, _| {}).unwrap_err(),
            ChecksumError::Truncated { .. }
        ));
        let q = fake_iso(d.path(), 64 * 2048);
        assert!(matches!(
            verify(&q, &mut |_, _| {}).unwrap_err(),
            ChecksumError::NoChecksum { .. }
        ));
        std::fs::write(&q, vec![0u8; 4096]).unwrap();
        assert!(matches!(
            verify(&q, &mut |_, _| {}).unwrap_err(),
            ChecksumError::NotIso { .. }
        ));
    }
}
