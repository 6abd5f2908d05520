//! A TPM 2.0 engine following the TCG TPM 2.0 Library specification (rev 1.59) and the PC
//! Client Platform TPM Profile. It turns command bytes into response bytes; it never touches
//! files or sockets (hosts such as the `vtpm` crate do all I/O and persist its state).

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

pub mod codec;
mod commands;
pub mod credential;
pub mod crypto;
mod drbg;
mod engine;
pub mod hash;
pub mod kdf;
pub mod keys;
mod loaded;
pub mod object;
mod pcr;
pub mod rc;
pub mod session;
mod state;
pub mod types;
mod volatile;

pub use engine::{Tpm, MAX_COMMAND_SIZE, MAX_RESPONSE_SIZE};
pub use rc::Rc;
pub use state::StateError;

/// The specification's name of an implemented command (e.g. "PCR_Extend"), for logs.
pub fn command_name(code: u32) -> Option<&'static str> {
    commands::lookup(code).map(|c| c.name)
}
