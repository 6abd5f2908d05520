//! Policy commands (Part 3, 23): each extends a policy session's digest and records the
//! conditions checked when the session authorizes a command (Part 1, 19.7).
//!
//! A trial session (TPM_SE_TRIAL) computes the same digests without checking any condition.
//! The conditions a policy session records (command code, cpHash, nameHash, PCR counter,
//! password or authValue) are checked by the engine when the session authorizes a command.

use super::{lookup, Ctx};
use crate::codec::{Marshal, Reader, Unmarshal};
use crate::engine::Tpm;
use crate::hash::HashAlg;
use crate::keys;
use crate::object::attr as object_attr;
use crate::rc::Rc;
use crate::session::{PolicyState, SessionType};
use crate::types::{
    alg, handle, nv_attr, st, Tpm2bDigest, Tpm2bName, TpmlDigest, TpmlPcrSelection,
    TpmsPcrSelection, PCR_COUNT,
};

/// Command codes extended into policy digests (Part 2, 6.5.2).
pub(crate) mod cc {
    pub const POLICY_NV: u32 = 0x149;
    pub const POLICY_SECRET: u32 = 0x151;
    pub const POLICY_SIGNED: u32 = 0x160;
    pub const POLICY_AUTHORIZE: u32 = 0x16A;
    pub const POLICY_AUTH_VALUE: u32 = 0x16B;
    pub const POLICY_COMMAND_CODE: u32 = 0x16C;
    pub const POLICY_CP_HASH: u32 = 0x16E;
    pub const POLICY_NAME_HASH: u32 = 0x170;
    pub const POLICY_OR: u32 = 0x171;
    pub const POLICY_PCR: u32 = 0x17F;
}

/// TPM_EO: the comparison operators of TPM2_PolicyNV and TPM2_PolicyCounterTimer
/// (Part 2, 6.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Eo {
    Eq,
    Neq,
    SignedGt,
    UnsignedGt,
    SignedLt,
    UnsignedLt,
    SignedGe,
    UnsignedGe,
    SignedLe,
    UnsignedLe,
    BitSet,
    BitClear,
}

impl Unmarshal for Eo {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        Ok(match r.u16()? {
            0x0000 => Eo::Eq,
            0x0001 => Eo::Neq,
            0x0002 => Eo::SignedGt,
            0x0003 => Eo::UnsignedGt,
            0x0004 => Eo::SignedLt,
            0x0005 => Eo::UnsignedLt,
            0x0006 => Eo::SignedGe,
            0x0007 => Eo::UnsignedGe,
            0x0008 => Eo::SignedLe,
            0x0009 => Eo::UnsignedLe,
            0x000A => Eo::BitSet,
            0x000B => Eo::BitClear,
            _ => return Err(Rc::VALUE),
        })
    }
}

impl Eo {
    fn id(self) -> u16 {
        self as u16
    }

    /// Does `a` (the NV contents) relate to `b` (operandB) as this operator says? Both are
    /// big-endian integers of the same length; signed means two's complement.
    pub(crate) fn holds(self, a: &[u8], b: &[u8]) -> bool {
        use std::cmp::Ordering;
        let unsigned = a.cmp(b);
        let signed = match (
            a.first().is_some_and(|x| x & 0x80 != 0),
            b.first().is_some_and(|x| x & 0x80 != 0),
        ) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => unsigned,
        };
        let mut pairs = a.iter().zip(b.iter());
        match self {
            Eo::Eq => unsigned.is_eq(),
            Eo::Neq => unsigned.is_ne(),
            Eo::SignedGt => signed.is_gt(),
            Eo::UnsignedGt => unsigned.is_gt(),
            Eo::SignedLt => signed.is_lt(),
            Eo::UnsignedLt => unsigned.is_lt(),
            Eo::SignedGe => signed.is_ge(),
            Eo::UnsignedGe => unsigned.is_ge(),
            Eo::SignedLe => signed.is_le(),
            Eo::UnsignedLe => unsigned.is_le(),
            Eo::BitSet => pairs.all(|(x, y)| x & y == *y),
            Eo::BitClear => pairs.all(|(x, y)| x & y == 0),
        }
    }
}

/// The session a policy command works on: handle `index` (0-based) of the command.
#[derive(Clone, Copy)]
struct Policy {
    handle: u32,
    hash: HashAlg,
    trial: bool,
}

