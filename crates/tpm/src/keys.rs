//! Loaded key objects: the public and sensitive areas with their parsed key material, how a
//! primary object is derived from its hierarchy seed (derivation v1, frozen), how ordinary
//! objects are generated, how a child's sensitive area is wrapped by its storage parent, and
//! signing, verification and decryption with the right scheme.

use crate::codec::{put_sized, Marshal, Reader, Unmarshal};
use crate::crypto::ecc::{self, Curve, EccPrivate, EccPublic};
use crate::crypto::rsa::{self, RsaPrivate, RsaPublic};
use crate::crypto::{ByteSource, KdfStream};
use crate::hash::HashAlg;
use crate::kdf::kdfa;
use crate::object::{
    attr, PublicParms, Scheme, SensitiveCreate, SymDefObject, TpmtPublic, TpmtSensitive,
};
use crate::rc::Rc;
use crate::session::aes_cfb;
use crate::types::{alg, curve};

/// The label of primary-object derivation (Part 1, 26.3 "Primary Object Creation").
pub const PRIMARY_LABEL: &[u8] = b"Primary Object Creation";
/// Version of the primary derivation: keys derived under it never change.
pub const DERIVATION_VERSION: u32 = 1;

/// Parsed key material of a loaded object.
#[derive(Clone)]
pub enum KeyMaterial {
    RsaPrivate(Box<RsaPrivate>),
    RsaPublic(RsaPublic),
    EccPrivate(EccPrivate),
    EccPublic(EccPublic),
    /// KEYEDHASH and SYMCIPHER objects: the key is the sensitive data.
    Symmetric,
}

/// A key object as loaded in the TPM.
#[derive(Clone)]
pub struct KeyObject {
    pub public: TpmtPublic,
    /// None for a public-only object from LoadExternal.
    pub sensitive: Option<TpmtSensitive>,
    pub name: Vec<u8>,
    pub qualified_name: Vec<u8>,
    /// TPM_RH_OWNER, _ENDORSEMENT, _PLATFORM or _NULL.
    pub hierarchy: u32,
    pub key: KeyMaterial,
}

fn curve_of(id: u16) -> Result<Curve, Rc> {
    match id {
        curve::NIST_P256 => Ok(Curve::P256),
        curve::NIST_P384 => Ok(Curve::P384),
        _ => Err(Rc::CURVE),
    }
}

/// Check a template as Part 1, 27.2 and Part 3, 12.1 require; errors name no parameter
/// (callers add the template's parameter number).
pub fn validate_template(p: &TpmtPublic, create: &SensitiveCreate) -> Result<(), Rc> {
    let a = p.attributes;
    let sign = a & attr::SIGN_ENCRYPT != 0;
    let decrypt = a & attr::DECRYPT != 0;
    let restricted = a & attr::RESTRICTED != 0;
    if a & attr::FIXED_TPM != 0 && a & attr::FIXED_PARENT == 0 {
        return Err(Rc::ATTRIBUTES);
    }
    if restricted && sign == decrypt {
        return Err(Rc::ATTRIBUTES);
    }
    if !p.auth_policy.is_empty() && p.auth_policy.len() != p.name_alg.size() {
        return Err(Rc::SIZE);
    }
    if create.user_auth.len() > p.name_alg.size() {
        return Err(Rc::SIZE);
    }
    let data_given = !create.data.is_empty();
    match &p.parms {
        PublicParms::Rsa {
            symmetric,
            scheme,
            key_bits,
            exponent,
            ..
        } => {
            if data_given {
                return Err(Rc::SIZE);
            }
            if *key_bits != 2048 && *key_bits != 3072 {
                return Err(Rc::KEY_SIZE);
            }
            if *exponent != 0 && *exponent != 65537 {
                return Err(Rc::VALUE);
            }
            check_asym(restricted, sign, decrypt, *symmetric, *scheme)?;
        }
        PublicParms::Ecc {
            symmetric,
            scheme,
            curve: c,
            kdf,
            ..
        } => {
            if data_given {
                return Err(Rc::SIZE);
            }
            curve_of(*c)?;
            if kdf.is_some() {
                return Err(Rc::KDF);
            }
            check_asym(restricted, sign, decrypt, *symmetric, *scheme)?;
        }
        PublicParms::KeyedHash { scheme, .. } => {
            if !sign && !decrypt {
                // A sealed data object: its data comes from the caller.
                if a & attr::SENSITIVE_DATA_ORIGIN != 0 || restricted {
                    return Err(Rc::ATTRIBUTES);
                }
            } else if data_given == (a & attr::SENSITIVE_DATA_ORIGIN != 0) {
                return Err(Rc::ATTRIBUTES);
            }
            if sign && decrypt && scheme.scheme != alg::NULL {
                return Err(Rc::SCHEME);
            }
            if sign && scheme.scheme != alg::HMAC && (restricted || scheme.scheme != alg::NULL) {
                return Err(Rc::SCHEME);
            }
        }
        PublicParms::SymCipher { .. } => {
            if sign {
                return Err(Rc::ATTRIBUTES);
            }
            if data_given == (a & attr::SENSITIVE_DATA_ORIGIN != 0) {
                return Err(Rc::ATTRIBUTES);
            }
        }
    }
    Ok(())
}

