//! A strict reader of the X.509 certificates Authenticode chains are made of, for the
//! verification that needs no OpenSSL ([`crate::authenticode`]'s fast path).
//!
//! It reads a certificate only when it can vouch that OpenSSL — whose `PKCS7_verify` EDK2
//! runs — reads it the same way and finds nothing wrong with it: DER with minimal lengths,
//! version 3 (or 1 without extensions), names of single-valued RDNs holding Printable,
//! IA5 or valid UTF-8 strings with exactly one commonName, an RSA key, a PKCS#1 v1.5
//! SHA-2 signature naming the same algorithm inside and outside the TBSCertificate, and
//! only extensions it checks the way OpenSSL's `x509v3_cache_extensions` does (basic
//! constraints, key usage, extended key usage, key identifiers, subject alternative names,
//! CRL distribution points) or that OpenSSL does not interpret at all, never critical.
//! Anything else is `None`: the caller then asks OpenSSL. Never a verdict on its own.

use crate::der::{self, Der, Tlv};
use crate::hash::HashAlgorithm;

const WHAT: &str = "X.509 certificate";
const BOOLEAN: u8 = 0x01;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const CONTEXT_3: u8 = 0xa3;

/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// rsaEncryption, 1.2.840.113549.1.1.1.
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// sha256/384/512WithRSAEncryption, 1.2.840.113549.1.1.11/12/13.
const OID_RSA_SHA: [(&[u8], HashAlgorithm); 3] = [
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        HashAlgorithm::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        HashAlgorithm::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        HashAlgorithm::Sha512,
    ),
];

const EXT_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const EXT_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const EXT_SKID: &[u8] = &[0x55, 0x1d, 0x0e];
const EXT_AKID: &[u8] = &[0x55, 0x1d, 0x23];
const EXT_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const EXT_CRLDP: &[u8] = &[0x55, 0x1d, 0x1f];
/// Netscape certificate type, 2.16.840.1.113730.1.1 (OpenSSL reads it; Debian's CA has it).
const EXT_NS_CERT_TYPE: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x86, 0xf8, 0x42, 0x01, 0x01];
/// authorityInfoAccess, 1.3.6.1.5.5.7.1.1: OpenSSL never decodes it to verify.
const EXT_AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
/// Microsoft's private arc, 1.3.6.1.4.1.311: OpenSSL knows none of them.
const MICROSOFT_ARC: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37];

/// A name: its DER, and its one commonName as OpenSSL's canonical comparison sees it.
#[derive(Debug, Clone)]
pub(crate) struct Name<'a> {
    pub(crate) raw: &'a [u8],
    /// The commonName's text (what `common_name` prints).
    pub(crate) cn: &'a str,
    /// The commonName after OpenSSL's canonicalisation (`asn1_string_canon`): ASCII
    /// lower case, leading and trailing white space dropped, inner runs made one space.
    /// Names whose canonical commonNames differ never compare equal in OpenSSL.
    pub(crate) cn_canonical: Vec<u8>,
}

/// An RSA public key: big-endian modulus and exponent, without leading zero bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RsaKey<'a> {
    pub(crate) n: &'a [u8],
    pub(crate) e: &'a [u8],
}

#[derive(Debug, Clone)]
pub(crate) struct Certificate<'a> {
    pub(crate) der: &'a [u8],
    pub(crate) tbs: &'a [u8],
    /// The serial number INTEGER's contents octets.
    pub(crate) serial: &'a [u8],
    pub(crate) issuer: Name<'a>,
    pub(crate) subject: Name<'a>,
    pub(crate) key: RsaKey<'a>,
    /// The digest of the certificate's own RSA PKCS#1 v1.5 signature.
    pub(crate) signature_hash: HashAlgorithm,
    pub(crate) signature: &'a [u8],
    /// basicConstraints' cA, if the extension is present.
    pub(crate) ca: Option<bool>,
    /// keyUsage's keyCertSign, if the extension is present.
    pub(crate) key_cert_sign: Option<bool>,
    pub(crate) skid: Option<&'a [u8]>,
    /// authorityKeyIdentifier's keyIdentifier (certificates whose identifier names an
    /// issuer and serial are refused).
    pub(crate) akid: Option<&'a [u8]>,
}

