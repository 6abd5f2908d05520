//! verify_quote on quotes built here: TPMS_ATTEST, TPMT_SIGNATURE and TPMT_PUBLIC encoded by
//! hand from the TPM 2.0 Library specification (Part 2, 10.12.12, 11.3.4, 12.2.4), signed with
//! RustCrypto's `p256`, `p384` and `rsa` crates directly (not with the tpm crate's crypto that
//! the verifier uses). Every accepted scheme, and every error variant with its message.

#![allow(clippy::unwrap_used)]

use attest::{verify_quote, AkPublic, Error, HashAlg, PcrValues};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256, Sha384};
use std::sync::OnceLock;

const NONCE: &[u8] = b"verifier nonce 0123456789";

// --- Independent encoders ----------------------------------------------------------------

fn sized(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// TPMA_OBJECT of `tpm2_createak`: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth,
/// restricted, sign.
const AK_ATTRIBUTES: u32 = 0x0005_0072;

struct Quote {
    magic: u32,
    kind: u16,
    signer: Vec<u8>,
    extra: Vec<u8>,
    clock: u64,
    reset: u32,
    restart: u32,
    safe: u8,
    firmware: u64,
    /// (hash id, pcrSelect bitmap)
    selection: Vec<(u16, Vec<u8>)>,
    digest: Vec<u8>,
}

impl Quote {
    fn new(pcrs: &PcrValues, hash: HashAlg) -> Quote {
        let selection = vec![(0x000B, vec![0x83, 0x00, 0x00]), (0x0004, vec![0x01, 0, 0])];
        let digest = pcr_digest(pcrs, &selection, hash);
        Quote {
            magic: 0xFF54_4347,
            kind: 0x8018,
            signer: [&[0x00, 0x0B][..], &[0x5A; 32]].concat(),
            extra: NONCE.to_vec(),
            clock: 0x0102_0304_0506,
            reset: 3,
            restart: 1,
            safe: 1,
            firmware: 0x2019_1023_0016_3636,
            selection,
            digest,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(&self.magic.to_be_bytes());
        o.extend_from_slice(&self.kind.to_be_bytes());
        sized(&mut o, &self.signer);
        sized(&mut o, &self.extra);
        o.extend_from_slice(&self.clock.to_be_bytes());
        o.extend_from_slice(&self.reset.to_be_bytes());
        o.extend_from_slice(&self.restart.to_be_bytes());
        o.push(self.safe);
        o.extend_from_slice(&self.firmware.to_be_bytes());
        o.extend_from_slice(&(self.selection.len() as u32).to_be_bytes());
        for (hash, select) in &self.selection {
            o.extend_from_slice(&hash.to_be_bytes());
            o.push(select.len() as u8);
            o.extend_from_slice(select);
        }
        sized(&mut o, &self.digest);
        o
    }
}

fn hash(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlg::Sha256 => Sha256::digest(data).to_vec(),
        HashAlg::Sha384 => Sha384::digest(data).to_vec(),
        HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
    }
}

/// H(values of the selected PCRs, bank by bank, ascending index).
fn pcr_digest(pcrs: &PcrValues, selection: &[(u16, Vec<u8>)], alg: HashAlg) -> Vec<u8> {
    let mut cat = Vec::new();
    for (id, select) in selection {
        let bank = HashAlg::ALL.into_iter().find(|a| a.id() == *id).unwrap();
        for pcr in 0..(select.len() * 8) {
            if select[pcr / 8] & (1 << (pcr % 8)) != 0 {
                cat.extend_from_slice(pcrs.get(bank, pcr as u8).unwrap());
            }
        }
    }
    hash(alg, &cat)
}

fn pcrs() -> PcrValues {
    PcrValues::from_text(&format!(
        "sha256 0 {}\nsha256 1 {}\nsha256 7 {}\nsha1 0 {}\nsha256 9 {}\n",
        "11".repeat(32),
        "00".repeat(32),
        "77".repeat(32),
        "a0".repeat(20),
        "99".repeat(32),
    ))
    .unwrap()
}

fn ecdsa_sig(hash_id: u16, r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut o = vec![0x00, 0x18];
    o.extend_from_slice(&hash_id.to_be_bytes());
    sized(&mut o, r);
    sized(&mut o, s);
    o
}

fn rsa_sig(sig_alg: u16, hash_id: u16, sig: &[u8]) -> Vec<u8> {
    let mut o = sig_alg.to_be_bytes().to_vec();
    o.extend_from_slice(&hash_id.to_be_bytes());
    sized(&mut o, sig);
    o
}

/// TPM2B_PUBLIC of an ECC signing key with scheme (`scheme`, `scheme_hash`).
fn ecc_public(
    curve: u16,
    x: &[u8],
    y: &[u8],
    attrs: u32,
    scheme: u16,
    scheme_hash: u16,
) -> Vec<u8> {
    let mut t = vec![0x00, 0x23, 0x00, 0x0B];
    t.extend_from_slice(&attrs.to_be_bytes());
    sized(&mut t, &[]);
    t.extend_from_slice(&[0x00, 0x10]); // symmetric: NULL
    t.extend_from_slice(&scheme.to_be_bytes());
    if scheme != 0x0010 {
        t.extend_from_slice(&scheme_hash.to_be_bytes());
    }
    t.extend_from_slice(&curve.to_be_bytes());
    t.extend_from_slice(&[0x00, 0x10]); // kdf: NULL
    sized(&mut t, x);
    sized(&mut t, y);
    let mut o = Vec::new();
    sized(&mut o, &t);
    o
}

fn rsa_public(modulus: &[u8], attrs: u32, scheme: u16, scheme_hash: u16) -> Vec<u8> {
    let mut t = vec![0x00, 0x01, 0x00, 0x0B];
    t.extend_from_slice(&attrs.to_be_bytes());
    sized(&mut t, &[]);
    t.extend_from_slice(&[0x00, 0x10]);
    t.extend_from_slice(&scheme.to_be_bytes());
    if scheme != 0x0010 {
        t.extend_from_slice(&scheme_hash.to_be_bytes());
    }
    t.extend_from_slice(&((modulus.len() * 8) as u16).to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes()); // exponent 0: 65537
    sized(&mut t, modulus);
    let mut o = Vec::new();
    sized(&mut o, &t);
    o
}

// --- Keys ---------------------------------------------------------------------------------

fn p256_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&Sha256::digest(b"attest test key P-256")).unwrap()
}

