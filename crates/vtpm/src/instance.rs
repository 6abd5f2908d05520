//! One vTPM instance: the engine, its state directory, the platform's view of it
//! (powered on or not, the current locality) and the persistence policy.

use crate::ca::ManufacturerCa;
use crate::endorsement;
use crate::log::Log;
use crate::state::{self, StateDir};
use crate::stateblob::{BlobError, BlobType};
use crate::volatile;
use crate::Error;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tpm::Tpm;

/// TPM_ST_NO_SESSIONS.
pub(crate) const TPM_ST_NO_SESSIONS: u16 = 0x8001;
/// TPM_RC_FAILURE: the TPM is not operational (powered off, failed, or cannot persist).
pub const TPM_RC_FAILURE: u32 = 0x101;
/// TPM_RC_COMMAND_SIZE: the command size is inconsistent or out of range.
pub const TPM_RC_COMMAND_SIZE: u32 = 0x142;

/// A complete 10-byte TPM 2.0 error response carrying `rc`.
pub fn error_response(rc: u32) -> Vec<u8> {
    let mut r = Vec::with_capacity(10);
    r.extend_from_slice(&TPM_ST_NO_SESSIONS.to_be_bytes());
    r.extend_from_slice(&10u32.to_be_bytes());
    r.extend_from_slice(&rc.to_be_bytes());
    r
}

/// The response code of a response, if it is at least a header long.
pub fn response_code(response: &[u8]) -> Option<u32> {
    let b = response.get(6..10)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// TPM2_Startup's argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupType {
    /// TPM_SU_CLEAR.
    Clear,
    /// TPM_SU_STATE.
    State,
}

impl StartupType {
    /// The complete TPM2_Startup command.
    pub fn command(self) -> [u8; 12] {
        let su: u8 = match self {
            StartupType::Clear => 0,
            StartupType::State => 1,
        };
        [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, su]
    }
}

/// Localities a host may select.
pub const MAX_LOCALITY: u8 = 4;

struct Inner {
    tpm: Tpm,
    dir: StateDir,
    /// `nv_generation()` of what is on disk (`None`: a manufactured TPM not saved yet).
    saved_generation: Option<u64>,
    /// The last attempt to persist failed: commands are refused until a retry succeeds.
    persist_failed: bool,
    /// The engine panicked: its state is not trusted any more (nothing is persisted).
    failed: bool,
    /// Powered on (swtpm: INIT received or not-need-init; mssim: POWER_ON).
    running: bool,
    /// The locality set through the control channel.
    locality: u8,
    /// A volatile state set while powered off, resumed from at the next power-on.
    pending_volatile: Option<Vec<u8>>,
}

/// A vTPM: the engine behind a mutex, persisted to its state directory before any
/// response that could reveal a change (see [`reveals_nothing`]). Transports read a whole
/// request before calling in, so the lock is only held while the engine executes and
/// the state is written.
pub struct Instance {
    inner: Mutex<Inner>,
    log: Log,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

/// How a TPM manufactured by [`Instance::open_with`] is endorsed.
#[derive(Debug, Clone, Default)]
pub enum Endorsement {
    /// No EKs provisioned and no EK certificates in NV (a bare TPM, as `swtpm` without
    /// `swtpm_setup`).
    #[default]
    None,
    /// RSA-2048 and ECC P-256 EK certificates from this CA ([`crate::endorsement`]).
    Ca(Arc<ManufacturerCa>),
    /// As `Ca`, with the CA kept in this directory, loaded (or created) only when a TPM
    /// is manufactured: restoring a TPM does not touch it.
    CaDir(PathBuf),
    /// Only the ECC P-256 EK and its certificate (no RSA key generation at manufacture).
    CaEcc(Arc<ManufacturerCa>),
}

/// The CA an [`Endorsement`] names, borrowed or loaded from its directory.
pub(crate) enum EndorsingCa<'a> {
    Borrowed(&'a ManufacturerCa),
    Loaded(Box<ManufacturerCa>),
}

impl std::ops::Deref for EndorsingCa<'_> {
    type Target = ManufacturerCa;
    fn deref(&self) -> &ManufacturerCa {
        match self {
            EndorsingCa::Borrowed(ca) => ca,
            EndorsingCa::Loaded(ca) => ca,
        }
    }
}

