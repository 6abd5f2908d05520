//! NV storage commands (Part 3, 31): define, undefine, read, write, counters, bit fields,
//! extend indices, locks, authorization change and public area, with every TPMA_NV rule.

use super::Ctx;
use crate::codec::Marshal;
use crate::engine::{trim_zeros, Tpm};
use crate::hash::HashAlg;
use crate::rc::Rc;
use crate::state::NvIndex;
use crate::types::{
    handle, nv_attr as a, NvType, Tpm2bDigest, Tpm2bMaxNvBuffer, Tpm2bName, Tpm2bNvPublic,
    TpmsNvPublic, MAX_NV_BUFFER_SIZE, MAX_NV_INDEX_SIZE,
};

/// Limits of this TPM's NV memory.
pub(crate) const MAX_NV_INDICES: usize = 256;
pub(crate) const NV_MEMORY: usize = 128 * 1024;

/// The Name of an NV index: nameAlg || H_nameAlg(TPMS_NV_PUBLIC) (Part 1, 16).
pub(crate) fn nv_name(public: &TpmsNvPublic) -> Vec<u8> {
    let mut name = public.name_alg.to_be_bytes().to_vec();
    if let Some(alg) = HashAlg::from_id(public.name_alg) {
        name.extend_from_slice(&alg.digest(&[&public.to_bytes()]));
    }
    name
}

fn index(tpm: &Tpm, h: u32, hn: u32) -> Result<&NvIndex, Rc> {
    let idx = tpm.perm.nv.get(&h).ok_or(Rc::HANDLE.handle(hn))?;
    tpm.nv_hierarchy_enabled(idx.public.attributes)
        .map_err(|rc| rc.handle(hn))?;
    Ok(idx)
}

fn index_mut(tpm: &mut Tpm, h: u32) -> Result<&mut NvIndex, Rc> {
    tpm.perm.nv.get_mut(&h).ok_or(Rc::HANDLE.handle(2))
}

/// The attribute bits that grant one kind of access (Part 1, 37.3: the NV access checks).
struct Rights {
    platform: u32,
    owner: u32,
    auth: u32,
    policy: u32,
    locked: u32,
}

const READ: Rights = Rights {
    platform: a::PPREAD,
    owner: a::OWNERREAD,
    auth: a::AUTHREAD,
    policy: a::POLICYREAD,
    locked: a::READLOCKED,
};

const WRITE: Rights = Rights {
    platform: a::PPWRITE,
    owner: a::OWNERWRITE,
    auth: a::AUTHWRITE,
    policy: a::POLICYWRITE,
    locked: a::WRITELOCKED,
};

/// NvReadAccessChecks / NvWriteAccessChecks: the authorizing handle must be one the
/// attributes permit for this access, and the index must not be locked against it.
fn access(
    rights: &Rights,
    auth_handle: u32,
    nv_index: u32,
    attrs: u32,
    policy: bool,
) -> Result<(), Rc> {
    let ok = match auth_handle {
        handle::PLATFORM => attrs & rights.platform != 0,
        handle::OWNER => attrs & rights.owner != 0,
        h if h == nv_index => {
            let right = if policy { rights.policy } else { rights.auth };
            if attrs & right == 0 {
                return Err(Rc::AUTH_UNAVAILABLE);
            }
            true
        }
        _ => false,
    };
    if !ok {
        return Err(Rc::NV_AUTHORIZATION);
    }
    if attrs & rights.locked != 0 {
        return Err(Rc::NV_LOCKED);
    }
    Ok(())
}

/// NvReadAccessChecks.
pub(crate) fn read_access(
    auth_handle: u32,
    nv_index: u32,
    attrs: u32,
    policy: bool,
) -> Result<(), Rc> {
    access(&READ, auth_handle, nv_index, attrs, policy)
}

/// NvWriteAccessChecks.
fn write_access(auth_handle: u32, nv_index: u32, attrs: u32, policy: bool) -> Result<(), Rc> {
    access(&WRITE, auth_handle, nv_index, attrs, policy)
}

