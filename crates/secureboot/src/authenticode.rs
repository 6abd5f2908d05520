//! Authenticode signatures: PKCS#7 SignedData (RFC 2315) whose content is an
//! SpcIndirectDataContent carrying the image digest, and their verification against one
//! trusted certificate exactly as EDK2's `AuthenticodeVerify`/`Pkcs7Verify` do it. Never
//! decides a policy: it answers "does this signature chain to that certificate".

use crate::der::{self, Der};
use crate::hash::HashAlgorithm;
use crate::x509::Certificate;
use crate::{Error, Result};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509PurposeId, X509};

const WHAT: &str = "Authenticode PKCS#7";
use crate::der::OID_SIGNED_DATA;
/// SPC_INDIRECT_DATA_OBJID, 1.3.6.1.4.1.311.2.1.4 (Authenticode PE specification).
const OID_SPC_INDIRECT_DATA: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x04];
/// Largest SignedData accepted (real ones are a few KiB; the whole table is bounded anyway).
pub const MAX_SIGNED_DATA: usize = 1 << 20;

/// A parsed Authenticode signature, borrowing the image's bytes.
#[derive(Debug, Clone)]
pub struct AuthenticodeSignature<'a> {
    /// The DER ContentInfo, without any trailing padding of the WIN_CERTIFICATE.
    der: &'a [u8],
    /// SignedData.digestAlgorithms' first entry: what EDK2 hashes the image with.
    signed_algorithm: HashAlgorithm,
    /// SpcIndirectDataContent.messageDigest.digestAlgorithm.
    indirect_algorithm: HashAlgorithm,
    /// SpcIndirectDataContent.messageDigest.digest: the signed image digest.
    digest: &'a [u8],
    /// The contents octets of SpcIndirectDataContent: what the signer's messageDigest
    /// attribute covers (EDK2 strips the SEQUENCE header the same way).
    content: &'a [u8],
    /// OpenSSL's parse of `der`, made once on first use (parsing is the costly part of a
    /// verification: every embedded certificate's key goes through OpenSSL's decoders).
    parsed: Parsed,
    /// The SignedData read strictly, for [`Self::verify_chain_fast`] (None: only OpenSSL
    /// can judge it).
    strict: Option<std::sync::Arc<StrictSignedData<'a>>>,
}

/// What the verification without OpenSSL needs of a SignedData: its certificates (all read
/// by [`Certificate::parse`]), its one signer, and that signer's authenticated attributes.
#[derive(Debug)]
struct StrictSignedData<'a> {
    certs: Vec<Certificate<'a>>,
    /// Index in `certs` of the certificate the SignerInfo names.
    signer: usize,
    /// SignerInfo.digestAlgorithm.
    digest: HashAlgorithm,
    /// The authenticated attributes as signed: their DER with the SET tag in place of [0].
    attributes: Vec<u8>,
    /// The messageDigest attribute's value.
    message_digest: &'a [u8],
    /// SignerInfo.encryptedDigest.
    signature: &'a [u8],
}

/// A lazily parsed PKCS#7, shared by the clones of one signature.
#[derive(Clone, Default)]
struct Parsed(std::sync::Arc<std::sync::OnceLock<Option<Pkcs7>>>);

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parsed")
    }
}

