//! A minimal DER reader and writer (X.690) for the few structures handled here by hand: the
//! Authenticode SpcIndirectDataContent, an X.509 certificate's TBSCertificate, and the
//! SignedData that signing builds. Definite lengths only, single-byte tags only, every length
//! checked against what remains; never recursion.

use crate::{Error, Result};

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const OID: u8 = 0x06;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const CONTEXT_0: u8 = 0xa0;

/// One tag-length-value, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    /// The contents octets.
    pub value: &'a [u8],
    /// Tag, length and contents together.
    pub raw: &'a [u8],
    /// Absolute offset of the contents in the caller's input.
    pub value_offset: usize,
}

impl<'a> Tlv<'a> {
    /// A reader over this element's contents.
    pub(crate) fn reader(&self, what: &'static str) -> Der<'a> {
        Der::new(self.value, self.value_offset, what)
    }
}

pub(crate) struct Der<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    what: &'static str,
}

impl<'a> Der<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize, what: &'static str) -> Self {
        Der {
            buf,
            pos: 0,
            base,
            what,
        }
    }

    fn at(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn byte(&mut self) -> Result<u8> {
        let b = self.buf.get(self.pos).copied().ok_or(Error::Truncated {
            what: self.what,
            offset: self.at(),
        })?;
        self.pos = self.pos.saturating_add(1);
        Ok(b)
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next element, whatever its tag.
    pub(crate) fn next(&mut self) -> Result<Tlv<'a>> {
        let start = self.pos;
        let start_abs = self.at();
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            return Err(Error::Unsupported {
                what: self.what,
                offset: start_abs,
                detail: "high-tag-number form",
            });
        }
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = first & 0x7f;
            if n == 0 {
                return Err(Error::malformed(
                    self.what,
                    start_abs,
                    "indefinite length in DER",
                ));
            }
            if n > 4 {
                return Err(Error::TooLarge {
                    what: self.what,
                    offset: start_abs,
                    value: u64::from(n),
                    cap: 4,
                });
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = (len << 8) | usize::from(self.byte()?);
            }
            len
        };
        let value_start = self.pos;
        let value_offset = self.at();
        let end = value_start
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(Error::Truncated {
                what: self.what,
                offset: value_offset,
            })?;
        self.pos = end;
        let value = self.buf.get(value_start..end).unwrap_or_default();
        let raw = self.buf.get(start..end).unwrap_or_default();
        Ok(Tlv {
            tag,
            value,
            raw,
            value_offset,
        })
    }

    /// The next element, which must carry `tag`.
    pub(crate) fn expect(&mut self, tag: u8, detail: &'static str) -> Result<Tlv<'a>> {
        let at = self.at();
        let tlv = self.next()?;
        if tlv.tag != tag {
            return Err(Error::malformed(self.what, at, detail));
        }
        Ok(tlv)
    }
}

/// The DER TBSCertificate of an X.509 certificate (RFC 5280 4.1): what EFI_CERT_X509_SHA*
/// entries hash.
pub(crate) fn tbs_certificate(cert: &[u8]) -> Result<&[u8]> {
    let what = "X.509 certificate";
    let outer = Der::new(cert, 0, what).expect(SEQUENCE, "not a SEQUENCE")?;
    let tbs = outer
        .reader(what)
        .expect(SEQUENCE, "TBSCertificate is not a SEQUENCE")?;
    Ok(tbs.raw)
}

/// id-signedData, 1.2.840.113549.1.7.2 (RFC 2315 14).
pub(crate) const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

// The writer half: enough DER to build SignedData by hand (lengths of any size, definite).

/// One DER element: `tag`, the definite length, `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub(crate) fn oid(value: &[u8]) -> Vec<u8> {
    tlv(0x06, value)
}

/// A positive INTEGER from big-endian magnitude bytes.
pub(crate) fn integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = match magnitude.iter().position(|&b| b != 0) {
        Some(i) => magnitude.get(i..).unwrap_or_default().to_vec(),
        None => vec![0],
    };
    let mut v = Vec::with_capacity(trimmed.len().saturating_add(1));
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend(trimmed);
    tlv(0x02, &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_long_and_bad() {
        let mut d = Der::new(&[0x04, 0x02, 0xaa, 0xbb], 0, "t");
        let t = d.next().unwrap();
        assert_eq!(t.value, &[0xaa, 0xbb]);
        assert!(d.next().is_err());
        let long = [0x04, 0x81, 0x01, 0xcc];
        assert_eq!(Der::new(&long, 0, "t").next().unwrap().value, &[0xcc]);
        assert!(Der::new(&[0x30, 0x80, 0, 0], 0, "t").next().is_err());
        assert!(Der::new(&[0x04, 0x05, 1], 0, "t").next().is_err());
        assert!(Der::new(&[0x04, 0x85, 1, 1, 1, 1, 1], 0, "t")
            .next()
            .is_err());
    }
}
