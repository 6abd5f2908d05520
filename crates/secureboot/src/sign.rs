//! Signing: Authenticode signatures for PE/COFF images (as sbsign makes them: an
//! SpcIndirectDataContent with the image digest, one signer with contentType and
//! messageDigest authenticated attributes, appended as a WIN_CERTIFICATE) and appended
//! kernel module signatures (as the kernel's sign-file makes them). Never chooses keys or
//! policy: the caller hands over the key and the certificates.

use crate::der::{integer, oid, seq, tlv};
use crate::hash::HashAlgorithm;
use crate::pe::{DigestFlavor, PeImage, WIN_CERT_TYPE_PKCS_SIGNED_DATA};
use crate::{Error, Result};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{Id, PKey, Private};
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::x509::X509;

const WHAT: &str = "signing";

use crate::der::OID_SIGNED_DATA;
const OID_SPC_INDIRECT_DATA: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x04];
/// SPC_PE_IMAGE_DATAOBJ, 1.3.6.1.4.1.311.2.1.15.
const OID_SPC_PE_IMAGE_DATA: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x0f];
/// PKCS#9 contentType and messageDigest (RFC 2985).
const OID_CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// ecdsa-with-SHA256/384/512 (RFC 5758).
fn ecdsa_oid(alg: HashAlgorithm) -> Option<&'static [u8]> {
    match alg {
        HashAlgorithm::Sha256 => Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        HashAlgorithm::Sha384 => Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]),
        HashAlgorithm::Sha512 => Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04]),
        _ => None,
    }
}

fn message_digest(alg: HashAlgorithm) -> openssl::hash::MessageDigest {
    use openssl::hash::MessageDigest;
    match alg {
        HashAlgorithm::Sha1 => MessageDigest::sha1(),
        HashAlgorithm::Sha224 => MessageDigest::sha224(),
        HashAlgorithm::Sha256 => MessageDigest::sha256(),
        HashAlgorithm::Sha384 => MessageDigest::sha384(),
        HashAlgorithm::Sha512 => MessageDigest::sha512(),
    }
}

/// The Authenticode SignedData over `digest` (an image digest made with `alg`), signed by
/// `key` for `cert`, carrying `cert` and `chain`.
pub fn authenticode_signed_data(
    digest: &[u8],
    alg: HashAlgorithm,
    cert: &X509,
    key: &PKey<Private>,
    chain: &[X509],
) -> Result<Vec<u8>> {
    let alg_id = seq(&[&oid(alg.oid()), &[0x05, 0x00]]);
    // SpcPeImageData: no flags, file = SpcLink.file (SpcString.unicode "<<<Obsolete>>>").
    let obsolete: Vec<u8> = "<<<Obsolete>>>"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let link = tlv(0xa0, &tlv(0xa2, &tlv(0x80, &obsolete)));
    let pe_image_data = seq(&[&[0x03, 0x01, 0x00], &link]);
    let spc_content = [
        seq(&[&oid(OID_SPC_PE_IMAGE_DATA), &pe_image_data]),
        seq(&[&alg_id, &tlv(0x04, digest)]),
    ]
    .concat();
    let spc = tlv(0x30, &spc_content);
    // The messageDigest covers the SpcIndirectDataContent's contents octets (without its
    // SEQUENCE header), which is what EDK2 and Windows hand to the PKCS#7 verifier.
    let content_digest = alg.digest(&spc_content);
    let mut attributes = [
        seq(&[
            &oid(OID_CONTENT_TYPE),
            &tlv(0x31, &oid(OID_SPC_INDIRECT_DATA)),
        ]),
        seq(&[
            &oid(OID_MESSAGE_DIGEST),
            &tlv(0x31, &tlv(0x04, &content_digest)),
        ]),
    ];
    // DER orders the members of a SET OF by their encodings.
    attributes.sort();
    let attributes = attributes.concat();
    let mut signer = Signer::new(message_digest(alg), key).map_err(|e| Error::crypto(WHAT, e))?;
    let signature = signer
        .sign_oneshot_to_vec(&tlv(0x31, &attributes))
        .map_err(|e| Error::crypto(WHAT, e))?;
    let signature_alg = match key.id() {
        Id::RSA => seq(&[&oid(OID_RSA_ENCRYPTION), &[0x05, 0x00]]),
        Id::EC => seq(&[&oid(ecdsa_oid(alg).ok_or(Error::Unsupported {
            what: WHAT,
            offset: 0,
            detail: "ECDSA with this digest",
        })?)]),
        _ => {
            return Err(Error::Unsupported {
                what: WHAT,
                offset: 0,
                detail: "key type (RSA or EC only)",
            })
        }
    };
    let issuer = cert
        .issuer_name()
        .to_der()
        .map_err(|e| Error::crypto(WHAT, e))?;
    let serial = cert
        .serial_number()
        .to_bn()
        .map_err(|e| Error::crypto(WHAT, e))?
        .to_vec();
    let signer_info = seq(&[
        &integer(&[1]),
        &seq(&[&issuer, &integer(&serial)]),
        &alg_id,
        &tlv(0xa0, &attributes),
        &signature_alg,
        &tlv(0x04, &signature),
    ]);
    let mut certs = cert.to_der().map_err(|e| Error::crypto(WHAT, e))?;
    for c in chain {
        certs.extend(c.to_der().map_err(|e| Error::crypto(WHAT, e))?);
    }
    let signed_data = seq(&[
        &integer(&[1]),
        &tlv(0x31, &alg_id),
        &seq(&[&oid(OID_SPC_INDIRECT_DATA), &tlv(0xa0, &spc)]),
        &tlv(0xa0, &certs),
        &tlv(0x31, &signer_info),
    ]);
    Ok(seq(&[&oid(OID_SIGNED_DATA), &tlv(0xa0, &signed_data)]))
}

