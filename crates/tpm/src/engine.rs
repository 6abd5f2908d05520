//! The TPM instance and its command path (Part 3, 5 "Command Processing"): header checks,
//! handle area, authorization area with password sessions, dispatch through one command
//! table, and response framing. Every failure becomes a TPM_RC, never a panic.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::codec::{Marshal, Reader, Unmarshal};
use crate::commands::{self, CommandDef, Ctx};
use crate::drbg::HmacDrbg;
use crate::hash::Hasher;
use crate::pcr::{PcrAllocation, PcrBanks};
use crate::rc::Rc;
use crate::state::Permanent;
pub use crate::state::StateError;
use crate::types::{handle, session_attr, st, Tpm2bDigest, TpmsAuthCommand, TpmsAuthResponse};

/// Largest command the engine accepts (TPM_PT_MAX_COMMAND_SIZE).
pub const MAX_COMMAND_SIZE: usize = 4096;
/// Largest response the engine produces (TPM_PT_MAX_RESPONSE_SIZE).
pub const MAX_RESPONSE_SIZE: usize = 4096;
/// Sessions one command may carry (Part 1, 19.6).
const MAX_SESSIONS: usize = 3;
/// Transient object slots (hash and event sequences for now).
pub(crate) const MAX_LOADED_OBJECTS: usize = 8;

/// A loaded transient object.
pub(crate) enum Object {
    /// HashSequenceStart with a hash algorithm. `ticket_ok` turns false if the first block
    /// began with TPM_GENERATED_VALUE (such data gets no hashcheck ticket).
    HashSequence {
        hasher: Box<Hasher>,
        auth: Vec<u8>,
        ticket_ok: bool,
        started: bool,
    },
    /// HashSequenceStart with TPM_ALG_NULL: one running hash per implemented algorithm.
    EventSequence { hashers: Vec<Hasher>, auth: Vec<u8> },
}

impl Object {
    pub(crate) fn auth(&self) -> &[u8] {
        match self {
            Object::HashSequence { auth, .. } | Object::EventSequence { auth, .. } => auth,
        }
    }
}

/// State lost at _TPM_Init (TPM Reset) and rebuilt by TPM2_Startup.
pub(crate) struct Volatile {
    pub pcrs: PcrBanks,
    pub pcr_update_counter: u32,
    pub objects: BTreeMap<u32, Object>,
    pub ph_enable: bool,
    pub sh_enable: bool,
    pub eh_enable: bool,
    pub ph_enable_nv: bool,
    pub platform_auth: Vec<u8>,
    /// Instant of the last _TPM_Init, origin of TPMS_TIME_INFO.time.
    pub init_at: Instant,
}

impl Volatile {
    fn new(allocation: PcrAllocation) -> Self {
        Volatile {
            pcrs: PcrBanks::new(allocation),
            pcr_update_counter: 0,
            objects: BTreeMap::new(),
            ph_enable: true,
            sh_enable: true,
            eh_enable: true,
            ph_enable_nv: true,
            platform_auth: Vec::new(),
            init_at: Instant::now(),
        }
    }
}

/// One TPM 2.0 instance: permanent state, volatile state and a random number generator.
pub struct Tpm {
    pub(crate) perm: Permanent,
    pub(crate) vol: Volatile,
    pub(crate) started: bool,
    pub(crate) drbg: HmacDrbg,
    generation: u64,
    /// Clock value at `clock_origin` (TPMS_CLOCK_INFO.clock advances in real time from it).
    clock_base: u64,
    clock_origin: Instant,
    /// Whether the clock value in permanent state is current (TPMS_CLOCK_INFO.safe).
    pub(crate) clock_safe: bool,
    established: bool,
}

impl Tpm {
    /// Manufacture a new TPM: seeds and proofs drawn from a DRBG seeded with `entropy`
    /// (at least 32 bytes of host entropy).
    pub fn manufacture(entropy: &[u8]) -> Tpm {
        let mut drbg = HmacDrbg::new(entropy, b"manufacture", b"trustlaunch TPM 2.0");
        let perm = Permanent::manufacture(&mut |b: &mut [u8]| drbg.generate(b, &[]));
        let mut tpm = Tpm::with_state(perm, drbg);
        tpm.clock_safe = true;
        tpm
    }

    /// Restore a TPM from a blob produced by [`Tpm::permanent_state`]. `entropy` reseeds the
    /// random number generator.
    pub fn restore(permanent: &[u8], entropy: &[u8]) -> Result<Tpm, StateError> {
        let perm = Permanent::decode(permanent)?;
        let drbg = HmacDrbg::new(entropy, b"restore", b"trustlaunch TPM 2.0");
        let mut tpm = Tpm::with_state(perm, drbg);
        // Clock is only as current as the last save; it is safe if that was an orderly shutdown.
        tpm.clock_safe = tpm.perm.shutdown.is_some();
        Ok(tpm)
    }

    fn with_state(perm: Permanent, drbg: HmacDrbg) -> Tpm {
        let vol = Volatile::new(perm.pcr_allocation);
        Tpm {
            clock_base: perm.clock,
            perm,
            vol,
            started: false,
            drbg,
            generation: 0,
            clock_origin: Instant::now(),
            clock_safe: false,
            established: false,
        }
    }