fn check_asym(
    restricted: bool,
    sign: bool,
    decrypt: bool,
    symmetric: SymDefObject,
    scheme: Scheme,
) -> Result<(), Rc> {
    if restricted && decrypt {
        if symmetric == SymDefObject::Null {
            return Err(Rc::SYMMETRIC);
        }
        if scheme.scheme != alg::NULL {
            return Err(Rc::SCHEME);
        }
    } else if symmetric != SymDefObject::Null {
        return Err(Rc::SYMMETRIC);
    }
    if restricted && sign && scheme.scheme == alg::NULL {
        return Err(Rc::SCHEME);
    }
    let signing = matches!(scheme.scheme, alg::RSASSA | alg::RSAPSS | alg::ECDSA);
    let encrypting = matches!(scheme.scheme, alg::RSAES | alg::OAEP | alg::ECDH);
    if (signing && !sign) || (encrypting && !decrypt) {
        return Err(Rc::SCHEME);
    }
    Ok(())
}

/// Generate an object's secrets from `src` and fill in its unique field (Part 1, 27.2).
/// For primaries `src` is the seeded KDF stream, so the order of draws is part of the frozen
/// derivation: the key material first, then the seed value.
pub fn generate(
    mut public: TpmtPublic,
    create: &SensitiveCreate,
    src: &mut dyn ByteSource,
) -> Result<(TpmtPublic, TpmtSensitive, KeyMaterial), Rc> {
    let name_alg = public.name_alg;
    let mut seed_value = Vec::new();
    let (sensitive, key) = match &mut public.parms {
        PublicParms::Rsa {
            key_bits,
            exponent,
            modulus,
            ..
        } => {
            let k = rsa::generate(*key_bits, *exponent, src)?;
            *modulus = k.modulus();
            (k.prime(), KeyMaterial::RsaPrivate(Box::new(k)))
        }
        PublicParms::Ecc { curve: c, x, y, .. } => {
            let k = ecc::generate(curve_of(*c)?, src)?;
            let q = k.public();
            *x = q.x();
            *y = q.y();
            (k.scalar(), KeyMaterial::EccPrivate(k))
        }
        PublicParms::KeyedHash { scheme, .. } => {
            let data = if create.data.is_empty() {
                let size = scheme.hash.unwrap_or(name_alg).size();
                let mut d = vec![0u8; size];
                src.fill(&mut d);
                d
            } else {
                create.data.clone()
            };
            (data, KeyMaterial::Symmetric)
        }
        PublicParms::SymCipher { sym, .. } => {
            let data = if create.data.is_empty() {
                let bits = match sym {
                    SymDefObject::Aes(bits) => *bits,
                    SymDefObject::Null => return Err(Rc::SYMMETRIC),
                };
                let mut d = vec![0u8; usize::from(bits / 8)];
                src.fill(&mut d);
                d
            } else {
                create.data.clone()
            };
            (data, KeyMaterial::Symmetric)
        }
    };
    // Storage parents, keyed-hash and symmetric objects get a seed value (Part 1, 27.2.6).
    let needs_seed = public.is_storage()
        || matches!(
            public.parms,
            PublicParms::KeyedHash { .. } | PublicParms::SymCipher { .. }
        );
    if needs_seed {
        seed_value = vec![0u8; name_alg.size()];
        src.fill(&mut seed_value);
    }
    if let PublicParms::KeyedHash { unique, .. } | PublicParms::SymCipher { unique, .. } =
        &mut public.parms
    {
        *unique = name_alg.digest(&[&seed_value, &sensitive]);
    }
    let sensitive = TpmtSensitive {
        sensitive_type: public.object_type(),
        auth_value: crate::engine::trim_zeros(&create.user_auth).to_vec(),
        seed_value,
        sensitive,
    };
    Ok((public, sensitive, key))
}

