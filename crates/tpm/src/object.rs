//! TPM objects (Part 2, 12): TPMT_PUBLIC and its parameter and unique unions, TPMT_SENSITIVE,
//! creation data, and Names. Parsing validates as the specification's unmarshal functions do.

use crate::codec::{put_sized, tpm2b, Marshal, Reader, Unmarshal};
use crate::hash::HashAlg;
use crate::rc::Rc;
use crate::types::{alg, curve, Tpm2bDigest, Tpm2bName, Tpm2bSensitiveData, TpmlPcrSelection};

/// TPMA_OBJECT bits (Part 2, 8.3).
pub mod attr {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const ST_CLEAR: u32 = 1 << 2;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const ENCRYPTED_DUPLICATION: u32 = 1 << 11;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN_ENCRYPT: u32 = 1 << 18;
    pub const X509_SIGN: u32 = 1 << 19;
    /// Bits 0, 3, 8, 9, 12-15 and 20-31 are reserved.
    pub const RESERVED: u32 = 1 | (1 << 3) | (0x3 << 8) | (0xF << 12) | 0xFFF0_0000;
}

tpm2b!(
    /// TPM2B_PUBLIC_KEY_RSA (Part 2, 11.2.4.5): at most 4096 bits.
    Tpm2bPublicKeyRsa,
    512
);
tpm2b!(
    /// TPM2B_ECC_PARAMETER (Part 2, 11.2.5.1).
    Tpm2bEccParameter,
    66
);
tpm2b!(
    /// TPM2B_DATA (Part 2, 10.4.3).
    Tpm2bData,
    64
);
tpm2b!(
    /// TPM2B_PRIVATE (Part 2, 12.3.7): an opaque, integrity-protected and encrypted sensitive area.
    Tpm2bPrivate,
    1024
);
tpm2b!(
    /// TPM2B_ENCRYPTED_SECRET (Part 2, 11.4.33).
    Tpm2bEncryptedSecret,
    512
);
tpm2b!(
    /// TPM2B_CONTEXT_DATA (Part 2, 14.4): an integrity-protected, encrypted saved context.
    Tpm2bContextData,
    4096
);
tpm2b!(
    /// TPM2B_ID_OBJECT (Part 2, 12.4.3).
    Tpm2bIdObject,
    2 + 64 + 2 + 64
);

/// TPMT_SYM_DEF_OBJECT (Part 2, 11.1.7): AES-CFB or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymDefObject {
    Null,
    /// AES with this many key bits in CFB mode.
    Aes(u16),
}

impl Marshal for SymDefObject {
    fn marshal(&self, out: &mut Vec<u8>) {
        match self {
            SymDefObject::Null => alg::NULL.marshal(out),
            SymDefObject::Aes(bits) => {
                alg::AES.marshal(out);
                bits.marshal(out);
                alg::CFB.marshal(out);
            }
        }
    }
}

impl Unmarshal for SymDefObject {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        match r.u16()? {
            alg::NULL => Ok(SymDefObject::Null),
            alg::AES => {
                let bits = r.u16()?;
                let mode = r.u16()?;
                if !matches!(bits, 128 | 256) {
                    return Err(Rc::KEY_SIZE);
                }
                if mode != alg::CFB {
                    return Err(Rc::MODE);
                }
                Ok(SymDefObject::Aes(bits))
            }
            _ => Err(Rc::SYMMETRIC),
        }
    }
}

/// A signing or encryption scheme with its hash (TPMT_*_SCHEME; TPM_ALG_NULL is `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    pub scheme: u16,
    /// The scheme's hash algorithm (absent for RSAES).
    pub hash: Option<HashAlg>,
}

impl Scheme {
    pub const NULL: Scheme = Scheme {
        scheme: alg::NULL,
        hash: None,
    };

    fn has_hash(scheme: u16) -> bool {
        !matches!(scheme, alg::NULL | alg::RSAES)
    }

