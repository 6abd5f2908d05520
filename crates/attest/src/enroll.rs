//! Enrollment of a node's TPM (the registrar's checks): the EK certificate chains to a
//! trusted vTPM manufacturer CA and certifies the EK the TPM presents; the attestation key
//! has the attributes that make its quotes mean something; and the AK lives in the same TPM
//! as the EK, proven by a credential only that TPM can activate (TCG TPM 2.0 Part 1, 24).
//!
//! No I/O and no clock: the caller stores challenges and decides what to trust.

use crate::ak::AkPublic;
use crate::error::Error;
use openssl::pkey::{Id, PKey, Public};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509StoreContext, X509};
use tpm::crypto::ByteSource;
use tpm::object::{attr, PublicParms, TpmtPublic};

/// Certificates the verifier trusts to issue EK certificates (or the intermediates under
/// them): the host's vTPM manufacturer CA by default.
#[derive(Clone, Default)]
pub struct TrustedRoots {
    roots: Vec<X509>,
}

impl std::fmt::Debug for TrustedRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.roots.iter().map(subject_of))
            .finish()
    }
}

impl TrustedRoots {
    /// No trusted roots: every EK certificate is refused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the certificates of a PEM bundle or one DER certificate.
    pub fn add(&mut self, bytes: &[u8]) -> Result<usize, Error> {
        let certs = parse_certificates(bytes, "trusted root")?;
        let n = certs.len();
        self.roots.extend(certs);
        Ok(n)
    }

    /// How many certificates are trusted.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether no certificate is trusted.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

fn subject_of(cert: &X509) -> String {
    name_text(cert.subject_name())
}

fn issuer_of(cert: &X509) -> String {
    name_text(cert.issuer_name())
}

/// A distinguished name as `CN=…, O=…` in the certificate's order.
fn name_text(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let value = e.data().to_string().unwrap_or_default();
            format!("{}={value}", e.object().nid().short_name().unwrap_or("?"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Certificates from PEM (one or more) or DER (one).
fn parse_certificates(bytes: &[u8], what: &'static str) -> Result<Vec<X509>, Error> {
    let certs = if bytes.starts_with(b"-----") || bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        X509::stack_from_pem(bytes)
    } else {
        X509::from_der(bytes).map(|c| vec![c])
    }
    .map_err(|e| Error::Certificate {
        what,
        reason: format!("not a PEM or DER X.509 certificate: {e}"),
    })?;
    if certs.is_empty() {
        return Err(Error::Certificate {
            what,
            reason: "no certificate in the PEM input".into(),
        });
    }
    Ok(certs)
}

/// An EK certificate that chained to a trusted root.
#[derive(Debug, Clone)]
pub struct VerifiedEkCertificate {
    /// The certificate's subject (often empty for EK certificates, which name the TPM in
    /// the subject alternative name instead).
    pub subject: String,
    /// The issuer that signed it.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    key: PKey<Public>,
}

/// Check that `ek_cert` (DER or PEM) chains to one of `roots` through `intermediates`
/// (PEM or DER certificates, possibly none).
///
/// Validity periods are not checked: an EK certificate names a TPM for the TPM's life, and
/// vendors issue them with fixed or far dates (RFC 5280 `99991231235959Z`). Signatures,
/// issuer names and CA constraints are.
pub fn verify_ek_certificate(
    ek_cert: &[u8],
    intermediates: &[&[u8]],
    roots: &TrustedRoots,
) -> Result<VerifiedEkCertificate, Error> {
    let cert = parse_certificates(ek_cert, "EK certificate")?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Certificate {
            what: "EK certificate",
            reason: "empty input".into(),
        })?;
    let ssl = |e: openssl::error::ErrorStack| Error::Certificate {
        what: "EK certificate",
        reason: e.to_string(),
    };
    let mut store = X509StoreBuilder::new().map_err(ssl)?;
    for root in &roots.roots {
        store.add_cert(root.clone()).map_err(ssl)?;
    }
    store
        .set_flags(X509VerifyFlags::NO_CHECK_TIME | X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(ssl)?;
    let store = store.build();
    let mut chain = Stack::new().map_err(ssl)?;
    for bytes in intermediates {
        for c in parse_certificates(bytes, "intermediate certificate")? {
            chain.push(c).map_err(ssl)?;
        }
    }
    let mut ctx = X509StoreContext::new().map_err(ssl)?;
    let (ok, reason) = ctx
        .init(&store, &cert, &chain, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error().error_string().to_string()))
        })
        .map_err(ssl)?;
    if !ok {
        return Err(Error::EkCertificateUntrusted {
            issuer: issuer_of(&cert),
            reason,
        });
    }
    Ok(VerifiedEkCertificate {
        subject: subject_of(&cert),
        issuer: issuer_of(&cert),
        serial: cert
            .serial_number()
            .to_bn()
            .map(|b| b.to_hex_str().map(|s| s.to_lowercase()).unwrap_or_default())
            .unwrap_or_default(),
        key: cert.public_key().map_err(ssl)?,
    })
}

