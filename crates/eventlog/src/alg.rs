//! Digest algorithm identifiers (TPM_ALG_ID, TPM 2.0 Part 2 section 6.3 and the TCG
//! Algorithm Registry) and the hashes this crate can compute. Unknown identifiers are kept:
//! their digest sizes come from the log's Spec ID event.

use std::fmt;

/// TPM_ALG_ID of a hash algorithm (TCG Algorithm Registry, table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlgorithmId(pub u16);

impl AlgorithmId {
    pub const SHA1: Self = Self(0x0004);
    pub const SHA256: Self = Self(0x000B);
    pub const SHA384: Self = Self(0x000C);
    pub const SHA512: Self = Self(0x000D);
    pub const SM3_256: Self = Self(0x0012);
    pub const SHA3_256: Self = Self(0x0027);
    pub const SHA3_384: Self = Self(0x0028);
    pub const SHA3_512: Self = Self(0x0029);

    /// The name tpm2-tools prints, or `None` for an unregistered value.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::SHA1 => "sha1",
            Self::SHA256 => "sha256",
            Self::SHA384 => "sha384",
            Self::SHA512 => "sha512",
            Self::SM3_256 => "sm3_256",
            Self::SHA3_256 => "sha3_256",
            Self::SHA3_384 => "sha3_384",
            Self::SHA3_512 => "sha3_512",
            _ => return None,
        })
    }

    /// Digest size of the algorithms this crate knows, whatever a log claims.
    pub fn known_size(self) -> Option<usize> {
        match self {
            Self::SHA1 => Some(20),
            Self::SHA256 | Self::SM3_256 | Self::SHA3_256 => Some(32),
            Self::SHA384 | Self::SHA3_384 => Some(48),
            Self::SHA512 | Self::SHA3_512 => Some(64),
            _ => None,
        }
    }

    /// The hash of `data`, for the algorithms this crate can compute (SHA-1, SHA-2).
    pub fn hash(self, data: &[u8]) -> Option<Vec<u8>> {
        self.hash_parts(&[data])
    }

    /// The hash of the concatenation of `parts` (PCR extend: old value || digest).
    pub fn hash_parts(self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        fn run<D: digest::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        Some(match self {
            Self::SHA1 => run::<sha1::Sha1>(parts),
            Self::SHA256 => run::<sha2::Sha256>(parts),
            Self::SHA384 => run::<sha2::Sha384>(parts),
            Self::SHA512 => run::<sha2::Sha512>(parts),
            _ => return None,
        })
    }

    /// Parse a tpm2-tools name (`sha256`) or a hex value (`0x000b`).
    pub fn from_name(name: &str) -> Option<Self> {
        let known = [
            Self::SHA1,
            Self::SHA256,
            Self::SHA384,
            Self::SHA512,
            Self::SM3_256,
            Self::SHA3_256,
            Self::SHA3_384,
            Self::SHA3_512,
        ];
        known
            .into_iter()
            .find(|a| a.name() == Some(name))
            .or_else(|| {
                let hex = name.strip_prefix("0x")?;
                u16::from_str_radix(hex, 16).ok().map(Self)
            })
    }
}

impl fmt::Display for AlgorithmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "0x{:04x}", self.0),
        }
    }
}
