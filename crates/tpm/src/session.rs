//! Authorization sessions (Part 1, 19; Part 3, 11.1): HMAC, policy and trial sessions, their
//! session keys, nonces and HMACs, and parameter encryption with AES-CFB or XOR (Part 1, 21).

use aes::cipher::{AsyncStreamCipher, KeyIvInit};

use crate::codec::{Reader, Unmarshal};
use crate::hash::HashAlg;
use crate::kdf::kdfa;
use crate::rc::Rc;
use crate::types::alg;

/// TPM_SE (Part 2, 6.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionType {
    Hmac,
    Policy,
    Trial,
}

/// The session's parameter-encryption algorithm (TPMT_SYM_DEF, Part 2, 11.1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymDef {
    Null,
    /// AES in CFB mode with this many key bits.
    AesCfb(u16),
    Xor(HashAlg),
}

impl Unmarshal for SymDef {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        match r.u16()? {
            alg::NULL => Ok(SymDef::Null),
            alg::AES => {
                let bits = r.u16()?;
                let mode = r.u16()?;
                if !matches!(bits, 128 | 192 | 256) {
                    return Err(Rc::KEY_SIZE);
                }
                if mode != alg::CFB {
                    return Err(Rc::MODE);
                }
                Ok(SymDef::AesCfb(bits))
            }
            alg::XOR => HashAlg::from_id(r.u16()?).map(SymDef::Xor).ok_or(Rc::HASH),
            _ => Err(Rc::SYMMETRIC),
        }
    }
}

/// What a policy session has accumulated (Part 1, 19.7).
#[derive(Clone, Debug, Default)]
pub struct PolicyState {
    pub digest: Vec<u8>,
    pub command_code: Option<u32>,
    pub cp_hash: Option<Vec<u8>>,
    pub name_hash: Option<Vec<u8>>,
    pub is_password_needed: bool,
    pub is_auth_value_needed: bool,
    /// PCR update counter when PolicyPCR ran, checked again at use.
    pub pcr_counter: Option<u32>,
    /// TPM time (ms since _TPM_Init) after which the policy no longer authorizes
    /// (PolicySecret/PolicySigned with an expiration).
    pub timeout: Option<u64>,
}

/// One loaded session.
#[derive(Clone, Debug)]
pub struct Session {
    pub kind: SessionType,
    pub hash: HashAlg,
    pub nonce_tpm: Vec<u8>,
    pub session_key: Vec<u8>,
    pub symmetric: SymDef,
    /// The bound entity (its Name and authValue at binding), for HMAC sessions.
    pub bound: Option<(Vec<u8>, Vec<u8>)>,
    pub policy: PolicyState,
    /// TPM time (ms since _TPM_Init) when the session started or its policy last reset.
    pub start_time: u64,
    /// The session audit digest, once the session has been used for audit (Part 1, 19.5).
    pub audit_digest: Option<Vec<u8>>,
}

impl Session {
    /// Start a session: `bind_auth` and `salt` feed the session key (Part 1, 19.6.8).
    pub fn start(
        kind: SessionType,
        hash: HashAlg,
        symmetric: SymDef,
        nonce_caller: &[u8],
        nonce_tpm: Vec<u8>,
        bind: Option<(Vec<u8>, Vec<u8>)>,
        salt: &[u8],
    ) -> Session {
        let bind_auth = bind
            .as_ref()
            .map(|(_, auth)| auth.as_slice())
            .unwrap_or(&[]);
        let session_key = if bind_auth.is_empty() && salt.is_empty() {
            Vec::new()
        } else {
            let key = [bind_auth, salt].concat();
            kdfa(
                hash,
                &key,
                b"ATH",
                &nonce_tpm,
                nonce_caller,
                (hash.size() * 8) as u32,
            )
        };
        let bound = if kind == SessionType::Hmac {
            bind
        } else {
            None
        };
        let policy = PolicyState {
            digest: vec![0; hash.size()],
            ..PolicyState::default()
        };
        Session {
            kind,
            hash,
            nonce_tpm,
            session_key,
            symmetric,
            bound,
            policy,
            start_time: 0,
            audit_digest: None,
        }
    }

    /// authHMAC of a command (Part 1, 19.6.5). `extra_nonces` are the nonceTPMs of separate
    /// decrypt/encrypt sessions, included for the first authorization session only.
    pub fn command_hmac(
        &self,
        auth_value: Option<&[u8]>,
        cp_hash: &[u8],
        nonce_caller: &[u8],
        extra_nonces: &[&[u8]],
        attributes: u8,
    ) -> Vec<u8> {
        let key = [self.session_key.as_slice(), auth_value.unwrap_or(&[])].concat();
        let mut parts: Vec<&[u8]> = vec![cp_hash, nonce_caller, &self.nonce_tpm];
        parts.extend_from_slice(extra_nonces);
        let attrs = [attributes];
        parts.push(&attrs);
        self.hash.hmac(&key, &parts)
    }

