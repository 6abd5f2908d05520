//! The node agent's TPM side: what it asks of the node's TPM to enroll and to attest.
//! The TPM client works over any [`Transport`]; [`transport`] has the ones a real node uses
//! (/dev/tpmrm0, a simulator's TCP or Unix socket). No network I/O towards the verifier:
//! the binary (`trustlaunch agent`) or the embedded node host wires that.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod tpm;
pub mod transport;

pub use crate::tpm::{
    ak_template, Client, Evidence, Identity, LoadedKey, Quote, TpmError, Transport,
};
pub use crate::transport::{Connection, TpmAddress};
