//! The TPM instance and its command path (Part 3, 5 "Command Processing"): header checks,
//! handle area, authorization area with password sessions, dispatch through one command
//! table, and response framing. Every failure becomes a TPM_RC, never a panic.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::codec::{Marshal, Reader, Unmarshal};
use crate::commands::{self, CommandDef, Ctx};
use crate::drbg::HmacDrbg;
use crate::hash::HashAlg;
use crate::hash::Hasher;
use crate::keys::{self, KeyObject};
use crate::pcr::{PcrAllocation, PcrBanks};
use crate::rc::Rc;
use crate::session::{PolicyState, Session, SessionType, SymDef};
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
pub(crate) const MAX_LOADED_OBJECTS: usize = 16;
/// Loaded sessions (TPM_PT_ACTIVE_SESSIONS_MAX).
pub(crate) const MAX_SESSIONS_LOADED: usize = 64;

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
    /// A key or data object.
    Key(Box<KeyObject>),
}

impl Object {
    pub(crate) fn auth(&self) -> &[u8] {
        match self {
            Object::HashSequence { auth, .. } | Object::EventSequence { auth, .. } => auth,
            Object::Key(o) => o
                .sensitive
                .as_ref()
                .map(|s| s.auth_value.as_slice())
                .unwrap_or(&[]),
        }
    }
}

/// State lost at _TPM_Init (TPM Reset) and rebuilt by TPM2_Startup.
pub(crate) struct Volatile {
    pub pcrs: PcrBanks,
    pub pcr_update_counter: u32,
    pub objects: BTreeMap<u32, Object>,
    pub sessions: BTreeMap<u32, Session>,
    /// Sessions whose context was saved, with the sequence of their latest context.
    pub saved_sessions: BTreeMap<u32, u64>,
    /// The exclusive audit session, if no command has run outside it since it began.
    pub exclusive_audit: Option<u32>,
    pub context_sequence: u64,
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
            sessions: BTreeMap::new(),
            saved_sessions: BTreeMap::new(),
            exclusive_audit: None,
            context_sequence: 0,
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
    /// Recently derived primary objects, keyed by a digest of seed, hierarchy and template.
    pub(crate) primary_cache: Vec<(Vec<u8>, KeyObject)>,
    /// The I/O buffer the transport has (swtpm's CMD_SET_BUFFERSIZE): the largest command
    /// accepted and reported as TPM_PT_MAX_COMMAND_SIZE / MAX_RESPONSE_SIZE.
    pub(crate) io_buffer: usize,
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
            primary_cache: Vec::new(),
            io_buffer: MAX_COMMAND_SIZE,
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

    /// Smallest I/O buffer a transport may set: room for the largest response this TPM
    /// produces (a GetCapability page, an RSA-4096 object) with margin.
    pub const MIN_IO_BUFFER: usize = 2048;

    /// Adopt the transport's buffer size (clamped to MIN_IO_BUFFER..=MAX_COMMAND_SIZE) and
    /// return the size in force, as swtpm's CMD_SET_BUFFERSIZE does. Commands larger than it
    /// are refused with TPM_RC_COMMAND_SIZE, and GetCapability reports it.
    pub fn set_io_buffer_size(&mut self, requested: usize) -> usize {
        if requested != 0 {
            self.io_buffer = requested.clamp(Self::MIN_IO_BUFFER, MAX_COMMAND_SIZE);
        }
        self.io_buffer
    }

    /// Whether TPM2_Startup has succeeded since the last [`Tpm::init`].
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The TPM-established flag (set by an H-CRTM/DRTM sequence at locality 4).
    pub fn established(&self) -> bool {
        self.established
    }