fn p384_key() -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from_slice(&Sha384::digest(b"attest test key P-384")).unwrap()
}

fn p256_ak(scheme: u16, scheme_hash: u16) -> Vec<u8> {
    let point = p256_key().verifying_key().to_encoded_point(false);
    ecc_public(
        0x0003,
        point.x().unwrap(),
        point.y().unwrap(),
        AK_ATTRIBUTES,
        scheme,
        scheme_hash,
    )
}

fn p256_sign(digest: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let sig: p256::ecdsa::Signature = p256_key().sign_prehash(digest).unwrap();
    let (r, s) = sig.split_bytes();
    (r.to_vec(), s.to_vec())
}

fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap())
}

fn rsa_modulus() -> Vec<u8> {
    use rsa::traits::PublicKeyParts;
    rsa_key().n().to_bytes_be()
}

/// A P-256 ECDSA-SHA256 quote: (AK TPM2B_PUBLIC, attest, signature).
fn p256_quote(q: &Quote) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let attest = q.encode();
    let (r, s) = p256_sign(&Sha256::digest(&attest));
    (p256_ak(0x0018, 0x000B), attest, ecdsa_sig(0x000B, &r, &s))
}

fn ak(bytes: &[u8]) -> AkPublic {
    AkPublic::from_tpm2b_public(bytes).unwrap()
}

// --- Accepted quotes ----------------------------------------------------------------------

