//! What grub-mkimage put into a grub EFI image's `mods` section (grub `include/grub/kernel.h`):
//! a `struct grub_module_info64` header (magic "mimg", offset, size) followed by objects
//! `{u32 type, u32 size, data}`: ELF modules (0), a memdisk (1), the embedded configuration
//! (2) and the prefix (3). Debian's signed grub embeds `normal (memdisk)/grub.cfg` and a
//! FAT memdisk holding the early configuration that finds `$prefix/grub.cfg`.
//!
//! Bytes in, values out; every offset and size is checked against the section.

use crate::fat::FatVolume;

/// `GRUB_MODULE_MAGIC`: "mimg" little-endian.
const MODULE_MAGIC: u32 = 0x676d_696d;
const OBJ_TYPE_MEMDISK: u32 = 1;
const OBJ_TYPE_CONFIG: u32 = 2;
const OBJ_TYPE_PREFIX: u32 = 3;

/// The parts of a grub image's `mods` section the boot depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubModules {
    /// The configuration grub runs first (`grub-mkimage -c`).
    pub config: Option<String>,
    /// The prefix (`grub-mkimage -p`), e.g. `/EFI/debian`.
    pub prefix: Option<String>,
    /// The memdisk image (`(memdisk)`), a FAT file system in Debian's build.
    pub memdisk: Option<Vec<u8>>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// A NUL-terminated string inside a padded object.
fn c_string(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(data.get(..end).unwrap_or_default()).into_owned()
}

impl GrubModules {
    /// Parse the `mods` section's bytes.
    pub fn parse(section: &[u8]) -> Result<GrubModules, String> {
        if u32_at(section, 0) != Some(MODULE_MAGIC) {
            return Err("grub mods section: no grub_module_info magic".into());
        }
        let offset = u64_at(section, 8).ok_or("grub mods section: truncated header")?;
        let size = u64_at(section, 16).ok_or("grub mods section: truncated header")?;
        let end = usize::try_from(size)
            .ok()
            .filter(|s| *s <= section.len())
            .ok_or("grub mods section: module area larger than the section")?;
        let mut at = usize::try_from(offset).map_err(|_| "grub mods section: bad offset")?;
        let mut out = GrubModules::default();
        while at < end {
            let ty = u32_at(section, at).ok_or("grub module header truncated")?;
            let len = u32_at(section, at + 4).ok_or("grub module header truncated")? as usize;
            if len < 8 || at.checked_add(len).is_none_or(|e| e > end) {
                return Err(format!(
                    "grub module at offset {at}: size {len} out of bounds"
                ));
            }
            let data = section.get(at + 8..at + len).unwrap_or_default();
            match ty {
                OBJ_TYPE_MEMDISK => out.memdisk = Some(data.to_vec()),
                OBJ_TYPE_CONFIG => out.config = Some(c_string(data)),
                OBJ_TYPE_PREFIX => out.prefix = Some(c_string(data)),
                _ => {}
            }
            at += len;
        }
        Ok(out)
    }

    /// Read a file of the memdisk (`/grub.cfg` for `(memdisk)/grub.cfg`).
    pub fn memdisk_file(&self, path: &str) -> Result<Vec<u8>, String> {
        let disk = self.memdisk.as_deref().ok_or("grub image has no memdisk")?;
        FatVolume::parse(disk)?.read(path)
    }
}