impl Endorsement {
    /// The CA and the EKs to provision (None for a bare TPM).
    pub(crate) fn resolve(
        &self,
    ) -> Result<Option<(EndorsingCa<'_>, &'static [endorsement::EkKind])>, crate::ca::CaError> {
        Ok(match self {
            Endorsement::None => None,
            Endorsement::Ca(ca) => Some((EndorsingCa::Borrowed(ca), &endorsement::EkKind::ALL)),
            Endorsement::CaEcc(ca) => {
                Some((EndorsingCa::Borrowed(ca), &[endorsement::EkKind::EccP256]))
            }
            Endorsement::CaDir(dir) => Some((
                EndorsingCa::Loaded(Box::new(ManufacturerCa::load_or_create(dir)?)),
                &endorsement::EkKind::ALL,
            )),
        })
    }
}

/// When [`Instance::open_with_first_save`] writes a newly manufactured TPM's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstSave {
    /// Before the instance is returned (as swtpm writes its state at start).
    #[default]
    AtOnce,
    /// Before the first response that could reveal it (the rule every later change
    /// follows, [`reveals_nothing`]): until then nothing derived from the new seeds has
    /// left the process, so a crash that loses the unsaved TPM loses nothing anyone saw,
    /// and the next start manufactures afresh. The vTPM host creates instances so: a
    /// create then costs no disk write.
    BeforeReveal,
}

/// TPM_CC values of the commands whose responses reveal nothing of the TPM's persistent
/// state, so a change they make (TPM2_Startup advances the reset count and marks the
/// shutdown unorderly) may stay unsaved until a later response could reveal it:
/// Startup, SelfTest, IncrementalSelfTest, GetTestResult, GetRandom and StirRandom (the
/// random generator is reseeded from the host at every start), Hash, and PCR_Read,
/// PCR_Extend and PCR_Event (PCRs are volatile). Every other response waits until the
/// state it follows is on disk, so whatever a VM reports elsewhere (an EK, a quote with
/// its reset count, an NV value) survives a crash of the host; what a crash loses was
/// never seen. A boot sends dozens of extends; none of them waits for the disk.
pub fn reveals_nothing(command: &[u8]) -> bool {
    const CODES: [u32; 10] = [
        0x144, // Startup
        0x143, // SelfTest
        0x142, // IncrementalSelfTest
        0x17C, // GetTestResult
        0x17B, // GetRandom
        0x146, // StirRandom
        0x17D, // Hash
        0x17E, // PCR_Read
        0x182, // PCR_Extend
        0x13C, // PCR_Event
    ];
    command
        .get(6..10)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .is_some_and(|cc| CODES.contains(&cc))
}

fn entropy() -> Result<[u8; 32], Error> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| Error::Entropy(e.to_string()))?;
    Ok(seed)
}

