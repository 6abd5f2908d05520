//! Object commands (Part 3, 12 and 24, 28): CreatePrimary, Create, CreateLoaded, Load,
//! LoadExternal, ReadPublic, ObjectChangeAuth, Unseal, EvictControl, ContextSave/ContextLoad.

use super::Ctx;
use crate::codec::{put_sized, Marshal, Reader};
use crate::engine::{Object, Tpm};
use crate::keys::{self, KeyObject};
use crate::object::{
    attr, CreationData, PublicParms, SensitiveCreate, Tpm2bContextData, Tpm2bData, Tpm2bPrivate,
    Tpm2bPublic, Tpm2bSensitive, TpmtPublic,
};
use crate::rc::Rc;
use crate::types::{handle, st, Tpm2bDigest, Tpm2bName, Tpm2bSensitiveData, TpmlPcrSelection};

/// Persistent object slots (TPM_PT_HR_PERSISTENT_MIN is 7; we allow more).
pub(crate) const MAX_PERSISTENT: usize = 64;

/// A template the spec allows to be a TPMT_PUBLIC (CreateLoaded's TPM2B_TEMPLATE is the same
/// bytes for our purposes).
fn read_template(c: &mut Ctx<'_>) -> Result<TpmtPublic, Rc> {
    let p: Tpm2bPublic = c.param()?;
    Ok(p.0)
}

/// Creation data, its hash and ticket (Part 3, 12.1 and 24.1).
#[allow(clippy::too_many_arguments)] // one argument per TPMS_CREATION_DATA input
fn creation(
    tpm: &Tpm,
    c: &Ctx<'_>,
    object: &KeyObject,
    parent_name_alg: u16,
    parent_name: &[u8],
    parent_qn: &[u8],
    outside_info: Vec<u8>,
    pcr_select: TpmlPcrSelection,
) -> Result<(CreationData, Vec<u8>, Vec<u8>), Rc> {
    let alg = object.public.name_alg;
    let pcr_digest = tpm.pcr_digest(alg, &pcr_select)?;
    let data = CreationData {
        pcr_select,
        pcr_digest,
        locality: 1u8 << c.locality.min(4),
        parent_name_alg,
        parent_name: parent_name.to_vec(),
        parent_qualified_name: parent_qn.to_vec(),
        outside_info,
    };
    let creation_hash = alg.digest(&[&data.to_bytes()]);
    let ticket = tpm.ticket(
        st::CREATION,
        object.hierarchy,
        &[&object.name, &creation_hash],
    );
    Ok((data, creation_hash, ticket))
}

fn put_creation(c: &mut Ctx<'_>, data: &CreationData, hash: Vec<u8>, ticket: Vec<u8>) {
    let mut d = Vec::new();
    data.marshal(&mut d);
    put_sized(&mut c.out, &d);
    c.put(&Tpm2bDigest(hash));
    c.out.extend_from_slice(&ticket);
}

/// TPM2_CreatePrimary (Part 3, 24.1).
pub(crate) fn create_primary(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let create: SensitiveCreate = c.param()?;
    let template = read_template(c)?;
    let outside: Tpm2bData = c.param()?;
    let pcr_select: TpmlPcrSelection = c.param()?;
    c.end_params()?;
    let hierarchy = c.handle(0);
    keys::validate_template(&template, &create).map_err(|rc| {
        rc.param(
            if rc == Rc::SIZE && create.user_auth.len() > template.name_alg.size() {
                1
            } else {
                2
            },
        )
    })?;
    let object = tpm.primary(hierarchy, &template, &create)?;
    let (data, hash, ticket) = creation(
        tpm,
        c,
        &object,
        crate::types::alg::NULL,
        &hierarchy.to_be_bytes(),
        &hierarchy.to_be_bytes(),
        outside.0,
        pcr_select,
    )?;
    let h = tpm.load_object(object.clone())?;
    c.out_handle = Some(h);
    c.put(&Tpm2bPublic(object.public.clone()));
    put_creation(c, &data, hash, ticket);
    c.put(&Tpm2bName(object.name));
    Ok(())
}

/// The loaded storage parent named by a handle.
fn parent(tpm: &Tpm, h: u32) -> Result<KeyObject, Rc> {
    let p = tpm.key_object(h).map_err(|rc| rc.handle(1))?;
    if !p.public.is_storage() || p.sensitive.is_none() {
        return Err(Rc::TYPE.handle(1));
    }
    Ok(p)
}

