//! PE/COFF images (Microsoft PE/COFF specification 11.0): the headers Authenticode needs, the
//! section table, the attribute certificate table, and the Authenticode image digest computed
//! exactly as EDK2 and shim compute it. Reads borrowed bytes; never trusts a header's length.

use crate::bytes::{add, align_up, slice, u16_at, u32_at, Reader};
use crate::guid::{Guid, EFI_CERT_TYPE_PKCS7_GUID};
use crate::hash::HashAlgorithm;
use crate::{Error, Result};

const WHAT: &str = "PE/COFF image";
/// IMAGE_DIRECTORY_ENTRY_SECURITY: index of the Certificate Table data directory (PE 3.4.3).
const DIRECTORY_ENTRY_SECURITY: u32 = 4;
/// Its byte offset in the DataDirectory array (8-byte IMAGE_DATA_DIRECTORY entries).
const SECURITY_ENTRY_OFFSET: usize = 8 * DIRECTORY_ENTRY_SECURITY as usize;
/// WIN_CERT_TYPE_PKCS_SIGNED_DATA (PE 5.7 / UEFI 2.10 32.2.4).
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// WIN_CERT_TYPE_EFI_GUID (UEFI 2.10 32.2.4): WIN_CERTIFICATE_UEFI_GUID.
pub const WIN_CERT_TYPE_EFI_GUID: u16 = 0x0ef1;

/// Which implementation's Authenticode digest to compute. They agree on every signed image
/// whose certificate table is last in the file; they differ on unsigned images whose size is
/// not a multiple of 8, which shim pads with zeros (as sbsign and pesign pad before signing)
/// and EDK2 does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestFlavor {
    /// EDK2 `HashPeImage` (DxeImageVerificationLib): trailing data up to the certificate
    /// table, unpadded.
    Firmware,
    /// shim `generate_hash` (pe.c): the certificate table must be last; an unsigned image's
    /// trailing data is padded with zeros to a multiple of 8.
    Shim,
}

/// IMAGE_SECTION_HEADER (PE 4), the fields Secure Boot reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionHeader {
    /// File offset of this header in the section table.
    pub header_offset: usize,
    pub name: [u8; 8],
    /// The full name when `name` is `/N`, an offset into the COFF string table (how linkers
    /// store names longer than 8 bytes, such as shim's `.vendor_cert`).
    pub long_name: Option<Vec<u8>>,
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub size_of_raw_data: u32,
    pub pointer_to_raw_data: u32,
    pub pointer_to_relocations: u32,
    pub number_of_relocations: u16,
}

impl SectionHeader {
    /// The name up to its first NUL (the string-table name when there is one).
    pub fn name(&self) -> &[u8] {
        if let Some(long) = &self.long_name {
            return long;
        }
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(8);
        self.name.get(..end).unwrap_or_default()
    }
}

/// IMAGE_DATA_DIRECTORY (PE 3.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDirectory {
    pub virtual_address: u32,
    pub size: u32,
}

/// A parsed image: offsets into the caller's bytes, checked once.
#[derive(Debug, Clone)]
pub struct PeImage<'a> {
    bytes: &'a [u8],
    checksum_offset: usize,
    /// File offset of the Certificate Table data directory entry, when the optional header
    /// has one (NumberOfRvaAndSizes > 4).
    security_entry_offset: Option<usize>,
    security: DataDirectory,
    size_of_headers: usize,
    sections: Vec<SectionHeader>,
}

/// One WIN_CERTIFICATE of the attribute certificate table (PE 5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinCertificate<'a> {
    /// File offset of the WIN_CERTIFICATE header.
    pub offset: usize,
    pub revision: u16,
    pub certificate_type: u16,
    /// For WIN_CERTIFICATE_UEFI_GUID, its CertType.
    pub guid: Option<Guid>,
    /// bCertificate: for PKCS signed data (or the PKCS#7 GUID type) the DER SignedData.
    pub data: &'a [u8],
}

impl WinCertificate<'_> {
    /// Whether this entry carries an Authenticode PKCS#7 SignedData, the only kind EDK2 and
    /// shim verify.
    pub fn is_pkcs7(&self) -> bool {
        self.certificate_type == WIN_CERT_TYPE_PKCS_SIGNED_DATA
            || (self.certificate_type == WIN_CERT_TYPE_EFI_GUID
                && self.guid == Some(EFI_CERT_TYPE_PKCS7_GUID))
    }
}

