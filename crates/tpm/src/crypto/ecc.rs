//! ECC for TPM objects on NIST P-256 and P-384: key generation (random, or derived for
//! primary objects), ECDSA over a digest, ECDH, over the `p256`/`p384` crates.
//!
//! Error codes: an unsupported curve ID or keys on different curves is `CURVE`; a point that
//! is not on the curve (or is the identity, or has an over-long coordinate) is `ECC_POINT`;
//! a private scalar that is 0, ≥ n or over-long is `KEY`; a signature that does not verify
//! (including r or s out of range) is `SIGNATURE`.

use std::fmt;

use num_bigint_dig::BigUint;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::elliptic_curve::ff::{Field, PrimeField};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePublicKey;

use super::{left_pad, ByteSource};
use crate::rc::Rc;

/// A curve this TPM implements (TPMI_ECC_CURVE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// TPM_ECC_NIST_P256 (0x0003).
    P256,
    /// TPM_ECC_NIST_P384 (0x0004).
    P384,
}

impl Curve {
    pub const ALL: [Curve; 2] = [Curve::P256, Curve::P384];

    /// The curve a TPM_ECC_CURVE value names; `CURVE` if it is not implemented.
    pub fn from_id(id: u16) -> Result<Curve, Rc> {
        match id {
            0x0003 => Ok(Curve::P256),
            0x0004 => Ok(Curve::P384),
            _ => Err(Rc::CURVE),
        }
    }

    /// The TPM_ECC_CURVE value.
    pub fn id(self) -> u16 {
        match self {
            Curve::P256 => 0x0003,
            Curve::P384 => 0x0004,
        }
    }

    /// Size in octets of a coordinate, of a scalar, and of the order n.
    pub fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// Size of the key in bits (TPMA keyBits-style: 256 or 384).
    pub fn bits(self) -> usize {
        self.size() * 8
    }
}

/// The scalar with its public point, computed once: signing keys keep their verifying key,
/// so neither public() nor each signature pays a scalar multiplication for it.
#[derive(Clone)]
enum Secret {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Public {
    P256(p256::PublicKey),
    P384(p384::PublicKey),
}

/// An ECC private key (a scalar d with 0 < d < n).
#[derive(Clone)]
pub struct EccPrivate(Secret, Signer);

/// The same key held by OpenSSL, used only to sign (see `sign_ecdsa`).
#[derive(Clone)]
struct Signer(openssl::ec::EcKey<openssl::pkey::Private>);

impl Signer {
    fn new(curve: Curve, d: &[u8], x: &[u8], y: &[u8]) -> Result<Signer, Rc> {
        use openssl::bn::{BigNum, BigNumContext};
        use openssl::ec::{EcGroup, EcKey, EcPoint};
        use openssl::nid::Nid;
        let nid = match curve {
            Curve::P256 => Nid::X9_62_PRIME256V1,
            Curve::P384 => Nid::SECP384R1,
        };
        let fail = |_| Rc::FAILURE;
        let group = EcGroup::from_curve_name(nid).map_err(fail)?;
        let mut ctx = BigNumContext::new().map_err(fail)?;
        let mut point = EcPoint::new(&group).map_err(fail)?;
        let (bx, by) = (
            BigNum::from_slice(x).map_err(fail)?,
            BigNum::from_slice(y).map_err(fail)?,
        );
        point
            .set_affine_coordinates_gfp(&group, &bx, &by, &mut ctx)
            .map_err(fail)?;
        let d = BigNum::from_slice(d).map_err(fail)?;
        let key = EcKey::from_private_components(&group, &d, &point).map_err(fail)?;
        Ok(Signer(key))
    }
}

/// An ECC public key: a point on the curve, never the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EccPublic(Public);

impl fmt::Debug for EccPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EccPrivate")
            .field("curve", &self.curve())
            .finish_non_exhaustive()
    }
}

/// Evaluates `$body` with `$k` bound to the key inside `$value` (an expression of the enum
/// `$enum`), and the module `c` naming that curve's crate (`p256` or `p384`).
macro_rules! on_curve {
    ($enum:ident, $value:expr, $k:ident => $body:expr) => {
        match $value {
            $enum::P256($k) => {
                #[allow(unused_imports)]
                use p256 as c;
                $body
            }
            $enum::P384($k) => {
                #[allow(unused_imports)]
                use p384 as c;
                $body
            }
        }
    };
}

/// Evaluates `$body` with the module `c` naming `$curve`'s crate.
macro_rules! for_curve {
    ($curve:expr, $body:expr) => {
        match $curve {
            Curve::P256 => {
                use p256 as c;
                $body
            }
            Curve::P384 => {
                use p384 as c;
                $body
            }
        }
    };
}

/// `digest` as an ECDSA message representative of exactly `size` octets: its leftmost
/// `size` octets when longer (FIPS 186-4 6.4: the leftmost bits of the order's length, which
/// is a whole number of octets for P-256 and P-384), left-padded with zeros (the same
/// integer) when shorter. The ecdsa crate would reject digests shorter than half the field.
fn message_representative(digest: &[u8], size: usize) -> Vec<u8> {
    match digest.get(..size) {
        Some(leftmost) => leftmost.to_vec(),
        None => left_pad(digest, size).unwrap_or_default(),
    }
}

