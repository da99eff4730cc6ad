//! The image as a list of writers, in [`ORDER`]: a layout pass asks each
//! present writer, in order, for its blocks (placing what it holds from its
//! first block on), then computes the GPT over the finished layout; a write
//! pass has each write exactly its blocks, in the same order, through one
//! [`Out`].

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::fields::{self, civil};
use super::files::Files;
use super::options::{BLOCK, IsoError, Options, internal};
use super::out::{Digests, Out};
use super::volume::{APP_USE, APP_USE_LEN, Flavor, Volume};
use crate::checksum;
use crate::eltorito::{self, BiosEntry, EfiEntry};
use crate::hybrid::{self, Part};
use crate::isotree::{Kind, Source, Tree};

/// The system area: blocks 0-15 (ECMA-119 6.2.1).
const SYSTEM_AREA_BLOCKS: u64 = 16;
/// Smallest volume written (libarchive needs 24 blocks to recognize one).
const MIN_BLOCKS: u64 = 32;
/// Blocks reserved at the end of a hybrid image for the backup GPT.
const GPT_TAIL_BLOCKS: u64 = 9;

// The embedded checksum lives in the primary descriptor, the first one
// after the system area.
const _: () = assert!(
    checksum::FIELD_OFFSET == SYSTEM_AREA_BLOCKS * BLOCK + APP_USE as u64
        && checksum::FIELD_LEN == APP_USE_LEN
);

/// One structure of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Zeros, or with a hybrid image the MBR and the primary GPT.
    SystemArea,
    /// The primary descriptor, the El Torito boot record, the Joliet
    /// descriptor and the terminator (ECMA-119 8).
    Descriptors,
    /// The El Torito boot catalog.
    BootCatalog,
    /// A volume's L and M path tables.
    PathTables(Flavor),
    /// A volume's directories, each followed by its continuation areas.
    Directories(Flavor),
    /// Every file's data, the ESP image last.
    FileData,
    /// Zeros up to [`MIN_BLOCKS`].
    Padding,
    /// The backup GPT, the hybrid image's last blocks.
    BackupGpt,
}

/// The order of the image; writers whose structure the image has not
/// (see [`Layout::present`]) are skipped.
const ORDER: [Writer; 10] = [
    Writer::SystemArea,
    Writer::Descriptors,
    Writer::BootCatalog,
    Writer::PathTables(Flavor::Primary),
    Writer::PathTables(Flavor::Joliet),
    Writer::Directories(Flavor::Primary),
    Writer::Directories(Flavor::Joliet),
    Writer::FileData,
    Writer::Padding,
    Writer::BackupGpt,
];

/// A writer and its blocks.
#[derive(Debug, Clone, Copy)]
struct Placed {
    writer: Writer,
    start: u64,
    blocks: u64,
}

/// The computed layout: every structure's place, before a byte is written.
#[derive(Debug)]
pub struct Layout {
    opts: Options,
    primary: Volume,
    joliet: Option<Volume>,
    files: Files,
    writers: Vec<Placed>,
    total_blocks: u64,
    gpt: Option<hybrid::Tables>,
}

fn is_file(tree: &Tree, path: &str) -> bool {
    matches!(tree.get(path).map(|n| &n.kind), Some(Kind::File(_)))
}

impl Layout {
    /// Computes the layout of `tree`.
    pub fn new(tree: &Tree, opts: Options) -> Result<Self, IsoError> {
        if opts.volume_id.is_empty()
            || opts.volume_id.len() > 32
            || !fields::is_d_chars(&opts.volume_id)
        {
            return Err(IsoError::Layout(format!(
                "volume label {:?} must be 1 to 32 characters of A-Z, 0-9 and _",
                opts.volume_id
            )));
        }
        let (year, ..) = civil(opts.epoch);
        if !(1970..=2155).contains(&year) {
            return Err(IsoError::Layout(format!(
                "SOURCE_DATE_EPOCH {} is outside 1970..2155, which ISO9660 dates cannot hold",
                opts.epoch
            )));
        }
        for (p, hint) in [
            (
                opts.bios.as_ref().map(|b| b.image.as_str()),
                "add the BIOS loader image to the tree",
            ),
            (opts.efi_image.as_deref(), "add the ESP image to the tree"),
        ] {
            if let Some(p) = p
                && !is_file(tree, p)
            {
                return Err(IsoError::BootImage {
                    path: p.to_string(),
                    hint,
                });
            }
        }
        let mut files = Files::new(&opts);
        let primary = Volume::build(tree, Flavor::Primary, &mut files, opts.epoch)?;
        let joliet = if opts.joliet {
            Some(Volume::build(tree, Flavor::Joliet, &mut files, opts.epoch)?)
        } else {
            None
        };
        let mut lay = Layout {
            opts,
            primary,
            joliet,
            files,
            writers: Vec::new(),
            total_blocks: 0,
            gpt: None,
        };
        let mut next = 0;
        for writer in ORDER {
            if !lay.present(writer) {
                continue;
            }
            let blocks = lay.place(writer, next);
            lay.writers.push(Placed {
                writer,
                start: next,
                blocks,
            });
            next += blocks;
        }
        if next > u64::from(u32::MAX) {
            return Err(IsoError::Layout(format!(
                "the image would need {next} blocks; ISO9660 addresses at most 2^32"
            )));
        }
        lay.total_blocks = next;
        lay.gpt = lay.gpt_tables()?;
        Ok(lay)
    }