impl<'a> PeImage<'a> {
    /// Parses the headers and the section table. Everything later read through the result is
    /// bounds-checked again against the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        // EDK2 accepts an image without a DOS stub (the PE header at 0); so do we.
        let pe = if slice(bytes, 0, 2, WHAT)? == b"MZ" {
            u32_at(bytes, 0x3c, WHAT)? as usize
        } else {
            0
        };
        if slice(bytes, pe, 4, WHAT)? != b"PE\0\0" {
            return Err(Error::malformed(WHAT, pe, "no PE signature"));
        }
        let file_header = add(pe, 4, WHAT, pe)?;
        let number_of_sections = u16_at(bytes, add(file_header, 2, WHAT, pe)?, WHAT)?;
        let symbols = u32_at(bytes, add(file_header, 8, WHAT, pe)?, WHAT)? as usize;
        let symbol_count = u32_at(bytes, add(file_header, 12, WHAT, pe)?, WHAT)? as usize;
        // The COFF string table follows the symbol table (18-byte records).
        let strings = symbol_count
            .checked_mul(18)
            .and_then(|n| n.checked_add(symbols))
            .filter(|_| symbols != 0);
        let size_of_optional = usize::from(u16_at(bytes, add(file_header, 16, WHAT, pe)?, WHAT)?);
        let opt = add(file_header, 20, WHAT, pe)?;
        let magic = u16_at(bytes, opt, WHAT)?;
        // Offsets of NumberOfRvaAndSizes and DataDirectory in the optional header (PE 3.4).
        let (rva_count_at, dirs_at): (usize, usize) = match magic {
            0x10b => (92, 96),
            0x20b => (108, 112),
            _ => return Err(Error::malformed(WHAT, opt, "unknown optional header magic")),
        };
        let checksum_offset = add(opt, 64, WHAT, opt)?;
        slice(bytes, checksum_offset, 4, WHAT)?;
        let size_of_headers = u32_at(bytes, add(opt, 60, WHAT, opt)?, WHAT)? as usize;
        let rva_count = u32_at(bytes, add(opt, rva_count_at, WHAT, opt)?, WHAT)?;
        let (security_entry_offset, security) = if rva_count > DIRECTORY_ENTRY_SECURITY {
            let at = add(
                opt,
                dirs_at.saturating_add(SECURITY_ENTRY_OFFSET),
                WHAT,
                opt,
            )?;
            let dir = DataDirectory {
                virtual_address: u32_at(bytes, at, WHAT)?,
                size: u32_at(bytes, add(at, 4, WHAT, at)?, WHAT)?,
            };
            if add(at, 8, WHAT, at)? > size_of_headers {
                return Err(Error::malformed(
                    WHAT,
                    at,
                    "SizeOfHeaders ends inside the data directories",
                ));
            }
            (Some(at), dir)
        } else {
            (
                None,
                DataDirectory {
                    virtual_address: 0,
                    size: 0,
                },
            )
        };
        if add(checksum_offset, 4, WHAT, opt)? > size_of_headers || size_of_headers > bytes.len() {
            return Err(Error::malformed(
                WHAT,
                add(opt, 60, WHAT, opt)?,
                "SizeOfHeaders out of range",
            ));
        }
        let table = add(opt, size_of_optional, WHAT, opt)?;
        let table_len = usize::from(number_of_sections) * 40;
        let mut r = Reader::new(slice(bytes, table, table_len, WHAT)?, table, WHAT);
        let mut sections = Vec::with_capacity(usize::from(number_of_sections));
        for _ in 0..number_of_sections {
            let header_offset = r.offset();
            let name = r.array::<8>()?;
            let virtual_size = r.u32()?;
            let virtual_address = r.u32()?;
            let size_of_raw_data = r.u32()?;
            let pointer_to_raw_data = r.u32()?;
            let pointer_to_relocations = r.u32()?;
            r.u32()?; // PointerToLinenumbers
            let number_of_relocations = r.u16()?;
            r.take(6)?; // NumberOfLinenumbers, Characteristics
            sections.push(SectionHeader {
                header_offset,
                pointer_to_relocations,
                number_of_relocations,
                long_name: strings.and_then(|t| long_name(bytes, t, &name)),
                name,
                virtual_size,
                virtual_address,
                size_of_raw_data,
                pointer_to_raw_data,
            });
        }
        Ok(PeImage {
            bytes,
            checksum_offset,
            security_entry_offset,
            security,
            size_of_headers,
            sections,
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn sections(&self) -> &[SectionHeader] {
        &self.sections
    }

    /// File offset of the Certificate Table data directory entry, when the optional header
    /// has one.
    pub fn security_entry_offset(&self) -> Option<usize> {
        self.security_entry_offset
    }

    /// The Certificate Table data directory entry (zero when absent).
    pub fn security_directory(&self) -> DataDirectory {
        self.security
    }

    pub fn is_signed(&self) -> bool {
        self.security.size != 0
    }

    /// The `.sbat` section as shim 16 finds it (shim.c `verify_buffer_sbat`): the section
    /// whose 8-byte header name is exactly `.sbat`, all its raw bytes, and only when its raw
    /// size is non-zero and at least its virtual size (otherwise shim ignores it). Two such
    /// sections, or relocations in it, make the image malformed.
    pub fn sbat_section(&self) -> Result<Option<&'a [u8]>> {
        let mut found = None;
        for s in self.sections.iter().filter(|s| &s.name == b".sbat\0\0\0") {
            if found.is_some() {
                return Err(Error::malformed(
                    WHAT,
                    s.header_offset,
                    "two .sbat sections",
                ));
            }
            if s.number_of_relocations != 0 || s.pointer_to_relocations != 0 {
                return Err(Error::malformed(
                    WHAT,
                    s.header_offset,
                    ".sbat section has relocations",
                ));
            }
            found = Some(None);
            if s.size_of_raw_data != 0 && s.size_of_raw_data >= s.virtual_size {
                found = Some(Some(slice(
                    self.bytes,
                    s.pointer_to_raw_data as usize,
                    s.size_of_raw_data as usize,
                    ".sbat section",
                )?));
            }
        }
        Ok(found.flatten())
    }

    /// The file bytes of the first section called `name` (long names resolved; raw size, cut
    /// to the virtual size when that is smaller and non-zero), e.g. shim's `.vendor_cert`.
    /// For `.sbat` as shim checks it, see [`Self::sbat_section`].
    pub fn section_data(&self, name: &[u8]) -> Result<Option<&'a [u8]>> {
        let Some(s) = self.sections.iter().find(|s| s.name() == name) else {
            return Ok(None);
        };
        let mut len = s.size_of_raw_data;
        if s.virtual_size != 0 && s.virtual_size < len {
            len = s.virtual_size;
        }
        slice(
            self.bytes,
            s.pointer_to_raw_data as usize,
            len as usize,
            "PE section",
        )
        .map(Some)
    }

