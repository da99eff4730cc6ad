//! xz compression through liblzma (the maintained fork of xz2; the two link
//! the same C library and cannot coexist in one build).
//!
//! Always the multithreaded encoder with a fixed block size: its output
//! depends on the block size, never on the thread count, and equals
//! `xz -T N --block-size=B`, whereas the single-threaded encoder writes one
//! block and different bytes. CRC32 checks, because the kernel's initramfs
//! decompressor supports no other.

use std::io::{self, Read, Write};

use liblzma::stream::{Check, MtStreamBuilder};
use liblzma::write::XzEncoder;

use crate::cpio::CountingWriter;

/// Block size of every xz stream we write.
pub const BLOCK_SIZE: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("setting up the xz encoder: {0}")]
    Setup(String),
    #[error("compressing: {0}")]
    Io(#[from] io::Error),
}

/// Compresses `input` into `output` at `preset` (0-9) with `threads`
/// threads; returns the number of compressed bytes.
pub fn xz<R: Read, W: Write>(
    input: R,
    output: W,
    preset: u32,
    threads: u32,
) -> Result<u64, CompressError> {
    xz_blocks(input, output, preset, threads, BLOCK_SIZE)
}

/// [`xz`] with another block size.
pub fn xz_blocks<R: Read, W: Write>(
    mut input: R,
    output: W,
    preset: u32,
    threads: u32,
    block_size: u64,
) -> Result<u64, CompressError> {
    let stream = MtStreamBuilder::new()
        .threads(threads.max(1))
        .block_size(block_size)
        .preset(preset)
        .check(Check::Crc32)
        .encoder()
        .map_err(|e| CompressError::Setup(e.to_string()))?;
    let mut enc = XzEncoder::new_stream(
        CountingWriter {
            inner: output,
            n: 0,
        },
        stream,
    );
    io::copy(&mut input, &mut enc)?;
    let w = enc.finish()?;
    Ok(w.n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    const TEST_BLOCK: u64 = 1 << 20;

    fn sample() -> Vec<u8> {
        // Compressible but not trivial, and larger than two blocks.
        let mut v = Vec::with_capacity(3 << 20);
        let mut x: u32 = 1;
        while v.len() < (TEST_BLOCK as usize) * 2 + 12345 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            v.extend_from_slice(format!("line {} {}\n", x >> 20, x % 97).as_bytes());
        }
        v
    }

    #[test]
    fn same_bytes_for_any_thread_count_and_same_as_xz_cli() {
        let data = sample();
        let mut one = Vec::new();
        xz_blocks(&data[..], &mut one, 6, 1, TEST_BLOCK).unwrap();
        let mut two = Vec::new();
        xz_blocks(&data[..], &mut two, 6, 2, TEST_BLOCK).unwrap();
        assert_eq!(one, two);
        let mut cli = Command::new("xz")
            .args(["-6", "-T2", "--check=crc32", "-c"])
            .arg(format!("--block-size={TEST_BLOCK}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("xz (apt-get install xz-utils)");
        let mut stdin = cli.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || stdin.write_all(&data));
        let out = cli.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert_eq!(out.stdout, one);
    }

    #[test]
    fn round_trips_through_xz_cli() {
        let data = b"bulkhead ".repeat(1000);
        let mut packed = Vec::new();
        xz(&data[..], &mut packed, 6, 2).unwrap();
        let mut cli = Command::new("xz")
            .args(["-dc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        cli.stdin.take().unwrap().write_all(&packed).unwrap();
        let out = cli.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }
}
