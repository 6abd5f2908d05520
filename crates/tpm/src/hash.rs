//! The hash algorithms this TPM implements (SHA-1, SHA-256, SHA-384, SHA-512), one-shot and
//! streaming, plus HMAC, over RustCrypto's implementations.

use digest::Digest;
use hmac::{Hmac, Mac};

use crate::types::alg;

/// A hash algorithm the TPM implements (TPMI_ALG_HASH less TPM_ALG_NULL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// All implemented algorithms, in TPM_ALG_ID order.
    pub const ALL: [HashAlg; 4] = [
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    pub fn from_id(id: u16) -> Option<HashAlg> {
        match id {
            alg::SHA1 => Some(HashAlg::Sha1),
            alg::SHA256 => Some(HashAlg::Sha256),
            alg::SHA384 => Some(HashAlg::Sha384),
            alg::SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    pub fn id(self) -> u16 {
        match self {
            HashAlg::Sha1 => alg::SHA1,
            HashAlg::Sha256 => alg::SHA256,
            HashAlg::Sha384 => alg::SHA384,
            HashAlg::Sha512 => alg::SHA512,
        }
    }

    /// Digest size in octets.
    pub fn size(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// Index of this algorithm in [`HashAlg::ALL`].
    pub fn index(self) -> usize {
        match self {
            HashAlg::Sha1 => 0,
            HashAlg::Sha256 => 1,
            HashAlg::Sha384 => 2,
            HashAlg::Sha512 => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// H(parts[0] || parts[1] || ...).
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut h = Hasher::new(self);
        for p in parts {
            h.update(p);
        }
        h.finish()
    }

    /// HMAC_H(key, parts[0] || parts[1] || ...).
    pub fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            // HMAC accepts keys of any length, so construction cannot fail.
            match <M as hmac::digest::KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    for p in parts {
                        m.update(p);
                    }
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        match self {
            HashAlg::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
            HashAlg::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
            HashAlg::Sha384 => run::<Hmac<sha2::Sha384>>(key, parts),
            HashAlg::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
        }
    }
}

/// A running hash (for hash and event sequences).
#[derive(Clone)]
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(alg: HashAlg) -> Hasher {
        match alg {
            HashAlg::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            HashAlg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlg::Sha384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlg::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn alg(&self) -> HashAlg {
        match self {
            Hasher::Sha1(_) => HashAlg::Sha1,
            Hasher::Sha256(_) => HashAlg::Sha256,
            Hasher::Sha384(_) => HashAlg::Sha384,
            Hasher::Sha512(_) => HashAlg::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips_180_vectors() {
        // FIPS 180-2 Appendix examples: "abc".
        assert_eq!(
            hex::encode(HashAlg::Sha1.digest(&[b"abc"])),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex::encode(HashAlg::Sha256.digest(&[b"a", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rfc4231_hmac_sha256_case_2() {
        let mac = HashAlg::Sha256.hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