    pub(crate) fn set_established(&mut self, on: bool) {
        self.established = on;
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

    /// TPMS_TIME_INFO.time: milliseconds since the last _TPM_Init.
    pub(crate) fn time(&self) -> u64 {
        u64::try_from(self.vol.init_at.elapsed().as_millis()).unwrap_or(u64::MAX)
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
        if size != command.len() || size > self.io_buffer {
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
                sessions.push(TpmsAuthCommand::unmarshal(&mut area).map_err(|_| Rc::AUTHSIZE)?);
            }
        }
        if sessions.len() < usize::from(def.auth) {
            return Err(Rc::AUTH_MISSING);
        }
        let mut params = r.rest().to_vec();
        let mut uses = self.check_sessions(def, &handles, &sessions, &params)?;
        if let Some(i) = uses.audit {
            // Audit digests cover the parameters as sent (encrypted), like HMACs.
            let alg = sessions
                .get(i)
                .and_then(|s| self.vol.sessions.get(&s.session_handle))
                .map(|s| s.hash);
            if let Some(alg) = alg {
                let names = self.names(def, &handles)?;
                uses.audit_cp_hash =
                    Some(cp_hash_for(&mut Vec::new(), alg, def.code, &names, &params));
            }
        }

        // Decrypt the first parameter (after the HMACs were checked over the ciphertext).
        if let Some(i) = uses.decrypt {
            let s = sessions.get(i).ok_or(Rc::AUTHSIZE)?;
            let auth = uses
                .associated
                .get(i)
                .copied()
                .flatten()
                .and_then(|h| self.entity_auth(h).ok())
                .unwrap_or_default();
            let session = self
                .vol
                .sessions
                .get(&s.session_handle)
                .ok_or(Rc::AUTH_CONTEXT)?;
            let n = usize::from(u16::from_be_bytes([
                *params.first().unwrap_or(&0),
                *params.get(1).unwrap_or(&0),
            ]));
            let data = params
                .get_mut(2..2 + n)
                .ok_or(Rc::SIZE.session(i as u32 + 1))?;
            session.crypt_parameter(
                trim_zeros(&auth),
                s.nonce.as_slice(),
                &session.nonce_tpm,
                data,
                false,
            );
        }

        let mut ctx = Ctx::new(locality, handles, Reader::new(&params));
        for (i, s) in sessions.iter().enumerate().take(usize::from(def.auth)) {
            if let Some(slot) = ctx.policy_auth.get_mut(i) {
                *slot = handle::ht(s.session_handle) == handle::HT_POLICY_SESSION;
            }
        }
        (def.handler)(self, &mut ctx)?;
        if !ctx.params_done() {
            return Err(Rc::SIZE);
        }
        let out_handle = ctx.out_handle;
        let mut out_params = std::mem::take(&mut ctx.out);
        let auth_area = if tag == st::SESSIONS {
            self.respond_sessions(def, &sessions, &uses, &mut out_params)
        } else {
            // A command outside the exclusive audit session ends its exclusivity.
            self.vol.exclusive_audit = None;
            Vec::new()
        };
        Ok(frame_response(tag, out_handle, &out_params, &auth_area))
    }