/// Generates a key on `curve` from `src`.
///
/// # Derivation v1 (frozen)
///
/// This algorithm must never change (primary keys are re-derived through it): one
/// `src.fill` of `size + 8` octets (40 for P-256, 56 for P-384) read as a big-endian number
/// `c`; then `d = (c mod (n - 1)) + 1`, with n the curve's order (FIPS 186-4 B.4.1).
pub fn generate(curve: Curve, src: &mut dyn ByteSource) -> Result<EccPrivate, Rc> {
    let mut c = vec![0u8; curve.size() + 8];
    src.fill(&mut c);
    let n_minus_1 = for_curve!(curve, {
        let minus_one = -<c::Scalar as Field>::ONE;
        BigUint::from_bytes_be(&minus_one.to_repr())
    });
    let d = BigUint::from_bytes_be(&c) % n_minus_1 + 1u32;
    c.iter_mut().for_each(|b| *b = 0);
    from_scalar(curve, &d.to_bytes_be())
}

/// The private key with scalar `d` (big-endian; shorter inputs are left-padded, leading zero
/// octets beyond the size are allowed). `KEY` if `d` is 0, ≥ n or too long.
pub fn from_scalar(curve: Curve, d: &[u8]) -> Result<EccPrivate, Rc> {
    let d = left_pad(d, curve.size()).ok_or(Rc::KEY)?;
    let secret = for_curve!(curve, c::SecretKey::from_slice(&d).map(Secret::from));
    let secret = secret.map_err(|_| Rc::KEY)?;
    let public = EccPublic(
        on_curve!(Secret, &secret, k => Public::from(c::PublicKey::from(k.verifying_key()))),
    );
    let signer = Signer::new(curve, &d, &public.x(), &public.y())?;
    Ok(EccPrivate(secret, signer))
}

impl From<p256::SecretKey> for Secret {
    fn from(k: p256::SecretKey) -> Secret {
        Secret::P256(p256::ecdsa::SigningKey::from(k))
    }
}

impl From<p384::SecretKey> for Secret {
    fn from(k: p384::SecretKey) -> Secret {
        Secret::P384(p384::ecdsa::SigningKey::from(k))
    }
}

impl From<p256::PublicKey> for Public {
    fn from(k: p256::PublicKey) -> Public {
        Public::P256(k)
    }
}

impl From<p384::PublicKey> for Public {
    fn from(k: p384::PublicKey) -> Public {
        Public::P384(k)
    }
}

/// An ephemeral key pair for ECDH_KeyGen, salted sessions, MakeCredential and duplication:
/// returns (Z = the x coordinate of d_e·Q, the public point of d_e). d_e is made from `rng`
/// as [`generate`] does.
pub fn ecdh_ephemeral(
    peer: &EccPublic,
    rng: &mut dyn ByteSource,
) -> Result<(Vec<u8>, EccPublic), Rc> {
    let ephemeral = generate(peer.curve(), rng)?;
    let z = ephemeral.ecdh(peer)?;
    Ok((z, ephemeral.public()))
}

impl EccPrivate {
    pub fn curve(&self) -> Curve {
        match self.0 {
            Secret::P256(_) => Curve::P256,
            Secret::P384(_) => Curve::P384,
        }
    }

    pub fn public(&self) -> EccPublic {
        EccPublic(
            on_curve!(Secret, &self.0, k => Public::from(c::PublicKey::from(k.verifying_key()))),
        )
    }

    /// The scalar d, big-endian, exactly the curve size.
    pub fn scalar(&self) -> Vec<u8> {
        on_curve!(Secret, &self.0, k => k.to_bytes().to_vec())
    }

    /// ECDSA signature over `digest` (truncated to its leftmost bits when longer than the
    /// order, per FIPS 186-4): (r, s), each big-endian of exactly the curve size. Signing runs
    /// in OpenSSL (4-5x faster than the pure-Rust arithmetic; quotes are the hot path), which
    /// draws the nonce from its own CSPRNG; `rng` is accepted for API symmetry and unused.
    pub fn sign_ecdsa(
        &self,
        digest: &[u8],
        rng: &mut dyn ByteSource,
    ) -> Result<(Vec<u8>, Vec<u8>), Rc> {
        let size = self.curve().size();
        let z = message_representative(digest, size);
        // OpenSSL draws the nonce k from its own CSPRNG; `rng` is not needed for it.
        let _ = rng;
        let sig = openssl::ecdsa::EcdsaSig::sign(&z, &self.1 .0).map_err(|_| Rc::NO_RESULT)?;
        let pad =
            |b: &openssl::bn::BigNumRef| b.to_vec_padded(size as i32).map_err(|_| Rc::NO_RESULT);
        Ok((pad(sig.r())?, pad(sig.s())?))
    }

    /// PKCS#8 PEM of the key, for tests that hand it to OpenSSL.
    #[cfg(test)]
    pub(super) fn to_pkcs8_pem(&self) -> String {
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        on_curve!(Secret, &self.0, k => k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string())
    }