    fn volume(&self, f: Flavor) -> Option<&Volume> {
        match f {
            Flavor::Primary => Some(&self.primary),
            Flavor::Joliet => self.joliet.as_ref(),
        }
    }

    fn volume_mut(&mut self, f: Flavor) -> Option<&mut Volume> {
        match f {
            Flavor::Primary => Some(&mut self.primary),
            Flavor::Joliet => self.joliet.as_mut(),
        }
    }

    /// Whether the image has `writer`'s structure.
    fn present(&self, writer: Writer) -> bool {
        match writer {
            Writer::BootCatalog => self.opts.booting(),
            Writer::PathTables(f) | Writer::Directories(f) => self.volume(f).is_some(),
            Writer::BackupGpt => self.opts.hybrid.is_some(),
            Writer::SystemArea | Writer::Descriptors | Writer::FileData | Writer::Padding => true,
        }
    }

    /// Layout pass: `writer`'s blocks from block `start`, placing what it
    /// holds.
    fn place(&mut self, writer: Writer, start: u64) -> u64 {
        match writer {
            Writer::SystemArea => SYSTEM_AREA_BLOCKS,
            Writer::Descriptors => {
                2 + u64::from(self.opts.booting()) + u64::from(self.joliet.is_some())
            }
            Writer::BootCatalog => 1,
            Writer::PathTables(f) => self.volume_mut(f).map_or(0, |v| v.place_path_tables(start)),
            Writer::Directories(f) => self.volume_mut(f).map_or(0, |v| v.place_directories(start)),
            Writer::FileData => self.files.place(start),
            // libarchive refuses volumes it cannot read 24 blocks of.
            Writer::Padding => MIN_BLOCKS.saturating_sub(start),
            Writer::BackupGpt => GPT_TAIL_BLOCKS,
        }
    }

    fn placed(&self, writer: Writer) -> Option<&Placed> {
        self.writers.iter().find(|p| p.writer == writer)
    }

    /// Size of the image in bytes.
    pub fn image_size(&self) -> u64 {
        self.total_blocks * BLOCK
    }

    /// Block address of the file at tree path `path`, if it has data.
    pub fn file_lba(&self, path: &str) -> Option<u64> {
        self.files.lba_of(path)
    }

    /// Seed of the GPT's GUIDs and the MBR signature: the volume id, the
    /// epoch and every file's path, size, place and in-memory bytes.
    fn seed(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(self.opts.volume_id.as_bytes());
        h.update(self.opts.epoch.to_le_bytes());
        for f in self.files.iter() {
            h.update(f.path.as_bytes());
            h.update(f.size.to_le_bytes());
            h.update(f.lba.to_le_bytes());
            if let Source::Bytes(b) = &f.source {
                h.update(b.as_slice());
            }
        }
        h.finalize().to_vec()
    }

    /// The MBR and both GPT copies: partition 1 over the ISO9660 data from
    /// sector 64 up to the ESP image (or the data's end), 2 over the ESP.
    fn gpt_tables(&self) -> Result<Option<hybrid::Tables>, IsoError> {
        let Some(h) = &self.opts.hybrid else {
            return Ok(None);
        };
        let data_end = self
            .placed(Writer::Padding)
            .map_or(0, |p| p.start + p.blocks)
            * 4;
        let esp = self.files.efi().filter(|f| f.size > 0);
        let iso_end = esp.map_or(data_end, |f| f.lba * 4);
        let mut parts = vec![Part {
            name: "ISO9660",
            first: 64,
            last: iso_end - 1,
            esp: false,
        }];
        if let Some(f) = esp {
            parts.push(Part {
                name: "EFI System",
                first: f.lba * 4,
                last: f.lba * 4 + f.size.div_ceil(512) - 1,
                esp: true,
            });
        }
        let grub2 = if h.grub2_mbr {
            self.files.bios().map(|f| f.lba * 4)
        } else {
            None
        };
        Ok(Some(hybrid::tables(
            &h.mbr_code,
            grub2,
            self.total_blocks * 4,
            &parts,
            &self.seed(),
        )?))
    }

