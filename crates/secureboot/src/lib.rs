//! UEFI Secure Boot verification with the verdicts EDK2 firmware (OVMF) and shim reach on real
//! binaries: PE/COFF Authenticode digests, PKCS#7 signatures, EFI signature databases, SBAT,
//! OVMF variable stores and kernel module signatures. Bytes in, verdicts out: never any I/O.
//!
//! The one entry point for policy is [`verify_image`]; the parsers it is built from are public
//! for the virtual firmware and the attestation verifier, which need the same facts.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod authenticode;
pub mod authvar;
mod bytes;
mod der;
mod error;
pub mod esl;
pub mod guid;
pub mod hash;
pub mod module_sig;
pub mod pe;
pub mod policy;
mod rsa_public;
pub mod sbat;
pub mod sign;
#[cfg(test)]
mod test_keys;
pub mod varstore;
mod x509;

pub use error::Error;
pub use guid::Guid;
pub use hash::HashAlgorithm;
pub use policy::{
    verify_image, verify_image_with, Authority, DatabaseName, Databases, DenyReason, EntryRef,
    KnownDigests, Loader, ShimPolicy, Verdict,
};

/// Every fallible function of this crate returns this.
pub type Result<T, E = Error> = std::result::Result<T, E>;