/// Look up the policy session in handle slot `index`. A session that is not loaded is
/// TPM_RC_REFERENCE_H0 + index, as for any unloaded session handle (Part 3, 5.6.3).
fn policy_session(tpm: &Tpm, c: &Ctx<'_>, index: usize) -> Result<Policy, Rc> {
    let h = c.handle(index);
    let n = index as u32;
    let s = tpm.vol.sessions.get(&h).ok_or(Rc(Rc::REFERENCE_H0.0 + n))?;
    if s.kind == SessionType::Hmac {
        return Err(Rc::HANDLE.handle(n + 1));
    }
    Ok(Policy {
        handle: h,
        hash: s.hash,
        trial: s.kind == SessionType::Trial,
    })
}

fn state(tpm: &Tpm, p: Policy) -> Result<&PolicyState, Rc> {
    tpm.vol
        .sessions
        .get(&p.handle)
        .map(|s| &s.policy)
        .ok_or(Rc::FAILURE)
}

fn state_mut(tpm: &mut Tpm, p: Policy) -> Result<&mut PolicyState, Rc> {
    tpm.vol
        .sessions
        .get_mut(&p.handle)
        .map(|s| &mut s.policy)
        .ok_or(Rc::FAILURE)
}

/// policyDigest' := H(policyDigest || parts...).
fn extend(state: &mut PolicyState, hash: HashAlg, parts: &[&[u8]]) {
    let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
    all.push(&state.digest);
    all.extend_from_slice(parts);
    state.digest = hash.digest(&all);
}

/// PolicyUpdate (Part 3, 23.2): policyDigest' := H(H(policyDigest || code || name) || ref).
fn policy_update(
    state: &mut PolicyState,
    hash: HashAlg,
    code: u32,
    name: &[u8],
    policy_ref: &[u8],
) {
    extend(state, hash, &[&code.to_be_bytes(), name]);
    extend(state, hash, &[policy_ref]);
}

/// TPM2_PolicyRestart (Part 3, 11.2): back to the state of a freshly started session.
pub(crate) fn policy_restart(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    c.end_params()?;
    *state_mut(tpm, p)? = PolicyState {
        digest: vec![0; p.hash.size()],
        ..PolicyState::default()
    };
    let now = tpm.time();
    if let Some(s) = tpm.vol.sessions.get_mut(&p.handle) {
        s.start_time = now;
    }
    Ok(())
}

/// TPM2_PolicyGetDigest (Part 3, 23.19).
pub(crate) fn policy_get_digest(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    c.end_params()?;
    let digest = state(tpm, p)?.digest.clone();
    c.put(&Tpm2bDigest(digest));
    Ok(())
}

/// TPM2_PolicyCommandCode (Part 3, 23.11).
pub(crate) fn policy_command_code(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    let code: u32 = c.param()?;
    c.end_params()?;
    let s = state_mut(tpm, p)?;
    if s.command_code.is_some_and(|cc| cc != code) {
        return Err(Rc::VALUE.param(1));
    }
    if lookup(code).is_none() {
        return Err(Rc::POLICY_CC.param(1));
    }
    extend(
        s,
        p.hash,
        &[&cc::POLICY_COMMAND_CODE.to_be_bytes(), &code.to_be_bytes()],
    );
    s.command_code = Some(code);
    Ok(())
}

/// TPM2_PolicyAuthValue (Part 3, 23.17): the authorized entity's authValue keys the HMAC.
pub(crate) fn policy_auth_value(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    c.end_params()?;
    let s = state_mut(tpm, p)?;
    extend(s, p.hash, &[&cc::POLICY_AUTH_VALUE.to_be_bytes()]);
    s.is_auth_value_needed = true;
    s.is_password_needed = false;
    Ok(())
}

/// TPM2_PolicyPassword (Part 3, 23.18): the authValue is sent in the clear. The digest is
/// the one of TPM2_PolicyAuthValue.
pub(crate) fn policy_password(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    c.end_params()?;
    let s = state_mut(tpm, p)?;
    extend(s, p.hash, &[&cc::POLICY_AUTH_VALUE.to_be_bytes()]);
    s.is_password_needed = true;
    s.is_auth_value_needed = false;
    Ok(())
}

