//! The crate's one error type. Every parser failure names what was being read and the byte
//! offset (in the input the caller handed over) where it went wrong; nothing here panics.

/// Why bytes could not be read, or a cryptographic operation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the structure did.
    #[error("{what}: truncated at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    /// A field holds a value the format does not allow.
    #[error("{what}: malformed at offset {offset}: {detail}")]
    Malformed {
        what: &'static str,
        offset: usize,
        detail: &'static str,
    },
    /// A count or length is above the cap this crate sets for it (untrusted input).
    #[error("{what}: {value} at offset {offset} exceeds the cap of {cap}")]
    TooLarge {
        what: &'static str,
        offset: usize,
        value: u64,
        cap: u64,
    },
    /// Well-formed, but a variant this crate does not implement.
    #[error("{what}: unsupported at offset {offset}: {detail}")]
    Unsupported {
        what: &'static str,
        offset: usize,
        detail: &'static str,
    },
    /// OpenSSL refused an input it was handed (its own message).
    #[error("{what}: {detail}")]
    Crypto { what: &'static str, detail: String },
}

impl Error {
    /// The byte offset the error refers to, when there is one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Error::Truncated { offset, .. }
            | Error::Malformed { offset, .. }
            | Error::TooLarge { offset, .. }
            | Error::Unsupported { offset, .. } => Some(*offset),
            Error::Crypto { .. } => None,
        }
    }

    pub(crate) fn malformed(what: &'static str, offset: usize, detail: &'static str) -> Self {
        Error::Malformed {
            what,
            offset,
            detail,
        }
    }

    pub(crate) fn crypto(what: &'static str, e: impl std::fmt::Display) -> Self {
        Error::Crypto {
            what,
            detail: e.to_string(),
        }
    }
}
