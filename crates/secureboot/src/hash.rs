//! The digest algorithms Secure Boot uses, with their DER object identifiers and EFI signature
//! types, behind one incremental hasher. Never a choice of algorithm by guessing from a length.

use crate::guid::{self, Guid};
use digest::DynDigest;

/// A digest algorithm of Authenticode signatures and EFI signature lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// The algorithms an Authenticode signature may use (EDK2's mHash table, minus SHA-224,
    /// which EDK2 lists as unsupported).
    pub const AUTHENTICODE: [HashAlgorithm; 4] =
        [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];
    /// Every algorithm an EFI signature list may name.
    pub const ALL: [HashAlgorithm; 5] = [
        Self::Sha1,
        Self::Sha224,
        Self::Sha256,
        Self::Sha384,
        Self::Sha512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// The DER contents of the algorithm's OBJECT IDENTIFIER (RFC 3279, RFC 5754).
    pub fn oid(self) -> &'static [u8] {
        match self {
            Self::Sha1 => &[0x2b, 0x0e, 0x03, 0x02, 0x1a],
            Self::Sha224 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04],
            Self::Sha256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
            Self::Sha384 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02],
            Self::Sha512 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03],
        }
    }

    pub fn from_oid(oid: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == oid)
    }

    /// The EFI_SIGNATURE_LIST type of an image hash made with this algorithm (UEFI 32.4.1).
    pub fn cert_guid(self) -> Guid {
        match self {
            Self::Sha1 => guid::EFI_CERT_SHA1_GUID,
            Self::Sha224 => guid::EFI_CERT_SHA224_GUID,
            Self::Sha256 => guid::EFI_CERT_SHA256_GUID,
            Self::Sha384 => guid::EFI_CERT_SHA384_GUID,
            Self::Sha512 => guid::EFI_CERT_SHA512_GUID,
        }
    }

    pub fn hasher(self) -> Box<dyn DynDigest> {
        match self {
            Self::Sha1 => Box::new(sha1::Sha1::default()),
            Self::Sha224 => Box::new(sha2::Sha224::default()),
            Self::Sha256 => Box::new(sha2::Sha256::default()),
            Self::Sha384 => Box::new(sha2::Sha384::default()),
            Self::Sha512 => Box::new(sha2::Sha512::default()),
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finalize().into_vec()
    }
}

impl std::fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