/// TPM2_PolicyCpHash (Part 3, 23.13). cpHash and nameHash exclude each other.
pub(crate) fn policy_cp_hash(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    let cp_hash: Tpm2bDigest = c.param()?;
    c.end_params()?;
    if cp_hash.len() != p.hash.size() {
        return Err(Rc::SIZE.param(1));
    }
    let s = state_mut(tpm, p)?;
    if s.name_hash.is_some()
        || s.cp_hash
            .as_ref()
            .is_some_and(|d| d.as_slice() != cp_hash.as_slice())
    {
        return Err(Rc::CPHASH);
    }
    extend(
        s,
        p.hash,
        &[&cc::POLICY_CP_HASH.to_be_bytes(), cp_hash.as_slice()],
    );
    s.cp_hash = Some(cp_hash.0);
    Ok(())
}

/// TPM2_PolicyNameHash (Part 3, 23.14): may be set once, and not with a cpHash.
pub(crate) fn policy_name_hash(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    let name_hash: Tpm2bDigest = c.param()?;
    c.end_params()?;
    if name_hash.len() != p.hash.size() {
        return Err(Rc::SIZE.param(1));
    }
    let s = state_mut(tpm, p)?;
    if s.cp_hash.is_some() || s.name_hash.is_some() {
        return Err(Rc::CPHASH);
    }
    extend(
        s,
        p.hash,
        &[&cc::POLICY_NAME_HASH.to_be_bytes(), name_hash.as_slice()],
    );
    s.name_hash = Some(name_hash.0);
    Ok(())
}

/// TPM2_PolicyOR (Part 3, 23.6): the current digest must be one of the list (any digest in
/// a trial session); the new digest is H(0...0 || TPM_CC_PolicyOR || digests).
pub(crate) fn policy_or(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    let list: TpmlDigest = c.param()?;
    c.end_params()?;
    // TPML_DIGEST carries 2 to 8 digests for TPM2_PolicyOR (Part 2, 10.9.3).
    if list.0.len() < 2 {
        return Err(Rc::SIZE.param(1));
    }
    let s = state_mut(tpm, p)?;
    if !p.trial && !list.0.iter().any(|d| d.as_slice() == s.digest.as_slice()) {
        return Err(Rc::VALUE.param(1));
    }
    let zeros = vec![0u8; p.hash.size()];
    let code = cc::POLICY_OR.to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![&zeros, &code];
    parts.extend(list.0.iter().map(Tpm2bDigest::as_slice));
    s.digest = p.hash.digest(&parts);
    Ok(())
}

/// The PCR selection with the PCRs that are not allocated removed, and the digest of the
/// selected values with `hash` (PCRComputeCurrentDigest). An unknown bank is TPM_RC_HASH.
fn pcr_digest(
    tpm: &Tpm,
    hash: HashAlg,
    sel: &TpmlPcrSelection,
) -> Result<(TpmlPcrSelection, Vec<u8>), Rc> {
    let mut filtered = Vec::with_capacity(sel.0.len());
    let mut values: Vec<&[u8]> = Vec::new();
    for s in &sel.0 {
        let bank = HashAlg::from_id(s.hash).ok_or(Rc::HASH)?;
        let mask = s.mask() & tpm.vol.pcrs.allocation.mask(bank);
        for pcr in 0..PCR_COUNT {
            if mask & (1 << pcr) != 0 {
                if let Some(v) = tpm.vol.pcrs.get(bank, pcr) {
                    values.push(v);
                }
            }
        }
        let mut f = TpmsPcrSelection::from_mask(s.hash, mask);
        f.select.resize(s.select.len(), 0);
        filtered.push(f);
    }
    Ok((TpmlPcrSelection(filtered), hash.digest(&values)))
}

/// TPM2_PolicyPCR (Part 3, 23.7): digest' := H(digest || TPM_CC_PolicyPCR || pcrs ||
/// pcrDigest), pcrDigest being the digest of the selected PCRs. A policy session records
/// the PCR update counter, which must not change before the session is used.
pub(crate) fn policy_pcr(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    let expected: Tpm2bDigest = c.param()?;
    let pcrs: TpmlPcrSelection = c.param()?;
    c.end_params()?;
    let (pcrs, current) = pcr_digest(tpm, p.hash, &pcrs).map_err(|rc| rc.param(2))?;
    let counter = tpm.vol.pcr_update_counter;
    let s = state_mut(tpm, p)?;
    let digest = if p.trial {
        if expected.is_empty() {
            current
        } else {
            expected.0
        }
    } else {
        if s.pcr_counter.is_some_and(|old| old != counter) {
            return Err(Rc::PCR_CHANGED);
        }
        if !expected.is_empty() && expected.as_slice() != current.as_slice() {
            return Err(Rc::VALUE.param(1));
        }
        current
    };
    extend(
        s,
        p.hash,
        &[&cc::POLICY_PCR.to_be_bytes(), &pcrs.to_bytes(), &digest],
    );
    if !p.trial {
        s.pcr_counter = Some(counter);
    }
    Ok(())
}

