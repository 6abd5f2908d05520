//! Quote verification: TPMS_ATTEST (Part 2, 10.12.12) and TPMT_SIGNATURE (Part 2, 11.3.4)
//! parsing, and the checks a verifier makes on them.

use tpm::hash::{HashAlg, Hasher};
use tpm::types::{alg, TPM_GENERATED_VALUE};

use crate::ak::{AkPublic, Key};
use crate::pcrs::{selected_pcrs, PcrValues};
use crate::wire::Fields;
use crate::{Error, QuoteError};

/// TPM_ST_ATTEST_QUOTE (Part 2, 6.9).
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// TPM2B_NAME's buffer: a hash algorithm id and the largest digest.
const MAX_NAME: usize = 2 + 64;
/// TPM2B_DATA's buffer (sizeof(TPMT_HA)).
const MAX_DATA: usize = 2 + 64;
/// TPM2B_DIGEST's buffer (sizeof(TPMU_HA)).
const MAX_DIGEST: usize = 64;
/// TPM2_NUM_PCR_BANKS: selections in a TPML_PCR_SELECTION.
const MAX_BANKS: u32 = 16;
/// TPM2_PCR_SELECT_MAX: octets of a pcrSelect bitmap.
const MAX_SELECT: usize = 4;
/// TPM2B_PUBLIC_KEY_RSA's buffer (4096-bit keys).
const MAX_RSA_SIG: usize = 512;
/// TPM2B_ECC_PARAMETER's buffer (TPM2_MAX_ECC_KEY_BYTES).
const MAX_ECC_PARAMETER: usize = 128;

/// What a successfully verified quote says. Every field is covered by the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// qualifiedSigner: the attestation key's Qualified Name.
    pub signer_name: Vec<u8>,
    /// extraData: equal to the verifier's nonce.
    pub extra_data: Vec<u8>,
    /// clockInfo.clock: milliseconds the TPM has been powered since its last Clear.
    pub clock: u64,
    /// clockInfo.resetCount: TPM resets (reboots) since the last Clear.
    pub reset_count: u32,
    /// clockInfo.restartCount: restarts and resumes since the last reset.
    pub restart_count: u32,
    /// clockInfo.safe: no Clock value greater than `clock` was ever reported before (Clock
    /// has not gone back since it was last reported, for example after a power loss).
    pub safe: bool,
    /// firmwareVersion: vendor-specific.
    pub firmware_version: u64,
    /// The quoted PCRs: each bank (in the quote's order) with its PCR indices in ascending
    /// order, which is the order their values were hashed into `pcr_digest`.
    pub selection: Vec<(HashAlg, Vec<u8>)>,
    /// pcrDigest: H_signature_hash(selected PCR values), equal to the digest of the
    /// verifier's values.
    pub pcr_digest: Vec<u8>,
    /// The hash algorithm of the signature, which is also the hash of `pcr_digest`.
    pub signature_hash: HashAlg,
}

/// A parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE, not yet verified.
struct Attest {
    signer_name: Vec<u8>,
    extra_data: Vec<u8>,
    clock: u64,
    reset_count: u32,
    restart_count: u32,
    safe: bool,
    firmware_version: u64,
    /// (hash algorithm id, selected PCRs ascending)
    selection: Vec<(u16, Vec<u8>)>,
    pcr_digest: Vec<u8>,
}

/// The extraData (nonce) a TPMS_ATTEST claims, read without verifying anything: for a
/// verifier to pick which of the nonces it issued to compare with ([`verify_quote`] then
/// checks it under the signature). None when the bytes are not a quote.
pub fn quoted_nonce(bytes: &[u8]) -> Option<Vec<u8>> {
    parse_attest(bytes).ok().map(|a| a.extra_data)
}

