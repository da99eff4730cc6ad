//! The secrets of an install, kept apart from the answers: the disk
//! passphrase and the dom0 user's password hash, how the password is hashed
//! (as Debian 12 does) and how strong a passphrase looks.

use partitioner::secret::Passphrase;

/// The secrets of an install, kept apart from the answers: zeroized on drop,
/// `Debug` prints `[REDACTED]`.
pub struct Secrets {
    pub passphrase: Passphrase,
    /// The dom0 user's password, already hashed (yescrypt) for /etc/shadow.
    pub password_hash: String,
}

/// Neither the passphrase nor the password's hash (which an attacker could
/// crack offline) is ever printed.
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("passphrase", &"[REDACTED]")
            .field("password_hash", &"[REDACTED]")
            .finish()
    }
}

/// A password that cannot be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is not UTF-8 text")]
    NotUtf8,
    #[error("hashing the password with libxcrypt's yescrypt: {0}")]
    Crypt(String),
}

/// Hashes a password for /etc/shadow as Debian 12 does (pam_unix's
/// `yescrypt` with libxcrypt's default cost), through libxcrypt itself, the
/// library that checks it at login.
pub fn hash_password(password: &[u8]) -> Result<String, PasswordError> {
    let text = std::str::from_utf8(password).map_err(|_| PasswordError::NotUtf8)?;
    let crypt = |e: xcrypt::Error| PasswordError::Crypt(e.to_string());
    let setting = xcrypt::crypt_gensalt(Some("$y$"), 0, None).map_err(crypt)?;
    xcrypt::crypt(text, &setting).map_err(crypt)
}

/// How strong a passphrase looks: 0 (very weak) to 4 (strong), with advice.
/// A rough estimate (length and character classes); it never blocks.
pub fn strength(pass: &[u8]) -> (u8, &'static str) {
    let len = std::str::from_utf8(pass)
        .map(|s| s.chars().count())
        .unwrap_or(pass.len());
    let classes = [
        pass.iter().any(|c| c.is_ascii_lowercase()),
        pass.iter().any(|c| c.is_ascii_uppercase()),
        pass.iter().any(|c| c.is_ascii_digit()),
        pass.iter().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let words = pass
        .split(|c| *c == b' ' || *c == b'-')
        .filter(|w| !w.is_empty())
        .count();
    let score = match len {
        0..=7 => 0,
        8..=11 => 1 + u8::from(classes >= 3),
        12..=19 => 2 + u8::from(classes >= 3 || words >= 4),
        _ => 3 + u8::from(classes >= 2 || words >= 5),
    };
    let advice = match score {
        0 => "very weak: use at least 12 characters, better several words",
        1 => "weak: make it longer; several unrelated words are easy to type",
        2 => "fair: a few more characters or words make it much stronger",
        3 => "good",
        _ => "strong",
    };
    (score.min(4), advice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_grows_with_length_and_variety() {
        assert_eq!(strength(b"abc").0, 0);
        assert!(strength(b"correct horse battery staple").0 >= 3);
        assert!(strength(b"Tr0ub4dor&3xyz").0 > strength(b"troubadorxyz").0);
    }

    #[test]
    fn password_hash_is_yescrypt_and_checks() {
        let h = hash_password(b"s3cret").unwrap();
        assert!(h.starts_with("$y$"), "{h}");
        assert_ne!(
            h,
            hash_password(b"s3cret").unwrap(),
            "a fresh salt each time"
        );
        assert_eq!(xcrypt::crypt("s3cret", &h).unwrap(), h);
        assert_ne!(xcrypt::crypt("other", &h).unwrap(), h);
        assert!(matches!(
            hash_password(b"\xff"),
            Err(PasswordError::NotUtf8)
        ));
    }

    proptest::proptest! {
        #[test]
        fn strength_never_panics_and_stays_in_range(b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let (score, advice) = strength(&b);
            proptest::prop_assert!(score <= 4 && !advice.is_empty());
        }
    }
}
