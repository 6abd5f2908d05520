//! STUB: replaced by the real engine.
/// Largest command the engine accepts (TPM_PT_MAX_COMMAND_SIZE).
pub const MAX_COMMAND_SIZE: usize = 4096;
/// Largest response the engine produces (TPM_PT_MAX_RESPONSE_SIZE).
pub const MAX_RESPONSE_SIZE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state blob is malformed at offset {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("state blob version {0} is not supported")]
    Version(u32),
}

/// One TPM 2.0 instance.
pub struct Tpm {
    started: bool,
    generation: u64,
}

impl Tpm {
    /// Manufacture a new TPM: fresh seeds drawn from `entropy` (host-provided, 32+ bytes).
    pub fn manufacture(_entropy: &[u8]) -> Tpm {
        Tpm { started: false, generation: 0 }
    }
    /// Restore a TPM from a blob produced by [`Tpm::permanent_state`].
    pub fn restore(_permanent: &[u8], _entropy: &[u8]) -> Result<Tpm, StateError> {
        Ok(Tpm { started: false, generation: 0 })
    }
    /// Everything a TPM keeps across power cycles (NV, seeds, Shutdown(STATE) data), versioned.
    pub fn permanent_state(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Changes whenever the permanent state changes; a host persists when it differs from
    /// the value it last saved.
    pub fn nv_generation(&self) -> u64 {
        self.generation
    }
    /// _TPM_Init: the platform reset signal. Volatile state is lost; TPM2_Startup is required next.
    pub fn init(&mut self) {
        self.started = false;
    }
    /// Whether TPM2_Startup has succeeded since the last [`Tpm::init`].
    pub fn is_started(&self) -> bool {
        self.started
    }
    /// Execute one command at `locality` (0-4) and return the response bytes. Never panics.
    pub fn execute(&mut self, _locality: u8, _command: &[u8]) -> Vec<u8> {
        vec![0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 0]
    }
    /// The TPM-established flag (set by a locality-4 hash sequence / H-CRTM).
    pub fn established(&self) -> bool {
        false
    }
    /// Clear the TPM-established flag; allowed from locality 3 or 4 only.
    pub fn reset_established(&mut self, locality: u8) -> bool {
        locality >= 3
    }
}
