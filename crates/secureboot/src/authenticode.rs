//! Authenticode signatures: PKCS#7 SignedData (RFC 2315) whose content is an
//! SpcIndirectDataContent carrying the image digest, and their verification against one
//! trusted certificate exactly as EDK2's `AuthenticodeVerify`/`Pkcs7Verify` do it. Never
//! decides a policy: it answers "does this signature chain to that certificate".

use crate::der::{self, Der};
use crate::hash::HashAlgorithm;
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

    fn pkcs7(&self) -> Option<&Pkcs7> {
        self.parsed
            .0
            .get_or_init(|| Pkcs7::from_der(self.der).ok())
            .as_ref()
    }
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
