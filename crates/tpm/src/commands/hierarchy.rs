//! Hierarchy and dictionary-attack commands (Part 3, 24.6-24.11 and 25): HierarchyChangeAuth,
//! HierarchyControl, Clear, ClearControl, ChangeEPS, ChangePPS, DictionaryAttackLockReset,
//! DictionaryAttackParameters.

use super::Ctx;
use crate::engine::{trim_zeros, Object, Tpm};
use crate::rc::Rc;
use crate::types::{handle, nv_attr, Tpm2bDigest};

/// Flush the loaded objects of a hierarchy (when it is disabled or its seed changes).
fn flush_hierarchy(tpm: &mut Tpm, hierarchy: u32) {
    tpm.vol
        .objects
        .retain(|_, o| !matches!(o, Object::Key(k) if k.hierarchy == hierarchy));
}

/// Drop a hierarchy's persistent objects.
fn evict_hierarchy(tpm: &mut Tpm, hierarchy: u32) {
    let doomed: Vec<u32> = tpm
        .perm
        .persistent
        .keys()
        .copied()
        .filter(|h| {
            tpm.key_object(*h)
                .map(|o| o.hierarchy == hierarchy)
                .unwrap_or(true)
        })
        .collect();
    for h in doomed {
        tpm.perm.persistent.remove(&h);
    }
}

fn fresh_seed(tpm: &mut Tpm) -> [u8; 64] {
    let mut s = [0u8; 64];
    tpm.random(&mut s);
    s
}

/// TPM2_HierarchyChangeAuth (Part 3, 24.8).
pub(crate) fn hierarchy_change_auth(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let new_auth: Tpm2bDigest = c.param()?;
    c.end_params()?;
    // Trailing zeros go first; what remains may be no larger than the largest digest
    // (firmware such as OVMF sizes the platform password by the largest bank it sees).
    let auth = trim_zeros(new_auth.as_slice()).to_vec();
    if auth.len() > crate::types::MAX_DIGEST_SIZE {
        return Err(Rc::SIZE.param(1));
    }
    match c.handle(0) {
        handle::OWNER => tpm.perm.owner_auth = auth,
        handle::ENDORSEMENT => tpm.perm.endorsement_auth = auth,
        handle::LOCKOUT => tpm.perm.lockout_auth = auth,
        handle::PLATFORM => tpm.vol.platform_auth = auth,
        _ => return Err(Rc::VALUE.handle(1)),
    }
    tpm.nv_changed();
    Ok(())
}

/// TPM2_HierarchyControl (Part 3, 24.9): only the platform may enable; owner and endorsement
/// may disable only themselves.
pub(crate) fn hierarchy_control(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let enable: u32 = c.param()?;
    let state: u8 = c.param()?;
    c.end_params()?;
    if !matches!(
        enable,
        handle::OWNER | handle::ENDORSEMENT | handle::PLATFORM | handle::PLATFORM_NV
    ) {
        return Err(Rc::VALUE.param(1));
    }
    if state > 1 {
        return Err(Rc::VALUE.param(2));
    }
    let auth = c.handle(0);
    if auth != handle::PLATFORM && (state == 1 || enable != auth) {
        return Err(Rc::AUTH_TYPE);
    }
    let on = state == 1;
    match enable {
        handle::OWNER => tpm.vol.sh_enable = on,
        handle::ENDORSEMENT => tpm.vol.eh_enable = on,
        handle::PLATFORM => tpm.vol.ph_enable = on,
        _ => tpm.vol.ph_enable_nv = on,
    }
    if !on && enable != handle::PLATFORM_NV {
        flush_hierarchy(tpm, enable);
    }
    Ok(())
}

/// TPM2_Clear (Part 3, 24.6): a new storage hierarchy; owner-created NV indices and
/// persistent objects go; authorizations reset; the endorsement seed stays.
pub(crate) fn clear(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    if tpm.perm.disable_clear {
        return Err(Rc::DISABLED);
    }
    tpm.perm.storage_seed = fresh_seed(tpm);
    tpm.perm.storage_proof = fresh_seed(tpm);
    tpm.perm.endorsement_proof = fresh_seed(tpm);
    tpm.perm.owner_auth.clear();
    tpm.perm.endorsement_auth.clear();
    tpm.perm.lockout_auth.clear();
    tpm.perm
        .nv
        .retain(|_, i| i.public.attributes & nv_attr::PLATFORMCREATE != 0);
    evict_hierarchy(tpm, handle::OWNER);
    evict_hierarchy(tpm, handle::ENDORSEMENT);
    flush_hierarchy(tpm, handle::OWNER);
    flush_hierarchy(tpm, handle::ENDORSEMENT);
    tpm.vol.sh_enable = true;
    tpm.vol.eh_enable = true;
    tpm.perm.da.failed_tries = 0;
    tpm.perm.da.lockout_auth_enabled = true;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_ClearControl (Part 3, 24.7): lockoutAuth may only disable Clear; the platform may do both.
pub(crate) fn clear_control(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let disable: u8 = c.param()?;
    c.end_params()?;
    if disable > 1 {
        return Err(Rc::VALUE.param(1));
    }
    if c.handle(0) == handle::LOCKOUT && disable == 0 {
        return Err(Rc::AUTH_FAIL.handle(1));
    }
    tpm.perm.disable_clear = disable == 1;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_ChangeEPS (Part 3, 24.10): a new endorsement hierarchy (new EKs).
pub(crate) fn change_eps(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    tpm.perm.endorsement_seed = fresh_seed(tpm);
    tpm.perm.endorsement_proof = fresh_seed(tpm);
    tpm.perm.endorsement_auth.clear();
    evict_hierarchy(tpm, handle::ENDORSEMENT);
    flush_hierarchy(tpm, handle::ENDORSEMENT);
    tpm.nv_changed();
    Ok(())
}

/// TPM2_ChangePPS (Part 3, 24.11): a new platform hierarchy.
pub(crate) fn change_pps(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    tpm.perm.platform_seed = fresh_seed(tpm);
    tpm.perm.platform_proof = fresh_seed(tpm);
    evict_hierarchy(tpm, handle::PLATFORM);
    flush_hierarchy(tpm, handle::PLATFORM);
    tpm.nv_changed();
    Ok(())
}

/// TPM2_DictionaryAttackLockReset (Part 3, 25.2).
pub(crate) fn dictionary_attack_lock_reset(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    tpm.perm.da.failed_tries = 0;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_DictionaryAttackParameters (Part 3, 25.3).
pub(crate) fn dictionary_attack_parameters(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let max_tries: u32 = c.param()?;
    let recovery_time: u32 = c.param()?;
    let lockout_recovery: u32 = c.param()?;
    c.end_params()?;
    let da = &mut tpm.perm.da;
    da.max_tries = max_tries;
    da.recovery_time = recovery_time;
    da.lockout_recovery = lockout_recovery;
    da.failed_tries = da.failed_tries.min(max_tries);
    tpm.nv_changed();
    Ok(())
}