/// TPM2_NV_DefineSpace (Part 3, 31.3).
pub(crate) fn define_space(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let auth: Tpm2bDigest = c.param()?;
    let public: Tpm2bNvPublic = c.param()?;
    c.end_params()?;
    let p = public.0;
    let attrs = p.attributes;
    let platform = c.handle(0) == handle::PLATFORM;
    if handle::ht(p.nv_index) != handle::HT_NV_INDEX {
        return Err(Rc::VALUE.param(2));
    }
    let name_alg = HashAlg::from_id(p.name_alg).ok_or(Rc::HASH.param(2))?;
    if attrs & a::RESERVED != 0 {
        return Err(Rc::RESERVED_BITS.param(2));
    }
    if auth.len() > name_alg.size() {
        return Err(Rc::SIZE.param(1));
    }
    if !p.auth_policy.is_empty() && p.auth_policy.len() != name_alg.size() {
        return Err(Rc::SIZE.param(2));
    }
    let attr_err = Err(Rc::ATTRIBUTES.param(2));
    // Platform-created indices are defined with platform authorization, and only those.
    if platform != (attrs & a::PLATFORMCREATE != 0) {
        return attr_err;
    }
    if attrs & a::POLICY_DELETE != 0 && !platform {
        return attr_err;
    }
    // The TPM sets these; a caller may not.
    if attrs & (a::WRITTEN | a::READLOCKED | a::WRITELOCKED) != 0 {
        return attr_err;
    }
    if attrs & (a::PPREAD | a::OWNERREAD | a::AUTHREAD | a::POLICYREAD) == 0
        || attrs & (a::PPWRITE | a::OWNERWRITE | a::AUTHWRITE | a::POLICYWRITE) == 0
    {
        return attr_err;
    }
    let size = usize::from(p.data_size);
    match NvType::from_attributes(attrs) {
        Some(NvType::Ordinary) => {
            if size > MAX_NV_INDEX_SIZE {
                return Err(Rc::SIZE.param(2));
            }
        }
        Some(NvType::Counter) | Some(NvType::Bits) => {
            if size != 8 {
                return Err(Rc::SIZE.param(2));
            }
            if NvType::from_attributes(attrs) == Some(NvType::Counter)
                && attrs & a::CLEAR_STCLEAR != 0
            {
                return attr_err;
            }
        }
        Some(NvType::Extend) => {
            if size != name_alg.size() {
                return Err(Rc::SIZE.param(2));
            }
        }
        // PIN indices are not implemented; undefined types are invalid.
        _ => return attr_err,
    }
    if attrs & a::WRITEALL != 0 && NvType::from_attributes(attrs) != Some(NvType::Ordinary) {
        return attr_err;
    }
    if tpm.perm.nv.contains_key(&p.nv_index) {
        return Err(Rc::NV_DEFINED);
    }
    let used: usize = tpm.perm.nv.values().map(|i| i.data.len() + 128).sum();
    if tpm.perm.nv.len() >= MAX_NV_INDICES || used + size + 128 > NV_MEMORY {
        return Err(Rc::NV_SPACE);
    }
    let auth = trim_zeros(auth.as_slice()).to_vec();
    tpm.perm.nv.insert(
        p.nv_index,
        NvIndex {
            data: vec![0xFF; size],
            public: p,
            auth,
        },
    );
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_UndefineSpace (Part 3, 31.4).
pub(crate) fn undefine_space(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let (auth_handle, h) = (c.handle(0), c.handle(1));
    let attrs = index(tpm, h, 2)?.public.attributes;
    if attrs & a::POLICY_DELETE != 0 {
        return Err(Rc::ATTRIBUTES.handle(2));
    }
    if auth_handle == handle::OWNER && attrs & a::PLATFORMCREATE != 0 {
        return Err(Rc::NV_AUTHORIZATION);
    }
    tpm.perm.nv.remove(&h);
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_ReadPublic (Part 3, 31.6).
pub(crate) fn read_public(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let idx = index(tpm, c.handle(0), 1)?;
    let public = idx.public.clone();
    let name = nv_name(&public);
    c.put(&Tpm2bNvPublic(public));
    c.put(&Tpm2bName(name));
    Ok(())
}

/// TPM2_NV_Read (Part 3, 31.13).
pub(crate) fn read(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let size: u16 = c.param()?;
    let offset: u16 = c.param()?;
    c.end_params()?;
    let (auth_handle, h) = (c.handle(0), c.handle(1));
    let idx = index(tpm, h, 2)?;
    read_access(auth_handle, h, idx.public.attributes, c.policy_auth[0])?;
    if idx.public.attributes & a::WRITTEN == 0 {
        return Err(Rc::NV_UNINITIALIZED);
    }
    if usize::from(size) > MAX_NV_BUFFER_SIZE {
        return Err(Rc::VALUE.param(1));
    }
    let end = usize::from(offset) + usize::from(size);
    let data = idx
        .data
        .get(usize::from(offset)..end)
        .ok_or(Rc::NV_RANGE)?
        .to_vec();
    c.put(&Tpm2bMaxNvBuffer(data));
    Ok(())
}

/// Common preamble of the writing commands: access checks and the index type.
fn writable(tpm: &Tpm, c: &Ctx<'_>, want: NvType) -> Result<u32, Rc> {
    let (auth_handle, h) = (c.handle(0), c.handle(1));
    let idx = index(tpm, h, 2)?;
    let attrs = idx.public.attributes;
    write_access(auth_handle, h, attrs, c.policy_auth[0])?;
    if NvType::from_attributes(attrs) != Some(want) {
        return Err(Rc::ATTRIBUTES.handle(2));
    }
    Ok(attrs)
}

/// TPM2_NV_Write (Part 3, 31.7).
pub(crate) fn write(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let data: Tpm2bMaxNvBuffer = c.param()?;
    let offset: u16 = c.param()?;
    c.end_params()?;
    let attrs = writable(tpm, c, NvType::Ordinary)?;
    let idx = index_mut(tpm, c.handle(1))?;
    let start = usize::from(offset);
    let end = start + data.len();
    if end > idx.data.len() {
        return Err(Rc::NV_RANGE);
    }
    if attrs & a::WRITEALL != 0 && (start != 0 || end != idx.data.len()) {
        return Err(Rc::NV_RANGE);
    }
    if let Some(dst) = idx.data.get_mut(start..end) {
        dst.copy_from_slice(data.as_slice());
    }
    idx.public.attributes |= a::WRITTEN;
    tpm.nv_changed();
    Ok(())
}

fn read_u64(data: &[u8]) -> u64 {
    data.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// TPM2_NV_Increment (Part 3, 31.8): a new counter starts above every counter's past values.
pub(crate) fn increment(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    writable(tpm, c, NvType::Counter)?;
    let max_counter = tpm.perm.max_counter;
    let idx = index_mut(tpm, c.handle(1))?;
    let current = if idx.public.attributes & a::WRITTEN != 0 {
        read_u64(&idx.data)
    } else {
        max_counter
    };
    let next = current.checked_add(1).ok_or(Rc::NV_RANGE)?;
    idx.data = next.to_be_bytes().to_vec();
    idx.public.attributes |= a::WRITTEN;
    tpm.perm.max_counter = tpm.perm.max_counter.max(next);
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_Extend (Part 3, 31.9): data := H_nameAlg(data || input), starting from zeros.
pub(crate) fn extend(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let input: Tpm2bMaxNvBuffer = c.param()?;
    c.end_params()?;
    writable(tpm, c, NvType::Extend)?;
    let idx = index_mut(tpm, c.handle(1))?;
    let alg = HashAlg::from_id(idx.public.name_alg).ok_or(Rc::HASH)?;
    if idx.public.attributes & a::WRITTEN == 0 {
        idx.data = vec![0; alg.size()];
    }
    idx.data = alg.digest(&[&idx.data, input.as_slice()]);
    idx.public.attributes |= a::WRITTEN;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_SetBits (Part 3, 31.10): data := data | bits, starting from zero.
pub(crate) fn set_bits(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let bits: u64 = c.param()?;
    c.end_params()?;
    writable(tpm, c, NvType::Bits)?;
    let idx = index_mut(tpm, c.handle(1))?;
    let current = if idx.public.attributes & a::WRITTEN != 0 {
        read_u64(&idx.data)
    } else {
        0
    };
    idx.data = (current | bits).to_be_bytes().to_vec();
    idx.public.attributes |= a::WRITTEN;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_WriteLock (Part 3, 31.11).
pub(crate) fn write_lock(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let (auth_handle, h) = (c.handle(0), c.handle(1));
    let attrs = index(tpm, h, 2)?.public.attributes;
    if attrs & (a::WRITEDEFINE | a::WRITE_STCLEAR) == 0 {
        return Err(Rc::ATTRIBUTES.handle(2));
    }
    write_access(auth_handle, h, attrs & !a::WRITELOCKED, c.policy_auth[0])?;
    index_mut(tpm, h)?.public.attributes |= a::WRITELOCKED;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_ReadLock (Part 3, 31.14).
pub(crate) fn read_lock(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let (auth_handle, h) = (c.handle(0), c.handle(1));
    let attrs = index(tpm, h, 2)?.public.attributes;
    if attrs & a::READ_STCLEAR == 0 {
        return Err(Rc::ATTRIBUTES.handle(2));
    }
    read_access(auth_handle, h, attrs & !a::READLOCKED, c.policy_auth[0])?;
    index_mut(tpm, h)?.public.attributes |= a::READLOCKED;
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_GlobalWriteLock (Part 3, 31.12).
pub(crate) fn global_write_lock(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    for idx in tpm.perm.nv.values_mut() {
        if idx.public.attributes & a::GLOBALLOCK != 0 {
            idx.public.attributes |= a::WRITELOCKED;
        }
    }
    tpm.nv_changed();
    Ok(())
}

/// TPM2_NV_ChangeAuth (Part 3, 31.15). Reached only through a policy session (ADMIN role).
pub(crate) fn change_auth(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let new_auth: Tpm2bDigest = c.param()?;
    c.end_params()?;
    let h = c.handle(0);
    let alg = HashAlg::from_id(index(tpm, h, 1)?.public.name_alg).ok_or(Rc::HASH)?;
    if new_auth.len() > alg.size() {
        return Err(Rc::SIZE.param(1));
    }
    index_mut(tpm, h)?.auth = trim_zeros(new_auth.as_slice()).to_vec();
    tpm.nv_changed();
    Ok(())
}