    /// Check every session of a command (Part 1, 19.6 and 19.7): form, association with the
    /// authorized handles, passwords, HMACs and policies, and which session decrypts or
    /// encrypts a parameter. Errors carry the session number.
    fn check_sessions(
        &mut self,
        def: &CommandDef,
        handles: &[u32; 3],
        sessions: &[TpmsAuthCommand],
        params: &[u8],
    ) -> Result<SessionUses, Rc> {
        let mut uses = SessionUses::default();
        for (i, s) in sessions.iter().enumerate() {
            let n = i as u32 + 1;
            let associated = if i < usize::from(def.auth) {
                handles.get(i).copied()
            } else {
                None
            };
            uses.associated.push(associated);
            let attrs = s.session_attributes;
            if s.session_handle == handle::RS_PW {
                if associated.is_none() {
                    return Err(Rc::HANDLE.session(n));
                }
                if attrs & !session_attr::CONTINUE_SESSION != 0 {
                    return Err(Rc::ATTRIBUTES.session(n));
                }
                if !s.nonce.is_empty() {
                    return Err(Rc::NONCE.session(n));
                }
                continue;
            }
            let ht = handle::ht(s.session_handle);
            if ht != handle::HT_HMAC_SESSION && ht != handle::HT_POLICY_SESSION {
                return Err(Rc::HANDLE.session(n));
            }
            let session = self
                .vol
                .sessions
                .get(&s.session_handle)
                .ok_or(Rc(Rc::REFERENCE_S0.0 + n - 1))?;
            if session.kind == SessionType::Trial {
                return Err(Rc::ATTRIBUTES.session(n));
            }
            if (session.kind == SessionType::Policy) != (ht == handle::HT_POLICY_SESSION) {
                return Err(Rc::HANDLE.session(n));
            }
            if sessions
                .iter()
                .take(i)
                .any(|p| p.session_handle == s.session_handle)
            {
                return Err(Rc::HANDLE.session(n));
            }
            if s.nonce.len() > session.hash.size() {
                return Err(Rc::SIZE.session(n));
            }
            if attrs & session_attr::DECRYPT != 0 {
                if !def.decrypt || uses.decrypt.is_some() {
                    return Err(Rc::ATTRIBUTES.session(n));
                }
                if session.symmetric == SymDef::Null {
                    return Err(Rc::SYMMETRIC.session(n));
                }
                uses.decrypt = Some(i);
            }
            if attrs & session_attr::ENCRYPT != 0 {
                if !def.encrypt || uses.encrypt.is_some() {
                    return Err(Rc::ATTRIBUTES.session(n));
                }
                if session.symmetric == SymDef::Null {
                    return Err(Rc::SYMMETRIC.session(n));
                }
                uses.encrypt = Some(i);
            }
            if attrs & session_attr::AUDIT != 0 {
                if session.kind != SessionType::Hmac || uses.audit.is_some() {
                    return Err(Rc::ATTRIBUTES.session(n));
                }
                uses.audit = Some(i);
            }
            if associated.is_none()
                && attrs & (session_attr::AUDIT | session_attr::ENCRYPT | session_attr::DECRYPT)
                    == 0
            {
                return Err(Rc::ATTRIBUTES.session(n));
            }
        }

        let mut cp_hashes: Vec<(HashAlg, Vec<u8>)> = Vec::new();
        for (i, s) in sessions.iter().enumerate() {
            let n = i as u32 + 1;
            let Some(h) = uses.associated.get(i).copied().flatten() else {
                uses.include_auth.push(false);
                if s.session_handle == handle::RS_PW {
                    continue;
                }
                let Some(session) = self.vol.sessions.get(&s.session_handle) else {
                    return Err(Rc::AUTH_CONTEXT);
                };
                if session.hmac_key_is_empty(None) && s.hmac.is_empty() {
                    continue;
                }
                let cp_hash = cp_hash_for(
                    &mut cp_hashes,
                    session.hash,
                    def.code,
                    &self.names(def, handles)?,
                    params,
                );
                let expected = session.command_hmac(
                    None,
                    &cp_hash,
                    s.nonce.as_slice(),
                    &[],
                    s.session_attributes,
                );
                if expected != s.hmac.as_slice() {
                    return Err(Rc::BAD_AUTH.session(n));
                }
                continue;
            };
            let auth = self.entity_auth(h).map_err(|rc| rc.handle(n))?;
            let auth = trim_zeros(&auth).to_vec();
            if s.session_handle == handle::RS_PW {
                if self.policy_required(h, def, i) {
                    return Err(Rc::AUTH_TYPE);
                }
                if !self.auth_value_available(h, def, i) {
                    return Err(Rc::AUTH_UNAVAILABLE);
                }
                self.da_check(h)?;
                if auth != trim_zeros(s.hmac.as_slice()) {
                    return Err(self.auth_failed(h).session(n));
                }
                uses.include_auth.push(false);
                continue;
            }
            let Some(session) = self.vol.sessions.get(&s.session_handle).cloned() else {
                return Err(Rc::AUTH_CONTEXT);
            };
            let session = &session;
            let cp_hash = cp_hash_for(
                &mut cp_hashes,
                session.hash,
                def.code,
                &self.names(def, handles)?,
                params,
            );
            let include_auth = if session.kind == SessionType::Hmac {
                if self.policy_required(h, def, i) {
                    return Err(Rc::AUTH_TYPE);
                }
                if !self.auth_value_available(h, def, i) {
                    return Err(Rc::AUTH_UNAVAILABLE);
                }
                let name = self.entity_name(h).map_err(|rc| rc.handle(n))?;
                session.bound.as_ref() != Some(&(name, auth.clone()))
            } else {
                self.check_policy(session, h, def, handles, i, &cp_hash)
                    .map_err(|rc| rc.session(n))?;
                if session.policy.is_password_needed {
                    self.da_check(h)?;
                    if auth != trim_zeros(s.hmac.as_slice()) {
                        return Err(self.auth_failed(h).session(n));
                    }
                    uses.include_auth.push(true);
                    continue;
                }
                session.policy.is_auth_value_needed
            };
            uses.include_auth.push(include_auth);
            if include_auth {
                self.da_check(h)?;
            }
            let auth_value = include_auth.then_some(auth.as_slice());
            if session.hmac_key_is_empty(auth_value) && s.hmac.is_empty() {
                continue;
            }
            // The first authorization session also covers the nonces of separate
            // decrypt and encrypt sessions.
            let mut extra: Vec<&[u8]> = Vec::new();
            if i == 0 {
                let enc = uses.encrypt.filter(|e| Some(*e) != uses.decrypt);
                for j in [uses.decrypt, enc]
                    .into_iter()
                    .flatten()
                    .filter(|j| *j != 0)
                {
                    if let Some(o) = sessions
                        .get(j)
                        .and_then(|o| self.vol.sessions.get(&o.session_handle))
                    {
                        extra.push(&o.nonce_tpm);
                    }
                }
            }
            let expected = session.command_hmac(
                auth_value,
                &cp_hash,
                s.nonce.as_slice(),
                &extra,
                s.session_attributes,
            );
            if expected != s.hmac.as_slice() {
                let rc = if include_auth {
                    self.auth_failed(h)
                } else {
                    Rc::BAD_AUTH
                };
                return Err(rc.session(n));
            }
        }
        Ok(uses)
    }