impl<'a> Certificate<'a> {
    /// The certificate in `der` (nothing may follow it), or `None` when it is not one this
    /// reader vouches for.
    pub(crate) fn parse(der: &'a [u8]) -> Option<Certificate<'a>> {
        let outer = strict_next(&mut Der::new(der, 0, WHAT), der::SEQUENCE)?;
        if outer.raw.len() != der.len() {
            return None;
        }
        let mut c = outer.reader(WHAT);
        let tbs = strict_next(&mut c, der::SEQUENCE)?;
        let sig_alg = strict_next(&mut c, der::SEQUENCE)?;
        let sig = strict_next(&mut c, BIT_STRING)?;
        end(&c)?;
        let (&unused, signature) = sig.value.split_first()?;
        if unused != 0 {
            return None;
        }
        // [0] EXPLICIT version 3, or no version (1) and then no extensions.
        let mut t = tbs.reader(WHAT);
        let mut probe = tbs.reader(WHAT);
        let v3 = match strict_any(&mut probe)? {
            v if v.tag == der::CONTEXT_0 => {
                let mut r = v.reader(WHAT);
                if strict_next(&mut r, der::INTEGER)?.value != [2] {
                    return None;
                }
                end(&r)?;
                t = probe;
                true
            }
            _ => false,
        };
        let serial = strict_next(&mut t, der::INTEGER)?;
        if !minimal_integer(serial.value) {
            return None;
        }
        let inner_alg = strict_next(&mut t, der::SEQUENCE)?;
        if inner_alg.raw != sig_alg.raw {
            return None;
        }
        let signature_hash = rsa_signature_algorithm(sig_alg)?;
        let issuer = Name::parse(strict_next(&mut t, der::SEQUENCE)?)?;
        let validity = strict_next(&mut t, der::SEQUENCE)?;
        let mut v = validity.reader(WHAT);
        for _ in 0..2 {
            let time = strict_any(&mut v)?;
            if time.tag != UTC_TIME && time.tag != GENERALIZED_TIME {
                return None;
            }
        }
        end(&v)?;
        let subject = Name::parse(strict_next(&mut t, der::SEQUENCE)?)?;
        let key = rsa_key(strict_next(&mut t, der::SEQUENCE)?)?;
        let mut cert = Certificate {
            der,
            tbs: tbs.raw,
            serial: serial.value,
            issuer,
            subject,
            key,
            signature_hash,
            signature,
            ca: None,
            key_cert_sign: None,
            skid: None,
            akid: None,
        };
        if t.remaining() > 0 {
            // Only extensions may follow, and only in version 3 (unique identifiers are
            // refused).
            let exts = strict_next(&mut t, CONTEXT_3)?;
            end(&t)?;
            if !v3 {
                return None;
            }
            cert.extensions(exts)?;
        }
        Some(cert)
    }

    fn extensions(&mut self, wrapper: Tlv<'a>) -> Option<()> {
        let list = strict_next(&mut wrapper.reader(WHAT), der::SEQUENCE)?;
        let mut r = list.reader(WHAT);
        let mut seen: Vec<&[u8]> = Vec::new();
        while r.remaining() > 0 {
            let ext = strict_next(&mut r, der::SEQUENCE)?;
            let mut e = ext.reader(WHAT);
            let oid = strict_next(&mut e, der::OID)?;
            oid_value(oid)?;
            let mut value = strict_any(&mut e)?;
            let mut critical = false;
            if value.tag == BOOLEAN {
                critical = boolean(value)?;
                value = strict_any(&mut e)?;
            }
            end(&e)?;
            if value.tag != der::OCTET_STRING || seen.contains(&oid.value) {
                return None;
            }
            seen.push(oid.value);
            let body = value.value;
            // OpenSSL accepts these critical (X509_supported_extension); any other critical
            // extension fails the certificate (the key identifiers included).
            let supported = [
                EXT_BASIC_CONSTRAINTS,
                EXT_KEY_USAGE,
                EXT_NS_CERT_TYPE,
                EXT_EXT_KEY_USAGE,
                EXT_SAN,
                EXT_CRLDP,
            ];
            if critical && !supported.contains(&oid.value) {
                return None;
            }
            match oid.value {
                EXT_BASIC_CONSTRAINTS => self.basic_constraints(body)?,
                EXT_KEY_USAGE => self.key_usage(body)?,
                EXT_NS_CERT_TYPE => {
                    let bits = single(body, BIT_STRING)?;
                    if bits.value.first().is_none_or(|&unused| unused > 7) {
                        return None;
                    }
                }
                EXT_EXT_KEY_USAGE => {
                    let seq = single(body, der::SEQUENCE)?;
                    let mut s = seq.reader(WHAT);
                    if s.remaining() == 0 {
                        return None;
                    }
                    while s.remaining() > 0 {
                        oid_value(strict_next(&mut s, der::OID)?)?;
                    }
                }
                EXT_SKID => self.skid = Some(single(body, der::OCTET_STRING)?.value),
                EXT_AKID => {
                    let seq = single(body, der::SEQUENCE)?;
                    let mut s = seq.reader(WHAT);
                    if s.remaining() > 0 {
                        // [0] keyIdentifier only: an issuer name or serial is refused.
                        self.akid = Some(strict_next(&mut s, 0x80)?.value);
                    }
                    end(&s)?;
                }
                EXT_SAN => general_names(single(body, der::SEQUENCE)?)?,
                EXT_CRLDP => crl_distribution_points(single(body, der::SEQUENCE)?)?,
                EXT_AIA => {}
                o if o.starts_with(MICROSOFT_ARC) => {}
                _ => return None,
            }
        }
        Some(())
    }

    fn basic_constraints(&mut self, body: &[u8]) -> Option<()> {
        let seq = single(body, der::SEQUENCE)?;
        let mut s = seq.reader(WHAT);
        let mut ca = false;
        if s.remaining() > 0 {
            let first = strict_any(&mut s)?;
            let path_len = if first.tag == BOOLEAN {
                ca = boolean(first)?;
                if s.remaining() > 0 {
                    Some(strict_next(&mut s, der::INTEGER)?)
                } else {
                    None
                }
            } else {
                Some(first)
            };
            if let Some(p) = path_len {
                // A path length on a non-CA, or a negative one: OpenSSL versions differ.
                if p.tag != der::INTEGER
                    || !ca
                    || !minimal_integer(p.value)
                    || p.value.first().is_some_and(|b| b & 0x80 != 0)
                {
                    return None;
                }
            }
        }
        end(&s)?;
        self.ca = Some(ca);
        Some(())
    }

    fn key_usage(&mut self, body: &[u8]) -> Option<()> {
        let bits = single(body, BIT_STRING)?;
        let (&unused, bytes) = bits.value.split_first()?;
        // One or two bytes of bits, at least one set (an empty usage is invalid in newer
        // OpenSSL).
        if unused > 7 || bytes.is_empty() || bytes.len() > 2 || bytes.iter().all(|&b| b == 0) {
            return None;
        }
        self.key_cert_sign = Some(bytes.first().is_some_and(|b| b & 0x04 != 0));
        Some(())
    }
}

impl<'a> Name<'a> {
    fn parse(name: Tlv<'a>) -> Option<Name<'a>> {
        let mut cns = name_attributes(name)?
            .into_iter()
            .filter(|(oid, _)| *oid == OID_CN);
        let (_, cn) = cns.next()?;
        if cns.next().is_some() {
            return None;
        }
        Some(Name {
            raw: name.raw,
            cn,
            cn_canonical: canonical(cn.as_bytes()),
        })
    }
}

/// The attributes of a Name (type, text), each RDN single-valued and each value a string
/// this reader vouches for (OpenSSL fails to read a name whose strings it cannot
/// canonicalise).
fn name_attributes(name: Tlv<'_>) -> Option<Vec<(&[u8], &str)>> {
    let mut out = Vec::new();
    let mut r = name.reader(WHAT);
    while r.remaining() > 0 {
        let rdn = strict_next(&mut r, der::SET)?;
        let mut set = rdn.reader(WHAT);
        let atv = strict_next(&mut set, der::SEQUENCE)?;
        end(&set)?;
        let mut a = atv.reader(WHAT);
        let oid = oid_value(strict_next(&mut a, der::OID)?)?;
        let text = string(strict_any(&mut a)?)?;
        end(&a)?;
        out.push((oid, text));
    }
    Some(out)
}

/// The canonical commonName of a Name read as [`Name::parse`] reads it.
pub(crate) fn canonical_cn(name: Tlv<'_>) -> Option<Vec<u8>> {
    Name::parse(name).map(|n| n.cn_canonical)
}

/// RSA PKCS#1 v1.5 verification of `signature` over `message` hashed with `hash`:
/// `None` when the key or algorithm is one the fast implementation leaves to OpenSSL.
pub(crate) fn rsa_verify(
    key: RsaKey<'_>,
    hash: HashAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Option<bool> {
    crate::rsa_public::PublicKey::new(key.n, key.e)?.verify_pkcs1v15(
        hash,
        &hash.digest(message),
        signature,
    )
}

/// OpenSSL's `asn1_string_canon` on one value's bytes.
fn canonical(s: &[u8]) -> Vec<u8> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = s.iter().position(|b| !space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i.saturating_add(1));
    let mut out = Vec::with_capacity(end.saturating_sub(start));
    let mut in_space = false;
    for b in s.get(start..end).unwrap_or_default() {
        if space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b.to_ascii_lowercase());
            in_space = false;
        }
    }
    out
}

