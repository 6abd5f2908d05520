//! Linux kernel module signatures (`scripts/sign-file.c`, `include/linux/module_signature.h`):
//! the `~Module signature appended~\n` trailer, struct module_signature, and the detached
//! PKCS#7 over the module body, verified against a keyring of certificates. Also finds the
//! certificates a kernel image embeds (its built-in trusted keys). Never loads a module.

use crate::authenticode::{common_name, verify_pkcs7};
use crate::{Error, Result};
use openssl::x509::X509;

/// The marker sign-file appends (MODULE_SIG_STRING "~Module signature appended~\n").
pub const MODULE_SIG_MAGIC: &[u8] = b"~Module signature appended~\n";
/// PKEY_ID_PKCS7: the only id_type the kernel accepts.
const PKEY_ID_PKCS7: u8 = 2;
/// sizeof(struct module_signature).
const SIG_INFO_LEN: usize = 12;
const WHAT: &str = "module signature";

/// An appended signature, split from its module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSignature<'a> {
    /// What the signature covers: the module up to the signature.
    pub body: &'a [u8],
    /// The DER PKCS#7 SignedData (detached).
    pub pkcs7: &'a [u8],
}

/// Splits a module into body and signature. `Ok(None)`: no trailer (unsigned).
pub fn parse(module: &[u8]) -> Result<Option<ModuleSignature<'_>>> {
    let Some(rest) = module.strip_suffix(MODULE_SIG_MAGIC) else {
        return Ok(None);
    };
    let info_at = rest
        .len()
        .checked_sub(SIG_INFO_LEN)
        .ok_or(Error::Truncated {
            what: WHAT,
            offset: 0,
        })?;
    let info = rest.get(info_at..).unwrap_or_default();
    // struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], sig_len (BE).
    let id_type = info.get(2).copied().unwrap_or(0);
    let mut len = [0u8; 4];
    len.copy_from_slice(info.get(8..12).unwrap_or(&[0; 4]));
    let sig_len = u32::from_be_bytes(len) as usize;
    if id_type != PKEY_ID_PKCS7 {
        return Err(Error::Unsupported {
            what: WHAT,
            offset: info_at,
            detail: "id_type is not PKEY_ID_PKCS7",
        });
    }
    if info.get(3..8).is_some_and(|z| z.iter().any(|&b| b != 0)) {
        return Err(Error::malformed(
            WHAT,
            info_at,
            "signer, key id and padding must be zero for PKCS#7",
        ));
    }
    let sig_at = info_at.checked_sub(sig_len).ok_or(Error::malformed(
        WHAT,
        info_at,
        "sig_len larger than the module",
    ))?;
    Ok(Some(ModuleSignature {
        body: rest.get(..sig_at).unwrap_or_default(),
        pkcs7: rest.get(sig_at..info_at).unwrap_or_default(),
    }))
}

/// The outcome of checking a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleVerdict {
    /// Signed by (or chained to) this keyring certificate.
    Allowed { authority: String },
    /// No signature trailer.
    Unsigned,
    /// Signed, but by nobody in the keyring (or the body does not match).
    NotTrusted,
    /// The trailer or the PKCS#7 is malformed.
    Malformed(Error),
}

/// Verifies `module` against `keyring` as the kernel's `verify_pkcs7_signature` does: the
/// signer is found among the keyring's certificates (sign-file omits certificates) or chains
/// to one of them; no validity-period check.
pub fn verify(module: &[u8], keyring: &[X509]) -> ModuleVerdict {
    let sig = match parse(module) {
        Ok(Some(s)) => s,
        Ok(None) => return ModuleVerdict::Unsigned,
        Err(e) => return ModuleVerdict::Malformed(e),
    };
    if openssl::pkcs7::Pkcs7::from_der(sig.pkcs7).is_err() {
        return ModuleVerdict::Malformed(Error::malformed(
            WHAT,
            module.len().saturating_sub(sig.pkcs7.len()),
            "PKCS#7 does not parse",
        ));
    }
    for cert in keyring {
        if verify_pkcs7(sig.pkcs7, Some(sig.body), cert, keyring) {
            return ModuleVerdict::Allowed {
                authority: common_name(cert),
            };
        }
    }
    ModuleVerdict::NotTrusted
}

/// How a bzImage's payload (the compressed vmlinux) is compressed, by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    Lz4,
    Lzma,
    Bzip2,
    Lzo,
    Unknown,
}

