//! A TPM 2.0 engine following the TCG TPM 2.0 Library specification (Part 1-3, rev 1.59).
//! It turns command bytes into response bytes and never touches files, sockets or clocks
//! other than the monotonic time it is handed: hosts (the `vtpm` crate) do all I/O.

#![forbid(unsafe_code)]

pub use engine::{StateError, Tpm, MAX_COMMAND_SIZE, MAX_RESPONSE_SIZE};

mod engine;