impl<'a> AuthenticodeSignature<'a> {
    /// Parses `bytes` (a WIN_CERTIFICATE's bCertificate). Trailing bytes after the DER
    /// ContentInfo are ignored, as OpenSSL's d2i does for EDK2. `base` is the absolute offset
    /// of `bytes` for error reporting.
    pub fn parse(bytes: &'a [u8], base: usize) -> Result<Self> {
        let ci =
            Der::new(bytes, base, WHAT).expect(der::SEQUENCE, "ContentInfo is not a SEQUENCE")?;
        if ci.raw.len() > MAX_SIGNED_DATA {
            return Err(Error::TooLarge {
                what: WHAT,
                offset: base,
                value: ci.raw.len() as u64,
                cap: MAX_SIGNED_DATA as u64,
            });
        }
        let mut r = ci.reader(WHAT);
        let oid = r.expect(der::OID, "contentType is not an OID")?;
        if oid.value != OID_SIGNED_DATA {
            return Err(Error::malformed(WHAT, oid.value_offset, "not a SignedData"));
        }
        let explicit = r.expect(der::CONTEXT_0, "SignedData is not [0] EXPLICIT")?;
        let sd = explicit
            .reader(WHAT)
            .expect(der::SEQUENCE, "SignedData is not a SEQUENCE")?;
        let mut sd = sd.reader(WHAT);
        sd.expect(der::INTEGER, "SignedData.version")?;
        let algs = sd.expect(der::SET, "SignedData.digestAlgorithms")?;
        let first = algs
            .reader(WHAT)
            .expect(der::SEQUENCE, "DigestAlgorithmIdentifier")?;
        let signed_algorithm = algorithm(first)?;
        let inner = sd.expect(der::SEQUENCE, "SignedData.contentInfo")?;
        let mut inner = inner.reader(WHAT);
        let ct = inner.expect(der::OID, "contentInfo.contentType")?;
        if ct.value != OID_SPC_INDIRECT_DATA {
            return Err(Error::malformed(
                WHAT,
                ct.value_offset,
                "content is not SpcIndirectDataContent",
            ));
        }
        let wrapped = inner.expect(der::CONTEXT_0, "contentInfo.content is not [0] EXPLICIT")?;
        let spc = wrapped
            .reader(WHAT)
            .expect(der::SEQUENCE, "SpcIndirectDataContent")?;
        let mut spc_r = spc.reader(WHAT);
        spc_r.expect(der::SEQUENCE, "SpcIndirectDataContent.data")?;
        let digest_info = spc_r.expect(der::SEQUENCE, "SpcIndirectDataContent.messageDigest")?;
        let mut di = digest_info.reader(WHAT);
        let alg = di.expect(der::SEQUENCE, "DigestInfo.digestAlgorithm")?;
        let digest_algorithm = algorithm(alg)?;
        let digest = di.expect(der::OCTET_STRING, "DigestInfo.digest")?;
        if digest.value.len() != digest_algorithm.output_len() {
            return Err(Error::malformed(
                WHAT,
                digest.value_offset,
                "digest length does not match its algorithm",
            ));
        }
        Ok(AuthenticodeSignature {
            der: ci.raw,
            signed_algorithm,
            indirect_algorithm: digest_algorithm,
            digest: digest.value,
            content: spc.value,
            parsed: Parsed::default(),
            strict: strict_signed_data(ci).map(std::sync::Arc::new),
        })
    }

    /// The algorithm the image must be hashed with for this signature: EDK2 reads it from
    /// SignedData.digestAlgorithms. A well-formed signature names the same one in
    /// [`Self::digest_algorithm`]; when they differ, no image digest is covered.
    pub fn image_hash_algorithm(&self) -> HashAlgorithm {
        self.signed_algorithm
    }

    /// The algorithm of [`Self::digest`] (SpcIndirectDataContent's DigestInfo).
    pub fn digest_algorithm(&self) -> HashAlgorithm {
        self.indirect_algorithm
    }