/// `image` with one more Authenticode signature (`alg` digest) in its certificate table, as
/// sbsign writes it: an unsigned image is first padded with zeros to a multiple of 8 (so the
/// digest signed is shim's), the table is placed last and every entry is 8-byte aligned.
pub fn sign_image(
    image: &[u8],
    alg: HashAlgorithm,
    cert: &X509,
    key: &PKey<Private>,
    chain: &[X509],
) -> Result<Vec<u8>> {
    let pe = PeImage::parse(image)?;
    let entry_at = pe.security_entry_offset().ok_or(Error::malformed(
        WHAT,
        0,
        "no certificate table entry to fill",
    ))?;
    let dir = pe.security_directory();
    let (body_len, mut table) = if dir.size == 0 {
        (image.len(), Vec::new())
    } else {
        // The existing table must be last for the new one to stay last.
        let start = dir.virtual_address as usize;
        let end = start
            .checked_add(dir.size as usize)
            .ok_or(Error::malformed(WHAT, entry_at, "table overflows"))?;
        if end != image.len() {
            return Err(Error::malformed(
                WHAT,
                start,
                "certificate table is not at the end of the image",
            ));
        }
        pe.certificates()?;
        (start, image.get(start..).unwrap_or_default().to_vec())
    };
    let mut out = image.get(..body_len).unwrap_or_default().to_vec();
    out.resize(body_len.next_multiple_of(8), 0);
    // The digest excludes the table and its directory entry: a signed image's is its own, an
    // unsigned image's is that of its padded copy.
    let digest = if dir.size == 0 {
        PeImage::parse(&out)?.authenticode_digest(alg, DigestFlavor::Firmware)?
    } else {
        pe.authenticode_digest(alg, DigestFlavor::Firmware)?
    };
    let der = authenticode_signed_data(&digest, alg, cert, key, chain)?;
    let len = der
        .len()
        .checked_add(8)
        .ok_or(Error::malformed(WHAT, 0, "signature too large"))?;
    table.extend_from_slice(
        &u32::try_from(len)
            .map_err(|_| Error::malformed(WHAT, 0, "signature too large"))?
            .to_le_bytes(),
    );
    table.extend_from_slice(&0x0200u16.to_le_bytes()); // WIN_CERT_REVISION_2_0
    table.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    table.extend_from_slice(&der);
    table.resize(table.len().next_multiple_of(8), 0);
    let va = u32::try_from(out.len()).map_err(|_| Error::malformed(WHAT, 0, "image too large"))?;
    let size =
        u32::try_from(table.len()).map_err(|_| Error::malformed(WHAT, 0, "table too large"))?;
    out.extend_from_slice(&table);
    let entry = out
        .get_mut(entry_at..entry_at.saturating_add(8))
        .ok_or(Error::Truncated {
            what: WHAT,
            offset: entry_at,
        })?;
    entry.copy_from_slice(&[va.to_le_bytes(), size.to_le_bytes()].concat());
    Ok(out)
}

