//! A read-only FAT12/16 reader for the small volumes firmware meets inside images (grub's
//! memdisk): boot sector geometry, the root directory, subdirectories, cluster chains.
//! Short (8.3) names only, compared case-insensitively; every read is bounds-checked.

/// A FAT12 or FAT16 volume in memory.
pub struct FatVolume<'a> {
    bytes: &'a [u8],
    bytes_per_sector: usize,
    sectors_per_cluster: usize,
    fat_start: usize,
    root_start: usize,
    root_entries: usize,
    data_start: usize,
    fat12: bool,
    clusters: usize,
}

fn le16(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 2)?;
    Some(usize::from(u16::from_le_bytes([s[0], s[1]])))
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 4)?;
    usize::try_from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok()
}

struct Entry {
    name: String,
    dir: bool,
    cluster: usize,
    size: usize,
}

impl<'a> FatVolume<'a> {
    /// Read the boot sector's geometry.
    pub fn parse(bytes: &'a [u8]) -> Result<FatVolume<'a>, String> {
        let bad = |what: &str| format!("FAT volume: {what}");
        let bps = le16(bytes, 11).ok_or_else(|| bad("truncated boot sector"))?;
        let spc = usize::from(*bytes.get(13).ok_or_else(|| bad("truncated boot sector"))?);
        let reserved = le16(bytes, 14).ok_or_else(|| bad("truncated boot sector"))?;
        let fats = usize::from(*bytes.get(16).ok_or_else(|| bad("truncated boot sector"))?);
        let root_entries = le16(bytes, 17).ok_or_else(|| bad("truncated boot sector"))?;
        let total16 = le16(bytes, 19).ok_or_else(|| bad("truncated boot sector"))?;
        let fat_size = le16(bytes, 22).ok_or_else(|| bad("truncated boot sector"))?;
        let total32 = le32(bytes, 32).ok_or_else(|| bad("truncated boot sector"))?;
        if !matches!(bps, 512 | 1024 | 2048 | 4096) || spc == 0 || fats == 0 || fat_size == 0 {
            return Err(bad("not a FAT12/16 boot sector"));
        }
        let total = if total16 != 0 { total16 } else { total32 };
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let data_sector = reserved + fats * fat_size + root_sectors;
        let clusters = total.saturating_sub(data_sector) / spc;
        Ok(FatVolume {
            bytes,
            bytes_per_sector: bps,
            sectors_per_cluster: spc,
            fat_start: reserved * bps,
            root_start: (reserved + fats * fat_size) * bps,
            root_entries,
            data_start: data_sector * bps,
            fat12: clusters < 4085,
            clusters,
        })
    }

    fn next_cluster(&self, c: usize) -> Option<usize> {
        let next = if self.fat12 {
            let at = self.fat_start + c + c / 2;
            let v = le16(self.bytes, at)?;
            if c.is_multiple_of(2) {
                v & 0xFFF
            } else {
                v >> 4
            }
        } else {
            le16(self.bytes, self.fat_start + 2 * c)?
        };
        let end = if self.fat12 { 0xFF8 } else { 0xFFF8 };
        (next >= 2 && next < end && next < self.clusters + 2).then_some(next)
    }

    /// The bytes of a cluster chain (at most `limit` bytes; chains are capped at the volume's
    /// cluster count, so a loop in the FAT ends).
    fn chain(&self, first: usize, limit: usize) -> Result<Vec<u8>, String> {
        let size = self.bytes_per_sector * self.sectors_per_cluster;
        let mut out = Vec::new();
        let mut c = first;
        for _ in 0..=self.clusters {
            if c < 2 || out.len() >= limit {
                break;
            }
            let at = self.data_start + (c - 2) * size;
            let data = self
                .bytes
                .get(at..at + size)
                .ok_or("FAT volume: cluster beyond the image")?;
            out.extend_from_slice(data);
            match self.next_cluster(c) {
                Some(n) => c = n,
                None => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    fn entries(raw: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        for e in raw.chunks_exact(32) {
            match e.first() {
                Some(0) | None => break,
                Some(0xE5) => continue,
                _ => {}
            }
            let attr = e.get(11).copied().unwrap_or(0);
            if attr & 0x08 != 0 {
                continue; // volume label or long-name entry
            }
            let base = String::from_utf8_lossy(e.get(0..8).unwrap_or_default())
                .trim_end()
                .to_string();
            let ext = String::from_utf8_lossy(e.get(8..11).unwrap_or_default())
                .trim_end()
                .to_string();
            let name = if ext.is_empty() {
                base
            } else {
                format!("{base}.{ext}")
            };
            out.push(Entry {
                name,
                dir: attr & 0x10 != 0,
                cluster: le16(e, 26).unwrap_or(0),
                size: le32(e, 28).unwrap_or(0),
            });
        }
        out
    }

    /// Read a file by absolute path (`/grub.cfg`, `/fonts/unicode.pf2`).
    pub fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let root = self
            .bytes
            .get(self.root_start..self.root_start + self.root_entries * 32)
            .ok_or("FAT volume: root directory beyond the image")?;
        let mut dir = Self::entries(root);
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let entry = dir
                .iter()
                .find(|e| e.name.eq_ignore_ascii_case(part))
                .ok_or_else(|| format!("file `{path}' not found"))?;
            if i + 1 == parts.len() {
                if entry.dir {
                    return Err(format!("`{path}' is a directory"));
                }
                return self.chain(entry.cluster, entry.size);
            }
            if !entry.dir {
                return Err(format!("file `{path}' not found"));
            }
            dir = Self::entries(&self.chain(entry.cluster, usize::MAX)?);
        }
        Err(format!("`{path}' is a directory"))
    }
}