/// A directory string this reader vouches for: Printable or IA5 (ASCII), or UTF-8.
fn string(t: Tlv<'_>) -> Option<&str> {
    match t.tag {
        PRINTABLE_STRING | IA5_STRING if t.value.is_ascii() => std::str::from_utf8(t.value).ok(),
        UTF8_STRING => std::str::from_utf8(t.value).ok(),
        _ => None,
    }
}

/// GeneralNames holding only e-mail, DNS and URI names (IA5) and directory names.
fn general_names(seq: Tlv<'_>) -> Option<()> {
    let mut r = seq.reader(WHAT);
    if r.remaining() == 0 {
        return None;
    }
    while r.remaining() > 0 {
        let gn = strict_any(&mut r)?;
        match gn.tag {
            0x81 | 0x82 | 0x86 if gn.value.is_ascii() => {}
            0xa4 => {
                let mut d = gn.reader(WHAT);
                name_attributes(strict_next(&mut d, der::SEQUENCE)?)?;
                end(&d)?;
            }
            _ => return None,
        }
    }
    Some(())
}

/// CRLDistributionPoints: each point a full name (GeneralNames), no reasons, no CRL
/// issuer (OpenSSL's `setup_dp` works on those).
fn crl_distribution_points(seq: Tlv<'_>) -> Option<()> {
    let mut r = seq.reader(WHAT);
    if r.remaining() == 0 {
        return None;
    }
    while r.remaining() > 0 {
        let dp = strict_next(&mut r, der::SEQUENCE)?;
        let mut d = dp.reader(WHAT);
        let name = strict_next(&mut d, der::CONTEXT_0)?;
        end(&d)?;
        let mut n = name.reader(WHAT);
        let full = strict_next(&mut n, der::CONTEXT_0)?;
        end(&n)?;
        general_names(full)?;
    }
    Some(())
}