    /// The image digest the signer signed.
    pub fn digest(&self) -> &'a [u8] {
        self.digest
    }

    pub fn der(&self) -> &'a [u8] {
        self.der
    }

    /// Whether `image_digest` (made with `alg`) is the digest this signature covers.
    pub fn covers(&self, alg: HashAlgorithm, image_digest: &[u8]) -> bool {
        self.indirect_algorithm == alg
            && self.signed_algorithm == alg
            && self.digest == image_digest
    }

    /// Every certificate the SignedData carries, in order (EDK2's `Pkcs7GetSigners` list,
    /// which its dbx checks walk).
    pub fn certificates(&self) -> Result<Vec<X509>> {
        let p7 = match self.pkcs7() {
            Some(p7) => p7,
            None => {
                return Err(Pkcs7::from_der(self.der).err().map_or_else(
                    || Error::malformed(WHAT, 0, "PKCS#7 does not parse"),
                    |e| Error::crypto(WHAT, e),
                ))
            }
        };
        Ok(p7
            .signed()
            .and_then(|s| s.certificates())
            .map(|st| st.iter().map(|c| c.to_owned()).collect())
            .unwrap_or_default())
    }

    /// EDK2's `Pkcs7Verify`: the signer's signature over the authenticated attributes, their
    /// messageDigest over the SpcIndirectDataContent, and a chain from the signer to
    /// `trusted`, which may be an intermediate (partial chain); no validity-period check, any
    /// purpose.
    pub fn verify_chain(&self, trusted: &X509) -> bool {
        self.pkcs7()
            .is_some_and(|p7| verify_parsed(p7, Some(self.content), trusted, &[]))
    }

    /// [`Self::verify_chain`] without OpenSSL, when the strict reading can settle it:
    /// `Some(false)` when no chain from the signer can reach `anchor` (its subject names
    /// no certificate's issuer, and it is not the signer), `Some(true)` when the signer is
    /// `anchor` or is issued by it directly (names equal, key identifiers agreeing, a CA
    /// allowed to sign certificates, the certificate's signature valid under its key) and
    /// the signer's signature over the authenticated attributes and their messageDigest
    /// over the content both hold. `None` otherwise: ask [`Self::verify_chain`].
    pub(crate) fn verify_chain_fast(&self, anchor: &Certificate<'_>) -> Option<bool> {
        let sd = self.strict.as_deref()?;
        let signer = sd.certs.get(sd.signer)?;
        let is_signer = anchor.der == signer.der;
        let names_an_issuer = sd
            .certs
            .iter()
            .any(|c| c.issuer.cn_canonical == anchor.subject.cn_canonical);
        if !is_signer && !names_an_issuer {
            return Some(false);
        }
        let issued_by_anchor = || {
            signer.issuer.raw == anchor.subject.raw
                && match (signer.akid, anchor.skid) {
                    (Some(a), Some(s)) => a == s,
                    _ => true,
                }
                && anchor.key_cert_sign != Some(false)
                && (anchor.ca == Some(true)
                    || (anchor.ca.is_none() && anchor.key_cert_sign == Some(true)))
                && crate::x509::rsa_verify(
                    anchor.key,
                    signer.signature_hash,
                    signer.tbs,
                    signer.signature,
                ) == Some(true)
        };
        if !(is_signer || issued_by_anchor()) {
            return None;
        }
        let content_ok = sd.digest.digest(self.content) == sd.message_digest;
        let signed = crate::x509::rsa_verify(signer.key, sd.digest, &sd.attributes, sd.signature);
        (content_ok && signed == Some(true)).then_some(true)
    }

    /// Whether the strict reading of [`Self::verify_chain_fast`] accepted this SignedData
    /// (then OpenSSL reads it too).
    pub(crate) fn read_strictly(&self) -> bool {
        self.strict.is_some()
    }

    /// Whether [`Self::verify_chain_fast`] agrees with [`Self::verify_chain`] for the
    /// certificate `anchor` (DER); `None` when the fast path does not answer or OpenSSL
    /// cannot read `anchor`. For the differential fuzz target and tests.
    #[doc(hidden)]
    pub fn fast_path_agrees(&self, anchor: &[u8]) -> Option<bool> {
        let fast = self.verify_chain_fast(&Certificate::parse(anchor)?)?;
        let x509 = X509::from_der(anchor).ok()?;
        Some(fast == self.verify_chain(&x509))
    }

    fn pkcs7(&self) -> Option<&Pkcs7> {
        self.parsed
            .0
            .get_or_init(|| Pkcs7::from_der(self.der).ok())
            .as_ref()
    }
}

/// pkcs9-messageDigest, 1.2.840.113549.1.9.4.
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const CONTEXT_1: u8 = 0xa1;