/// The hierarchy an entity belongs to (EntityGetHierarchy), for tickets.
fn entity_hierarchy(tpm: &Tpm, h: u32) -> u32 {
    match handle::ht(h) {
        handle::HT_PERMANENT => match h {
            handle::PLATFORM | handle::PLATFORM_NV => handle::PLATFORM,
            handle::ENDORSEMENT => handle::ENDORSEMENT,
            handle::NULL => handle::NULL,
            _ => handle::OWNER,
        },
        handle::HT_NV_INDEX => match tpm.perm.nv.get(&h) {
            Some(i) if i.public.attributes & nv_attr::PLATFORMCREATE != 0 => handle::PLATFORM,
            _ => handle::OWNER,
        },
        handle::HT_TRANSIENT | handle::HT_PERSISTENT => {
            tpm.with_key(h, |o| Ok(o.hierarchy)).unwrap_or(handle::NULL)
        }
        _ => handle::OWNER,
    }
}

/// Milliseconds since the last _TPM_Init (TPMS_TIME_INFO.time, g_time of the reference).
fn now(tpm: &Tpm) -> u64 {
    tpm.time()
}

/// The high bit of the returned timeout marks an authorization that expires on TPM Reset.
const EXPIRES_ON_RESET: u64 = 1 << 63;

/// The parameters TPM2_PolicySigned and TPM2_PolicySecret share, and their numbers.
struct Authorization {
    nonce_tpm: Tpm2bDigest,
    cp_hash: Tpm2bDigest,
    policy_ref: Tpm2bDigest,
    expiration: i32,
}

/// ComputeAuthTimeout and PolicyParameterChecks (Part 3, 23.2): the nonce must be the
/// session's, the expiration in the future, and a cpHashA of the session's digest size
/// agreeing with one already recorded. Returns the authorization's timeout (0 for none).
///
/// With nonceTPM the expiration counts from the session's start (or last policy reset);
/// without, it is an absolute TPM time. The engine refuses the session once it has passed.
fn check_authorization(tpm: &Tpm, p: Policy, a: &Authorization) -> Result<u64, Rc> {
    let st = state(tpm, p)?;
    let session = tpm.vol.sessions.get(&p.handle);
    let session_nonce = session.map(|s| s.nonce_tpm.as_slice()).unwrap_or(&[]);
    let start = session.map_or(0, |s| s.start_time);
    let now = now(tpm);
    let timeout = if a.expiration == 0 {
        0
    } else {
        let secs = u64::from(a.expiration.unsigned_abs());
        if a.nonce_tpm.is_empty() {
            (secs * 1000).saturating_add(now % 1000)
        } else {
            start.saturating_add(secs * 1000)
        }
    };
    if !a.nonce_tpm.is_empty() && a.nonce_tpm.as_slice() != session_nonce {
        return Err(Rc::NONCE.param(1));
    }
    if timeout != 0 && timeout < now {
        return Err(Rc::EXPIRED.param(4));
    }
    if !a.cp_hash.is_empty() {
        if a.cp_hash.len() != p.hash.size() {
            return Err(Rc::SIZE.param(2));
        }
        if st.name_hash.is_some()
            || st
                .cp_hash
                .as_ref()
                .is_some_and(|d| d.as_slice() != a.cp_hash.as_slice())
        {
            return Err(Rc::CPHASH);
        }
    }
    Ok(timeout)
}