/// An RSA SubjectPublicKeyInfo: rsaEncryption with NULL parameters, RSAPublicKey.
fn rsa_key(spki: Tlv<'_>) -> Option<RsaKey<'_>> {
    let mut s = spki.reader(WHAT);
    let alg = strict_next(&mut s, der::SEQUENCE)?;
    let bits = strict_next(&mut s, BIT_STRING)?;
    end(&s)?;
    let mut a = alg.reader(WHAT);
    if strict_next(&mut a, der::OID)?.value != OID_RSA {
        return None;
    }
    let null = strict_next(&mut a, NULL)?;
    if !null.value.is_empty() {
        return None;
    }
    end(&a)?;
    let (&unused, key) = bits.value.split_first()?;
    if unused != 0 {
        return None;
    }
    let outer = Der::new(key, 0, WHAT).next().ok()?;
    if outer.tag != der::SEQUENCE || outer.raw.len() != key.len() || !minimal(outer) {
        return None;
    }
    let mut k = outer.reader(WHAT);
    let n = strict_next(&mut k, der::INTEGER)?;
    let e = strict_next(&mut k, der::INTEGER)?;
    end(&k)?;
    Some(RsaKey {
        n: positive(n.value)?,
        e: positive(e.value)?,
    })
}

/// The digest of a PKCS#1 v1.5 SHA-2 signature algorithm with NULL parameters.
fn rsa_signature_algorithm(alg: Tlv<'_>) -> Option<HashAlgorithm> {
    let mut a = alg.reader(WHAT);
    let oid = strict_next(&mut a, der::OID)?;
    let null = strict_next(&mut a, NULL)?;
    end(&a)?;
    if !null.value.is_empty() {
        return None;
    }
    OID_RSA_SHA
        .iter()
        .find(|(o, _)| *o == oid.value)
        .map(|(_, h)| *h)
}

/// The magnitude of a positive minimal INTEGER.
fn positive(v: &[u8]) -> Option<&[u8]> {
    if !minimal_integer(v) || v.first().is_some_and(|b| b & 0x80 != 0) {
        return None;
    }
    let skip = usize::from(v.first() == Some(&0));
    v.get(skip..).filter(|m| !m.is_empty())
}

/// INTEGER contents in minimal two's complement (what DER and OpenSSL's reader require).
pub(crate) fn minimal_integer(v: &[u8]) -> bool {
    match v {
        [] => false,
        [0, next, ..] => next & 0x80 != 0,
        [0xff, next, ..] => next & 0x80 == 0,
        _ => true,
    }
}

/// An OBJECT IDENTIFIER's contents as OpenSSL's reader accepts them: non-empty, ending a
/// sub-identifier, no sub-identifier starting with a 0x80 padding byte.
pub(crate) fn oid_value(t: Tlv<'_>) -> Option<&[u8]> {
    let v = t.value;
    if v.last().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    let mut starts = true;
    for &b in v {
        if starts && b == 0x80 {
            return None;
        }
        starts = b & 0x80 == 0;
    }
    Some(v)
}

fn boolean(t: Tlv<'_>) -> Option<bool> {
    match t.value {
        [0xff] => Some(true),
        [0x00] => Some(false),
        _ => None,
    }
}

/// The only element of `body`, with `tag`.
fn single(body: &[u8], tag: u8) -> Option<Tlv<'_>> {
    let mut r = Der::new(body, 0, WHAT);
    let t = strict_next(&mut r, tag)?;
    end(&r)?;
    Some(t)
}