    /// The Authenticode digest of the image ("Calculating the PE Image Hash", Authenticode
    /// PE specification), as `flavor` computes it.
    pub fn authenticode_digest(&self, alg: HashAlgorithm, flavor: DigestFlavor) -> Result<Vec<u8>> {
        // OpenSSL's SHA code (SHA-NI, AVX2) hashes a large image about half again as fast as
        // the portable crates; images are megabytes, so the digest is most of a verification.
        let mut h = Hasher::new(alg)?;
        let b = self.bytes;
        // Headers: up to CheckSum, skip it; up to the certificate table entry, skip it; rest.
        h.update(slice(b, 0, self.checksum_offset, WHAT)?);
        let after_checksum = add(self.checksum_offset, 4, WHAT, self.checksum_offset)?;
        match self.security_entry_offset {
            Some(entry) => {
                h.update(range(b, after_checksum, entry)?);
                h.update(range(b, add(entry, 8, WHAT, entry)?, self.size_of_headers)?);
            }
            None if flavor == DigestFlavor::Shim => {
                return Err(Error::malformed(
                    WHAT,
                    self.checksum_offset,
                    "no certificate table entry (shim requires one)",
                ));
            }
            None => h.update(range(b, after_checksum, self.size_of_headers)?),
        }
        // Sections in file order (a stable sort, as both implementations' insertion sorts).
        let mut sorted: Vec<&SectionHeader> = self.sections.iter().collect();
        sorted.sort_by_key(|s| s.pointer_to_raw_data);
        let mut hashed = self.size_of_headers;
        for s in sorted.iter().filter(|s| s.size_of_raw_data != 0) {
            let data = slice(
                b,
                s.pointer_to_raw_data as usize,
                s.size_of_raw_data as usize,
                "PE section",
            )?;
            h.update(data);
            hashed = add(hashed, data.len(), WHAT, s.pointer_to_raw_data as usize)?;
        }
        let file_len = b.len();
        let cert_size = self.security.size as usize;
        match flavor {
            DigestFlavor::Firmware => {
                if file_len > hashed {
                    let end = file_len.checked_sub(cert_size).ok_or(Error::malformed(
                        WHAT,
                        hashed,
                        "certificate table larger than the file",
                    ))?;
                    if end < hashed {
                        return Err(Error::malformed(
                            WHAT,
                            hashed,
                            "certificate table overlaps the sections",
                        ));
                    }
                    h.update(range(b, hashed, end)?);
                }
            }
            DigestFlavor::Shim => {
                if file_len > hashed && cert_size != 0 {
                    let end = file_len.checked_sub(cert_size).filter(|&e| e >= hashed);
                    match end {
                        Some(end) if end == self.security.virtual_address as usize => {
                            h.update(range(b, hashed, end)?);
                            hashed = end;
                        }
                        _ => {
                            return Err(Error::malformed(
                                WHAT,
                                hashed,
                                "data after the attribute certificate table",
                            ))
                        }
                    }
                }
                if file_len > hashed.saturating_add(cert_size) {
                    h.update(range(b, hashed, file_len)?);
                    let padded = align_up(file_len, 8, WHAT, file_len)?;
                    h.update(
                        [0u8; 8]
                            .get(..padded.saturating_sub(file_len))
                            .unwrap_or_default(),
                    );
                }
            }
        }
        h.finish()
    }

