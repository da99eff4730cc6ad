//! The whole ISO build: recipe + lock → trees (cached images) → live
//! initramfs → master (embedding the checksum as it writes) → manifest,
//! SBOM, SHA256SUMS.
//! `cargo xtask iso` and `bulkhead-iso build` both call [`build`].
//!
//! Nothing is written under a final name until it is complete: the image is
//! mastered to a temporary file in the output directory and renamed last.
//!
//! A pin no origin serves any more is refreshed (its tree resolved again,
//! keeping every pin still served), named in a notice and in manifest.json,
//! and the lock actually built from is written beside the image as
//! `inputs.lock`; with `locked` the build refuses instead, as
//! `cargo build --locked` does.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::compress::{self, CompressError};
use crate::grub::{self, BootloaderLock, GrubError};
use crate::inputs::{self, Cache, DebPin, InputError};
use crate::isotree::{Tree, TreeError};
use crate::live::{self, LiveError, LiveInitramfs};
use crate::lock::{Change, Lock, LockError};
use crate::manifest::{self, Artifact, Manifest, SbomError};
use crate::master::{self, MasterError, MasterOptions};
use crate::origins::Origins;
use crate::recipe::{Recipe, RecipeError};
use crate::rootfs::{self, BuildEnv, RootfsError};
use crate::vmkit::{self, VmKit};

/// Bumped when the pipeline's output changes for the same inputs.
pub const BUILDER: &str = concat!("bulkhead-iso ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error(transparent)]
    Grub(#[from] GrubError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Master(#[from] MasterError),
    #[error(transparent)]
    Sbom(#[from] SbomError),
    #[error(transparent)]
    Io(#[from] sysutil::IoError),
    #[error("{0}")]
    Config(String),
    #[error(
        "--locked: {}: served neither by the archive nor by its snapshot at the lock's time ({resolved_at}); build without --locked to refresh them (the build names each change and writes the new lock into the output directory), or run `cargo xtask lock`",
        gone.iter().map(|(t, p)| format!("tree {t}: {} {}", p.package, p.version)).collect::<Vec<_>>().join(", ")
    )]
    Locked {
        gone: Vec<(String, DebPin)>,
        resolved_at: String,
    },
}

use sysutil::io_err;

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub recipe: PathBuf,
    pub lock: PathBuf,
    pub out_dir: PathBuf,
    pub cache: Cache,
    /// Our own programs carried on the medium under `bulkhead/bin/`.
    pub binaries: Vec<PathBuf>,
    pub threads: usize,
    /// Refuse to build when a pin must be refreshed.
    pub locked: bool,
    /// `rustc -vV` of the compiler that built `binaries`, for the manifest.
    pub toolchain: Option<String>,
}

/// Told about each stage as the build goes.
pub trait Progress {
    fn start(&mut self, stage: &str);
    fn finish(&mut self, stage: &str, note: &str);
    /// Something the user must know (a refreshed pin); printed by default.
    fn notice(&mut self, text: &str) {
        eprintln!("notice: {text}");
    }
}

/// Prints nothing but notices.
pub struct Quiet;
impl Progress for Quiet {
    fn start(&mut self, _: &str) {}
    fn finish(&mut self, _: &str, _: &str) {}
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub iso: PathBuf,
    pub manifest: Manifest,
    /// The pins this build refreshed (empty when the lock was current).
    pub refreshed: Vec<Change>,
    /// Stage, time taken, note (e.g. "cached").
    pub stages: Vec<(String, Duration, String)>,
}

struct Stages<'a> {
    progress: &'a mut dyn Progress,
    done: Vec<(String, Duration, String)>,
}

impl Stages<'_> {
    fn run<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<(T, String), BuildError>,
    ) -> Result<T, BuildError> {
        self.progress.start(name);
        let t = Instant::now();
        let (v, note) = f()?;
        self.progress.finish(name, &note);
        self.done.push((name.to_string(), t.elapsed(), note));
        Ok(v)
    }
}