/// The next element with `tag`, its length in minimal DER form.
pub(crate) fn strict_next<'a>(r: &mut Der<'a>, tag: u8) -> Option<Tlv<'a>> {
    strict_any(r).filter(|t| t.tag == tag)
}

/// The next element, its length in minimal DER form.
pub(crate) fn strict_any<'a>(r: &mut Der<'a>) -> Option<Tlv<'a>> {
    r.next().ok().filter(|t| minimal(*t))
}

/// Whether a TLV's length is in its shortest form.
pub(crate) fn minimal(t: Tlv<'_>) -> bool {
    let header = t.raw.len().saturating_sub(t.value.len());
    let len = t.value.len();
    let shortest = if len < 0x80 {
        2
    } else {
        let bytes = usize::BITS.saturating_sub(len.leading_zeros()).div_ceil(8);
        2usize.saturating_add(bytes as usize)
    };
    header == shortest
}

pub(crate) fn end(r: &Der<'_>) -> Option<()> {
    (r.remaining() == 0).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::verify::X509VerifyFlags;
    use openssl::x509::{X509Extension, X509NameBuilder, X509PurposeId, X509StoreContext, X509};

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn name(cn: &str) -> openssl::x509::X509Name {
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("O", "trustlaunch tests").unwrap();
        n.append_entry_by_text("CN", cn).unwrap();
        n.build()
    }

    /// A certificate for `subject_key`, issued by `issuer` (name and key), with `extensions`.
    fn cert(
        subject: &str,
        subject_key: &PKey<Private>,
        issuer: &str,
        issuer_key: &PKey<Private>,
        extensions: Vec<X509Extension>,
    ) -> X509 {
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = BigNum::from_u32(0x1234).unwrap().to_asn1_integer().unwrap();
        b.set_serial_number(&serial).unwrap();
        b.set_subject_name(&name(subject)).unwrap();
        b.set_issuer_name(&name(issuer)).unwrap();
        b.set_pubkey(subject_key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        for e in extensions {
            b.append_extension(e).unwrap();
        }
        b.sign(issuer_key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn ext(oid: &str, critical: bool, der: &[u8]) -> X509Extension {
        let oid = Asn1Object::from_str(oid).unwrap();
        let value = Asn1OctetString::new_from_bytes(der).unwrap();
        X509Extension::new_from_der(&oid, critical, &value).unwrap()
    }

    /// basicConstraints CA:TRUE and keyUsage keyCertSign, critical.
    fn ca_extensions() -> Vec<X509Extension> {
        vec![
            ext("2.5.29.19", true, &[0x30, 0x03, 0x01, 0x01, 0xff]),
            ext("2.5.29.15", true, &[0x03, 0x02, 0x01, 0x06]),
        ]
    }

    /// OpenSSL's chain check as EDK2 sets it up: `ca` alone trusted, partial chains, no
    /// time check, any purpose.
    fn openssl_accepts(ca: &X509, leaf: &X509) -> bool {
        let mut b = X509StoreBuilder::new().unwrap();
        b.add_cert(ca.clone()).unwrap();
        b.set_flags(X509VerifyFlags::PARTIAL_CHAIN | X509VerifyFlags::NO_CHECK_TIME)
            .unwrap();
        b.set_purpose(X509PurposeId::ANY).unwrap();
        let store = b.build();
        let mut ctx = X509StoreContext::new().unwrap();
        ctx.init(&store, leaf, &Stack::new().unwrap(), |c| c.verify_cert())
            .unwrap()
    }

    /// Certificates that the strict reader refuses or reads: it never reads one whose chain
    /// OpenSSL refuses, and reads the plain and the real ones.
    #[test]
    fn the_strict_reader_never_reads_what_openssl_refuses() {
        let (ca_key, leaf_key) = (key(), key());
        let ca = cert("Test CA", &ca_key, "Test CA", &ca_key, ca_extensions());
        let skid = [0x04, 0x02, 0xab, 0xcd];
        let eku_code_signing = [0x30, 0x0a, 0x06, 0x08, 0x2b, 6, 1, 5, 5, 7, 3, 3];
        let cases: Vec<(&str, Vec<X509Extension>, bool)> = vec![
            ("no extensions", vec![], true),
            (
                "EKU",
                vec![ext("2.5.29.37", false, &eku_code_signing)],
                true,
            ),
            ("SKID", vec![ext("2.5.29.14", false, &skid)], true),
            ("critical SKID", vec![ext("2.5.29.14", true, &skid)], false),
            (
                "critical private extension",
                vec![ext("1.3.6.1.4.1.99999.1", true, &[0x05, 0x00])],
                false,
            ),
            (
                "private extension",
                vec![ext("1.3.6.1.4.1.99999.1", false, &[0x05, 0x00])],
                false,
            ),
            (
                "Microsoft extension",
                vec![ext("1.3.6.1.4.1.311.21.1", false, &[0x02, 0x01, 0x00])],
                true,
            ),
            (
                "EKU twice",
                vec![
                    ext("2.5.29.37", false, &eku_code_signing),
                    ext("2.5.29.37", false, &eku_code_signing),
                ],
                false,
            ),
            (
                "malformed basic constraints",
                vec![ext("2.5.29.19", false, &[0x30, 0x03, 0x01, 0x01])],
                false,
            ),
        ];
        for (what, extensions, strict) in cases {
            let leaf = cert("Test leaf", &leaf_key, "Test CA", &ca_key, extensions);
            let der = leaf.to_der().unwrap();
            let read = Certificate::parse(&der);
            assert_eq!(read.is_some(), strict, "{what}");
            if read.is_some() {
                assert!(
                    openssl_accepts(&ca, &leaf),
                    "{what}: read, but OpenSSL refuses"
                );
            }
        }
        let ca_der = ca.to_der().unwrap();
        let read = Certificate::parse(&ca_der).expect("the CA");
        assert_eq!((read.ca, read.key_cert_sign), (Some(true), Some(true)));
        assert_eq!(read.subject.cn, "Test CA");
        assert_eq!(read.subject.cn_canonical, b"test ca");
        // Trailing bytes, or a length in a longer form than needed: not read.
        let mut trailing = ca_der.clone();
        trailing.push(0);
        assert!(Certificate::parse(&trailing).is_none());
        let mut long_form = vec![0x30, 0x83, 0x00];
        long_form.extend_from_slice(&ca_der[2..]);
        assert!(Certificate::parse(&long_form).is_none());
    }

    #[test]
    fn canonical_names_as_openssl_compares_them() {
        assert_eq!(
            canonical(b"  Microsoft   Corporation\tUEFI CA 2011 "),
            b"microsoft corporation uefi ca 2011"
        );
        assert_eq!(canonical(b""), b"");
        assert_eq!(canonical(b" \t "), b"");
        assert!(minimal_integer(&[0x00, 0x80]));
        assert!(!minimal_integer(&[0x00, 0x7f]));
        assert!(!minimal_integer(&[0xff, 0x80]));
        assert!(!minimal_integer(&[]));
    }
}