    /// The attribute certificate table walked as EDK2 walks it: entries 8-byte aligned, each
    /// inside the table and longer than its header; the walk must end exactly at the table's
    /// end.
    pub fn certificates(&self) -> Result<Vec<WinCertificate<'a>>> {
        self.certificates_as(DigestFlavor::Firmware)
    }

    /// The attribute certificate table walked as `flavor` walks it. shim's walk (shim.c
    /// `verify_buffer_authenticode`) also requires each entry inside the table, but accepts a
    /// bare header and does not care where the last aligned entry ends.
    pub fn certificates_as(&self, flavor: DigestFlavor) -> Result<Vec<WinCertificate<'a>>> {
        let dir = self.security;
        if dir.size == 0 {
            return Ok(Vec::new());
        }
        let start = dir.virtual_address as usize;
        let what = "attribute certificate table";
        let table = slice(self.bytes, start, dir.size as usize, what)?;
        let end = table.len();
        let min_len = match flavor {
            DigestFlavor::Firmware => 9,
            DigestFlavor::Shim => 8,
        };
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < end {
            let abs = start.saturating_add(off);
            let left = end.saturating_sub(off);
            let len = u32_at(table, off, "WIN_CERTIFICATE")? as usize;
            if left < min_len || len < min_len || len > left {
                return Err(Error::malformed(
                    "WIN_CERTIFICATE",
                    abs,
                    "dwLength outside the certificate table",
                ));
            }
            let revision = u16_at(table, add(off, 4, WHAT, abs)?, "WIN_CERTIFICATE")?;
            let certificate_type = u16_at(table, add(off, 6, WHAT, abs)?, "WIN_CERTIFICATE")?;
            let body = slice(
                table,
                add(off, 8, WHAT, abs)?,
                len.saturating_sub(8),
                "WIN_CERTIFICATE",
            )?;
            // WIN_CERTIFICATE_UEFI_GUID: CertType, then the data (a short one carries no
            // PKCS#7, and both implementations then pass over it).
            let (guid, data) = match (certificate_type, body.get(..16)) {
                (WIN_CERT_TYPE_EFI_GUID, Some(g)) => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(g);
                    (Some(Guid(a)), body.get(16..).unwrap_or_default())
                }
                _ => (None, body),
            };
            out.push(WinCertificate {
                offset: abs,
                revision,
                certificate_type,
                guid,
                data,
            });
            off = align_up(add(off, len, WHAT, abs)?, 8, WHAT, abs)?;
        }
        if off != end && flavor == DigestFlavor::Firmware {
            return Err(Error::malformed(
                what,
                start.saturating_add(end),
                "entries do not end at the table's end",
            ));
        }
        Ok(out)
    }
}

