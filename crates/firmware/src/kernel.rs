//! The Linux kernel image as its module loader needs it: the x86 boot protocol's compressed
//! payload (setup header `payload_offset`/`payload_length`, boot protocol 2.08+), inflated,
//! and the built-in trusted certificates inside it, against which the kernel checks module
//! signatures (Debian signs modules with a per-build key that only the kernel carries).
//!
//! Bounded: the payload must lie inside the image and inflates to at most [`MAX_VMLINUX`].

use std::io::Read;

/// Largest inflated kernel accepted.
pub const MAX_VMLINUX: u64 = 256 << 20;

fn le32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 4)?;
    usize::try_from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok()
}

/// The compressed payload of a bzImage (None when `image` is not one).
pub fn payload(image: &[u8]) -> Option<&[u8]> {
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return None;
    }
    let setup_sects = usize::from(*image.get(0x1f1)?);
    let setup_sects = if setup_sects == 0 { 4 } else { setup_sects };
    let start = (setup_sects + 1) * 512 + le32(image, 0x248)?;
    let len = le32(image, 0x24c)?;
    image.get(start..start.checked_add(len)?)
}

/// The inflated kernel (vmlinux), for the formats Debian uses (xz, gzip).
pub fn inflate(image: &[u8]) -> Result<Vec<u8>, String> {
    let payload = payload(image).ok_or("not a bzImage (no HdrS setup header)")?;
    let mut out = Vec::new();
    let read = if payload.starts_with(b"\xfd7zXZ\0") {
        // The kernel build appends the inflated size (4 bytes) after the xz stream.
        let stream = payload
            .get(..payload.len().saturating_sub(4))
            .unwrap_or_default();
        xz2::read::XzDecoder::new(stream)
            .take(MAX_VMLINUX)
            .read_to_end(&mut out)
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(payload)
            .take(MAX_VMLINUX)
            .read_to_end(&mut out)
    } else {
        return Err("kernel payload compressed with a format other than xz or gzip".into());
    };
    read.map_err(|e| format!("kernel payload does not inflate: {e}"))?;
    Ok(out)
}