#[test]
fn ecdsa_p256_sha256_quote_verifies_and_reports_its_fields() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha256);
    let (ak_pub, attest, sig) = p256_quote(&q);
    let v = verify_quote(&ak(&ak_pub), &attest, &sig, NONCE, &pcrs).unwrap();
    assert_eq!(v.signer_name, q.signer);
    assert_eq!(v.extra_data, NONCE);
    assert_eq!(v.clock, 0x0102_0304_0506);
    assert_eq!(v.reset_count, 3);
    assert_eq!(v.restart_count, 1);
    assert!(v.safe);
    assert_eq!(v.firmware_version, 0x2019_1023_0016_3636);
    assert_eq!(
        v.selection,
        vec![(HashAlg::Sha256, vec![0, 1, 7]), (HashAlg::Sha1, vec![0])]
    );
    assert_eq!(v.pcr_digest, q.digest);
    assert_eq!(v.signature_hash, HashAlg::Sha256);
}

#[test]
fn the_pem_form_of_the_key_verifies_the_same_quote() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha256);
    let (ak_pub, attest, sig) = p256_quote(&q);
    let pem = p256_key()
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let from_pem = AkPublic::from_pem(&pem).unwrap();
    assert!(from_pem.same_key(&ak(&ak_pub)));
    assert_eq!(from_pem.name(), None);
    assert_eq!(from_pem.is_restricted_signing(), None);
    assert_eq!(from_pem.describe(), "ECC NIST P-256");
    verify_quote(&from_pem, &attest, &sig, NONCE, &pcrs).unwrap();
}

#[test]
fn the_name_is_name_alg_and_the_hash_of_the_tpmt_public() {
    let ak_pub = p256_ak(0x0018, 0x000B);
    let mut expected = vec![0x00, 0x0B];
    expected.extend_from_slice(&Sha256::digest(&ak_pub[2..]));
    let key = ak(&ak_pub);
    assert_eq!(key.name(), Some(expected.clone()));
    assert_eq!(key.is_restricted_signing(), Some(true));
    // A bare TPMT_PUBLIC is the same key with the same Name.
    let bare = AkPublic::from_tpm2b_public(&ak_pub[2..]).unwrap();
    assert_eq!(bare.name(), Some(expected));
    assert!(bare.same_key(&key));
}

#[test]
fn ecdsa_p384_sha384_quote_verifies() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha384);
    let attest = q.encode();
    let sig: p384::ecdsa::Signature = p384_key().sign_prehash(&Sha384::digest(&attest)).unwrap();
    let (r, s) = sig.split_bytes();
    let point = p384_key().verifying_key().to_encoded_point(false);
    let ak_pub = ecc_public(
        0x0004,
        point.x().unwrap(),
        point.y().unwrap(),
        AK_ATTRIBUTES,
        0x0018,
        0x000C,
    );
    let sig = ecdsa_sig(0x000C, &r, &s);
    let v = verify_quote(&ak(&ak_pub), &attest, &sig, NONCE, &pcrs).unwrap();
    assert_eq!(v.signature_hash, HashAlg::Sha384);
    assert_eq!(v.pcr_digest.len(), 48);
    let pem = p384_key()
        .verifying_key()
        .to_public_key_pem(p384::pkcs8::LineEnding::LF)
        .unwrap();
    let from_pem = AkPublic::from_pem(&pem).unwrap();
    assert_eq!(from_pem.describe(), "ECC NIST P-384");
    verify_quote(&from_pem, &attest, &sig, NONCE, &pcrs).unwrap();
}

#[test]
fn rsassa_quote_verifies_with_tpm2b_and_pem_keys() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha256);
    let attest = q.encode();
    let s = rsa_key()
        .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(&attest))
        .unwrap();
    let sig = rsa_sig(0x0014, 0x000B, &s);
    let tpm_key = ak(&rsa_public(&rsa_modulus(), AK_ATTRIBUTES, 0x0014, 0x000B));
    assert_eq!(tpm_key.describe(), "RSA-1024");
    verify_quote(&tpm_key, &attest, &sig, NONCE, &pcrs).unwrap();
    let pem = rsa_key()
        .to_public_key()
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap();
    let from_pem = AkPublic::from_pem(&pem).unwrap();
    assert!(from_pem.same_key(&tpm_key));
    verify_quote(&from_pem, &attest, &sig, NONCE, &pcrs).unwrap();
}