/// Derive a primary object from a hierarchy seed (derivation v1, frozen): a KDFa stream
/// keyed by the seed with label "Primary Object Creation", contextU the Name of the template
/// as given, contextV the caller's sensitive data, hashed with the template's nameAlg.
pub fn derive_primary(
    seed: &[u8],
    template: &TpmtPublic,
    create: &SensitiveCreate,
) -> Result<(TpmtPublic, TpmtSensitive, KeyMaterial), Rc> {
    let mut stream = KdfStream::new(
        template.name_alg,
        seed,
        PRIMARY_LABEL,
        &template.name(),
        &create.data,
    );
    generate(template.clone(), create, &mut stream)
}

/// Rebuild key material from a public and sensitive area, checking that they belong together.
pub fn material(public: &TpmtPublic, sensitive: Option<&TpmtSensitive>) -> Result<KeyMaterial, Rc> {
    match (&public.parms, sensitive) {
        (
            PublicParms::Rsa {
                exponent, modulus, ..
            },
            Some(s),
        ) => Ok(KeyMaterial::RsaPrivate(Box::new(
            RsaPrivate::from_prime(modulus, *exponent, &s.sensitive).map_err(|_| Rc::BINDING)?,
        ))),
        (
            PublicParms::Rsa {
                exponent, modulus, ..
            },
            None,
        ) => Ok(KeyMaterial::RsaPublic(RsaPublic::new(modulus, *exponent)?)),
        (PublicParms::Ecc { curve: c, x, y, .. }, Some(s)) => {
            let k = ecc::from_scalar(curve_of(*c)?, &s.sensitive).map_err(|_| Rc::BINDING)?;
            let q = k.public();
            if q.x() != *x || q.y() != *y {
                return Err(Rc::BINDING);
            }
            Ok(KeyMaterial::EccPrivate(k))
        }
        (PublicParms::Ecc { curve: c, x, y, .. }, None) => {
            Ok(KeyMaterial::EccPublic(EccPublic::new(curve_of(*c)?, x, y)?))
        }
        (PublicParms::KeyedHash { unique, .. } | PublicParms::SymCipher { unique, .. }, s) => {
            if let Some(s) = s {
                if public.name_alg.digest(&[&s.seed_value, &s.sensitive]) != *unique {
                    return Err(Rc::BINDING);
                }
            }
            Ok(KeyMaterial::Symmetric)
        }
    }
}

/// The symmetric key and HMAC key a storage parent derives from its seed for a child
/// (Part 1, 22.4 and 23.5).
fn protection_keys(parent: &KeyObject, name: &[u8]) -> Result<(Vec<u8>, Vec<u8>, HashAlg), Rc> {
    let seed = parent
        .sensitive
        .as_ref()
        .map(|s| s.seed_value.as_slice())
        .ok_or(Rc::TYPE)?;
    let bits = match parent.public.symmetric() {
        SymDefObject::Aes(bits) => bits,
        SymDefObject::Null => return Err(Rc::TYPE),
    };
    let alg = parent.public.name_alg;
    let sym = kdfa(alg, seed, b"STORAGE", name, &[], u32::from(bits));
    let hmac_key = kdfa(alg, seed, b"INTEGRITY", &[], &[], (alg.size() * 8) as u32);
    Ok((sym, hmac_key, alg))
}