    /// Everything a TPM keeps across power cycles (NV, seeds, Shutdown data), versioned.
    pub fn permanent_state(&self) -> Vec<u8> {
        let mut p = self.perm.clone();
        p.clock = self.clock();
        p.encode()
    }

    /// Changes whenever the permanent state changes; a host persists when it differs from
    /// the value it last saved.
    pub fn nv_generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn nv_changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// _TPM_Init: the platform reset signal. Volatile state is lost; TPM2_Startup is required next.
    pub fn init(&mut self) {
        self.started = false;
        self.vol = Volatile::new(self.perm.pcr_allocation);
    }

    /// Whether TPM2_Startup has succeeded since the last [`Tpm::init`].
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The TPM-established flag (set by an H-CRTM/DRTM sequence at locality 4).
    pub fn established(&self) -> bool {
        self.established
    }

    /// Clear the TPM-established flag; allowed from locality 3 or 4 only.
    pub fn reset_established(&mut self, locality: u8) -> bool {
        if (3..=4).contains(&locality) {
            self.established = false;
            true
        } else {
            false
        }
    }

    /// TPMS_CLOCK_INFO.clock: milliseconds the TPM has been powered, across restarts.
    pub(crate) fn clock(&self) -> u64 {
        let elapsed = u64::try_from(self.clock_origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.clock_base.saturating_add(elapsed)
    }

    /// Fill `out` from the DRBG.
    pub(crate) fn random(&mut self, out: &mut [u8]) {
        self.drbg.generate(out, &[]);
    }

    /// Execute one command at `locality` (0-4) and return the response bytes. Never panics.
    pub fn execute(&mut self, locality: u8, command: &[u8]) -> Vec<u8> {
        match self.execute_checked(locality, command) {
            Ok(resp) => resp,
            Err(rc) => error_response(rc),
        }
    }

    fn execute_checked(&mut self, locality: u8, command: &[u8]) -> Result<Vec<u8>, Rc> {
        let mut r = Reader::new(command);
        if command.len() < 10 {
            return Err(Rc::INSUFFICIENT);
        }
        let tag = r.u16()?;
        if tag != st::NO_SESSIONS && tag != st::SESSIONS {
            return Err(Rc::BAD_TAG);
        }
        let size = r.u32()? as usize;
        if size != command.len() || size > MAX_COMMAND_SIZE {
            return Err(Rc::COMMAND_SIZE);
        }
        let code = r.u32()?;
        let def = commands::lookup(code).ok_or(Rc::COMMAND_CODE)?;
        if !self.started && code != commands::CC_STARTUP {
            return Err(Rc::INITIALIZE);
        }
        if locality > 4 {
            return Err(Rc::LOCALITY);
        }

        // Handle area.
        let mut handles = [0u32; 3];
        for h in handles.iter_mut().take(usize::from(def.handles)) {
            *h = r.u32()?;
        }
        commands::check_handle_kinds(def, &handles)?;

        // Authorization area.
        let mut sessions: Vec<TpmsAuthCommand> = Vec::new();
        if tag == st::SESSIONS {
            let auth_size = r.u32()? as usize;
            if auth_size < 9 || auth_size > r.remaining() {
                return Err(Rc::AUTHSIZE);
            }
            let mut area = Reader::new(r.take(auth_size)?);
            while !area.is_empty() {
                if sessions.len() == MAX_SESSIONS {
                    return Err(Rc::AUTHSIZE);
                }
                let n = sessions.len() as u32 + 1;
                let s = TpmsAuthCommand::unmarshal(&mut area).map_err(|_| Rc::AUTHSIZE)?;
                self.check_session_form(&s, n)?;
                sessions.push(s);
            }
        }
        if sessions.len() < usize::from(def.auth) {
            return Err(Rc::AUTH_MISSING);
        }
        // A password session can only authorize a handle; extra sessions are for audit
        // and encryption, which need HMAC sessions.
        if sessions
            .iter()
            .skip(usize::from(def.auth))
            .any(|s| s.session_handle == handle::RS_PW)
        {
            return Err(Rc::AUTH_CONTEXT);
        }
        for i in 0..usize::from(def.auth) {
            let (h, s) = match (handles.get(i), sessions.get(i)) {
                (Some(h), Some(s)) => (*h, s),
                _ => return Err(Rc::AUTH_MISSING),
            };
            self.authorize(def, h, i as u32 + 1, s, i as u32 + 1)?;
        }

        let mut ctx = Ctx::new(locality, handles, r);
        (def.handler)(self, &mut ctx)?;
        if !ctx.params_done() {
            return Err(Rc::SIZE);
        }
        Ok(self.frame_response(tag, &ctx, &sessions))
    }

    /// Form checks on one session entry (Part 1, 19.6.4 for password sessions).
    fn check_session_form(&self, s: &TpmsAuthCommand, n: u32) -> Result<(), Rc> {
        match handle::ht(s.session_handle) {
            _ if s.session_handle == handle::RS_PW => {
                if !s.nonce.is_empty() {
                    return Err(Rc::NONCE.session(n));
                }
                if s.session_attributes & !session_attr::CONTINUE_SESSION != 0 {
                    return Err(Rc::ATTRIBUTES.session(n));
                }
                Ok(())
            }
            handle::HT_HMAC_SESSION | handle::HT_POLICY_SESSION => {
                Err(Rc(Rc::REFERENCE_S0.0 + n - 1))
            }
            _ => Err(Rc::HANDLE.session(n)),
        }
    }

    /// Check the password for the entity named by `h` (the `hn`th handle) against session `sn`.
    fn authorize(
        &mut self,
        def: &CommandDef,
        h: u32,
        hn: u32,
        s: &TpmsAuthCommand,
        sn: u32,
    ) -> Result<(), Rc> {
        if def.admin_nv && handle::ht(h) == handle::HT_NV_INDEX {
            // ADMIN role on an NV index needs a policy session (Part 1, 19.7.4).
            return Err(Rc::AUTH_UNAVAILABLE);
        }
        let expected: Vec<u8> = self.entity_auth(h).map_err(|rc| rc.handle(hn))?;
        if trim_zeros(&expected) == trim_zeros(s.hmac.as_slice()) {
            Ok(())
        } else {
            Err(Rc::AUTH_FAIL.session(sn))
        }
    }

    /// The authValue of an entity that can be authorized with a password.
    pub(crate) fn entity_auth(&self, h: u32) -> Result<Vec<u8>, Rc> {
        match handle::ht(h) {
            handle::HT_PCR if (h as usize) < crate::types::PCR_COUNT => Ok(Vec::new()),
            handle::HT_NV_INDEX => {
                let idx = self.perm.nv.get(&h).ok_or(Rc::HANDLE)?;
                self.nv_hierarchy_enabled(idx.public.attributes)?;
                Ok(idx.auth.clone())
            }
            handle::HT_TRANSIENT => self
                .vol
                .objects
                .get(&h)
                .map(|o| o.auth().to_vec())
                .ok_or(Rc::HANDLE),
            handle::HT_PERMANENT => match h {
                handle::OWNER if self.vol.sh_enable => Ok(self.perm.owner_auth.clone()),
                handle::ENDORSEMENT if self.vol.eh_enable => Ok(self.perm.endorsement_auth.clone()),
                handle::PLATFORM if self.vol.ph_enable => Ok(self.vol.platform_auth.clone()),
                handle::OWNER | handle::ENDORSEMENT | handle::PLATFORM => Err(Rc::HIERARCHY),
                handle::LOCKOUT => Ok(self.perm.lockout_auth.clone()),
                handle::NULL => Ok(Vec::new()),
                _ => Err(Rc::VALUE),
            },
            _ => Err(Rc::VALUE),
        }
    }

    /// NV indices are reachable only while their hierarchy is enabled (phEnableNV for
    /// platform-created, shEnable for owner-created).
    pub(crate) fn nv_hierarchy_enabled(&self, attributes: u32) -> Result<(), Rc> {
        let platform = attributes & crate::types::nv_attr::PLATFORMCREATE != 0;
        if (platform && !self.vol.ph_enable_nv) || (!platform && !self.vol.sh_enable) {
            Err(Rc::HANDLE)
        } else {
            Ok(())
        }
    }

    fn frame_response(&self, tag: u16, ctx: &Ctx<'_>, sessions: &[TpmsAuthCommand]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + ctx.out.len());
        tag.marshal(&mut out);
        0u32.marshal(&mut out); // size, patched below
        Rc::SUCCESS.0.marshal(&mut out);
        if let Some(h) = ctx.out_handle {
            h.marshal(&mut out);
        }
        if tag == st::SESSIONS {
            (ctx.out.len() as u32).marshal(&mut out);
            out.extend_from_slice(&ctx.out);
            for _ in sessions {
                TpmsAuthResponse {
                    nonce: Tpm2bDigest::default(),
                    session_attributes: session_attr::CONTINUE_SESSION,
                    hmac: Tpm2bDigest::default(),
                }
                .marshal(&mut out);
            }
        } else {
            out.extend_from_slice(&ctx.out);
        }
        let len = (out.len() as u32).to_be_bytes();
        if let Some(size) = out.get_mut(2..6) {
            size.copy_from_slice(&len);
        }
        out
    }
}

/// A 10-byte error response. TPM_RC_BAD_TAG (e.g. a TPM 1.2 command) is answered with the
/// TPM 1.2 response tag, as Part 3 section 5.2 requires.
pub(crate) fn error_response(rc: Rc) -> Vec<u8> {
    let tag = if rc == Rc::BAD_TAG {
        st::RSP_COMMAND
    } else {
        st::NO_SESSIONS
    };
    let mut out = Vec::with_capacity(10);
    tag.marshal(&mut out);
    10u32.marshal(&mut out);
    rc.0.marshal(&mut out);
    out
}

/// Authorization values compare without trailing zero octets (Part 1, 19.6.4.3).
pub(crate) fn trim_zeros(v: &[u8]) -> &[u8] {
    let end = v.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    v.get(..end).unwrap_or(&[])
}
