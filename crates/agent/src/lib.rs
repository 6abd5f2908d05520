//! The node agent's TPM side: what it asks of the node's TPM to enroll and to attest.
//! Transport-agnostic and free of network I/O: the binary wires a transport (in-process
//! vTPM, swtpm over TCP, /dev/tpmrm0) and a way to reach the verifier.

#![forbid(unsafe_code)]

pub mod tpm;

pub use crate::tpm::{ak_template, Client, LoadedKey, Quote, TpmError, Transport};