    /// Build the response authorization area: roll nonces, encrypt the first response
    /// parameter, compute response HMACs, flush sessions the caller did not continue.
    fn respond_sessions(
        &mut self,
        def: &CommandDef,
        sessions: &[TpmsAuthCommand],
        uses: &SessionUses,
        out_params: &mut [u8],
    ) -> Vec<u8> {
        for s in sessions
            .iter()
            .filter(|s| s.session_handle != handle::RS_PW)
        {
            let len = self
                .vol
                .sessions
                .get(&s.session_handle)
                .map_or(0, |x| x.nonce_tpm.len());
            let mut nonce = vec![0u8; len];
            self.random(&mut nonce);
            if let Some(x) = self.vol.sessions.get_mut(&s.session_handle) {
                x.nonce_tpm = nonce;
            }
        }
        let auth_of = |tpm: &Tpm, i: usize| -> Vec<u8> {
            uses.associated
                .get(i)
                .copied()
                .flatten()
                .and_then(|h| tpm.entity_auth(h).ok())
                .map(|a| trim_zeros(&a).to_vec())
                .unwrap_or_default()
        };
        if let Some(i) = uses.encrypt {
            let auth = auth_of(self, i);
            if let Some((s, session)) = sessions
                .get(i)
                .and_then(|s| Some((s, self.vol.sessions.get(&s.session_handle)?)))
            {
                let n = usize::from(u16::from_be_bytes([
                    *out_params.first().unwrap_or(&0),
                    *out_params.get(1).unwrap_or(&0),
                ]));
                if let Some(data) = out_params.get_mut(2..2 + n) {
                    session.crypt_parameter(
                        &auth,
                        &session.nonce_tpm,
                        s.nonce.as_slice(),
                        data,
                        true,
                    );
                }
            }
        }
        // Session audit (Part 1, 19.5): digest := H(digest || cpHash || rpHash), over the
        // parameters as sent; a first use or auditReset starts from zeros and makes the
        // session the exclusive one; any command outside it ends that exclusivity.
        let mut audit_attrs: Option<(usize, u8)> = None;
        match (uses.audit, &uses.audit_cp_hash) {
            (Some(i), Some(cp_hash)) => {
                if let Some(s) = sessions.get(i) {
                    let reset = s.session_attributes & session_attr::AUDIT_RESET != 0;
                    let handle = s.session_handle;
                    if let Some(x) = self.vol.sessions.get_mut(&handle) {
                        let rp_hash = x.hash.digest(&[
                            &0u32.to_be_bytes(),
                            &def.code.to_be_bytes(),
                            out_params,
                        ]);
                        let fresh = reset || x.audit_digest.is_none();
                        let old = if fresh {
                            vec![0; x.hash.size()]
                        } else {
                            x.audit_digest.clone().unwrap_or_default()
                        };
                        x.audit_digest = Some(x.hash.digest(&[&old, cp_hash, &rp_hash]));
                        if fresh {
                            self.vol.exclusive_audit = Some(handle);
                        }
                    }
                    let exclusive = self.vol.exclusive_audit == Some(handle);
                    let attrs = if exclusive {
                        s.session_attributes | session_attr::AUDIT_EXCLUSIVE
                    } else {
                        s.session_attributes & !session_attr::AUDIT_EXCLUSIVE
                    };
                    audit_attrs = Some((i, attrs));
                }
            }
            _ => self.vol.exclusive_audit = None,
        }
        let mut area = Vec::new();
        let now = self.time();
        for (i, s) in sessions.iter().enumerate() {
            let Some(session) = self.vol.sessions.get(&s.session_handle) else {
                // A password session (or one the command itself flushed).
                TpmsAuthResponse {
                    nonce: Tpm2bDigest::default(),
                    session_attributes: session_attr::CONTINUE_SESSION,
                    hmac: Tpm2bDigest::default(),
                }
                .marshal(&mut area);
                continue;
            };
            let attrs = audit_attrs
                .filter(|(j, _)| *j == i)
                .map_or(s.session_attributes, |(_, a)| a);
            let include_auth = uses.include_auth.get(i).copied().unwrap_or(false);
            let auth = include_auth.then(|| auth_of(self, i));
            let hmac = if (session.kind != SessionType::Hmac && session.policy.is_password_needed)
                || (session.hmac_key_is_empty(auth.as_deref()) && s.hmac.is_empty())
            {
                Vec::new()
            } else {
                let rp_hash = session.hash.digest(&[
                    &0u32.to_be_bytes(),
                    &def.code.to_be_bytes(),
                    out_params,
                ]);
                session.response_hmac(auth.as_deref(), &rp_hash, s.nonce.as_slice(), attrs)
            };
            TpmsAuthResponse {
                nonce: Tpm2bDigest(session.nonce_tpm.clone()),
                session_attributes: attrs,
                hmac: Tpm2bDigest(hmac),
            }
            .marshal(&mut area);
            if s.session_attributes & session_attr::CONTINUE_SESSION == 0 {
                self.vol.sessions.remove(&s.session_handle);
            } else if let Some(x) = self.vol.sessions.get_mut(&s.session_handle) {
                if x.kind != SessionType::Hmac {
                    x.policy = PolicyState {
                        digest: vec![0; x.hash.size()],
                        ..PolicyState::default()
                    };
                    x.start_time = now;
                }
            }
        }
        area
    }