    /// Read a scheme id and its details; `allowed` lists the schemes this context accepts.
    pub fn read(r: &mut Reader<'_>, allowed: &[u16]) -> Result<Self, Rc> {
        let scheme = r.u16()?;
        if scheme != alg::NULL && !allowed.contains(&scheme) {
            return Err(Rc::SCHEME);
        }
        let hash = if Self::has_hash(scheme) {
            Some(HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?)
        } else {
            None
        };
        Ok(Scheme { scheme, hash })
    }
}

impl Marshal for Scheme {
    fn marshal(&self, out: &mut Vec<u8>) {
        self.scheme.marshal(out);
        if let Some(h) = self.hash {
            h.id().marshal(out);
        }
    }
}

pub const RSA_SCHEMES: &[u16] = &[alg::RSASSA, alg::RSAPSS, alg::RSAES, alg::OAEP];
pub const ECC_SCHEMES: &[u16] = &[alg::ECDSA, alg::ECDH];
pub const SIGN_SCHEMES: &[u16] = &[alg::RSASSA, alg::RSAPSS, alg::ECDSA, alg::HMAC];

/// TPMU_PUBLIC_PARMS with TPMU_PUBLIC_ID, by object type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicParms {
    KeyedHash {
        scheme: Scheme,
        kdf: Option<u16>,
        unique: Vec<u8>,
    },
    SymCipher {
        sym: SymDefObject,
        unique: Vec<u8>,
    },
    Rsa {
        symmetric: SymDefObject,
        scheme: Scheme,
        key_bits: u16,
        exponent: u32,
        modulus: Vec<u8>,
    },
    Ecc {
        symmetric: SymDefObject,
        scheme: Scheme,
        curve: u16,
        kdf: Option<HashAlg>,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

/// TPMT_PUBLIC (Part 2, 12.2.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmtPublic {
    pub name_alg: HashAlg,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub parms: PublicParms,
}

impl TpmtPublic {
    pub fn object_type(&self) -> u16 {
        match self.parms {
            PublicParms::KeyedHash { .. } => alg::KEYEDHASH,
            PublicParms::SymCipher { .. } => alg::SYMCIPHER,
            PublicParms::Rsa { .. } => alg::RSA,
            PublicParms::Ecc { .. } => alg::ECC,
        }
    }

    pub fn has(&self, bits: u32) -> bool {
        self.attributes & bits == bits
    }

    /// The Name: nameAlg || H_nameAlg(TPMT_PUBLIC).
    pub fn name(&self) -> Vec<u8> {
        let mut n = self.name_alg.id().to_be_bytes().to_vec();
        n.extend_from_slice(&self.name_alg.digest(&[&self.to_bytes()]));
        n
    }

    /// A storage parent: restricted, decrypt, not sign.
    pub fn is_storage(&self) -> bool {
        self.has(attr::RESTRICTED | attr::DECRYPT) && !self.has(attr::SIGN_ENCRYPT)
    }

    /// The symmetric algorithm a storage parent protects its children with.
    pub fn symmetric(&self) -> SymDefObject {
        match &self.parms {
            PublicParms::Rsa { symmetric, .. } | PublicParms::Ecc { symmetric, .. } => *symmetric,
            PublicParms::SymCipher { sym, .. } => *sym,
            PublicParms::KeyedHash { .. } => SymDefObject::Null,
        }
    }
}

