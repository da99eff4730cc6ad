//! One directory hierarchy as ECMA-119 records it: its directories in
//! breadth-first order (children numbered in identifier order), each
//! directory's records sorted by identifier after `.` and `..`, its path
//! tables and its volume descriptor. The primary volume (ECMA-119 names,
//! Rock Ridge entries, continuation areas) and the Joliet volume (UCS-2
//! names, no symlinks) are two values of [`Volume`], with records pointing
//! into the same [`Files`] table.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;

use super::fields::{self, both16, both32};
use super::files::Files;
use super::names;
use super::options::{BLOCK, IsoError, Options};
use super::out::Out;
use super::rockridge as rr;
use crate::isotree::{Kind, Node, Tree};

/// Offset and length of the Application Use field in a volume descriptor
/// (ECMA-119 8.4.32): where the primary one carries the embedded checksum.
pub(super) const APP_USE: usize = 883;
pub(super) const APP_USE_LEN: usize = 512;

/// Which of the two hierarchies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// ECMA-119 identifiers with Rock Ridge.
    Primary,
    /// Joliet identifiers (UCS-2 level 3), no System Use entries.
    Joliet,
}

/// Where a directory record points.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A directory of this volume; [`PENDING`] until it is numbered.
    Dir(usize),
    /// Extent `part` of `parts` of a file's data.
    File { file: usize, part: u32, parts: u32 },
    /// No data (a symlink).
    Nothing,
}

/// A subdirectory whose number is not known yet.
const PENDING: usize = usize::MAX;

#[derive(Debug)]
struct Rec {
    ident: Vec<u8>,
    target: Target,
    /// SUSP entries kept in the record (without the CE entry).
    inline: Vec<u8>,
    /// Index of this record's continuation area.
    ce: Option<usize>,
}

impl Rec {
    fn len(&self) -> usize {
        let id = self.ident.len();
        33 + id + (1 - id % 2) + self.inline.len() + if self.ce.is_some() { rr::CE_LEN } else { 0 }
    }
}

#[derive(Debug)]
struct Dir {
    ident: Vec<u8>,
    parent: usize,
    records: Vec<Rec>,
    /// This directory's continuation areas, written right after it (where
    /// streaming readers such as libarchive expect them).
    ces: Range<usize>,
    blocks: u64,
    lba: u64,
}

#[derive(Debug)]
struct CeArea {
    data: Vec<u8>,
    block: u64,
    offset: u64,
}

/// One hierarchy: directories, records, continuation areas, path tables.
#[derive(Debug)]
pub(super) struct Volume {
    flavor: Flavor,
    /// Every record's date.
    date: [u8; 7],
    dirs: Vec<Dir>,
    ces: Vec<CeArea>,
    path_table_size: u64,
    l_table: u64,
    m_table: u64,
}

/// Splits a record's SUSP entries between the record (255 bytes at most,
/// `base` of them taken) and a continuation area pushed onto `ces`.
fn split_susp(
    path: &str,
    entries: Vec<Vec<u8>>,
    base: usize,
    ces: &mut Vec<CeArea>,
) -> Result<(Vec<u8>, Option<usize>), IsoError> {
    let total: usize = entries.iter().map(Vec::len).sum();
    if base + total <= 255 {
        return Ok((entries.concat(), None));
    }
    let room = 255 - base - rr::CE_LEN;
    let mut inline = Vec::new();
    let mut rest = Vec::new();
    let mut spilled = false;
    for e in entries {
        if !spilled && inline.len() + e.len() <= room {
            inline.extend_from_slice(&e);
        } else {
            spilled = true;
            rest.extend_from_slice(&e);
        }
    }
    if rest.len() > BLOCK as usize {
        return Err(IsoError::Unrepresentable {
            path: path.to_string(),
            reason: format!(
                "its Rock Ridge data ({} bytes, mostly the symlink target) exceeds one continuation block; shorten the target",
                rest.len()
            ),
        });
    }
    ces.push(CeArea {
        data: rest,
        block: 0,
        offset: 0,
    });
    Ok((inline, Some(ces.len() - 1)))
}

fn join(parent: &str, name: &[u8]) -> String {
    let n = String::from_utf8_lossy(name);
    if parent.is_empty() {
        n.into_owned()
    } else {
        format!("{parent}/{n}")
    }
}

/// Blocks a directory's records take (a record never crosses a block).
fn dir_blocks(records: &[Rec]) -> u64 {
    let mut blocks = 1u64;
    let mut used = 0u64;
    for r in records {
        let l = r.len() as u64;
        if used + l > BLOCK {
            blocks += 1;
            used = 0;
        }
        used += l;
    }
    blocks
}