fn parse_attest(bytes: &[u8]) -> Result<Attest, Error> {
    let mut f = Fields::new(bytes, "TPMS_ATTEST");
    let magic = f.u32("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(Error::BadMagic { found: magic });
    }
    let kind = f.u16("type")?;
    if kind != TPM_ST_ATTEST_QUOTE {
        return Err(Error::NotAQuote { found: kind });
    }
    let signer_name = f.sized(MAX_NAME, "qualifiedSigner")?.to_vec();
    let extra_data = f.sized(MAX_DATA, "extraData")?.to_vec();
    let clock = f.u64("clockInfo.clock")?;
    let reset_count = f.u32("clockInfo.resetCount")?;
    let restart_count = f.u32("clockInfo.restartCount")?;
    let safe_at = f.position();
    let safe = match f.u8("clockInfo.safe")? {
        0 => false,
        1 => true,
        other => {
            return Err(f.error_at(
                safe_at,
                format!("clockInfo.safe is {other}, a TPMI_YES_NO is 0 or 1"),
            ))
        }
    };
    let firmware_version = f.u64("firmwareVersion")?;
    let count_at = f.position();
    let count = f.u32("pcrSelect.count")?;
    if count > MAX_BANKS {
        return Err(f.error_at(
            count_at,
            format!("pcrSelect.count {count} exceeds {MAX_BANKS}"),
        ));
    }
    let mut selection = Vec::new();
    for i in 0..count {
        let hash = f.u16("TPMS_PCR_SELECTION.hash")?;
        let size_at = f.position();
        let size = usize::from(f.u8("TPMS_PCR_SELECTION.sizeofSelect")?);
        if size > MAX_SELECT {
            return Err(f.error_at(
                size_at,
                format!("sizeofSelect {size} of selection {i} exceeds {MAX_SELECT}"),
            ));
        }
        let select = f.take(size, "TPMS_PCR_SELECTION.pcrSelect")?;
        selection.push((hash, selected_pcrs(select)));
    }
    let pcr_digest = f.sized(MAX_DIGEST, "pcrDigest")?.to_vec();
    f.end("TPMS_ATTEST")?;
    Ok(Attest {
        signer_name,
        extra_data,
        clock,
        reset_count,
        restart_count,
        safe,
        firmware_version,
        selection,
        pcr_digest,
    })
}

enum SigBody<'a> {
    Rsa(&'a [u8]),
    Ecdsa { r: &'a [u8], s: &'a [u8] },
}

struct Signature<'a> {
    sig_alg: u16,
    hash: HashAlg,
    body: SigBody<'a>,
}

fn scheme_name(sig_alg: u16) -> &'static str {
    match sig_alg {
        alg::RSASSA => "RSASSA",
        alg::RSAPSS => "RSAPSS",
        alg::ECDSA => "ECDSA",
        alg::HMAC => "HMAC",
        alg::NULL => "NULL",
        _ => "unknown",
    }
}

fn parse_signature(bytes: &[u8]) -> Result<Signature<'_>, Error> {
    let mut f = Fields::new(bytes, "TPMT_SIGNATURE");
    let sig_alg = f.u16("sigAlg")?;
    if !matches!(sig_alg, alg::RSASSA | alg::RSAPSS | alg::ECDSA) {
        return Err(Error::UnsupportedSignature { sig_alg });
    }
    let hash_id = f.u16("hash")?;
    let hash = HashAlg::from_id(hash_id).ok_or(Error::UnsupportedHash {
        alg: hash_id,
        context: "the TPMT_SIGNATURE",
    })?;
    let body = if sig_alg == alg::ECDSA {
        let r = f.sized(MAX_ECC_PARAMETER, "signatureR")?;
        let s = f.sized(MAX_ECC_PARAMETER, "signatureS")?;
        SigBody::Ecdsa { r, s }
    } else {
        SigBody::Rsa(f.sized(MAX_RSA_SIG, "sig")?)
    };
    f.end("TPMT_SIGNATURE")?;
    Ok(Signature {
        sig_alg,
        hash,
        body,
    })
}