fn artifact(name: &str, path: &Path) -> Result<Artifact, BuildError> {
    let size = fs::metadata(path).map_err(io_err("reading", path))?.len();
    Ok(Artifact {
        name: name.to_string(),
        sha256: inputs::sha256_file(path)?,
        size,
    })
}

fn find_pin<'a>(
    pins: &'a [DebPin],
    what: &str,
    f: impl Fn(&str) -> bool,
) -> Result<&'a DebPin, BuildError> {
    pins.iter().find(|p| f(&p.package)).ok_or_else(|| {
        BuildError::Config(format!(
            "the live tree has no {what}; add it to [trees.live] packages in iso.toml and run `cargo xtask lock`"
        ))
    })
}

/// Builds the ISO described by `opts`.
pub fn build(opts: &BuildOptions, progress: &mut dyn Progress) -> Result<BuildReport, BuildError> {
    let mut st = Stages {
        progress,
        done: Vec::new(),
    };
    let recipe_text = fs::read_to_string(&opts.recipe).map_err(io_err("reading", &opts.recipe))?;
    let recipe = Recipe::parse(&recipe_text, &opts.recipe.display().to_string())?;
    let mut lock = Lock::read(&opts.lock)?;
    lock.check(&recipe, &opts.lock)?;
    let mut lock_text = fs::read_to_string(&opts.lock).map_err(io_err("reading", &opts.lock))?;
    let sde = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            BuildError::Config(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
            ))
        })?,
        _ => recipe.release.source_date_epoch,
    };
    let cache = &with_origins(&opts.cache, &recipe, &lock)?;
    let (images, refreshed) = trees(
        &mut st,
        &recipe,
        &mut lock,
        cache,
        &TreeOptions {
            binaries: &opts.binaries,
            threads: opts.threads,
            locked: opts.locked,
            source_date_epoch: sde,
        },
    )?;
    if !refreshed.is_empty() {
        lock_text = lock.to_text();
        st.progress.notice(&format!(
            "inputs.lock was refreshed: the lock this image was built from is {}; commit it, or run `cargo xtask lock`",
            opts.out_dir.join("inputs.lock").display()
        ));
    }

    let work = tempfile::Builder::new()
        .prefix("bulkhead-build-")
        .tempdir()
        .map_err(io_err(
            "creating a work directory in",
            &std::env::temp_dir(),
        ))?;
    let live_pins = &lock.trees["live"];
    let medium_id = format!(
        "{}-{}-{}",
        recipe.release.name,
        recipe.release.version,
        &manifest_hash(&recipe_text, &lock_text)[..16]
    );
    let is_kernel = |p: &str| {
        p.starts_with("linux-image-") && p.chars().nth(12).is_some_and(|c| c.is_ascii_digit())
    };
    let bpin = find_pin(live_pins, "busybox-static", |p| p == "busybox-static")?;
    let broot = cache.unpacked(bpin)?;
    let busybox = ["usr/bin/busybox", "bin/busybox"]
        .iter()
        .map(|p| broot.join(p))
        .find(|p| p.is_file())
        .unwrap_or_else(|| broot.join("bin/busybox"));
    let (vmlinuz, initrd) = st.run("live initramfs", || {
        let kpin = find_pin(live_pins, "kernel (linux-image-amd64)", is_kernel)?;
        let kroot = cache.unpacked(kpin)?;
        let release = kpin.package.trim_start_matches("linux-image-").to_string();
        let cpio = work.path().join("initrd.cpio");
        LiveInitramfs {
            kernel_root: kroot.clone(),
            release: release.clone(),
            busybox: busybox.clone(),
            medium_id: medium_id.clone(),
        }
        .write_cpio(&cpio)?;
        let initrd = work.path().join("initrd.img");
        xz_file(&cpio, &initrd, opts.threads)?;
        let vmlinuz = kroot.join(format!("boot/vmlinuz-{release}"));
        Ok(((vmlinuz, initrd), format!("kernel {release}")))
    })?;
    // The qubes' boot kit, from the template's own kernel package.
    let vm_kit = match lock.trees.get("template") {
        None => None,
        Some(template_pins) => Some(st.run("qube boot kit", || {
            let kpin = find_pin(template_pins, "kernel (linux-image-amd64)", is_kernel)?;
            let kroot = cache.unpacked(kpin)?;
            let release = kpin.package.trim_start_matches("linux-image-").to_string();
            let kit = VmKit {
                kernel_root: &kroot,
                release: &release,
                busybox: &busybox,
            };
            let cpio = work.path().join("vm-initramfs.cpio");
            kit.write_initramfs_cpio(&cpio)?;
            let initramfs = work.path().join("vm-initramfs");
            xz_file(&cpio, &initramfs, opts.threads)?;
            let vmlinuz = kit.vmlinuz();
            let note = format!("kernel {release}");
            Ok(((release, vmlinuz, initramfs), note))
        })?),
    };

    let iso_name = recipe.iso_name();
    let final_iso = opts.out_dir.join(&iso_name);
    let mut image_artifacts = Vec::new();
    let (tmp_iso, iso_artifact) = st.run("master", || {
        let mut tree = Tree::new();
        tree.add_host_file(master::KERNEL, &vmlinuz, 0o444)?;
        tree.add_host_file(master::INITRD, &initrd, 0o444)?;
        image_artifacts.push(artifact("boot/initrd.img", &initrd)?);
        for img in &images {
            let dest = format!("live/{}.squashfs", img.name);
            tree.add_host_file(&dest, &img.path, 0o444)?;
            let size = fs::metadata(&img.path)
                .map_err(io_err("reading", &img.path))?
                .len();
            image_artifacts.push(Artifact {
                name: dest,
                sha256: img.sha256.clone(),
                size,
            });
        }
        if let Some((release, kernel, initramfs)) = &vm_kit {
            for (file, from) in [
                (vmkit::KERNEL_FILE, kernel),
                (vmkit::INITRAMFS_FILE, initramfs),
            ] {
                let dest = format!("{}/{release}/{file}", vmkit::MEDIUM_DIR);
                tree.add_host_file(&dest, from, 0o444)?;
                image_artifacts.push(artifact(&dest, from)?);
            }
        }
        tree.add_bytes(live::ID_FILE, medium_id.clone().into_bytes(), 0o444)?;
        tree.add_bytes("bulkhead/iso.toml", recipe_text.clone().into_bytes(), 0o444)?;
        tree.add_bytes(
            "bulkhead/inputs.lock",
            lock_text.clone().into_bytes(),
            0o444,
        )?;
        for bin in &opts.binaries {
            let name = bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| BuildError::Config(format!("{} has no file name", bin.display())))?;
            let dest = format!("bulkhead/bin/{name}");
            tree.add_host_file(&dest, bin, 0o555)?;
            image_artifacts.push(artifact(&dest, bin)?);
        }
        let mut mo = MasterOptions::new(&recipe.boot.volume_label, sde as i64);
        mo.cmdline = recipe.boot.cmdline.clone();
        mo.timeout = recipe.boot.timeout_seconds;
        // The writer embeds the checksum as it writes and returns the
        // finished file's sha256 too (one read of the image, see
        // iso9660/out.rs): the manifest and SHA256SUMS reuse it.
        mo.embed_checksum = true;
        let blk = BootloaderLock::for_build(&lock)?;
        let loader = grub::build_loader(cache, &blk, &crate::iso9660::grub_fs_uuid(sde as i64))?;
        fs::create_dir_all(&opts.out_dir).map_err(io_err("creating", &opts.out_dir))?;
        let tmp = opts.out_dir.join(format!(".{iso_name}.partial"));
        let d = master::master_tree(tree, &tmp, &mo, &loader)?
            .digests
            .ok_or_else(|| {
                BuildError::Config(
                    "internal error: the image was written without its checksum".into(),
                )
            })?;
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
                .map_err(io_err("setting permissions of", &tmp))?;
        }
        let note = format!("{} MiB", d.embedded.size >> 20);
        let output = Artifact {
            name: iso_name.clone(),
            sha256: d.sha256,
            size: d.embedded.size,
        };
        Ok(((tmp, output), note))
    })?;

    let manifest = st.run("manifest", || {
        let output = iso_artifact;
        let mut inputs_list = manifest::inputs(&lock);
        for p in BootloaderLock::for_build(&lock)?.deb {
            // The same file may also be in a tree (the payload has GRUB).
            if let Some(i) = inputs_list.iter_mut().find(|i| {
                i.package == p.package
                    && i.version == p.version
                    && i.arch == p.arch
                    && i.sha256 == p.sha256
            }) {
                i.trees.push("bootloader".into());
                continue;
            }
            inputs_list.push(manifest::Input {
                package: p.package,
                version: p.version,
                arch: p.arch,
                sha256: p.sha256,
                size: p.size,
                trees: vec!["bootloader".into()],
            });
        }
        let m = Manifest {
            schema: manifest::SCHEMA.into(),
            release: recipe.release.name.clone(),
            version: recipe.release.version.clone(),
            builder: BUILDER.into(),
            source_date_epoch: sde,
            recipe_sha256: inputs_sha(&recipe_text),
            lock_sha256: inputs_sha(&lock_text),
            inputs: inputs_list,
            images: image_artifacts.clone(),
            output,
            refreshed: refreshed.clone(),
            toolchain: opts.toolchain.clone(),
        };
        let stem = iso_name.trim_end_matches(".iso");
        let manifest_path = opts.out_dir.join("manifest.json");
        let sbom_path = opts.out_dir.join(format!("{stem}.cdx.json"));
        write_atomic(&manifest_path, m.to_json().as_bytes())?;
        let lock_out = opts.out_dir.join("inputs.lock");
        write_atomic(&lock_out, lock_text.as_bytes())?;
        write_atomic(&sbom_path, manifest::sbom(&m)?.as_bytes())?;
        let sums = manifest::sha256sums(&[
            m.output.clone(),
            artifact("manifest.json", &manifest_path)?,
            artifact("inputs.lock", &lock_out)?,
            artifact(&format!("{stem}.cdx.json"), &sbom_path)?,
        ]);
        write_atomic(&opts.out_dir.join("SHA256SUMS"), sums.as_bytes())?;
        fs::rename(&tmp_iso, &final_iso).map_err(io_err("renaming to", &final_iso))?;
        Ok((m, String::new()))
    })?;
    Ok(BuildReport {
        iso: final_iso,
        manifest,
        refreshed,
        stages: st.done,
    })
}

