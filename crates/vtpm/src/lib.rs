//! vTPM instances and their transports.
//!
//! - [`StateDir`]: one TPM's permanent state in a locked directory, written
//!   crash-safely in a versioned, checksummed file ([`state`] documents the format).
//! - [`Instance`]: a [`tpm::Tpm`] with its state directory, power state and locality;
//!   persisted after every command that changes the permanent state.
//! - [`swtpm::serve`]: swtpm's `socket` protocol (data channel and control channel).
//! - [`mssim::serve`]: the Microsoft reference simulator's TCP protocol.
//! - [`options`]: swtpm's `key=value,...` option values parsed into typed config.
//! - [`endorsement`]: EKs and EK certificates provisioned into a newly manufactured
//!   TPM, issued by the host's manufacturer CA ([`ca`]).
//! - [`provision`]: `swtpm_setup`'s job: a new state directory with EK certificates,
//!   persistent EKs and the PCR banks asked for.
//! - [`stateblob`]: state blobs for snapshots and migration (permanent, volatile).
//! - [`key`]: keys for encrypting the state at rest ([`key::KeyProvider`], the host key file).
//!
//! Servers run on the calling thread over listeners bound beforehand, and return when
//! their [`StopHandle`] is triggered. [`swtpm::serve`] is one event loop over all of an
//! instance's connections (with `--terminate`, its one data connection has a thread of its
//! own); [`mssim::serve`] gives each connection a thread.

#![forbid(unsafe_code)]

pub mod ca;
pub mod endorsement;
pub mod host;
pub mod instance;
pub mod key;
pub mod log;
pub mod mssim;
mod net;
pub mod options;
pub mod provision;
pub mod setup;
pub mod state;
pub mod stateblob;
pub mod swtpm;
pub mod volatile;

pub use ca::ManufacturerCa;
pub use instance::{Endorsement, Instance, NewTpm, StartupType};
pub use log::Log;
pub use net::{Endpoint, Listener, StopHandle};
pub use state::{StateDir, StateDirError};

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] StateDirError),
    #[error("state file {path} was rejected by the TPM engine: {error}; refusing to start (the file was left untouched)")]
    Restore {
        path: PathBuf,
        error: tpm::StateError,
    },
    #[error("no entropy from the operating system: {0}")]
    Entropy(String),
    #[error("the TPM engine failed (it panicked); restart the instance")]
    Failed,
    #[error(transparent)]
    Option(#[from] options::OptionError),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("manufacturer CA: {0}")]
    Ca(#[from] ca::CaError),
    #[error(transparent)]
    Endorsement(#[from] endorsement::EndorsementError),
    #[error(transparent)]
    Volatile(#[from] volatile::VolatileError),
}