/// TPM2B_PRIVATE for a child: outer HMAC || AES-CFB(TPM2B_SENSITIVE) (Part 1, 23).
pub fn wrap(parent: &KeyObject, name: &[u8], sensitive: &TpmtSensitive) -> Result<Vec<u8>, Rc> {
    let (sym, hmac_key, alg) = protection_keys(parent, name)?;
    let mut plain = Vec::new();
    put_sized(&mut plain, &sensitive.to_bytes());
    aes_cfb(&sym, &[0u8; 16], &mut plain, true);
    let integrity = alg.hmac(&hmac_key, &[&plain, name]);
    let mut out = Vec::new();
    put_sized(&mut out, &integrity);
    out.extend_from_slice(&plain);
    Ok(out)
}

/// Check and open a TPM2B_PRIVATE made by [`wrap`]: TPM_RC_INTEGRITY if it was not made by
/// this parent for this Name.
pub fn unwrap(parent: &KeyObject, name: &[u8], private: &[u8]) -> Result<TpmtSensitive, Rc> {
    let (sym, hmac_key, alg) = protection_keys(parent, name)?;
    let mut r = Reader::new(private);
    let integrity = r.sized(64).map_err(|_| Rc::INTEGRITY)?;
    let mut enc = r.rest().to_vec();
    if alg.hmac(&hmac_key, &[&enc, name]) != integrity {
        return Err(Rc::INTEGRITY);
    }
    aes_cfb(&sym, &[0u8; 16], &mut enc, false);
    let mut r = Reader::new(&enc);
    let inner = r.sized(enc.len()).map_err(|_| Rc::INTEGRITY)?;
    TpmtSensitive::from_bytes(inner).map_err(|_| Rc::INTEGRITY)
}

/// A signature (TPMT_SIGNATURE, Part 2, 11.3.4).
pub struct Signature {
    pub sig_alg: u16,
    pub hash: HashAlg,
    /// RSA: the signature; ECDSA: r then s, each as its own part.
    pub parts: Vec<Vec<u8>>,
}

impl Marshal for Signature {
    fn marshal(&self, out: &mut Vec<u8>) {
        self.sig_alg.marshal(out);
        self.hash.id().marshal(out);
        match self.sig_alg {
            alg::HMAC => {
                for p in &self.parts {
                    out.extend_from_slice(p);
                }
            }
            _ => {
                for p in &self.parts {
                    put_sized(out, p);
                }
            }
        }
    }
}

impl Signature {
    /// Parse a TPMT_SIGNATURE (TPM_ALG_NULL is TPM_RC_SCHEME here: nothing to verify).
    pub fn read(r: &mut Reader<'_>) -> Result<Signature, Rc> {
        let sig_alg = r.u16()?;
        let hash = HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?;
        let parts = match sig_alg {
            alg::RSASSA | alg::RSAPSS => vec![r.sized(512)?.to_vec()],
            alg::ECDSA => vec![r.sized(66)?.to_vec(), r.sized(66)?.to_vec()],
            alg::HMAC => vec![r.take(hash.size())?.to_vec()],
            _ => return Err(Rc::SCHEME),
        };
        Ok(Signature {
            sig_alg,
            hash,
            parts,
        })
    }
}

/// The scheme a signing key uses for one operation (Part 3, CryptSelectSignScheme): the key's
/// own scheme, or if it has none the caller's; they may not disagree.
pub fn select_scheme(key: &TpmtPublic, requested: Scheme) -> Result<Scheme, Rc> {
    let own = match &key.parms {
        PublicParms::Rsa { scheme, .. } | PublicParms::Ecc { scheme, .. } => *scheme,
        PublicParms::KeyedHash { scheme, .. } => *scheme,
        PublicParms::SymCipher { .. } => return Err(Rc::KEY),
    };
    let chosen = if own.scheme == alg::NULL {
        requested
    } else if requested.scheme == alg::NULL || requested == own {
        own
    } else {
        return Err(Rc::SCHEME);
    };
    let fits = matches!(
        (&key.parms, chosen.scheme),
        (PublicParms::Rsa { .. }, alg::RSASSA | alg::RSAPSS)
            | (PublicParms::Ecc { .. }, alg::ECDSA)
            | (PublicParms::KeyedHash { .. }, alg::HMAC)
    );
    if !fits || chosen.hash.is_none() {
        return Err(Rc::SCHEME);
    }
    Ok(chosen)
}