/// How [`build_trees`] builds.
#[derive(Debug, Clone, Copy)]
pub struct TreeOptions<'a> {
    /// Our programs (the payload carries firstboot and qube).
    pub binaries: &'a [PathBuf],
    pub threads: usize,
    /// Refuse instead of refreshing pins nothing serves.
    pub locked: bool,
    pub source_date_epoch: u64,
}

/// `cache` fetching from the recipe's archive, then from its snapshot
/// archive at the lock's time.
pub fn with_origins(cache: &Cache, recipe: &Recipe, lock: &Lock) -> Result<Cache, BuildError> {
    let origins = Origins::new(
        cache.root(),
        &recipe.debian.sources,
        &recipe.debian.architecture,
        &recipe.debian.snapshot,
        Some(&lock.resolved_at),
    )?;
    Ok(cache.clone().with_origins(origins))
}

/// Every tree's image (cached or built), refreshing in `lock` the pins no
/// origin serves (or refusing, when `locked`); returns what moved.
pub fn build_trees(
    recipe: &Recipe,
    lock: &mut Lock,
    cache: &Cache,
    o: &TreeOptions<'_>,
    progress: &mut dyn Progress,
) -> Result<(Vec<rootfs::TreeImage>, Vec<Change>), BuildError> {
    let mut st = Stages {
        progress,
        done: Vec::new(),
    };
    trees(&mut st, recipe, lock, cache, o)
}