/// Resolves a `/N` section name through the string table at `table` (None when it is not
/// one, or points outside the file).
fn long_name(bytes: &[u8], table: usize, name: &[u8; 8]) -> Option<Vec<u8>> {
    let digits = name.strip_prefix(b"/")?;
    let end = digits.iter().position(|&b| b == 0).unwrap_or(digits.len());
    let offset: usize = std::str::from_utf8(digits.get(..end)?).ok()?.parse().ok()?;
    let start = table.checked_add(offset)?;
    let rest = bytes.get(start..)?;
    let len = rest.iter().take(256).position(|&b| b == 0)?;
    rest.get(..len).map(<[u8]>::to_vec)
}

fn range(b: &[u8], start: usize, end: usize) -> Result<&[u8]> {
    b.get(start..end).ok_or(Error::malformed(
        WHAT,
        start,
        "header range out of order or out of the file",
    ))
}

/// An incremental digest: SHA-1 and SHA-2/256 by RustCrypto (SHA-NI where the CPU has it,
/// and no OpenSSL start-up for a one-shot verification), SHA-384/512 by OpenSSL (faster
/// than RustCrypto's without dedicated instructions). OpenSSL's failures (internal errors
/// only) surface when the digest is taken.
enum Hasher {
    Rust(Box<dyn digest::DynDigest>),
    OpenSsl {
        inner: openssl::hash::Hasher,
        failed: Option<openssl::error::ErrorStack>,
    },
}

