//! State blobs: a running TPM's state taken out of the process and put into another, as
//! QEMU does for snapshots and live migration (swtpm's CMD_GET_STATEBLOB and
//! CMD_SET_STATEBLOB) and `swtpm_ioctl --save/--load` does by hand.
//!
//! | type | name        | contents                                                        |
//! |-----:|-------------|-----------------------------------------------------------------|
//! | 1    | `permanent` | exactly a state file ([`crate::state`]): NV, seeds, hierarchy    |
//! |      |             | and DA state, clock, TPM2_Shutdown data                          |
//! | 2    | `volatile`  | the engine's volatile state ([`crate::volatile`]) in the same   |
//! |      |             | envelope with magic `TLVTPMVO`                                   |
//! | 3    | `savestate` | always empty: what TPM2_Shutdown(STATE) saves is part of the    |
//! |      |             | permanent state (as with libtpms' TPM 2.0)                       |
//!
//! A saved permanent blob can therefore be dropped into a state directory as its state
//! file. Blobs are never encrypted by this host (no migration key exists), and a blob
//! flagged as encrypted is refused.
//!
//! Rules, as swtpm's: blobs are read while the TPM is powered on and written while it is
//! powered off (CMD_STOP first). A permanent blob replaces the TPM at once and is saved to
//! the state directory. A volatile blob is kept until the next power-on (CMD_INIT), which
//! then resumes the TPM from it, started, without TPM2_Startup; it is used once.

use crate::state::FormatError;
use crate::volatile::VolatileError;

/// A state blob's type (`PTM_BLOB_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobType {
    Permanent,
    Volatile,
    SaveState,
}

impl BlobType {
    /// The type for its protocol number.
    pub fn from_u32(v: u32) -> Option<BlobType> {
        match v {
            1 => Some(BlobType::Permanent),
            2 => Some(BlobType::Volatile),
            3 => Some(BlobType::SaveState),
            _ => None,
        }
    }

    /// The protocol number.
    pub fn number(self) -> u32 {
        match self {
            BlobType::Permanent => 1,
            BlobType::Volatile => 2,
            BlobType::SaveState => 3,
        }
    }

    /// The name `swtpm_ioctl` uses.
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Permanent => "permanent",
            BlobType::Volatile => "volatile",
            BlobType::SaveState => "savestate",
        }
    }
}

/// Why a state blob could not be produced or accepted.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the TPM is powered off; state blobs are read from a running TPM")]
    NotRunning,
    #[error("the TPM is running; stop it (CMD_STOP) before setting state blobs")]
    Running,
    #[error("the {} blob is malformed: {error}", .kind.name())]
    Format { error: FormatError, kind: BlobType },
    #[error(
        "the blob is flagged as encrypted, but this host has no migration key (it never \
         encrypts state blobs)"
    )]
    Encrypted,
    #[error("an empty permanent blob would delete the TPM; refused")]
    EmptyPermanent,
    #[error(
        "a non-empty savestate blob was given: this TPM keeps TPM2_Shutdown(STATE) data in \
         its permanent state, so its savestate blobs are always empty"
    )]
    SaveState,
    #[error("the TPM engine rejected the permanent state: {0}")]
    Rejected(tpm::StateError),
    #[error(transparent)]
    Volatile(#[from] VolatileError),
    #[error("{0}")]
    Store(crate::state::StateDirError),
    #[error("no entropy from the operating system: {0}")]
    Entropy(String),
    #[error("the TPM engine failed (it panicked); restart the instance")]
    Failed,
}