impl Marshal for TpmtPublic {
    fn marshal(&self, out: &mut Vec<u8>) {
        self.object_type().marshal(out);
        self.name_alg.id().marshal(out);
        self.attributes.marshal(out);
        put_sized(out, &self.auth_policy);
        match &self.parms {
            PublicParms::KeyedHash {
                scheme,
                kdf,
                unique,
            } => {
                scheme.marshal(out);
                if let Some(k) = kdf {
                    k.marshal(out);
                }
                put_sized(out, unique);
            }
            PublicParms::SymCipher { sym, unique } => {
                sym.marshal(out);
                put_sized(out, unique);
            }
            PublicParms::Rsa {
                symmetric,
                scheme,
                key_bits,
                exponent,
                modulus,
            } => {
                symmetric.marshal(out);
                scheme.marshal(out);
                key_bits.marshal(out);
                exponent.marshal(out);
                put_sized(out, modulus);
            }
            PublicParms::Ecc {
                symmetric,
                scheme,
                curve,
                kdf,
                x,
                y,
            } => {
                symmetric.marshal(out);
                scheme.marshal(out);
                curve.marshal(out);
                match kdf {
                    None => alg::NULL.marshal(out),
                    Some(h) => {
                        alg::KDF1_SP800_56A.marshal(out);
                        h.id().marshal(out);
                    }
                }
                put_sized(out, x);
                put_sized(out, y);
            }
        }
    }
}

impl Unmarshal for TpmtPublic {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let object_type = r.u16()?;
        let name_alg = HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?;
        let attributes = r.u32()?;
        if attributes & attr::RESERVED != 0 {
            return Err(Rc::RESERVED_BITS);
        }
        let auth_policy = r.sized(Tpm2bDigest::CAP)?.to_vec();
        let parms = match object_type {
            alg::KEYEDHASH => {
                let scheme = r.u16()?;
                let (scheme, kdf) = match scheme {
                    alg::NULL => (Scheme::NULL, None),
                    alg::HMAC => (
                        Scheme {
                            scheme,
                            hash: Some(HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?),
                        },
                        None,
                    ),
                    alg::XOR => {
                        let hash = HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?;
                        let kdf = r.u16()?;
                        if kdf != alg::KDF1_SP800_108 {
                            return Err(Rc::KDF);
                        }
                        (
                            Scheme {
                                scheme,
                                hash: Some(hash),
                            },
                            Some(kdf),
                        )
                    }
                    _ => return Err(Rc::SCHEME),
                };
                PublicParms::KeyedHash {
                    scheme,
                    kdf,
                    unique: r.sized(Tpm2bDigest::CAP)?.to_vec(),
                }
            }
            alg::SYMCIPHER => {
                let sym = SymDefObject::unmarshal(r)?;
                if sym == SymDefObject::Null {
                    return Err(Rc::SYMMETRIC);
                }
                PublicParms::SymCipher {
                    sym,
                    unique: r.sized(Tpm2bDigest::CAP)?.to_vec(),
                }
            }
            alg::RSA => {
                let symmetric = SymDefObject::unmarshal(r)?;
                let scheme = Scheme::read(r, RSA_SCHEMES)?;
                let key_bits = r.u16()?;
                let exponent = r.u32()?;
                let modulus = r.sized(Tpm2bPublicKeyRsa::CAP)?.to_vec();
                PublicParms::Rsa {
                    symmetric,
                    scheme,
                    key_bits,
                    exponent,
                    modulus,
                }
            }
            alg::ECC => {
                let symmetric = SymDefObject::unmarshal(r)?;
                let scheme = Scheme::read(r, ECC_SCHEMES)?;
                let curve_id = r.u16()?;
                if curve_id != curve::NIST_P256 && curve_id != curve::NIST_P384 {
                    return Err(Rc::CURVE);
                }
                let kdf = match r.u16()? {
                    alg::NULL => None,
                    alg::KDF1_SP800_56A => Some(HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?),
                    _ => return Err(Rc::KDF),
                };
                let x = r.sized(Tpm2bEccParameter::CAP)?.to_vec();
                let y = r.sized(Tpm2bEccParameter::CAP)?.to_vec();
                PublicParms::Ecc {
                    symmetric,
                    scheme,
                    curve: curve_id,
                    kdf,
                    x,
                    y,
                }
            }
            _ => return Err(Rc::TYPE),
        };
        Ok(TpmtPublic {
            name_alg,
            attributes,
            auth_policy,
            parms,
        })
    }
}

