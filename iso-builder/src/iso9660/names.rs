//! File identifiers for the entries of one directory, given in the order of
//! their real names and unique within it: collisions are renumbered in that
//! order, so the same directory always gets the same identifiers.
//!
//! - ECMA-119: d-characters, `NAME.EXT;1` in at most 30 characters (the
//!   extension at most 8), directories 31 characters without extension.
//! - Joliet: UCS-2 big-endian, at most 64 characters, files with `;1`; the
//!   characters Joliet forbids (controls and `*/:;?\`) become `_`.

use std::collections::HashSet;

use super::fields::d_char;

/// ECMA-119 identifiers for `entries` (name, is a directory).
pub(super) fn ecma119(entries: &[(&[u8], bool)]) -> Vec<Vec<u8>> {
    let mut taken = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (name, is_dir) in entries {
        let (base, ext): (Vec<u8>, Vec<u8>) = if *is_dir {
            (name.iter().map(|&c| d_char(c)).collect(), Vec::new())
        } else {
            match name.iter().rposition(|&c| c == b'.') {
                Some(i) if i > 0 => (
                    name[..i].iter().map(|&c| d_char(c)).collect(),
                    name[i + 1..].iter().take(8).map(|&c| d_char(c)).collect(),
                ),
                _ => (name.iter().map(|&c| d_char(c)).collect(), Vec::new()),
            }
        };
        let limit = if *is_dir { 31 } else { 30 - 1 - ext.len() };
        let make = |base: &[u8], suffix: &[u8]| {
            let keep = limit.saturating_sub(suffix.len()).min(base.len());
            let mut id = base[..keep].to_vec();
            id.extend_from_slice(suffix);
            if !*is_dir {
                id.push(b'.');
                id.extend_from_slice(&ext);
                id.extend_from_slice(b";1");
            }
            id
        };
        let mut id = make(&base, b"");
        let mut n = 0u32;
        while taken.contains(&id) {
            n += 1;
            id = make(&base, n.to_string().as_bytes());
        }
        taken.insert(id.clone());
        out.push(id);
    }
    out
}

/// Joliet identifiers for `entries` (name, is a directory).
pub(super) fn joliet(entries: &[(&[u8], bool)]) -> Vec<Vec<u8>> {
    let mut taken = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (name, is_dir) in entries {
        let units: Vec<u16> = String::from_utf8_lossy(name)
            .encode_utf16()
            .map(|u| match u {
                0..=0x1F => u16::from(b'_'),
                u if "*/:;?\\".encode_utf16().any(|c| c == u) => u16::from(b'_'),
                u => u,
            })
            .collect();
        let make = |suffix: &str| {
            let suffix: Vec<u16> = suffix.encode_utf16().collect();
            let keep = (64 - suffix.len()).min(units.len());
            let mut v: Vec<u16> = units[..keep].to_vec();
            v.extend(&suffix);
            if !*is_dir {
                v.extend(";1".encode_utf16());
            }
            v.iter().flat_map(|u| u.to_be_bytes()).collect::<Vec<u8>>()
        };
        let mut id = make("");
        let mut n = 0u32;
        while taken.contains(&id) {
            n += 1;
            id = make(&n.to_string());
        }
        taken.insert(id.clone());
        out.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_d_characters_and_unique() {
        let names = ecma119(&[
            (b"README.md", false),
            (b"readme.md", false),
            (b"a very long file name that goes on.tar.gz", false),
            (b"lib.d", true),
        ]);
        assert_eq!(names[0], b"README.MD;1");
        assert_eq!(names[1], b"README1.MD;1");
        assert!(
            names[2].len() <= 32,
            "{:?}",
            String::from_utf8_lossy(&names[2])
        );
        assert_eq!(names[3], b"LIB_D");
    }

    #[test]
    fn joliet_names_are_ucs2_cut_to_64_and_unique() {
        let long = "x".repeat(70);
        let names = joliet(&[
            (long.as_bytes(), false),
            (long.as_bytes(), false),
            (b"a:b", true),
        ]);
        let text = |v: &[u8]| {
            let units: Vec<u16> = v
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        };
        assert_eq!(text(&names[0]), format!("{};1", "x".repeat(64)));
        assert_eq!(text(&names[1]), format!("{}1;1", "x".repeat(63)));
        assert_eq!(text(&names[2]), "a_b");
    }
}