    /// Names of the command's handles, in order (Part 1, 16).
    fn names(&self, def: &CommandDef, handles: &[u32; 3]) -> Result<Vec<Vec<u8>>, Rc> {
        handles
            .iter()
            .take(usize::from(def.handles))
            .enumerate()
            .map(|(i, h)| self.entity_name(*h).map_err(|rc| rc.handle(i as u32 + 1)))
            .collect()
    }

    /// A policy session authorizes `h` only if its digest equals the entity's authPolicy
    /// and its recorded conditions hold for this command (Part 1, 19.7).
    fn check_policy(
        &self,
        session: &Session,
        h: u32,
        def: &CommandDef,
        handles: &[u32; 3],
        index: usize,
        cp_hash: &[u8],
    ) -> Result<(), Rc> {
        let (policy_alg, policy) = self.entity_auth_policy(h);
        if policy.is_empty() || policy != session.policy.digest || policy_alg != Some(session.hash)
        {
            return Err(Rc::POLICY_FAIL);
        }
        match session.policy.command_code {
            Some(cc) if cc != def.code => return Err(Rc::POLICY_CC),
            None if def.admin && index == 0 => return Err(Rc::POLICY_FAIL),
            _ => {}
        }
        if let Some(expected) = &session.policy.cp_hash {
            if expected.as_slice() != cp_hash {
                return Err(Rc::POLICY_FAIL);
            }
        }
        if let Some(expected) = &session.policy.name_hash {
            let names = self.names(def, handles)?;
            let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
            if session.hash.digest(&refs) != *expected {
                return Err(Rc::POLICY_FAIL);
            }
        }
        if session.policy.timeout.is_some_and(|t| t < self.time()) {
            return Err(Rc::EXPIRED);
        }
        if let Some(counter) = session.policy.pcr_counter {
            if counter != self.vol.pcr_update_counter {
                return Err(Rc::PCR_CHANGED);
            }
        }
        Ok(())
    }

