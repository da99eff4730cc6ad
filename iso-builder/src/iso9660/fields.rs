//! ECMA-119 field encodings: both-byte-order integers (7.2.3, 7.3.3),
//! dates (9.1.5 in records, 8.4.26.1 in volume descriptors), d-characters
//! (7.4.1) and the space-padded text fields of volume descriptors, in
//! bytes or, for Joliet, in UCS-2.

/// Both-byte-order 16-bit field (ECMA-119 7.2.3).
pub fn both16(v: u16) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

/// Both-byte-order 32-bit field (ECMA-119 7.3.3).
pub fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

pub use crate::calendar::civil;

/// The 7-byte date of directory records (and Rock Ridge TF), UTC.
pub(super) fn record_date(epoch: i64) -> [u8; 7] {
    let (y, m, d, h, mi, s) = civil(epoch);
    [
        (y - 1900) as u8,
        m as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        0,
    ]
}

/// The 17-byte date of volume descriptors (digits, then the UTC offset).
pub(super) fn descriptor_date(epoch: i64) -> [u8; 17] {
    let (y, m, d, h, mi, s) = civil(epoch);
    let text = format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut b = [0u8; 17];
    b[..16].copy_from_slice(text.as_bytes());
    b
}

/// GRUB's name for the volume (`search --fs-uuid`): the modification date.
pub fn grub_fs_uuid(epoch: i64) -> String {
    let (y, m, d, h, mi, s) = civil(epoch);
    format!("{y:04}-{m:02}-{d:02}-{h:02}-{mi:02}-{s:02}-00")
}

/// `c` as a d-character: upper case kept, lower case raised, anything else
/// `_`.
pub(super) fn d_char(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' | b'0'..=b'9' | b'_' => c,
        b'a'..=b'z' => c - 32,
        _ => b'_',
    }
}

/// Whether `s` is made of d-characters only.
pub(super) fn is_d_chars(s: &str) -> bool {
    s.bytes().all(|c| d_char(c) == c)
}

/// A text field of the primary descriptor: `s` (cut to fit), then spaces.
pub(super) fn text(field: &mut [u8], s: &str) {
    field.fill(b' ');
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// A text field of the Joliet descriptor: `s` in UCS-2 big-endian (cut to
/// fit), then UCS-2 spaces (a field of odd length ends in one zero byte).
pub(super) fn ucs2_text(field: &mut [u8], s: &str) {
    for c in field.chunks_mut(2) {
        c.copy_from_slice(&[0, b' '][..c.len()]);
    }
    let units: Vec<u16> = s.encode_utf16().take(field.len() / 2).collect();
    for (i, u) in units.iter().enumerate() {
        field[2 * i..2 * i + 2].copy_from_slice(&u.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(grub_fs_uuid(1_700_000_000), "2023-11-14-22-13-20-00");
    }

    #[test]
    fn both_byte_orders_and_padded_text() {
        assert_eq!(both32(0x0102_0304), [4, 3, 2, 1, 1, 2, 3, 4]);
        assert_eq!(both16(0x0102), [2, 1, 1, 2]);
        let mut f = [0u8; 5];
        text(&mut f, "AB");
        assert_eq!(&f, b"AB   ");
        ucs2_text(&mut f, "A");
        assert_eq!(f, [0, b'A', 0, b' ', 0]);
    }
}