/// Create a child object under `parent` with fresh randomness.
fn new_child(
    tpm: &mut Tpm,
    parent: &KeyObject,
    template: &TpmtPublic,
    create: &SensitiveCreate,
) -> Result<KeyObject, Rc> {
    keys::validate_template(template, create).map_err(|rc| rc.param(2))?;
    // fixedTPM children need a fixedTPM parent.
    if template.has(attr::FIXED_TPM) && !parent.public.has(attr::FIXED_TPM) {
        return Err(Rc::ATTRIBUTES.param(2));
    }
    let mut rng = |b: &mut [u8]| tpm.random(b);
    let (public, sensitive, key) = keys::generate(template.clone(), create, &mut rng)?;
    let name = public.name();
    let qualified_name = keys::qualified_name(&parent.qualified_name, &public, &name);
    Ok(KeyObject {
        public,
        sensitive: Some(sensitive),
        name,
        qualified_name,
        hierarchy: parent.hierarchy,
        key,
    })
}

/// TPM2_Create (Part 3, 12.1).
pub(crate) fn create(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let create: SensitiveCreate = c.param()?;
    let template = read_template(c)?;
    let outside: Tpm2bData = c.param()?;
    let pcr_select: TpmlPcrSelection = c.param()?;
    c.end_params()?;
    let parent = parent(tpm, c.handle(0))?;
    let object = new_child(tpm, &parent, &template, &create)?;
    let sensitive = object.sensitive.as_ref().ok_or(Rc::FAILURE)?;
    let private = keys::wrap(&parent, &object.name, sensitive)?;
    let (data, hash, ticket) = creation(
        tpm,
        c,
        &object,
        parent.public.name_alg.id(),
        &parent.name,
        &parent.qualified_name,
        outside.0,
        pcr_select,
    )?;
    c.put(&Tpm2bPrivate(private));
    c.put(&Tpm2bPublic(object.public));
    put_creation(c, &data, hash, ticket);
    Ok(())
}

/// TPM2_CreateLoaded (Part 3, 12.9): a primary when the parent is a hierarchy, else a child
/// that is loaded at once.
pub(crate) fn create_loaded(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let create: SensitiveCreate = c.param()?;
    let template = read_template(c)?;
    c.end_params()?;
    let ph = c.handle(0);
    let (object, private) = if handle::ht(ph) == handle::HT_PERMANENT {
        keys::validate_template(&template, &create).map_err(|rc| rc.param(2))?;
        (tpm.primary(ph, &template, &create)?, Vec::new())
    } else {
        let parent = parent(tpm, ph)?;
        let object = new_child(tpm, &parent, &template, &create)?;
        let private = keys::wrap(
            &parent,
            &object.name,
            object.sensitive.as_ref().ok_or(Rc::FAILURE)?,
        )?;
        (object, private)
    };
    let h = tpm.load_object(object.clone())?;
    c.out_handle = Some(h);
    c.put(&Tpm2bPrivate(private));
    c.put(&Tpm2bPublic(object.public));
    c.put(&Tpm2bName(object.name));
    Ok(())
}

/// TPM2_Load (Part 3, 12.2).
pub(crate) fn load(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let private: Tpm2bPrivate = c.param()?;
    let public: Tpm2bPublic = c.param()?;
    c.end_params()?;
    let parent = parent(tpm, c.handle(0))?;
    let public = public.0;
    if public.has(attr::FIXED_TPM) && !parent.public.has(attr::FIXED_TPM) {
        return Err(Rc::ATTRIBUTES.param(2));
    }
    let name = public.name();
    let sensitive = keys::unwrap(&parent, &name, private.as_slice()).map_err(|rc| rc.param(1))?;
    if sensitive.sensitive_type != public.object_type() {
        return Err(Rc::TYPE.param(2));
    }
    let key = keys::material(&public, Some(&sensitive)).map_err(|rc| rc.param(2))?;
    let qualified_name = keys::qualified_name(&parent.qualified_name, &public, &name);
    let object = KeyObject {
        public,
        sensitive: Some(sensitive),
        name: name.clone(),
        qualified_name,
        hierarchy: parent.hierarchy,
        key,
    };
    let h = tpm.load_object(object)?;
    c.out_handle = Some(h);
    c.put(&Tpm2bName(name));
    Ok(())
}