/// The response of TPM2_PolicySigned and TPM2_PolicySecret: when the expiration is negative
/// (a real session only) a timeout and a TPMT_TK_AUTH,
/// HMAC(proof, tag || timeout || [resetCount] || cpHashA || policyRef || authName) (Part 2,
/// 10.7.5; the reset count is included when the ticket expires on TPM Reset, i.e. without
/// nonceTPM), else an empty timeout and a NULL ticket. TPM2_PolicyTicket must check tickets
/// against the same parts.
#[allow(clippy::too_many_arguments)]
fn authorization_output(
    tpm: &Tpm,
    c: &mut Ctx<'_>,
    p: Policy,
    a: &Authorization,
    tag: u16,
    entity: u32,
    name: &[u8],
    timeout: u64,
) {
    if a.expiration < 0 && !p.trial {
        let hierarchy = entity_hierarchy(tpm, entity);
        let expires_on_reset = a.nonce_tpm.is_empty();
        let timeout_bytes = timeout.to_be_bytes();
        let reset = tpm.perm.reset_count.to_be_bytes();
        let reset: &[u8] = if expires_on_reset { &reset } else { &[] };
        let ticket = tpm.ticket(
            tag,
            hierarchy,
            &[
                &timeout_bytes,
                reset,
                a.cp_hash.as_slice(),
                a.policy_ref.as_slice(),
                name,
            ],
        );
        let flagged = if expires_on_reset {
            timeout | EXPIRES_ON_RESET
        } else {
            timeout
        };
        // TPM2B_TIMEOUT, then the marshaled TPMT_TK_AUTH.
        c.put(&Tpm2bDigest(flagged.to_be_bytes().to_vec()));
        c.out.extend_from_slice(&ticket);
    } else {
        c.put(&Tpm2bDigest::default());
        c.put(&tag);
        c.put(&handle::NULL);
        c.put(&Tpm2bDigest::default());
    }
}

fn read_authorization(c: &mut Ctx<'_>) -> Result<Authorization, Rc> {
    let nonce_tpm: Tpm2bDigest = c.param()?;
    let cp_hash: Tpm2bDigest = c.param()?;
    let policy_ref: Tpm2bDigest = c.param()?;
    let expiration: u32 = c.param()?;
    Ok(Authorization {
        nonce_tpm,
        cp_hash,
        policy_ref,
        expiration: i32::from_be_bytes(expiration.to_be_bytes()),
    })
}

/// Keep the earliest timeout of all authorizations in a policy.
fn record_timeout(s: &mut PolicyState, timeout: u64) {
    if timeout != 0 {
        s.timeout = Some(s.timeout.map_or(timeout, |t| t.min(timeout)));
    }
}

/// TPM2_PolicySecret (Part 3, 23.4). The engine has already checked the authorization of
/// authHandle; the policy records the entity's Name and policyRef.
pub(crate) fn policy_secret(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 1)?;
    let a = read_authorization(c)?;
    c.end_params()?;
    let entity = c.handle(0);
    let name = tpm.entity_name(entity).map_err(|rc| rc.handle(1))?;
    let timeout = if p.trial {
        0
    } else {
        check_authorization(tpm, p, &a)?
    };
    let s = state_mut(tpm, p)?;
    record_timeout(s, timeout);
    policy_update(s, p.hash, cc::POLICY_SECRET, &name, a.policy_ref.as_slice());
    if !a.cp_hash.is_empty() {
        s.cp_hash = Some(a.cp_hash.0.clone());
    }
    authorization_output(tpm, c, p, &a, st::AUTH_SECRET, entity, &name, timeout);
    Ok(())
}

/// A TPMT_SIGNATURE parameter: its signing hash (None for TPM_ALG_NULL, which verifies
/// nothing) and the signature.
struct SignatureParam {
    hash: Option<HashAlg>,
    sig: Option<keys::Signature>,
}

impl Unmarshal for SignatureParam {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        if r.clone().u16()? == alg::NULL {
            r.u16()?;
            return Ok(SignatureParam {
                hash: None,
                sig: None,
            });
        }
        let sig = keys::Signature::read(r)?;
        Ok(SignatureParam {
            hash: Some(sig.hash),
            sig: Some(sig),
        })
    }
}

/// Verify a signature over `digest` with the loaded object `key` (CryptValidateSignature):
/// TPM_RC_KEY (handle 1) if it is not a signing key, else TPM_RC_SCHEME or
/// TPM_RC_SIGNATURE (parameter 5).
fn verify_with_object(tpm: &Tpm, key: u32, digest: &[u8], sig: &keys::Signature) -> Result<(), Rc> {
    tpm.with_key(key, |o| {
        if !o.public.has(object_attr::SIGN_ENCRYPT) {
            return Err(Rc::KEY.handle(1));
        }
        keys::verify(o, digest, sig).map_err(|rc| rc.param(5))
    })
    .map_err(|rc| if rc == Rc::HANDLE { rc.handle(1) } else { rc })
}