/// Link counts Rock Ridge gives: directories 2 + subdirectories, files
/// their link group's size.
struct Links(HashMap<u64, u32>);

impl Links {
    fn of(tree: &Tree) -> Self {
        let mut groups: HashMap<u64, u32> = HashMap::new();
        let mut stack = vec![&tree.root];
        while let Some(n) = stack.pop() {
            if let Kind::Dir(ch) = &n.kind {
                for c in ch.values() {
                    match &c.kind {
                        Kind::Dir(_) => stack.push(c),
                        Kind::File(f) => {
                            if let Some(g) = f.link_group {
                                *groups.entry(g).or_default() += 1;
                            }
                        }
                        Kind::Symlink(_) => {}
                    }
                }
            }
        }
        Links(groups)
    }

    fn count(&self, n: &Node) -> u32 {
        match &n.kind {
            Kind::Dir(ch) => {
                2 + ch
                    .values()
                    .filter(|c| matches!(c.kind, Kind::Dir(_)))
                    .count() as u32
            }
            Kind::File(f) => f
                .link_group
                .and_then(|g| self.0.get(&g).copied())
                .unwrap_or(1),
            Kind::Symlink(_) => 1,
        }
    }
}

/// A directory waiting in the breadth-first queue.
struct Queued<'a> {
    node: &'a Node,
    children: &'a BTreeMap<Vec<u8>, Node>,
    path: String,
    parent: usize,
    ident: Vec<u8>,
}

impl Volume {
    /// Builds the `flavor` hierarchy of `tree`, interning its files in
    /// `files` (the primary volume is built first: it decides the table's
    /// order).
    pub fn build(
        tree: &Tree,
        flavor: Flavor,
        files: &mut Files,
        epoch: i64,
    ) -> Result<Self, IsoError> {
        let date = fields::record_date(epoch);
        let rock_ridge = flavor == Flavor::Primary;
        let links = if rock_ridge {
            Links::of(tree)
        } else {
            Links(HashMap::new())
        };
        let Kind::Dir(root_children) = &tree.root.kind else {
            return Err(IsoError::Layout(
                "the tree's root is not a directory".into(),
            ));
        };
        let mut dirs: Vec<Dir> = Vec::new();
        let mut ces: Vec<CeArea> = Vec::new();
        let mut dir_nodes: Vec<&Node> = Vec::new();
        let mut queue = VecDeque::from([Queued {
            node: &tree.root,
            children: root_children,
            path: String::new(),
            parent: 0,
            ident: vec![0],
        }]);
        while let Some(q) = queue.pop_front() {
            let me = dirs.len();
            let ce_start = ces.len();
            if me >= 65535 {
                return Err(IsoError::Unrepresentable {
                    path: q.path,
                    reason: "more than 65535 directories do not fit the path table".into(),
                });
            }
            dir_nodes.push(q.node);
            let mut records = Vec::new();
            // "." and "..".
            let parent_node = if me == 0 { q.node } else { dir_nodes[q.parent] };
            for (i, n) in [(0u8, q.node), (1u8, parent_node)] {
                let mut e = Vec::new();
                if rock_ridge {
                    if me == 0 && i == 0 {
                        e.push(rr::sp());
                    }
                    e.push(rr::px(n.mode(), links.count(n), n.uid, n.gid));
                    e.push(rr::tf(&date));
                    if me == 0 && i == 0 {
                        e.push(rr::er());
                    }
                }
                let (inline, ce) = split_susp(&q.path, e, 34, &mut ces)?;
                records.push(Rec {
                    ident: vec![i],
                    target: Target::Dir(if i == 0 { me } else { q.parent }),
                    inline,
                    ce,
                });
            }
            // Symlinks have no Joliet form.
            let kept: Vec<(&Vec<u8>, &Node)> = q
                .children
                .iter()
                .filter(|(_, c)| rock_ridge || !matches!(c.kind, Kind::Symlink(_)))
                .collect();
            let entries: Vec<(&[u8], bool)> = kept
                .iter()
                .map(|(k, v)| (k.as_slice(), matches!(v.kind, Kind::Dir(_))))
                .collect();
            let idents = match flavor {
                Flavor::Primary => names::ecma119(&entries),
                Flavor::Joliet => names::joliet(&entries),
            };
            let mut kids = Vec::new();
            for ((name, child), ident) in kept.into_iter().zip(idents) {
                let cpath = join(&q.path, name);
                let mut e = Vec::new();
                if rock_ridge {
                    e.push(rr::px(
                        child.mode(),
                        links.count(child),
                        child.uid,
                        child.gid,
                    ));
                    e.push(rr::tf(&date));
                    e.extend(rr::nm(name));
                    if let Kind::Symlink(t) = &child.kind {
                        e.extend(rr::sl(t));
                    }
                }
                let base = 33 + ident.len() + (1 - ident.len() % 2);
                match &child.kind {
                    Kind::Dir(children) => {
                        let (inline, ce) = split_susp(&cpath, e, base, &mut ces)?;
                        records.push(Rec {
                            ident: ident.clone(),
                            target: Target::Dir(PENDING),
                            inline,
                            ce,
                        });
                        kids.push(Queued {
                            node: child,
                            children,
                            path: cpath,
                            parent: me,
                            ident,
                        });
                    }
                    Kind::File(f) => {
                        let file = files.intern(child, &cpath, f);
                        // The primary tree counts extents from the node's
                        // own size, Joliet from the shared entry's (they
                        // differ only for links of unequal size).
                        let size = match flavor {
                            Flavor::Primary => f.size,
                            Flavor::Joliet => files.get(file).size,
                        };
                        let parts = u32::try_from(files.parts(size)).map_err(|_| {
                            IsoError::Unrepresentable {
                                path: cpath.clone(),
                                reason: "file too large".into(),
                            }
                        })?;
                        for part in 0..parts {
                            let (inline, ce) = split_susp(&cpath, e.clone(), base, &mut ces)?;
                            records.push(Rec {
                                ident: ident.clone(),
                                target: Target::File { file, part, parts },
                                inline,
                                ce,
                            });
                        }
                    }
                    Kind::Symlink(_) => {
                        let (inline, ce) = split_susp(&cpath, e, base, &mut ces)?;
                        records.push(Rec {
                            ident,
                            target: Target::Nothing,
                            inline,
                            ce,
                        });
                    }
                }
            }
            // Sorted by identifier after "." and ".."; the parts of a
            // multi-extent file keep their order.
            records[2..].sort_by(|a, b| a.ident.cmp(&b.ident));
            // Subdirectories are numbered in identifier order, after every
            // directory already numbered (breadth-first): the pending
            // records, now sorted, meet them in that order.
            kids.sort_by(|a, b| a.ident.cmp(&b.ident));
            let first_new = dirs.len() + queue.len() + 1;
            let pending = records
                .iter_mut()
                .filter(|r| matches!(r.target, Target::Dir(PENDING)));
            for (r, n) in pending.zip(first_new..) {
                r.target = Target::Dir(n);
            }
            queue.extend(kids);
            let blocks = dir_blocks(&records);
            dirs.push(Dir {
                ident: q.ident,
                parent: q.parent,
                records,
                ces: ce_start..ces.len(),
                blocks,
                lba: 0,
            });
        }
        let path_table_size = dirs
            .iter()
            .map(|d| 8 + d.ident.len() as u64 + d.ident.len() as u64 % 2)
            .sum();
        Ok(Volume {
            flavor,
            date,
            dirs,
            ces,
            path_table_size,
            l_table: 0,
            m_table: 0,
        })
    }