    /// authHMAC of a response, computed after `nonce_tpm` has rolled.
    pub fn response_hmac(
        &self,
        auth_value: Option<&[u8]>,
        rp_hash: &[u8],
        nonce_caller: &[u8],
        attributes: u8,
    ) -> Vec<u8> {
        let key = [self.session_key.as_slice(), auth_value.unwrap_or(&[])].concat();
        self.hash.hmac(
            &key,
            &[rp_hash, &self.nonce_tpm, nonce_caller, &[attributes]],
        )
    }

    /// Whether the HMAC key would be empty (then an empty HMAC is accepted and returned).
    pub fn hmac_key_is_empty(&self, auth_value: Option<&[u8]>) -> bool {
        self.session_key.is_empty() && auth_value.is_none_or(<[u8]>::is_empty)
    }

    /// Encrypt or decrypt `data` in place (Part 1, 21.2 and 21.3). `nonce_newer` is the
    /// nonce of the side that produced the data.
    pub fn crypt_parameter(
        &self,
        auth_value: &[u8],
        nonce_newer: &[u8],
        nonce_older: &[u8],
        data: &mut [u8],
        encrypt: bool,
    ) {
        let key = [self.session_key.as_slice(), auth_value].concat();
        match self.symmetric {
            SymDef::Null => {}
            SymDef::Xor(h) => {
                let mask = kdfa(
                    h,
                    &key,
                    b"XOR",
                    nonce_newer,
                    nonce_older,
                    (data.len() * 8) as u32,
                );
                data.iter_mut().zip(mask).for_each(|(d, m)| *d ^= m);
            }
            SymDef::AesCfb(bits) => {
                let bytes = usize::from(bits / 8);
                let material = kdfa(
                    self.hash,
                    &key,
                    b"CFB",
                    nonce_newer,
                    nonce_older,
                    u32::from(bits) + 128,
                );
                let (k, iv) = material.split_at(bytes.min(material.len()));
                aes_cfb(k, iv, data, encrypt);
            }
        }
    }
}

/// AES-CFB (full-block feedback, as TPM 2.0 uses it) with a 128-, 192- or 256-bit key.
pub fn aes_cfb(key: &[u8], iv: &[u8], data: &mut [u8], encrypt: bool) {
    macro_rules! run {
        ($aes:ty) => {{
            if encrypt {
                if let Ok(c) = cfb_mode::Encryptor::<$aes>::new_from_slices(key, iv) {
                    c.encrypt(data);
                }
            } else if let Ok(c) = cfb_mode::Decryptor::<$aes>::new_from_slices(key, iv) {
                c.decrypt(data);
            }
        }};
    }
    match key.len() {
        16 => run!(aes::Aes128),
        24 => run!(aes::Aes192),
        32 => run!(aes::Aes256),
        _ => {}
    }
}

/// Serialize a session for a saved context (the blob is encrypted and integrity-protected by
/// the caller).
pub fn encode(s: &Session) -> Vec<u8> {
    use crate::codec::{put_sized, Marshal};
    let mut out = Vec::new();
    let kind: u8 = match s.kind {
        SessionType::Hmac => 0,
        SessionType::Policy => 1,
        SessionType::Trial => 3,
    };
    kind.marshal(&mut out);
    s.hash.id().marshal(&mut out);
    put_sized(&mut out, &s.nonce_tpm);
    put_sized(&mut out, &s.session_key);
    match s.symmetric {
        SymDef::Null => alg::NULL.marshal(&mut out),
        SymDef::AesCfb(bits) => {
            alg::AES.marshal(&mut out);
            bits.marshal(&mut out);
            alg::CFB.marshal(&mut out);
        }
        SymDef::Xor(h) => {
            alg::XOR.marshal(&mut out);
            h.id().marshal(&mut out);
        }
    }
    match &s.bound {
        None => 0u8.marshal(&mut out),
        Some((name, auth)) => {
            1u8.marshal(&mut out);
            put_sized(&mut out, name);
            put_sized(&mut out, auth);
        }
    }
    let p = &s.policy;
    put_sized(&mut out, &p.digest);
    let opt = |out: &mut Vec<u8>, v: &Option<Vec<u8>>| match v {
        None => 0u8.marshal(out),
        Some(v) => {
            1u8.marshal(out);
            put_sized(out, v);
        }
    };
    match p.command_code {
        None => 0u8.marshal(&mut out),
        Some(cc) => {
            1u8.marshal(&mut out);
            cc.marshal(&mut out);
        }
    }
    opt(&mut out, &p.cp_hash);
    opt(&mut out, &p.name_hash);
    (u8::from(p.is_password_needed) | (u8::from(p.is_auth_value_needed) << 1)).marshal(&mut out);
    match p.pcr_counter {
        None => 0u8.marshal(&mut out),
        Some(n) => {
            1u8.marshal(&mut out);
            n.marshal(&mut out);
        }
    }
    match p.timeout {
        None => 0u8.marshal(&mut out),
        Some(t) => {
            1u8.marshal(&mut out);
            t.marshal(&mut out);
        }
    }
    s.start_time.marshal(&mut out);
    match &s.audit_digest {
        None => 0u8.marshal(&mut out),
        Some(d) => {
            1u8.marshal(&mut out);
            put_sized(&mut out, d);
        }
    }
    out
}

