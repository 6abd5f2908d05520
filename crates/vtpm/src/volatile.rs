//! The engine's volatile state (what _TPM_Init discards: PCRs, loaded objects and
//! sessions, pcrUpdateCounter, hierarchy enables, TPMS_TIME_INFO.time, ...), the one
//! piece of a running TPM that the permanent state does not carry. QEMU snapshots and
//! live migration move it with CMD_GET_STATEBLOB / CMD_SET_STATEBLOB (type volatile).
//!
//! This is the only place that calls the engine for it: [`tpm::Tpm::volatile_state`]
//! and [`tpm::Tpm::restore_volatile`] (the engine's own format, versioned; on error the
//! engine changes nothing). Restoring happens right after `init()`, so a rejected blob
//! leaves the TPM as after a plain _TPM_Init.
//!
//! [`SUPPORTED`] says whether the engine can do this: while it is false, [`save`] and
//! [`restore`] fail with [`VolatileError::Unsupported`] and the swtpm server does not
//! advertise state blobs (QEMU then blocks migration up front instead of failing one).

use tpm::Tpm;

/// Whether this build's engine can save and restore its volatile state.
pub const SUPPORTED: bool = true;

/// Why the volatile state could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum VolatileError {
    #[error(
        "volatile TPM state is not available: the TPM engine in this build cannot export or \
         import it (permanent state blobs work)"
    )]
    Unsupported,
    #[error("the TPM engine rejected the volatile state: {0}")]
    Rejected(tpm::StateError),
}

/// The engine's volatile state (see the module documentation).
pub fn save(tpm: &Tpm) -> Result<Vec<u8>, VolatileError> {
    Ok(tpm.volatile_state())
}

/// Restore a volatile state made by [`save`], right after `tpm.init()`.
pub fn restore(tpm: &mut Tpm, blob: &[u8]) -> Result<(), VolatileError> {
    tpm.restore_volatile(blob).map_err(VolatileError::Rejected)
}