/// Check a quote as `tpm2_quote` returns it: `attest` is the TPMS_ATTEST (the contents of the
/// TPM2B_ATTEST, as `tpm2_quote -m` writes them), `signature` the TPMT_SIGNATURE (as
/// `tpm2_quote -s` writes it in its default `tss` format).
///
/// In order, and each failure with its own [`Error`] variant:
/// 1. `attest` is a TPMS_ATTEST: magic TPM_GENERATED_VALUE ([`Error::BadMagic`]), type
///    TPM_ST_ATTEST_QUOTE ([`Error::NotAQuote`]), well formed to its last byte
///    ([`Error::Malformed`]); `signature` is a TPMT_SIGNATURE with RSASSA, RSAPSS or ECDSA
///    ([`Error::UnsupportedSignature`], [`Error::UnsupportedHash`], [`Error::Malformed`]);
/// 2. the signature suits the key ([`Error::SignatureKeyMismatch`], and when the key's
///    TPMT_PUBLIC fixes a scheme, [`Error::SchemeMismatch`]) and verifies over
///    H_sigHash(attest) with it ([`Error::SignatureInvalid`]);
/// 3. extraData equals `nonce` ([`Error::NonceMismatch`]);
/// 4. pcrDigest equals H_sigHash of the selected PCRs' values from `pcrs`, concatenated bank
///    by bank in the quote's selection order and by ascending index within a bank
///    ([`Error::UnsupportedPcrBank`], [`Error::MissingPcr`], [`Error::PcrDigestMismatch`]).
///
/// The caller still has to decide whether it trusts `ak` (for instance through credential
/// activation against the EK) and whether the quoted values are good ones.
pub fn verify_quote(
    ak: &AkPublic,
    attest: &[u8],
    signature: &[u8],
    nonce: &[u8],
    pcrs: &PcrValues,
) -> Result<VerifiedQuote, QuoteError> {
    let quote = parse_attest(attest)?;
    let sig = parse_signature(signature)?;
    let scheme = scheme_name(sig.sig_alg);

    if let Some(fixed) = ak.fixed_scheme() {
        if fixed.scheme != sig.sig_alg || fixed.hash != Some(sig.hash) {
            let key_hash = fixed.hash.map(HashAlg::name).unwrap_or("no hash");
            return Err(Error::SchemeMismatch {
                key_scheme: format!("{}-{}", scheme_name(fixed.scheme), key_hash.to_uppercase()),
                signature_scheme: format!("{scheme}-{}", sig.hash.name().to_uppercase()),
            });
        }
    }

    let digest = sig.hash.digest(&[attest]);
    let verified = match (&ak.key, &sig.body) {
        (Key::Rsa(k), SigBody::Rsa(s)) if sig.sig_alg == alg::RSASSA => {
            k.verify_pkcs1v15(sig.hash, &digest, s)
        }
        (Key::Rsa(k), SigBody::Rsa(s)) => k.verify_pss(sig.hash, &digest, s),
        (Key::Ecc(k), SigBody::Ecdsa { r, s }) => k.verify_ecdsa(&digest, r, s),
        (key, _) => {
            return Err(Error::SignatureKeyMismatch {
                signature: scheme,
                key: key.describe(),
            })
        }
    };
    if verified.is_err() {
        return Err(Error::SignatureInvalid {
            scheme,
            hash: sig.hash,
        });
    }

    if quote.extra_data != nonce {
        return Err(Error::NonceMismatch {
            expected: nonce.to_vec(),
            observed: quote.extra_data,
        });
    }

    let mut selection = Vec::with_capacity(quote.selection.len());
    let mut h = Hasher::new(sig.hash);
    for (hash_id, indices) in quote.selection {
        let bank = HashAlg::from_id(hash_id).ok_or(Error::UnsupportedPcrBank { alg: hash_id })?;
        for index in &indices {
            let value = pcrs.get(bank, *index).ok_or(Error::MissingPcr {
                bank,
                index: *index,
            })?;
            h.update(value);
        }
        selection.push((bank, indices));
    }
    let expected = h.finish();
    if expected != quote.pcr_digest {
        return Err(Error::PcrDigestMismatch {
            expected,
            observed: quote.pcr_digest,
        });
    }

    Ok(VerifiedQuote {
        signer_name: quote.signer_name,
        extra_data: quote.extra_data,
        clock: quote.clock,
        reset_count: quote.reset_count,
        restart_count: quote.restart_count,
        safe: quote.safe,
        firmware_version: quote.firmware_version,
        selection,
        pcr_digest: quote.pcr_digest,
        signature_hash: sig.hash,
    })
}
