//! The passphrase: read from the terminal (asked twice) or from a file or
//! stdin for unattended installs; never from argv or the environment. It
//! lives in `secrecy` memory that is zeroized on drop and never printed.

use std::io::Read;
use std::path::Path;

use secrecy::{ExposeSecret, SecretSlice};
use zeroize::Zeroizing;

use crate::refuse::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("reading the passphrase from {what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error(transparent)]
    File(#[from] SecretFileError),
}

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("reading {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{path} is not a regular file; give the file that holds the secret")]
    NotAFile { path: String },
    #[error("{path} is longer than {MAX_SECRET} bytes: is it the right file?")]
    TooLong { path: String },
}

/// The longest secret a file may hold (cryptsetup's own passphrase limit
/// is 512 characters; this leaves room and keeps one allocation).
pub const MAX_SECRET: usize = 4096;

/// The one reader of secret files for every program: `-` is stdin; a file
/// must be a regular file (a directory, FIFO or device is refused before
/// anything blocks on it); one trailing `\n` or `\r\n` is dropped (a file
/// written on Windows gives the same secret). The buffer is allocated once,
/// so reading leaves no copies behind; it is zeroized on drop.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = || {
        if path == Path::new("-") {
            "stdin".to_string()
        } else {
            path.display().to_string()
        }
    };
    let io = |cause| SecretFileError::Io {
        path: shown(),
        cause,
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET + 1));
    let limit = (MAX_SECRET + 1) as u64;
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(io)?;
    } else {
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io)?;
        if !f.metadata().map_err(io)?.is_file() {
            return Err(SecretFileError::NotAFile { path: shown() });
        }
        f.take(limit).read_to_end(&mut buf).map_err(io)?;
    }
    if buf.len() > MAX_SECRET {
        return Err(SecretFileError::TooLong { path: shown() });
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(buf)
}

/// A passphrase; `Debug` shows `[REDACTED]`.
#[derive(Debug)]
pub struct Passphrase(SecretSlice<u8>);

impl Passphrase {
    /// Takes the bytes; refuses an empty passphrase.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Result<Self, Refusal> {
        if bytes.is_empty() {
            return Err(Refusal::EmptyPassphrase);
        }
        Ok(Self(SecretSlice::from(bytes.to_vec())))
    }

    /// Two entries must match.
    pub fn confirmed(
        first: Zeroizing<Vec<u8>>,
        second: Zeroizing<Vec<u8>>,
    ) -> Result<Self, Refusal> {
        if first.is_empty() {
            return Err(Refusal::EmptyPassphrase);
        }
        if *first != *second {
            return Err(Refusal::PassphraseMismatch);
        }
        Self::new(first)
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// From a file (`-` = stdin): its content without one trailing newline.
    pub fn from_file(path: &Path) -> Result<Self, PassphraseError> {
        Ok(Self::new(read_secret(path)?)?)
    }

    /// Asks once on the terminal, without echo (to unlock, not to set).
    pub fn from_tty_once(disk: &str) -> Result<Self, PassphraseError> {
        let s =
            rpassword::prompt_password(format!("Passphrase for {disk}: ")).map_err(|source| {
                PassphraseError::Io {
                    what: "the terminal".into(),
                    cause: source,
                }
            })?;
        Ok(Self::new(Zeroizing::new(s.into_bytes()))?)
    }

    /// Asks twice on the terminal, without echo.
    pub fn from_tty(disk: &str) -> Result<Self, PassphraseError> {
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map(|s| Zeroizing::new(s.into_bytes()))
                .map_err(|cause| PassphraseError::Io {
                    what: "the terminal".into(),
                    cause,
                })
        };
        let a = ask(&format!("Passphrase for the encrypted disk {disk}: "))?;
        let b = ask("The same passphrase again: ")?;
        Ok(Self::confirmed(a, b)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(s.as_bytes().to_vec())
    }

    #[test]
    fn empty_and_mismatch_refused() {
        assert_eq!(
            Passphrase::new(z("")).unwrap_err(),
            Refusal::EmptyPassphrase
        );
        assert_eq!(
            Passphrase::confirmed(z(""), z("")).unwrap_err(),
            Refusal::EmptyPassphrase
        );
        assert_eq!(
            Passphrase::confirmed(z("a"), z("b")).unwrap_err(),
            Refusal::PassphraseMismatch
        );
        assert_eq!(
            Passphrase::confirmed(z("a b"), z("a b")).unwrap().expose(),
            b"a b"
        );
    }

    #[test]
    fn never_printed() {
        let p = Passphrase::new(z("hunter2")).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn file_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret\n\n").unwrap();
        assert_eq!(Passphrase::from_file(&f).unwrap().expose(), b"secret\n");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            Passphrase::from_file(&f),
            Err(PassphraseError::Refused(Refusal::EmptyPassphrase))
        ));
    }

    #[test]
    fn a_windows_file_gives_the_same_secret_and_odd_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\r\n").unwrap();
        assert_eq!(*read_secret(&f).unwrap(), b"s3cret");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(*read_secret(&f).unwrap(), b"s3cret");
        std::fs::write(&f, vec![b'a'; MAX_SECRET + 1]).unwrap();
        assert!(matches!(
            read_secret(&f),
            Err(SecretFileError::TooLong { .. })
        ));
        assert!(matches!(
            read_secret(dir.path()),
            Err(SecretFileError::NotAFile { .. })
        ));
        // A FIFO with no writer is refused at once instead of blocking.
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(matches!(
            read_secret(&fifo),
            Err(SecretFileError::NotAFile { .. })
        ));
    }
}