/// The compressed kernel inside a bzImage (x86 boot protocol 2.08+, Documentation/x86/boot:
/// setup_sects at 0x1f1, "HdrS" at 0x202, payload_offset/payload_length at 0x248/0x24c,
/// relative to the protected-mode code after the setup sectors). `Ok(None)`: not a bzImage.
pub fn bzimage_payload(image: &[u8]) -> Result<Option<(Compression, &[u8])>> {
    let what = "bzImage";
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Ok(None);
    }
    let setup_sects = image.get(0x1f1).copied().ok_or(Error::Truncated {
        what,
        offset: 0x1f1,
    })?;
    // A setup_sects of 0 means 4 (boot protocol).
    let sects = if setup_sects == 0 {
        4
    } else {
        usize::from(setup_sects)
    };
    let offset = crate::bytes::u32_at(image, 0x248, what)? as usize;
    let length = crate::bytes::u32_at(image, 0x24c, what)? as usize;
    let start = sects
        .checked_add(1)
        .and_then(|n| n.checked_mul(512))
        .and_then(|n| n.checked_add(offset))
        .ok_or(Error::malformed(what, 0x248, "payload offset overflows"))?;
    let payload = crate::bytes::slice(image, start, length, what)?;
    let kind = match payload {
        [0x1f, 0x8b, ..] | [0x1f, 0x9e, ..] => Compression::Gzip,
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Compression::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [0x02, 0x21, 0x4c, 0x18, ..] => Compression::Lz4,
        [0x5d, 0x00, ..] => Compression::Lzma,
        [b'B', b'Z', b'h', ..] => Compression::Bzip2,
        [0x89, b'L', b'Z', b'O', ..] => Compression::Lzo,
        _ => Compression::Unknown,
    };
    Ok(Some((kind, payload)))
}

/// Every DER X.509 certificate found inside `image` (an uncompressed kernel, whose
/// `system_certificate_list` holds the built-in trusted keys). A scan: any `SEQUENCE` with a
/// two-byte length that OpenSSL parses as a certificate, and whose DER is exactly that long.
pub fn embedded_certificates(image: &[u8]) -> Vec<X509> {
    let mut out: Vec<X509> = Vec::new();
    let mut i = 0usize;
    while let Some(w) = image.get(i..i.saturating_add(8)) {
        // SEQUENCE, long form of 2 bytes, then the TBSCertificate SEQUENCE the same way.
        if w.first() == Some(&0x30)
            && w.get(1) == Some(&0x82)
            && w.get(4) == Some(&0x30)
            && w.get(5) == Some(&0x82)
        {
            let len = usize::from(w.get(2).copied().unwrap_or(0)) << 8
                | usize::from(w.get(3).copied().unwrap_or(0));
            if let Some(der) = image.get(i..i.saturating_add(4).saturating_add(len)) {
                if let Ok(c) = X509::from_der(der) {
                    if c.to_der().map(|d| d == der).unwrap_or(false)
                        && !out.iter().any(|o| o.to_der().ok() == c.to_der().ok())
                    {
                        out.push(c);
                        i = i.saturating_add(der.len());
                        continue;
                    }
                }
            }
        }
        i = i.saturating_add(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_header_fields_locate_the_payload() {
        let mut b = vec![0u8; 0x1000];
        b[0x1f1] = 1; // setup sectors: the payload area starts at 2 * 512
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&6u32.to_le_bytes());
        b[0x410..0x416].copy_from_slice(&[0xfd, b'7', b'z', b'X', b'Z', 0]);
        let (kind, payload) = bzimage_payload(&b).unwrap().unwrap();
        assert_eq!((kind, payload.len()), (Compression::Xz, 6));
        assert_eq!(
            bzimage_payload(&b[..0x400]).unwrap_err().offset(),
            Some(0x410)
        );
        assert!(bzimage_payload(&[0; 16]).unwrap().is_none());
        for n in 0..b.len() {
            let _ = bzimage_payload(&b[..n]);
        }
    }

    #[test]
    fn trailer_prefixes_never_panic() {
        let mut m = vec![0u8; 16];
        m.extend_from_slice(&[0x30, 0x03, 1, 2, 3]);
        m.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        m.extend_from_slice(MODULE_SIG_MAGIC);
        let s = parse(&m).unwrap().unwrap();
        assert_eq!(s.pkcs7, &[0x30, 0x03, 1, 2, 3]);
        assert_eq!(s.body.len(), 16);
        for n in 0..m.len() {
            let _ = parse(&m[n..]);
            let _ = parse(&m[..n]);
        }
        assert!(matches!(verify(&m[..16], &[]), ModuleVerdict::Unsigned));
    }
}
