//! LUKS2 through libcryptsetup (libcryptsetup-rs, `mutex` feature so calls
//! from any thread are safe): format with Qubes' parameters, add the
//! passphrase, open, test a passphrase, close.
//!
//! PBKDF: argon2id as cryptsetup's default, benchmarked to 2 s, with memory
//! capped at 1 GiB and at half the machine's RAM and up to 4 threads (what
//! cryptsetup does on the machine it runs on; the installer runs on the
//! target). Tests pass [`Pbkdf::Fixed`] with a low cost and no benchmark.

use std::path::Path;

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat};
use libcryptsetup_rs::{
    CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either, LibcryptErr,
};
use serde::{Deserialize, Serialize};

use crate::plan::LuksPlan;

/// cryptsetup's default argon2 memory cap (DEFAULT_LUKS2_MEMORY_KB).
pub const DEFAULT_MEMORY_KIB: u32 = 1024 * 1024;
/// cryptsetup's default argon2 parallel threads (DEFAULT_LUKS2_PARALLEL_THREADS).
pub const DEFAULT_THREADS: u32 = 4;
/// cryptsetup's default unlock time for LUKS2 (DEFAULT_LUKS2_ITER_TIME).
pub const DEFAULT_TIME_MS: u32 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum LuksError {
    #[error("libcryptsetup on {device}: {what}: {source}")]
    Crypt {
        device: String,
        what: &'static str,
        source: LibcryptErr,
    },
    #[error("the LUKS2 volume on {0} does not open with this passphrase")]
    WrongPassphrase(String),
}

/// How the argon2id key slot is costed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pbkdf {
    /// Benchmarked to `time_ms`, memory up to `max_memory_kib`.
    Benchmarked {
        time_ms: u32,
        max_memory_kib: u32,
        parallel_threads: u32,
    },
    /// Fixed cost, no benchmark (tests, very small machines).
    Fixed {
        iterations: u32,
        memory_kib: u32,
        parallel_threads: u32,
    },
}

impl Pbkdf {
    /// cryptsetup's defaults sized for a machine with this RAM and CPUs.
    pub fn for_machine(memory_bytes: u64, cpus: u32) -> Self {
        let half_kib = (memory_bytes / 1024 / 2).min(u64::from(u32::MAX)) as u32;
        Pbkdf::Benchmarked {
            time_ms: DEFAULT_TIME_MS,
            max_memory_kib: DEFAULT_MEMORY_KIB.min(half_kib.max(32 * 1024)),
            parallel_threads: DEFAULT_THREADS.min(cpus.max(1)),
        }
    }

    fn to_crypt(self) -> CryptPbkdfType {
        match self {
            Pbkdf::Benchmarked {
                time_ms,
                max_memory_kib,
                parallel_threads,
            } => CryptPbkdfType {
                type_: CryptKdf::Argon2Id,
                hash: Some("sha256".into()),
                time_ms,
                iterations: 0,
                max_memory_kb: max_memory_kib,
                parallel_threads,
                flags: CryptPbkdf::empty(),
            },
            Pbkdf::Fixed {
                iterations,
                memory_kib,
                parallel_threads,
            } => CryptPbkdfType {
                type_: CryptKdf::Argon2Id,
                hash: Some("sha256".into()),
                time_ms: 0,
                iterations,
                max_memory_kb: memory_kib,
                parallel_threads,
                flags: CryptPbkdf::NO_BENCHMARK,
            },
        }
    }
}

fn err(device: &Path, what: &'static str) -> impl FnOnce(LibcryptErr) -> LuksError {
    let device = device.display().to_string();
    move |source| LuksError::Crypt {
        device,
        what,
        source,
    }
}

/// Formats `device` as LUKS2 per `plan` with one key slot for `passphrase`.
pub fn format(
    device: &Path,
    plan: &LuksPlan,
    passphrase: &[u8],
    pbkdf: Pbkdf,
) -> Result<(), LuksError> {
    let mut dev = CryptInit::init(device).map_err(err(device, "opening"))?;
    let (cipher, mode) = plan
        .cipher
        .split_once('-')
        .unwrap_or(("aes", "xts-plain64"));
    let params = CryptParamsLuks2 {
        pbkdf: Some(pbkdf.to_crypt()),
        integrity: None,
        integrity_params: None,
        data_alignment: 0,
        data_device: None,
        sector_size: plan.sector_size,
        label: Some(plan.label.clone()),
        subsystem: None,
    };
    let mut pref: CryptParamsLuks2Ref<'_> = (&params)
        .try_into()
        .map_err(err(device, "preparing parameters"))?;
    dev.context_handle()
        .format::<CryptParamsLuks2Ref<'_>>(
            EncryptionFormat::Luks2,
            (cipher, mode),
            Some(plan.uuid),
            Either::Right(plan.key_bits as usize / 8),
            Some(&mut pref),
        )
        .map_err(err(device, "formatting LUKS2"))?;
    dev.keyslot_handle()
        .add_by_key(None, None, passphrase, CryptVolumeKey::empty())
        .map_err(err(device, "adding the passphrase key slot"))?;
    Ok(())
}

/// The UUID of the LUKS2 header on `device`, if it has one.
pub fn uuid(device: &Path) -> Option<uuid::Uuid> {
    let mut dev = CryptInit::init(device).ok()?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .ok()?;
    dev.status_handle().get_uuid().ok()
}

/// Whether `passphrase` opens the LUKS2 volume on `device` (no device-mapper needed).
pub fn test_passphrase(device: &Path, passphrase: &[u8]) -> Result<bool, LuksError> {
    let mut dev = CryptInit::init(device).map_err(err(device, "opening"))?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(err(device, "reading the LUKS2 header"))?;
    Ok(dev
        .activate_handle()
        .activate_by_passphrase(None, None, passphrase, CryptActivate::empty())
        .is_ok())
}

/// Whether a dm mapping `name` exists.
pub fn is_active(name: &str) -> bool {
    Path::new("/dev/mapper").join(name).exists()
}

/// Opens the LUKS2 volume on `device` as `/dev/mapper/NAME`.
pub fn open(device: &Path, name: &str, passphrase: &[u8]) -> Result<(), LuksError> {
    let mut dev = CryptInit::init(device).map_err(err(device, "opening"))?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(err(device, "reading the LUKS2 header"))?;
    match dev.activate_handle().activate_by_passphrase(
        Some(name),
        None,
        passphrase,
        CryptActivate::empty(),
    ) {
        Ok(_) => Ok(()),
        Err(LibcryptErr::IOError(e)) if e.raw_os_error() == Some(libc::EPERM) => {
            Err(LuksError::WrongPassphrase(device.display().to_string()))
        }
        Err(source) => Err(LuksError::Crypt {
            device: device.display().to_string(),
            what: "activating",
            source,
        }),
    }
}

/// Closes `/dev/mapper/NAME`.
pub fn close(name: &str) -> Result<(), LuksError> {
    let path = Path::new("/dev/mapper").join(name);
    let mut dev = CryptInit::init_by_name_and_header(name, None).map_err(err(&path, "finding"))?;
    dev.activate_handle()
        .deactivate(name, CryptDeactivate::empty())
        .map_err(err(&path, "closing"))
}