    /// Must the `i`th authorization of this command on `h` be a policy session? The ADMIN
    /// role on NV indices and on objects with adminWithPolicy, and the USER role on objects
    /// without userWithAuth (Part 1, 19.7.4 and 19.7.5).
    fn policy_required(&self, h: u32, def: &CommandDef, i: usize) -> bool {
        let admin = def.admin && i == 0;
        match handle::ht(h) {
            handle::HT_NV_INDEX => admin,
            handle::HT_TRANSIENT | handle::HT_PERSISTENT => {
                admin
                    && self
                        .with_key(h, |o| {
                            Ok(o.public.has(crate::object::attr::ADMIN_WITH_POLICY))
                        })
                        .unwrap_or(false)
            }
            _ => false,
        }
    }

    /// Can a password or HMAC session use the entity's authValue? Not for the USER role of an
    /// object without userWithAuth (Part 1, 19.7.5: TPM_RC_AUTH_UNAVAILABLE).
    fn auth_value_available(&self, h: u32, def: &CommandDef, i: usize) -> bool {
        let admin = def.admin && i == 0;
        match handle::ht(h) {
            handle::HT_TRANSIENT | handle::HT_PERSISTENT if !admin => self
                .with_key(h, |o| Ok(o.public.has(crate::object::attr::USER_WITH_AUTH)))
                .unwrap_or(true),
            _ => true,
        }
    }

    /// Refuse DA-protected authorizations while the TPM is in lockout (Part 1, 19.8), after
    /// forgiving one failure per elapsed recoveryTime.
    fn da_check(&mut self, h: u32) -> Result<(), Rc> {
        let now = self.clock();
        let da = &mut self.perm.da;
        if h == handle::LOCKOUT {
            if !da.lockout_auth_enabled {
                let waited = now.saturating_sub(da.lockout_failure_clock) / 1000;
                if da.lockout_recovery != 0 && waited >= u64::from(da.lockout_recovery) {
                    da.lockout_auth_enabled = true;
                    self.nv_changed();
                } else {
                    return Err(Rc::LOCKOUT);
                }
            }
            return Ok(());
        }
        if self.auth_failure(h) != Rc::AUTH_FAIL {
            return Ok(());
        }
        let da = &mut self.perm.da;
        if da.recovery_time != 0 && da.failed_tries > 0 {
            let healed =
                now.saturating_sub(da.reference_clock) / 1000 / u64::from(da.recovery_time);
            if healed > 0 {
                da.failed_tries = da
                    .failed_tries
                    .saturating_sub(u32::try_from(healed).unwrap_or(u32::MAX));
                da.reference_clock = now;
                self.nv_changed();
            }
        }
        if self.perm.da.failed_tries >= self.perm.da.max_tries {
            return Err(Rc::LOCKOUT);
        }
        Ok(())
    }