    /// Layout pass: the L then the M path table from block `start`;
    /// returns their blocks.
    pub fn place_path_tables(&mut self, start: u64) -> u64 {
        let blocks = self.path_table_size.div_ceil(BLOCK);
        self.l_table = start;
        self.m_table = start + blocks;
        2 * blocks
    }

    /// Layout pass: every directory from block `start`, each followed by
    /// its continuation areas (packed, none crossing a block); returns
    /// their blocks.
    pub fn place_directories(&mut self, start: u64) -> u64 {
        let mut next = start;
        for d in &mut self.dirs {
            d.lba = next;
            next += d.blocks;
            let (mut block, mut used) = (next, 0u64);
            for c in &mut self.ces[d.ces.clone()] {
                if used + c.data.len() as u64 > BLOCK {
                    block += 1;
                    used = 0;
                }
                c.block = block;
                c.offset = used;
                used += c.data.len() as u64;
            }
            if !d.ces.is_empty() {
                next = block + 1;
            }
        }
        next - start
    }

    /// Write pass: the L and the M path table, each padded to a block.
    pub fn write_path_tables(&self, w: &mut Out) -> Result<(), IsoError> {
        for big_endian in [false, true] {
            let mut t = Vec::with_capacity(self.path_table_size as usize);
            for d in &self.dirs {
                t.push(d.ident.len() as u8);
                t.push(0);
                let lba = d.lba as u32;
                let parent = (d.parent + 1) as u16;
                if big_endian {
                    t.extend_from_slice(&lba.to_be_bytes());
                    t.extend_from_slice(&parent.to_be_bytes());
                } else {
                    t.extend_from_slice(&lba.to_le_bytes());
                    t.extend_from_slice(&parent.to_le_bytes());
                }
                t.extend_from_slice(&d.ident);
                if d.ident.len() % 2 == 1 {
                    t.push(0);
                }
            }
            w.put(&t)?;
            w.pad()?;
        }
        Ok(())
    }

