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
    #[error("reading the passphrase from {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
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
        let mut buf = Zeroizing::new(Vec::new());
        let what = if path == Path::new("-") {
            "stdin".to_string()
        } else {
            path.display().to_string()
        };
        let res = if path == Path::new("-") {
            std::io::stdin().lock().read_to_end(&mut buf)
        } else {
            std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut buf))
        };
        res.map_err(|source| PassphraseError::Io { what, source })?;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        Ok(Self::new(buf)?)
    }

    /// Asks once on the terminal, without echo (to unlock, not to set).
    pub fn from_tty_once(disk: &str) -> Result<Self, PassphraseError> {
        let s =
            rpassword::prompt_password(format!("Passphrase for {disk}: ")).map_err(|source| {
                PassphraseError::Io {
                    what: "the terminal".into(),
                    source,
                }
            })?;
        Ok(Self::new(Zeroizing::new(s.into_bytes()))?)
    }

    /// Asks twice on the terminal, without echo.
    pub fn from_tty(disk: &str) -> Result<Self, PassphraseError> {
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map(|s| Zeroizing::new(s.into_bytes()))
                .map_err(|source| PassphraseError::Io {
                    what: "the terminal".into(),
                    source,
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
}