fn trees(
    st: &mut Stages<'_>,
    recipe: &Recipe,
    lock: &mut Lock,
    cache: &Cache,
    o: &TreeOptions<'_>,
) -> Result<(Vec<rootfs::TreeImage>, Vec<Change>), BuildError> {
    let mut images = Vec::new();
    let mut refreshed = Vec::new();
    for (name, tree) in &recipe.trees {
        let extras = tree_extras(name, o.binaries)?;
        let mut attempt = 0;
        let img = loop {
            attempt += 1;
            let pins = &lock.trees[name];
            let built = st.run(&format!("tree {name}"), || {
                let img = rootfs::build(
                    name,
                    tree,
                    pins,
                    BuildEnv {
                        suite: &recipe.debian.suite,
                        extras: &extras,
                        cache,
                        sources: &recipe.debian.sources,
                        source_date_epoch: o.source_date_epoch,
                        threads: o.threads,
                    },
                );
                match img {
                    Ok(img) => {
                        let note = if img.cached { "cached" } else { "built" }.to_string();
                        Ok((Ok(img), note))
                    }
                    Err(RootfsError::Input(InputError::NotServed { gone, .. })) if attempt == 1 => {
                        Ok((Err(gone), "pins no longer served".to_string()))
                    }
                    Err(e) => Err(e.into()),
                }
            })?;
            let gone = match built {
                Ok(img) => break img,
                Err(gone) => gone,
            };
            if o.locked {
                return Err(BuildError::Locked {
                    gone: gone.into_iter().map(|p| (name.clone(), p)).collect(),
                    resolved_at: lock.resolved_at.clone(),
                });
            }
            let scratch = tempfile::Builder::new()
                .prefix(".refresh-")
                .tempdir_in(cache.root())
                .map_err(io_err("creating a work directory in", cache.root()))?;
            let moved = st.run(&format!("refresh tree {name}"), || {
                let moved = lock.refresh_tree(recipe, name, &gone, scratch.path())?;
                let note = format!("{} pins moved", moved.len());
                Ok((moved, note))
            })?;
            let names: Vec<String> = gone
                .iter()
                .map(|p| format!("{} {}", p.package, p.version))
                .collect();
            st.progress.notice(&format!(
                "tree {name}: nothing serves {} any more; re-resolved against the archive, keeping every pin still served:",
                names.join(", ")
            ));
            for c in &moved {
                st.progress.notice(&format!("  refreshed {c}"));
            }
            refreshed.extend(moved);
        };
        images.push(img);
    }
    Ok((images, refreshed))
}

