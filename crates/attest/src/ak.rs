//! The attestation key's public part, from the TPM's own encoding (TPM2B_PUBLIC or
//! TPMT_PUBLIC) or from a PEM SubjectPublicKeyInfo.

use spki::der::{Decode, Document};
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use tpm::codec::{Reader, Unmarshal};
use tpm::crypto::ecc::{Curve, EccPublic};
use tpm::crypto::rsa::RsaPublic;
use tpm::object::{attr, PublicParms, Scheme, TpmtPublic};
use tpm::rc::Rc;
use tpm::types::alg;

use crate::Error;

/// rsaEncryption (RFC 8017).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey (RFC 5480).
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / NIST P-256.
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 / NIST P-384.
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// The verification key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Rsa(RsaPublic),
    Ecc(EccPublic),
}

impl Key {
    pub(crate) fn describe(&self) -> String {
        match self {
            Key::Rsa(k) => format!("RSA-{}", k.bits()),
            Key::Ecc(k) => match k.curve() {
                Curve::P256 => "ECC NIST P-256".to_string(),
                Curve::P384 => "ECC NIST P-384".to_string(),
            },
        }
    }
}

/// An attestation key's public part: from a TPM2B_PUBLIC / TPMT_PUBLIC (as `tpm2_createak -u`
/// and `tpm2_readpublic -o` write) or from a PEM SubjectPublicKeyInfo (`tpm2_createak -f pem`,
/// `tpm2_readpublic -f pem`).
///
/// Only the TPM encodings carry the key's Name, attributes and signing scheme; a PEM key is
/// just the RSA or ECC public key.
#[derive(Clone, Debug)]
pub struct AkPublic {
    pub(crate) key: Key,
    pub(crate) public: Option<TpmtPublic>,
}