/// TPM2_LoadExternal (Part 3, 12.3).
pub(crate) fn load_external(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let sensitive: Tpm2bSensitive = c.param()?;
    let sensitive = sensitive.0;
    let public: Tpm2bPublic = c.param()?;
    let hierarchy: u32 = c.param()?;
    c.end_params()?;
    let public = public.0;
    if !matches!(
        hierarchy,
        handle::OWNER | handle::ENDORSEMENT | handle::PLATFORM | handle::NULL
    ) {
        return Err(Rc::VALUE.param(3));
    }
    if sensitive.is_some() {
        // A loaded external private key cannot claim TPM protection.
        if public.has(attr::FIXED_TPM) || public.has(attr::FIXED_PARENT) {
            return Err(Rc::ATTRIBUTES.param(2));
        }
        if hierarchy != handle::NULL {
            return Err(Rc::HIERARCHY.param(3));
        }
    }
    let key = keys::material(&public, sensitive.as_ref()).map_err(|rc| rc.param(2))?;
    let name = public.name();
    let qualified_name = keys::qualified_name(&hierarchy.to_be_bytes(), &public, &name);
    let h = tpm.load_object(KeyObject {
        public,
        sensitive,
        name: name.clone(),
        qualified_name,
        hierarchy,
        key,
    })?;
    c.out_handle = Some(h);
    c.put(&Tpm2bName(name));
    Ok(())
}

/// TPM2_ReadPublic (Part 3, 12.4).
pub(crate) fn read_public(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let o = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    c.put(&Tpm2bPublic(o.public.clone()));
    c.put(&Tpm2bName(o.name.clone()));
    c.put(&Tpm2bName(o.qualified_name.clone()));
    Ok(())
}

/// TPM2_ObjectChangeAuth (Part 3, 12.6): a new private area under the same parent.
pub(crate) fn object_change_auth(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let new_auth: Tpm2bDigest = c.param()?;
    c.end_params()?;
    let o = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    if handle::ht(c.handle(0)) != handle::HT_TRANSIENT {
        return Err(Rc::HANDLE.handle(1));
    }
    let parent = parent(tpm, c.handle(1)).map_err(|rc| {
        if rc.base() == Rc::TYPE {
            Rc::TYPE.handle(2)
        } else {
            rc
        }
    })?;
    if keys::qualified_name(&parent.qualified_name, &o.public, &o.name) != o.qualified_name {
        return Err(Rc::TYPE.handle(2));
    }
    if new_auth.len() > o.public.name_alg.size() {
        return Err(Rc::SIZE.param(1));
    }
    let mut sensitive = o.sensitive.clone().ok_or(Rc::HANDLE.handle(1))?;
    sensitive.auth_value = crate::engine::trim_zeros(new_auth.as_slice()).to_vec();
    c.put(&Tpm2bPrivate(keys::wrap(&parent, &o.name, &sensitive)?));
    Ok(())
}

/// TPM2_Unseal (Part 3, 12.7): only sealed data objects.
pub(crate) fn unseal(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let o = tpm.key_object(c.handle(0)).map_err(|rc| rc.handle(1))?;
    if !matches!(o.public.parms, PublicParms::KeyedHash { .. }) {
        return Err(Rc::TYPE.handle(1));
    }
    if o.public.attributes & (attr::DECRYPT | attr::SIGN_ENCRYPT | attr::RESTRICTED) != 0 {
        return Err(Rc::ATTRIBUTES.handle(1));
    }
    let data = o
        .sensitive
        .as_ref()
        .map(|s| s.sensitive.clone())
        .ok_or(Rc::HANDLE.handle(1))?;
    c.put(&Tpm2bSensitiveData(data));
    Ok(())
}

/// TPM2_EvictControl (Part 3, 28.5): make a transient object persistent, or evict one.
pub(crate) fn evict_control(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let persistent: u32 = c.param()?;
    c.end_params()?;
    let (auth, object_handle) = (c.handle(0), c.handle(1));
    let owner_range = (0x8100_0000..=0x817F_FFFF).contains(&persistent);
    let platform_range = (0x8180_0000..=0x81FF_FFFF).contains(&persistent);
    let allowed = if auth == handle::PLATFORM {
        platform_range
    } else {
        owner_range
    };
    if !allowed {
        return Err(Rc::RANGE.param(1));
    }
    if handle::ht(object_handle) == handle::HT_PERSISTENT {
        if object_handle != persistent {
            return Err(Rc::HANDLE.param(1));
        }
        let o = tpm.key_object(object_handle).map_err(|rc| rc.handle(2))?;
        if (o.hierarchy == handle::PLATFORM) != (auth == handle::PLATFORM) {
            return Err(Rc::HIERARCHY.handle(2));
        }
        tpm.perm.persistent.remove(&persistent);
        tpm.nv_changed();
        return Ok(());
    }
    let o = tpm.key_object(object_handle).map_err(|rc| rc.handle(2))?;
    if o.public.has(attr::ST_CLEAR) || o.hierarchy == handle::NULL || o.sensitive.is_none() {
        return Err(Rc::ATTRIBUTES.handle(2));
    }
    if (o.hierarchy == handle::PLATFORM) != (auth == handle::PLATFORM) {
        return Err(Rc::HIERARCHY.handle(2));
    }
    if tpm.perm.persistent.contains_key(&persistent) {
        return Err(Rc::NV_DEFINED);
    }
    if tpm.perm.persistent.len() >= MAX_PERSISTENT {
        return Err(Rc::NV_SPACE);
    }
    tpm.perm
        .persistent
        .insert(persistent, keys::encode_object(&o));
    tpm.nv_changed();
    Ok(())
}