/// TPM2_PolicySigned (Part 3, 23.3): an authorization signed over
/// aHash := H_sigHash(nonceTPM || expiration || cpHashA || policyRef).
pub(crate) fn policy_signed(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 1)?;
    let a = read_authorization(c)?;
    let sig: SignatureParam = c.param()?;
    c.end_params()?;
    let key = c.handle(0);
    let name = tpm.entity_name(key).map_err(|rc| rc.handle(1))?;
    let timeout = if p.trial {
        0
    } else {
        let timeout = check_authorization(tpm, p, &a)?;
        let (Some(sig_hash), Some(signature)) = (sig.hash, sig.sig.as_ref()) else {
            return Err(Rc::SCHEME.param(5));
        };
        let a_hash = sig_hash.digest(&[
            a.nonce_tpm.as_slice(),
            &a.expiration.to_be_bytes(),
            a.cp_hash.as_slice(),
            a.policy_ref.as_slice(),
        ]);
        verify_with_object(tpm, key, &a_hash, signature)?;
        timeout
    };
    let s = state_mut(tpm, p)?;
    record_timeout(s, timeout);
    policy_update(s, p.hash, cc::POLICY_SIGNED, &name, a.policy_ref.as_slice());
    if !a.cp_hash.is_empty() {
        s.cp_hash = Some(a.cp_hash.0.clone());
    }
    authorization_output(tpm, c, p, &a, st::AUTH_SIGNED, key, &name, timeout);
    Ok(())
}

/// TPMT_TK_VERIFIED as a command parameter: the tag must be TPM_ST_VERIFIED and the
/// hierarchy a TPMI_RH_HIERARCHY+.
struct VerifiedTicket {
    hierarchy: u32,
    digest: Tpm2bDigest,
}

impl Unmarshal for VerifiedTicket {
    fn unmarshal(r: &mut Reader<'_>) -> Result<Self, Rc> {
        if r.u16()? != st::VERIFIED {
            return Err(Rc::TAG);
        }
        let hierarchy = r.u32()?;
        if !matches!(
            hierarchy,
            handle::OWNER | handle::ENDORSEMENT | handle::PLATFORM | handle::NULL
        ) {
            return Err(Rc::VALUE);
        }
        Ok(VerifiedTicket {
            hierarchy,
            digest: Tpm2bDigest::unmarshal(r)?,
        })
    }
}

/// TPM2_PolicyAuthorize (Part 3, 23.16): replace an approved policy by
/// H(H(0...0 || TPM_CC_PolicyAuthorize || keySign) || policyRef), given a ticket from
/// TPM2_VerifySignature over aHash := H_keyNameAlg(approvedPolicy || policyRef).
pub(crate) fn policy_authorize(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 0)?;
    let approved: Tpm2bDigest = c.param()?;
    let policy_ref: Tpm2bDigest = c.param()?;
    let key_sign: Tpm2bName = c.param()?;
    let ticket: VerifiedTicket = c.param()?;
    c.end_params()?;
    let name_alg = key_sign
        .as_slice()
        .get(..2)
        .and_then(|b| HashAlg::from_id(u16::from_be_bytes([*b.first()?, *b.get(1)?])))
        .ok_or(Rc::HASH.param(3))?;
    if key_sign.len() != 2 + name_alg.size() {
        return Err(Rc::SIZE.param(3));
    }
    if !p.trial {
        if approved.as_slice() != state(tpm, p)?.digest.as_slice() {
            return Err(Rc::VALUE.param(1));
        }
        let a_hash = name_alg.digest(&[approved.as_slice(), policy_ref.as_slice()]);
        // TPMT_TK_VERIFIED of TPM2_VerifySignature: HMAC(proof, TPM_ST_VERIFIED || aHash ||
        // keyName) (Part 2, 10.7.3); a NULL ticket never matches.
        if !tpm.ticket_valid(
            st::VERIFIED,
            ticket.hierarchy,
            ticket.digest.as_slice(),
            &[&a_hash, key_sign.as_slice()],
        ) {
            return Err(Rc::VALUE.param(4));
        }
    }
    let s = state_mut(tpm, p)?;
    s.digest = vec![0; p.hash.size()];
    policy_update(
        s,
        p.hash,
        cc::POLICY_AUTHORIZE,
        key_sign.as_slice(),
        policy_ref.as_slice(),
    );
    Ok(())
}