/// Sign a digest with a loaded key under a chosen scheme.
pub fn sign(
    key: &KeyObject,
    scheme: Scheme,
    digest: &[u8],
    rng: &mut dyn ByteSource,
) -> Result<Signature, Rc> {
    let hash = scheme.hash.ok_or(Rc::SCHEME)?;
    let parts = match (&key.key, scheme.scheme) {
        (KeyMaterial::RsaPrivate(k), alg::RSASSA) => vec![k.sign_pkcs1v15(hash, digest)?],
        (KeyMaterial::RsaPrivate(k), alg::RSAPSS) => vec![k.sign_pss(hash, digest, rng)?],
        (KeyMaterial::EccPrivate(k), alg::ECDSA) => {
            let (r, s) = k.sign_ecdsa(digest, rng)?;
            vec![r, s]
        }
        (KeyMaterial::Symmetric, alg::HMAC) => {
            let secret = key
                .sensitive
                .as_ref()
                .map(|s| s.sensitive.as_slice())
                .ok_or(Rc::KEY)?;
            vec![hash.hmac(secret, &[digest])]
        }
        _ => return Err(Rc::KEY),
    };
    Ok(Signature {
        sig_alg: scheme.scheme,
        hash,
        parts,
    })
}

/// Verify a signature over a digest with a loaded key (TPM_RC_SIGNATURE when it does not verify).
pub fn verify(key: &KeyObject, digest: &[u8], sig: &Signature) -> Result<(), Rc> {
    let part = |i: usize| sig.parts.get(i).map(Vec::as_slice).ok_or(Rc::SIGNATURE);
    match (&key.key, sig.sig_alg) {
        (KeyMaterial::RsaPrivate(k), alg::RSASSA) => {
            k.public().verify_pkcs1v15(sig.hash, digest, part(0)?)
        }
        (KeyMaterial::RsaPublic(k), alg::RSASSA) => k.verify_pkcs1v15(sig.hash, digest, part(0)?),
        (KeyMaterial::RsaPrivate(k), alg::RSAPSS) => {
            k.public().verify_pss(sig.hash, digest, part(0)?)
        }
        (KeyMaterial::RsaPublic(k), alg::RSAPSS) => k.verify_pss(sig.hash, digest, part(0)?),
        (KeyMaterial::EccPrivate(k), alg::ECDSA) => {
            k.public().verify_ecdsa(digest, part(0)?, part(1)?)
        }
        (KeyMaterial::EccPublic(k), alg::ECDSA) => k.verify_ecdsa(digest, part(0)?, part(1)?),
        (KeyMaterial::Symmetric, alg::HMAC) => {
            let secret = key
                .sensitive
                .as_ref()
                .map(|s| s.sensitive.as_slice())
                .ok_or(Rc::KEY)?;
            if sig.hash.hmac(secret, &[digest]) == part(0)? {
                Ok(())
            } else {
                Err(Rc::SIGNATURE)
            }
        }
        _ => Err(Rc::SCHEME),
    }
}

/// Recover a secret encrypted to a decryption key: RSA-OAEP with `label`, or ECDH with the
/// ephemeral point in `secret` followed by KDFe (Part 1, C.6 and C.7 / 11.4.10.3).
pub fn decrypt_secret(key: &KeyObject, label: &[u8], secret: &[u8]) -> Result<Vec<u8>, Rc> {
    let name_alg = key.public.name_alg;
    match &key.key {
        KeyMaterial::RsaPrivate(k) => k
            .decrypt_oaep(name_alg, label, secret)
            .map_err(|_| Rc::VALUE),
        KeyMaterial::EccPrivate(k) => {
            let mut r = Reader::new(secret);
            let x = r.sized(66)?;
            let y = r.sized(66)?;
            if !r.is_empty() {
                return Err(Rc::SIZE);
            }
            let PublicParms::Ecc {
                curve: c, x: qx, ..
            } = &key.public.parms
            else {
                return Err(Rc::KEY);
            };
            let ephemeral = EccPublic::new(curve_of(*c)?, x, y).map_err(|_| Rc::ECC_POINT)?;
            let z = k.ecdh(&ephemeral)?;
            Ok(crate::kdf::kdfe(
                name_alg,
                &z,
                label,
                x,
                qx,
                (name_alg.size() * 8) as u32,
            ))
        }
        _ => Err(Rc::KEY),
    }
}

