//! The attestation verifier's core: checks a TPM 2.0 quote (the TPMS_ATTEST and
//! TPMT_SIGNATURE that TPM2_Quote returns) against an attestation key, the verifier's nonce
//! and the PCR values the verifier believes, as the TCG TPM 2.0 Library specification
//! (Part 2, 10.12 and 11.3; Part 3, 18.4) defines them.
//!
//! No I/O: callers read the files (`tpm2_quote -m/-s/-o`, `tpm2_createak -u`, PEM keys) and
//! pass their bytes.
//!
//! ```no_run
//! # fn main() -> Result<(), attest::Error> {
//! # let (ak_pub, msg, sig, pcrs_file, nonce) = (vec![], vec![], vec![], vec![], vec![]);
//! let ak = attest::AkPublic::from_tpm2b_public(&ak_pub)?; // tpm2_createak -u ak.pub
//! let pcrs = attest::PcrValues::from_tpm2_tools(&pcrs_file)?; // tpm2_quote -o q.pcrs
//! let quote = attest::verify_quote(&ak, &msg, &sig, &nonce, &pcrs)?; // -m q.msg -s q.sig
//! println!("quoted {:?} at clock {}", quote.selection, quote.clock);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod ak;
pub mod appraisal;
pub mod enroll;
mod error;
mod pcrs;
pub mod policy;
mod quote;
pub mod token;
mod wire;

pub use ak::AkPublic;
pub use error::{Error, QuoteError};
pub use pcrs::{tpm2_tools_layout, PcrValues};
pub use quote::{quoted_nonce, verify_quote, VerifiedQuote, TPM_ST_ATTEST_QUOTE};
pub use tpm::hash::HashAlg;