/// TPM2_PolicyNV (Part 3, 23.9): compare NV contents at `offset` with operandB; the digest
/// is H(digest || TPM_CC_PolicyNV || H(operandB || offset || operation) || nvIndexName).
pub(crate) fn policy_nv(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let p = policy_session(tpm, c, 2)?;
    let operand_b: Tpm2bDigest = c.param()?;
    let offset: u16 = c.param()?;
    let operation: Eo = c.param()?;
    c.end_params()?;
    let (auth_handle, nv) = (c.handle(0), c.handle(1));
    let idx = tpm.perm.nv.get(&nv).ok_or(Rc::HANDLE.handle(2))?;
    tpm.nv_hierarchy_enabled(idx.public.attributes)
        .map_err(|rc| rc.handle(2))?;
    if !p.trial {
        let attrs = idx.public.attributes;
        // NvReadAccessChecks. With the index authorizing itself, the engine has checked
        // the session against AUTHREAD (password/HMAC) or POLICYREAD (policy).
        let allowed = match auth_handle {
            handle::OWNER => attrs & nv_attr::OWNERREAD != 0,
            handle::PLATFORM => attrs & nv_attr::PPREAD != 0,
            h if h == nv => attrs & (nv_attr::AUTHREAD | nv_attr::POLICYREAD) != 0,
            _ => false,
        };
        if !allowed {
            return Err(Rc::NV_AUTHORIZATION);
        }
        if attrs & nv_attr::READLOCKED != 0 {
            return Err(Rc::NV_LOCKED);
        }
        if attrs & nv_attr::WRITTEN == 0 {
            return Err(Rc::NV_UNINITIALIZED);
        }
        let size = idx.data.len();
        let start = usize::from(offset);
        if start > size {
            return Err(Rc::VALUE.param(2));
        }
        if size - start < operand_b.len() {
            return Err(Rc::SIZE.param(1));
        }
        let a = idx
            .data
            .get(start..start + operand_b.len())
            .ok_or(Rc::SIZE.param(1))?;
        if !operation.holds(a, operand_b.as_slice()) {
            return Err(Rc::POLICY);
        }
    }
    let name = tpm.entity_name(nv).map_err(|rc| rc.handle(2))?;
    let args = p.hash.digest(&[
        operand_b.as_slice(),
        &offset.to_be_bytes(),
        &operation.id().to_be_bytes(),
    ]);
    let s = state_mut(tpm, p)?;
    extend(s, p.hash, &[&cc::POLICY_NV.to_be_bytes(), &args, &name]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_operators() {
        let (a, b) = ([0x00, 0x05], [0x00, 0x03]);
        assert!(Eo::UnsignedGt.holds(&a, &b));
        assert!(Eo::SignedGt.holds(&a, &b));
        assert!(Eo::Neq.holds(&a, &b));
        assert!(!Eo::Eq.holds(&a, &b));
        // 0xFF.. is -1 signed, the largest unsigned.
        let (neg, pos) = ([0xFF, 0xFF], [0x00, 0x01]);
        assert!(Eo::SignedLt.holds(&neg, &pos));
        assert!(Eo::UnsignedGt.holds(&neg, &pos));
        assert!(Eo::SignedLe.holds(&neg, &neg) && Eo::SignedGe.holds(&neg, &neg));
        assert!(Eo::BitSet.holds(&[0b1011], &[0b0011]));
        assert!(!Eo::BitSet.holds(&[0b1001], &[0b0011]));
        assert!(Eo::BitClear.holds(&[0b1000], &[0b0011]));
        assert!(!Eo::BitClear.holds(&[0b1010], &[0b0011]));
        // Two negatives compare as their unsigned encodings: -2 < -1.
        assert!(Eo::SignedLt.holds(&[0xFE], &[0xFF]));
    }

    #[test]
    fn eo_unmarshal_rejects_unknown_operators() {
        assert_eq!(Eo::from_bytes(&[0, 0x0B]), Ok(Eo::BitClear));
        assert_eq!(Eo::from_bytes(&[0, 0x0C]), Err(Rc::VALUE));
    }
}
