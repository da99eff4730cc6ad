//! `bulkhead-iso`: masters bootable hybrid images (see iso_builder::master).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use iso_builder::grub::{self, BootloaderLock, Entry};
use iso_builder::inputs::Cache;
use iso_builder::master::{self, MasterOptions};
use iso_builder::{iso9660, isotree};

#[derive(Parser)]
#[command(
    name = "bulkhead-iso",
    about = "Masters Bulkhead's bootable hybrid ISO images"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum DefaultEntry {
    Install,
    Serial,
    Check,
    Disk,
}

#[derive(Subcommand)]
enum Cmd {
    /// Master a bootable hybrid image (BIOS and UEFI, CD and USB) from DIR,
    /// which holds boot/vmlinuz and boot/initrd.img.
    Master {
        dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// ISO9660 volume label: up to 32 of A-Z, 0-9, _.
        #[arg(long, default_value = "BULKHEAD")]
        label: String,
        /// Kernel command line of every menu entry.
        #[arg(long, default_value = "")]
        cmdline: String,
        /// Seconds the menu waits before booting the default entry.
        #[arg(long, default_value_t = 5)]
        timeout: u32,
        #[arg(long, value_enum, default_value = "install")]
        default: DefaultEntry,
        /// Every timestamp; defaults to $SOURCE_DATE_EPOCH.
        #[arg(long)]
        epoch: Option<i64>,
        /// Use only cached bootloader packages.
        #[arg(long)]
        offline: bool,
    },
    /// Write DIR as a plain ISO9660 + Rock Ridge image (no boot).
    Write {
        dir: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value = "BULKHEAD")]
        label: String,
        #[arg(long)]
        epoch: Option<i64>,
    },
    /// Pin the GRUB packages (apt candidates) into bootloader.lock.toml.
    PinBootloader {
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/bootloader.lock.toml"))]
        lock: PathBuf,
    },
    /// Check an image file, or a USB stick or DVD holding one, against the
    /// sha256 embedded in it (trailing bytes on a stick are ignored).
    /// Exit status 0 when intact, 1 when corrupt or truncated.
    Verify { image: PathBuf },
    /// Build the whole ISO from a recipe and its lock (what `cargo xtask iso`
    /// runs after building our programs).
    Build {
        #[arg(long, default_value = "iso.toml")]
        recipe: PathBuf,
        #[arg(long, default_value = "inputs.lock")]
        lock: PathBuf,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Cache directory (default: $BULKHEAD_CACHE, /var/cache/bulkhead as root).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// A program to carry under bulkhead/bin/ (repeatable).
        #[arg(long = "bin")]
        bins: Vec<PathBuf>,
        /// Use only what is cached; fail naming what is missing.
        #[arg(long)]
        offline: bool,
        /// Refuse to build when a pin is no longer served, instead of
        /// refreshing it (for release builds of a published lock).
        #[arg(long)]
        locked: bool,
    },
    /// Time this writer against `xorriso -as mkisofs -R -J` on one tree.
    #[cfg(feature = "bench")]
    Bench {
        /// Scratch directory (the tree and both images go there).
        #[arg(long, default_value = "target/iso-bench")]
        scratch: PathBuf,
        /// Approximate tree size in MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
    },
}

fn epoch(arg: Option<i64>) -> Result<i64> {
    match arg.or(master::env_epoch()?) {
        Some(e) => Ok(e),
        None => bail!("no timestamp: pass --epoch or set SOURCE_DATE_EPOCH (seconds since 1970)"),
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Master {
            dir,
            output,
            label,
            cmdline,
            timeout,
            default,
            epoch: e,
            offline,
        } => {
            let mut opts = MasterOptions::new(&label, epoch(e)?);
            opts.cmdline = cmdline;
            opts.timeout = timeout;
            opts.default = match default {
                DefaultEntry::Install => Entry::Install,
                DefaultEntry::Serial => Entry::Serial,
                DefaultEntry::Check => Entry::Check,
                DefaultEntry::Disk => Entry::Disk,
            };
            let cache = Cache::new(Cache::default_root(), grub::REFRESH).offline(offline);
            let t = Instant::now();
            let layout = master::master_dir(&dir, &output, &opts, &cache).with_context(|| {
                format!("mastering {} into {}", dir.display(), output.display())
            })?;
            println!(
                "{}: {} bytes in {:.2?}",
                output.display(),
                layout.image_size(),
                t.elapsed()
            );
        }
        Cmd::Write {
            dir,
            output,
            label,
            epoch: e,
        } => {
            let tree = isotree::Tree::from_dir(&dir)?;
            let layout =
                iso9660::write_image(&tree, iso9660::Options::new(&label, epoch(e)?), &output)
                    .with_context(|| format!("writing {}", output.display()))?;
            println!("{}: {} bytes", output.display(), layout.image_size());
        }
        Cmd::Verify { image } => {
            let t = Instant::now();
            match iso_builder::checksum::verify(&image, &mut |_, _| {}) {
                Ok(e) => println!(
                    "{}: intact ({} bytes, sha256 {}) in {:.1?}",
                    image.display(),
                    e.size,
                    e.sha256,
                    t.elapsed()
                ),
                Err(e) => {
                    eprintln!("bulkhead-iso: {e}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::Build {
            recipe,
            lock,
            out,
            cache,
            bins,
            offline,
            locked,
        } => {
            use iso_builder::pipeline::{self, BuildOptions, Progress};
            struct Lines;
            impl Progress for Lines {
                fn start(&mut self, stage: &str) {
                    eprintln!("{stage} ...");
                }
                fn finish(&mut self, stage: &str, note: &str) {
                    eprintln!("{stage}: done {note}");
                }
            }
            let opts = BuildOptions {
                recipe,
                lock,
                out_dir: out,
                cache: Cache::new(
                    cache.unwrap_or_else(Cache::default_root),
                    iso_builder::lock::REFRESH,
                )
                .offline(offline),
                binaries: bins,
                threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
                locked,
                toolchain: None,
            };
            let r = pipeline::build(&opts, &mut Lines)?;
            println!("{} sha256 {}", r.iso.display(), r.manifest.output.sha256);
        }
        Cmd::PinBootloader { lock } => {
            let pins = BootloaderLock::resolve()?;
            std::fs::write(&lock, pins.to_toml())
                .with_context(|| format!("writing {}", lock.display()))?;
            for d in &pins.deb {
                println!("{} {} {}", d.package, d.version, d.sha256);
            }
        }
        #[cfg(feature = "bench")]
        Cmd::Bench { scratch, size_mib } => {
            let r = iso_builder::bench::run(&scratch, size_mib)?;
            println!("{r}");
        }
    }
    Ok(())
}