#[test]
fn rsapss_quote_verifies_with_digest_and_maximum_salt_lengths() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha256);
    let attest = q.encode();
    let digest = Sha256::digest(&attest);
    let key = ak(&rsa_public(&rsa_modulus(), AK_ATTRIBUTES, 0x0016, 0x000B));
    // 1024-bit key, SHA-256: the largest salt is 128 - 32 - 2 = 94 octets.
    for salt in [32usize, 94] {
        let s = rsa_key()
            .sign_with_rng(
                &mut rand_core::OsRng,
                rsa::Pss::new_with_salt::<Sha256>(salt),
                &digest,
            )
            .unwrap();
        let sig = rsa_sig(0x0016, 0x000B, &s);
        verify_quote(&key, &attest, &sig, NONCE, &pcrs)
            .unwrap_or_else(|e| panic!("salt {salt}: {e}"));
    }
}

#[test]
fn an_empty_selection_quotes_the_digest_of_nothing() {
    let mut q = Quote::new(&pcrs(), HashAlg::Sha256);
    let pcrs = PcrValues::new();
    q.selection.clear();
    q.digest = Sha256::digest(b"").to_vec();
    let (ak_pub, attest, sig) = p256_quote(&q);
    let v = verify_quote(&ak(&ak_pub), &attest, &sig, NONCE, &pcrs).unwrap();
    assert!(v.selection.is_empty());
}

// --- Every failure is its own error -------------------------------------------------------

/// Verify a P-256 quote made from `q` (signed after `q` is encoded).
fn verify_p256(q: &Quote, nonce: &[u8], pcrs: &PcrValues) -> Result<attest::VerifiedQuote, Error> {
    let (ak_pub, attest, sig) = p256_quote(q);
    verify_quote(&ak(&ak_pub), &attest, &sig, nonce, pcrs)
}