/// TPM2B_PUBLIC (Part 2, 12.2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tpm2bPublic(pub TpmtPublic);

impl Marshal for Tpm2bPublic {
    fn marshal(&self, out: &mut Vec<u8>) {
        put_sized(out, &self.0.to_bytes());
    }
}

impl Unmarshal for Tpm2bPublic {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let size = usize::from(r.u16()?);
        if size == 0 {
            return Err(Rc::SIZE);
        }
        Ok(Tpm2bPublic(TpmtPublic::from_bytes(r.take(size)?)?))
    }
}

/// TPM2B_SENSITIVE_CREATE (Part 2, 11.1.16): the caller's authValue and optional data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SensitiveCreate {
    pub user_auth: Vec<u8>,
    pub data: Vec<u8>,
}

impl Unmarshal for SensitiveCreate {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let size = usize::from(r.u16()?);
        let mut inner = Reader::new(r.take(size)?);
        let user_auth = inner.sized(Tpm2bDigest::CAP)?.to_vec();
        let data = inner.sized(Tpm2bSensitiveData::CAP)?.to_vec();
        if !inner.is_empty() {
            return Err(Rc::SIZE);
        }
        Ok(SensitiveCreate { user_auth, data })
    }
}

impl Marshal for SensitiveCreate {
    fn marshal(&self, out: &mut Vec<u8>) {
        let mut inner = Vec::new();
        put_sized(&mut inner, &self.user_auth);
        put_sized(&mut inner, &self.data);
        put_sized(out, &inner);
    }
}

/// TPMT_SENSITIVE (Part 2, 12.3.2.5): the secret half of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmtSensitive {
    pub sensitive_type: u16,
    pub auth_value: Vec<u8>,
    pub seed_value: Vec<u8>,
    /// RSA: the prime p; ECC: the scalar d; KEYEDHASH/SYMCIPHER: the key or data.
    pub sensitive: Vec<u8>,
}

impl Marshal for TpmtSensitive {
    fn marshal(&self, out: &mut Vec<u8>) {
        self.sensitive_type.marshal(out);
        put_sized(out, &self.auth_value);
        put_sized(out, &self.seed_value);
        put_sized(out, &self.sensitive);
    }
}

impl Unmarshal for TpmtSensitive {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let sensitive_type = r.u16()?;
        let auth_value = r.sized(Tpm2bDigest::CAP)?.to_vec();
        let seed_value = r.sized(Tpm2bDigest::CAP)?.to_vec();
        let cap = match sensitive_type {
            alg::RSA => 256,
            alg::ECC => 66,
            alg::KEYEDHASH => 128,
            alg::SYMCIPHER => 32,
            _ => return Err(Rc::TYPE),
        };
        let sensitive = r.sized(cap)?.to_vec();
        Ok(TpmtSensitive {
            sensitive_type,
            auth_value,
            seed_value,
            sensitive,
        })
    }
}

/// TPM2B_SENSITIVE (Part 2, 12.3.3): a size-prefixed TPMT_SENSITIVE, or nothing (size 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tpm2bSensitive(pub Option<TpmtSensitive>);

impl Unmarshal for Tpm2bSensitive {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        let size = usize::from(r.u16()?);
        if size == 0 {
            return Ok(Tpm2bSensitive(None));
        }
        Ok(Tpm2bSensitive(Some(TpmtSensitive::from_bytes(
            r.take(size)?,
        )?)))
    }
}

/// TPMS_CREATION_DATA (Part 2, 15.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreationData {
    pub pcr_select: TpmlPcrSelection,
    pub pcr_digest: Vec<u8>,
    pub locality: u8,
    pub parent_name_alg: u16,
    pub parent_name: Vec<u8>,
    pub parent_qualified_name: Vec<u8>,
    pub outside_info: Vec<u8>,
}