/// `module` with an appended signature as the kernel's sign-file makes it: a detached
/// PKCS#7 without attributes or certificates, struct module_signature (id_type PKCS#7,
/// big-endian length) and the marker.
pub fn sign_module(module: &[u8], cert: &X509, key: &PKey<Private>) -> Result<Vec<u8>> {
    let none = Stack::new().map_err(|e| Error::crypto(WHAT, e))?;
    let flags =
        Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOATTR | Pkcs7Flags::NOCERTS;
    let p7 = Pkcs7::sign(cert, key, &none, module, flags).map_err(|e| Error::crypto(WHAT, e))?;
    let der = p7.to_der().map_err(|e| Error::crypto(WHAT, e))?;
    let mut out = module.to_vec();
    out.extend_from_slice(&der);
    out.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0]);
    out.extend_from_slice(
        &u32::try_from(der.len())
            .map_err(|_| Error::malformed(WHAT, 0, "signature too large"))?
            .to_be_bytes(),
    );
    out.extend_from_slice(crate::module_sig::MODULE_SIG_MAGIC);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esl::SignatureList;
    use crate::guid::{Guid, EFI_CERT_X509_GUID};
    use crate::test_keys::key_and_cert;
    use crate::{verify_image, Databases, Loader, Verdict};

    fn db_of(cert: &X509) -> Databases {
        let list = SignatureList::new(
            EFI_CERT_X509_GUID,
            Guid([0; 16]),
            vec![cert.to_der().unwrap()],
        )
        .unwrap();
        Databases {
            db: vec![list],
            dbx: vec![],
        }
    }

    #[test]
    fn a_signed_image_is_allowed_by_its_certificate_and_only_by_it() {
        let (key, cert) = key_and_cert("trustlaunch unit signer");
        let (_, other) = key_and_cert("someone else");
        let image = crate::pe::tests::unsigned_image();
        let signed = sign_image(&image, HashAlgorithm::Sha256, &cert, &key, &[]).unwrap();
        // The digest signed is shim's digest of the unsigned image (zero padding to 8).
        let pe = PeImage::parse(&signed).unwrap();
        let sig = pe.certificates().unwrap();
        let sig = crate::authenticode::AuthenticodeSignature::parse(sig[0].data, 0).unwrap();
        let shim = PeImage::parse(&image)
            .unwrap()
            .authenticode_digest(HashAlgorithm::Sha256, DigestFlavor::Shim)
            .unwrap();
        assert_eq!(sig.digest(), &shim[..]);
        assert!(verify_image(&db_of(&cert), &signed, &Loader::Firmware).is_allowed());
        assert!(matches!(
            verify_image(&db_of(&other), &signed, &Loader::Firmware),
            Verdict::Denied { .. }
        ));
        // A second signature appends; both verify.
        let (key2, cert2) = key_and_cert("second");
        let twice = sign_image(&signed, HashAlgorithm::Sha384, &cert2, &key2, &[]).unwrap();
        assert_eq!(
            PeImage::parse(&twice)
                .unwrap()
                .certificates()
                .unwrap()
                .len(),
            2
        );
        assert!(verify_image(&db_of(&cert), &twice, &Loader::Firmware).is_allowed());
        assert!(verify_image(&db_of(&cert2), &twice, &Loader::Firmware).is_allowed());
    }

    #[test]
    fn a_signed_module_verifies_against_its_certificate() {
        let (key, cert) = key_and_cert("module key");
        let (_, other) = key_and_cert("other key");
        let signed = sign_module(b"\x7fELF module body", &cert, &key).unwrap();
        use crate::module_sig::{verify, ModuleVerdict};
        assert!(matches!(
            verify(&signed, std::slice::from_ref(&cert)),
            ModuleVerdict::Allowed { .. }
        ));
        assert_eq!(verify(&signed, &[other]), ModuleVerdict::NotTrusted);
    }
}