#[test]
fn a_changed_attest_byte_is_signature_invalid() {
    let pcrs = pcrs();
    let (ak_pub, mut attest, sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    // clockInfo.clock is bytes 69..77 here (magic 4, type 2, name 2 + 34, extraData 2 + 25).
    attest[70] ^= 0x01;
    let e = verify_quote(&ak(&ak_pub), &attest, &sig, NONCE, &pcrs).unwrap_err();
    assert_eq!(
        e,
        Error::SignatureInvalid {
            scheme: "ECDSA",
            hash: HashAlg::Sha256
        }
    );
    assert!(
        e.to_string().contains("not signed by this attestation key"),
        "{e}"
    );
}

#[test]
fn a_changed_signature_byte_is_signature_invalid() {
    let pcrs = pcrs();
    let (ak_pub, attest, mut sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    let last = sig.len() - 1;
    sig[last] ^= 0x80;
    assert!(matches!(
        verify_quote(&ak(&ak_pub), &attest, &sig, NONCE, &pcrs),
        Err(Error::SignatureInvalid { .. })
    ));
}

#[test]
fn another_key_is_signature_invalid() {
    let pcrs = pcrs();
    let (_, attest, sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    let other = p256::ecdsa::SigningKey::from_slice(&Sha256::digest(b"another TPM")).unwrap();
    let point = other.verifying_key().to_encoded_point(false);
    let other_ak = ecc_public(
        0x0003,
        point.x().unwrap(),
        point.y().unwrap(),
        AK_ATTRIBUTES,
        0x0018,
        0x000B,
    );
    assert!(matches!(
        verify_quote(&ak(&other_ak), &attest, &sig, NONCE, &pcrs),
        Err(Error::SignatureInvalid { .. })
    ));
}

#[test]
fn another_nonce_is_nonce_mismatch() {
    let pcrs = pcrs();
    let e = verify_p256(&Quote::new(&pcrs, HashAlg::Sha256), b"another nonce", &pcrs).unwrap_err();
    assert_eq!(
        e,
        Error::NonceMismatch {
            expected: b"another nonce".to_vec(),
            observed: NONCE.to_vec()
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&hex::encode(b"another nonce")) && msg.contains(&hex::encode(NONCE)),
        "{msg}"
    );
}

#[test]
fn another_pcr_value_is_pcr_digest_mismatch() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha256);
    let mut changed = pcrs.clone();
    changed.insert(HashAlg::Sha256, 7, vec![0x78; 32]).unwrap();
    let e = verify_p256(&q, NONCE, &changed).unwrap_err();
    let expected = pcr_digest(&changed, &q.selection, HashAlg::Sha256);
    assert_eq!(
        e,
        Error::PcrDigestMismatch {
            expected: expected.clone(),
            observed: q.digest.clone()
        }
    );
    assert!(e.to_string().contains(&hex::encode(&expected)));
    // A PCR outside the selection does not matter.
    let mut unrelated = pcrs.clone();
    unrelated.insert(HashAlg::Sha256, 9, vec![0; 32]).unwrap();
    verify_p256(&q, NONCE, &unrelated).unwrap();
}

#[test]
fn a_selected_pcr_without_value_is_missing_pcr() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha256);
    let partial: PcrValues = PcrValues::from_text(&format!(
        "sha256 0 {}\nsha256 1 {}\n",
        "11".repeat(32),
        "00".repeat(32)
    ))
    .unwrap();
    let e = verify_p256(&q, NONCE, &partial).unwrap_err();
    assert_eq!(
        e,
        Error::MissingPcr {
            bank: HashAlg::Sha256,
            index: 7
        }
    );
    assert_eq!(
        e.to_string(),
        "no value for sha256 PCR 7, which the quote selects"
    );
}

#[test]
fn a_bank_the_verifier_lacks_is_unsupported_pcr_bank() {
    let pcrs = pcrs();
    let mut q = Quote::new(&pcrs, HashAlg::Sha256);
    q.selection.push((0x0012, vec![1, 0, 0])); // SM3_256
    assert_eq!(
        verify_p256(&q, NONCE, &pcrs).unwrap_err(),
        Error::UnsupportedPcrBank { alg: 0x0012 }
    );
}

#[test]
fn wrong_magic_is_bad_magic_and_other_attestations_are_not_quotes() {
    let pcrs = pcrs();
    let mut q = Quote::new(&pcrs, HashAlg::Sha256);
    q.magic = 0xFF54_4348;
    let e = verify_p256(&q, NONCE, &pcrs).unwrap_err();
    assert_eq!(e, Error::BadMagic { found: 0xFF54_4348 });
    assert!(e.to_string().contains("0xff544348"), "{e}");
    let mut q = Quote::new(&pcrs, HashAlg::Sha256);
    q.kind = 0x8017; // TPM_ST_ATTEST_CERTIFY
    let e = verify_p256(&q, NONCE, &pcrs).unwrap_err();
    assert_eq!(e, Error::NotAQuote { found: 0x8017 });
    assert!(e.to_string().contains("0x8017"), "{e}");
}