/// Our files in each named tree: the live system's init and consoles, the
/// payload's firstboot and qube (from `binaries`) and configuration, the
/// template's fstab. Other trees get none.
fn tree_extras(name: &str, binaries: &[PathBuf]) -> Result<Vec<rootfs::Extra>, BuildError> {
    let program = |name: &str| -> Result<Vec<u8>, BuildError> {
        let p = binaries
            .iter()
            .find(|b| b.file_name().is_some_and(|n| n == name))
            .ok_or_else(|| {
                BuildError::Config(format!(
                    "the payload tree needs the {name} binary; build it with `cargo build --release -p {name}` and pass it among the binaries"
                ))
            })?;
        Ok(fs::read(p).map_err(io_err("reading", p))?)
    };
    Ok(match name {
        "live" => live::tree_files(),
        "payload" => crate::installed::payload_files(program("firstboot")?, program("qube")?),
        "template" => crate::installed::template_files(),
        _ => Vec::new(),
    })
}

/// `src` compressed with xz into `dest` (the kernel reads xz initramfs).
fn xz_file(src: &Path, dest: &Path, threads: usize) -> Result<(), BuildError> {
    let input = fs::File::open(src).map_err(io_err("opening", src))?;
    let output = fs::File::create(dest).map_err(io_err("creating", dest))?;
    compress::xz(input, std::io::BufWriter::new(output), 6, threads as u32)?;
    Ok(())
}

fn inputs_sha(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn manifest_hash(recipe: &str, lock: &str) -> String {
    inputs_sha(&format!("{recipe}\0{lock}"))
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    let tmp = path.with_extension("partial");
    fs::write(&tmp, data).map_err(io_err("writing", &tmp))?;
    Ok(fs::rename(&tmp, path).map_err(io_err("renaming to", path))?)
}
