//! The file table both volumes point into, and the file-data writer.
//!
//! One entry per file's data, in the order the primary tree's
//! breadth-first walk meets them; hard links (one link group) share one
//! entry, so one extent. Data is laid out in table order with the ESP
//! image moved last (the GPT's EFI System partition is then the image's
//! last data and never overlaps the ISO9660 partition); empty files take
//! no block.

use std::collections::HashMap;
use std::fs;

use super::options::{BLOCK, BiosBoot, IsoError, Options, io_err};
use super::out::Out;
use crate::eltorito;
use crate::isotree::{self, Node, Source};

#[derive(Debug)]
pub(super) struct FileData {
    /// Tree path of the first link met.
    pub path: String,
    pub source: Source,
    pub size: u64,
    /// First block, once placed.
    pub lba: u64,
}

#[derive(Debug)]
pub(super) struct Files {
    list: Vec<FileData>,
    by_node: HashMap<*const Node, usize>,
    by_group: HashMap<u64, usize>,
    extent: u64,
    bios_image: Option<String>,
    efi_image: Option<String>,
    bios: Option<usize>,
    efi: Option<usize>,
}

impl Files {
    pub fn new(opts: &Options) -> Self {
        Files {
            list: Vec::new(),
            by_node: HashMap::new(),
            by_group: HashMap::new(),
            extent: opts.extent(),
            bios_image: opts.bios.as_ref().map(|b| b.image.clone()),
            efi_image: opts.efi_image.clone(),
            bios: None,
            efi: None,
        }
    }

    /// The entry of the file `node` at tree path `path`: the one it already
    /// has, its link group's, or a new one.
    pub fn intern(&mut self, node: &Node, path: &str, f: &isotree::File) -> usize {
        let key = node as *const Node;
        let idx = match self.by_node.get(&key) {
            Some(&i) => i,
            None => match f.link_group.and_then(|g| self.by_group.get(&g).copied()) {
                Some(i) => i,
                None => {
                    self.list.push(FileData {
                        path: path.to_string(),
                        source: f.source.clone(),
                        size: f.size,
                        lba: 0,
                    });
                    let i = self.list.len() - 1;
                    if let Some(g) = f.link_group {
                        self.by_group.insert(g, i);
                    }
                    i
                }
            },
        };
        self.by_node.insert(key, idx);
        if self.bios_image.as_deref() == Some(path.trim_start_matches('/')) {
            self.bios = Some(idx);
        }
        if self
            .efi_image
            .as_deref()
            .is_some_and(|p| p.trim_start_matches('/') == path)
        {
            self.efi = Some(idx);
        }
        idx
    }

    pub fn get(&self, i: usize) -> &FileData {
        &self.list[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &FileData> {
        self.list.iter()
    }

    /// How many records (extents) a file of `size` bytes takes.
    pub fn parts(&self, size: u64) -> u64 {
        size.div_ceil(self.extent).max(1)
    }

    /// Block and length of extent `part` of entry `i`.
    pub fn extent(&self, i: usize, part: u32) -> (u64, u64) {
        let f = &self.list[i];
        let start = u64::from(part) * self.extent;
        let len = f.size.saturating_sub(start).min(self.extent);
        let lba = if f.size == 0 {
            0
        } else {
            f.lba + start / BLOCK
        };
        (lba, len)
    }

    /// The BIOS boot image's entry, if the tree has it.
    pub fn bios(&self) -> Option<&FileData> {
        self.bios.map(|i| &self.list[i])
    }

    /// The ESP image's entry, if the tree has it.
    pub fn efi(&self) -> Option<&FileData> {
        self.efi.map(|i| &self.list[i])
    }

    /// Block of the data of the file at tree path `path`, if it has data.
    pub fn lba_of(&self, path: &str) -> Option<u64> {
        self.list
            .iter()
            .find(|f| f.path == path && f.size > 0)
            .map(|f| f.lba)
    }

    /// Entries with data, in the order their data is laid out.
    fn data_order(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.list.len())
            .filter(|&i| Some(i) != self.efi)
            .chain(self.efi)
            .filter(|&i| self.list[i].size > 0)
    }

    /// Layout pass: places the data from block `start`; returns its blocks.
    pub fn place(&mut self, start: u64) -> u64 {
        let order: Vec<usize> = self.data_order().collect();
        let mut next = start;
        for i in order {
            let f = &mut self.list[i];
            f.lba = next;
            next += f.size.div_ceil(BLOCK);
        }
        next - start
    }

    /// Write pass: the data of every entry, each padded to a block; the
    /// BIOS image patched for its place (`bios`).
    pub fn write(&self, w: &mut Out, bios: Option<&BiosBoot>) -> Result<(), IsoError> {
        for i in self.data_order() {
            let f = &self.list[i];
            w.expect(f.lba)?;
            let patch = |img: &mut [u8]| {
                if let Some(b) = bios {
                    eltorito::patch_bios_image(
                        img,
                        f.lba as u32,
                        b.boot_info_table,
                        b.grub2_boot_info,
                    );
                }
            };
            match &f.source {
                Source::Bytes(b) if Some(i) == self.bios => {
                    let mut img = b.as_ref().clone();
                    patch(&mut img);
                    w.put(&img)?;
                }
                Source::Bytes(b) => w.put(b)?,
                Source::Host(p) if Some(i) == self.bios => {
                    let mut img = fs::read(p).map_err(io_err("reading", p))?;
                    if img.len() as u64 != f.size {
                        return Err(IsoError::Changed {
                            path: p.clone(),
                            detail: format!("{} bytes, expected {}", img.len(), f.size),
                        });
                    }
                    patch(&mut img);
                    w.put(&img)?;
                }
                Source::Host(p) => w.copy_file(p, f.size)?,
            }
            w.pad()?;
        }
        Ok(())
    }
}