    /// The full point d·Q (TPM2_ECDH_ZGen returns it whole, not only its x coordinate).
    pub fn multiply(&self, peer: &EccPublic) -> Result<EccPublic, Rc> {
        match (&self.0, &peer.0) {
            (Secret::P256(k), Public::P256(q)) => {
                let point = (q.to_projective() * **k.as_nonzero_scalar()).to_affine();
                p256::PublicKey::from_affine(point)
                    .map(|p| EccPublic(Public::P256(p)))
                    .map_err(|_| Rc::NO_RESULT)
            }
            (Secret::P384(k), Public::P384(q)) => {
                let point = (q.to_projective() * **k.as_nonzero_scalar()).to_affine();
                p384::PublicKey::from_affine(point)
                    .map(|p| EccPublic(Public::P384(p)))
                    .map_err(|_| Rc::NO_RESULT)
            }
            _ => Err(Rc::CURVE),
        }
    }

    /// ECDH (SP 800-56A C(0e, 2s) or C(1e, 1s) primitive): the x coordinate of d·Q, the
    /// curve size in octets. `CURVE` if `peer` is on another curve; `peer` itself is a
    /// validated point (see [`EccPublic::new`], which rejects invalid points with
    /// `ECC_POINT`). The result is never the identity, as n is prime and 0 < d < n.
    pub fn ecdh(&self, peer: &EccPublic) -> Result<Vec<u8>, Rc> {
        match (&self.0, &peer.0) {
            (Secret::P256(k), Public::P256(q)) => Ok(p256::ecdh::diffie_hellman(
                *k.as_nonzero_scalar(),
                q.as_affine(),
            )
            .raw_secret_bytes()
            .to_vec()),
            (Secret::P384(k), Public::P384(q)) => Ok(p384::ecdh::diffie_hellman(
                *k.as_nonzero_scalar(),
                q.as_affine(),
            )
            .raw_secret_bytes()
            .to_vec()),
            _ => Err(Rc::CURVE),
        }
    }
}

impl EccPublic {
    /// The point (x, y) (big-endian; shorter coordinates are left-padded). `ECC_POINT` when
    /// a coordinate is too long or the point is not on the curve.
    pub fn new(curve: Curve, x: &[u8], y: &[u8]) -> Result<EccPublic, Rc> {
        let size = curve.size();
        let x = left_pad(x, size).ok_or(Rc::ECC_POINT)?;
        let y = left_pad(y, size).ok_or(Rc::ECC_POINT)?;
        let public = for_curve!(curve, {
            let point = c::EncodedPoint::from_affine_coordinates(
                c::FieldBytes::from_slice(&x),
                c::FieldBytes::from_slice(&y),
                false,
            );
            c::PublicKey::from_sec1_bytes(point.as_bytes()).map(Public::from)
        });
        public.map(EccPublic).map_err(|_| Rc::ECC_POINT)
    }

    pub fn curve(&self) -> Curve {
        match self.0 {
            Public::P256(_) => Curve::P256,
            Public::P384(_) => Curve::P384,
        }
    }

    /// The x coordinate, big-endian, exactly the curve size.
    pub fn x(&self) -> Vec<u8> {
        on_curve!(Public, &self.0, k => k
            .to_encoded_point(false)
            .x()
            .map(|x| x.to_vec())
            .unwrap_or_default())
    }

    /// The y coordinate, big-endian, exactly the curve size.
    pub fn y(&self) -> Vec<u8> {
        on_curve!(Public, &self.0, k => k
            .to_encoded_point(false)
            .y()
            .map(|y| y.to_vec())
            .unwrap_or_default())
    }

    /// ECDSA verification of (r, s) over `digest` (treated as in
    /// [`EccPrivate::sign_ecdsa`]). `SIGNATURE` for any failure, including r or s that are
    /// 0, ≥ n or longer than the curve size.
    pub fn verify_ecdsa(&self, digest: &[u8], r: &[u8], s: &[u8]) -> Result<(), Rc> {
        let size = self.curve().size();
        let r = left_pad(r, size).ok_or(Rc::SIGNATURE)?;
        let s = left_pad(s, size).ok_or(Rc::SIGNATURE)?;
        let z = message_representative(digest, size);
        on_curve!(Public, &self.0, k => {
            let sig = c::ecdsa::Signature::from_scalars(
                *c::FieldBytes::from_slice(&r),
                *c::FieldBytes::from_slice(&s),
            )
            .map_err(|_| Rc::SIGNATURE)?;
            c::ecdsa::VerifyingKey::from(k)
                .verify_prehash(&z, &sig)
                .map_err(|_| Rc::SIGNATURE)
        })
    }

    /// The DER SubjectPublicKeyInfo (id-ecPublicKey with the named curve, uncompressed
    /// point), for certificates.
    pub fn to_spki_der(&self) -> Result<Vec<u8>, Rc> {
        on_curve!(Public, &self.0, k => k
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .map_err(|_| Rc::FAILURE))
    }
}

#[cfg(test)]
#[path = "ecc_tests.rs"]
mod tests;