/// Provision EKs and EK certificates into a newly manufactured TPM (which is left
/// powered off after TPM2_Shutdown(CLEAR)).
fn endorse(tpm: &mut Tpm, endorsement: &Endorsement, log: &Log) -> Result<(), Error> {
    let Some((ca, kinds)) = endorsement.resolve()? else {
        return Ok(());
    };
    let started = Instant::now();
    let endorsed = catch_unwind(AssertUnwindSafe(|| {
        endorsement::provision_kinds(tpm, &ca, kinds)
    }))
    .map_err(|_| Error::Failed)??;
    let indices: Vec<String> = endorsed
        .eks
        .iter()
        .map(|ek| format!("{:?} at {:#010x}", ek.kind, ek.kind.nv_index()))
        .collect();
    log.info(format_args!(
        "endorsed: EK certificates ({}) issued by \"{}\" in {} ms",
        indices.join(", "),
        ca.subject(),
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// A TPM manufactured ahead of the instance that will hold it, unendorsed and never
/// powered on: [`Instance::open_prepared`] takes it instead of manufacturing one while a
/// create waits (the vTPM host keeps some with its prepared directories).
pub struct NewTpm(Tpm);

impl NewTpm {
    /// Manufacture a TPM with fresh seeds.
    pub fn manufacture() -> Result<NewTpm, Error> {
        Ok(NewTpm(Tpm::manufacture(&entropy()?)))
    }
}

impl std::fmt::Debug for NewTpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewTpm")
    }
}

impl Instance {
    /// Restore the TPM from `dir`, or manufacture a new (unendorsed) one and persist it at
    /// once if the directory holds no state. See [`Instance::open_with`].
    pub fn open(dir: StateDir, log: Log) -> Result<Instance, Error> {
        Self::open_with(dir, log, &Endorsement::None)
    }

    /// Restore the TPM from `dir`, or manufacture a new one, endorse it as `endorsement`
    /// says, and persist it at once if the directory holds no state. A corrupt or
    /// unreadable state file is an error: the TPM is never silently reset. Endorsement
    /// happens before the first save, so a failure leaves no state behind (the next
    /// start manufactures afresh). The instance starts powered off.
    pub fn open_with(
        dir: StateDir,
        log: Log,
        endorsement: &Endorsement,
    ) -> Result<Instance, Error> {
        Self::open_with_first_save(dir, log, endorsement, FirstSave::AtOnce)
    }

    /// As [`Instance::open_with`], writing a newly manufactured TPM's state when
    /// `first_save` says.
    pub fn open_with_first_save(
        dir: StateDir,
        log: Log,
        endorsement: &Endorsement,
        first_save: FirstSave,
    ) -> Result<Instance, Error> {
        Self::open_prepared(dir, log, endorsement, first_save, None)
    }

    /// As [`Instance::open_with_first_save`], or, given `new`, with `new` (then endorsed)
    /// as the TPM of `dir`, which the caller knows to be a new state directory (one it made
    /// and has held locked since): it is not read.
    pub fn open_prepared(
        dir: StateDir,
        log: Log,
        endorsement: &Endorsement,
        first_save: FirstSave,
        new: Option<NewTpm>,
    ) -> Result<Instance, Error> {
        let saved = match new {
            Some(_) => None,
            None => dir.load()?,
        };
        let (tpm, fresh) = match saved {
            Some(blob) => {
                let tpm = Tpm::restore(&blob, &entropy()?).map_err(|error| Error::Restore {
                    path: dir.state_file(),
                    error,
                })?;
                log.info(format_args!(
                    "restored TPM state from {}",
                    dir.state_file().display()
                ));
                (tpm, false)
            }
            None => {
                let mut tpm = match new {
                    Some(NewTpm(tpm)) => {
                        log.info(format_args!(
                            "a new TPM (manufactured ahead) in {}",
                            dir.path().display()
                        ));
                        tpm
                    }
                    None => {
                        log.info(format_args!(
                            "manufacturing a new TPM in {}",
                            dir.path().display()
                        ));
                        Tpm::manufacture(&entropy()?)
                    }
                };
                endorse(&mut tpm, endorsement, &log)?;
                (tpm, true)
            }
        };
        let mut saved_generation = Some(tpm.nv_generation());
        if fresh {
            match first_save {
                FirstSave::AtOnce => dir.store(&tpm.permanent_state())?,
                FirstSave::BeforeReveal => saved_generation = None,
            }
        } else if dir.needs_encryption()? {
            // A plaintext state opened with a key is encrypted at once, twice so that
            // the previous copy (`.prev`) is no longer the plaintext either.
            let permanent = tpm.permanent_state();
            dir.store(&permanent)?;
            dir.store(&permanent)?;
            log.info(format_args!(
                "state file {} was not encrypted: encrypted it with the key given",
                dir.state_file().display()
            ));
        }
        Ok(Instance {
            inner: Mutex::new(Inner {
                tpm,
                dir,
                saved_generation,
                persist_failed: false,
                failed: false,
                running: false,
                locality: 0,
                pending_volatile: None,
            }),
            log,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held is caught inside (`failed` is set), so a
        // poisoned lock still holds consistent bookkeeping.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The log this instance reports to.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Execute one command at `locality`, or at the locality selected through
    /// [`Instance::set_locality`] if `None`. Always returns a complete response:
    /// TPM_RC_FAILURE if the TPM is powered off, failed, or its state cannot be saved.
    pub fn execute(&self, locality: Option<u8>, command: &[u8]) -> Vec<u8> {
        let mut g = self.lock();
        if !g.running || g.failed {
            return error_response(TPM_RC_FAILURE);
        }
        if g.persist_failed && self.persist_locked(&mut g).is_err() {
            return error_response(TPM_RC_FAILURE);
        }
        let loc = locality.unwrap_or(g.locality);
        let inner = &mut *g;
        let response = match catch_unwind(AssertUnwindSafe(|| inner.tpm.execute(loc, command))) {
            Ok(r) => r,
            Err(_) => {
                self.log
                    .error("the TPM engine panicked; the instance is failed until restart");
                inner.failed = true;
                return error_response(TPM_RC_FAILURE);
            }
        };
        // The response is returned even if saving fails: the command has taken effect
        // in memory. Later commands are refused until the state is on disk again.
        if !reveals_nothing(command) {
            let _ = self.persist_locked(&mut g);
        }
        response
    }

    fn persist_locked(&self, g: &mut Inner) -> Result<(), Error> {
        if g.failed {
            return Err(Error::Failed);
        }
        let generation = g.tpm.nv_generation();
        if g.saved_generation == Some(generation) && !g.persist_failed {
            return Ok(());
        }
        match g.dir.store(&g.tpm.permanent_state()) {
            Ok(()) => {
                g.saved_generation = Some(generation);
                if g.persist_failed {
                    self.log.info("TPM state saved again");
                }
                g.persist_failed = false;
                Ok(())
            }
            Err(e) => {
                self.log
                    .error(format_args!("could not save TPM state: {e}"));
                g.persist_failed = true;
                Err(Error::State(e))
            }
        }
    }

    /// Save the permanent state if it changed since it was last saved (or was never
    /// saved).
    pub fn persist(&self) -> Result<(), Error> {
        let mut g = self.lock();
        self.persist_locked(&mut g)
    }

    /// _TPM_Init: reset the TPM (TPM2_Startup is required next) and mark it powered on.
    /// If a volatile state blob was set while powered off, the TPM resumes from it
    /// instead (started as it was saved; the blob is used once). Fails if the engine has
    /// failed earlier (or fails now), or if it rejects the volatile state: the TPM then
    /// stays powered off.
    pub fn init(&self) -> Result<(), Error> {
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.failed {
            return Err(Error::Failed);
        }
        if catch_unwind(AssertUnwindSafe(|| inner.tpm.init())).is_err() {
            self.log
                .error("the TPM engine panicked in _TPM_Init; the instance is failed");
            inner.failed = true;
            return Err(Error::Failed);
        }
        if let Some(blob) = inner.pending_volatile.take() {
            let restored = catch_unwind(AssertUnwindSafe(|| {
                volatile::restore(&mut inner.tpm, &blob)
            }));
            match restored {
                Ok(Ok(())) => self.log.info(format_args!(
                    "resumed from a volatile state blob ({} bytes)",
                    blob.len()
                )),
                Ok(Err(e)) => {
                    self.log
                        .error(format_args!("cannot resume from the volatile state: {e}"));
                    inner.running = false;
                    if catch_unwind(AssertUnwindSafe(|| inner.tpm.init())).is_err() {
                        inner.failed = true;
                    }
                    return Err(Error::Volatile(e));
                }
                Err(_) => {
                    self.log.error(
                        "the TPM engine panicked restoring volatile state; the instance is failed",
                    );
                    inner.failed = true;
                    inner.running = false;
                    return Err(Error::Failed);
                }
            }
        }
        // _TPM_Init answers nothing: what it changed is saved before the next revealing
        // response (see `reveals_nothing`).
        inner.running = true;
        Ok(())
    }

    /// A state blob of the running TPM ([`crate::stateblob`] describes them).
    pub fn get_state_blob(&self, ty: BlobType) -> Result<Vec<u8>, BlobError> {
        let mut g = self.lock();
        if !g.running {
            return Err(BlobError::NotRunning);
        }
        if g.failed {
            return Err(BlobError::Failed);
        }
        // A blob reveals everything: what it holds is on disk first.
        self.persist_locked(&mut g).map_err(|e| match e {
            Error::State(e) => BlobError::Store(e),
            _ => BlobError::Failed,
        })?;
        let tpm = &g.tpm;
        let blob = catch_unwind(AssertUnwindSafe(|| match ty {
            BlobType::Permanent => Ok(state::encode(&tpm.permanent_state())),
            BlobType::Volatile => {
                volatile::save(tpm).map(|payload| state::encode_volatile(&payload))
            }
            BlobType::SaveState => Ok(Vec::new()),
        }))
        .map_err(|_| BlobError::Failed)?;
        Ok(blob?)
    }

    /// Set a state blob while the TPM is powered off: a permanent blob replaces the TPM
    /// (and is saved to the state directory at once), a volatile blob is resumed from at
    /// the next power-on, an empty volatile blob cancels that. `encrypted` is the
    /// sender's "blob is encrypted" flag.
    pub fn set_state_blob(
        &self,
        ty: BlobType,
        blob: &[u8],
        encrypted: bool,
    ) -> Result<(), BlobError> {
        let mut g = self.lock();
        if g.running {
            return Err(BlobError::Running);
        }
        if encrypted {
            return Err(BlobError::Encrypted);
        }
        let format = |e: state::FormatError| match e {
            state::FormatError::Encrypted => BlobError::Encrypted,
            error => BlobError::Format { error, kind: ty },
        };
        match ty {
            BlobType::Permanent => {
                if blob.is_empty() {
                    return Err(BlobError::EmptyPermanent);
                }
                let payload = state::decode(blob).map_err(format)?;
                let seed = entropy().map_err(|e| BlobError::Entropy(e.to_string()))?;
                let tpm = catch_unwind(AssertUnwindSafe(|| Tpm::restore(payload, &seed)))
                    .map_err(|_| BlobError::Failed)?
                    .map_err(BlobError::Rejected)?;
                g.dir.store(payload).map_err(BlobError::Store)?;
                g.saved_generation = Some(tpm.nv_generation());
                g.tpm = tpm;
                g.persist_failed = false;
                g.failed = false;
                self.log.info(format_args!(
                    "permanent state replaced from a state blob ({} bytes) and saved",
                    blob.len()
                ));
            }
            BlobType::Volatile => {
                if blob.is_empty() {
                    g.pending_volatile = None;
                    return Ok(());
                }
                let payload = state::decode_volatile(blob).map_err(format)?;
                if !volatile::SUPPORTED {
                    return Err(BlobError::Volatile(volatile::VolatileError::Unsupported));
                }
                g.pending_volatile = Some(payload.to_vec());
                self.log.info(format_args!(
                    "volatile state blob ({} bytes) set; the next power-on resumes from it",
                    blob.len()
                ));
            }
            BlobType::SaveState => {
                if !blob.is_empty() {
                    return Err(BlobError::SaveState);
                }
            }
        }
        Ok(())
    }

    /// Power on if powered off (then _TPM_Init); a no-op when already on.
    /// Returns whether the TPM was powered on by this call.
    pub fn power_on(&self) -> Result<bool, Error> {
        if self.is_running() {
            return Ok(false);
        }
        self.init()?;
        Ok(true)
    }

    /// Power off: save the state and refuse commands until the next power on / INIT.
    pub fn power_off(&self) -> Result<(), Error> {
        let mut g = self.lock();
        g.running = false;
        self.persist_locked(&mut g)
    }

    /// Whether the TPM is powered on.
    pub fn is_running(&self) -> bool {
        self.lock().running
    }

    /// Send TPM2_Startup(`kind`) at locality 0 and return its response code.
    pub fn startup(&self, kind: StartupType) -> u32 {
        let response = self.execute(Some(0), &kind.command());
        response_code(&response).unwrap_or(TPM_RC_FAILURE)
    }

    /// The locality used for commands that do not carry one.
    pub fn locality(&self) -> u8 {
        self.lock().locality
    }

    /// Adopt the transport's I/O buffer size (CMD_SET_BUFFERSIZE; 0 queries) and return the
    /// size in force: the engine refuses larger commands and reports it as its maximum
    /// command and response size.
    pub fn set_io_buffer_size(&self, requested: usize) -> usize {
        self.lock().tpm.set_io_buffer_size(requested)
    }

    /// Select the locality for commands that do not carry one. Returns false (and
    /// changes nothing) if `locality` is above 4.
    pub fn set_locality(&self, locality: u8) -> bool {
        if locality > MAX_LOCALITY {
            return false;
        }
        self.lock().locality = locality;
        true
    }

    /// The TPM-established flag.
    pub fn established(&self) -> bool {
        self.lock().tpm.established()
    }

    /// Clear the TPM-established flag as if from `locality`; false if refused.
    pub fn reset_established(&self, locality: u8) -> bool {
        let mut g = self.lock();
        let inner = &mut *g;
        let ok = match catch_unwind(AssertUnwindSafe(|| inner.tpm.reset_established(locality))) {
            Ok(ok) => ok,
            Err(_) => {
                self.log
                    .error("the TPM engine panicked; the instance is failed until restart");
                inner.failed = true;
                return false;
            }
        };
        let _ = self.persist_locked(&mut g);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateDirError;

    fn instance(dir: &std::path::Path) -> Instance {
        Instance::open(StateDir::open(dir).expect("statedir"), Log::none()).expect("instance")
    }

    #[test]
    fn fresh_instance_is_persisted_at_once_and_powered_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inst = instance(dir.path());
        assert!(dir.path().join(crate::state::STATE_FILE).exists());
        assert!(!inst.is_running());
        assert_eq!(
            inst.execute(None, &StartupType::Clear.command()),
            error_response(TPM_RC_FAILURE)
        );
        inst.init().expect("init");
        assert!(inst.is_running());
        assert_eq!(inst.execute(None, &StartupType::Clear.command()).len(), 10);
        assert!(!inst.power_on().expect("on"), "already on");
        inst.power_off().expect("power off");
        assert!(!inst.is_running());
        assert!(inst.power_on().expect("on"));
    }

    /// TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_FIXED, 1): a revealing command.
    const GET_CAPABILITY: [u8; 22] = [
        0x80, 0x01, 0, 0, 0, 22, 0, 0, 0x01, 0x7a, 0, 0, 0, 6, 0, 0, 1, 0, 0, 0, 0, 1,
    ];
    /// TPM2_GetRandom(8).
    const GET_RANDOM: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 8];

    fn deferred(dir: &std::path::Path) -> Instance {
        Instance::open_with_first_save(
            StateDir::open(dir).expect("statedir"),
            Log::none(),
            &Endorsement::None,
            FirstSave::BeforeReveal,
        )
        .expect("instance")
    }

    /// A deferred instance, powered on and started.
    fn started(dir: &std::path::Path) -> Instance {
        let inst = deferred(dir);
        inst.init().expect("init");
        assert_eq!(inst.startup(StartupType::Clear), 0);
        inst
    }

    #[test]
    fn first_save_waits_for_the_first_revealing_response() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(crate::state::STATE_FILE);
        let inst = deferred(dir.path());
        assert!(!file.exists());
        inst.init().expect("init");
        assert_eq!(inst.startup(StartupType::Clear), 0);
        assert_eq!(response_code(&inst.execute(None, &GET_RANDOM)), Some(0));
        assert!(!file.exists(), "saved before anything was revealed");
        let r = inst.execute(None, &GET_CAPABILITY);
        assert_eq!(response_code(&r), Some(0));
        assert!(
            file.exists(),
            "GetCapability answered before the state was saved"
        );
        // What is on disk is a TPM the engine restores.
        drop(inst);
        let on_disk = StateDir::open(dir.path())
            .expect("statedir")
            .load()
            .expect("load")
            .expect("saved");
        Tpm::restore(&on_disk, &[1; 32]).expect("restore");
    }

    #[test]
    fn a_tpm_never_revealed_is_manufactured_afresh() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inst = started(dir.path());
        drop(inst); // a crash: nothing was saved, and nothing was seen
        let dir_state = StateDir::open(dir.path()).expect("statedir");
        assert_eq!(dir_state.load().expect("load"), None);
    }

    #[test]
    fn a_state_blob_is_saved_before_it_is_handed_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inst = started(dir.path());
        let file = dir.path().join(crate::state::STATE_FILE);
        assert!(!file.exists());
        let blob = inst.get_state_blob(BlobType::Permanent).expect("blob");
        assert!(file.exists(), "the blob left before the state was saved");
        drop(inst);
        let sd = StateDir::open(dir.path()).expect("statedir");
        let on_disk = sd.load().expect("load").expect("saved");
        // The same TPM, apart from the clock (which runs between the save and the blob).
        let blob = crate::state::decode(&blob).expect("blob");
        assert_eq!(blob.len(), on_disk.len());
        Tpm::restore(&on_disk, &[1; 32]).expect("restore");
    }

    #[test]
    fn which_commands_reveal_nothing() {
        assert!(reveals_nothing(&StartupType::Clear.command()));
        assert!(reveals_nothing(&GET_RANDOM));
        assert!(!reveals_nothing(&GET_CAPABILITY));
        // TPM2_Shutdown, TPM2_NV_Write, TPM2_Quote, TPM2_ReadClock, TPM2_CreatePrimary.
        for cc in [0x145u16, 0x137, 0x158, 0x181, 0x131] {
            let [hi, lo] = cc.to_be_bytes();
            let cmd = [0x80, 0x01, 0, 0, 0, 10, 0, 0, hi, lo];
            assert!(!reveals_nothing(&cmd), "{cc:#x}");
        }
        assert!(
            !reveals_nothing(&[0x80, 0x01, 0, 0]),
            "too short to tell: save"
        );
    }

    #[test]
    fn corrupt_state_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(instance(dir.path()));
        let path = dir.path().join(crate::state::STATE_FILE);
        std::fs::write(&path, b"garbage").expect("write");
        let err = Instance::open(StateDir::open(dir.path()).expect("statedir"), Log::none())
            .expect_err("corrupt");
        assert!(
            matches!(err, Error::State(StateDirError::Corrupt { .. })),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"garbage");
    }

    #[test]
    fn locality_bounds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inst = instance(dir.path());
        assert!(inst.set_locality(3));
        assert_eq!(inst.locality(), 3);
        assert!(!inst.set_locality(5));
        assert_eq!(inst.locality(), 3);
    }

    #[test]
    fn startup_command_bytes() {
        assert_eq!(
            StartupType::Clear.command(),
            [0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0]
        );
        assert_eq!(StartupType::State.command()[11], 1);
        assert_eq!(response_code(&error_response(0x142)), Some(0x142));
        assert_eq!(response_code(&[0; 9]), None);
    }
}