impl Hasher {
    fn new(alg: HashAlgorithm) -> Result<Self> {
        let md = match alg {
            HashAlgorithm::Sha1 | HashAlgorithm::Sha224 | HashAlgorithm::Sha256 => {
                return Ok(Self::Rust(alg.hasher()))
            }
            HashAlgorithm::Sha384 => openssl::hash::MessageDigest::sha384(),
            HashAlgorithm::Sha512 => openssl::hash::MessageDigest::sha512(),
        };
        let inner = openssl::hash::Hasher::new(md).map_err(|e| Error::crypto(WHAT, e))?;
        Ok(Self::OpenSsl {
            inner,
            failed: None,
        })
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Rust(h) => h.update(data),
            Self::OpenSsl { inner, failed } => {
                if failed.is_none() {
                    if let Err(e) = inner.update(data) {
                        *failed = Some(e);
                    }
                }
            }
        }
    }

    fn finish(self) -> Result<Vec<u8>> {
        match self {
            Self::Rust(h) => Ok(h.finalize().into_vec()),
            Self::OpenSsl { mut inner, failed } => {
                if let Some(e) = failed {
                    return Err(Error::crypto(WHAT, e));
                }
                inner
                    .finish()
                    .map(|d| d.to_vec())
                    .map_err(|e| Error::crypto(WHAT, e))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    const CHECKSUM: usize = 0x58 + 64;
    const SECURITY_ENTRY: usize = 0x58 + 112 + 32;

    /// A minimal PE32+ image: headers to 0x200, section ".b" at 0x400 and ".a" at 0x200 (the
    /// table lists them out of file order), then five bytes of trailing data.
    pub(crate) fn unsigned_image() -> Vec<u8> {
        let mut b = vec![0u8; 0x605];
        b[0..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        b[0x44..0x46].copy_from_slice(&0x8664u16.to_le_bytes());
        b[0x46..0x48].copy_from_slice(&2u16.to_le_bytes());
        b[0x54..0x56].copy_from_slice(&240u16.to_le_bytes());
        b[0x58..0x5a].copy_from_slice(&0x20bu16.to_le_bytes());
        b[0x58 + 60..0x58 + 64].copy_from_slice(&0x200u32.to_le_bytes());
        b[CHECKSUM..CHECKSUM + 4].copy_from_slice(&0xdeadbeefu32.to_le_bytes());
        b[0x58 + 108..0x58 + 112].copy_from_slice(&16u32.to_le_bytes());
        for (i, (name, raw)) in [(b".b\0\0\0\0\0\0", 0x400u32), (b".a\0\0\0\0\0\0", 0x200)]
            .iter()
            .enumerate()
        {
            let s = 0x148 + 40 * i;
            b[s..s + 8].copy_from_slice(*name);
            b[s + 8..s + 12].copy_from_slice(&0x200u32.to_le_bytes());
            b[s + 12..s + 16].copy_from_slice(&raw.to_le_bytes());
            b[s + 16..s + 20].copy_from_slice(&0x200u32.to_le_bytes());
            b[s + 20..s + 24].copy_from_slice(&raw.to_le_bytes());
        }
        for (i, x) in b[0x200..].iter_mut().enumerate() {
            *x = (i % 251) as u8;
        }
        b
    }

    /// The same image padded to 8 and given a 16-byte certificate table holding one
    /// WIN_CERTIFICATE of type `kind` with a 5-byte payload.
    pub(crate) fn signed_image(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut b = unsigned_image();
        b.resize(0x608, 0);
        let len = 8 + payload.len();
        let table = (len + 7) & !7;
        b[SECURITY_ENTRY..SECURITY_ENTRY + 4].copy_from_slice(&0x608u32.to_le_bytes());
        b[SECURITY_ENTRY + 4..SECURITY_ENTRY + 8].copy_from_slice(&(table as u32).to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(&0x0200u16.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(payload);
        b.resize(0x608 + table, 0);
        b
    }

    /// The digest the Authenticode specification's steps give, written out over fixed
    /// offsets: headers without CheckSum and the security entry, .a (0x200), .b (0x400), the
    /// trailing data, then `pad` zero bytes.
    fn by_hand(b: &[u8], end: usize, pad: usize) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(&b[..CHECKSUM]);
        h.update(&b[CHECKSUM + 4..SECURITY_ENTRY]);
        h.update(&b[SECURITY_ENTRY + 8..0x200]);
        h.update(&b[0x200..0x600]);
        h.update(&b[0x600..end]);
        h.update(vec![0u8; pad]);
        h.finalize().to_vec()
    }

    #[test]
    fn firmware_and_shim_digests_of_an_unsigned_unaligned_image_differ_by_the_padding() {
        let b = unsigned_image();
        let pe = PeImage::parse(&b).unwrap();
        assert!(!pe.is_signed());
        let firmware = pe
            .authenticode_digest(HashAlgorithm::Sha256, DigestFlavor::Firmware)
            .unwrap();
        let shim = pe
            .authenticode_digest(HashAlgorithm::Sha256, DigestFlavor::Shim)
            .unwrap();
        assert_eq!(firmware, by_hand(&b, 0x605, 0));
        assert_eq!(shim, by_hand(&b, 0x605, 3));
        assert_ne!(firmware, shim);
        assert_eq!(pe.section_data(b".a").unwrap().unwrap(), &b[0x200..0x400]);
    }

    #[test]
    fn signed_image_digests_agree_and_exclude_the_table() {
        let b = signed_image(WIN_CERT_TYPE_PKCS_SIGNED_DATA, b"\x30\x03abc");
        let pe = PeImage::parse(&b).unwrap();
        let expected = by_hand(&b, 0x608, 0);
        for flavor in [DigestFlavor::Firmware, DigestFlavor::Shim] {
            assert_eq!(
                pe.authenticode_digest(HashAlgorithm::Sha256, flavor)
                    .unwrap(),
                expected
            );
        }
        let certs = pe.certificates().unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].offset, 0x608);
        assert_eq!(certs[0].data, b"\x30\x03abc");
        assert!(certs[0].is_pkcs7());
    }

    #[test]
    fn a_table_that_does_not_end_at_its_size_is_malformed() {
        let mut b = signed_image(WIN_CERT_TYPE_PKCS_SIGNED_DATA, b"\x30\x03abc");
        // Claim 24 bytes: the walk ends at 16, inside the table.
        b[SECURITY_ENTRY + 4..SECURITY_ENTRY + 8].copy_from_slice(&24u32.to_le_bytes());
        b.resize(0x608 + 24, 0);
        let e = PeImage::parse(&b).unwrap().certificates().unwrap_err();
        assert!(e.offset().is_some());
    }

    #[test]
    fn every_prefix_of_a_signed_image_is_an_error() {
        let b = signed_image(WIN_CERT_TYPE_PKCS_SIGNED_DATA, b"\x30\x03abc");
        for n in 0..b.len() {
            let r = PeImage::parse(&b[..n]).and_then(|pe| {
                pe.authenticode_digest(HashAlgorithm::Sha1, DigestFlavor::Firmware)?;
                pe.authenticode_digest(HashAlgorithm::Sha256, DigestFlavor::Shim)?;
                pe.certificates()
            });
            assert!(r.is_err(), "prefix of {n} bytes parsed");
        }
    }
}