#[test]
fn malformed_attests_say_where() {
    let pcrs = pcrs();
    let mut q = Quote::new(&pcrs, HashAlg::Sha256);
    q.safe = 2;
    match verify_p256(&q, NONCE, &pcrs).unwrap_err() {
        Error::Malformed {
            input,
            offset,
            what,
        } => {
            assert_eq!(input, "TPMS_ATTEST");
            // magic 4 + type 2 + name (2 + 34) + extraData (2 + 25) + clock 8 + counts 8.
            assert_eq!(offset, 4 + 2 + 36 + 27 + 8 + 8);
            assert!(what.contains("clockInfo.safe is 2"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    let mut q = Quote::new(&pcrs, HashAlg::Sha256);
    q.selection.push((0x000B, vec![0; 5]));
    assert!(matches!(
        verify_p256(&q, NONCE, &pcrs),
        Err(Error::Malformed { what, .. }) if what.contains("sizeofSelect 5")
    ));
    // Trailing bytes.
    let (ak_pub, mut attest, sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    attest.push(0);
    let len = attest.len();
    assert_eq!(
        verify_quote(&ak(&ak_pub), &attest, &sig, NONCE, &pcrs).unwrap_err(),
        Error::Malformed {
            input: "TPMS_ATTEST",
            offset: len - 1,
            what: "1 trailing bytes after the TPMS_ATTEST".into()
        }
    );
}

#[test]
fn unsupported_signatures_and_hashes_are_named() {
    let pcrs = pcrs();
    let (ak_pub, attest, sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    let key = ak(&ak_pub);
    // TPMT_SIGNATURE with sigAlg HMAC, and with NULL.
    let hmac = [&[0x00, 0x05, 0x00, 0x0B][..], &[0u8; 32]].concat();
    assert_eq!(
        verify_quote(&key, &attest, &hmac, NONCE, &pcrs).unwrap_err(),
        Error::UnsupportedSignature { sig_alg: 0x0005 }
    );
    assert_eq!(
        verify_quote(&key, &attest, &[0x00, 0x10], NONCE, &pcrs).unwrap_err(),
        Error::UnsupportedSignature { sig_alg: 0x0010 }
    );
    let mut sm3 = sig.clone();
    sm3[2..4].copy_from_slice(&[0x00, 0x12]);
    assert_eq!(
        verify_quote(&key, &attest, &sm3, NONCE, &pcrs).unwrap_err(),
        Error::UnsupportedHash {
            alg: 0x0012,
            context: "the TPMT_SIGNATURE"
        }
    );
    let mut long = sig.clone();
    long.push(0);
    assert!(matches!(
        verify_quote(&key, &attest, &long, NONCE, &pcrs),
        Err(Error::Malformed { input: "TPMT_SIGNATURE", what, .. }) if what.contains("trailing")
    ));
}

#[test]
fn an_rsa_signature_and_an_ecc_key_do_not_match() {
    let pcrs = pcrs();
    let (ak_pub, attest, _) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    // An ECC key without a fixed scheme, so that the key-type check is what fails.
    let point = p256_key().verifying_key().to_encoded_point(false);
    let schemeless = ecc_public(
        0x0003,
        point.x().unwrap(),
        point.y().unwrap(),
        AK_ATTRIBUTES,
        0x0010,
        0,
    );
    let sig = rsa_sig(0x0014, 0x000B, &[1u8; 128]);
    let e = verify_quote(&ak(&schemeless), &attest, &sig, NONCE, &pcrs).unwrap_err();
    assert_eq!(
        e,
        Error::SignatureKeyMismatch {
            signature: "RSASSA",
            key: "ECC NIST P-256".into()
        }
    );
    // With the AK's fixed ECDSA-SHA256 scheme the scheme check says it first.
    assert!(matches!(
        verify_quote(&ak(&ak_pub), &attest, &sig, NONCE, &pcrs),
        Err(Error::SchemeMismatch { .. })
    ));
}

#[test]
fn a_signature_outside_the_keys_fixed_scheme_is_scheme_mismatch() {
    let pcrs = pcrs();
    let q = Quote::new(&pcrs, HashAlg::Sha384);
    let attest = q.encode();
    // A genuine ECDSA-SHA384 signature by the key whose TPMT_PUBLIC fixes ECDSA-SHA256.
    let (r, s) = p256_sign(&Sha384::digest(&attest));
    let sig = ecdsa_sig(0x000C, &r, &s);
    let e = verify_quote(&ak(&p256_ak(0x0018, 0x000B)), &attest, &sig, NONCE, &pcrs).unwrap_err();
    assert_eq!(
        e,
        Error::SchemeMismatch {
            key_scheme: "ECDSA-SHA256".into(),
            signature_scheme: "ECDSA-SHA384".into()
        }
    );
    // Without a fixed scheme (the PEM form) the same signature verifies.
    let pem = p256_key()
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let v = verify_quote(
        &AkPublic::from_pem(&pem).unwrap(),
        &attest,
        &sig,
        NONCE,
        &pcrs,
    )
    .unwrap();
    assert_eq!(v.signature_hash, HashAlg::Sha384);
}

// --- Attestation key parsing --------------------------------------------------------------

#[test]
fn keys_that_cannot_be_attestation_keys_are_refused() {
    let point = p256_key().verifying_key().to_encoded_point(false);
    // An EK-style decrypt key: restricted, decrypt, no sign.
    let ek = ecc_public(
        0x0003,
        point.x().unwrap(),
        point.y().unwrap(),
        0x0003_00B2,
        0x0010,
        0,
    );
    assert_eq!(
        AkPublic::from_tpm2b_public(&ek).unwrap_err(),
        Error::NotASigningKey {
            attributes: 0x0003_00B2
        }
    );
    // A point off the curve.
    let mut y = point.y().unwrap().to_vec();
    y[31] ^= 1;
    assert!(matches!(
        AkPublic::from_tpm2b_public(&ecc_public(0x0003, point.x().unwrap(), &y, AK_ATTRIBUTES, 0x0018, 0x000B)),
        Err(Error::UnsupportedKey(m)) if m.contains("not on the curve")
    ));
    // A 512-bit RSA modulus.
    assert!(matches!(
        AkPublic::from_tpm2b_public(&rsa_public(&[0xC5; 64], AK_ATTRIBUTES, 0x0014, 0x000B)),
        Err(Error::UnsupportedKey(m)) if m.contains("1024 to 4096")
    ));
    // A keyed-hash object (HMAC key): type 0x0008, scheme HMAC-SHA256.
    let mut t = vec![0x00, 0x08, 0x00, 0x0B];
    t.extend_from_slice(&0x0004_0072u32.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0x00, 0x05, 0x00, 0x0B, 0, 32]);
    t.extend_from_slice(&[0u8; 32]);
    assert!(matches!(
        AkPublic::from_tpm2b_public(&t),
        Err(Error::UnsupportedKey(m)) if m.contains("keyed-hash")
    ));
}

#[test]
fn malformed_tpm2b_public_says_where() {
    let ak_pub = p256_ak(0x0018, 0x000B);
    // Unknown nameAlg at offset 4 of the TPM2B (2 size + 2 type).
    let mut bad = ak_pub.clone();
    bad[4..6].copy_from_slice(&[0x00, 0x99]);
    match AkPublic::from_tpm2b_public(&bad).unwrap_err() {
        Error::Malformed { input, what, .. } => {
            assert_eq!(input, "TPM2B_PUBLIC");
            assert!(what.contains("unknown hash algorithm"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // A TPM2B with a byte after it is neither a TPM2B (size disagrees) nor a TPMT.
    let mut long = ak_pub.clone();
    long.push(0);
    assert!(matches!(
        AkPublic::from_tpm2b_public(&long),
        Err(Error::Malformed {
            input: "TPMT_PUBLIC",
            ..
        })
    ));
}

#[test]
fn pem_inputs_that_are_not_spki_keys_are_refused() {
    assert!(matches!(AkPublic::from_pem("hello"), Err(Error::Pem(_))));
    let pkcs8 = {
        use p256::pkcs8::EncodePrivateKey;
        p256::SecretKey::from_slice(&Sha256::digest(b"attest test key P-256"))
            .unwrap()
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    };
    assert!(matches!(
        AkPublic::from_pem(&pkcs8),
        Err(Error::Pem(m)) if m.contains("PRIVATE KEY")
    ));
    // An Ed25519 SubjectPublicKeyInfo (RFC 8410, 4): algorithm 1.3.101.112.
    let mut ed25519 = hex::decode("302a300506032b6570032100").unwrap();
    ed25519.extend_from_slice(&[0x19; 32]);
    assert!(matches!(
        AkPublic::from_spki_der(&ed25519),
        Err(Error::UnsupportedKey(m)) if m.contains("1.3.101.112")
    ));
    // id-ecPublicKey on secp256k1 (1.3.132.0.10), a curve TPMs here do not have.
    let mut k1 = hex::decode("3056301006072a8648ce3d020106052b8104000a03420004").unwrap();
    k1.extend_from_slice(&[0x42; 64]);
    assert!(matches!(
        AkPublic::from_spki_der(&k1),
        Err(Error::UnsupportedKey(m)) if m.contains("1.3.132.0.10")
    ));
}

// --- Never panics --------------------------------------------------------------------------

#[test]
fn every_truncation_of_every_input_is_an_error() {
    let pcrs = pcrs();
    let (ak_pub, attest, sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    let key = ak(&ak_pub);
    for n in 0..attest.len() {
        let e = verify_quote(&key, &attest[..n], &sig, NONCE, &pcrs).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Malformed {
                    input: "TPMS_ATTEST",
                    ..
                } | Error::BadMagic { .. }
            ),
            "{n}: {e:?}"
        );
    }
    for n in 0..sig.len() {
        let e = verify_quote(&key, &attest, &sig[..n], NONCE, &pcrs).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Malformed {
                    input: "TPMT_SIGNATURE",
                    ..
                }
            ),
            "{n}: {e:?}"
        );
    }
    for n in 0..ak_pub.len() {
        assert!(AkPublic::from_tpm2b_public(&ak_pub[..n]).is_err(), "{n}");
    }
    let pem = p256_key()
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    for n in 0..pem.len() - 1 {
        if let Some(prefix) = pem.get(..n) {
            assert!(AkPublic::from_pem(prefix).is_err(), "{n}");
        }
    }
}

#[test]
fn every_single_bit_flip_of_attest_and_signature_is_refused() {
    let pcrs = pcrs();
    let (ak_pub, attest, sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
    let key = ak(&ak_pub);
    for i in 0..attest.len() * 8 {
        let mut a = attest.clone();
        a[i / 8] ^= 1 << (i % 8);
        assert!(
            verify_quote(&key, &a, &sig, NONCE, &pcrs).is_err(),
            "attest bit {i}"
        );
    }
    for i in 0..sig.len() * 8 {
        let mut s = sig.clone();
        s[i / 8] ^= 1 << (i % 8);
        assert!(
            verify_quote(&key, &attest, &s, NONCE, &pcrs).is_err(),
            "signature bit {i}"
        );
    }
}

mod arbitrary_bytes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn verify_quote_never_panics(attest in proptest::collection::vec(any::<u8>(), 0..200),
                                     sig in proptest::collection::vec(any::<u8>(), 0..120)) {
            let key = ak(&p256_ak(0x0018, 0x000B));
            let _ = verify_quote(&key, &attest, &sig, NONCE, &pcrs());
        }

        #[test]
        fn a_quote_with_a_valid_prefix_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..80),
                                                    cut in 0usize..120) {
            let pcrs = pcrs();
            let (ak_pub, attest, sig) = p256_quote(&Quote::new(&pcrs, HashAlg::Sha256));
            let mut a = attest[..cut.min(attest.len())].to_vec();
            a.extend_from_slice(&tail);
            prop_assert!(verify_quote(&ak(&ak_pub), &a, &sig, NONCE, &pcrs).is_err() || a == attest);
        }

        #[test]
        fn key_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                   text in ".{0,300}") {
            let _ = AkPublic::from_tpm2b_public(&bytes);
            let _ = AkPublic::from_spki_der(&bytes);
            let _ = AkPublic::from_pem(&text);
            let _ = AkPublic::from_pem(&format!("-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----\n"));
        }
    }
}