    /// Writes the image to `out` (a fresh, empty file, readable when
    /// [`Options::embed_checksum`] is set); returns the digests taken while
    /// writing, with `embed_checksum`.
    pub fn write(&self, out: fs::File, out_path: &Path) -> Result<Option<Digests>, IsoError> {
        let mut w = Out::new(out, out_path, self.opts.embed_checksum);
        for p in &self.writers {
            w.expect(p.start)?;
            self.write_one(p.writer, &mut w)?;
            w.expect(p.start + p.blocks)?;
        }
        w.finish()
    }

    /// Write pass: `writer`'s blocks.
    fn write_one(&self, writer: Writer, w: &mut Out) -> Result<(), IsoError> {
        match writer {
            Writer::SystemArea => {
                if let Some(t) = &self.gpt {
                    w.put(&t.head)?;
                }
                w.zeros_to(SYSTEM_AREA_BLOCKS * BLOCK)
            }
            Writer::Descriptors => {
                w.put(
                    &self
                        .primary
                        .descriptor(&self.opts, self.total_blocks, &self.files),
                )?;
                if let Some(c) = self.placed(Writer::BootCatalog) {
                    w.put(&eltorito::boot_record(c.start as u32))?;
                }
                if let Some(j) = &self.joliet {
                    w.put(&j.descriptor(&self.opts, self.total_blocks, &self.files))?;
                }
                let mut term = vec![0u8; BLOCK as usize];
                term[0] = 255;
                term[1..6].copy_from_slice(b"CD001");
                term[6] = 1;
                w.put(&term)
            }
            Writer::BootCatalog => {
                let bios = self
                    .opts
                    .bios
                    .as_ref()
                    .zip(self.files.bios())
                    .map(|(b, f)| BiosEntry {
                        lba: f.lba as u32,
                        load_sectors: b.load_sectors,
                    });
                let efi = self.files.efi().map(|f| EfiEntry {
                    lba: f.lba as u32,
                    size: f.size,
                });
                w.put(&eltorito::catalog(bios, efi))
            }
            Writer::PathTables(f) => match self.volume(f) {
                Some(v) => v.write_path_tables(w),
                None => Err(internal(format!("no {f:?} volume to write"))),
            },
            Writer::Directories(f) => match self.volume(f) {
                Some(v) => v.write_directories(w, &self.files),
                None => Err(internal(format!("no {f:?} volume to write"))),
            },
            Writer::FileData => self.files.write(w, self.opts.bios.as_ref()),
            Writer::Padding => match self.placed(Writer::Padding) {
                Some(p) => w.zeros_to((p.start + p.blocks) * BLOCK),
                None => Err(internal("padding was not placed".into())),
            },
            Writer::BackupGpt => match &self.gpt {
                Some(t) => {
                    w.zeros(GPT_TAIL_BLOCKS * BLOCK - t.tail.len() as u64)?;
                    w.put(&t.tail)
                }
                None => Err(internal("no GPT computed for the backup".into())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::options::HybridBoot;
    use super::*;

    #[test]
    fn missing_boot_image_is_named() {
        let mut o = Options::new("X", 0);
        o.efi_image = Some("boot/efi.img".into());
        let err = Layout::new(&Tree::new(), o).unwrap_err();
        assert!(err.to_string().contains("boot/efi.img"), "{err}");
    }

    #[test]
    fn bad_label_is_refused() {
        let err = Layout::new(&Tree::new(), Options::new("lower case", 0)).unwrap_err();
        assert!(err.to_string().contains("lower case"), "{err}");
    }

    #[test]
    fn writers_follow_the_order_without_gaps() {
        let mut t = Tree::new();
        t.add_bytes("boot/esp.img", vec![1; 4096], 0o444).unwrap();
        t.add_bytes("a", vec![2; 5000], 0o644).unwrap();
        let mut o = Options::new("X", 0);
        o.efi_image = Some("boot/esp.img".into());
        o.hybrid = Some(HybridBoot {
            mbr_code: vec![0; 440],
            grub2_mbr: false,
        });
        let lay = Layout::new(&t, o).unwrap();
        let got: Vec<Writer> = lay.writers.iter().map(|p| p.writer).collect();
        assert_eq!(got, ORDER.to_vec());
        let mut next = 0;
        for p in &lay.writers {
            assert_eq!(p.start, next, "{:?}", p.writer);
            next += p.blocks;
        }
        assert_eq!(next, lay.total_blocks);
        // The boot record follows the primary descriptor; the catalog the
        // terminator.
        assert_eq!(lay.placed(Writer::BootCatalog).unwrap().start, 16 + 4);
        assert_eq!(lay.file_lba("boot/esp.img").unwrap() + 2, {
            let p = lay.placed(Writer::FileData).unwrap();
            p.start + p.blocks
        });
    }
}