/// Encrypt a fresh seed to a public key, for MakeCredential (label "IDENTITY") and salts:
/// returns (seed, TPM2B_ENCRYPTED_SECRET contents).
pub fn encrypt_secret(
    key: &KeyObject,
    label: &[u8],
    rng: &mut dyn ByteSource,
) -> Result<(Vec<u8>, Vec<u8>), Rc> {
    let name_alg = key.public.name_alg;
    let public_rsa = |k: &RsaPublic, rng: &mut dyn ByteSource| -> Result<(Vec<u8>, Vec<u8>), Rc> {
        let mut seed = vec![0u8; name_alg.size()];
        rng.fill(&mut seed);
        let ct = k.encrypt_oaep(name_alg, label, &seed, rng)?;
        Ok((seed, ct))
    };
    let public_ecc = |q: &EccPublic, rng: &mut dyn ByteSource| -> Result<(Vec<u8>, Vec<u8>), Rc> {
        let (z, e) = ecc::ecdh_ephemeral(q, rng)?;
        let seed = crate::kdf::kdfe(
            name_alg,
            &z,
            label,
            &e.x(),
            &q.x(),
            (name_alg.size() * 8) as u32,
        );
        let mut point = Vec::new();
        put_sized(&mut point, &e.x());
        put_sized(&mut point, &e.y());
        Ok((seed, point))
    };
    match &key.key {
        KeyMaterial::RsaPrivate(k) => public_rsa(&k.public(), rng),
        KeyMaterial::RsaPublic(k) => public_rsa(k, rng),
        KeyMaterial::EccPrivate(k) => public_ecc(&k.public(), rng),
        KeyMaterial::EccPublic(q) => public_ecc(q, rng),
        KeyMaterial::Symmetric => Err(Rc::KEY),
    }
}

/// The labels of Part 1 with their terminating zero, as KDFs and OAEP use them.
pub mod label {
    pub const IDENTITY: &[u8] = b"IDENTITY\0";
    pub const SECRET: &[u8] = b"SECRET\0";
    pub const DUPLICATE: &[u8] = b"DUPLICATE\0";
}

/// Serialize a key object for a context blob or persistent storage: public, sensitive,
/// hierarchy and qualified name.
pub fn encode_object(o: &KeyObject) -> Vec<u8> {
    let mut out = Vec::new();
    put_sized(&mut out, &o.public.to_bytes());
    match &o.sensitive {
        Some(s) => {
            1u8.marshal(&mut out);
            put_sized(&mut out, &s.to_bytes());
        }
        None => 0u8.marshal(&mut out),
    }
    o.hierarchy.marshal(&mut out);
    put_sized(&mut out, &o.qualified_name);
    out
}

/// Inverse of [`encode_object`], re-deriving the key material.
pub fn decode_object(blob: &[u8]) -> Result<KeyObject, Rc> {
    let mut r = Reader::new(blob);
    let public = TpmtPublic::from_bytes(r.sized(2048)?)?;
    let sensitive = match r.u8()? {
        0 => None,
        1 => Some(TpmtSensitive::from_bytes(r.sized(2048)?)?),
        _ => return Err(Rc::VALUE),
    };
    let hierarchy = r.u32()?;
    let qualified_name = r.sized(66)?.to_vec();
    if !r.is_empty() {
        return Err(Rc::SIZE);
    }
    let key = material(&public, sensitive.as_ref())?;
    let name = public.name();
    Ok(KeyObject {
        public,
        sensitive,
        name,
        qualified_name,
        hierarchy,
        key,
    })
}

/// The qualified name of an object under a parent (Part 1, 16): nameAlg || H(parentQN || Name).
pub fn qualified_name(parent_qn: &[u8], public: &TpmtPublic, name: &[u8]) -> Vec<u8> {
    let mut q = public.name_alg.id().to_be_bytes().to_vec();
    q.extend_from_slice(&public.name_alg.digest(&[parent_qn, name]));
    q
}