/// Inverse of [`encode`].
pub fn decode(blob: &[u8]) -> Result<Session, Rc> {
    let mut r = Reader::new(blob);
    let kind = match r.u8()? {
        0 => SessionType::Hmac,
        1 => SessionType::Policy,
        3 => SessionType::Trial,
        _ => return Err(Rc::VALUE),
    };
    let hash = HashAlg::from_id(r.u16()?).ok_or(Rc::HASH)?;
    let nonce_tpm = r.sized(64)?.to_vec();
    let session_key = r.sized(64)?.to_vec();
    let symmetric = SymDef::unmarshal(&mut r)?;
    let bound = match r.u8()? {
        0 => None,
        1 => Some((r.sized(66)?.to_vec(), r.sized(64)?.to_vec())),
        _ => return Err(Rc::VALUE),
    };
    let digest = r.sized(64)?.to_vec();
    let flag = |r: &mut Reader<'_>| -> Result<bool, Rc> {
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Rc::VALUE),
        }
    };
    let command_code = if flag(&mut r)? { Some(r.u32()?) } else { None };
    let cp_hash = if flag(&mut r)? {
        Some(r.sized(64)?.to_vec())
    } else {
        None
    };
    let name_hash = if flag(&mut r)? {
        Some(r.sized(64)?.to_vec())
    } else {
        None
    };
    let bits = r.u8()?;
    let pcr_counter = if flag(&mut r)? { Some(r.u32()?) } else { None };
    let timeout = if flag(&mut r)? { Some(r.u64()?) } else { None };
    let start_time = r.u64()?;
    let audit_digest = if flag(&mut r)? {
        Some(r.sized(64)?.to_vec())
    } else {
        None
    };
    if !r.is_empty() {
        return Err(Rc::SIZE);
    }
    let policy = PolicyState {
        digest,
        command_code,
        cp_hash,
        name_hash,
        is_password_needed: bits & 1 != 0,
        is_auth_value_needed: bits & 2 != 0,
        pcr_counter,
        timeout,
    };
    Ok(Session {
        kind,
        hash,
        nonce_tpm,
        session_key,
        symmetric,
        bound,
        policy,
        start_time,
        audit_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST SP 800-38A F.3.13/F.3.14, CFB128-AES128: first two blocks.
    #[test]
    fn sp800_38a_cfb128_aes128() {
        let key = hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
            .unwrap();
        let mut data = plain.clone();
        aes_cfb(&key, &iv, &mut data, true);
        assert_eq!(
            hex::encode(&data),
            "3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b"
        );
        aes_cfb(&key, &iv, &mut data, false);
        assert_eq!(data, plain);
    }

    /// NIST SP 800-38A F.3.17, CFB128-AES256: first block.
    #[test]
    fn sp800_38a_cfb128_aes256() {
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
            .unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let mut data = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        aes_cfb(&key, &iv, &mut data, true);
        assert_eq!(hex::encode(&data), "dc7e84bfda79164b7ecd8486985d3860");
    }

    #[test]
    fn xor_parameter_encryption_round_trips() {
        let s = Session::start(
            SessionType::Hmac,
            HashAlg::Sha256,
            SymDef::Xor(HashAlg::Sha256),
            &[1; 16],
            vec![2; 32],
            None,
            b"salt",
        );
        let mut d = b"secret".to_vec();
        s.crypt_parameter(b"auth", &[3; 16], &[4; 32], &mut d, true);
        assert_ne!(d, b"secret");
        s.crypt_parameter(b"auth", &[3; 16], &[4; 32], &mut d, false);
        assert_eq!(d, b"secret");
    }
}