impl AkPublic {
    /// Parse a TPM2B_PUBLIC (big-endian u16 size, then a TPMT_PUBLIC; `tpm2_createak -u`,
    /// `tpm2_readpublic -f tss`) or a bare TPMT_PUBLIC (`tpm2_readpublic -f tpmt`).
    ///
    /// The key must be an RSA key (1024 to 4096 bits) or an ECC key on NIST P-256 or P-384
    /// with the `sign` attribute.
    pub fn from_tpm2b_public(bytes: &[u8]) -> Result<Self, Error> {
        // A TPM2B_PUBLIC's size field covers exactly the rest; a TPMT_PUBLIC starts with its
        // type (0x0001 RSA or 0x0023 ECC), which can never be its own length minus two.
        let (input, body, base) = match bytes {
            [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => {
                ("TPM2B_PUBLIC", rest, 2)
            }
            _ => ("TPMT_PUBLIC", bytes, 0),
        };
        let mut r = Reader::new(body);
        let public = TpmtPublic::unmarshal(&mut r).map_err(|rc| Error::Malformed {
            input,
            offset: base + r.position(),
            what: format!("TPMT_PUBLIC does not parse: {}", describe_rc(rc)),
        })?;
        if !r.is_empty() {
            return Err(Error::Malformed {
                input,
                offset: base + r.position(),
                what: format!("{} trailing bytes after the TPMT_PUBLIC", r.remaining()),
            });
        }
        Self::from_tpmt_public(public)
    }

    /// An attestation key from an already parsed TPMT_PUBLIC.
    pub fn from_tpmt_public(public: TpmtPublic) -> Result<Self, Error> {
        let key = match &public.parms {
            PublicParms::Rsa {
                modulus, exponent, ..
            } => Key::Rsa(RsaPublic::new(modulus, *exponent).map_err(|rc| {
                Error::UnsupportedKey(format!(
                    "RSA key with a {}-byte modulus and exponent {exponent}: {}",
                    modulus.len(),
                    describe_rc(rc)
                ))
            })?),
            PublicParms::Ecc { curve, x, y, .. } => {
                let curve_kind = Curve::from_id(*curve).map_err(|_| {
                    Error::UnsupportedKey(format!(
                        "ECC curve {curve:#06x} (supported: NIST P-256, P-384)"
                    ))
                })?;
                Key::Ecc(EccPublic::new(curve_kind, x, y).map_err(|_| {
                    Error::UnsupportedKey(format!(
                        "the ECC point ({}, {}) is not on the curve",
                        hex::encode(x),
                        hex::encode(y)
                    ))
                })?)
            }
            PublicParms::KeyedHash { .. } => {
                return Err(Error::UnsupportedKey(
                    "a keyed-hash (HMAC) object: a verifier cannot check its signatures".into(),
                ))
            }
            PublicParms::SymCipher { .. } => {
                return Err(Error::UnsupportedKey(
                    "a symmetric cipher object cannot sign".into(),
                ))
            }
        };
        if !public.has(attr::SIGN_ENCRYPT) {
            return Err(Error::NotASigningKey {
                attributes: public.attributes,
            });
        }
        Ok(AkPublic {
            key,
            public: Some(public),
        })
    }

    /// Parse a PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`) holding an RSA key or
    /// an ECC key on NIST P-256 or P-384.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let (label, doc) = Document::from_pem(pem.trim()).map_err(|e| Error::Pem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(Error::Pem(format!(
                "the PEM block is \"{label}\", expected \"PUBLIC KEY\" (a SubjectPublicKeyInfo)"
            )));
        }
        Self::from_spki_der(doc.as_bytes())
    }

    /// Parse a DER SubjectPublicKeyInfo (`tpm2_readpublic -f der`).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| Error::Pem(format!("not a SubjectPublicKeyInfo: {e}")))?;
        let key = match spki.algorithm.oid {
            OID_RSA => {
                use rsa::pkcs8::DecodePublicKey;
                use rsa::traits::PublicKeyParts;
                let k = rsa::RsaPublicKey::from_public_key_der(der)
                    .map_err(|e| Error::Pem(format!("RSA public key: {e}")))?;
                let e = k.e().to_bytes_be();
                let exponent = (e.len() <= 4)
                    .then(|| e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
                    .ok_or_else(|| {
                        Error::UnsupportedKey(format!(
                            "RSA exponent 0x{} does not fit the TPM's 32 bits",
                            hex::encode(&e)
                        ))
                    })?;
                let modulus = k.n().to_bytes_be();
                Key::Rsa(RsaPublic::new(&modulus, exponent).map_err(|rc| {
                    Error::UnsupportedKey(format!(
                        "RSA-{} key with exponent {exponent}: {}",
                        k.n().bits(),
                        describe_rc(rc)
                    ))
                })?)
            }
            OID_EC => {
                let curve_oid = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|e| Error::Pem(format!("EC key without a named curve: {e}")))?;
                let (curve, x, y) = match curve_oid {
                    OID_P256 => {
                        use p256::elliptic_curve::sec1::ToEncodedPoint;
                        use p256::pkcs8::DecodePublicKey;
                        let p = p256::PublicKey::from_public_key_der(der)
                            .map_err(|e| Error::Pem(format!("P-256 public key: {e}")))?
                            .to_encoded_point(false);
                        (Curve::P256, coordinate(p.x()), coordinate(p.y()))
                    }
                    OID_P384 => {
                        use p384::elliptic_curve::sec1::ToEncodedPoint;
                        use p384::pkcs8::DecodePublicKey;
                        let p = p384::PublicKey::from_public_key_der(der)
                            .map_err(|e| Error::Pem(format!("P-384 public key: {e}")))?
                            .to_encoded_point(false);
                        (Curve::P384, coordinate(p.x()), coordinate(p.y()))
                    }
                    other => {
                        return Err(Error::UnsupportedKey(format!(
                            "EC curve {other} (supported: NIST P-256, P-384)"
                        )))
                    }
                };
                Key::Ecc(EccPublic::new(curve, &x, &y).map_err(|_| {
                    Error::UnsupportedKey("the EC point is not on the curve".into())
                })?)
            }
            other => {
                return Err(Error::UnsupportedKey(format!(
                "SubjectPublicKeyInfo algorithm {other} (supported: rsaEncryption, id-ecPublicKey)"
            )))
            }
        };
        Ok(AkPublic { key, public: None })
    }

    /// The key's TPM Name (nameAlg || H_nameAlg(TPMT_PUBLIC)), when it came from a TPM
    /// encoding; `None` for a PEM key, which does not say its nameAlg or attributes.
    pub fn name(&self) -> Option<Vec<u8>> {
        self.public.as_ref().map(TpmtPublic::name)
    }

    /// The TPMT_PUBLIC, when the key came from a TPM encoding.
    pub fn tpmt_public(&self) -> Option<&TpmtPublic> {
        self.public.as_ref()
    }

    /// Whether the key is a restricted signing key (`restricted` and `sign`, as an
    /// attestation key must be so that it signs only TPM-generated data); `None` for a PEM
    /// key, whose attributes are unknown.
    pub fn is_restricted_signing(&self) -> Option<bool> {
        self.public
            .as_ref()
            .map(|p| p.has(attr::RESTRICTED | attr::SIGN_ENCRYPT) && !p.has(attr::DECRYPT))
    }

    /// A short description of the key ("RSA-2048", "ECC NIST P-256").
    pub fn describe(&self) -> String {
        self.key.describe()
    }

    /// Whether both hold the same public key, whatever encoding each came from.
    pub fn same_key(&self, other: &AkPublic) -> bool {
        self.key == other.key
    }

    /// The signing scheme the key's TPMT_PUBLIC fixes, if any (not TPM_ALG_NULL).
    pub(crate) fn fixed_scheme(&self) -> Option<Scheme> {
        match self.public.as_ref().map(|p| &p.parms) {
            Some(PublicParms::Rsa { scheme, .. } | PublicParms::Ecc { scheme, .. })
                if scheme.scheme != alg::NULL =>
            {
                Some(*scheme)
            }
            _ => None,
        }
    }
}

/// A coordinate of an uncompressed SEC1 point (always present for a valid public key).
fn coordinate<N: p256::elliptic_curve::generic_array::ArrayLength<u8>>(
    c: Option<&p256::elliptic_curve::generic_array::GenericArray<u8, N>>,
) -> Vec<u8> {
    c.map(|c| c.to_vec()).unwrap_or_default()
}

/// A TPM_RC from the tpm crate's unmarshalling, in words.
pub(crate) fn describe_rc(rc: Rc) -> String {
    let words = match rc.base() {
        Rc::INSUFFICIENT => "the structure ends early",
        Rc::SIZE => "a size field is out of range",
        Rc::HASH => "unknown hash algorithm",
        Rc::TYPE => "unsupported object type",
        Rc::SCHEME => "unsupported scheme",
        Rc::CURVE => "unsupported ECC curve",
        Rc::SYMMETRIC => "unsupported symmetric algorithm",
        Rc::KDF => "unsupported KDF",
        Rc::RESERVED_BITS => "reserved objectAttributes bits are set",
        Rc::KEY_SIZE => "unsupported key size (RSA needs 1024 to 4096 bits)",
        Rc::KEY => "invalid key value",
        Rc::MODE => "unsupported cipher mode",
        Rc::VALUE => "a value is out of range",
        _ => "",
    };
    if words.is_empty() {
        rc.to_string()
    } else {
        format!("{words} ({rc})")
    }
}
