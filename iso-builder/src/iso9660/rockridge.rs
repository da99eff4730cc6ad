//! Rock Ridge (RRIP 1.10, "RRIP_1991A") System Use entries over SUSP 1.10:
//! SP and ER on the root, PX (mode, links, owner), TF (times), NM (names
//! up to 255 bytes, split with the CONTINUE flag), SL (symlink components)
//! and CE (continuation areas). Each function returns finished entries; the
//! writer decides which go into the directory record and which into a
//! continuation area.

use super::fields::both32;

/// Largest SUSP entry (its length field is one byte).
const MAX_ENTRY: usize = 255;

fn entry(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(4 + body.len());
    e.extend_from_slice(sig);
    e.push((4 + body.len()) as u8);
    e.push(1);
    e.extend_from_slice(body);
    e
}

/// SP: the root's first entry, announcing SUSP with no skipped bytes.
pub fn sp() -> Vec<u8> {
    entry(b"SP", &[0xBE, 0xEF, 0])
}

/// ER: names the extension (RRIP 1.10) as its specification asks.
pub fn er() -> Vec<u8> {
    const ID: &[u8] = b"RRIP_1991A";
    const DES: &[u8] =
        b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
    const SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";
    let mut body = vec![ID.len() as u8, DES.len() as u8, SRC.len() as u8, 1];
    body.extend_from_slice(ID);
    body.extend_from_slice(DES);
    body.extend_from_slice(SRC);
    entry(b"ER", &body)
}

/// PX: POSIX mode (with type bits), link count, owner and group.
pub fn px(mode: u32, nlink: u32, uid: u32, gid: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    for v in [mode, nlink, uid, gid] {
        body.extend_from_slice(&both32(v));
    }
    entry(b"PX", &body)
}

/// TF: modification, access and attribute-change times, all `date`.
pub fn tf(date: &[u8; 7]) -> Vec<u8> {
    let mut body = vec![0x02 | 0x04 | 0x08];
    for _ in 0..3 {
        body.extend_from_slice(date);
    }
    entry(b"TF", &body)
}

/// NM entries for `name`, split into pieces that fit one entry each.
pub fn nm(name: &[u8]) -> Vec<Vec<u8>> {
    let max = MAX_ENTRY - 5;
    let pieces: Vec<&[u8]> = name.chunks(max).collect();
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut body = vec![if i + 1 < n { 0x01 } else { 0 }];
            body.extend_from_slice(p);
            entry(b"NM", &body)
        })
        .collect()
}

/// SL entries for a symlink target: component records packed into as few
/// entries as fit, every entry but the last flagged CONTINUE.
pub fn sl(target: &[u8]) -> Vec<Vec<u8>> {
    // Largest component content so that one record fits an empty SL entry.
    let max_content = MAX_ENTRY - 5 - 2;
    let mut records: Vec<Vec<u8>> = Vec::new();
    if target.first() == Some(&b'/') {
        records.push(vec![0x08, 0]);
    }
    for comp in target.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        match comp {
            b"." => records.push(vec![0x02, 0]),
            b".." => records.push(vec![0x04, 0]),
            _ => {
                let pieces: Vec<&[u8]> = comp.chunks(max_content).collect();
                let n = pieces.len();
                for (i, p) in pieces.into_iter().enumerate() {
                    let mut r = vec![if i + 1 < n { 0x01 } else { 0 }, p.len() as u8];
                    r.extend_from_slice(p);
                    records.push(r);
                }
            }
        }
    }
    if records.is_empty() {
        records.push(vec![0x02, 0]);
    }
    let mut bodies: Vec<Vec<u8>> = vec![vec![0]];
    for r in records {
        let cur = bodies.last_mut().expect("one body at least");
        if 4 + cur.len() + r.len() > MAX_ENTRY {
            cur[0] = 0x01;
            bodies.push(vec![0]);
        }
        bodies
            .last_mut()
            .expect("one body at least")
            .extend_from_slice(&r);
    }
    bodies.iter().map(|b| entry(b"SL", b)).collect()
}

/// CE: where the rest of this record's entries continue.
pub fn ce(lba: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    for v in [lba, offset, len] {
        body.extend_from_slice(&both32(v));
    }
    entry(b"CE", &body)
}

/// Length of a CE entry.
pub const CE_LEN: usize = 28;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_split_with_continue() {
        let name = vec![b'a'; 255];
        let e = nm(&name);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][4], 1);
        assert_eq!(e[1][4], 0);
        assert_eq!(e[0].len() + e[1].len() - 10, 255);
        assert!(e.iter().all(|x| x.len() <= 255 && x[2] as usize == x.len()));
    }

    #[test]
    fn symlink_components() {
        let e = sl(b"/usr/../lib/./x");
        assert_eq!(e.len(), 1);
        let body = &e[0][5..];
        assert_eq!(
            body,
            &[
                8, 0, 0, 3, b'u', b's', b'r', 4, 0, 0, 3, b'l', b'i', b'b', 2, 0, 0, 1, b'x'
            ][..]
        );
        let long = vec![b'z'; 700];
        let e = sl(&long);
        assert!(e.len() >= 3);
        assert!(e.iter().all(|x| x.len() <= 255 && x[2] as usize == x.len()));
        assert!(e[..e.len() - 1].iter().all(|x| x[4] == 1));
    }
}