/// The ContentInfo of a SignedData read strictly: minimal DER
/// throughout, certificates [`Certificate::parse`] vouches for, no CRLs, exactly one
/// SignerInfo of version 1 with authenticated attributes that OpenSSL's re-encoding leaves
/// byte for byte as they are, an RSA signature, and a digest algorithm listed in
/// digestAlgorithms.
fn strict_signed_data(content_info: der::Tlv<'_>) -> Option<StrictSignedData<'_>> {
    use crate::x509::{end, minimal, strict_next};
    if !minimal(content_info) {
        return None;
    }
    let mut ci = content_info.reader(WHAT);
    if strict_next(&mut ci, der::OID)?.value != OID_SIGNED_DATA {
        return None;
    }
    let explicit = strict_next(&mut ci, der::CONTEXT_0)?;
    end(&ci)?;
    let mut w = explicit.reader(WHAT);
    let sd = strict_next(&mut w, der::SEQUENCE)?;
    end(&w)?;
    let mut r = sd.reader(WHAT);
    if !crate::x509::minimal_integer(strict_next(&mut r, der::INTEGER)?.value) {
        return None;
    }
    let algs = strict_next(&mut r, der::SET)?;
    let mut listed = Vec::new();
    let mut a = algs.reader(WHAT);
    while a.remaining() > 0 {
        listed.push(strict_hash_algorithm(strict_next(&mut a, der::SEQUENCE)?)?);
    }
    // contentInfo: a valid type and one [0] EXPLICIT SEQUENCE (whose contents OpenSSL keeps
    // verbatim and `parse` reads).
    let content_info = strict_next(&mut r, der::SEQUENCE)?;
    let mut c = content_info.reader(WHAT);
    crate::x509::oid_value(strict_next(&mut c, der::OID)?)?;
    let mut wrapped = strict_next(&mut c, der::CONTEXT_0)?.reader(WHAT);
    end(&c)?;
    strict_next(&mut wrapped, der::SEQUENCE)?;
    end(&wrapped)?;
    let bag = strict_next(&mut r, der::CONTEXT_0)?;
    let mut certs = Vec::new();
    let mut b = bag.reader(WHAT);
    while b.remaining() > 0 {
        certs.push(Certificate::parse(strict_next(&mut b, der::SEQUENCE)?.raw)?);
    }
    let infos = strict_next(&mut r, der::SET)?;
    end(&r)?;
    let mut i = infos.reader(WHAT);
    let info = strict_next(&mut i, der::SEQUENCE)?;
    end(&i)?; // one signer
    let mut si = info.reader(WHAT);
    if strict_next(&mut si, der::INTEGER)?.value != [1] {
        return None;
    }
    let ias = strict_next(&mut si, der::SEQUENCE)?;
    let mut ias = ias.reader(WHAT);
    let issuer = strict_next(&mut ias, der::SEQUENCE)?;
    let serial = strict_next(&mut ias, der::INTEGER)?;
    end(&ias)?;
    if !crate::x509::minimal_integer(serial.value) {
        return None;
    }
    let digest = strict_hash_algorithm(strict_next(&mut si, der::SEQUENCE)?)?;
    if !listed.contains(&digest) {
        return None;
    }
    let attrs = strict_next(&mut si, der::CONTEXT_0)?;
    let enc_alg = strict_next(&mut si, der::SEQUENCE)?;
    let signature = strict_next(&mut si, der::OCTET_STRING)?;
    if si.remaining() > 0 {
        // Unauthenticated attributes (timestamps, nested signatures): not verified, but
        // OpenSSL must read them.
        strict_attributes(strict_next(&mut si, CONTEXT_1)?, false)?;
    }
    end(&si)?;
    let mut e = enc_alg.reader(WHAT);
    if strict_next(&mut e, der::OID)?.value != crate::x509::OID_RSA {
        return None;
    }
    if !strict_next(&mut e, 0x05)?.value.is_empty() {
        return None;
    }
    end(&e)?;
    // Authenticated attributes are re-encoded by OpenSSL before their signature is checked:
    // one value each, so that nothing is reordered.
    let mut message_digest = None;
    for (oid, value) in strict_attributes(attrs, true)? {
        if oid == OID_MESSAGE_DIGEST {
            if message_digest.is_some() || value.tag != der::OCTET_STRING {
                return None;
            }
            message_digest = Some(value.value);
        }
    }
    let message_digest = message_digest?;
    let mut attributes = attrs.raw.to_vec();
    *attributes.first_mut()? = der::SET;
    // The signer: the first certificate with that issuer and serial. A certificate before
    // it whose issuer OpenSSL could take for the same name makes the choice unclear.
    let issuer_cn = crate::x509::canonical_cn(issuer)?;
    let signer = certs
        .iter()
        .position(|c| c.issuer.cn_canonical == issuer_cn && c.serial == serial.value)?;
    if certs.get(signer)?.issuer.raw != issuer.raw {
        return None;
    }
    Some(StrictSignedData {
        certs,
        signer,
        digest,
        attributes,
        message_digest,
        signature: signature.value,
    })
}

/// Attributes as OpenSSL reads them: each a SEQUENCE of a valid type and a non-empty SET
/// of values, each a primitive OCTET STRING, OID or UTCTime (which OpenSSL re-encodes as
/// they are when they are minimal DER) or a constructed SEQUENCE or SET (which it keeps
/// verbatim); `single`: exactly one value each. The type and value of each value.
fn strict_attributes(attrs: der::Tlv<'_>, single: bool) -> Option<Vec<(&[u8], der::Tlv<'_>)>> {
    use crate::x509::{end, oid_value, strict_any, strict_next};
    let mut out = Vec::new();
    let mut at = attrs.reader(WHAT);
    while at.remaining() > 0 {
        let attr = strict_next(&mut at, der::SEQUENCE)?;
        let mut x = attr.reader(WHAT);
        let oid = oid_value(strict_next(&mut x, der::OID)?)?;
        let set = strict_next(&mut x, der::SET)?;
        end(&x)?;
        let mut v = set.reader(WHAT);
        let mut count = 0usize;
        while v.remaining() > 0 {
            let value = strict_any(&mut v)?;
            match value.tag {
                der::OCTET_STRING | 0x17 | der::SEQUENCE | der::SET => {}
                der::OID => {
                    oid_value(value)?;
                }
                _ => return None,
            }
            out.push((oid, value));
            count = count.saturating_add(1);
        }
        if count == 0 || (single && count != 1) {
            return None;
        }
    }
    Some(out)
}

/// A digest AlgorithmIdentifier (OID with absent or NULL parameters) of SHA-256/384/512.
fn strict_hash_algorithm(alg: der::Tlv<'_>) -> Option<HashAlgorithm> {
    use crate::x509::{end, strict_any, strict_next};
    let mut a = alg.reader(WHAT);
    let oid = strict_next(&mut a, der::OID)?;
    if a.remaining() > 0 {
        let null = strict_any(&mut a)?;
        if null.tag != 0x05 || !null.value.is_empty() {
            return None;
        }
    }
    end(&a)?;
    HashAlgorithm::from_oid(oid.value).filter(|h| {
        matches!(
            h,
            HashAlgorithm::Sha256 | HashAlgorithm::Sha384 | HashAlgorithm::Sha512
        )
    })
}

fn algorithm(alg: der::Tlv<'_>) -> Result<HashAlgorithm> {
    let oid = alg
        .reader(WHAT)
        .expect(der::OID, "AlgorithmIdentifier.algorithm")?;
    HashAlgorithm::from_oid(oid.value).ok_or(Error::Unsupported {
        what: WHAT,
        offset: oid.value_offset,
        detail: "digest algorithm",
    })
}

/// The trust store EDK2 builds in `Pkcs7Verify`: one trusted certificate, partial chains
/// allowed, no time check, purpose "any".
pub(crate) fn trust_store(trusted: &[&X509]) -> Option<X509Store> {
    let mut b = X509StoreBuilder::new().ok()?;
    for c in trusted {
        b.add_cert((*c).clone()).ok()?;
    }
    b.set_flags(X509VerifyFlags::PARTIAL_CHAIN | X509VerifyFlags::NO_CHECK_TIME)
        .ok()?;
    b.set_purpose(X509PurposeId::ANY).ok()?;
    Some(b.build())
}

/// PKCS7_verify(p7, extra, store(trusted), content, NULL, PKCS7_BINARY), as EDK2 calls it.
pub(crate) fn verify_pkcs7(
    p7_der: &[u8],
    content: Option<&[u8]>,
    trusted: &X509,
    extra: &[X509],
) -> bool {
    match Pkcs7::from_der(p7_der) {
        Ok(p7) => verify_parsed(&p7, content, trusted, extra),
        Err(_) => false,
    }
}

fn verify_parsed(p7: &Pkcs7, content: Option<&[u8]>, trusted: &X509, extra: &[X509]) -> bool {
    let Some(store) = trust_store(&[trusted]) else {
        return false;
    };
    let Ok(mut certs) = Stack::new() else {
        return false;
    };
    for c in extra {
        if certs.push(c.clone()).is_err() {
            return false;
        }
    }
    p7.verify(&certs, &store, content, None, Pkcs7Flags::BINARY)
        .is_ok()
}

/// The subject of a certificate as `openssl x509 -subject` prints it, for verdicts.
pub fn subject(cert: &X509) -> String {
    name(cert.subject_name())
}

fn name(n: &openssl::x509::X509NameRef) -> String {
    n.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The commonName of a certificate's subject, or its whole subject when it has none.
pub fn common_name(cert: &X509) -> String {
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_else(|| subject(cert))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRUB_SIGNATURE: &[u8] = include_bytes!("../testdata/grub-debian.p7");
    const DEBIAN_CA: &[u8] = include_bytes!("../testdata/debian-secure-boot-ca.der");
    /// `pesign -h` of the image this signature came from (testdata/README.md).
    const GRUB_DIGEST: &str = "a68f6d71ebddaa19751ff8d729f67d11b0df8e4c49400c3e7e90de16119e1265";

    #[test]
    fn debian_grub_signature_carries_pesigns_digest_and_chains_to_debians_ca() {
        let sig = AuthenticodeSignature::parse(GRUB_SIGNATURE, 0).unwrap();
        assert_eq!(sig.digest_algorithm(), HashAlgorithm::Sha256);
        assert_eq!(sig.image_hash_algorithm(), HashAlgorithm::Sha256);
        assert_eq!(hex::encode(sig.digest()), GRUB_DIGEST);
        assert!(sig.covers(HashAlgorithm::Sha256, &hex::decode(GRUB_DIGEST).unwrap()));
        let ca = X509::from_der(DEBIAN_CA).unwrap();
        assert!(sig.verify_chain(&ca));
        // Same name, other key: not trusted.
        assert!(!sig.verify_chain(&crate::test_keys::key_and_cert("Debian Secure Boot CA").1));
        let certs = sig.certificates().unwrap();
        assert_eq!(
            common_name(&certs[0]),
            "Debian Secure Boot Signer 2022 - grub2"
        );
        // The signer itself in the store is a partial chain EDK2 accepts too.
        assert!(sig.verify_chain(&certs[0]));
    }

    #[test]
    fn the_fast_path_settles_debian_grub_as_openssl_does() {
        let sig = AuthenticodeSignature::parse(GRUB_SIGNATURE, 0).unwrap();
        let ca = Certificate::parse(DEBIAN_CA).expect("the Debian CA reads strictly");
        assert_eq!(ca.subject.cn, "Debian Secure Boot CA");
        assert_eq!(sig.verify_chain_fast(&ca), Some(true));
        // The signer itself as the anchor: a partial chain, accepted.
        let signer_der = sig.certificates().unwrap()[0].to_der().unwrap();
        let signer = Certificate::parse(&signer_der).expect("signer reads strictly");
        assert_eq!(sig.verify_chain_fast(&signer), Some(true));
        // A CA no certificate of the signature names: no chain can reach it.
        let other = crate::test_keys::key_and_cert("Some Other CA")
            .1
            .to_der()
            .unwrap();
        let other = Certificate::parse(&other).expect("test certificate reads strictly");
        assert_eq!(sig.verify_chain_fast(&other), Some(false));
        // Debian's name on another key: only OpenSSL may say (it says no).
        let (_, impostor) = crate::test_keys::key_and_cert("Debian Secure Boot CA");
        let impostor_der = impostor.to_der().unwrap();
        let impostor_strict = Certificate::parse(&impostor_der).expect("reads strictly");
        assert_eq!(sig.verify_chain_fast(&impostor_strict), None);
        assert!(!sig.verify_chain(&impostor));
    }

    /// Every single-byte change of a real signature: wherever the strict reading answers,
    /// its answer is OpenSSL's (PKCS7_verify as EDK2 calls it), for the issuing CA, the
    /// signer itself, and an unrelated CA as the trusted certificate.
    #[test]
    fn the_fast_path_agrees_with_openssl_on_every_changed_byte() {
        let ca = X509::from_der(DEBIAN_CA).unwrap();
        let (_, other) = crate::test_keys::key_and_cert("Some Other CA");
        let signer = AuthenticodeSignature::parse(GRUB_SIGNATURE, 0)
            .unwrap()
            .certificates()
            .unwrap()
            .remove(0);
        let anchors: Vec<(X509, Vec<u8>)> = [ca, signer, other]
            .into_iter()
            .map(|c| {
                let der = c.to_der().unwrap();
                (c, der)
            })
            .collect();
        let mut answered = 0;
        let mut changed = GRUB_SIGNATURE.to_vec();
        for at in 0..changed.len() {
            for flip in [0x01u8, 0x80] {
                changed[at] ^= flip;
                if let Ok(sig) = AuthenticodeSignature::parse(&changed, 0) {
                    for (x509, der) in &anchors {
                        let Some(strict) = Certificate::parse(der) else {
                            continue;
                        };
                        if let Some(fast) = sig.verify_chain_fast(&strict) {
                            answered += 1;
                            assert_eq!(
                                fast,
                                sig.verify_chain(x509),
                                "byte {at} ^ {flip:#04x}, anchor {}",
                                strict.subject.cn
                            );
                        }
                    }
                }
                changed[at] ^= flip;
            }
        }
        assert!(
            answered > 1000,
            "the fast path answered only {answered} times"
        );
    }

    #[test]
    fn a_changed_byte_anywhere_in_the_signed_attributes_breaks_the_signature() {
        let ca = X509::from_der(DEBIAN_CA).unwrap();
        let sig = AuthenticodeSignature::parse(GRUB_SIGNATURE, 0).unwrap();
        let digest_at = GRUB_SIGNATURE
            .windows(32)
            .position(|w| w == sig.digest())
            .unwrap();
        let mut bad = GRUB_SIGNATURE.to_vec();
        bad[digest_at] ^= 1;
        let sig = AuthenticodeSignature::parse(&bad, 0).unwrap();
        assert!(!sig.verify_chain(&ca));
    }

    /// Found by the secureboot_authenticode fuzz target: SignedData.digestAlgorithms and the
    /// DigestInfo may name different algorithms. EDK2 hashes the image with the first, so
    /// such a signature covers no image.
    #[test]
    fn regression_fuzz_mismatched_digest_algorithms_cover_nothing() {
        let sha256 = HashAlgorithm::Sha256.oid();
        let at = GRUB_SIGNATURE
            .windows(sha256.len())
            .position(|w| w == sha256)
            .unwrap();
        let mut odd = GRUB_SIGNATURE.to_vec();
        odd[at..at + sha256.len()].copy_from_slice(HashAlgorithm::Sha384.oid());
        let sig = AuthenticodeSignature::parse(&odd, 0).unwrap();
        assert_eq!(sig.image_hash_algorithm(), HashAlgorithm::Sha384);
        assert_eq!(sig.digest_algorithm(), HashAlgorithm::Sha256);
        assert_eq!(sig.digest().len(), sig.digest_algorithm().output_len());
        let digest = hex::decode(GRUB_DIGEST).unwrap();
        assert!(!sig.covers(HashAlgorithm::Sha256, &digest));
        assert!(!sig.covers(HashAlgorithm::Sha384, &digest));
    }

    #[test]
    fn every_prefix_of_a_real_signature_is_an_error() {
        for n in 0..GRUB_SIGNATURE.len() {
            let r = AuthenticodeSignature::parse(&GRUB_SIGNATURE[..n], 100);
            let e = r.expect_err("a prefix must not parse");
            assert!(e.offset().is_some_and(|o| o >= 100), "{e}");
        }
        // Trailing padding after the DER, as WIN_CERTIFICATE entries carry, is ignored.
        let mut padded = GRUB_SIGNATURE.to_vec();
        padded.extend_from_slice(&[0; 7]);
        assert!(AuthenticodeSignature::parse(&padded, 0).is_ok());
    }
}