/// Sequence numbers and handles of saved contexts (Part 1, 30; TPMS_CONTEXT in Part 2, 14.5).
pub(crate) fn context_save(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    c.end_params()?;
    let h = c.handle(0);
    let (saved_handle, hierarchy, payload) = match handle::ht(h) {
        handle::HT_TRANSIENT => match tpm.vol.objects.get(&h) {
            Some(Object::Key(o)) => {
                let saved = if o.public.has(attr::ST_CLEAR) {
                    0x8000_0002
                } else {
                    0x8000_0000
                };
                (
                    saved,
                    o.hierarchy,
                    [&[1u8][..], &keys::encode_object(o)].concat(),
                )
            }
            Some(_) => return Err(Rc::HANDLE.handle(1)),
            None => return Err(Rc::HANDLE.handle(1)),
        },
        handle::HT_HMAC_SESSION | handle::HT_POLICY_SESSION => {
            let s = tpm.vol.sessions.get(&h).ok_or(Rc::HANDLE.handle(1))?;
            (
                h,
                handle::NULL,
                [&[2u8][..], &crate::session::encode(s)].concat(),
            )
        }
        _ => return Err(Rc::HANDLE.handle(1)),
    };
    let sequence = tpm.next_context_sequence();
    let blob = tpm.seal_context(sequence, saved_handle, hierarchy, &payload);
    if handle::ht(h) != handle::HT_TRANSIENT {
        // A saved session leaves TPM memory; only its latest context may come back.
        tpm.vol.sessions.remove(&h);
        tpm.vol.saved_sessions.insert(h, sequence);
    }
    c.put(&sequence);
    c.put(&saved_handle);
    c.put(&hierarchy);
    put_sized(&mut c.out, &blob);
    Ok(())
}

/// TPM2_ContextLoad (Part 3, 28.3).
pub(crate) fn context_load(tpm: &mut Tpm, c: &mut Ctx<'_>) -> Result<(), Rc> {
    let sequence: u64 = c.param()?;
    let saved_handle: u32 = c.param()?;
    let hierarchy: u32 = c.param()?;
    let blob: Tpm2bContextData = c.param()?;
    c.end_params()?;
    let payload = tpm
        .open_context(sequence, saved_handle, hierarchy, blob.as_slice())
        .map_err(|rc| rc.param(1))?;
    let mut r = Reader::new(&payload);
    match (r.u8()?, handle::ht(saved_handle)) {
        (1, handle::HT_TRANSIENT) => {
            let o = keys::decode_object(r.rest()).map_err(|_| Rc::INTEGRITY.param(1))?;
            if o.hierarchy != hierarchy {
                return Err(Rc::INTEGRITY.param(1));
            }
            tpm.hierarchy_enabled(hierarchy).map_err(|rc| rc.param(1))?;
            let h = tpm.load_object(o)?;
            c.out_handle = Some(h);
            Ok(())
        }
        (2, handle::HT_HMAC_SESSION | handle::HT_POLICY_SESSION) => {
            if tpm.vol.saved_sessions.get(&saved_handle) != Some(&sequence) {
                return Err(Rc::HANDLE.param(1));
            }
            let s = crate::session::decode(r.rest()).map_err(|_| Rc::INTEGRITY.param(1))?;
            tpm.vol.saved_sessions.remove(&saved_handle);
            tpm.vol.sessions.insert(saved_handle, s);
            c.out_handle = Some(saved_handle);
            Ok(())
        }
        _ => Err(Rc::INTEGRITY.param(1)),
    }
}
