//! SBAT, shim's generation-based revocation (shim SBAT.md): the `.sbat` section's CSV
//! (component, generation, vendor fields) and an SbatLevel (`sbat,1,DATESTAMP` then
//! `component,generation` lines), compared as shim's `verify_sbat` does. Text in, facts out.

use crate::{Error, Result};

/// Cap on rows in one SBAT text (real ones have a handful).
pub const MAX_ROWS: usize = 1024;

/// One row of a `.sbat` section or an SbatLevel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbatEntry {
    pub component: String,
    /// The generation column as written.
    pub generation_text: String,
    /// The generation as shim reads it: `atoi` into a UINT16 (junk reads as 0).
    pub generation: u16,
    /// The remaining columns (vendor name, package, version, URL; or the datestamp).
    pub rest: Vec<String>,
}

/// shim's reading of a generation: leading decimal digits, as C `atoi` then a UINT16 store.
fn atoi_u16(s: &str) -> u16 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    let mut v: u32 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v
            .wrapping_mul(10)
            .wrapping_add(u32::from(b.wrapping_sub(b'0')));
    }
    let v = if neg { v.wrapping_neg() } else { v };
    (v & 0xffff) as u16
}

/// Parses SBAT CSV text. Stops at the first NUL (sections are NUL-padded); blank lines are
/// skipped; each row needs at least `min_columns` non-empty columns.
fn parse_csv(bytes: &[u8], min_columns: usize, what: &'static str) -> Result<Vec<SbatEntry>> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = bytes.get(..end).unwrap_or_default();
    let mut out = Vec::new();
    let mut offset = 0usize;
    for line in text.split(|&b| b == b'\n') {
        let line_offset = offset;
        offset = offset.saturating_add(line.len()).saturating_add(1);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| Error::malformed(what, line_offset, "not UTF-8"))?;
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < min_columns || cols.iter().take(min_columns).any(|c| c.is_empty()) {
            return Err(Error::malformed(what, line_offset, "too few columns"));
        }
        if out.len() >= MAX_ROWS {
            return Err(Error::TooLarge {
                what,
                offset: line_offset,
                value: out.len() as u64,
                cap: MAX_ROWS as u64,
            });
        }
        let component = cols.first().copied().unwrap_or_default().to_string();
        let generation_text = cols.get(1).copied().unwrap_or_default().to_string();
        out.push(SbatEntry {
            generation: atoi_u16(&generation_text),
            component,
            generation_text,
            rest: cols.iter().skip(2).map(|c| c.to_string()).collect(),
        });
    }
    Ok(out)
}

/// The `.sbat` section of an image: six columns per row (SBAT.md).
pub fn parse_section(bytes: &[u8]) -> Result<Vec<SbatEntry>> {
    parse_csv(bytes, 6, ".sbat section")
}

/// An SbatLevel: the revocations shim applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbatLevel {
    pub entries: Vec<SbatEntry>,
}

impl SbatLevel {
    /// Parses SbatLevel text (`sbat,1,2023012900\nshim,2\ngrub,3\n`); the first row must be
    /// the `sbat` version row.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let entries = parse_csv(bytes, 2, "SbatLevel")?;
        match entries.first() {
            Some(e) if e.component == "sbat" => Ok(SbatLevel { entries }),
            _ => Err(Error::malformed(
                "SbatLevel",
                0,
                "does not start with an sbat row",
            )),
        }
    }

    /// The payloads of shim's `.sbatlevel` section (shim's `sbat_var_payload_header`: a
    /// version, then the offsets of the "automatic" (previous) and "latest" NUL-terminated
    /// levels, relative to the end of the version field).
    pub fn from_shim_section(section: &[u8]) -> Result<(SbatLevel, SbatLevel)> {
        let what = ".sbatlevel section";
        let version = crate::bytes::u32_at(section, 0, what)?;
        if version != 0 {
            return Err(Error::Unsupported {
                what,
                offset: 0,
                detail: "payload version",
            });
        }
        let at = |field: usize| -> Result<SbatLevel> {
            let rel = crate::bytes::u32_at(section, field, what)? as usize;
            let start =
                rel.checked_add(4)
                    .ok_or(Error::malformed(what, field, "offset overflows"))?;
            let rest = section.get(start..).ok_or(Error::Truncated {
                what,
                offset: start,
            })?;
            SbatLevel::parse(rest)
        };
        Ok((at(4)?, at(8)?))
    }

    /// The first component of `image` whose generation is below this level's (shim's
    /// `verify_sbat`: every row of the level against every row of the same name).
    pub fn revoked<'a>(&self, image: &'a [SbatEntry]) -> Option<(&'a SbatEntry, &SbatEntry)> {
        self.entries.iter().find_map(|lvl| {
            image
                .iter()
                .find(|e| e.component == lvl.component && e.generation < lvl.generation)
                .map(|e| (e, lvl))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRUB: &[u8] = b"sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\ngrub,5,Free Software Foundation,grub,2.06,https://www.gnu.org/software/grub/\ngrub.debian,5,Debian,grub2,2.06-13,https://tracker.debian.org/pkg/grub2\n\0\0\0";

    #[test]
    fn level_above_a_generation_revokes_it() {
        let img = parse_section(GRUB).unwrap();
        assert_eq!(img.len(), 3);
        let ok = SbatLevel::parse(b"sbat,1,2024010900\nshim,4\ngrub,5\n").unwrap();
        assert!(ok.revoked(&img).is_none());
        let bad = SbatLevel::parse(b"sbat,1,2099010100\ngrub,6\n").unwrap();
        let (e, l) = bad.revoked(&img).unwrap();
        assert_eq!(
            (e.component.as_str(), e.generation, l.generation),
            ("grub", 5, 6)
        );
    }

    #[test]
    fn generations_read_as_shim_reads_them() {
        assert_eq!(atoi_u16("12abc"), 12);
        assert_eq!(atoi_u16("x"), 0);
        assert_eq!(atoi_u16("65537"), 1);
    }

    #[test]
    fn every_prefix_parses_or_fails_without_panicking() {
        for n in 0..GRUB.len() {
            let _ = parse_section(&GRUB[..n]);
            let _ = SbatLevel::parse(&GRUB[..n]);
            let _ = SbatLevel::from_shim_section(&GRUB[..n]);
        }
        assert!(SbatLevel::parse(b"").is_err());
    }
}