    /// Record a failed authorization of `h`; returns TPM_RC_AUTH_FAIL if it counted against
    /// dictionary-attack protection, TPM_RC_BAD_AUTH otherwise.
    fn auth_failed(&mut self, h: u32) -> Rc {
        let rc = self.auth_failure(h);
        let now = self.clock();
        if h == handle::LOCKOUT {
            self.perm.da.lockout_auth_enabled = false;
            self.perm.da.lockout_failure_clock = now;
            self.nv_changed();
        } else if rc == Rc::AUTH_FAIL {
            self.perm.da.failed_tries = self.perm.da.failed_tries.saturating_add(1);
            self.perm.da.reference_clock = now;
            self.nv_changed();
        }
        rc
    }

    /// TPM_RC_AUTH_FAIL for entities under dictionary-attack protection, else TPM_RC_BAD_AUTH.
    fn auth_failure(&self, h: u32) -> Rc {
        let protected = match handle::ht(h) {
            handle::HT_NV_INDEX => self
                .perm
                .nv
                .get(&h)
                .is_some_and(|i| i.public.attributes & crate::types::nv_attr::NO_DA == 0),
            // Every permanent handle but lockout is exempt (Part 1, 19.8.1; it has its own).
            handle::HT_PERMANENT => h == handle::LOCKOUT,
            handle::HT_TRANSIENT | handle::HT_PERSISTENT => self
                .with_key(h, |o| Ok(!o.public.has(crate::object::attr::NO_DA)))
                .unwrap_or(false),
            _ => false,
        };
        if protected {
            Rc::AUTH_FAIL
        } else {
            Rc::BAD_AUTH
        }
    }

    /// The Name of an entity (Part 1, 16): its handle, or for NV indices (and, later,
    /// objects) the hash of their public area.
    pub(crate) fn entity_name(&self, h: u32) -> Result<Vec<u8>, Rc> {
        match handle::ht(h) {
            handle::HT_NV_INDEX => {
                let idx = self.perm.nv.get(&h).ok_or(Rc::HANDLE)?;
                Ok(commands::nv_name(&idx.public))
            }
            handle::HT_TRANSIENT => match self.vol.objects.get(&h) {
                Some(Object::Key(o)) => Ok(o.name.clone()),
                // Sequence objects have nameAlg TPM_ALG_NULL, so their Name is empty.
                Some(_) => Ok(Vec::new()),
                None => Err(Rc::HANDLE),
            },
            handle::HT_PERSISTENT => self.key_object(h).map(|o| o.name),
            _ => Ok(h.to_be_bytes().to_vec()),
        }
    }

    /// The authPolicy of an entity and its hash algorithm (empty if it has none).
    pub(crate) fn entity_auth_policy(&self, h: u32) -> (Option<HashAlg>, Vec<u8>) {
        match handle::ht(h) {
            handle::HT_NV_INDEX => self
                .perm
                .nv
                .get(&h)
                .map(|i| {
                    (
                        HashAlg::from_id(i.public.name_alg),
                        i.public.auth_policy.0.clone(),
                    )
                })
                .unwrap_or((None, Vec::new())),
            handle::HT_TRANSIENT | handle::HT_PERSISTENT => self
                .with_key(h, |o| {
                    Ok((Some(o.public.name_alg), o.public.auth_policy.clone()))
                })
                .unwrap_or((None, Vec::new())),
            _ => (None, Vec::new()),
        }
    }

