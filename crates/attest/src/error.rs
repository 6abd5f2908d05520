//! The one error type of this crate: every way an input can be unusable and every way a quote
//! can fail verification is its own variant, with a message that says what was expected and
//! what was found.

use tpm::hash::HashAlg;

/// Why an attestation key, a PCR list or a quote was refused.
///
/// Parsing errors ([`Error::Malformed`], [`Error::Pem`], [`Error::PcrLine`], ...) say which input
/// and where; verification errors ([`Error::SignatureInvalid`], [`Error::NonceMismatch`],
/// [`Error::PcrDigestMismatch`], ...) say which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A binary input does not follow its TPM structure.
    #[error("malformed {input}: {what} (at byte {offset})")]
    Malformed {
        /// Which input: "TPMS_ATTEST", "TPMT_SIGNATURE", "TPM2B_PUBLIC", "tpm2-tools PCR file".
        input: &'static str,
        /// Offset in that input where the offending field starts.
        offset: usize,
        what: String,
    },

    /// A PEM input is not a usable SubjectPublicKeyInfo.
    #[error("not a PEM public key: {0}")]
    Pem(String),

    /// The key is well formed but of a kind an attestation key cannot be.
    #[error("unsupported attestation key: {0}")]
    UnsupportedKey(String),

    /// The key's TPMT_PUBLIC lacks the `sign` attribute, so it can never sign a quote (an
    /// endorsement key given in place of the attestation key, for example).
    #[error("the key is not a signing key (objectAttributes {attributes:#010x} lack sign)")]
    NotASigningKey { attributes: u32 },

    /// A line of a `<bank> <pcr> <hex>` PCR list is wrong (lines count from 1).
    #[error("PCR list line {line}: {what}")]
    PcrLine { line: usize, what: String },

    /// A PCR value does not have the size of its bank's digest.
    #[error("{} PCR {index}: value of {len} bytes, a {} digest has {expected}", .bank.name(), .bank.name())]
    PcrValueSize {
        bank: HashAlg,
        index: u8,
        len: usize,
        expected: usize,
    },

    /// A PCR bank (hash algorithm) this verifier does not implement.
    #[error("unsupported PCR bank: hash algorithm {alg:#06x}")]
    UnsupportedPcrBank { alg: u16 },

    /// The attest does not start with TPM_GENERATED_VALUE: the TPM did not make it.
    #[error(
        "not a TPM-generated structure: magic {found:#010x}, TPM_GENERATED_VALUE is 0xff544347"
    )]
    BadMagic { found: u32 },

    /// The attest is a TPM attestation, but not a quote (a certification, a time attestation...).
    #[error("not a quote: TPMS_ATTEST type {found:#06x}, TPM_ST_ATTEST_QUOTE is 0x8018")]
    NotAQuote { found: u16 },

    /// A signature scheme this verifier does not check (HMAC, ECDAA, SM2, ECSCHNORR, NULL...).
    #[error("unsupported signature scheme {sig_alg:#06x} (supported: RSASSA, RSAPSS, ECDSA)")]
    UnsupportedSignature { sig_alg: u16 },

    /// A hash algorithm this verifier does not implement.
    #[error("unsupported hash algorithm {alg:#06x} in {context}")]
    UnsupportedHash { alg: u16, context: &'static str },

    /// The signature's kind cannot come from this key (an ECDSA signature and an RSA key, or
    /// r/s longer than the key's curve).
    #[error("{signature} signature cannot come from this {key} key")]
    SignatureKeyMismatch {
        signature: &'static str,
        key: String,
    },

    /// The key's TPMT_PUBLIC fixes a signing scheme and the signature uses another one: the
    /// TPM refuses to sign that way, so the signature did not come from this key.
    #[error("the key only signs with {key_scheme}, the signature is {signature_scheme}")]
    SchemeMismatch {
        key_scheme: String,
        signature_scheme: String,
    },

    /// The signature does not verify over the attest with this attestation key.
    #[error("signature invalid: the attest was not signed by this attestation key ({scheme} over the {} digest of the attest)", .hash.name())]
    SignatureInvalid { scheme: &'static str, hash: HashAlg },

    /// The quote's extraData is not the verifier's nonce (a replayed or foreign quote).
    #[error("nonce mismatch: expected {}, the quote's extraData is {}", hex::encode(.expected), hex::encode(.observed))]
    NonceMismatch {
        expected: Vec<u8>,
        observed: Vec<u8>,
    },

    /// The selection quotes a PCR for which the verifier has no value.
    #[error("no value for {} PCR {index}, which the quote selects", .bank.name())]
    MissingPcr { bank: HashAlg, index: u8 },

    /// The quoted PCR digest is not the digest of the verifier's PCR values.
    #[error("PCR digest mismatch: the given PCR values hash to {}, the quote's pcrDigest is {}", hex::encode(.expected), hex::encode(.observed))]
    PcrDigestMismatch {
        /// H_sigHash of the verifier's values of the selected PCRs, in selection order.
        expected: Vec<u8>,
        /// The quote's pcrDigest.
        observed: Vec<u8>,
    },

    /// A certificate input does not parse.
    #[error("{what}: {reason}")]
    Certificate { what: &'static str, reason: String },

    /// The EK certificate does not chain to a trusted vTPM manufacturer CA.
    #[error("EK certificate from an unknown CA (issuer {issuer}): {reason}")]
    EkCertificateUntrusted { issuer: String, reason: String },

    /// The EK certificate is trusted but certifies another key than the TPM's EK.
    #[error("the EK certificate (serial {serial}) does not certify this TPM's endorsement key")]
    EkNotCertified { subject: String, serial: String },

    /// The attestation key's attributes do not make it an attestation key.
    #[error("not an attestation key (objectAttributes {attributes:#010x}): {}", .problems.join(", "))]
    AkAttributes {
        attributes: u32,
        problems: Vec<String>,
    },
}

/// The error of [`crate::verify_quote`]: the crate's one error type under the name the
/// verifier's call sites use.
pub type QuoteError = Error;