    /// Write pass: every directory (a record that would cross a block
    /// starts the next), then its continuation areas.
    pub fn write_directories(&self, w: &mut Out, files: &Files) -> Result<(), IsoError> {
        for d in &self.dirs {
            w.expect(d.lba)?;
            let mut used = 0u64;
            for r in &d.records {
                let b = self.record(r, files);
                if used + b.len() as u64 > BLOCK {
                    w.zeros(BLOCK - used)?;
                    used = 0;
                }
                used += b.len() as u64;
                w.put(&b)?;
            }
            w.pad()?;
            for c in &self.ces[d.ces.clone()] {
                if w.pos() < c.block * BLOCK {
                    w.pad()?;
                }
                w.expect_at(c.block * BLOCK + c.offset)?;
                w.put(&c.data)?;
            }
            w.pad()?;
        }
        Ok(())
    }

    /// The bytes of one directory record (ECMA-119 9.1).
    fn record(&self, r: &Rec, files: &Files) -> Vec<u8> {
        let (lba, size, flags) = match r.target {
            Target::Dir(d) => {
                let d = &self.dirs[d];
                (d.lba, d.blocks * BLOCK, 0x02u8)
            }
            Target::Nothing => (0, 0, 0),
            Target::File { file, part, parts } => {
                let (lba, len) = files.extent(file, part);
                (lba, len, if part + 1 < parts { 0x80 } else { 0 })
            }
        };
        let mut b = Vec::with_capacity(r.len());
        b.push(r.len() as u8);
        b.push(0);
        b.extend_from_slice(&both32(lba as u32));
        b.extend_from_slice(&both32(size as u32));
        b.extend_from_slice(&self.date);
        b.push(flags);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&both16(1));
        b.push(r.ident.len() as u8);
        b.extend_from_slice(&r.ident);
        if r.ident.len().is_multiple_of(2) {
            b.push(0);
        }
        b.extend_from_slice(&r.inline);
        if let Some(c) = r.ce {
            let c = &self.ces[c];
            b.extend_from_slice(&rr::ce(
                c.block as u32,
                c.offset as u32,
                c.data.len() as u32,
            ));
        }
        b
    }

    /// This volume's descriptor: the primary one, or the Joliet
    /// supplementary one (escape `%/E`, identifiers in UCS-2). With
    /// `opts.embed_checksum` the primary one's Application Use field is
    /// blank (spaces), as the embedded checksum reads it.
    pub fn descriptor(&self, opts: &Options, total_blocks: u64, files: &Files) -> Vec<u8> {
        let joliet = self.flavor == Flavor::Joliet;
        let mut v = vec![0u8; BLOCK as usize];
        v[0] = if joliet { 2 } else { 1 };
        v[1..6].copy_from_slice(b"CD001");
        v[6] = 1;
        let text = if joliet {
            fields::ucs2_text
        } else {
            fields::text
        };
        text(&mut v[8..40], "LINUX");
        text(&mut v[40..72], &opts.volume_id);
        v[80..88].copy_from_slice(&both32(total_blocks as u32));
        if joliet {
            v[88..91].copy_from_slice(b"%/E");
        }
        v[120..124].copy_from_slice(&both16(1));
        v[124..128].copy_from_slice(&both16(1));
        v[128..132].copy_from_slice(&both16(BLOCK as u16));
        v[132..140].copy_from_slice(&both32(self.path_table_size as u32));
        v[140..144].copy_from_slice(&(self.l_table as u32).to_le_bytes());
        v[148..152].copy_from_slice(&(self.m_table as u32).to_be_bytes());
        let root = Rec {
            ident: vec![0],
            target: Target::Dir(0),
            inline: Vec::new(),
            ce: None,
        };
        v[156..190].copy_from_slice(&self.record(&root, files));
        text(&mut v[190..318], "");
        text(&mut v[318..446], &opts.publisher);
        text(&mut v[446..574], "");
        text(&mut v[574..702], &opts.application);
        text(&mut v[702..813], "");
        let d = fields::descriptor_date(opts.epoch);
        v[813..830].copy_from_slice(&d);
        v[830..847].copy_from_slice(&d);
        v[847..864].copy_from_slice(b"0000000000000000\0");
        v[864..881].copy_from_slice(&d);
        v[881] = 1;
        if opts.embed_checksum && !joliet {
            v[APP_USE..APP_USE + APP_USE_LEN].fill(b' ');
        }
        v
    }
}