impl VerifiedEkCertificate {
    /// [`Self::certifies`] as a check with a reason.
    pub fn check_certifies(&self, ek: &TpmtPublic) -> Result<(), Error> {
        if self.certifies(ek) {
            Ok(())
        } else {
            Err(Error::EkNotCertified {
                subject: self.subject.clone(),
                serial: self.serial.clone(),
            })
        }
    }

    /// Whether the certified key is the EK whose public area the TPM presented.
    pub fn certifies(&self, ek: &TpmtPublic) -> bool {
        match (&ek.parms, self.key.id()) {
            (
                PublicParms::Rsa {
                    modulus, exponent, ..
                },
                Id::RSA,
            ) => self.key.rsa().is_ok_and(|k| {
                let e = if *exponent == 0 { 65537 } else { *exponent };
                k.n().to_vec() == *modulus && k.e().to_vec() == trim(&e.to_be_bytes())
            }),
            (PublicParms::Ecc { x, y, .. }, Id::EC) => self.key.ec_key().is_ok_and(|k| {
                let Ok(mut ctx) = openssl::bn::BigNumContext::new() else {
                    return false;
                };
                let (Ok(mut bx), Ok(mut by)) =
                    (openssl::bn::BigNum::new(), openssl::bn::BigNum::new())
                else {
                    return false;
                };
                k.public_key()
                    .affine_coordinates(k.group(), &mut bx, &mut by, &mut ctx)
                    .is_ok()
                    && same_integer(&bx.to_vec(), x)
                    && same_integer(&by.to_vec(), y)
            }),
            _ => false,
        }
    }
}

fn trim(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

/// Big-endian integers equal up to leading zeros (OpenSSL drops them, the TPM pads).
fn same_integer(a: &[u8], b: &[u8]) -> bool {
    trim(a) == trim(b)
}

/// The attributes an attestation key must have for its quotes to prove anything: it signs
/// only TPM-generated structures (restricted + sign, not decrypt), it never leaves this TPM
/// (fixedTPM, fixedParent) and the TPM generated it (sensitiveDataOrigin).
pub const AK_REQUIRED_ATTRIBUTES: [(u32, &str); 5] = [
    (attr::RESTRICTED, "restricted"),
    (attr::SIGN_ENCRYPT, "sign"),
    (attr::FIXED_TPM, "fixedTPM"),
    (attr::FIXED_PARENT, "fixedParent"),
    (attr::SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
];

/// Check an attestation key's TPMT_PUBLIC against [`AK_REQUIRED_ATTRIBUTES`] (and that it
/// does not also decrypt).
pub fn check_ak_attributes(ak: &AkPublic) -> Result<(), Error> {
    let public = ak.tpmt_public().ok_or(Error::AkAttributes {
        attributes: 0,
        problems: vec!["a PEM key carries no TPM attributes: give the TPM2B_PUBLIC".into()],
    })?;
    let mut problems: Vec<String> = AK_REQUIRED_ATTRIBUTES
        .iter()
        .filter(|(bit, _)| !public.has(*bit))
        .map(|(_, name)| format!("lacks {name}"))
        .collect();
    if public.has(attr::DECRYPT) {
        problems.push("has decrypt".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::AkAttributes {
            attributes: public.attributes,
            problems,
        })
    }
}

/// A credential challenge: the verifier keeps `secret` and sends the blob and encrypted
/// seed; the node's TPM returns `secret` only if the AK named in it lives beside the EK.
#[derive(Clone)]
pub struct CredentialChallenge {
    /// What the TPM must give back (kept by the verifier, never sent).
    pub secret: Vec<u8>,
    /// TPM2B_ID_OBJECT contents.
    pub id_object: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents.
    pub encrypted_secret: Vec<u8>,
}

impl std::fmt::Debug for CredentialChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialChallenge")
            .field("id_object", &self.id_object.len())
            .field("encrypted_secret", &self.encrypted_secret.len())
            .finish_non_exhaustive()
    }
}

/// Make a challenge binding a fresh 32-byte secret to `ak_name` under the EK `ek`
/// (TPM2_MakeCredential done off the TPM, Part 1, 24).
pub fn make_challenge(
    ek: &TpmtPublic,
    ak_name: &[u8],
    rng: &mut dyn ByteSource,
) -> Result<CredentialChallenge, Error> {
    let mut secret = vec![0u8; 32];
    rng.fill(&mut secret);
    let (id_object, encrypted_secret) = tpm::credential::make_for_public(ek, &secret, ak_name, rng)
        .map_err(|e| Error::UnsupportedKey(format!("the EK cannot protect a credential: {e:?}")))?;
    Ok(CredentialChallenge {
        secret,
        id_object,
        encrypted_secret,
    })
}

/// Whether the TPM's answer is the challenge's secret (constant time).
pub fn check_activation(challenge: &CredentialChallenge, answer: &[u8]) -> bool {
    // memcmp::eq requires equal lengths; the length of a secret is no secret.
    challenge.secret.len() == answer.len() && openssl::memcmp::eq(&challenge.secret, answer)
}

/// tpm2-tools' credential file (`tpm2_makecredential -o`, `tpm2_activatecredential -i`):
/// magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
pub fn tpm2_tools_credential_file(challenge: &CredentialChallenge) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xBADC_C0DEu32.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    for part in [&challenge.id_object, &challenge.encrypted_secret] {
        out.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}