impl Marshal for CreationData {
    fn marshal(&self, out: &mut Vec<u8>) {
        self.pcr_select.marshal(out);
        put_sized(out, &self.pcr_digest);
        self.locality.marshal(out);
        self.parent_name_alg.marshal(out);
        Tpm2bName(self.parent_name.clone()).marshal(out);
        Tpm2bName(self.parent_qualified_name.clone()).marshal(out);
        put_sized(out, &self.outside_info);
    }
}

impl Unmarshal for CreationData {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        Ok(CreationData {
            pcr_select: TpmlPcrSelection::unmarshal(r)?,
            pcr_digest: r.sized(Tpm2bDigest::CAP)?.to_vec(),
            locality: r.u8()?,
            parent_name_alg: r.u16()?,
            parent_name: Tpm2bName::unmarshal(r)?.0,
            parent_qualified_name: Tpm2bName::unmarshal(r)?.0,
            outside_info: Tpm2bData::unmarshal(r)?.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tpm2-tools' default RSA-2048 storage primary template (tpm2_createprimary -G rsa):
    /// restricted|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth, AES-128-CFB.
    const RSA_PRIMARY_TEMPLATE: &str = "0001000b00030072000000060080004300100800000000000000";

    #[test]
    fn parses_and_re_marshals_a_tpm2_tools_template() {
        let bytes = hex::decode(RSA_PRIMARY_TEMPLATE).unwrap();
        let p = TpmtPublic::from_bytes(&bytes).unwrap();
        assert_eq!(p.object_type(), alg::RSA);
        assert!(p.is_storage());
        assert_eq!(p.symmetric(), SymDefObject::Aes(128));
        assert_eq!(p.to_bytes(), bytes);
        for cut in 0..bytes.len() {
            assert!(TpmtPublic::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn rejects_reserved_bits_bad_curves_and_schemes() {
        let mut bytes = hex::decode(RSA_PRIMARY_TEMPLATE).unwrap();
        bytes[4..8].copy_from_slice(&(0x0003_0072u32 | 1).to_be_bytes());
        assert_eq!(TpmtPublic::from_bytes(&bytes), Err(Rc::RESERVED_BITS));
        // ECC with curve 0x0009.
        let ecc = hex::decode("0023000b000300720000001000100009001000000000").unwrap();
        assert_eq!(TpmtPublic::from_bytes(&ecc), Err(Rc::CURVE));
        let p256 = hex::decode("0023000b000300720000001000100003001000000000").unwrap();
        assert!(TpmtPublic::from_bytes(&p256).is_ok());
        // RSA with an unknown scheme.
        let rsa = hex::decode("0001000b00030072000000100099000b0800000000000000").unwrap();
        assert_eq!(TpmtPublic::from_bytes(&rsa), Err(Rc::SCHEME));
    }

    #[test]
    fn sensitive_and_creation_data_round_trip() {
        let s = TpmtSensitive {
            sensitive_type: alg::ECC,
            auth_value: b"a".to_vec(),
            seed_value: vec![1; 32],
            sensitive: vec![2; 32],
        };
        assert_eq!(TpmtSensitive::from_bytes(&s.to_bytes()).unwrap(), s);
        let c = CreationData {
            pcr_select: TpmlPcrSelection::default(),
            pcr_digest: vec![3; 32],
            locality: 1,
            parent_name_alg: alg::SHA256,
            parent_name: vec![4; 34],
            parent_qualified_name: vec![5; 34],
            outside_info: b"x".to_vec(),
        };
        assert_eq!(CreationData::from_bytes(&c.to_bytes()).unwrap(), c);
        let sc = SensitiveCreate {
            user_auth: b"pw".to_vec(),
            data: vec![],
        };
        assert_eq!(SensitiveCreate::from_bytes(&sc.to_bytes()).unwrap(), sc);
    }
}