    /// Decrypt a session salt with a loaded key (Part 1, 19.6.13): RSA-OAEP or ECDH and KDFe
    /// with the label "SECRET".
    pub(crate) fn decrypt_salt(&self, key: u32, secret: &[u8]) -> Result<Vec<u8>, Rc> {
        let opened = self.with_key(key, |o| {
            if !o.public.has(crate::object::attr::DECRYPT) || o.sensitive.is_none() {
                return Err(Rc::KEY.handle(1));
            }
            keys::decrypt_secret(o, keys::label::SECRET, secret).map_err(|rc| rc.param(2))
        });
        opened.map_err(|rc| {
            if rc == Rc::HANDLE {
                Rc::HANDLE.handle(1)
            } else {
                rc
            }
        })
    }

    /// The lowest free session handle of the session's type (one slot space for both types).
    pub(crate) fn free_session_handle(&self, kind: SessionType) -> Option<u32> {
        let base: u32 = if kind == SessionType::Hmac {
            0x0200_0000
        } else {
            0x0300_0000
        };
        (0..MAX_SESSIONS_LOADED as u32).find_map(|i| {
            let saved = self.vol.saved_sessions.contains_key(&(0x0200_0000 + i))
                || self.vol.saved_sessions.contains_key(&(0x0300_0000 + i));
            let taken = saved
                || self.vol.sessions.contains_key(&(0x0200_0000 + i))
                || self.vol.sessions.contains_key(&(0x0300_0000 + i));
            (!taken).then_some(base + i)
        })
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
            handle::HT_PERSISTENT => self
                .key_object(h)
                .map(|o| o.sensitive.map(|s| s.auth_value).unwrap_or_default()),
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
}

/// What each session of a command is used for.
#[derive(Default)]
struct SessionUses {
    associated: Vec<Option<u32>>,
    include_auth: Vec<bool>,
    decrypt: Option<usize>,
    encrypt: Option<usize>,
    audit: Option<usize>,
    /// cpHash of the command in the audit session's hash algorithm.
    audit_cp_hash: Option<Vec<u8>>,
}

/// cpHash := H(commandCode || names || parameters), computed once per hash algorithm.
fn cp_hash_for(
    cache: &mut Vec<(HashAlg, Vec<u8>)>,
    alg: HashAlg,
    code: u32,
    names: &[Vec<u8>],
    params: &[u8],
) -> Vec<u8> {
    if let Some((_, d)) = cache.iter().find(|(a, _)| *a == alg) {
        return d.clone();
    }
    let mut h = Hasher::new(alg);
    h.update(&code.to_be_bytes());
    for n in names {
        h.update(n);
    }
    h.update(params);
    let d = h.finish();
    cache.push((alg, d.clone()));
    d
}

fn frame_response(tag: u16, out_handle: Option<u32>, params: &[u8], auth_area: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + params.len() + auth_area.len());
    tag.marshal(&mut out);
    0u32.marshal(&mut out); // size, patched below
    Rc::SUCCESS.0.marshal(&mut out);
    if let Some(h) = out_handle {
        h.marshal(&mut out);
    }
    if tag == st::SESSIONS {
        (params.len() as u32).marshal(&mut out);
    }
    out.extend_from_slice(params);
    out.extend_from_slice(auth_area);
    let len = (out.len() as u32).to_be_bytes();
    if let Some(size) = out.get_mut(2..6) {
        size.copy_from_slice(&len);
    }
    out
}

/// A 10-byte error response, always in TPM 2 format (TPM_ST_NO_SESSIONS). That includes the
/// answer to a TPM 1.2 command (TPM_RC_BAD_TAG): firmware probes for a TPM 1.2 that way, and
/// a 1.2 response tag (0x00C4) would make OVMF's TIS driver take the TPM for a TPM 1.2 and
/// leave it unmeasured; libtpms (swtpm) answers with the TPM 2 tag too.
pub(crate) fn error_response(rc: Rc) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    st::NO_SESSIONS.marshal(&mut out);
    10u32.marshal(&mut out);
    rc.0.marshal(&mut out);
    out
}

/// Authorization values compare without trailing zero octets (Part 1, 19.6.4.3).
pub(crate) fn trim_zeros(v: &[u8]) -> &[u8] {
    let end = v.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    v.get(..end).unwrap_or(&[])
}
